//! Bad bytes through the whole restore path: every truncation, every bit flip,
//! empty, random, future-version, foreign-type and lying-length input. Each must be
//! the right typed error — never a panic, a wrong value or a large allocation.
//!
//! This test binary counts allocations with its own global allocator, so the
//! "never a large allocation" claim is measured, not assumed.

#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::within;
use serde::{Deserialize, Serialize};
use theta::persistence::{
    Codec, Compression, MemoryStorage, PersistenceError, PersistentActor, decode_payload,
    decode_payload_as, decode_snapshot, encode_payload, encode_snapshot, envelope,
};
use theta::prelude::*;

/// Records, per thread, the largest single allocation (or reallocation) made
/// since the last [`largest_allocation`] started. Per thread, because tests run
/// in parallel; a `#[tokio::test]` runs its actors on its own thread.
struct PeakAlloc;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
}

// SAFETY: delegates every call unchanged to the system allocator; it only records
// the requested size in a thread-local `Cell` (const-initialized, no destructor,
// so touching it never allocates).
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// The largest single allocation this thread made while `f` ran.
async fn largest_allocation<R>(f: impl Future<Output = R>) -> (R, usize) {
    LARGEST.set(0);
    let out = f.await;
    (out, LARGEST.get())
}

/// [`largest_allocation`] of a synchronous call.
fn largest_allocation_sync<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.set(0);
    let out = f();
    (out, LARGEST.get())
}

const MIB: usize = 1 << 20;

/// The length claims every decoder is tried with: absurd, and just under the
/// 1 GiB ceiling and at the default 64 MiB limit, where a decoder that trusts
/// its limit instead of the bytes present would still allocate.
const CLAIMS: [u64; 3] = [1 << 40, (1 << 30) - 64, 64 << 20];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ActorArgs)]
struct Ledger {
    owner: String,
    entries: Vec<i64>,
    blob: Vec<u8>,
}

#[derive(Debug)]
struct Read;

#[actor("51f4a8c2-6d3e-4b7a-8e9f-0a1b2c3d4e5f", snapshot)]
impl Actor for Ledger {
    const _: () = {
        async |_: Read| -> Ledger { self.clone() };
    };
}

fn sample() -> Ledger {
    Ledger {
        owner: "ada".into(),
        entries: vec![1, -2, 3],
        blob: vec![9; 5],
    }
}

/// Where `restore` plants its bytes.
const ID: ActorId = ActorId::from_u128(0x5eed_0001);

/// `payload` in a valid envelope of `actor_type`, bound to [`ID`].
fn seal_as(actor_type: uuid::Uuid, sequence: u64, payload: &[u8]) -> Vec<u8> {
    envelope::Seal::new(actor_type)
        .actor_id(ID)
        .sequence(sequence)
        .seal(payload)
}

fn sealed(value: &Ledger, sequence: u64) -> Vec<u8> {
    seal_as(
        <Ledger as Actor>::TYPE_ID,
        sequence,
        &encode_payload(value).unwrap(),
    )
}

/// Restores from `bytes` with `respawn_or`; returns the error (a restore that
/// succeeds must give back exactly `sample()`).
async fn restore(bytes: Vec<u8>) -> Option<PersistenceError> {
    let storage = MemoryStorage::new();
    let id = ID;
    storage.insert_raw(id, bytes);
    let root = RootContext::default();
    match within("respawn_or", root.respawn_or(&storage, id, || (), sample)).await {
        Ok(actor) => {
            assert_eq!(within("read", actor.ask(Read)).await.unwrap(), sample());
            None
        }
        Err(err) => {
            assert_eq!(err.actor_id(), id);
            assert!(!root.is_live(id));
            Some(err)
        }
    }
}

#[tokio::test]
async fn every_truncation_is_a_corrupt_error() {
    let bytes = sealed(&sample(), 3);
    for len in 0..bytes.len() {
        let err = restore(bytes[..len].to_vec())
            .await
            .unwrap_or_else(|| panic!("truncation to {len} bytes restored"));
        assert!(
            matches!(err, PersistenceError::Corrupt { .. }),
            "len {len}: {err}"
        );
    }
    assert!(
        restore(bytes).await.is_none(),
        "the intact snapshot restores"
    );
}

#[tokio::test]
async fn every_single_bit_flip_is_detected() {
    let bytes = sealed(&sample(), 3);
    for bit in 0..bytes.len() * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let err = restore(damaged)
            .await
            .unwrap_or_else(|| panic!("bit {bit} flipped and the snapshot still restored"));
        // The magic and version bytes name their own errors; anything else is a
        // checksum (or length) failure. None may decode.
        assert!(
            matches!(
                err,
                PersistenceError::Corrupt { .. } | PersistenceError::UnsupportedEnvelope { .. }
            ),
            "bit {bit}: {err}"
        );
    }
}

#[tokio::test]
async fn empty_and_random_input_are_errors() {
    assert!(matches!(
        restore(Vec::new()).await,
        Some(PersistenceError::Corrupt { .. })
    ));
    let mut state = 0x1234_5678_9abc_def0u64;
    for len in [1usize, 3, 4, 47, 48, 49, 100, 4096] {
        for _ in 0..20 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let err = restore(bytes).await.expect("random bytes never restore");
            assert!(matches!(err, PersistenceError::Corrupt { .. }), "{err}");
        }
    }
}

#[tokio::test]
async fn a_future_envelope_version_is_named() {
    let mut bytes = sealed(&sample(), 1);
    bytes[4..6].copy_from_slice(&3u16.to_le_bytes());
    let err = restore(bytes).await.unwrap();
    assert!(
        matches!(
            err,
            PersistenceError::UnsupportedEnvelope {
                found: 3,
                supported: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_foreign_actor_type_is_refused() {
    let payload = encode_payload(&sample()).unwrap();
    let foreign = uuid::Uuid::new_v4();
    let err = restore(seal_as(foreign, 1, &payload)).await.unwrap();
    assert!(
        matches!(err, PersistenceError::TypeMismatch { found, .. } if found == foreign),
        "{err}"
    );
}

#[tokio::test]
async fn lying_lengths_never_allocate_what_they_claim() {
    for claim in CLAIMS {
        // The envelope claims the payload or its decoded length.
        for at in [60, 68] {
            let mut bytes = sealed(&sample(), 1);
            bytes[at..at + 8].copy_from_slice(&claim.to_le_bytes());
            let (err, largest) = largest_allocation(restore(bytes)).await;
            let err = err.unwrap();
            assert!(
                matches!(err, PersistenceError::Corrupt { .. }),
                "claim {claim} at {at}: {err}"
            );
            assert!(largest < MIB, "claim {claim} at {at}: allocated {largest}");
        }

        // A valid envelope whose payload's inner length prefix claims `claim`
        // bytes for `owner` (bincode varint: 0xfd + u64)...
        let mut payload = vec![0xfd];
        payload.extend_from_slice(&claim.to_le_bytes());
        payload.extend_from_slice(b"ada");
        // ...or for the `entries` vector, or for the `blob` bytes.
        let mut entries = encode_payload(&"ada".to_string()).unwrap();
        entries.push(0xfd);
        entries.extend_from_slice(&claim.to_le_bytes());
        let mut blob = encode_payload(&("ada".to_string(), Vec::<i64>::new())).unwrap();
        blob.push(0xfd);
        blob.extend_from_slice(&claim.to_le_bytes());
        blob.extend_from_slice(&[1, 2, 3]);
        for (what, payload) in [("owner", payload), ("entries", entries), ("blob", blob)] {
            let bytes = seal_as(<Ledger as Actor>::TYPE_ID, 1, &payload);
            let (err, largest) = largest_allocation(restore(bytes)).await;
            let err = err.unwrap();
            assert!(
                matches!(err, PersistenceError::Decode { .. }),
                "{what} claims {claim}: {err}"
            );
            // serde preallocates a sequence of at most 1 MiB, whatever it claims.
            assert!(
                largest <= MIB + 4096,
                "{what} claims {claim}: allocated {largest}"
            );
        }
    }
}

/// The six bytes that made `decode_payload` allocate 131 MB: a string whose
/// 4-byte varint prefix claims 131,072,000 bytes, then one byte.
#[test]
fn six_bytes_do_not_allocate_what_they_claim() {
    let bytes = [0xfc, 0x00, 0x00, 0xd0, 0x07, b'a'];
    let (result, largest) = largest_allocation_sync(|| decode_payload::<Ledger>(&bytes));
    let err = result.unwrap_err();
    assert!(err.to_string().contains("Ledger` with bincode"), "{err}");
    assert!(largest < 64 << 10, "allocated {largest}");
    let (result, largest) = largest_allocation_sync(|| decode_payload::<String>(&bytes));
    assert!(result.is_err());
    assert!(largest < 64 << 10, "allocated {largest}");
}

/// The 60-byte version-1 envelope with a valid checksum that made a restore
/// allocate 1,073,741,760 bytes (its `owner` prefix claims 1 GiB − 64).
#[test]
fn the_60_byte_envelope_does_not_allocate_a_gigabyte() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Owner {
        owner: String,
    }
    struct Target;
    impl Actor for Target {
        type Msg = ();
        const TYPE_ID: uuid::Uuid = uuid::uuid!("f022f022-0000-4000-8000-00000000f022");
        async fn process_msg(&mut self, _: &Context<Self>, _: ()) {}
    }
    impl From<&Target> for Owner {
        fn from(_: &Target) -> Self {
            Owner {
                owner: String::new(),
            }
        }
    }
    impl ActorArgs for Owner {
        type Actor = Target;
        async fn initialize(_: Context<Target>, _: &Self) -> Target {
            Target
        }
    }
    impl PersistentActor for Target {
        type Snapshot = Owner;
        type RuntimeArgs = ();
        type ActorArgs = Owner;
        const MAX_SNAPSHOT_BYTES: usize = envelope::MAX_PAYLOAD;
        fn persistent_args(snapshot: Owner, _: ()) -> Owner {
            snapshot
        }
    }
    const HEX: &str = "5448534e01000100f022f02200004000800000000000f0220000000001000000000000000c00000000000000fdc0ffff3f000000006164619665386b";
    let bytes: Vec<u8> = (0..HEX.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&HEX[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(bytes.len(), 60);
    envelope::open(&bytes, envelope::MAX_PAYLOAD).expect("a valid envelope");
    let (result, largest) =
        largest_allocation_sync(|| decode_snapshot::<Target>(ActorId::from_u128(1), &bytes));
    let err = result.unwrap_err();
    assert!(matches!(err, PersistenceError::Decode { .. }), "{err}");
    assert!(largest < 64 << 10, "allocated {largest}");
}

/// MessagePack strings, binaries, arrays and maps whose 32-bit length claims
/// just under the ceiling.
#[tokio::test]
async fn msgpack_lengths_never_allocate_what_they_claim() {
    for claim in [u32::MAX, (1 << 30) - 64, 64 << 20] {
        let claimed = claim.to_be_bytes();
        // {"owner": <str32 claim> "ada"}
        let mut owner = vec![0x83, 0xa5];
        owner.extend_from_slice(b"owner");
        owner.push(0xdb);
        owner.extend_from_slice(&claimed);
        owner.extend_from_slice(b"ada");
        // {"owner": "ada", "entries": <array32 claim> 1 2 3}
        let mut entries = vec![0x83, 0xa5];
        entries.extend_from_slice(b"owner");
        entries.extend_from_slice(&[0xa3, b'a', b'd', b'a', 0xa7]);
        entries.extend_from_slice(b"entries");
        entries.push(0xdd);
        entries.extend_from_slice(&claimed);
        entries.extend_from_slice(&[1, 2, 3]);
        // {"owner": <bin32 claim> ...}: a binary where a string is expected.
        let mut binary = vec![0x83, 0xa5];
        binary.extend_from_slice(b"owner");
        binary.push(0xc6);
        binary.extend_from_slice(&claimed);
        binary.extend_from_slice(b"ada");
        // An unknown key whose map claims `claim` entries.
        let mut map = vec![0x81, 0xa1, b'x', 0xdf];
        map.extend_from_slice(&claimed);
        map.extend_from_slice(&[1, 2]);
        for (what, payload) in [
            ("owner", owner),
            ("entries", entries),
            ("binary", binary),
            ("map", map),
        ] {
            let (result, largest) = largest_allocation_sync(|| {
                decode_payload_as::<Ledger>(Codec::MessagePack, &payload)
            });
            assert!(result.is_err(), "{what} claims {claim}");
            assert!(
                largest <= MIB + 4096,
                "{what} claims {claim}: allocated {largest}"
            );
            let bytes = envelope::Seal::new(<Ledger as Actor>::TYPE_ID)
                .actor_id(ID)
                .sequence(1)
                .codec(envelope::CODEC_MSGPACK)
                .seal(&payload);
            let (err, largest) = largest_allocation(restore(bytes)).await;
            let err = err.unwrap();
            assert!(
                matches!(err, PersistenceError::Decode { .. }),
                "{what} claims {claim}: {err}"
            );
            assert!(
                largest <= MIB + 4096,
                "{what} claims {claim}: allocated {largest}"
            );
        }
    }
}

/// A ledger type allowed the whole 1 GiB, so that decoded-length claims just
/// under the ceiling pass the envelope and reach the decompressor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct BigLedger(Ledger);

impl Actor for BigLedger {
    type Msg = ();
    const TYPE_ID: uuid::Uuid = uuid::uuid!("51f4a8c2-6d3e-4b7a-8e9f-0a1b2c3d4e60");
    async fn process_msg(&mut self, _: &Context<Self>, _: ()) {}
}

impl From<&BigLedger> for BigLedger {
    fn from(ledger: &BigLedger) -> Self {
        ledger.clone()
    }
}

impl ActorArgs for BigLedger {
    type Actor = BigLedger;
    async fn initialize(_: Context<BigLedger>, args: &Self) -> BigLedger {
        args.clone()
    }
}

impl PersistentActor for BigLedger {
    type Snapshot = BigLedger;
    type RuntimeArgs = ();
    type ActorArgs = BigLedger;
    const MAX_SNAPSHOT_BYTES: usize = envelope::MAX_PAYLOAD;
    fn persistent_args(snapshot: BigLedger, _: ()) -> BigLedger {
        snapshot
    }
}

/// A zstd frame of `real` whose header declares `claim` content bytes instead
/// (a single-segment frame with a 4-byte content size).
fn zstd_frame_claiming(real: &[u8], claim: u32) -> Vec<u8> {
    let honest = Compression::Zstd.compress(real);
    // theta's frame of a short payload: magic, a descriptor saying "single
    // segment, 1-byte content size, no checksum", the size, the blocks.
    assert_eq!(honest[4], 0x20, "frame header descriptor");
    let mut frame = honest[..4].to_vec();
    frame.push(0xa0);
    frame.extend_from_slice(&claim.to_le_bytes());
    frame.extend_from_slice(&honest[6..]);
    frame
}

#[test]
fn decompression_never_allocates_what_a_frame_claims() {
    let id = ActorId::from_u128(2);
    let payload = encode_payload(&BigLedger(sample())).unwrap();
    for claim in [(1u32 << 30) - 64, 64 << 20] {
        let lz4 = Compression::Lz4.compress(&payload);
        let zstd = zstd_frame_claiming(&payload, claim);
        for (compression, stored) in [(Compression::Lz4, lz4), (Compression::Zstd, zstd)] {
            let (result, largest) =
                largest_allocation_sync(|| compression.decompress(&stored, claim as usize));
            assert!(result.is_err(), "{compression} claims {claim}");
            // libzstd's own buffers are bounded by its 2 MiB window.
            assert!(
                largest < 4 * MIB,
                "{compression} claims {claim}: allocated {largest}"
            );
            let bytes = envelope::Seal::new(<BigLedger as Actor>::TYPE_ID)
                .actor_id(id)
                .compressed(compression.id(), claim.into())
                .seal(&stored);
            let (result, largest) =
                largest_allocation_sync(|| decode_snapshot::<BigLedger>(id, &bytes));
            let err = result.unwrap_err();
            assert!(
                matches!(err, PersistenceError::Decode { .. }),
                "{compression} claims {claim}: {err}"
            );
            assert!(
                largest < 4 * MIB,
                "{compression} claims {claim}: allocated {largest}"
            );
        }
    }
    // A zstd frame asking for a 1 GiB window is refused before its buffers exist.
    let mut wide = zstd_frame_claiming(&payload, 1 << 30);
    wide[4] = 0x80; // not single segment: a window descriptor follows
    wide.insert(5, 20 << 3); // window log 30
    let (result, largest) =
        largest_allocation_sync(|| Compression::Zstd.decompress(&wide, 1 << 30));
    assert!(result.is_err());
    assert!(largest < 4 * MIB, "allocated {largest}");
}

/// 16 MiB of state in 4 KiB pages, persisted with codec `C` (0 bincode, 1
/// msgpack) under a 1 MiB limit. No single allocation of the state (or of its
/// clone, the snapshot) is large, so the largest one of a save is the encoder's.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Hoard<const C: u8> {
    pages: Vec<String>,
}

impl<const C: u8> Actor for Hoard<C> {
    type Msg = ();
    const TYPE_ID: uuid::Uuid = uuid::uuid!("51f4a8c2-6d3e-4b7a-8e9f-0a1b2c3d4e61");
    async fn process_msg(&mut self, _: &Context<Self>, _: ()) {}
}

impl<const C: u8> From<&Hoard<C>> for Hoard<C> {
    fn from(h: &Hoard<C>) -> Self {
        h.clone()
    }
}

impl<const C: u8> ActorArgs for Hoard<C> {
    type Actor = Hoard<C>;
    async fn initialize(_: Context<Hoard<C>>, args: &Self) -> Hoard<C> {
        args.clone()
    }
}

impl<const C: u8> PersistentActor for Hoard<C> {
    type Snapshot = Hoard<C>;
    type RuntimeArgs = ();
    type ActorArgs = Hoard<C>;
    const MAX_SNAPSHOT_BYTES: usize = MIB;
    const CODEC: Codec = [Codec::Bincode, Codec::MessagePack][C as usize];
    const COMPRESSION: Compression = Compression::Zstd;
    fn persistent_args(snapshot: Hoard<C>, _: ()) -> Hoard<C> {
        snapshot
    }
}

fn hoard<const C: u8>() -> Hoard<C> {
    Hoard {
        pages: (0..4096).map(|i| format!("{i:04}").repeat(1024)).collect(),
    }
}

/// A save over the limit stops encoding at the limit: it never holds (or
/// reserves) more than the limit, however large the state, and even though
/// the state would compress below it (the limit is on what a reader holds).
#[test]
fn encoding_stops_at_the_size_limit() {
    let frame = envelope::HEADER_LEN + envelope::TRAILER_LEN;
    let bincode = hoard::<0>();
    let (result, largest) =
        largest_allocation_sync(|| encode_snapshot(ActorId::from_u128(3), 1, &bincode));
    let err = result.unwrap_err();
    assert!(
        matches!(err, PersistenceError::TooLarge { size, limit: MIB, .. } if size > MIB),
        "{err}"
    );
    assert!(largest <= MIB + frame, "bincode: allocated {largest}");

    let msgpack = hoard::<1>();
    let (result, largest) =
        largest_allocation_sync(|| encode_snapshot(ActorId::from_u128(3), 1, &msgpack));
    let err = result.unwrap_err();
    assert!(
        matches!(err, PersistenceError::TooLarge { limit: MIB, .. }),
        "{err}"
    );
    assert!(largest <= MIB + frame, "msgpack: allocated {largest}");
}

#[tokio::test]
async fn trailing_bytes_after_the_snapshot_are_an_error() {
    let mut payload = encode_payload(&sample()).unwrap();
    payload.push(0);
    let err = restore(seal_as(<Ledger as Actor>::TYPE_ID, 1, &payload))
        .await
        .unwrap();
    assert!(matches!(err, PersistenceError::Decode { .. }), "{err}");
}
