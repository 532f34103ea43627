//! A conformance kit for [`PersistentStorage`] backends (feature `conformance`).
//!
//! Implement [`Harness`] for your backend (how to open an empty store and how to
//! reopen one), then run every [`Case`] — one call with [`run`], or one test per
//! case with [`run_case`]:
//!
//! ```
//! use theta::persistence::MemoryStorage;
//! use theta::persistence::conformance::{self, Harness};
//!
//! struct Memory;
//!
//! impl Harness for Memory {
//!     type Storage = MemoryStorage;
//!     async fn open(&self) -> anyhow::Result<MemoryStorage> {
//!         Ok(MemoryStorage::new())
//!     }
//!     async fn reopen(&self, storage: MemoryStorage) -> anyhow::Result<MemoryStorage> {
//!         Ok(storage) // the same map: "reopening" memory keeps it
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let report = conformance::run(&Memory).await;
//! println!("{report}");
//! assert!(report.passed(), "{report}");
//! # }
//! ```
//!
//! Or generate one `#[test]` per case, named after it, with
//! [`conformance_tests!`](crate::conformance_tests) (no tokio dependency needed in
//! the calling crate):
//!
//! ```
//! # use theta::persistence::MemoryStorage;
//! # use theta::persistence::conformance::Harness;
//! # struct Memory;
//! # impl Harness for Memory {
//! #     type Storage = MemoryStorage;
//! #     async fn open(&self) -> anyhow::Result<MemoryStorage> { Ok(MemoryStorage::new()) }
//! #     async fn reopen(&self, s: MemoryStorage) -> anyhow::Result<MemoryStorage> { Ok(s) }
//! # }
//! mod memory_conformance {
//!     theta::conformance_tests!(super::Memory);
//! }
//! # fn main() {}
//! ```
//!
//! Payloads are wrapped in real envelopes ([`envelope::seal`]) with increasing
//! sequence numbers, as the runtime writes them.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::id::ActorId;

use super::envelope::{EnvelopeError, Stamp};
use super::{
    ClaimMode, Fenced, OwnedElsewhere, OwnerId, PersistentStorage, SnapshotNotFound,
    SnapshotTooLarge, StaleSnapshot, envelope,
};

/// How the kit gets storages of the backend under test.
pub trait Harness: Send + Sync {
    /// The backend.
    type Storage: PersistentStorage + 'static;

    /// A new, empty store.
    fn open(&self) -> impl Future<Output = anyhow::Result<Self::Storage>> + Send;

    /// Closes `storage` and opens the same store again (same directory, database…).
    fn reopen(
        &self,
        storage: Self::Storage,
    ) -> impl Future<Output = anyhow::Result<Self::Storage>> + Send;

    /// Leaves in the store what a crash, an operator or another program could
    /// leave lying around (temp files, stray files, half-written names), so the
    /// kit can check that the backend ignores it. The default leaves nothing (a
    /// backend with no files).
    fn litter(&self, storage: &Self::Storage) -> impl Future<Output = anyhow::Result<()>> + Send {
        let _ = storage;
        async { Ok(()) }
    }

    /// Makes the backend's next sync (or commit) fail as a failing disk would.
    /// `Ok(false)`: this backend has nothing to inject a failure into, and the
    /// case is reported as skipped. The default is `Ok(false)`.
    fn fail_next_sync(
        &self,
        storage: &Self::Storage,
    ) -> impl Future<Output = anyhow::Result<bool>> + Send {
        let _ = storage;
        async { Ok(false) }
    }
}

/// One conformance case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Case {
    /// Reading a never-written id is `SnapshotNotFound`.
    AbsentIsNotFound,
    /// A 0-byte payload round-trips byte-identically.
    RoundTripEmpty,
    /// A 1-byte payload round-trips byte-identically.
    RoundTripOneByte,
    /// A 10 KiB payload round-trips byte-identically.
    RoundTrip10KiB,
    /// A 16 MiB payload round-trips byte-identically.
    RoundTrip16MiB,
    /// After several writes a read returns the latest.
    OverwriteReturnsLatest,
    /// Ids sharing byte prefixes do not see each other's data.
    PrefixIdsIndependent,
    /// 100 ids × 10 writes from parallel tasks read back their last writes.
    ParallelWrites,
    /// Delete existing / again / never-written are `Ok`; reads are then not found;
    /// writing after a delete works.
    DeleteSemantics,
    /// A lower sequence number than the stored one is refused; the newer stays.
    StaleWriteRefused,
    /// Two concurrent writers of one id, higher and lower sequence, each
    /// submitted first in half of the rounds: the higher survives, whole; the
    /// lower is refused as stale when the higher lands first, which must happen
    /// at least once. Two concurrent writers of an equal sequence (other bytes),
    /// in both orders: exactly one is accepted, the other refused as stale.
    ConcurrentWritersHigherWins,
    /// After reopening, every snapshot reads back identical.
    ReopenIdentical,
    /// Listing returns exactly the ids with a live snapshot.
    ListIsLiveSet,
    /// A second write with the same stamp (another writer's, other bytes) is
    /// refused; the first stays.
    EqualStampRefused,
    /// After a delete, a write older than the deleted snapshot is still refused
    /// (no resurrection by a stale writer); a newer one is accepted.
    DeleteKeepsTombstone,
    /// A write over `envelope::MAX_ENVELOPE_LEN` is refused with
    /// `SnapshotTooLarge`, before anything is stored.
    OversizedRefused,
    /// Bytes that are not an envelope are refused; the stored snapshot stays.
    NonEnvelopeRefused,
    /// Two concurrent writers of one id, in either order: exactly one outcome,
    /// whole: the newer stamp.
    ConcurrentWritersOneOutcome,
    /// `try_list_type` lists exactly the live ids of one actor type.
    ListTypeIsOneType,
    /// An exclusive claim is refused with `OwnedElsewhere` while another owner
    /// holds the id; the holder may claim again, with a newer epoch.
    ExclusiveClaimRefusedWhileHeld,
    /// A takeover gets a newer epoch and the latest snapshot; the previous
    /// owner's writes are then refused with `Fenced`.
    TakeoverFencesPreviousOwner,
    /// A released id can be claimed exclusively by another owner.
    ReleaseFreesTheId,
    /// Concurrent exclusive claims of one id by many owners: exactly one wins.
    ConcurrentClaimsOneWinner,
    /// Epochs keep growing across a reopen.
    EpochsGrowAcrossReopen,
    /// Stray and temporary files left in the store are ignored by reads and
    /// listings.
    StrayFilesIgnored,
    /// `try_close` succeeds, later writes are refused, and what was written
    /// before is there after a reopen.
    CloseRefusesLaterWrites,
    /// After a failed sync, writes are refused until the store is reopened and
    /// `try_close` reports the failure; nothing acknowledged is lost.
    FailedSyncRefusesWrites,
}

impl Case {
    /// Every case, in run order.
    pub const ALL: [Case; 27] = [
        Case::AbsentIsNotFound,
        Case::RoundTripEmpty,
        Case::RoundTripOneByte,
        Case::RoundTrip10KiB,
        Case::RoundTrip16MiB,
        Case::OverwriteReturnsLatest,
        Case::PrefixIdsIndependent,
        Case::ParallelWrites,
        Case::DeleteSemantics,
        Case::StaleWriteRefused,
        Case::ConcurrentWritersHigherWins,
        Case::ReopenIdentical,
        Case::ListIsLiveSet,
        Case::EqualStampRefused,
        Case::DeleteKeepsTombstone,
        Case::OversizedRefused,
        Case::NonEnvelopeRefused,
        Case::ConcurrentWritersOneOutcome,
        Case::ListTypeIsOneType,
        Case::ExclusiveClaimRefusedWhileHeld,
        Case::TakeoverFencesPreviousOwner,
        Case::ReleaseFreesTheId,
        Case::ConcurrentClaimsOneWinner,
        Case::EpochsGrowAcrossReopen,
        Case::StrayFilesIgnored,
        Case::CloseRefusesLaterWrites,
        Case::FailedSyncRefusesWrites,
    ];

    /// The case's name, as reported.
    pub fn name(self) -> &'static str {
        match self {
            Case::AbsentIsNotFound => "absent_is_not_found",
            Case::RoundTripEmpty => "round_trip_0_bytes",
            Case::RoundTripOneByte => "round_trip_1_byte",
            Case::RoundTrip10KiB => "round_trip_10_kib",
            Case::RoundTrip16MiB => "round_trip_16_mib",
            Case::OverwriteReturnsLatest => "overwrite_returns_latest",
            Case::PrefixIdsIndependent => "prefix_ids_independent",
            Case::ParallelWrites => "parallel_100_ids_x_10_writes",
            Case::DeleteSemantics => "delete_semantics",
            Case::StaleWriteRefused => "stale_write_refused",
            Case::ConcurrentWritersHigherWins => "concurrent_writers_higher_sequence_wins",
            Case::ReopenIdentical => "reopen_reads_identical_bytes",
            Case::ListIsLiveSet => "list_is_the_live_set",
            Case::EqualStampRefused => "equal_stamp_refused",
            Case::DeleteKeepsTombstone => "delete_keeps_a_tombstone",
            Case::OversizedRefused => "oversized_write_refused",
            Case::NonEnvelopeRefused => "non_envelope_write_refused",
            Case::ConcurrentWritersOneOutcome => "concurrent_writers_one_whole_outcome",
            Case::ListTypeIsOneType => "list_type_lists_one_actor_type",
            Case::ExclusiveClaimRefusedWhileHeld => "exclusive_claim_refused_while_held",
            Case::TakeoverFencesPreviousOwner => "takeover_fences_the_previous_owner",
            Case::ReleaseFreesTheId => "release_frees_the_id",
            Case::ConcurrentClaimsOneWinner => "concurrent_claims_one_winner",
            Case::EpochsGrowAcrossReopen => "epochs_grow_across_reopen",
            Case::StrayFilesIgnored => "stray_files_ignored",
            Case::CloseRefusesLaterWrites => "close_refuses_later_writes",
            Case::FailedSyncRefusesWrites => "failed_sync_refuses_writes_until_reopen",
        }
    }
}

/// How a case that did not fail ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The backend has the property.
    Passed,
    /// The case does not apply to this backend, and why (for example: it has no
    /// sync to fail). Never used for a property the backend lacks.
    Skipped(String),
}

/// The outcome of [`run`]: each case by name.
#[derive(Debug, Clone)]
pub struct Report {
    /// `(case, the verdict or the failure)`, in run order.
    pub results: Vec<(Case, Result<Verdict, String>)>,
}

impl Report {
    /// Whether no case failed.
    pub fn passed(&self) -> bool {
        self.results.iter().all(|(_, r)| r.is_ok())
    }

    /// The skipped cases with their reasons.
    pub fn skipped(&self) -> Vec<(Case, &str)> {
        self.results
            .iter()
            .filter_map(|(c, r)| match r {
                Ok(Verdict::Skipped(why)) => Some((*c, why.as_str())),
                _ => None,
            })
            .collect()
    }

    /// The failed cases with their messages.
    pub fn failures(&self) -> Vec<(Case, &str)> {
        self.results
            .iter()
            .filter_map(|(c, r)| r.as_ref().err().map(|e| (*c, e.as_str())))
            .collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (case, result) in &self.results {
            match result {
                Ok(Verdict::Passed) => writeln!(f, "conformance {} ... ok", case.name())?,
                Ok(Verdict::Skipped(why)) => {
                    writeln!(f, "conformance {} ... SKIPPED: {why}", case.name())?
                }
                Err(e) => writeln!(f, "conformance {} ... FAILED: {e}", case.name())?,
            }
        }
        let failed = self.failures().len();
        let skipped = self.skipped().len();
        write!(
            f,
            "{} passed, {skipped} skipped, {failed} failed",
            self.results.len() - failed - skipped
        )
    }
}

/// Runs every case, each on a fresh store from [`Harness::open`].
pub async fn run<H: Harness>(harness: &H) -> Report {
    let mut results = Vec::new();
    for case in Case::ALL {
        results.push((case, run_case(harness, case).await));
    }
    Report { results }
}

/// Runs one case on a fresh store. A case that takes over a minute fails.
pub async fn run_case<H: Harness>(harness: &H, case: Case) -> Result<Verdict, String> {
    let storage = harness
        .open()
        .await
        .map_err(|e| format!("opening the store failed: {e:#}"))?;
    let body = async {
        match case {
            Case::AbsentIsNotFound => absent_is_not_found(&storage).await.map(|_| storage),
            Case::RoundTripEmpty => round_trip(storage, 0).await,
            Case::RoundTripOneByte => round_trip(storage, 1).await,
            Case::RoundTrip10KiB => round_trip(storage, 10 << 10).await,
            Case::RoundTrip16MiB => round_trip(storage, 16 << 20).await,
            Case::OverwriteReturnsLatest => overwrite(storage).await,
            Case::PrefixIdsIndependent => prefixes(storage).await,
            Case::ParallelWrites => parallel(storage).await,
            Case::DeleteSemantics => delete(storage).await,
            Case::StaleWriteRefused => stale(storage).await,
            Case::ConcurrentWritersHigherWins => concurrent(storage).await,
            Case::ReopenIdentical => reopen(harness, storage).await,
            Case::ListIsLiveSet => list(storage).await,
            Case::EqualStampRefused => equal_stamp(storage).await,
            Case::DeleteKeepsTombstone => tombstone(storage).await,
            Case::OversizedRefused => oversized(storage).await,
            Case::NonEnvelopeRefused => non_envelope(storage).await,
            Case::ConcurrentWritersOneOutcome => one_outcome(storage).await,
            Case::ListTypeIsOneType => list_type(storage).await,
            Case::ExclusiveClaimRefusedWhileHeld => exclusive(storage).await,
            Case::TakeoverFencesPreviousOwner => takeover(storage).await,
            Case::ReleaseFreesTheId => release(storage).await,
            Case::ConcurrentClaimsOneWinner => claim_race(storage).await,
            Case::EpochsGrowAcrossReopen => epochs_across_reopen(harness, storage).await,
            Case::StrayFilesIgnored => stray(harness, storage).await,
            Case::CloseRefusesLaterWrites => close(harness, storage).await,
            Case::FailedSyncRefusesWrites => return failed_sync(harness, storage).await,
        }
        .map(|_storage| Verdict::Passed)
    };
    match tokio::time::timeout(Duration::from_secs(60), body).await {
        Ok(verdict) => verdict,
        Err(_) => Err("timed out after 60 s".into()),
    }
}

type Outcome<S> = Result<S, String>;

const KIT_TYPE: uuid::Uuid = uuid::uuid!("c0f0c0f0-0000-4000-8000-00000000c0de");

/// An envelope with a payload of `len` bytes derived from `seed`.
fn snapshot(sequence: u64, len: usize, seed: u64) -> Vec<u8> {
    stamped(KIT_TYPE, ActorId::nil(), Stamp::new(0, sequence), len, seed)
}

/// [`snapshot`] of actor `id` of type `actor_type`, with any stamp.
fn stamped(actor_type: uuid::Uuid, id: ActorId, stamp: Stamp, len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let payload: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    envelope::Seal::new(actor_type)
        .actor_id(id)
        .stamp(stamp)
        .seal(&payload)
}

fn fail<T>(what: impl fmt::Display) -> Result<T, String> {
    Err(what.to_string())
}

async fn write<S: PersistentStorage>(s: &S, id: ActorId, bytes: Vec<u8>) -> Result<(), String> {
    s.try_write(id, bytes)
        .await
        .map_err(|e| format!("write of {id} failed: {e:#}"))
}

async fn read<S: PersistentStorage>(s: &S, id: ActorId) -> Result<Vec<u8>, String> {
    s.try_read(id)
        .await
        .map_err(|e| format!("read of {id} failed: {e:#}"))
}

async fn expect_absent<S: PersistentStorage>(s: &S, id: ActorId) -> Result<(), String> {
    match s.try_read(id).await {
        Err(e) if e.is::<SnapshotNotFound>() => Ok(()),
        Err(e) => fail(format!(
            "read of absent {id} returned an error that is not SnapshotNotFound: {e:#}"
        )),
        Ok(bytes) => fail(format!(
            "read of absent {id} returned {} bytes instead of SnapshotNotFound",
            bytes.len()
        )),
    }
}

fn same(id: ActorId, got: &[u8], want: &[u8]) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        fail(format!(
            "{id}: read {} bytes that differ from the {} bytes written",
            got.len(),
            want.len()
        ))
    }
}

async fn absent_is_not_found<S: PersistentStorage>(s: &S) -> Result<(), String> {
    expect_absent(s, ActorId::new_v4()).await
}

async fn round_trip<S: PersistentStorage>(s: S, len: usize) -> Outcome<S> {
    let id = ActorId::new_v4();
    let bytes = snapshot(1, len, len as u64);
    write(&s, id, bytes.clone()).await?;
    same(id, &read(&s, id).await?, &bytes)?;
    Ok(s)
}

async fn overwrite<S: PersistentStorage>(s: S) -> Outcome<S> {
    let id = ActorId::new_v4();
    let mut last = Vec::new();
    for seq in 1..=5 {
        last = snapshot(seq, 100 * seq as usize, seq);
        write(&s, id, last.clone()).await?;
    }
    same(id, &read(&s, id).await?, &last)?;
    Ok(s)
}

async fn prefixes<S: PersistentStorage>(s: S) -> Outcome<S> {
    let base = ActorId::new_v4().as_u128() & !0xffff;
    let ids: Vec<ActorId> = (0..8u128)
        .map(|i| ActorId::from_u128(base | i))
        .chain([ActorId::from_u128(base ^ (1 << 120))])
        .collect();
    for (i, id) in ids.iter().enumerate() {
        write(&s, *id, snapshot(1, 64, i as u64)).await?;
    }
    for (i, id) in ids.iter().enumerate() {
        same(*id, &read(&s, *id).await?, &snapshot(1, 64, i as u64))?;
    }
    Ok(s)
}

async fn parallel<S: PersistentStorage>(s: S) -> Outcome<S> {
    let s = Arc::new(s);
    let ids: Vec<ActorId> = (0..100).map(|_| ActorId::new_v4()).collect();
    let tasks = ids.iter().enumerate().map(|(i, id)| {
        let s = Arc::clone(&s);
        let id = *id;
        async move {
            for seq in 1..=10u64 {
                write(&*s, id, snapshot(seq, 256, i as u64 * 100 + seq)).await?;
            }
            Ok::<_, String>(())
        }
    });
    let results = join_all(tasks.collect()).await;
    for r in results {
        r?;
    }
    for (i, id) in ids.iter().enumerate() {
        same(
            *id,
            &read(&*s, *id).await?,
            &snapshot(10, 256, i as u64 * 100 + 10),
        )?;
    }
    Arc::try_unwrap(s).map_err(|_| "storage still shared".to_string())
}

/// Polls futures concurrently on the current task (no runtime-specific spawning).
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (fut, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

async fn delete<S: PersistentStorage>(s: S) -> Outcome<S> {
    let id = ActorId::new_v4();
    write(&s, id, snapshot(1, 32, 1)).await?;
    for attempt in ["existing", "again"] {
        s.try_delete(id)
            .await
            .map_err(|e| format!("delete ({attempt}) of {id} failed: {e:#}"))?;
        expect_absent(&s, id).await?;
    }
    let never = ActorId::new_v4();
    s.try_delete(never)
        .await
        .map_err(|e| format!("delete of never-written {never} failed: {e:#}"))?;
    expect_absent(&s, never).await?;
    let bytes = snapshot(2, 32, 2);
    write(&s, id, bytes.clone()).await?;
    same(id, &read(&s, id).await?, &bytes)?;
    Ok(s)
}

async fn stale<S: PersistentStorage>(s: S) -> Outcome<S> {
    let id = ActorId::new_v4();
    let newer = snapshot(5, 32, 5);
    write(&s, id, newer.clone()).await?;
    match s.try_write(id, snapshot(4, 32, 4)).await {
        Err(e) if e.is::<StaleSnapshot>() => {}
        Err(e) => return fail(format!("stale write refused with the wrong error: {e:#}")),
        Ok(()) => return fail("a write with a lower sequence number was accepted"),
    }
    same(id, &read(&s, id).await?, &newer)?;
    Ok(s)
}

/// A write of the kit, boxed so two of them can race in [`race`].
type Write<'a> = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;

/// Runs two writes concurrently, `first` submitted (polled) first; their
/// results in the same order.
async fn race<'a>(
    first: Write<'a>,
    second: Write<'a>,
) -> Result<(anyhow::Result<()>, anyhow::Result<()>), String> {
    let [first, second]: [anyhow::Result<()>; 2] =
        join_all(vec![first, second])
            .await
            .try_into()
            .map_err(|_| "two racing writes did not give two results".to_string())?;
    Ok((first, second))
}

/// Higher and lower sequence numbers racing, each submitted first in half of
/// the rounds; then equal sequence numbers racing (two writers that both
/// believe they own the next sequence), in both orders.
async fn concurrent<S: PersistentStorage>(s: S) -> Outcome<S> {
    let id = ActorId::new_v4();
    // Rounds where the higher write was submitted first and the lower refused:
    // "the higher lands first" must have happened, or the refusal went untested.
    let mut high_landed_first = 0;
    for round in 0..20u64 {
        let low = snapshot(round * 2 + 1, 512, round);
        let high = snapshot(round * 2 + 2, 512, round + 1000);
        let high_first = round % 2 == 1;
        let (low_write, high_write): (Write<'_>, Write<'_>) = (
            Box::pin(s.try_write(id, low)),
            Box::pin(s.try_write(id, high.clone())),
        );
        let (low_result, high_result) = if high_first {
            let (high_result, low_result) = race(high_write, low_write).await?;
            (low_result, high_result)
        } else {
            race(low_write, high_write).await?
        };
        let order = if high_first { "higher" } else { "lower" };
        if let Err(e) = high_result {
            return fail(format!(
                "round {round} ({order} submitted first): the higher write failed: {e:#}"
            ));
        }
        match low_result {
            // The lower landed first; the higher then replaced it.
            Ok(()) => {}
            Err(e) if e.is::<StaleSnapshot>() => high_landed_first += u32::from(high_first),
            Err(e) => {
                return fail(format!(
                    "round {round} ({order} submitted first): the lower write failed with a \
                     non-stale error: {e:#}"
                ));
            }
        }
        same(id, &read(&s, id).await?, &high)?;
    }
    if high_landed_first == 0 {
        return fail(
            "in 10 rounds with the higher write submitted first, the lower one was never \
             refused: the higher write never landed first",
        );
    }
    // Equal sequence numbers, other bytes: exactly one write is accepted, the
    // other refused as stale, and the stored bytes are the accepted one's.
    for round in 0..10u64 {
        let sequence = 100 + round;
        let a = snapshot(sequence, 512, round + 2000);
        let b = snapshot(sequence, 512, round + 3000);
        let (a_write, b_write): (Write<'_>, Write<'_>) = (
            Box::pin(s.try_write(id, a.clone())),
            Box::pin(s.try_write(id, b.clone())),
        );
        let (a_result, b_result) = if round % 2 == 0 {
            race(a_write, b_write).await?
        } else {
            let (b_result, a_result) = race(b_write, a_write).await?;
            (a_result, b_result)
        };
        let stored = read(&s, id).await?;
        match (a_result, b_result) {
            (Ok(()), Err(e)) if e.is::<StaleSnapshot>() => same(id, &stored, &a)?,
            (Err(e), Ok(())) if e.is::<StaleSnapshot>() => same(id, &stored, &b)?,
            (Ok(()), Ok(())) => {
                return fail(format!(
                    "both concurrent writes of sequence {sequence} (other bytes) were accepted"
                ));
            }
            (Err(a), Err(b)) => {
                return fail(format!(
                    "both concurrent writes of sequence {sequence} were refused: {a:#}; {b:#}"
                ));
            }
            (Ok(()), Err(e)) | (Err(e), Ok(())) => {
                return fail(format!(
                    "a concurrent write of an equal sequence {sequence} was refused with a \
                     non-stale error: {e:#}"
                ));
            }
        }
    }
    Ok(s)
}

async fn reopen<H: Harness>(harness: &H, s: H::Storage) -> Outcome<H::Storage> {
    let ids: Vec<ActorId> = (0..20).map(|_| ActorId::new_v4()).collect();
    for (i, id) in ids.iter().enumerate() {
        write(&s, *id, snapshot(3, 1000 + i, i as u64)).await?;
    }
    let s = harness
        .reopen(s)
        .await
        .map_err(|e| format!("reopen failed: {e:#}"))?;
    for (i, id) in ids.iter().enumerate() {
        same(*id, &read(&s, *id).await?, &snapshot(3, 1000 + i, i as u64))?;
    }
    Ok(s)
}

async fn list<S: PersistentStorage>(s: S) -> Outcome<S> {
    let ids: Vec<ActorId> = (0..30).map(|_| ActorId::new_v4()).collect();
    for id in &ids {
        write(&s, *id, snapshot(1, 16, 1)).await?;
    }
    for id in &ids[..10] {
        s.try_delete(*id)
            .await
            .map_err(|e| format!("delete of {id} failed: {e:#}"))?;
    }
    let mut listed = s
        .try_list()
        .await
        .map_err(|e| format!("list failed: {e:#}"))?;
    listed.sort();
    let mut live = ids[10..].to_vec();
    live.sort();
    if listed != live {
        return fail(format!(
            "listed {} ids, expected exactly the {} live ones",
            listed.len(),
            live.len()
        ));
    }
    Ok(s)
}

/// Expects `result` to be refused with marker `E`.
fn refused_with<E, T>(result: Result<T, anyhow::Error>, what: &str) -> Result<(), String>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match result {
        Err(e) if e.is::<E>() => Ok(()),
        Err(e) => fail(format!(
            "{what}: refused with the wrong error (expected {}): {e:#}",
            std::any::type_name::<E>()
        )),
        Ok(_) => fail(format!("{what}: accepted")),
    }
}

async fn equal_stamp<S: PersistentStorage>(s: S) -> Outcome<S> {
    let id = ActorId::new_v4();
    let first = snapshot(3, 64, 1);
    write(&s, id, first.clone()).await?;
    refused_with::<StaleSnapshot, _>(
        s.try_write(id, snapshot(3, 64, 2)).await,
        "a second write of sequence 3 (other bytes)",
    )?;
    same(id, &read(&s, id).await?, &first)?;
    Ok(s)
}

async fn tombstone<S: PersistentStorage>(s: S) -> Outcome<S> {
    let id = ActorId::new_v4();
    write(&s, id, snapshot(5, 32, 5)).await?;
    s.try_delete(id)
        .await
        .map_err(|e| format!("delete of {id} failed: {e:#}"))?;
    refused_with::<StaleSnapshot, _>(
        s.try_write(id, snapshot(3, 32, 3)).await,
        "a write older than the deleted snapshot",
    )?;
    refused_with::<StaleSnapshot, _>(
        s.try_write(id, snapshot(5, 32, 6)).await,
        "a write equal to the deleted snapshot",
    )?;
    expect_absent(&s, id).await?;
    let newer = snapshot(6, 32, 7);
    write(&s, id, newer.clone()).await?;
    same(id, &read(&s, id).await?, &newer)?;
    Ok(s)
}

async fn oversized<S: PersistentStorage>(s: S) -> Outcome<S> {
    let id = ActorId::new_v4();
    let small = snapshot(1, 16, 1);
    write(&s, id, small.clone()).await?;
    // A valid header declaring the over-long payload, then zeros: the length
    // alone must be enough to refuse it.
    let mut huge = vec![0u8; envelope::MAX_ENVELOPE_LEN + 1];
    let payload_len = huge.len() - envelope::HEADER_LEN - envelope::TRAILER_LEN;
    let header = envelope::Seal::new(KIT_TYPE).sequence(2).seal(&[]);
    huge[..envelope::HEADER_LEN].copy_from_slice(&header[..envelope::HEADER_LEN]);
    huge[60..68].copy_from_slice(&(payload_len as u64).to_le_bytes());
    huge[68..76].copy_from_slice(&(payload_len as u64).to_le_bytes());
    let result = s.try_write(id, huge).await;
    match &result {
        Err(e) => match e.downcast_ref::<SnapshotTooLarge>() {
            Some(large) if large.limit == envelope::MAX_ENVELOPE_LEN => {}
            Some(large) => {
                return fail(format!(
                    "refused with a limit of {} bytes instead of the common {}",
                    large.limit,
                    envelope::MAX_ENVELOPE_LEN
                ));
            }
            None => refused_with::<SnapshotTooLarge, _>(result, "an oversized write")?,
        },
        Ok(()) => return fail("a write over MAX_ENVELOPE_LEN was accepted"),
    }
    same(id, &read(&s, id).await?, &small)?;
    // The limit itself is not over it.
    let at_limit = envelope::check_len(id, envelope::MAX_ENVELOPE_LEN);
    if at_limit.is_err() {
        return fail("check_len refuses MAX_ENVELOPE_LEN itself");
    }
    Ok(s)
}

async fn non_envelope<S: PersistentStorage>(s: S) -> Outcome<S> {
    let id = ActorId::new_v4();
    let good = snapshot(1, 16, 1);
    write(&s, id, good.clone()).await?;
    for junk in [&b""[..], b"junk", &[0u8; 100][..]] {
        refused_with::<EnvelopeError, _>(
            s.try_write(id, junk.to_vec()).await,
            &format!("a write of {} bytes that are not an envelope", junk.len()),
        )?;
    }
    same(id, &read(&s, id).await?, &good)?;
    Ok(s)
}

async fn one_outcome<S: PersistentStorage>(s: S) -> Outcome<S> {
    let id = ActorId::new_v4();
    for round in 0..20u64 {
        let low = snapshot(round * 2 + 1, 4096, round);
        let high = snapshot(round * 2 + 2, 4096, round + 1000);
        let (a, b): (Write<'_>, Write<'_>) = (
            Box::pin(s.try_write(id, low.clone())),
            Box::pin(s.try_write(id, high.clone())),
        );
        // Alternate which write is polled (submitted) first.
        let results = if round % 2 == 0 {
            join_all(vec![a, b]).await
        } else {
            let mut r = join_all(vec![b, a]).await;
            r.reverse();
            r
        };
        let (low_result, high_result) = (&results[0], &results[1]);
        let stored = read(&s, id).await?;
        match (low_result, high_result) {
            // Low first, then high: both accepted, high stored.
            (Ok(()), Ok(())) => same(id, &stored, &high)?,
            // High first, low refused as stale.
            (Err(e), Ok(())) if e.is::<StaleSnapshot>() => same(id, &stored, &high)?,
            (Err(e), Ok(())) => {
                return fail(format!(
                    "round {round}: the lower write failed with a non-stale error: {e:#}"
                ));
            }
            (_, Err(e)) => return fail(format!("round {round}: the higher write failed: {e:#}")),
        }
    }
    Ok(s)
}

async fn list_type<S: PersistentStorage>(s: S) -> Outcome<S> {
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let of_a: Vec<ActorId> = (0..12).map(|_| ActorId::new_v4()).collect();
    let of_b: Vec<ActorId> = (0..7).map(|_| ActorId::new_v4()).collect();
    for (i, id) in of_a.iter().enumerate() {
        write(&s, *id, stamped(a, *id, Stamp::new(0, 1), 24, i as u64)).await?;
    }
    for (i, id) in of_b.iter().enumerate() {
        write(&s, *id, stamped(b, *id, Stamp::new(0, 1), 24, i as u64)).await?;
    }
    s.try_delete(of_a[0])
        .await
        .map_err(|e| format!("delete failed: {e:#}"))?;
    for (actor_type, want) in [(a, &of_a[1..]), (b, &of_b[..])] {
        let mut listed = s
            .try_list_type(actor_type)
            .await
            .map_err(|e| format!("list of type {actor_type} failed: {e:#}"))?;
        listed.sort();
        let mut want = want.to_vec();
        want.sort();
        if listed != want {
            return fail(format!(
                "type {actor_type}: listed {} ids, expected exactly its {} live ones",
                listed.len(),
                want.len()
            ));
        }
    }
    let none = s
        .try_list_type(uuid::Uuid::new_v4())
        .await
        .map_err(|e| format!("list of an unknown type failed: {e:#}"))?;
    if !none.is_empty() {
        return fail(format!("an unknown type listed {} ids", none.len()));
    }
    Ok(s)
}

/// Claims `id` for `owner`, failing with the backend's error.
async fn claim<S: PersistentStorage>(
    s: &S,
    id: ActorId,
    owner: OwnerId,
    mode: ClaimMode,
) -> Result<super::Claim, String> {
    s.try_claim(id, owner, mode)
        .await
        .map_err(|e| format!("{mode:?} claim of {id} by {owner} failed: {e:#}"))
}

async fn exclusive<S: PersistentStorage>(s: S) -> Outcome<S> {
    let id = ActorId::new_v4();
    let (a, b) = (OwnerId::new(), OwnerId::new());
    let first = claim(&s, id, a, ClaimMode::Exclusive).await?;
    if first.snapshot.is_some() {
        return fail("a claim of a never-written id returned a snapshot");
    }
    match s.try_claim(id, b, ClaimMode::Exclusive).await {
        Err(e) => match e.downcast_ref::<OwnedElsewhere>() {
            Some(held) if held.holder == a && held.id == id => {}
            Some(held) => {
                return fail(format!(
                    "OwnedElsewhere names holder {} of {}, expected {a} of {id}",
                    held.holder, held.id
                ));
            }
            None => {
                return fail(format!(
                    "an exclusive claim of a held id failed with the wrong error: {e:#}"
                ));
            }
        },
        Ok(claim) => {
            return fail(format!(
                "an exclusive claim of an id held by another owner was granted (epoch {})",
                claim.epoch
            ));
        }
    }
    let again = claim(&s, id, a, ClaimMode::Exclusive).await?;
    if again.epoch <= first.epoch {
        return fail(format!(
            "the holder's new claim has epoch {} after {}",
            again.epoch, first.epoch
        ));
    }
    Ok(s)
}

async fn takeover<S: PersistentStorage>(s: S) -> Outcome<S> {
    let id = ActorId::new_v4();
    let (a, b) = (OwnerId::new(), OwnerId::new());
    let old = claim(&s, id, a, ClaimMode::Exclusive).await?;
    let written = stamped(KIT_TYPE, id, Stamp::new(old.epoch, 1), 64, 1);
    write(&s, id, written.clone()).await?;
    let new = claim(&s, id, b, ClaimMode::Takeover).await?;
    if new.epoch <= old.epoch {
        return fail(format!(
            "the takeover got epoch {} after {}",
            new.epoch, old.epoch
        ));
    }
    match &new.snapshot {
        Some(bytes) => same(id, bytes, &written)?,
        None => return fail("the takeover's claim did not return the stored snapshot"),
    }
    match s
        .try_write(id, stamped(KIT_TYPE, id, Stamp::new(old.epoch, 2), 64, 2))
        .await
    {
        Err(e) => match e.downcast_ref::<Fenced>() {
            Some(fenced) if fenced.epoch == old.epoch && fenced.current == new.epoch => {}
            Some(fenced) => {
                return fail(format!(
                    "Fenced names epochs {} / {}, expected {} / {}",
                    fenced.epoch, fenced.current, old.epoch, new.epoch
                ));
            }
            None => {
                return fail(format!(
                    "the fenced owner's write failed with the wrong error: {e:#}"
                ));
            }
        },
        Ok(()) => return fail("the previous owner's write was accepted after a takeover"),
    }
    let newer = stamped(KIT_TYPE, id, Stamp::new(new.epoch, 2), 64, 3);
    write(&s, id, newer.clone()).await?;
    same(id, &read(&s, id).await?, &newer)?;
    // The fenced owner's release does not end the new claim.
    s.try_release(id, a, old.epoch)
        .await
        .map_err(|e| format!("release by the fenced owner failed: {e:#}"))?;
    refused_with::<OwnedElsewhere, _>(
        s.try_claim(id, a, ClaimMode::Exclusive).await,
        "an exclusive claim by the fenced owner after its release",
    )?;
    Ok(s)
}

async fn release<S: PersistentStorage>(s: S) -> Outcome<S> {
    let id = ActorId::new_v4();
    let (a, b) = (OwnerId::new(), OwnerId::new());
    let first = claim(&s, id, a, ClaimMode::Exclusive).await?;
    let written = stamped(KIT_TYPE, id, Stamp::new(first.epoch, 1), 64, 1);
    write(&s, id, written.clone()).await?;
    s.try_release(id, a, first.epoch)
        .await
        .map_err(|e| format!("release failed: {e:#}"))?;
    let second = claim(&s, id, b, ClaimMode::Exclusive).await?;
    if second.epoch <= first.epoch {
        return fail(format!(
            "the claim after a release has epoch {} after {}",
            second.epoch, first.epoch
        ));
    }
    match &second.snapshot {
        Some(bytes) => same(id, bytes, &written)?,
        None => return fail("the claim after a release did not return the stored snapshot"),
    }
    // The released owner is fenced like any other previous owner.
    refused_with::<Fenced, _>(
        s.try_write(id, stamped(KIT_TYPE, id, Stamp::new(first.epoch, 2), 64, 2))
            .await,
        "a write of the released epoch",
    )?;
    Ok(s)
}

async fn claim_race<S: PersistentStorage>(s: S) -> Outcome<S> {
    let id = ActorId::new_v4();
    let owners: Vec<OwnerId> = (0..16).map(|_| OwnerId::new()).collect();
    let claims = join_all(
        owners
            .iter()
            .map(|owner| s.try_claim(id, *owner, ClaimMode::Exclusive))
            .collect(),
    )
    .await;
    let mut winners = 0;
    for result in claims {
        match result {
            Ok(_) => winners += 1,
            Err(e) if e.is::<OwnedElsewhere>() => {}
            Err(e) => return fail(format!("a racing claim failed with the wrong error: {e:#}")),
        }
    }
    if winners != 1 {
        return fail(format!("{winners} of 16 racing exclusive claims won"));
    }
    Ok(s)
}

async fn epochs_across_reopen<H: Harness>(harness: &H, s: H::Storage) -> Outcome<H::Storage> {
    let id = ActorId::new_v4();
    let owner = OwnerId::new();
    let before = claim(&s, id, owner, ClaimMode::Exclusive).await?;
    write(
        &s,
        id,
        stamped(KIT_TYPE, id, Stamp::new(before.epoch, 1), 16, 1),
    )
    .await?;
    // A second id claimed but never written: its epoch must not come back either.
    let unwritten = ActorId::new_v4();
    let unwritten_before = claim(&s, unwritten, owner, ClaimMode::Exclusive).await?;
    let s = harness
        .reopen(s)
        .await
        .map_err(|e| format!("reopen failed: {e:#}"))?;
    let after = claim(&s, id, OwnerId::new(), ClaimMode::Takeover).await?;
    if after.epoch <= before.epoch {
        return fail(format!(
            "after a reopen the claim got epoch {} after {}",
            after.epoch, before.epoch
        ));
    }
    let unwritten_after = claim(&s, unwritten, OwnerId::new(), ClaimMode::Takeover).await?;
    if unwritten_after.epoch <= unwritten_before.epoch {
        return fail(format!(
            "after a reopen an unwritten id's claim got epoch {} after {}",
            unwritten_after.epoch, unwritten_before.epoch
        ));
    }
    Ok(s)
}

async fn stray<H: Harness>(harness: &H, s: H::Storage) -> Outcome<H::Storage> {
    let ids: Vec<ActorId> = (0..5).map(|_| ActorId::new_v4()).collect();
    for (i, id) in ids.iter().enumerate() {
        write(&s, *id, snapshot(1, 48, i as u64)).await?;
    }
    harness
        .litter(&s)
        .await
        .map_err(|e| format!("littering the store failed: {e:#}"))?;
    let s = harness
        .reopen(s)
        .await
        .map_err(|e| format!("reopen of a littered store failed: {e:#}"))?;
    for (i, id) in ids.iter().enumerate() {
        same(*id, &read(&s, *id).await?, &snapshot(1, 48, i as u64))?;
    }
    let mut listed = s
        .try_list()
        .await
        .map_err(|e| format!("list failed: {e:#}"))?;
    listed.sort();
    let mut want = ids.clone();
    want.sort();
    if listed != want {
        return fail(format!(
            "a littered store listed {} ids, expected exactly the {} written",
            listed.len(),
            want.len()
        ));
    }
    Ok(s)
}

async fn close<H: Harness>(harness: &H, s: H::Storage) -> Outcome<H::Storage> {
    let id = ActorId::new_v4();
    let kept = snapshot(1, 128, 1);
    write(&s, id, kept.clone()).await?;
    s.try_close()
        .await
        .map_err(|e| format!("close failed: {e:#}"))?;
    if s.try_write(id, snapshot(2, 128, 2)).await.is_ok() {
        return fail("a write after close was accepted");
    }
    if s.try_delete(id).await.is_ok() {
        return fail("a delete after close was accepted");
    }
    let s = harness
        .reopen(s)
        .await
        .map_err(|e| format!("reopen after close failed: {e:#}"))?;
    same(id, &read(&s, id).await?, &kept)?;
    Ok(s)
}

async fn failed_sync<H: Harness>(harness: &H, s: H::Storage) -> Result<Verdict, String> {
    let id = ActorId::new_v4();
    let kept = snapshot(1, 64, 1);
    write(&s, id, kept.clone()).await?;
    let injected = harness
        .fail_next_sync(&s)
        .await
        .map_err(|e| format!("injecting a sync failure failed: {e:#}"))?;
    if !injected {
        return Ok(Verdict::Skipped(
            "the harness cannot make this backend's syncs fail".into(),
        ));
    }
    if s.try_write(id, snapshot(2, 64, 2)).await.is_ok() {
        return fail("the write whose sync failed was acknowledged");
    }
    if s.try_write(id, snapshot(3, 64, 3)).await.is_ok() {
        return fail("a write after a failed sync was accepted before a reopen");
    }
    // The close's final flush cannot succeed on a store whose sync failed: it
    // reports that, as `try_close` promises.
    if s.try_close().await.is_ok() {
        return fail("close after a failed sync reported success");
    }
    let s = harness
        .reopen(s)
        .await
        .map_err(|e| format!("reopen after a failed sync failed: {e:#}"))?;
    let stored = read(&s, id).await?;
    // The refused write may or may not have reached the disk; the acknowledged
    // one is never lost, and whatever is read is whole.
    if stored != kept && stored != snapshot(2, 64, 2) {
        return fail(
            "after a failed sync the snapshot reads as neither the acknowledged one nor the refused one",
        );
    }
    write(&s, id, snapshot(4, 64, 4)).await?;
    Ok(Verdict::Passed)
}

/// Generates one `#[test]` per conformance [`Case`], named after the case, each
/// running it on a fresh store from the given [`Harness`] expression (evaluated
/// once per test) on a two-worker tokio runtime.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests! {
            @cases $harness;
            absent_is_not_found => AbsentIsNotFound,
            round_trip_0_bytes => RoundTripEmpty,
            round_trip_1_byte => RoundTripOneByte,
            round_trip_10_kib => RoundTrip10KiB,
            round_trip_16_mib => RoundTrip16MiB,
            overwrite_returns_latest => OverwriteReturnsLatest,
            prefix_ids_independent => PrefixIdsIndependent,
            parallel_100_ids_x_10_writes => ParallelWrites,
            delete_semantics => DeleteSemantics,
            stale_write_refused => StaleWriteRefused,
            concurrent_writers_higher_sequence_wins => ConcurrentWritersHigherWins,
            reopen_reads_identical_bytes => ReopenIdentical,
            list_is_the_live_set => ListIsLiveSet,
            equal_stamp_refused => EqualStampRefused,
            delete_keeps_a_tombstone => DeleteKeepsTombstone,
            oversized_write_refused => OversizedRefused,
            non_envelope_write_refused => NonEnvelopeRefused,
            concurrent_writers_one_whole_outcome => ConcurrentWritersOneOutcome,
            list_type_lists_one_actor_type => ListTypeIsOneType,
            exclusive_claim_refused_while_held => ExclusiveClaimRefusedWhileHeld,
            takeover_fences_the_previous_owner => TakeoverFencesPreviousOwner,
            release_frees_the_id => ReleaseFreesTheId,
            concurrent_claims_one_winner => ConcurrentClaimsOneWinner,
            epochs_grow_across_reopen => EpochsGrowAcrossReopen,
            stray_files_ignored => StrayFilesIgnored,
            close_refuses_later_writes => CloseRefusesLaterWrites,
            failed_sync_refuses_writes_until_reopen => FailedSyncRefusesWrites,
        }
    };
    (@cases $harness:expr; $($name:ident => $case:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            use $crate::persistence::conformance::{Case, run_case};
            let runtime = $crate::__private::tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime for the conformance case");
            let harness = $harness;
            match runtime.block_on(run_case(&harness, Case::$case)) {
                Ok($crate::persistence::conformance::Verdict::Passed) => {}
                Ok($crate::persistence::conformance::Verdict::Skipped(why)) => {
                    eprintln!("conformance case {} SKIPPED: {why}", Case::$case.name());
                }
                Err(e) => panic!("conformance case {}: {e}", Case::$case.name()),
            }
        }
    )*};
}
