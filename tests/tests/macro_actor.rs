//! Actors written with `#[actor]` and `#[derive(ActorArgs)]`: what the generated
//! code does at run time.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::LazyLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use theta::persistence::{
    Codec, Compression, MemoryStorage, PersistenceError, Restore, RestoreArgs, SharedStorage,
    SnapshotPolicy, decode_payload, envelope,
};
use theta::prelude::*;

/// Every await goes through this, so a hang fails the test instead of stalling it.
async fn within<F: IntoFuture>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .expect("timed out")
}

// ---------------------------------------------------------------------------
// Plain actor: tell/ask, typed replies, `?`, patterns, several handler blocks,
// kept hooks.

#[derive(Debug, Clone, ActorArgs)]
struct Calc {
    value: i64,
    started: bool,
    log: Vec<String>,
}

struct Add(i64);
struct Get;
struct Point {
    x: i64,
    y: i64,
}
struct Parse(String);
struct Checked(i64);
struct WasStarted;
struct Log(&'static str);
struct History;
struct CloneState;

#[derive(Debug, PartialEq)]
enum CalcError {
    Negative(i64),
}

#[actor("0c4a1f3e-51d2-4b7e-8a6f-2d9e0b1c7a01")]
impl Actor for Calc {
    const _: () = {
        async |Add(n): Add| {
            self.value += n;
        };
        async |_: Get| -> i64 { self.value };
        async |Point { x, y }: Point| -> i64 {
            self.value = x * y;
            self.value
        };
    };

    const _: () = {
        async |Parse(text): Parse| -> Result<i64, std::num::ParseIntError> {
            let n: i64 = text.trim().parse()?;
            self.value += n;
            Ok(self.value)
        };
        async |Checked(n): Checked| -> Result<i64, CalcError> {
            if n < 0 {
                return Err(CalcError::Negative(n));
            }
            // `ctx` is the actor's own context.
            let _id = ctx.id();
            Ok(n * 2)
        };
        async |_: WasStarted| -> bool { self.started };
        async |Log(line): Log| {
            // Awaiting inside a handler works.
            tokio::task::yield_now().await;
            self.log.push(line.to_owned());
        };
        async |_: History| -> Vec<String> { self.log.clone() };
        // `Self` in a reply type is the actor.
        async |_: CloneState| -> Option<Self> { Some(self.clone()) };
    };

    async fn on_start(&mut self, _ctx: &Context<Self>) {
        self.started = true;
    }
}

fn calc() -> Calc {
    Calc {
        value: 0,
        started: false,
        log: Vec::new(),
    }
}

#[tokio::test]
async fn tell_then_ask_returns_the_typed_reply() {
    let root = RootContext::default();
    let actor = root.spawn(calc());
    actor.tell(Add(2)).unwrap();
    actor.tell(Add(40)).unwrap();
    let value: i64 = within(actor.ask(Get)).await.unwrap();
    assert_eq!(value, 42);
    let state: Option<Calc> = within(actor.ask(CloneState)).await.unwrap();
    assert_eq!(state.map(|c| c.value), Some(42));
}

#[tokio::test]
async fn ask_of_a_unit_handler_returns_unit_after_it_ran() {
    let root = RootContext::default();
    let actor = root.spawn(calc());
    let (): () = within(actor.ask(Log("one"))).await.unwrap();
    within(actor.ask(Log("two"))).await.unwrap();
    assert_eq!(within(actor.ask(History)).await.unwrap(), ["one", "two"]);
}

#[tokio::test]
async fn patterns_destructure_the_message() {
    let root = RootContext::default();
    let actor = root.spawn(calc());
    assert_eq!(within(actor.ask(Point { x: 6, y: 7 })).await.unwrap(), 42);
    assert_eq!(within(actor.ask(Get)).await.unwrap(), 42);
}

#[tokio::test]
async fn question_mark_and_return_use_the_handler_result() {
    let root = RootContext::default();
    let actor = root.spawn(calc());
    assert_eq!(within(actor.ask(Parse(" 5 ".into()))).await.unwrap(), Ok(5));
    let err = within(actor.ask(Parse("five".into()))).await.unwrap();
    assert!(err.is_err(), "`?` must return the parse error, got {err:?}");
    // The failed parse did not touch the state.
    assert_eq!(within(actor.ask(Get)).await.unwrap(), 5);

    assert_eq!(within(actor.ask(Checked(21))).await.unwrap(), Ok(42));
    assert_eq!(
        within(actor.ask(Checked(-1))).await.unwrap(),
        Err(CalcError::Negative(-1))
    );
}

#[tokio::test]
async fn hooks_in_the_impl_are_kept() {
    let root = RootContext::default();
    let actor = root.spawn(calc());
    assert!(within(actor.ask(WasStarted)).await.unwrap());
}

#[test]
fn type_id_is_the_attribute_uuid() {
    assert_eq!(
        <Calc as Actor>::TYPE_ID,
        uuid::uuid!("0c4a1f3e-51d2-4b7e-8a6f-2d9e0b1c7a01")
    );
    assert_eq!(
        <Upper as Actor>::TYPE_ID,
        uuid::uuid!("ABCDEF01-2345-6789-ABCD-EF0123456789")
    );
}

// Upper-case hex is a valid uuid too; an actor without handlers is fine.
#[derive(Debug, Clone, ActorArgs)]
struct Upper;

#[actor("ABCDEF01-2345-6789-ABCD-EF0123456789")]
impl Actor for Upper {}

// ---------------------------------------------------------------------------
// `snapshot`: the actor is its own snapshot.

static STORAGE: LazyLock<MemoryStorage> = LazyLock::new(MemoryStorage::new);

#[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
struct Tally {
    count: u64,
}

struct Bump;
struct Count;
struct Save;

#[actor("5e0f6d7c-3b2a-4c19-8e07-6a5b4c3d2e10", snapshot)]
impl Actor for Tally {
    const _: () = {
        async |_: Bump| {
            self.count += 1;
        };
        async |_: Count| -> u64 { self.count };
        async |_: Save| -> Result<(), String> {
            ctx.save_snapshot(&*STORAGE, self)
                .await
                .map_err(|e| e.to_string())
        };
    };
}

fn assert_persistent<A, S, Args>()
where
    A: PersistentActor<Snapshot = S, ActorArgs = Args, RuntimeArgs = ()>,
{
}

#[tokio::test]
async fn snapshot_flag_saves_and_restores_the_actor_itself() {
    assert_persistent::<Tally, Tally, Tally>();
    assert_eq!(
        <Tally as PersistentActor>::snapshot_policy(),
        SnapshotPolicy::new()
    );

    let root = RootContext::default();
    let id = ActorId::new_v4();
    let tally = within(root.respawn_or(&*STORAGE, id, || (), || Tally { count: 0 }))
        .await
        .unwrap();
    tally.tell(Bump).unwrap();
    tally.tell(Bump).unwrap();
    within(tally.ask(Save)).await.unwrap().unwrap();
    tally.tell(Bump).unwrap(); // not saved
    assert_eq!(within(tally.ask(Count)).await.unwrap(), 3);
    tally.stop();
    within(tally.stopped()).await;

    let restored = within(root.respawn_or(&*STORAGE, id, || (), || Tally { count: 100 }))
        .await
        .unwrap();
    assert_eq!(within(restored.ask(Count)).await.unwrap(), 2);
}

// ---------------------------------------------------------------------------
// `snapshot = S`: a separate snapshot type, and the policy options.

#[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
struct Cache {
    hits: u64,
    #[serde(skip)]
    entries: HashMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheSnapshot {
    hits: u64,
}

impl From<&Cache> for CacheSnapshot {
    fn from(cache: &Cache) -> Self {
        Self { hits: cache.hits }
    }
}

impl ActorArgs for CacheSnapshot {
    type Actor = Cache;

    async fn initialize(_ctx: Context<Cache>, args: &Self) -> Cache {
        Cache {
            hits: args.hits,
            entries: HashMap::from([("rebuilt".to_owned(), "yes".to_owned())]),
        }
    }
}

struct Put(&'static str, &'static str);
struct Lookup(&'static str);
struct SaveCache;

#[actor(
    "7d1e2f30-4a5b-4c6d-9e8f-0a1b2c3d4e5f",
    snapshot = CacheSnapshot,
    snapshot_every = 1000,
    snapshot_interval_ms = 60000,
    snapshot_on_stop,
)]
impl Actor for Cache {
    const _: () = {
        async |Put(k, v): Put| {
            self.entries.insert(k.to_owned(), v.to_owned());
        };
        async |Lookup(k): Lookup| -> (u64, Option<String>) {
            self.hits += 1;
            (self.hits, self.entries.get(k).cloned())
        };
        async |_: SaveCache| -> bool { ctx.save_snapshot(&*STORAGE, self).await.is_ok() };
    };
}

/// The `hits` of a stored `Cache` snapshot, decoded as a `CacheSnapshot`.
fn stored_hits(id: ActorId, bytes: &[u8]) -> u64 {
    let (header, payload) = envelope::open(bytes, envelope::DEFAULT_MAX_PAYLOAD).unwrap();
    assert_eq!(header.actor_type, <Cache as Actor>::TYPE_ID, "{id}");
    decode_payload::<CacheSnapshot>(payload).unwrap().hits
}

#[tokio::test]
async fn snapshot_type_restores_through_its_own_args() {
    assert_persistent::<Cache, CacheSnapshot, CacheSnapshot>();
    assert_eq!(
        <Cache as PersistentActor>::snapshot_policy(),
        SnapshotPolicy::new()
            .every_n_messages(1000)
            .every_interval(Duration::from_millis(60000))
            .on_graceful_stop()
    );

    let root = RootContext::default();
    let id = ActorId::new_v4();
    let fresh = || Cache {
        hits: 0,
        entries: HashMap::new(),
    };
    let cache = within(root.respawn_or(&*STORAGE, id, || (), fresh))
        .await
        .unwrap();
    cache.tell(Put("a", "1")).unwrap();
    assert_eq!(
        within(cache.ask(Lookup("a"))).await.unwrap(),
        (1, Some("1".to_owned()))
    );
    assert!(within(cache.ask(SaveCache)).await.unwrap());
    let saved = STORAGE.get(id).expect("the explicit save");
    assert_eq!(stored_hits(id, &saved), 1);
    // A change after the last save: only the save on stop can keep it.
    assert_eq!(
        within(cache.ask(Lookup("a"))).await.unwrap(),
        (2, Some("1".to_owned()))
    );
    assert_eq!(
        STORAGE.get(id),
        Some(saved.clone()),
        "no save before the stop"
    );
    cache.stop();
    within(cache.stopped()).await;
    let on_stop = STORAGE.get(id).expect("the snapshot saved on stop");
    assert_eq!(
        stored_hits(id, &on_stop),
        2,
        "the on-stop snapshot holds the last change"
    );
    assert!(envelope::sequence_of(&on_stop) > envelope::sequence_of(&saved));

    let restored = within(root.respawn_or(&*STORAGE, id, || (), fresh))
        .await
        .unwrap();
    // `hits` came from the snapshot saved on stop; the cache was rebuilt by
    // `CacheSnapshot::initialize`, not restored.
    let (hits, a) = within(restored.ask(Lookup("a"))).await.unwrap();
    assert_eq!((hits, a), (3, None));
    let (_, rebuilt) = within(restored.ask(Lookup("rebuilt"))).await.unwrap();
    assert_eq!(rebuilt.as_deref(), Some("yes"));
}

// ---------------------------------------------------------------------------
// `runtime_args = T`: a storage handle the actor saves with, supplied at every
// (re)spawn and never stored; `Restore` builds the actor from snapshot + handle.

struct Journal {
    lines: Vec<String>,
    storage: SharedStorage,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct JournalSnapshot {
    lines: Vec<String>,
}

impl From<&Journal> for JournalSnapshot {
    fn from(journal: &Journal) -> Self {
        Self {
            lines: journal.lines.clone(),
        }
    }
}

/// Appended and saved by hand through the runtime-args handle.
struct Commit(&'static str);
/// Appended, not saved.
struct Append(&'static str);
struct Lines;
struct Crash;

#[actor(
    "3b7e9d10-6c2f-4a8e-9b1d-5f4e3a2c1b01",
    snapshot = JournalSnapshot,
    runtime_args = SharedStorage
)]
impl Actor for Journal {
    const _: () = {
        async |Commit(line): Commit| -> Result<(), String> {
            self.lines.push(line.to_owned());
            ctx.save_snapshot(&self.storage, self)
                .await
                .map_err(|e| e.to_string())
        };
        async |Append(line): Append| {
            self.lines.push(line.to_owned());
        };
        async |_: Lines| -> Vec<String> { self.lines.clone() };
        async |_: Crash| {
            panic!("journal crashed");
        };
    };
}

impl Restore for Journal {
    async fn restore(
        _ctx: Context<Self>,
        snapshot: &JournalSnapshot,
        storage: &SharedStorage,
    ) -> Self {
        Journal {
            lines: snapshot.lines.clone(),
            storage: storage.clone(),
        }
    }
}

/// Parent of journals, so a journal's panic is supervised (restarted).
#[derive(Debug, Clone, ActorArgs)]
struct Desk;

struct Open(SharedStorage, ActorId);

#[actor("3b7e9d10-6c2f-4a8e-9b1d-5f4e3a2c1b02")]
impl Actor for Desk {
    const _: () = {
        async |Open(storage, id): Open| -> Result<ActorRef<Journal>, String> {
            let empty = || RestoreArgs::new(JournalSnapshot { lines: Vec::new() }, storage.clone());
            ctx.respawn_or(&storage, id, || storage.clone(), empty)
                .await
                .map_err(|e| e.to_string())
        };
    };
}

fn assert_restored_with<A, S, R>()
where
    A: PersistentActor<Snapshot = S, RuntimeArgs = R, ActorArgs = RestoreArgs<A>> + Restore,
{
}

#[tokio::test]
async fn runtime_args_reach_the_actor_at_spawn_restart_and_respawn() {
    assert_restored_with::<Journal, JournalSnapshot, SharedStorage>();
    let storage = MemoryStorage::new();
    let shared = SharedStorage::new(storage.clone());
    let id = ActorId::new_v4();
    let root = RootContext::default();
    let desk = root.spawn(Desk);

    // No snapshot yet: started from the empty `RestoreArgs`.
    let journal = within(desk.ask(Open(shared.clone(), id)))
        .await
        .unwrap()
        .unwrap();
    within(journal.ask(Commit("a"))).await.unwrap().unwrap();
    within(journal.ask(Append("not saved"))).await.unwrap();
    assert_eq!(
        within(journal.ask(Lines)).await.unwrap(),
        ["a", "not saved"]
    );

    // A restart rebuilds from the latest snapshot with a clone of the handle,
    // which still saves.
    assert!(within(journal.ask(Crash)).await.is_err());
    assert_eq!(within(journal.ask(Lines)).await.unwrap(), ["a"]);
    within(journal.ask(Commit("b"))).await.unwrap().unwrap();
    journal.stop();
    within(journal.stopped()).await;

    // `respawn` takes the runtime args by value.
    let restored: ActorRef<Journal> = within(root.respawn(&storage, id, shared.clone()))
        .await
        .unwrap();
    assert_eq!(within(restored.ask(Lines)).await.unwrap(), ["a", "b"]);
    within(restored.ask(Commit("c"))).await.unwrap().unwrap();
    restored.stop();
    within(restored.stopped()).await;

    // `respawn_or` restores too when a snapshot exists.
    let again = within(desk.ask(Open(shared, id))).await.unwrap().unwrap();
    assert_eq!(within(again.ask(Lines)).await.unwrap(), ["a", "b", "c"]);
}

// `snapshot` (the actor is its own snapshot) with runtime args that have a
// default, so `spawn_persistent` works; and `schema_version`.

#[derive(Debug, Clone, Default, PartialEq)]
struct Greeting(String);

#[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
struct Visits {
    count: u64,
    #[serde(skip)]
    greeting: String,
}

struct Visit;
struct SaveVisits(SharedStorage);

#[actor(
    "3b7e9d10-6c2f-4a8e-9b1d-5f4e3a2c1b03",
    snapshot,
    runtime_args = Greeting,
    schema_version = 3
)]
impl Actor for Visits {
    const _: () = {
        async |_: Visit| -> String {
            self.count += 1;
            format!("{} #{}", self.greeting, self.count)
        };
        async |SaveVisits(storage): SaveVisits| -> bool {
            ctx.save_snapshot(&storage, self).await.is_ok()
        };
    };
}

impl Restore for Visits {
    async fn restore(_ctx: Context<Self>, snapshot: &Visits, greeting: &Greeting) -> Self {
        Visits {
            greeting: greeting.0.clone(),
            ..snapshot.clone()
        }
    }
}

#[tokio::test]
async fn default_runtime_args_allow_spawn_persistent() {
    assert_restored_with::<Visits, Visits, Greeting>();
    assert_eq!(<Visits as PersistentActor>::SCHEMA_VERSION, 3);
    let storage = MemoryStorage::new();
    let id = ActorId::new_v4();
    let root = RootContext::default();

    // Fresh from the actor's own (derived) args; the greeting is not stored.
    let fresh = Visits {
        count: 0,
        greeting: "hi".to_owned(),
    };
    let visits = within(root.spawn_persistent(&storage, id, fresh))
        .await
        .unwrap();
    assert_eq!(within(visits.ask(Visit)).await.unwrap(), "hi #1");
    let shared = SharedStorage::new(storage.clone());
    assert!(within(visits.ask(SaveVisits(shared))).await.unwrap());
    visits.stop();
    within(visits.stopped()).await;

    let restored: ActorRef<Visits> =
        within(root.respawn(&storage, id, Greeting("hello".to_owned())))
            .await
            .unwrap();
    assert_eq!(within(restored.ask(Visit)).await.unwrap(), "hello #2");
}

// ---------------------------------------------------------------------------
// `schema_version = N, migrate = f`: snapshots of older versions go through `f`.
// The three types share one actor type uuid: they are one actor type at three
// points of its history, so only one of them is ever spawned in this process
// (theta refuses two live types with one uuid); the older one only encodes the
// bytes an older build wrote, the strict one only decodes them.

/// Version 0: whole units, saved by the macro's default schema version 0.
#[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
struct WalletV0 {
    owner: String,
    units: i64,
}

#[actor("3b7e9d10-6c2f-4a8e-9b1d-5f4e3a2c1b04", snapshot)]
impl Actor for WalletV0 {}

/// Version 1: cents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ActorArgs)]
struct Wallet {
    owner: String,
    cents: i64,
}

struct Balance;

#[actor(
    "3b7e9d10-6c2f-4a8e-9b1d-5f4e3a2c1b04",
    snapshot,
    schema_version = 1,
    migrate = wallet_from_older
)]
impl Actor for Wallet {
    const _: () = {
        async |_: Balance| -> Wallet { self.clone() };
    };
}

fn wallet_from_older(from_version: u32, payload: &[u8]) -> Result<Wallet, anyhow::Error> {
    match from_version {
        0 => {
            let old: WalletV0 = decode_payload(payload)?;
            Ok(Wallet {
                owner: old.owner,
                cents: old.units * 100,
            })
        }
        other => anyhow::bail!("unknown wallet schema version {other}"),
    }
}

/// Version 1 without a migration: older snapshots are refused.
#[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
struct StrictWallet {
    owner: String,
    cents: i64,
}

#[actor("3b7e9d10-6c2f-4a8e-9b1d-5f4e3a2c1b04", snapshot, schema_version = 1)]
impl Actor for StrictWallet {}

#[tokio::test]
async fn an_older_snapshot_is_migrated_by_the_migrate_option() {
    assert_eq!(<Wallet as PersistentActor>::SCHEMA_VERSION, 1);
    assert_eq!(<WalletV0 as PersistentActor>::SCHEMA_VERSION, 0);
    let storage = MemoryStorage::new();
    let id = ActorId::new_v4();
    let root = RootContext::default();

    // What a build of version 0 saved.
    let old = WalletV0 {
        owner: "ada".to_owned(),
        units: 7,
    };
    let bytes = theta::persistence::encode_snapshot(id, 1, &old).unwrap();
    storage.insert_raw(id, bytes.clone());

    let wallet: ActorRef<Wallet> = within(root.respawn(&storage, id, ())).await.unwrap();
    assert_eq!(
        within(wallet.ask(Balance)).await.unwrap(),
        Wallet {
            owner: "ada".to_owned(),
            cents: 700,
        }
    );
    wallet.stop();
    within(wallet.stopped()).await;

    // Without `migrate` the same bytes are refused, never misread.
    let err = theta::persistence::decode_snapshot::<StrictWallet>(id, &bytes).unwrap_err();
    assert!(
        matches!(
            err,
            PersistenceError::Migration {
                found: 0,
                current: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.actor_id(), id);
}

// ---------------------------------------------------------------------------
// `codec = ".."`, `compression = ".."`: the payload format of the actor type.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ActorArgs)]
struct Plain {
    words: Vec<String>,
}

struct Say(&'static str);
struct Words;
struct SavePlain(SharedStorage);

#[actor(
    "3b7e9d10-6c2f-4a8e-9b1d-5f4e3a2c1b05",
    snapshot,
    codec = "bincode",
    compression = "none"
)]
impl Actor for Plain {
    const _: () = {
        async |Say(word): Say| {
            self.words.push(word.to_owned());
        };
        async |_: Words| -> Vec<String> { self.words.clone() };
        async |SavePlain(storage): SavePlain| -> Result<(), String> {
            ctx.save_snapshot(&storage, self)
                .await
                .map_err(|e| e.to_string())
        };
    };
}

#[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
struct Packed;

#[actor(
    "3b7e9d10-6c2f-4a8e-9b1d-5f4e3a2c1b06",
    snapshot,
    codec = "msgpack",
    compression = "zstd"
)]
impl Actor for Packed {}

#[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
struct Quick;

#[actor("3b7e9d10-6c2f-4a8e-9b1d-5f4e3a2c1b07", snapshot, compression = "lz4")]
impl Actor for Quick {}

#[test]
fn codec_and_compression_options_set_the_actor_types_format() {
    assert_eq!(<Plain as PersistentActor>::CODEC, Codec::Bincode);
    assert_eq!(<Plain as PersistentActor>::COMPRESSION, Compression::None);
    assert_eq!(<Packed as PersistentActor>::CODEC, Codec::MessagePack);
    assert_eq!(<Packed as PersistentActor>::COMPRESSION, Compression::Zstd);
    // Options left out keep the trait's defaults.
    assert_eq!(<Quick as PersistentActor>::CODEC, Codec::Bincode);
    assert_eq!(<Quick as PersistentActor>::COMPRESSION, Compression::Lz4);
    assert_eq!(<Tally as PersistentActor>::CODEC, Codec::Bincode);
    assert_eq!(<Tally as PersistentActor>::COMPRESSION, Compression::None);
}

#[tokio::test]
async fn an_actor_with_an_explicit_codec_saves_and_restores() {
    let storage = MemoryStorage::new();
    let id = ActorId::new_v4();
    let root = RootContext::default();
    let plain = within(root.spawn_persistent(&storage, id, Plain { words: Vec::new() }))
        .await
        .unwrap();
    plain.tell(Say("one")).unwrap();
    plain.tell(Say("two")).unwrap();
    within(plain.ask(SavePlain(SharedStorage::new(storage.clone()))))
        .await
        .unwrap()
        .unwrap();
    plain.stop();
    within(plain.stopped()).await;

    let restored: ActorRef<Plain> = within(root.respawn(&storage, id, ())).await.unwrap();
    assert_eq!(within(restored.ask(Words)).await.unwrap(), ["one", "two"]);
}
