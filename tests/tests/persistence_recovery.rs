//! Bulk recovery (`respawn_all`, `respawn_all_or`) and the binding of a
//! snapshot to its actor id: a snapshot copied over another actor's is refused,
//! on the in-memory store and on a real fs store where the copy is a file copy.

mod common;

use common::within;
use serde::{Deserialize, Serialize};
use theta::persistence::{
    MemoryStorage, PersistenceError, PersistentStorage, encode_snapshot, envelope,
};
use theta::prelude::*;
use theta_persistence_fs::FsStorage;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ActorArgs)]
struct Account {
    balance: i64,
}

#[derive(Debug)]
struct Balance;

#[actor("5b1d2a3c-4e5f-4a6b-8c7d-9e0f1a2b3c4d", snapshot)]
impl Actor for Account {
    const _: () = {
        async |Balance: Balance| -> i64 { self.balance };
    };
}

fn id(i: u64) -> ActorId {
    ActorId::from_u128(0x5b1d_0000_0000_4000_8000_0000_0000_0000 | u128::from(i))
}

fn stored(storage: &MemoryStorage, i: u64, balance: i64) {
    let bytes = encode_snapshot(id(i), 1, &Account { balance }).unwrap();
    storage.insert_raw(id(i), bytes);
}

#[tokio::test]
async fn respawn_all_or_answers_in_the_order_of_the_ids_and_starts_the_missing_ones_fresh() {
    let storage = MemoryStorage::new();
    for i in (0..40).filter(|i| i % 3 != 0) {
        stored(&storage, i, i as i64 * 10);
    }
    let root = RootContext::default();
    // Reversed, so an answer in completion or storage order would show.
    let ids: Vec<ActorId> = (0..40).rev().map(id).collect();
    let accounts = within(
        "respawn_all_or",
        root.respawn_all_or(&storage, &ids, 4, |_| (), |_| Account { balance: -1 }),
    )
    .await;
    assert_eq!(accounts.len(), ids.len());
    for (i, account) in (0..40u64).rev().zip(accounts) {
        let account = account.unwrap_or_else(|e| panic!("account {i}: {e}"));
        assert_eq!(account.id(), id(i));
        let expected = if i % 3 == 0 { -1 } else { i as i64 * 10 };
        assert_eq!(within("ask", account.ask(Balance)).await.unwrap(), expected);
    }
}

#[tokio::test]
async fn respawn_all_reports_each_missing_id_as_not_found_and_restores_the_rest() {
    let storage = MemoryStorage::new();
    stored(&storage, 1, 100);
    stored(&storage, 3, 300);
    let root = RootContext::default();
    let ids = [id(1), id(2), id(3), id(4)];
    let results = within("respawn_all", root.respawn_all(&storage, &ids, 2, |_| ())).await;
    let outcomes: Vec<_> = results
        .into_iter()
        .map(|r| r.map(|account: ActorRef<Account>| account.id()))
        .collect();
    assert!(
        matches!(outcomes[0], Ok(found) if found == id(1)),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[1], Err(PersistenceError::NotFound(missing)) if missing == id(2)),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[2], Ok(found) if found == id(3)),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[3], Err(PersistenceError::NotFound(missing)) if missing == id(4)),
        "{outcomes:?}"
    );
    // A missing id was not started fresh: nothing was stored for it either.
    assert!(storage.get(id(2)).is_none());
}

#[tokio::test]
async fn a_snapshot_stored_under_another_actor_id_is_refused_naming_both() {
    let storage = MemoryStorage::new();
    // Actor 6's snapshot, copied to where actor 5's belongs.
    let bytes = encode_snapshot(id(6), 1, &Account { balance: 600 }).unwrap();
    assert_eq!(
        envelope::open(&bytes, envelope::MAX_PAYLOAD)
            .unwrap()
            .0
            .actor_id,
        Some(id(6))
    );
    storage.insert_raw(id(5), bytes);
    let root = RootContext::default();
    let outcome = within(
        "respawn_or",
        root.respawn_or(&storage, id(5), || (), || Account { balance: 0 }),
    )
    .await;
    match outcome {
        Err(PersistenceError::WrongActor { id: read, found }) => {
            assert_eq!((read, found), (id(5), id(6)));
        }
        other => panic!("expected WrongActor, got {:?}", other.map(|a| a.id())),
    }
    // Refused, not replaced: the bytes are still there for the operator.
    assert!(storage.get(id(5)).is_some());
}

#[tokio::test]
async fn a_snapshot_file_copied_over_another_actors_is_refused_on_fs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    {
        let storage = FsStorage::open(&path).unwrap();
        for (i, balance) in [(5, 500), (6, 600)] {
            let bytes = encode_snapshot(id(i), 1, &Account { balance }).unwrap();
            within("write", storage.try_write(id(i), bytes))
                .await
                .unwrap();
        }
        // The checkpoint writes one file per actor out of the journal.
        within("checkpoint", storage.checkpoint()).await.unwrap();
        within("close", storage.try_close()).await.unwrap();
    }
    let file_of = |i: u64| {
        let name = id(i).to_string();
        walk(&path.join("snapshots"))
            .into_iter()
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(&name))
            })
            .unwrap_or_else(|| panic!("no snapshot file for actor {}", id(i)))
    };
    std::fs::copy(file_of(6), file_of(5)).unwrap();
    let storage = FsStorage::open(&path).unwrap();
    let root = RootContext::default();
    match within(
        "respawn_or",
        root.respawn_or(&storage, id(5), || (), || Account { balance: 0 }),
    )
    .await
    {
        Err(PersistenceError::WrongActor { id: read, found }) => {
            assert_eq!((read, found), (id(5), id(6)));
        }
        other => panic!("expected WrongActor, got {:?}", other.map(|a| a.id())),
    }
    let six = within("respawn", root.respawn::<_, Account>(&storage, id(6), ()))
        .await
        .unwrap();
    assert_eq!(within("ask", six.ask(Balance)).await.unwrap(), 600);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
