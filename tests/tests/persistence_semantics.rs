//! The persistence contract of `theta::persistence`, semantic by semantic, against
//! `MemoryStorage` and a fault-injecting storage.

mod common;
mod fault_storage;

use std::time::Duration;

use common::within;
use fault_storage::{FaultStorage, Written};
use serde::{Deserialize, Serialize};
use theta::persistence::{
    MemoryStorage, PersistenceError, PersistentStorage, SharedStorage, SnapshotPolicy, envelope,
};
use theta::prelude::*;
use tokio::sync::mpsc::error::TryRecvError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ActorArgs)]
struct Account {
    balance: i64,
}

#[derive(Debug)]
struct Deposit(i64);
#[derive(Debug)]
struct Balance;
#[derive(Debug)]
struct SaveTo(SharedStorage);
#[derive(Debug)]
struct Boom;
/// Sends the balance on the channel: a tell, so nothing waits for a reply.
#[derive(Debug)]
struct Peek(tokio::sync::mpsc::UnboundedSender<i64>);

#[actor("3d0c7a7e-7c55-4f5e-8f6e-6a1f3b2c0001", snapshot)]
impl Actor for Account {
    const _: () = {
        async |Deposit(amount): Deposit| -> i64 {
            self.balance += amount;
            self.balance
        };
        async |_: Balance| -> i64 { self.balance };
        async |SaveTo(storage): SaveTo| -> Result<(), String> {
            ctx.save_snapshot(&storage, self)
                .await
                .map_err(|e| e.to_string())
        };
        async |_: Boom| {
            self.balance += 1_000_000;
            panic!("boom after mutating");
        };
        async |Peek(to): Peek| {
            let _ = to.send(self.balance);
        };
    };
}

/// Another actor type, to write foreign snapshots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ActorArgs)]
struct Other {
    name: String,
}

#[actor("3d0c7a7e-7c55-4f5e-8f6e-6a1f3b2c0002", snapshot)]
impl Actor for Other {}

/// A parent that owns persistent children, so a child's panic is supervised.
#[derive(Debug, Clone, ActorArgs)]
struct Keeper;

#[derive(Debug)]
struct Adopt(SharedStorage, ActorId);

#[actor("3d0c7a7e-7c55-4f5e-8f6e-6a1f3b2c0003")]
impl Actor for Keeper {
    const _: () = {
        async |Adopt(storage, id): Adopt| -> Result<ActorRef<Account>, String> {
            ctx.respawn_or(&storage, id, || (), || Account { balance: 0 })
                .await
                .map_err(|e| e.to_string())
        };
    };
}

fn fresh() -> Account {
    Account { balance: 0 }
}

/// A top-level account recovered (or started fresh) from `storage`.
async fn spawn_top_level(storage: &SharedStorage, id: ActorId) -> ActorRef<Account> {
    within(
        "spawn",
        RootContext::default().respawn_or(storage, id, || (), fresh),
    )
    .await
    .expect("spawning the account")
}

/// The balance of the stored snapshot, decoded as a restore would (the account
/// may still be live: a second instance would be refused its id).
async fn stored_balance(storage: &MemoryStorage, id: ActorId) -> i64 {
    let bytes = storage.get(id).expect("a stored snapshot");
    let (account, _) = theta::persistence::decode_snapshot::<Account>(id, &bytes)
        .expect("stored snapshot restores");
    account.balance
}

#[tokio::test]
async fn respawn_or_starts_fresh_only_when_absent_and_recovers_otherwise() {
    let storage = MemoryStorage::new();
    let shared = SharedStorage::new(storage.clone());
    let id = ActorId::new_v4();
    let root = RootContext::default();

    let account = within("respawn_or", root.respawn_or(&storage, id, || (), fresh))
        .await
        .unwrap();
    within("deposit", account.ask(Deposit(42))).await.unwrap();
    within("save", account.ask(SaveTo(shared.clone())))
        .await
        .unwrap()
        .unwrap();
    account.stop();
    within("stop", account.stopped()).await;

    let again = within("respawn_or", root.respawn_or(&storage, id, || (), fresh))
        .await
        .unwrap();
    assert_eq!(within("balance", again.ask(Balance)).await.unwrap(), 42);
}

#[tokio::test]
async fn respawn_requires_a_snapshot() {
    let storage = MemoryStorage::new();
    let id = ActorId::new_v4();
    let err = within(
        "respawn",
        RootContext::default().respawn::<_, Account>(&storage, id, ()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PersistenceError::NotFound(e) if e == id));
    assert_eq!(err.actor_id(), id);
}

async fn plant_and_expect(bytes: Vec<u8>, check: impl FnOnce(&PersistenceError) -> bool) {
    let storage = MemoryStorage::new();
    let id = PLANTED;
    storage.insert_raw(id, bytes.clone());
    let root = RootContext::default();
    let err = within("respawn_or", root.respawn_or(&storage, id, || (), fresh))
        .await
        .unwrap_err();
    assert!(check(&err), "unexpected error: {err}");
    assert_eq!(err.actor_id(), id);
    assert!(err.to_string().contains(&id.to_string()), "{err}");
    // Nothing was started and nothing was overwritten.
    assert!(!root.is_live(id));
    assert_eq!(storage.get(id), Some(bytes));
}

/// Where `plant_and_expect` plants its bytes.
const PLANTED: ActorId = ActorId::from_u128(0x91a7_0001);

/// A valid snapshot of `id` with `balance`.
fn valid_snapshot(id: ActorId, balance: i64, sequence: u64) -> Vec<u8> {
    let payload = theta::persistence::encode_payload(&Account { balance }).unwrap();
    envelope::Seal::new(<Account as Actor>::TYPE_ID)
        .actor_id(id)
        .sequence(sequence)
        .seal(&payload)
}

#[tokio::test]
async fn corrupt_snapshot_is_an_error_not_a_fresh_start() {
    let mut bytes = valid_snapshot(PLANTED, 7, 1);
    let last = bytes.len() - 10;
    bytes[last] ^= 0x40;
    plant_and_expect(bytes, |e| matches!(e, PersistenceError::Corrupt { .. })).await;
}

#[tokio::test]
async fn empty_and_truncated_snapshots_are_errors() {
    plant_and_expect(Vec::new(), |e| {
        matches!(e, PersistenceError::Corrupt { .. })
    })
    .await;
    let bytes = valid_snapshot(PLANTED, 7, 1);
    plant_and_expect(bytes[..bytes.len() - 1].to_vec(), |e| {
        matches!(e, PersistenceError::Corrupt { .. })
    })
    .await;
}

#[tokio::test]
async fn foreign_actor_type_is_refused() {
    let payload = theta::persistence::encode_payload(&Other { name: "x".into() }).unwrap();
    let bytes = envelope::Seal::new(<Other as Actor>::TYPE_ID)
        .actor_id(PLANTED)
        .sequence(1)
        .seal(&payload);
    plant_and_expect(bytes, |e| {
        matches!(e, PersistenceError::TypeMismatch { expected, found, .. }
            if *expected == <Account as Actor>::TYPE_ID && *found == <Other as Actor>::TYPE_ID)
    })
    .await;
}

#[tokio::test]
async fn future_envelope_and_schema_versions_are_refused() {
    let mut bytes = valid_snapshot(PLANTED, 7, 1);
    bytes[4..6].copy_from_slice(&9u16.to_le_bytes());
    plant_and_expect(bytes, |e| {
        matches!(e, PersistenceError::UnsupportedEnvelope { found: 9, .. })
    })
    .await;

    let payload = theta::persistence::encode_payload(&Account { balance: 1 }).unwrap();
    let newer = envelope::Seal::new(<Account as Actor>::TYPE_ID)
        .actor_id(PLANTED)
        .schema_version(3)
        .sequence(1)
        .seal(&payload);
    plant_and_expect(newer, |e| {
        matches!(
            e,
            PersistenceError::SchemaTooNew {
                found: 3,
                current: 0,
                ..
            }
        )
    })
    .await;
}

#[tokio::test]
async fn read_error_is_an_error_not_a_fresh_start() {
    let (storage, _written) = FaultStorage::new();
    let id = ActorId::new_v4();
    storage.fail_next_read();
    let root = RootContext::default();
    let err = within("respawn_or", root.respawn_or(&storage, id, || (), fresh))
        .await
        .unwrap_err();
    assert!(matches!(err, PersistenceError::Read { .. }), "{err}");
    assert!(err.to_string().contains("injected read failure"), "{err}");
    assert!(!root.is_live(id), "the id is released after a failed spawn");
}

#[tokio::test]
async fn one_live_actor_per_id() {
    let storage = MemoryStorage::new();
    let id = ActorId::new_v4();
    let root = RootContext::default();
    let first = within("first", root.respawn_or(&storage, id, || (), fresh))
        .await
        .unwrap();
    let err = within("second", root.respawn_or(&storage, id, || (), fresh))
        .await
        .unwrap_err();
    assert!(matches!(err, PersistenceError::AlreadyRunning(e) if e == id));
    let err = within("spawn", root.spawn_persistent(&storage, id, fresh()))
        .await
        .unwrap_err();
    assert!(matches!(err, PersistenceError::AlreadyRunning(_)));

    first.stop();
    within("stop", first.stopped()).await;
    within("after stop", root.respawn_or(&storage, id, || (), fresh))
        .await
        .expect("the id frees once the actor stopped");
}

#[tokio::test]
async fn spawn_persistent_never_shadows_stored_data() {
    let storage = MemoryStorage::new();
    let id = ActorId::new_v4();
    storage.insert_raw(id, valid_snapshot(id, 5, 3));
    let root = RootContext::default();
    let err = within("spawn", root.spawn_persistent(&storage, id, fresh()))
        .await
        .unwrap_err();
    assert!(matches!(err, PersistenceError::SnapshotExists(e) if e == id));
    assert_eq!(storage.get(id), Some(valid_snapshot(id, 5, 3)));

    let other = ActorId::new_v4();
    let account = within("spawn", root.spawn_persistent(&storage, other, fresh()))
        .await
        .unwrap();
    assert_eq!(within("balance", account.ask(Balance)).await.unwrap(), 0);
    assert!(storage.get(other).is_none(), "spawning writes nothing");
}

#[tokio::test]
async fn sequence_numbers_continue_from_the_recovered_snapshot() {
    let storage = MemoryStorage::new();
    let shared = SharedStorage::new(storage.clone());
    let id = ActorId::new_v4();
    storage.insert_raw(id, valid_snapshot(id, 5, 41));
    let root = RootContext::default();
    let account = within("respawn", root.respawn::<_, Account>(&storage, id, ()))
        .await
        .unwrap();
    within("save", account.ask(SaveTo(shared)))
        .await
        .unwrap()
        .unwrap();
    let stored = storage.get(id).unwrap();
    assert_eq!(envelope::Header::peek(&stored).unwrap().sequence, 42);
}

#[tokio::test]
async fn a_stale_save_is_refused_and_the_newer_snapshot_stays() {
    let storage = MemoryStorage::new();
    let shared = SharedStorage::new(storage.clone());
    let id = ActorId::new_v4();
    storage.insert_raw(id, valid_snapshot(id, 5, 9));
    // A plain spawn knows nothing of the stored snapshot: its first save carries
    // sequence 1, which the storage refuses.
    let naive = RootContext::default()
        .spawn_with_id(id, Account { balance: -1 })
        .unwrap();
    let err = within("save", naive.ask(SaveTo(shared)))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        err.contains("newer snapshot") && err.contains(&id.to_string()),
        "{err}"
    );
    assert_eq!(storage.get(id), Some(valid_snapshot(id, 5, 9)));
}

#[tokio::test]
async fn a_failed_write_is_an_error_and_keeps_the_previous_snapshot() {
    let (storage, _written) = FaultStorage::new();
    let shared = SharedStorage::new(storage.clone());
    let id = ActorId::new_v4();
    let account = within(
        "spawn",
        RootContext::default().respawn_or(&storage, id, || (), fresh),
    )
    .await
    .unwrap();
    within("deposit", account.ask(Deposit(1))).await.unwrap();
    within("save", account.ask(SaveTo(shared.clone())))
        .await
        .unwrap()
        .unwrap();
    let before = storage.inner.get(id).unwrap();
    within("deposit", account.ask(Deposit(1))).await.unwrap();
    storage.fail_next_write();
    let err = within("save", account.ask(SaveTo(shared)))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        err.contains("injected write failure") && err.contains(&id.to_string()),
        "{err}"
    );
    assert_eq!(storage.inner.get(id), Some(before));
}

#[tokio::test]
async fn every_n_messages_policy_saves_after_the_nth() {
    let (storage, mut written) = FaultStorage::new();
    let handle =
        SharedStorage::new(storage.clone()).with_policy(SnapshotPolicy::new().every_n_messages(3));
    let id = ActorId::new_v4();
    let account = spawn_top_level(&handle, id).await;
    for _ in 0..2 {
        within("deposit", account.ask(Deposit(10))).await.unwrap();
    }
    assert!(
        written.try_recv().is_err(),
        "no save before the third message"
    );
    within("deposit", account.ask(Deposit(10))).await.unwrap();
    let w = within("write", written.recv()).await.unwrap();
    assert_eq!(w, Written { id, sequence: 1 });
    assert_eq!(stored_balance(&storage.inner, id).await, 30);
}

#[tokio::test(start_paused = true)]
async fn interval_policy_saves_only_when_something_changed() {
    let (storage, mut written) = FaultStorage::new();
    let handle = SharedStorage::new(storage.clone())
        .with_policy(SnapshotPolicy::new().every_interval(Duration::from_secs(1)));
    let id = ActorId::new_v4();
    let account = spawn_top_level(&handle, id).await;
    // Idle ticks write nothing (virtual time: the clock is paused).
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(written.try_recv(), Err(TryRecvError::Empty));

    within("deposit", account.ask(Deposit(7))).await.unwrap();
    let w = within("write", written.recv()).await.unwrap();
    assert_eq!(w, Written { id, sequence: 1 });
    assert_eq!(stored_balance(&storage.inner, id).await, 7);
    // The ticks after the save, with nothing changed since, write nothing.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(written.try_recv(), Err(TryRecvError::Empty));
    // A change after them is saved at the next tick, and only once.
    within("deposit", account.ask(Deposit(1))).await.unwrap();
    let w = within("write", written.recv()).await.unwrap();
    assert_eq!(w, Written { id, sequence: 2 });
    assert_eq!(stored_balance(&storage.inner, id).await, 8);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(written.try_recv(), Err(TryRecvError::Empty));
}

#[tokio::test]
async fn shutdown_flushes_the_final_snapshot() {
    let storage = MemoryStorage::new();
    let handle =
        SharedStorage::new(storage.clone()).with_policy(SnapshotPolicy::new().on_graceful_stop());
    let root = RootContext::default();
    let ids: Vec<ActorId> = (0..50).map(|_| ActorId::new_v4()).collect();
    let mut accounts = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let account = within("spawn", root.respawn_or(&handle, *id, || (), fresh))
            .await
            .unwrap();
        account.tell(Deposit(i as i64)).unwrap();
        accounts.push(account);
    }
    assert!(storage.is_empty());
    within("shutdown", root.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(stored_balance(&storage, *id).await, i as i64);
    }
}

#[tokio::test]
async fn restart_after_a_panic_restores_the_last_saved_snapshot() {
    let storage = MemoryStorage::new();
    let shared = SharedStorage::new(storage.clone());
    let id = ActorId::new_v4();
    let keeper = RootContext::default().spawn(Keeper);
    let account = within("adopt", keeper.ask(Adopt(shared.clone(), id)))
        .await
        .unwrap()
        .unwrap();
    within("deposit", account.ask(Deposit(10))).await.unwrap();
    within("save", account.ask(SaveTo(shared)))
        .await
        .unwrap()
        .unwrap();
    within("deposit", account.ask(Deposit(5))).await.unwrap();

    assert_eq!(
        within("boom", account.ask(Boom)).await,
        Err(AskError::NoReply(id))
    );
    // Restarted in place: the saved 10, not the unsaved 15, not the panicked turn,
    // not the original args.
    assert_eq!(within("balance", account.ask(Balance)).await.unwrap(), 10);
}

#[tokio::test]
async fn a_panicked_turn_is_never_saved_automatically() {
    let (storage, mut written) = FaultStorage::new();
    let handle = SharedStorage::new(storage.clone())
        .with_policy(SnapshotPolicy::new().every_n_messages(1).on_graceful_stop());
    let id = ActorId::new_v4();
    let keeper = RootContext::default().spawn(Keeper);
    let account = within("adopt", keeper.ask(Adopt(handle, id)))
        .await
        .unwrap()
        .unwrap();
    within("deposit", account.ask(Deposit(3))).await.unwrap();
    assert_eq!(within("write", written.recv()).await.unwrap().sequence, 1);

    assert_eq!(
        within("boom", account.ask(Boom)).await,
        Err(AskError::NoReply(id))
    );
    // The panicked turn (balance + 1_000_000) was not saved: the restart restored
    // 3, and a turn that changes nothing writes nothing.
    assert_eq!(within("balance", account.ask(Balance)).await.unwrap(), 3);
    assert_eq!(stored_balance_live(&storage, id), 3);
    within("deposit", account.ask(Deposit(1))).await.unwrap();
    // The next write is the deposit's (the unchanged turn took sequence 2 and
    // wrote nothing).
    assert_eq!(within("write", written.recv()).await.unwrap().sequence, 3);
    assert!(written.try_recv().is_err(), "one write per change");
    assert_eq!(stored_balance_live(&storage, id), 4);
}

/// Decodes what is stored without spawning (the actor is still live).
fn stored_balance_live(storage: &FaultStorage, id: ActorId) -> i64 {
    let bytes = storage.inner.get(id).expect("a stored snapshot");
    let (_, payload) = envelope::open(&bytes, envelope::DEFAULT_MAX_PAYLOAD).unwrap();
    theta::persistence::decode_payload::<Account>(payload)
        .unwrap()
        .balance
}

#[tokio::test]
async fn automatic_policy_without_a_shared_handle_is_an_error() {
    struct Borrowed(MemoryStorage);
    impl PersistentStorage for Borrowed {
        async fn try_read(&self, id: ActorId) -> Result<Vec<u8>, anyhow::Error> {
            self.0.try_read(id).await
        }
        async fn try_write(&self, id: ActorId, b: Vec<u8>) -> Result<(), anyhow::Error> {
            self.0.try_write(id, b).await
        }
    }

    #[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
    struct Auto {
        n: u32,
    }
    #[actor("3d0c7a7e-7c55-4f5e-8f6e-6a1f3b2c0004", snapshot, snapshot_every = 1)]
    impl Actor for Auto {}

    let id = ActorId::new_v4();
    let err = within(
        "spawn",
        RootContext::default().respawn_or(
            &Borrowed(MemoryStorage::new()),
            id,
            || (),
            || Auto { n: 0 },
        ),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PersistenceError::NeedsSharedStorage(e) if e == id));
}

#[tokio::test]
async fn delete_and_forget_remove_the_snapshot() {
    let storage = MemoryStorage::new();
    let shared = SharedStorage::new(storage.clone());
    let root = RootContext::default();
    let id = ActorId::new_v4();
    let account = within("spawn", root.respawn_or(&storage, id, || (), fresh))
        .await
        .unwrap();
    within("save", account.ask(SaveTo(shared)))
        .await
        .unwrap()
        .unwrap();

    let err = within("delete", root.delete_snapshot(&storage, id))
        .await
        .unwrap_err();
    assert!(matches!(err, PersistenceError::Running(e) if e == id));
    assert!(storage.get(id).is_some());

    within("forget", root.forget(&storage, account))
        .await
        .unwrap();
    assert!(storage.get(id).is_none());
    assert!(!root.is_live(id));
    // Deleting again, or a never-written id, is fine.
    within("delete", root.delete_snapshot(&storage, id))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_failed_delete_is_an_error() {
    let (storage, _written) = FaultStorage::new();
    let id = ActorId::new_v4();
    storage.inner.insert_raw(id, valid_snapshot(id, 1, 1));
    storage.fail_next_delete();
    let err = within(
        "delete",
        RootContext::default().delete_snapshot(&storage, id),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PersistenceError::Delete { .. }), "{err}");
    assert!(storage.inner.get(id).is_some());
}

/// Holds every write until the test opens the gate; reports each write start.
#[derive(Clone)]
struct Gated {
    inner: MemoryStorage,
    gate: std::sync::Arc<tokio::sync::Semaphore>,
    started: tokio::sync::mpsc::UnboundedSender<u64>,
}

impl PersistentStorage for Gated {
    async fn try_read(&self, id: ActorId) -> Result<Vec<u8>, anyhow::Error> {
        self.inner.try_read(id).await
    }

    async fn try_write(&self, id: ActorId, bytes: Vec<u8>) -> Result<(), anyhow::Error> {
        let _ = self
            .started
            .send(envelope::sequence_of(&bytes).unwrap_or(0));
        self.gate.acquire().await?.forget();
        self.inner.try_write(id, bytes).await
    }

    fn shared(&self) -> Option<SharedStorage> {
        Some(SharedStorage::new(self.clone()))
    }
}

fn confirming() -> SnapshotPolicy {
    SnapshotPolicy::new().confirm_replies()
}

#[tokio::test]
async fn confirmed_replies_wait_for_the_durable_snapshot() {
    use std::future::IntoFuture;
    let (started, mut writes) = tokio::sync::mpsc::unbounded_channel();
    let storage = Gated {
        inner: MemoryStorage::new(),
        gate: std::sync::Arc::new(tokio::sync::Semaphore::new(0)),
        started,
    };
    let handle = SharedStorage::new(storage.clone()).with_policy(confirming());
    let id = ActorId::new_v4();
    let account = spawn_top_level(&handle, id).await;

    let mut ask = account.ask(Deposit(5)).into_future();
    assert_eq!(within("write starts", writes.recv()).await, Some(1));
    // The handler ran and its snapshot is being written: the reply must wait.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), &mut ask)
            .await
            .is_err(),
        "the reply arrived before its snapshot was durable"
    );
    assert!(storage.inner.get(id).is_none());
    // The mailbox is not held meanwhile: with the write still gated, the actor
    // handles a told deposit and answers a peek that sees it.
    account.tell(Deposit(2)).unwrap();
    let (peek, mut peeked) = tokio::sync::mpsc::unbounded_channel();
    account.tell(Peek(peek)).unwrap();
    assert_eq!(within("peek", peeked.recv()).await, Some(7));
    assert_eq!(
        writes.try_recv(),
        Err(TryRecvError::Empty),
        "one write so far"
    );
    assert!(storage.inner.get(id).is_none(), "the write is still gated");
    storage.gate.add_permits(1);
    assert_eq!(within("ask", ask).await.unwrap(), 5);
    let stored = storage.inner.get(id).expect("acknowledged means stored");
    let (_, payload) = envelope::open(&stored, envelope::DEFAULT_MAX_PAYLOAD).unwrap();
    let saved: Account = theta::persistence::decode_payload(payload).unwrap();
    assert_eq!(saved.balance, 5, "the snapshot of the confirmed ask's turn");
}

#[tokio::test]
async fn a_failed_write_fails_the_confirmed_ask() {
    let (storage, _written) = FaultStorage::new();
    let handle = SharedStorage::new(storage.clone()).with_policy(confirming());
    let id = ActorId::new_v4();
    let account = spawn_top_level(&handle, id).await;
    assert_eq!(within("first", account.ask(Deposit(1))).await.unwrap(), 1);
    storage.fail_next_write();
    let err = within("second", account.ask(Deposit(1))).await.unwrap_err();
    assert_eq!(err, AskError::NoReply(id));
    // The next save carries the state, including the unacknowledged deposit.
    assert_eq!(within("third", account.ask(Deposit(1))).await.unwrap(), 3);
    assert_eq!(stored_balance_live(&storage, id), 3);
}

/// 200 confirmed asks, 199 of them handled while the first one's write is
/// held: two writes in all, the first one's and one that covers the other 199
/// replies.
#[tokio::test]
async fn confirmed_replies_share_writes() {
    use std::future::IntoFuture;
    let (storage, mut written) = FaultStorage::new();
    let handle = SharedStorage::new(storage.clone()).with_policy(confirming());
    let id = ActorId::new_v4();
    let account = spawn_top_level(&handle, id).await;
    let (started, release) = storage.hold_next_write();
    // `into_future` enqueues the ask: the mailbox order is the order here.
    let first = account.ask(Deposit(1)).into_future();
    within("the first write starts", started).await.unwrap();
    let rest: Vec<_> = (0..199)
        .map(|_| account.ask(Deposit(1)).into_future())
        .collect();
    // Behind the 199 deposits in the mailbox: once it answers, all were handled
    // (the first write is still held).
    let (peek, mut peeked) = tokio::sync::mpsc::unbounded_channel();
    account.tell(Peek(peek)).unwrap();
    assert_eq!(within("peek", peeked.recv()).await, Some(200));
    assert_eq!(written.try_recv(), Err(TryRecvError::Empty));
    release.send(()).unwrap();
    assert_eq!(within("first", first).await, Ok(1));
    let mut replies = Vec::new();
    for ask in rest {
        replies.push(within("ask", ask).await.unwrap());
    }
    assert_eq!(replies, (2..=200).collect::<Vec<i64>>());
    // Every acknowledged deposit is in storage, in two writes.
    assert_eq!(stored_balance_live(&storage, id), 200);
    let first_write = within("write", written.recv()).await.unwrap();
    let second_write = within("write", written.recv()).await.unwrap();
    assert_eq!(first_write, Written { id, sequence: 1 });
    assert_eq!(second_write.id, id);
    assert_eq!(
        written.try_recv(),
        Err(TryRecvError::Empty),
        "200 asks, more than two writes"
    );
}

/// An actor whose `on_exit` can be told to panic.
#[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
struct Fragile {
    value: i64,
    explode_on_exit: bool,
}

#[derive(Debug)]
struct Set(i64);

#[actor("3d0c7a7e-7c55-4f5e-8f6e-6a1f3b2c0005", snapshot)]
impl Actor for Fragile {
    const _: () = {
        async |Set(v): Set| {
            self.value = v;
        };
    };

    async fn on_exit(&mut self, _ctx: &Context<Self>, _reason: &ExitReason) {
        if self.explode_on_exit {
            self.value = -1;
            panic!("on_exit failed halfway");
        }
    }
}

#[tokio::test]
async fn the_final_snapshot_is_skipped_when_on_exit_panics() {
    let storage = MemoryStorage::new();
    let handle =
        SharedStorage::new(storage.clone()).with_policy(SnapshotPolicy::new().on_graceful_stop());
    let root = RootContext::default();
    for explode_on_exit in [false, true] {
        let id = ActorId::new_v4();
        let actor = within(
            "spawn",
            root.spawn_persistent(
                &handle,
                id,
                Fragile {
                    value: 0,
                    explode_on_exit,
                },
            ),
        )
        .await
        .unwrap();
        within("set", actor.ask(Set(5))).await.unwrap();
        actor.stop();
        within("stop", actor.stopped()).await;
        let stored = storage.get(id);
        if explode_on_exit {
            assert!(stored.is_none(), "a half-run on_exit state was saved");
        } else {
            let stored = stored.expect("the final snapshot");
            let (_, payload) = envelope::open(&stored, 1 << 20).unwrap();
            let saved: Fragile = theta::persistence::decode_payload(payload).unwrap();
            assert_eq!(saved.value, 5);
        }
    }
}
