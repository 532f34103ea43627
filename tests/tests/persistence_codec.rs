//! Codecs and compression through the whole save/restore path: each actor type's
//! codec and compression are recorded and honoured, a change of either still
//! reads old snapshots, the tolerant codec absorbs the changes the guide says it
//! does, and every row of the schema-evolution table in the `persistence` docs is
//! checked here against both codecs.

mod common;

use std::collections::BTreeMap;

use common::within;
use serde::{Deserialize, Serialize};
use theta::persistence::{
    Codec, Compression, MemoryStorage, Payload, PersistenceError, PersistentActor,
    decode_payload_as, encode_payload_as, envelope,
};
use theta::prelude::*;

/// A text-heavy snapshot: what compression is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Journal {
    owner: String,
    entries: Vec<String>,
    #[serde(default)]
    pinned: Vec<u32>,
}

fn journal(entries: usize) -> Journal {
    Journal {
        owner: "ada".into(),
        entries: (0..entries)
            .map(|i| format!("entry {i}: the actor saved its ledger and the balance held"))
            .collect(),
        pinned: vec![1, 3],
    }
}

#[derive(Debug)]
struct Read;
#[derive(Debug)]
struct Save(MemoryStorage);

macro_rules! journal_actor {
    ($name:ident, $uuid:literal, $codec:expr, $compression:expr) => {
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ActorArgs)]
        struct $name(Journal);

        #[actor($uuid)]
        impl Actor for $name {
            const _: () = {
                async |_: Read| -> Journal { self.0.clone() };
                async |Save(storage): Save| -> Result<(), String> {
                    ctx.save_snapshot(&storage, self)
                        .await
                        .map_err(|e| e.to_string())
                };
            };
        }

        impl PersistentActor for $name {
            type Snapshot = $name;
            type RuntimeArgs = ();
            type ActorArgs = $name;
            const CODEC: Codec = $codec;
            const COMPRESSION: Compression = $compression;

            fn persistent_args(snapshot: $name, _: ()) -> $name {
                snapshot
            }
        }
    };
}

journal_actor!(
    PlainJournal,
    "c0dec000-0000-4000-8000-000000000001",
    Codec::Bincode,
    Compression::None
);
journal_actor!(
    PackedJournal,
    "c0dec000-0000-4000-8000-000000000002",
    Codec::MessagePack,
    Compression::Zstd
);
journal_actor!(
    FastJournal,
    "c0dec000-0000-4000-8000-000000000003",
    Codec::Bincode,
    Compression::Lz4
);

/// Saves `value` through a live actor of type `A` and restores it in a new
/// `RootContext`; returns the stored header.
async fn save_and_restore<A>(value: A) -> envelope::Header
where
    A: PersistentActor<Snapshot = A, RuntimeArgs = (), ActorArgs = A>
        + ActorArgs<Actor = A>
        + Clone
        + Into<Journal>,
    Read: theta::Message<A, Return = Journal>,
    Save: theta::Message<A, Return = Result<(), String>>,
{
    let storage = MemoryStorage::new();
    let id = ActorId::new_v4();
    let expected: Journal = value.clone().into();
    let root = RootContext::default();
    let actor = within(
        "spawn_persistent",
        root.spawn_persistent(&storage, id, value),
    )
    .await
    .unwrap();
    within("save", actor.ask(Save(storage.clone())))
        .await
        .unwrap()
        .unwrap();
    drop(actor);
    within("shutdown", root.shutdown(std::time::Duration::from_secs(5)))
        .await
        .unwrap();
    let again = RootContext::default();
    let restored = within("respawn", again.respawn::<_, A>(&storage, id, ()))
        .await
        .unwrap();
    assert_eq!(within("read", restored.ask(Read)).await.unwrap(), expected);
    envelope::Header::peek(&storage.get(id).unwrap()).unwrap()
}

impl From<PlainJournal> for Journal {
    fn from(j: PlainJournal) -> Self {
        j.0
    }
}
impl From<PackedJournal> for Journal {
    fn from(j: PackedJournal) -> Self {
        j.0
    }
}
impl From<FastJournal> for Journal {
    fn from(j: FastJournal) -> Self {
        j.0
    }
}

#[tokio::test]
async fn each_actor_type_saves_with_its_codec_and_compression() {
    let plain = save_and_restore(PlainJournal(journal(200))).await;
    assert_eq!(
        (plain.codec, plain.compression),
        (envelope::CODEC_BINCODE2, envelope::COMPRESSION_NONE)
    );
    let packed = save_and_restore(PackedJournal(journal(200))).await;
    assert_eq!(
        (packed.codec, packed.compression),
        (envelope::CODEC_MSGPACK, envelope::COMPRESSION_ZSTD)
    );
    assert!(packed.payload_len * 3 < packed.decoded_len, "{packed:?}");
    let fast = save_and_restore(FastJournal(journal(200))).await;
    assert_eq!(
        (fast.codec, fast.compression),
        (envelope::CODEC_BINCODE2, envelope::COMPRESSION_LZ4)
    );
    assert!(fast.payload_len * 3 < fast.decoded_len, "{fast:?}");
    // Too small to be worth compressing: stored as encoded.
    let tiny = save_and_restore(PackedJournal(Journal {
        owner: "a".into(),
        entries: Vec::new(),
        pinned: Vec::new(),
    }))
    .await;
    assert_eq!(tiny.compression, envelope::COMPRESSION_NONE);
}

/// Bytes another build of an actor type wrote: `payload` as `codec`,
/// compressed with `compression`, under schema `schema`.
fn written_by(
    type_id: uuid::Uuid,
    id: ActorId,
    schema: u32,
    codec: Codec,
    compression: Compression,
    payload: &[u8],
) -> Vec<u8> {
    envelope::Seal::new(type_id)
        .actor_id(id)
        .schema_version(schema)
        .sequence(1)
        .codec(codec.id())
        .compressed(compression.id(), payload.len() as u64)
        .seal(&compression.compress(payload))
}

#[tokio::test]
async fn a_change_of_codec_or_compression_still_reads_old_snapshots() {
    let storage = MemoryStorage::new();
    let root = RootContext::default();
    let value = journal(50);
    // PlainJournal is bincode and uncompressed today; its older builds wrote
    // each of these.
    for (codec, compression) in [
        (Codec::MessagePack, Compression::None),
        (Codec::MessagePack, Compression::Zstd),
        (Codec::Bincode, Compression::Lz4),
        (Codec::Bincode, Compression::Zstd),
    ] {
        let id = ActorId::new_v4();
        let payload = encode_payload_as(codec, &PlainJournal(value.clone())).unwrap();
        storage.insert_raw(
            id,
            written_by(
                <PlainJournal as Actor>::TYPE_ID,
                id,
                0,
                codec,
                compression,
                &payload,
            ),
        );
        let actor = within("respawn", root.respawn::<_, PlainJournal>(&storage, id, ()))
            .await
            .unwrap_or_else(|e| panic!("{codec} + {compression}: {e}"));
        assert_eq!(within("read", actor.ask(Read)).await.unwrap(), value);
        // The next save is in today's codec.
        within("save", actor.ask(Save(storage.clone())))
            .await
            .unwrap()
            .unwrap();
        let header = envelope::Header::peek(&storage.get(id).unwrap()).unwrap();
        assert_eq!(
            (header.codec, header.compression),
            (envelope::CODEC_BINCODE2, envelope::COMPRESSION_NONE)
        );
    }
}

#[tokio::test]
async fn the_tolerant_codec_reads_an_older_struct_with_an_added_field() {
    #[derive(Serialize)]
    struct JournalV0 {
        owner: String,
        entries: Vec<String>,
        /// Removed since.
        archived: bool,
    }
    let storage = MemoryStorage::new();
    let id = ActorId::new_v4();
    let old = JournalV0 {
        owner: "ada".into(),
        entries: vec!["one".into()],
        archived: true,
    };
    let payload = encode_payload_as(Codec::MessagePack, &old).unwrap();
    storage.insert_raw(
        id,
        written_by(
            <PackedJournal as Actor>::TYPE_ID,
            id,
            0,
            Codec::MessagePack,
            Compression::None,
            &payload,
        ),
    );
    let root = RootContext::default();
    let actor = within(
        "respawn",
        root.respawn::<_, PackedJournal>(&storage, id, ()),
    )
    .await
    .unwrap();
    assert_eq!(
        within("read", actor.ask(Read)).await.unwrap(),
        Journal {
            owner: "ada".into(),
            entries: vec!["one".into()],
            pinned: Vec::new(),
        }
    );

    // The same change under bincode is an error that says what to do.
    let id = ActorId::new_v4();
    let payload = encode_payload_as(Codec::Bincode, &old).unwrap();
    storage.insert_raw(
        id,
        written_by(
            <PlainJournal as Actor>::TYPE_ID,
            id,
            0,
            Codec::Bincode,
            Compression::None,
            &payload,
        ),
    );
    let err = within(
        "respawn_or",
        root.respawn_or(&storage, id, || (), || PlainJournal(journal(0))),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PersistenceError::Decode { .. }), "{text}");
    for part in [
        id.to_string().as_str(),
        "PlainJournal` with bincode",
        "bump SCHEMA_VERSION and migrate",
        "`codec = \"msgpack\"`",
    ] {
        assert!(text.contains(part), "{part:?} not in: {text}");
    }
    assert!(!root.is_live(id));
}

/// Schema 1 of a wallet migrates schema-0 snapshots of either codec through
/// `migrate_payload`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ActorArgs)]
struct Wallet {
    cents: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct WalletV0 {
    units: i64,
}

#[derive(Debug)]
struct Cents;

#[actor("c0dec000-0000-4000-8000-000000000010")]
impl Actor for Wallet {
    const _: () = {
        async |_: Cents| -> i64 { self.cents };
    };
}

impl PersistentActor for Wallet {
    type Snapshot = Wallet;
    type RuntimeArgs = ();
    type ActorArgs = Wallet;
    const SCHEMA_VERSION: u32 = 1;
    const CODEC: Codec = Codec::MessagePack;

    fn persistent_args(snapshot: Wallet, _: ()) -> Wallet {
        snapshot
    }

    fn migrate_payload(from: u32, payload: Payload<'_>) -> Result<Wallet, anyhow::Error> {
        match from {
            0 => {
                let old: WalletV0 = payload.decode()?;
                Ok(Wallet {
                    cents: old.units * 100,
                })
            }
            v => anyhow::bail!("no wallet migration from schema {v}"),
        }
    }
}

#[tokio::test]
async fn a_migration_decodes_the_old_payload_in_whatever_codec_it_was_written() {
    let storage = MemoryStorage::new();
    let root = RootContext::default();
    for (codec, compression) in [
        (Codec::Bincode, Compression::None),
        (Codec::MessagePack, Compression::None),
        (Codec::MessagePack, Compression::Lz4),
    ] {
        let id = ActorId::new_v4();
        // Long enough that compression applies.
        let payload = encode_payload_as(codec, &WalletV0 { units: 7 }).unwrap();
        storage.insert_raw(
            id,
            written_by(
                <Wallet as Actor>::TYPE_ID,
                id,
                0,
                codec,
                compression,
                &payload,
            ),
        );
        let wallet = within("respawn", root.respawn::<_, Wallet>(&storage, id, ()))
            .await
            .unwrap_or_else(|e| panic!("{codec}: {e}"));
        assert_eq!(within("cents", wallet.ask(Cents)).await.unwrap(), 700);
    }
}

#[test]
fn payload_decode_uses_its_own_codec() {
    let bytes = encode_payload_as(Codec::MessagePack, &WalletV0 { units: 3 }).unwrap();
    assert_eq!(
        Payload::new(Codec::MessagePack, &bytes).codec(),
        Codec::MessagePack
    );
    let old: WalletV0 = Payload::new(Codec::MessagePack, &bytes).decode().unwrap();
    assert_eq!(old.units, 3);
    let err = Payload::new(Codec::Bincode, &bytes)
        .decode::<WalletV0>()
        .unwrap_err();
    assert_eq!(err.codec(), Some(Codec::Bincode));
    assert!(err.to_string().contains("WalletV0` with bincode"), "{err}");
}

// The schema-evolution table of the `persistence` module docs, row by row:
// `Same` means the old bytes decode to the expected new value, `Refused` that
// decoding fails, `Misread` that it succeeds with a wrong value (why bincode
// needs the version bump: the codec cannot notice).

#[derive(Debug, PartialEq)]
enum Outcome {
    Same,
    Refused,
    Misread,
}

fn outcome<Old: Serialize, New: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
    codec: Codec,
    old: &Old,
    expected: &New,
) -> Outcome {
    let bytes = encode_payload_as(codec, old).unwrap();
    match decode_payload_as::<New>(codec, &bytes) {
        Ok(new) if &new == expected => Outcome::Same,
        Ok(_) => Outcome::Misread,
        Err(_) => Outcome::Refused,
    }
}

/// Asserts one row: what bincode and MessagePack make of the change.
fn row<Old: Serialize, New: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
    change: &str,
    old: Old,
    expected: New,
    bincode: Outcome,
    msgpack: Outcome,
) {
    assert_eq!(
        outcome(Codec::Bincode, &old, &expected),
        bincode,
        "{change}: bincode"
    );
    assert_eq!(
        outcome(Codec::MessagePack, &old, &expected),
        msgpack,
        "{change}: msgpack"
    );
}

#[test]
fn the_schema_evolution_table_holds() {
    use Outcome::*;

    #[derive(Serialize)]
    struct Base {
        name: String,
        count: u32,
    }
    let base = || Base {
        name: "ada".into(),
        count: 7,
    };

    #[derive(Debug, PartialEq, Deserialize)]
    struct Added {
        name: String,
        count: u32,
        tags: Vec<String>,
    }
    row(
        "add a field",
        base(),
        Added {
            name: "ada".into(),
            count: 7,
            tags: vec![],
        },
        Refused,
        Refused,
    );

    #[derive(Debug, PartialEq, Deserialize)]
    struct AddedDefault {
        name: String,
        count: u32,
        #[serde(default)]
        tags: Vec<String>,
    }
    row(
        "add a field with #[serde(default)]",
        base(),
        AddedDefault {
            name: "ada".into(),
            count: 7,
            tags: vec![],
        },
        Refused,
        Same,
    );

    #[derive(Debug, PartialEq, Deserialize)]
    struct AddedOption {
        name: String,
        count: u32,
        note: Option<String>,
    }
    row(
        "add an Option field",
        base(),
        AddedOption {
            name: "ada".into(),
            count: 7,
            note: None,
        },
        Refused,
        Same,
    );

    #[derive(Debug, PartialEq, Deserialize)]
    struct Removed {
        name: String,
    }
    row(
        "remove a field",
        base(),
        Removed { name: "ada".into() },
        Refused,
        Same,
    );
    // Removing a field can also be misread by bincode, the trailing-bytes check
    // notwithstanding: here `len` is read as the length of `items`.
    #[derive(Serialize)]
    struct Counted {
        len: u8,
        items: Vec<u8>,
    }
    #[derive(Debug, PartialEq, Deserialize)]
    struct Uncounted {
        items: Vec<u8>,
    }
    row(
        "remove a field (misread)",
        Counted {
            len: 1,
            items: vec![],
        },
        Uncounted { items: vec![] },
        Misread,
        Same,
    );

    #[derive(Debug, PartialEq, Deserialize)]
    struct Renamed {
        label: String,
        count: u32,
    }
    let renamed = || Renamed {
        label: "ada".into(),
        count: 7,
    };
    row("rename a field", base(), renamed(), Same, Refused);
    #[derive(Debug, PartialEq, Deserialize)]
    struct RenamedAlias {
        #[serde(alias = "name")]
        label: String,
        count: u32,
    }
    row(
        "rename a field with #[serde(alias)]",
        base(),
        RenamedAlias {
            label: "ada".into(),
            count: 7,
        },
        Same,
        Same,
    );

    #[derive(Serialize)]
    struct Pair {
        low: u32,
        high: u32,
    }
    #[derive(Debug, PartialEq, Deserialize)]
    struct Swapped {
        high: u32,
        low: u32,
    }
    row(
        "reorder fields",
        Pair { low: 1, high: 2 },
        Swapped { high: 2, low: 1 },
        Misread,
        Same,
    );

    #[derive(Debug, PartialEq, Deserialize)]
    struct Widened {
        name: String,
        count: u64,
    }
    row(
        "widen an integer (u32 -> u64)",
        base(),
        Widened {
            name: "ada".into(),
            count: 7,
        },
        Same,
        Same,
    );
    #[derive(Serialize)]
    struct Small {
        delta: i32,
    }
    #[derive(Debug, PartialEq, Deserialize)]
    struct Float {
        delta: f64,
    }
    row(
        "integer -> float",
        Small { delta: -3 },
        Float { delta: -3.0 },
        Refused,
        Same,
    );
    #[derive(Debug, PartialEq, Deserialize)]
    struct Unsigned {
        delta: u32,
    }
    row(
        "signed -> unsigned",
        Small { delta: 3 },
        Unsigned { delta: 3 },
        Misread,
        Same,
    );
    #[derive(Debug, PartialEq, Deserialize)]
    struct Text {
        delta: String,
    }
    row(
        "change a field's type (i32 -> String)",
        Small { delta: 3 },
        Text { delta: "3".into() },
        Refused,
        Refused,
    );

    #[derive(Serialize)]
    enum Before {
        A,
        B(u32),
    }
    #[derive(Debug, PartialEq, Deserialize)]
    enum AddedLast {
        A,
        B(u32),
        C,
    }
    row(
        "add an enum variant at the end",
        vec![Before::A, Before::B(5)],
        vec![AddedLast::A, AddedLast::B(5)],
        Same,
        Same,
    );
    #[derive(Serialize)]
    enum Three {
        A,
        B,
        C,
    }
    #[derive(Debug, PartialEq, Deserialize)]
    enum Inserted {
        A,
        New,
        B,
        C,
    }
    row(
        "insert a variant in the middle",
        vec![Three::B],
        vec![Inserted::B],
        Misread,
        Same,
    );
    #[derive(Debug, PartialEq, Deserialize)]
    enum Reordered {
        C,
        B,
        A,
    }
    row(
        "reorder variants",
        vec![Three::A, Three::C],
        vec![Reordered::A, Reordered::C],
        Misread,
        Same,
    );
    #[derive(Debug, PartialEq, Deserialize)]
    enum RenamedVariant {
        A,
        Bee,
        C,
    }
    row(
        "rename a variant",
        vec![Three::B],
        vec![RenamedVariant::Bee],
        Same,
        Refused,
    );
    #[derive(Debug, PartialEq, Deserialize)]
    enum RemovedFirst {
        B,
        C,
    }
    row(
        "remove a variant",
        vec![Three::B],
        vec![RemovedFirst::B],
        Misread,
        Same,
    );
    row(
        "remove a variant that is stored",
        vec![Three::A],
        Vec::<RemovedFirst>::new(),
        Misread,
        Refused,
    );

    // Tuple structs are arrays in MessagePack: appending a defaulted field
    // works, moving one is positional as in bincode.
    #[derive(Serialize)]
    struct Tuple(String, u32);
    #[derive(Debug, PartialEq, Deserialize)]
    struct TupleAdded(String, u32, #[serde(default)] u32);
    row(
        "append a #[serde(default)] field to a tuple struct",
        Tuple("ada".into(), 7),
        TupleAdded("ada".into(), 7, 0),
        Refused,
        Same,
    );
    /// (low, high)
    #[derive(Serialize)]
    struct Span(u32, u32);
    /// (high, low)
    #[derive(Debug, PartialEq, Deserialize)]
    struct SpanSwapped(u32, u32);
    row(
        "reorder a tuple struct's fields",
        Span(1, 2),
        SpanSwapped(2, 1),
        Misread,
        Misread,
    );

    // Maps are maps in both codecs.
    row(
        "a map's entries",
        BTreeMap::from([("a".to_string(), 1u32)]),
        BTreeMap::from([("a".to_string(), 1u64)]),
        Same,
        Same,
    );
}
