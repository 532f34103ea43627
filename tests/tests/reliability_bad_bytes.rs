//! Bad bytes through the whole restore path: every truncation, every bit flip,
//! empty, random, future-version, foreign-type and lying-length input. Each must be
//! the right typed error — never a panic, a wrong value or a large allocation.
//!
//! This test binary counts allocations with its own global allocator, so the
//! "never a large allocation" claim is measured, not assumed.

#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::within;
use serde::{Deserialize, Serialize};
use theta::persistence::{MemoryStorage, PersistenceError, encode_payload, envelope};
use theta::prelude::*;

/// Records the largest single allocation made since the last reset.
struct PeakAlloc;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: delegates every call unchanged to the system allocator; it only records
// the requested size.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

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
    // The envelope claims a 1 TB payload.
    let mut bytes = sealed(&sample(), 1);
    bytes[60..68].copy_from_slice(&(1u64 << 40).to_le_bytes());
    LARGEST.store(0, Ordering::Relaxed);
    let err = restore(bytes).await.unwrap();
    assert!(
        matches!(
            err,
            PersistenceError::Corrupt {
                source: envelope::EnvelopeError::TooLarge { .. },
                ..
            }
        ),
        "{err}"
    );

    // A valid envelope whose payload's inner length prefix claims ~1 TB for
    // `owner` (bincode varint: 0xfd + u64).
    let mut payload = vec![0xfd];
    payload.extend_from_slice(&(1u64 << 40).to_le_bytes());
    payload.extend_from_slice(b"ada");
    let err = restore(seal_as(<Ledger as Actor>::TYPE_ID, 1, &payload))
        .await
        .unwrap();
    assert!(matches!(err, PersistenceError::Decode { .. }), "{err}");

    // And for the `entries` vector.
    let mut payload = encode_payload(&"ada".to_string()).unwrap();
    payload.push(0xfd);
    payload.extend_from_slice(&(1u64 << 40).to_le_bytes());
    let err = restore(seal_as(<Ledger as Actor>::TYPE_ID, 1, &payload))
        .await
        .unwrap();
    assert!(matches!(err, PersistenceError::Decode { .. }), "{err}");

    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest < 4 << 20,
        "largest single allocation was {largest} bytes"
    );
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
