//! A restore decodes (and migrates) its snapshot exactly once, and a restart after
//! a panic restores the latest saved snapshot by reading it back from the
//! storage (the runtime keeps no copy of it).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::within;
use serde::{Deserialize, Serialize};
use theta::persistence::{
    MemoryStorage, PersistentActor, PersistentContextExt, PersistentSpawnExt, SharedStorage,
    decode_payload, encode_payload, envelope,
};
use theta::prelude::*;

/// How often `migrate` ran (each test uses its own actor type and counter).
static MIGRATIONS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
struct Wallet {
    cents: u64,
}

#[derive(Serialize, Deserialize)]
struct WalletV0 {
    units: u64,
}

#[derive(Debug)]
struct Cents;
#[derive(Debug)]
struct Spend(u64);
#[derive(Debug)]
struct Boom;
#[derive(Debug)]
struct Save(SharedStorage);

#[actor("4e0b8e55-1d4b-4a77-9d1b-3e2f1a0c5d01")]
impl Actor for Wallet {
    const _: () = {
        async |_: Cents| -> u64 { self.cents };
        async |Spend(n): Spend| {
            self.cents -= n;
        };
        async |_: Boom| {
            panic!("boom");
        };
        async |Save(storage): Save| -> bool { ctx.save_snapshot(&storage, self).await.is_ok() };
    };
}

impl PersistentActor for Wallet {
    type Snapshot = Wallet;
    type RuntimeArgs = ();
    type ActorArgs = Wallet;
    const SCHEMA_VERSION: u32 = 1;

    fn persistent_args(snapshot: Wallet, _: ()) -> Wallet {
        snapshot
    }

    fn migrate(from_version: u32, payload: &[u8]) -> Result<Wallet, anyhow::Error> {
        MIGRATIONS.fetch_add(1, Ordering::SeqCst);
        anyhow::ensure!(from_version == 0, "no migration from {from_version}");
        let old: WalletV0 = decode_payload(payload)?;
        Ok(Wallet {
            cents: old.units * 100,
        })
    }
}

/// A supervisor that restarts its children (the default decision).
#[derive(Debug, Clone, ActorArgs)]
struct Parent;

#[derive(Debug)]
struct Adopt(MemoryStorage, ActorId);

#[actor("4e0b8e55-1d4b-4a77-9d1b-3e2f1a0c5d02")]
impl Actor for Parent {
    const _: () = {
        async |Adopt(storage, id): Adopt| -> ActorRef<Wallet> {
            ctx.respawn::<_, Wallet>(&storage, id, ())
                .await
                .expect("respawn as a child")
        };
    };
}

fn plant_v0(storage: &MemoryStorage, units: u64) -> ActorId {
    let id = ActorId::new_v4();
    let payload = encode_payload(&WalletV0 { units }).unwrap();
    let bytes = envelope::Seal::new(<Wallet as Actor>::TYPE_ID)
        .actor_id(id)
        .sequence(3)
        .seal(&payload);
    storage.insert_raw(id, bytes);
    id
}

#[tokio::test]
async fn a_restore_migrates_once_and_a_restart_reads_the_latest_snapshot_back() {
    let storage = MemoryStorage::new();
    let id = plant_v0(&storage, 7);
    let root = RootContext::default();
    let parent = root.spawn(Parent);

    MIGRATIONS.store(0, Ordering::SeqCst);
    let wallet = within("adopt", parent.ask(Adopt(storage.clone(), id)))
        .await
        .unwrap();
    assert_eq!(within("cents", wallet.ask(Cents)).await.unwrap(), 700);
    assert_eq!(
        MIGRATIONS.load(Ordering::SeqCst),
        1,
        "respawn decodes and migrates the snapshot once"
    );

    // A restart with nothing saved since: the stored (version 0) snapshot is
    // restored again, which is one more restore and one more migration.
    within("spend", wallet.ask(Spend(5))).await.unwrap();
    let _ = within("boom", wallet.ask(Boom)).await;
    assert_eq!(within("cents", wallet.ask(Cents)).await.unwrap(), 700);
    assert_eq!(MIGRATIONS.load(Ordering::SeqCst), 2);

    // After a save, a restart restores exactly that save (read back from the
    // storage, current schema: no migration).
    within("spend", wallet.ask(Spend(50))).await.unwrap();
    let shared = SharedStorage::new(storage.clone());
    assert!(within("save", wallet.ask(Save(shared))).await.unwrap());
    within("spend", wallet.ask(Spend(1))).await.unwrap();
    let _ = within("boom", wallet.ask(Boom)).await;
    assert_eq!(within("cents", wallet.ask(Cents)).await.unwrap(), 650);
    assert_eq!(MIGRATIONS.load(Ordering::SeqCst), 2);

    // `respawn_or` of another version-0 snapshot: one migration too.
    let other = plant_v0(&storage, 2);
    let wallet = within(
        "respawn_or",
        root.respawn_or(&storage, other, || (), || Wallet { cents: 0 }),
    )
    .await
    .unwrap();
    assert_eq!(within("cents", wallet.ask(Cents)).await.unwrap(), 200);
    assert_eq!(MIGRATIONS.load(Ordering::SeqCst), 3);
}
