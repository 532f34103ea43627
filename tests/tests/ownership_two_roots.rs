//! Two `RootContext`s (two instances of a service) on one store in one process,
//! at the actor level, on every single-process backend (memory, fs, sled).
//!
//! The first instance acknowledges 10 increments of a counter. The second one's
//! exclusive activation of the same id is refused while the first holds it; its
//! takeover is granted, restores all 10, and fences the first. Then each
//! instance is sent 10 more increments, interleaved: every one of the second's
//! is acknowledged, none of the first's (its first write is refused, and it
//! stops with `ExitReason::Fenced`), and the store holds exactly the
//! acknowledged count. Once the second stops, its claim is released and the
//! first instance can activate the id again, with everything.

mod common;

use common::within;
use serde::{Deserialize, Serialize};
use theta::persistence::{
    ClaimMode, MemoryStorage, PersistenceError, PersistentStorage, SharedStorage, decode_snapshot,
};
use theta::prelude::*;
use theta_persistence_fs::FsStorage;
use theta_persistence_sled::SledStorage;

/// A persistent counter.
#[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
struct Tally {
    value: u64,
}

/// Adds one; answers the new value.
#[derive(Debug)]
struct Inc;

#[actor("6b2d1c0e-9f8a-4b7c-8d6e-5f4a3b2c1d0e", snapshot)]
impl Actor for Tally {
    const _: () = {
        async |_: Inc| -> u64 {
            self.value += 1;
            self.value
        };
    };
}

fn fresh() -> Tally {
    Tally { value: 0 }
}

async fn stored(storage: &SharedStorage, id: ActorId) -> u64 {
    let bytes = within("read", storage.try_read(id)).await.unwrap();
    decode_snapshot::<Tally>(id, &bytes).unwrap().0.value
}

async fn two_roots_on_one_store(backend: &str, store: impl PersistentStorage + 'static) {
    // Save after every message; an answered ask means a stored increment.
    let storage = SharedStorage::new(store)
        .with_policy(SnapshotPolicy::new().every_n_messages(1).confirm_replies());
    let id = ActorId::new_v4();
    let mut acked = 0u64;

    let one = RootContext::default();
    let first = within("first spawn", one.respawn_or(&storage, id, || (), fresh))
        .await
        .unwrap();
    for _ in 0..10 {
        let value = within("inc", first.ask(Inc)).await.unwrap();
        acked += 1;
        assert_eq!(value, acked, "{backend}");
    }

    let two = RootContext::default();
    let refused = within(
        "exclusive spawn",
        two.respawn_or(&storage, id, || (), fresh),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(refused, PersistenceError::OwnedElsewhere { id: i, .. } if i == id),
        "{backend}: {refused}"
    );

    let failover = storage.clone().with_claim_mode(ClaimMode::Takeover);
    let second = within("takeover", two.respawn_or(&failover, id, || (), fresh))
        .await
        .unwrap();
    let (mut first_acks, mut second_acks) = (0u64, 0u64);
    for _ in 0..10 {
        if within("stale inc", first.ask(Inc)).await.is_ok() {
            first_acks += 1;
            acked += 1;
        }
        let value = within("inc", second.ask(Inc)).await.unwrap();
        second_acks += 1;
        acked += 1;
        assert_eq!(
            value, acked,
            "{backend}: the takeover restored every increment"
        );
    }
    assert_eq!(
        (first_acks, second_acks),
        (0, 10),
        "{backend}: the stale owner acknowledged nothing"
    );
    let exit = within("the stale owner's stop", first.stopped()).await;
    assert!(
        matches!(exit, ExitReason::Fenced { .. }),
        "{backend}: {exit}"
    );
    assert_eq!(
        stored(&storage, id).await,
        acked,
        "{backend}: every acknowledged increment is stored, nothing else"
    );
    assert_eq!(acked, 20, "{backend}");

    // The second instance stops: its claim is released, and the first instance
    // can own the id again, exclusively.
    second.stop();
    within("the second's stop", second.stopped()).await;
    let again = within("reactivation", one.respawn_or(&storage, id, || (), fresh))
        .await
        .unwrap();
    assert_eq!(
        within("inc", again.ask(Inc)).await.unwrap(),
        acked + 1,
        "{backend}"
    );
    again.stop();
    within("the last stop", again.stopped()).await;
    within("close", storage.try_close()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() {
    two_roots_on_one_store("memory", MemoryStorage::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs() {
    let dir = tempfile::tempdir().unwrap();
    two_roots_on_one_store("fs", FsStorage::open(dir.path()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled() {
    let dir = tempfile::tempdir().unwrap();
    two_roots_on_one_store("sled", SledStorage::open(dir.path().join("db")).unwrap()).await;
}
