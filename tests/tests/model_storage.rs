//! Model-based tests of the storage contract: random sequences of saves, deletes,
//! stale saves, restarts and reopens are applied to a backend (through
//! `PersistentStorage`, with real envelopes and increasing sequence numbers) and
//! to a `HashMap` model. After every operation each id must read back exactly as
//! the model says (`SnapshotNotFound` when absent) and `try_list` must be the
//! model's key set.
//!
//! Case counts: 64 for `MemoryStorage`, 32 for the on-disk backends (each case
//! opens a fresh store and fsyncs every save), so the file stays a few seconds in
//! CI; 24 for PostgreSQL (each case in a schema of its own on the server of
//! `THETA_POSTGRES_URL`; skipped loudly without one, failed under `CI=true`).
//! `PROPTEST_CASES=N` overrides them all.

mod common;
mod postgres_support;
mod proptest_support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use common::within;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use theta::ActorId;
use theta::persistence::{
    MemoryStorage, PersistentStorage, SnapshotNotFound, StaleSnapshot, envelope,
};
use theta_persistence_fs::FsStorage;
use theta_persistence_postgres::PostgresStorage;
use theta_persistence_sled::SledStorage;

const MODEL_TYPE: uuid::Uuid = uuid::uuid!("40de1000-0000-4000-8000-0000000040de");

/// A few ids that differ only in their last bits, plus one in another fs shard.
fn ids() -> [ActorId; 5] {
    let base = 0x5a5a_0000_0000_0000_0000_0000_0000_0000u128;
    [
        ActorId::from_u128(base),
        ActorId::from_u128(base | 1),
        ActorId::from_u128(base | 2),
        ActorId::from_u128(base | 1 << 64),
        ActorId::from_u128(0x11 << 120),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    /// Save `value` for the id with the next (global, increasing) sequence number.
    Save(usize, Vec<u8>),
    /// Save with a sequence number below the stored one: must be refused as stale
    /// (a no-op when the id is absent).
    SaveStale(usize),
    Delete(usize),
    /// Drop the handle without closing and open again (memory: keep the map).
    Restart,
    /// Close in order (sled: `close()`, flushing) and open again.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0..ids().len();
    prop_oneof![
        6 => (id.clone(), prop::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(i, v)| Op::Save(i, v)),
        1 => id.clone().prop_map(Op::SaveStale),
        2 => id.prop_map(Op::Delete),
        1 => Just(Op::Restart),
        1 => Just(Op::Reopen),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..40)
}

/// How the model test gets, restarts and reopens a store of one backend.
trait Backend {
    type Storage: PersistentStorage;
    fn open(&mut self) -> Self::Storage;
    async fn restart(&mut self, storage: Self::Storage) -> Self::Storage;
    async fn reopen(&mut self, storage: Self::Storage) -> Self::Storage;
}

struct Memory;

impl Backend for Memory {
    type Storage = MemoryStorage;
    fn open(&mut self) -> MemoryStorage {
        MemoryStorage::new()
    }
    async fn restart(&mut self, storage: MemoryStorage) -> MemoryStorage {
        storage
    }
    async fn reopen(&mut self, storage: MemoryStorage) -> MemoryStorage {
        // A new handle on the same map; the old one goes away.
        storage.clone()
    }
}

struct Fs {
    _temp: tempfile::TempDir,
    dir: PathBuf,
    /// Restarts so far (each crash copy gets its own directory).
    crashes: u32,
}

impl Fs {
    fn new() -> Self {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("store");
        Self {
            _temp: temp,
            dir,
            crashes: 0,
        }
    }
}

impl Backend for Fs {
    type Storage = FsStorage;
    fn open(&mut self) -> FsStorage {
        // A tiny journal: checkpoints run between (and during) the model's steps.
        FsStorage::builder(&self.dir)
            .journal_limit(4096)
            .open()
            .expect("opening fs store")
    }
    /// A crash: the directory as a `kill -9` would leave it (copied while the
    /// store is open, journal first, because a checkpoint may be running) is
    /// opened in place of the original, which then closes unseen.
    async fn restart(&mut self, storage: FsStorage) -> FsStorage {
        let crashed = self.dir.with_extension(format!("crash{}", self.crashes));
        self.crashes += 1;
        // The journal first, copied again until it did not change while it was
        // copied (a checkpoint may be moving its start and removing segments:
        // a copy of half of that is no state a kill leaves); then the rest.
        fn copy(from: &Path, to: &Path, skip: &[&str]) {
            std::fs::create_dir_all(to).expect("crash copy dir");
            let Ok(entries) = std::fs::read_dir(from) else {
                return;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                if skip.iter().any(|s| name == *s) {
                    continue;
                }
                let target = to.join(&name);
                match entry.file_type() {
                    Ok(kind) if kind.is_dir() => copy(&entry.path(), &target, &[]),
                    Ok(_) => match std::fs::copy(entry.path(), &target) {
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => panic!("copying {}: {e}", entry.path().display()),
                    },
                    Err(_) => {}
                }
            }
        }
        let journal_state = |dir: &Path| {
            let mut state: Vec<_> = std::fs::read_dir(dir.join("journal"))
                .map(|entries| {
                    entries
                        .flatten()
                        .map(|e| (e.file_name(), e.metadata().map(|m| m.len()).ok()))
                        .collect()
                })
                .unwrap_or_default();
            state.sort();
            (std::fs::read(dir.join("journal/START")).ok(), state)
        };
        loop {
            let before = journal_state(&self.dir);
            let _ = std::fs::remove_dir_all(crashed.join("journal"));
            copy(&self.dir.join("journal"), &crashed.join("journal"), &[]);
            if journal_state(&self.dir) == before {
                break;
            }
        }
        copy(&self.dir, &crashed, &["journal", "LOCK"]);
        drop(storage);
        self.dir = crashed;
        self.open()
    }
    async fn reopen(&mut self, storage: FsStorage) -> FsStorage {
        // FsStorage has no close: the last drop is the orderly close (it joins the
        // committer, then unlocks).
        drop(storage);
        self.open()
    }
}

struct Sled {
    _temp: tempfile::TempDir,
    dir: PathBuf,
}

impl Sled {
    fn new() -> Self {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("db");
        Self { _temp: temp, dir }
    }
}

impl Backend for Sled {
    type Storage = SledStorage;
    fn open(&mut self) -> SledStorage {
        SledStorage::open(&self.dir).expect("opening sled store")
    }
    async fn restart(&mut self, storage: SledStorage) -> SledStorage {
        drop(storage);
        self.open()
    }
    async fn reopen(&mut self, storage: SledStorage) -> SledStorage {
        within("close", storage.close()).await.expect("close");
        self.open()
    }
}

/// A fresh schema per case; `restart` drops the handle without closing it (its
/// tasks end, nothing is flushed), `reopen` closes it; both connect again.
struct Postgres {
    url: String,
    schema: String,
}

impl Postgres {
    fn new(url: String) -> Self {
        Self {
            url,
            schema: postgres_support::fresh_schema("theta_model"),
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        postgres_support::drop_schemas(&self.url, vec![self.schema.clone()]);
    }
}

impl Backend for Postgres {
    type Storage = PostgresStorage;
    fn open(&mut self) -> PostgresStorage {
        // Lazy: the first operation connects and creates the tables.
        PostgresStorage::builder(&self.url)
            .schema(&self.schema)
            .pool_size(4)
            .build()
            .expect("building postgres storage")
    }
    async fn restart(&mut self, storage: PostgresStorage) -> PostgresStorage {
        drop(storage);
        self.open()
    }
    async fn reopen(&mut self, storage: PostgresStorage) -> PostgresStorage {
        within("close", storage.try_close()).await.expect("close");
        self.open()
    }
}

/// Checks every id and the listing against the model.
async fn check<S: PersistentStorage>(
    storage: &S,
    model: &HashMap<ActorId, Vec<u8>>,
    step: usize,
) -> Result<(), TestCaseError> {
    for id in ids() {
        let read = within("read", storage.try_read(id)).await;
        match (model.get(&id), read) {
            (Some(want), Ok(got)) => {
                prop_assert!(
                    &got == want,
                    "step {step}: {id} read {} bytes, model has {}",
                    got.len(),
                    want.len()
                );
                prop_assert!(envelope::open(&got, envelope::DEFAULT_MAX_PAYLOAD).is_ok());
            }
            (Some(_), Err(e)) => {
                return Err(TestCaseError::fail(format!(
                    "step {step}: {id} is in the model but reads as {e:#}"
                )));
            }
            (None, Err(e)) if e.is::<SnapshotNotFound>() => {}
            (None, other) => {
                return Err(TestCaseError::fail(format!(
                    "step {step}: {id} is absent from the model but reads as {:?}",
                    other.map(|b| b.len())
                )));
            }
        }
    }
    let mut listed = within("list", storage.try_list())
        .await
        .map_err(|e| TestCaseError::fail(format!("list: {e:#}")))?;
    listed.sort();
    let mut keys: Vec<ActorId> = model.keys().copied().collect();
    keys.sort();
    prop_assert_eq!(
        listed,
        keys,
        "step {}: listing differs from the model",
        step
    );
    Ok(())
}

/// Applies `ops` to a fresh store of `backend` and to the model.
async fn run_model<B: Backend>(mut backend: B, ops: &[Op]) -> Result<(), TestCaseError> {
    let ids = ids();
    let mut storage = backend.open();
    let mut model: HashMap<ActorId, Vec<u8>> = HashMap::new();
    let mut sequence = 0u64;
    check(&storage, &model, 0).await?;
    for (step, op) in ops.iter().enumerate() {
        let step = step + 1;
        match op {
            Op::Save(i, value) => {
                sequence += 1;
                let bytes = envelope::seal(MODEL_TYPE, 0, sequence, value);
                within("write", storage.try_write(ids[*i], bytes.clone()))
                    .await
                    .map_err(|e| TestCaseError::fail(format!("step {step}: write: {e:#}")))?;
                model.insert(ids[*i], bytes);
            }
            Op::SaveStale(i) => {
                let id = ids[*i];
                let Some(stored) = model.get(&id).and_then(|b| envelope::sequence_of(b)) else {
                    continue;
                };
                let Some(older) = stored.checked_sub(1) else {
                    continue;
                };
                let bytes = envelope::seal(MODEL_TYPE, 0, older, b"stale");
                match within("stale write", storage.try_write(id, bytes)).await {
                    Err(e) if e.is::<StaleSnapshot>() => {}
                    other => {
                        return Err(TestCaseError::fail(format!(
                            "step {step}: a stale write (sequence {older} < {stored}) gave {other:?}"
                        )));
                    }
                }
            }
            Op::Delete(i) => {
                within("delete", storage.try_delete(ids[*i]))
                    .await
                    .map_err(|e| TestCaseError::fail(format!("step {step}: delete: {e:#}")))?;
                model.remove(&ids[*i]);
            }
            Op::Restart => storage = backend.restart(storage).await,
            Op::Reopen => storage = backend.reopen(storage).await,
        }
        check(&storage, &model, step).await?;
    }
    Ok(())
}

/// Runs the proptest for one backend, each case on a current-thread runtime,
/// and prints how many cases and operations ran.
fn run_proptest<B: Backend>(name: &str, default_cases: u32, new: impl Fn() -> B) {
    let cases = AtomicU64::new(0);
    let operations = AtomicU64::new(0);
    let mut runner = TestRunner::new(proptest_support::proptest_config(default_cases, file!()));
    let result = runner.run(&ops(), |ops| {
        cases.fetch_add(1, Ordering::Relaxed);
        operations.fetch_add(ops.len() as u64, Ordering::Relaxed);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(run_model(new(), &ops))
    });
    eprintln!(
        "model_storage {name}: {} cases, {} operations (including any shrinking)",
        cases.into_inner(),
        operations.into_inner()
    );
    if let Err(e) = result {
        panic!("{name} diverged from the model: {e}");
    }
}

#[test]
fn memory_matches_the_model() {
    run_proptest("memory", 64, || Memory);
}

#[test]
fn fs_matches_the_model() {
    run_proptest("fs", 32, Fs::new);
}

#[test]
fn sled_matches_the_model() {
    run_proptest("sled", 32, Sled::new);
}

#[test]
fn postgres_matches_the_model() {
    let Some(url) = postgres_support::server() else {
        return;
    };
    run_proptest("postgres", 24, || Postgres::new(url.clone()));
}
