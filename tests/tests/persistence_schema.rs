//! Schema evolution: older snapshots are migrated or refused, never misread.

mod common;

use common::within;
use serde::{Deserialize, Serialize};
use theta::persistence::{
    MemoryStorage, PersistenceError, PersistentActor, decode_payload, decode_snapshot,
    encode_payload, envelope,
};
use theta::prelude::*;

/// Version 0 of the wallet: whole units.
#[derive(Debug, Serialize, Deserialize)]
struct WalletV0 {
    units: i64,
}

/// Version 1: cents. Migrates from version 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ActorArgs)]
struct Wallet {
    cents: i64,
}

#[derive(Debug)]
struct Cents;
#[derive(Debug)]
struct Save(MemoryStorage);

#[actor("8f9d1a77-3b0e-4c2a-9d8e-1f2a3b4c5d01")]
impl Actor for Wallet {
    const _: () = {
        async |_: Cents| -> i64 { self.cents };
        async |Save(storage): Save| -> Result<(), String> {
            ctx.save_snapshot(&storage, self)
                .await
                .map_err(|e| e.to_string())
        };
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
        match from_version {
            0 => {
                let old: WalletV0 = decode_payload(payload)?;
                Ok(Wallet {
                    cents: old.units * 100,
                })
            }
            v => anyhow::bail!("unknown wallet schema {v}"),
        }
    }
}

/// Version 1 of a type that defines no migration.
#[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
struct Strict {
    value: u64,
}

#[actor("8f9d1a77-3b0e-4c2a-9d8e-1f2a3b4c5d02")]
impl Actor for Strict {}

impl PersistentActor for Strict {
    type Snapshot = Strict;
    type RuntimeArgs = ();
    type ActorArgs = Strict;
    const SCHEMA_VERSION: u32 = 1;

    fn persistent_args(snapshot: Strict, _: ()) -> Strict {
        snapshot
    }
}

fn plant<T: Serialize>(
    storage: &MemoryStorage,
    type_id: uuid::Uuid,
    schema: u32,
    value: &T,
) -> ActorId {
    let id = ActorId::new_v4();
    let payload = encode_payload(value).unwrap();
    let bytes = envelope::Seal::new(type_id)
        .actor_id(id)
        .schema_version(schema)
        .sequence(4)
        .seal(&payload);
    storage.insert_raw(id, bytes);
    id
}

#[tokio::test]
async fn an_older_schema_is_migrated() {
    let storage = MemoryStorage::new();
    let id = plant(
        &storage,
        <Wallet as Actor>::TYPE_ID,
        0,
        &WalletV0 { units: 7 },
    );
    let root = RootContext::default();
    let wallet = within("respawn", root.respawn::<_, Wallet>(&storage, id, ()))
        .await
        .unwrap();
    assert_eq!(within("cents", wallet.ask(Cents)).await.unwrap(), 700);
}

#[tokio::test]
async fn a_failing_migration_is_an_error() {
    let storage = MemoryStorage::new();
    // Version 0 bytes that are not a WalletV0.
    let id = plant(
        &storage,
        <Wallet as Actor>::TYPE_ID,
        0,
        &"not a wallet".to_string(),
    );
    let err = within(
        "respawn_or",
        RootContext::default().respawn_or(&storage, id, || (), || Wallet { cents: 0 }),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            PersistenceError::Migration {
                found: 0,
                current: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn an_older_schema_without_migration_is_refused() {
    let storage = MemoryStorage::new();
    let id = plant(
        &storage,
        <Strict as Actor>::TYPE_ID,
        0,
        &Strict { value: 1 },
    );
    let err = within(
        "respawn_or",
        RootContext::default().respawn_or(&storage, id, || (), || Strict { value: 0 }),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, PersistenceError::Migration { found: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("no migration"), "{err}");
}

#[tokio::test]
async fn a_newer_schema_is_always_refused() {
    let storage = MemoryStorage::new();
    let id = plant(
        &storage,
        <Wallet as Actor>::TYPE_ID,
        2,
        &Wallet { cents: 1 },
    );
    let err = within(
        "respawn",
        RootContext::default().respawn::<_, Wallet>(&storage, id, ()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            PersistenceError::SchemaTooNew {
                found: 2,
                current: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_migrated_actor_saves_the_current_schema() {
    let storage = MemoryStorage::new();
    let id = plant(
        &storage,
        <Wallet as Actor>::TYPE_ID,
        0,
        &WalletV0 { units: 1 },
    );
    let root = RootContext::default();
    let wallet = within("respawn", root.respawn::<_, Wallet>(&storage, id, ()))
        .await
        .unwrap();
    within("save", wallet.ask(Save(storage.clone())))
        .await
        .unwrap()
        .unwrap();
    let saved = storage.get(id).unwrap();
    let header = envelope::Header::peek(&saved).unwrap();
    assert_eq!(header.schema_version, 1);
    assert_eq!(
        header.sequence, 5,
        "continues from the migrated snapshot's 4"
    );
    // The payload is the migrated state in today's layout, not the old bytes.
    let (_, payload) = envelope::open(&saved, envelope::DEFAULT_MAX_PAYLOAD).unwrap();
    assert_eq!(
        decode_payload::<Wallet>(payload).unwrap(),
        Wallet { cents: 100 }
    );
    assert_eq!(
        decode_snapshot::<Wallet>(id, &saved).unwrap(),
        (Wallet { cents: 100 }, 5)
    );
    // And a restore of it reads it as is, without migrating again.
    within("shutdown", root.shutdown(std::time::Duration::from_secs(5)))
        .await
        .unwrap();
    let again = RootContext::default();
    let wallet = within("respawn", again.respawn::<_, Wallet>(&storage, id, ()))
        .await
        .unwrap();
    assert_eq!(within("cents", wallet.ask(Cents)).await.unwrap(), 100);
}
