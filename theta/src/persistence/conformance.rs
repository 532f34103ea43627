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

use super::{PersistentStorage, SnapshotNotFound, StaleSnapshot, envelope};

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
    /// Two concurrent writers of one id: the higher sequence survives.
    ConcurrentWritersHigherWins,
    /// After reopening, every snapshot reads back identical.
    ReopenIdentical,
    /// Listing returns exactly the ids with a live snapshot.
    ListIsLiveSet,
}

impl Case {
    /// Every case, in run order.
    pub const ALL: [Case; 13] = [
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
        }
    }
}

/// The outcome of [`run`]: each case by name.
#[derive(Debug, Clone)]
pub struct Report {
    /// `(case, Ok or the failure)`, in run order.
    pub results: Vec<(Case, Result<(), String>)>,
}

impl Report {
    /// Whether every case passed.
    pub fn passed(&self) -> bool {
        self.results.iter().all(|(_, r)| r.is_ok())
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
                Ok(()) => writeln!(f, "conformance {} ... ok", case.name())?,
                Err(e) => writeln!(f, "conformance {} ... FAILED: {e}", case.name())?,
            }
        }
        let failed = self.failures().len();
        write!(f, "{} passed, {failed} failed", self.results.len() - failed)
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
pub async fn run_case<H: Harness>(harness: &H, case: Case) -> Result<(), String> {
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
        }
    };
    match tokio::time::timeout(Duration::from_secs(60), body).await {
        Ok(Ok(_storage)) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("timed out after 60 s".into()),
    }
}

type Outcome<S> = Result<S, String>;

const KIT_TYPE: uuid::Uuid = uuid::uuid!("c0f0c0f0-0000-4000-8000-00000000c0de");

/// An envelope with a payload of `len` bytes derived from `seed`.
fn snapshot(sequence: u64, len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let payload: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    envelope::seal(KIT_TYPE, 0, sequence, &payload)
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
    // An equal sequence number is not older: it may replace (retries are allowed).
    Ok(s)
}

async fn concurrent<S: PersistentStorage>(s: S) -> Outcome<S> {
    let id = ActorId::new_v4();
    for round in 0..20u64 {
        let low = snapshot(round * 2 + 1, 512, round);
        let high = snapshot(round * 2 + 2, 512, round + 1000);
        let (a, b) = (s.try_write(id, low), s.try_write(id, high.clone()));
        let results = join_all(vec![
            Box::pin(a) as std::pin::Pin<Box<dyn Future<Output = _> + Send>>,
            Box::pin(b),
        ])
        .await;
        if let Some(Err(e)) = results.get(1) {
            return fail(format!("the higher write failed: {e:#}"));
        }
        if let Some(Err(e)) = results.first()
            && !e.is::<StaleSnapshot>()
        {
            return fail(format!(
                "the lower write failed with a non-stale error: {e:#}"
            ));
        }
        same(id, &read(&s, id).await?, &high)?;
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
            if let Err(e) = runtime.block_on(run_case(&harness, Case::$case)) {
                panic!("conformance case {}: {e}", Case::$case.name());
            }
        }
    )*};
}
