//! Throughput of `SledStorage`, each figure next to a raw baseline measured in
//! the same run:
//!
//! - saves at 1, 8 and 64 concurrent actors, durable (group commit) and
//!   volatile, plain and *owned* (each actor claimed once, every save stamped
//!   with its epoch, as the runtime writes), against raw sled `insert + flush()`
//!   in a serial loop;
//! - reads of 10,000 stored snapshots (`try_read` + `envelope::open`),
//!   sequential and from 64 tasks, against raw sequential `sled::Tree::get` and
//!   raw sequential `std::fs::read` of the same snapshots as files, each with
//!   the same `envelope::open`;
//! - recovery of 100k snapshots (list, read, open), and the open-time check of
//!   100k (`SledStorage::from_db`: the census scan and the generation flush)
//!   against a raw scan of the same tree.
//!
//! `cargo bench -p theta-persistence-sled --bench sled`

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use theta::ActorId;
use theta::persistence::envelope::{self, Seal};
use theta::persistence::{ClaimMode, Durability, OwnerId, PersistentStorage};
use theta_persistence_sled::{SledStorage, TREE_NAME, sled};

const TYPE: ActorId = ActorId::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0b0b);
const PAYLOAD: [u8; 256] = [7; 256];
const READ_SNAPSHOTS: usize = 10_000;
const RECOVERY_SNAPSHOTS: usize = 100_000;
const READ_TASKS: usize = 64;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// An actor: its id, its owner epoch (0: writes without a claim) and its
/// sequence counter.
struct Actor {
    id: ActorId,
    epoch: u64,
    sequence: AtomicU64,
}

fn actors(n: usize) -> Arc<Vec<Actor>> {
    Arc::new(
        (0..n)
            .map(|_| Actor {
                id: ActorId::new_v4(),
                epoch: 0,
                sequence: AtomicU64::new(0),
            })
            .collect(),
    )
}

/// Actors that each claimed their id once, as an activation does.
async fn owned_actors(storage: &SledStorage, n: usize) -> Arc<Vec<Actor>> {
    let owner = OwnerId::new();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let id = ActorId::new_v4();
        let claim = storage
            .try_claim(id, owner, ClaimMode::Exclusive)
            .await
            .expect("claim");
        out.push(Actor {
            id,
            epoch: claim.epoch,
            sequence: AtomicU64::new(0),
        });
    }
    Arc::new(out)
}

/// One save by each actor, all at once; returns when every save is acknowledged.
async fn save_all(storage: &SledStorage, actors: &Arc<Vec<Actor>>) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..actors.len() {
        let (storage, actors) = (storage.clone(), Arc::clone(actors));
        tasks.spawn(async move {
            let actor = &actors[i];
            let seq = actor.sequence.fetch_add(1, Ordering::Relaxed) + 1;
            let bytes = Seal::new(TYPE)
                .actor_id(actor.id)
                .epoch(actor.epoch)
                .sequence(seq)
                .seal(&PAYLOAD);
            storage.try_write(actor.id, bytes).await.expect("save");
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
}

fn saves(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let durable = SledStorage::open(dir.path().join("db")).expect("open");
    let volatile = durable
        .clone()
        .with_durability(Durability::Volatile)
        .expect("volatile");

    let mut group = c.benchmark_group("sled/saves");
    for (label, storage, concurrency, owned) in [
        ("durable", &durable, 1, false),
        ("durable", &durable, 8, false),
        ("durable", &durable, 64, false),
        ("durable-owned", &durable, 1, true),
        ("durable-owned", &durable, 64, true),
        ("volatile", &volatile, 64, false),
        ("volatile-owned", &volatile, 64, true),
    ] {
        let actors = if owned {
            rt.block_on(owned_actors(storage, concurrency))
        } else {
            actors(concurrency)
        };
        group.throughput(Throughput::Elements(concurrency as u64));
        group.bench_with_input(
            BenchmarkId::new(label, format!("{concurrency} actors")),
            &concurrency,
            |b, _| b.to_async(&rt).iter(|| save_all(storage, &actors)),
        );
    }
    group.finish();
    rt.block_on(durable.close()).expect("close");
}

/// A sled database in `path`, and `n` snapshots of sequential ids written into
/// it through a storage (a volatile handle, then one flush) that shares it.
fn stored(
    rt: &tokio::runtime::Runtime,
    path: &Path,
    n: usize,
) -> (sled::Db, SledStorage, Vec<ActorId>) {
    let db = sled::open(path).expect("open");
    let storage = SledStorage::from_db_at(&db, path).expect("storage");
    let fast = storage
        .clone()
        .with_durability(Durability::Volatile)
        .expect("volatile");
    let ids: Vec<ActorId> = (0..n).map(|i| ActorId::from_u128(i as u128 + 1)).collect();
    rt.block_on(async {
        for id in &ids {
            let bytes = Seal::new(TYPE).actor_id(*id).sequence(1).seal(&PAYLOAD);
            fast.try_write(*id, bytes).await.expect("write");
        }
        storage.flush().await.expect("flush");
    });
    (db, storage, ids)
}

/// What a respawn does with the bytes it read.
fn open_envelope(bytes: &[u8]) {
    let (header, payload) = envelope::open(bytes, envelope::DEFAULT_MAX_PAYLOAD).expect("open");
    black_box((header.sequence, payload.len()));
}

fn reads(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, storage, ids) = stored(&rt, &dir.path().join("db"), READ_SNAPSHOTS);

    // The raw baselines: the same snapshots through sled directly (a second
    // handle on the same tree), and as one file each.
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).expect("files dir");
    let mut paths: Vec<PathBuf> = Vec::with_capacity(ids.len());
    for id in &ids {
        let bytes = rt.block_on(storage.try_read(*id)).expect("read");
        let path = files.join(format!("{id}.snap"));
        std::fs::write(&path, bytes).expect("write file");
        paths.push(path);
    }
    let shared = Arc::new(storage.clone());
    let ids = Arc::new(ids);

    let mut group = c.benchmark_group("sled/reads");
    group.throughput(Throughput::Elements(READ_SNAPSHOTS as u64));
    group.bench_function("try_read 10k, sequential", |b| {
        b.to_async(&rt).iter(|| async {
            for id in ids.iter() {
                open_envelope(&storage.try_read(*id).await.expect("read"));
            }
        })
    });
    group.bench_function("try_read 10k, 64 tasks", |b| {
        b.to_async(&rt).iter(|| async {
            let mut tasks = tokio::task::JoinSet::new();
            for task in 0..READ_TASKS {
                let (storage, ids) = (Arc::clone(&shared), Arc::clone(&ids));
                tasks.spawn(async move {
                    for id in ids.iter().skip(task).step_by(READ_TASKS) {
                        open_envelope(&storage.try_read(*id).await.expect("read"));
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.expect("task");
            }
        })
    });
    // The tree the storage uses, through sled: the same pages.
    let tree = db.open_tree(TREE_NAME).expect("tree");
    group.bench_function("raw sled get 10k, sequential", |b| {
        b.iter(|| {
            for id in ids.iter() {
                let bytes = tree.get(id.as_bytes()).expect("get").expect("present");
                // `try_read` returns an owned copy: so does the baseline.
                let owned = black_box(bytes.to_vec());
                open_envelope(&owned);
            }
        })
    });
    group.bench_function("raw std::fs::read 10k, sequential", |b| {
        b.iter(|| {
            for path in &paths {
                open_envelope(&std::fs::read(path).expect("read file"));
            }
        })
    });
    group.finish();
}

fn recovery(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_db, storage, _) = stored(&rt, &dir.path().join("db"), RECOVERY_SNAPSHOTS);

    let mut group = c.benchmark_group("sled/recovery");
    group.throughput(Throughput::Elements(RECOVERY_SNAPSHOTS as u64));
    group.bench_function("list + read + envelope::open of 100k", |b| {
        b.to_async(&rt).iter(|| async {
            let ids = storage.try_list().await.expect("list");
            for id in ids {
                open_envelope(&storage.try_read(id).await.expect("read"));
            }
        })
    });
    group.finish();
}

fn open_check(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let (db, storage, _) = stored(&rt, &path, RECOVERY_SNAPSHOTS);
    rt.block_on(storage.close()).expect("close");

    let mut group = c.benchmark_group("sled/open");
    group.throughput(Throughput::Elements(RECOVERY_SNAPSHOTS as u64));
    group.bench_function("from_db check of 100k", |b| {
        b.iter(|| black_box(SledStorage::from_db(&db).expect("from_db")))
    });
    let tree = db.open_tree(TREE_NAME).expect("tree");
    group.bench_function("raw scan of 100k", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for entry in tree.iter() {
                let (key, value) = entry.expect("entry");
                n += key.len() + value.len();
            }
            black_box(n)
        })
    });
    group.finish();
}

fn baseline(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::open(dir.path().join("db")).expect("open");
    let mut sequence = 0u64;
    let mut group = c.benchmark_group("sled/baseline");
    group.throughput(Throughput::Elements(1));
    group.bench_function("raw insert + flush(), serial", |b| {
        b.iter(|| {
            // A new value each time: sled skips an insert that changes nothing.
            sequence += 1;
            let bytes = envelope::seal(TYPE, 0, sequence, &PAYLOAD);
            db.insert(b"key", bytes).expect("insert");
            db.flush().expect("flush");
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = baseline, saves, reads, recovery, open_check
}
criterion_main!(benches);
