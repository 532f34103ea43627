//! The stable-toolchain stand-in for the cargo-fuzz target in `fuzz/`: arbitrary
//! bytes and mutated valid envelopes (bincode, MessagePack, LZ4- and
//! zstd-compressed) into `envelope::open`, both codecs' payload decoders, both
//! decompressors and `decode_snapshot`. Nothing may panic; errors are expected. A
//! mutated envelope that still decodes must decode to the original value (only a
//! CRC-32C collision could do otherwise). And no input may allocate more than
//! 64 MiB, in all or in one allocation: a counting global allocator fails the
//! case that does (the cap `cargo xtask fuzz` gives libFuzzer with
//! `-malloc_limit_mb=64`, and its targets' allocator, `fuzz/src/alloc_cap.rs`).
//!
//! This binary has its own global allocator (per thread, like the runner).
//!
//! Default: 8192 cases per property (about two seconds each in a debug build);
//! `PROPTEST_CASES=N` overrides. Each property prints how many inputs it ran.

#![allow(unsafe_code)]

mod proptest_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde::{Deserialize, Serialize};
use theta::ActorId;
use theta::persistence::{
    Codec, Compression, PersistentActor, decode_payload, decode_payload_as, decode_snapshot,
    encode_payload, encode_snapshot, envelope,
};
use theta::prelude::*;

/// Counts, per thread, the bytes allocated since [`feed`] started on it, and
/// the largest single allocation.
struct CountingAlloc;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// What one input may allocate in all, and in one allocation.
const PER_INPUT_CAP: usize = 64 << 20;

fn count(size: usize) {
    let _ = ALLOCATED.try_with(|total| total.set(total.get().saturating_add(size)));
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
}

// SAFETY: delegates every call unchanged to the system allocator; it only adds
// the requested size to thread-local `Cell`s (const-initialized, no destructor,
// so touching them never allocates).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ActorArgs)]
struct Ledger {
    owner: String,
    entries: Vec<i64>,
    small: (u8, u16, u32),
    tags: BTreeMap<String, u32>,
    note: Option<String>,
    kind: Kind,
    blob: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Kind {
    Personal,
    Joint(u64),
    Shared { members: Vec<String> },
}

#[actor("f0220000-0000-4000-8000-00000000f022", snapshot)]
impl Actor for Ledger {}

/// The same ledger, saved as MessagePack and compressed with `Z` (1 LZ4, 2
/// zstd): the other decoders behind the checksum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Packed<const Z: u8>(Ledger);

impl<const Z: u8> theta::Actor for Packed<Z> {
    type Msg = ();
    const TYPE_ID: uuid::Uuid = uuid::uuid!("f0220000-0000-4000-8000-00000000f023");
    async fn process_msg(&mut self, _: &Context<Self>, _: ()) {}
}

impl<const Z: u8> From<&Packed<Z>> for Packed<Z> {
    fn from(p: &Packed<Z>) -> Self {
        p.clone()
    }
}

impl<const Z: u8> ActorArgs for Packed<Z> {
    type Actor = Packed<Z>;
    async fn initialize(_: Context<Packed<Z>>, args: &Self) -> Packed<Z> {
        args.clone()
    }
}

impl<const Z: u8> PersistentActor for Packed<Z> {
    type Snapshot = Packed<Z>;
    type RuntimeArgs = ();
    type ActorArgs = Packed<Z>;
    const CODEC: Codec = Codec::MessagePack;
    const COMPRESSION: Compression =
        [Compression::None, Compression::Lz4, Compression::Zstd][Z as usize];
    fn persistent_args(snapshot: Packed<Z>, _: ()) -> Packed<Z> {
        snapshot
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Personal),
        any::<u64>().prop_map(Kind::Joint),
        prop::collection::vec(".{0,6}", 0..4).prop_map(|members| Kind::Shared { members }),
    ]
}

fn ledger() -> impl Strategy<Value = Ledger> {
    (
        ".{0,12}",
        prop::collection::vec(any::<i64>(), 0..8),
        any::<(u8, u16, u32)>(),
        prop::collection::btree_map(".{0,6}", any::<u32>(), 0..4),
        prop::option::of(".{0,12}"),
        kind(),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(owner, entries, small, tags, note, kind, blob)| Ledger {
            owner,
            entries,
            small,
            tags,
            note,
            kind,
            blob,
        })
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Flip bit `bit` of the byte at `at` (positions are taken modulo the length).
    BitFlip { at: usize, bit: u8 },
    /// Set one byte.
    Byte { at: usize, value: u8 },
    /// Keep only the first `len` bytes.
    Truncate { len: usize },
    /// Replace `remove` bytes at `at` with `insert`.
    Splice {
        at: usize,
        remove: usize,
        insert: Vec<u8>,
    },
    /// Overwrite a version-2 length field (`at` 0: payload length at offset 60;
    /// 1: decoded length at offset 68; u64 LE).
    Length { at: u8, value: u64 },
    /// Overwrite a length field with its real value ± a small delta.
    LengthOff { at: u8, delta: i8 },
    /// Append bytes.
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), 0..8u8).prop_map(|(at, bit)| Mutation::BitFlip { at, bit }),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::Byte { at, value }),
        2 => any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        2 => (any::<usize>(), 0..16usize, prop::collection::vec(any::<u8>(), 0..16))
            .prop_map(|(at, remove, insert)| Mutation::Splice { at, remove, insert }),
        1 => (0..2u8, prop_oneof![
            any::<u64>(),
            Just(u64::MAX),
            Just(1u64 << 40),
            Just(envelope::MAX_PAYLOAD as u64 - 64),
            Just(envelope::DEFAULT_MAX_PAYLOAD as u64),
            Just(envelope::DEFAULT_MAX_PAYLOAD as u64 + 1),
        ])
        .prop_map(|(at, value)| Mutation::Length { at, value }),
        1 => (0..2u8, any::<i8>()).prop_map(|(at, delta)| Mutation::LengthOff { at, delta }),
        1 => prop::collection::vec(any::<u8>(), 1..16).prop_map(Mutation::Append),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match m {
        Mutation::BitFlip { at, bit } if len > 0 => bytes[at % len] ^= 1 << bit,
        Mutation::Byte { at, value } if len > 0 => bytes[at % len] = *value,
        Mutation::Truncate { len: keep } => bytes.truncate(keep % (len + 1)),
        Mutation::Splice { at, remove, insert } => {
            let at = at % (len + 1);
            let end = (at + remove).min(len);
            bytes.splice(at..end, insert.iter().copied());
        }
        Mutation::Length { at, value } if len >= envelope::HEADER_LEN => {
            let at = 60 + 8 * usize::from(*at);
            bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }
        Mutation::LengthOff { at, delta } if len >= envelope::HEADER_LEN => {
            let at = 60 + 8 * usize::from(*at);
            let real = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
            let value = real.wrapping_add_signed(i64::from(*delta));
            bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }
        Mutation::Append(extra) => bytes.extend_from_slice(extra),
        _ => {}
    }
}

thread_local! {
    /// Decoder runs on this thread: a property runs all its cases on its test's
    /// thread, while the tests themselves run in parallel.
    static EXECUTIONS: Cell<u64> = const { Cell::new(0) };
}

/// What one input made of the decoders.
#[derive(Debug, PartialEq)]
struct Fed {
    /// What `decode_snapshot::<Ledger>` returned.
    ledger: Option<(Ledger, u64)>,
    /// What `decode_snapshot` of the MessagePack + LZ4 and + zstd ledgers
    /// returned.
    packed: [Option<(Ledger, u64)>; 2],
}

/// Feeds `bytes` to every decoder; fails the case if that allocated more than
/// [`PER_INPUT_CAP`] bytes, in all or in one allocation.
fn feed(bytes: &[u8]) -> Result<Fed, TestCaseError> {
    EXECUTIONS.set(EXECUTIONS.get() + 1);
    let (fed, allocated, largest) = measured(|| decode_all(bytes));
    prop_assert!(
        largest <= PER_INPUT_CAP,
        "one input made an allocation of {largest} bytes"
    );
    prop_assert!(
        allocated <= PER_INPUT_CAP,
        "one input allocated {allocated} bytes in all"
    );
    Ok(fed)
}

/// Runs `f`; what it returned, the bytes it allocated on this thread in all,
/// and its largest single allocation.
fn measured<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    ALLOCATED.set(0);
    LARGEST.set(0);
    let out = f();
    (out, ALLOCATED.get(), LARGEST.get())
}

/// `bytes` into every decoder.
fn decode_all(bytes: &[u8]) -> Fed {
    let id = ActorId::from_u128(0xf022);
    if let Ok((header, payload)) = envelope::open(bytes, envelope::DEFAULT_MAX_PAYLOAD) {
        assert_eq!(envelope::Header::peek(bytes), Ok(header));
        assert_eq!(payload.len() as u64, header.payload_len);
    }
    let _ = decode_payload::<Ledger>(bytes);
    let _ = decode_payload_as::<Ledger>(Codec::MessagePack, bytes);
    for compression in [Compression::Lz4, Compression::Zstd] {
        let _ = compression.decompress(bytes, bytes.len().saturating_mul(4));
    }
    Fed {
        ledger: decode_snapshot::<Ledger>(id, bytes).ok(),
        packed: [
            decode_snapshot::<Packed<1>>(id, bytes)
                .ok()
                .map(|(p, s)| (p.0, s)),
            decode_snapshot::<Packed<2>>(id, bytes)
                .ok()
                .map(|(p, s)| (p.0, s)),
        ],
    }
}

#[test]
fn the_allocation_cap_sees_untouched_and_accumulated_allocations() {
    // One allocation over the cap, never touched.
    let (_, allocated, largest) =
        measured(|| std::hint::black_box(Vec::<u8>::with_capacity(PER_INPUT_CAP + 1)));
    assert!(largest > PER_INPUT_CAP && allocated > PER_INPUT_CAP);
    // Many under it that add up to more (a growing buffer counts every size).
    let (_, allocated, largest) = measured(|| {
        (0..80)
            .map(|_| std::hint::black_box(Vec::<u8>::with_capacity(1 << 20)))
            .collect::<Vec<_>>()
    });
    assert!(largest < PER_INPUT_CAP && allocated > PER_INPUT_CAP);
    // And a small decode stays far below it.
    let (_, allocated, _) = measured(|| decode_all(b"THSN"));
    assert!(allocated < 1 << 20, "{allocated}");
}

/// Runs one property and prints its case and decoder-execution counts.
fn run<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let before = EXECUTIONS.get();
    let cases = AtomicU64::new(0);
    let started = std::time::Instant::now();
    let result =
        TestRunner::new(proptest_support::proptest_config(8192, file!())).run(&strategy, |value| {
            cases.fetch_add(1, Ordering::Relaxed);
            test(value)
        });
    eprintln!(
        "fuzz_envelope {name}: {} cases, {} inputs decoded, {:.2} s",
        cases.into_inner(),
        EXECUTIONS.get() - before,
        started.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

const ID: ActorId = ActorId::from_u128(0xf022);

/// `payload` sealed as a valid envelope of `actor_type` with `codec` and
/// `compression` declaring `decoded_len`, so the decoders are reached behind
/// the checksum.
fn seal(
    actor_type: uuid::Uuid,
    codec: Codec,
    compression: Compression,
    decoded_len: u64,
    payload: &[u8],
) -> Vec<u8> {
    envelope::Seal::new(actor_type)
        .actor_id(ID)
        .sequence(9)
        .codec(codec.id())
        .compressed(compression.id(), decoded_len)
        .seal(payload)
}

#[test]
fn arbitrary_bytes_never_panic() {
    run(
        "arbitrary bytes",
        (prop::collection::vec(any::<u8>(), 0..512), 0..4096u64),
        |(bytes, decoded_len)| {
            feed(&bytes)?;
            let ledger = <Ledger as Actor>::TYPE_ID;
            let packed = <Packed<1> as Actor>::TYPE_ID;
            let len = bytes.len() as u64;
            for sealed in [
                seal(ledger, Codec::Bincode, Compression::None, len, &bytes),
                seal(ledger, Codec::MessagePack, Compression::None, len, &bytes),
                seal(
                    packed,
                    Codec::MessagePack,
                    Compression::Lz4,
                    decoded_len,
                    &bytes,
                ),
                seal(
                    packed,
                    Codec::MessagePack,
                    Compression::Zstd,
                    decoded_len,
                    &bytes,
                ),
            ] {
                let fed = feed(&sealed)?;
                for (value, sequence) in fed
                    .ledger
                    .into_iter()
                    .chain(fed.packed.into_iter().flatten())
                {
                    prop_assert_eq!(sequence, 9);
                    // Whatever decodes re-encodes to bytes that decode to it again.
                    let again: Ledger = decode_payload(&encode_payload(&value).unwrap()).unwrap();
                    prop_assert_eq!(again, value);
                }
            }
            Ok(())
        },
    );
}

#[test]
fn arbitrary_headers_never_panic() {
    // A valid magic and version with an arbitrary rest reaches the length and
    // checksum checks, which random bytes almost never do.
    run(
        "arbitrary bytes after a valid magic and version",
        (1..3u16, prop::collection::vec(any::<u8>(), 0..256)),
        |(version, rest)| {
            let mut bytes = b"THSN".to_vec();
            bytes.extend_from_slice(&version.to_le_bytes());
            bytes.extend_from_slice(&rest);
            // Decoding would need a matching CRC-32C and actor type uuid by chance.
            let fed = feed(&bytes)?;
            prop_assert_eq!(
                fed,
                Fed {
                    ledger: None,
                    packed: [None, None]
                }
            );
            Ok(())
        },
    );
}

#[test]
fn mutated_envelopes_never_decode_to_a_different_value() {
    run(
        "mutated envelopes",
        (
            ledger(),
            any::<u64>(),
            0..3usize,
            prop::collection::vec(mutation(), 1..4),
        ),
        |(value, sequence, kind, mutations)| {
            // A bincode ledger, or a MessagePack one compressed with LZ4 or
            // zstd (a long note so that compression applies).
            let value = if kind == 0 {
                value
            } else {
                Ledger {
                    note: Some("the ledger balanced again; ".repeat(8)),
                    ..value
                }
            };
            let original = match kind {
                0 => encode_snapshot::<Ledger>(ID, sequence, &value),
                1 => encode_snapshot::<Packed<1>>(ID, sequence, &Packed(value.clone())),
                _ => encode_snapshot::<Packed<2>>(ID, sequence, &Packed(value.clone())),
            }
            .unwrap();
            let decoded = |fed: Fed| match kind {
                0 => fed.ledger,
                1 => fed.packed[0].clone(),
                _ => fed.packed[1].clone(),
            };
            prop_assert_eq!(decoded(feed(&original)?), Some((value.clone(), sequence)));
            let mut bytes = original.clone();
            for m in &mutations {
                apply(&mut bytes, m);
            }
            if let Some((decoded, decoded_sequence)) = decoded(feed(&bytes)?) {
                prop_assert_eq!(&decoded, &value, "a mutation decoded to another value");
                prop_assert_eq!(decoded_sequence, sequence);
                prop_assert!(bytes == original, "changed bytes passed the checksum");
            }
            Ok(())
        },
    );
}
