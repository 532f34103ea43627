//! The stable-toolchain stand-in for the cargo-fuzz target in `fuzz/`: arbitrary
//! bytes and mutated valid envelopes into `envelope::open`, `decode_payload` and
//! `decode_snapshot`. Nothing may panic; errors are expected. A mutated envelope
//! that still decodes must decode to the original value (only a CRC-32C collision
//! could do otherwise).
//!
//! Default: 8192 cases per property (about two seconds each in a debug build);
//! `PROPTEST_CASES=N` overrides. Each property prints how many inputs it ran.

mod common;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde::{Deserialize, Serialize};
use theta::ActorId;
use theta::persistence::{
    decode_payload, decode_snapshot, encode_payload, encode_snapshot, envelope,
};
use theta::prelude::*;

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
    /// Overwrite the payload length field (offset 36, u64 LE).
    Length(u64),
    /// Overwrite the length field with the real length ± a small delta.
    LengthOff(i8),
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
        1 => prop_oneof![
            any::<u64>(),
            Just(u64::MAX),
            Just(1u64 << 40),
            Just(envelope::DEFAULT_MAX_PAYLOAD as u64 + 1),
        ]
        .prop_map(Mutation::Length),
        1 => any::<i8>().prop_map(Mutation::LengthOff),
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
        Mutation::Length(value) if len >= 44 => {
            bytes[36..44].copy_from_slice(&value.to_le_bytes());
        }
        Mutation::LengthOff(delta) if len >= 44 => {
            let real = u64::from_le_bytes(bytes[36..44].try_into().unwrap());
            let value = real.wrapping_add_signed(i64::from(*delta));
            bytes[36..44].copy_from_slice(&value.to_le_bytes());
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

/// Feeds `bytes` to every decoder; returns what `decode_snapshot` made of it.
fn feed(bytes: &[u8]) -> Option<(Ledger, u64)> {
    EXECUTIONS.set(EXECUTIONS.get() + 1);
    let id = ActorId::from_u128(0xf022);
    if let Ok((header, payload)) = envelope::open(bytes, envelope::DEFAULT_MAX_PAYLOAD) {
        assert_eq!(envelope::Header::peek(bytes), Ok(header));
        assert_eq!(payload.len() as u64, header.payload_len);
    }
    let _ = decode_payload::<Ledger>(bytes);
    decode_snapshot::<Ledger>(id, bytes).ok()
}

/// Runs one property and prints its case and decoder-execution counts.
fn run<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let before = EXECUTIONS.get();
    let cases = AtomicU64::new(0);
    let started = std::time::Instant::now();
    let result = TestRunner::new(common::proptest_config(8192, file!())).run(&strategy, |value| {
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

#[test]
fn arbitrary_bytes_never_panic() {
    run(
        "arbitrary bytes",
        prop::collection::vec(any::<u8>(), 0..512),
        |bytes| {
            // Raw, and sealed as a valid envelope so the codec is reached behind
            // the checksum.
            feed(&bytes);
            let sealed = envelope::Seal::new(<Ledger as Actor>::TYPE_ID)
                .actor_id(ActorId::from_u128(0xf022))
                .sequence(9)
                .seal(&bytes);
            if let Some((value, sequence)) = feed(&sealed) {
                prop_assert_eq!(sequence, 9);
                // Whatever decodes re-encodes to bytes that decode to it again.
                let again: Ledger = decode_payload(&encode_payload(&value).unwrap()).unwrap();
                prop_assert_eq!(again, value);
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
        prop::collection::vec(any::<u8>(), 0..256),
        |rest| {
            let mut bytes = b"THSN\x01\x00".to_vec();
            bytes.extend_from_slice(&rest);
            // Decoding would need a matching CRC-32C and actor type uuid by chance.
            prop_assert!(feed(&bytes).is_none());
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
            prop::collection::vec(mutation(), 1..4),
        ),
        |(value, sequence, mutations)| {
            let id = ActorId::from_u128(0xf022);
            let original = encode_snapshot::<Ledger>(id, sequence, &value).unwrap();
            prop_assert_eq!(feed(&original), Some((value.clone(), sequence)));
            let mut bytes = original.clone();
            for m in &mutations {
                apply(&mut bytes, m);
            }
            if let Some((decoded, decoded_sequence)) = feed(&bytes) {
                prop_assert_eq!(&decoded, &value, "a mutation decoded to another value");
                prop_assert_eq!(decoded_sequence, sequence);
                prop_assert!(bytes == original, "changed bytes passed the checksum");
            }
            Ok(())
        },
    );
}
