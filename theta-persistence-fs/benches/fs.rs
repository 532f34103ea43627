//! FsStorage throughput next to raw `std::fs` / `tokio::fs` baselines.
//!
//! Each "element" is one saved (or read) snapshot; criterion prints elements/s.
//! `durable/N` = N actors saving concurrently, each its own id, each waiting for
//! its previous save; `owned/N` the same under ownership claims (each actor
//! claims its id, then writes under the claim's epoch, as the runtime does).
//! Baselines: a serial `std::fs::write` overwrite (not durable), a serial
//! temp+fsync+rename+dir-fsync loop (durable, no group commit), and 64
//! concurrent `tokio::fs::write` overwrites (not durable).
//!
//! `fs-read`: 10,000 stored snapshots read back (recovery) through `try_read`
//! and `try_claim`, one after the other and from 64 tasks, next to a raw
//! sequential `std::fs::read` of the same files in the same run.
//!
//! `fs-recovery`: reading 100k snapshots back; the `open` of a store of 100k
//! snapshot files (it reads every header: the index); the crash-recovery `open`
//! of a journal of 100k snapshots (replayed into memory), and that open with
//! the checkpoint that writes their files; and the `respawn` of 100k actors
//! (claim, read, decode, start) from the store.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use theta::ActorId;
use theta::persistence::Durability;
use theta::persistence::{
    ClaimMode, OwnerId, PersistentSpawnExt, PersistentStorage, encode_snapshot, envelope,
};
use theta::prelude::*;
use theta_persistence_fs::FsStorage;

/// The actor of the respawn benchmark: a device's meter reading.
#[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
struct Meter {
    /// Readings taken.
    readings: u64,
    /// The device's name.
    device: String,
}

impl Meter {
    fn new(id: ActorId) -> Self {
        Meter {
            readings: id.as_u64_pair().1 % 10_000,
            device: format!("device-{}", id.simple()),
        }
    }
}

#[actor("6d1b7c9e-0000-4000-8000-00000000be9d", snapshot)]
impl Actor for Meter {}

const TYPE: uuid::Uuid = uuid::uuid!("6d1b7c9e-0000-4000-8000-00000000be9c");
const PAYLOAD: [u8; 200] = [7; 200];
const RECOVERY_SNAPSHOTS: usize = 100_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `actors` tasks, each saving its own id `iters` times (under the claim's
/// epoch in `epochs`, if given); returns the elapsed time.
async fn save_concurrently(
    store: &FsStorage,
    actors: usize,
    iters: u64,
    seq: &AtomicU64,
    epochs: Option<&[u64]>,
) -> Duration {
    let base = seq.fetch_add(iters, Ordering::Relaxed);
    let start = Instant::now();
    let tasks: Vec<_> = (0..actors)
        .map(|i| {
            let store = store.clone();
            let id = ActorId::from_u128(i as u128 + 1);
            let seal = envelope::Seal::new(TYPE)
                .actor_id(id)
                .epoch(epochs.map_or(0, |e| e[i]));
            tokio::spawn(async move {
                for n in 0..iters {
                    let bytes = seal.sequence(base + n).seal(&PAYLOAD);
                    store.try_write(id, bytes).await.expect("save");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    start.elapsed()
}

fn fs_storage(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("fs");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    for (name, durability, actors) in [
        ("durable", Durability::PowerLoss, 1),
        ("durable", Durability::PowerLoss, 8),
        ("durable", Durability::PowerLoss, 64),
        ("owned", Durability::PowerLoss, 1),
        ("owned", Durability::PowerLoss, 64),
        ("buffered", Durability::ProcessKill, 64),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsStorage::builder(dir.path())
            .durability(durability)
            .open()
            .expect("open");
        let epochs: Option<Vec<u64>> = (name == "owned").then(|| {
            let owner = OwnerId::new();
            rt.block_on(async {
                let mut epochs = Vec::new();
                for i in 0..actors {
                    let id = ActorId::from_u128(i as u128 + 1);
                    let claim = store.try_claim(id, owner, ClaimMode::Exclusive).await;
                    epochs.push(claim.expect("claim").epoch);
                }
                epochs
            })
        });
        let seq = AtomicU64::new(1);
        group.throughput(Throughput::Elements(actors as u64));
        group.bench_function(format!("{name}/{actors}"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                save_concurrently(&store, actors, iters, &seq, epochs.as_deref())
            });
        });
    }

    // Reads: 64 concurrent readers of stored snapshots, from their files (a
    // checkpoint first: a write not yet checkpointed is read from memory).
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsStorage::open(dir.path()).expect("open");
        rt.block_on(async {
            save_concurrently(&store, 64, 1, &AtomicU64::new(1), None).await;
            store.checkpoint().await.expect("checkpoint");
        });
        group.throughput(Throughput::Elements(64));
        group.bench_function("read/64", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let store = store.clone();
                async move {
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..64u128)
                        .map(|i| {
                            let store = store.clone();
                            tokio::spawn(async move {
                                for _ in 0..iters {
                                    store
                                        .try_read(ActorId::from_u128(i + 1))
                                        .await
                                        .expect("read");
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.expect("task");
                    }
                    start.elapsed()
                }
            });
        });
    }
    group.finish();

    // Recovery: read and verify 100k stored snapshots (64 concurrent readers).
    let mut group = c.benchmark_group("fs-recovery");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    let dir = tempfile::tempdir().expect("tempdir");
    let ids: Vec<ActorId> = (0..RECOVERY_SNAPSHOTS).map(|_| ActorId::new_v4()).collect();
    {
        let store = FsStorage::builder(dir.path())
            .durability(Durability::ProcessKill)
            .open()
            .expect("open");
        rt.block_on(save_each(&store, &ids));
    }
    let store = FsStorage::open(dir.path()).expect("reopen");
    group.throughput(Throughput::Elements(RECOVERY_SNAPSHOTS as u64));
    group.bench_function("read+open/100k", |b| {
        b.to_async(&rt).iter(|| {
            let (store, ids) = (store.clone(), ids.clone());
            async move {
                over_64_tasks(&ids, move |id| {
                    let store = store.clone();
                    async move {
                        let bytes = store.try_read(id).await.expect("read");
                        envelope::open(&bytes, envelope::DEFAULT_MAX_PAYLOAD).expect("valid");
                    }
                })
                .await;
            }
        });
    });

    // The open of a store of 100k snapshot files: the lock, the markers, and a
    // walk of the shard directories that reads every header (the index).
    drop(store);
    group.bench_function("open/100k", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let store = FsStorage::open(dir.path()).expect("open");
                total += start.elapsed();
                drop(store);
            }
            total
        });
    });

    // Crash recovery: `open` of a store whose journal holds 100k acknowledged
    // snapshots that no checkpoint wrote to files yet (replayed into memory;
    // with `+checkpoint`, until a checkpoint wrote the 100k files and synced
    // them). Each iteration opens a fresh copy of that directory.
    let crashed = tempfile::tempdir().expect("tempdir");
    {
        let store = FsStorage::builder(dir.path().join("journaled"))
            .durability(Durability::ProcessKill)
            .journal_limit(u64::MAX)
            .open()
            .expect("open");
        rt.block_on(save_each(&store, &ids));
        // What a kill -9 now would leave: the journal and no snapshot files.
        copy_dir(&dir.path().join("journaled"), crashed.path());
    }
    // Actor recovery: `respawn` of 100k actors (read, decode, start) from the
    // checkpointed store, 64 tasks at a time, in a fresh root each time.
    {
        let store = FsStorage::open(dir.path().join("meters")).expect("open");
        rt.block_on(async {
            let writer = store.clone();
            over_64_tasks(&ids, move |id| {
                let store = writer.clone();
                async move {
                    let bytes = encode_snapshot(id, 1, &Meter::new(id)).expect("encode");
                    store.try_write(id, bytes).await.expect("save");
                }
            })
            .await;
            store.checkpoint().await.expect("checkpoint");
        });
        group.bench_function("respawn/100k", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (store, ids) = (store.clone(), ids.clone());
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let root = RootContext::default();
                        let start = Instant::now();
                        let (spawner, from) = (root.clone(), store.clone());
                        let refs: Vec<ActorRef<Meter>> = over_64_tasks(&ids, move |id| {
                            let (root, store) = (spawner.clone(), from.clone());
                            async move { root.respawn(&store, id, ()).await.expect("respawn") }
                        })
                        .await;
                        total += start.elapsed();
                        drop(refs);
                        root.shutdown(Duration::from_secs(60))
                            .await
                            .expect("shutdown");
                    }
                    total
                }
            });
        });
    }

    for with_checkpoint in [false, true] {
        let name = if with_checkpoint {
            "replay-open+checkpoint/100k"
        } else {
            "replay-open/100k"
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let copy = tempfile::tempdir().expect("tempdir");
                    copy_dir(crashed.path(), copy.path());
                    let start = Instant::now();
                    let store = FsStorage::open(copy.path()).expect("replaying open");
                    if with_checkpoint {
                        rt.block_on(store.checkpoint()).expect("checkpoint");
                    }
                    total += start.elapsed();
                    drop(store);
                }
                total
            });
        });
    }
    group.finish();
}

/// Recovery reads: 10,000 stored snapshots (in their files) read back through
/// `try_read` and `try_claim`, one after the other and from 64 tasks, next to
/// a raw sequential `std::fs::read` of the same files.
fn fs_reads(c: &mut Criterion) {
    const N: usize = 10_000;
    let rt = runtime();
    let mut group = c.benchmark_group("fs-read");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(N as u64));
    let dir = tempfile::tempdir().expect("tempdir");
    let ids: Vec<ActorId> = (0..N).map(|_| ActorId::new_v4()).collect();
    {
        let store = FsStorage::open(dir.path()).expect("open");
        rt.block_on(save_each(&store, &ids));
    }
    let store = FsStorage::open(dir.path()).expect("reopen");
    // The same files, by path (the layout: `snapshots/<xor of the id's bytes>/<id>.snap`).
    let paths: Vec<PathBuf> = ids
        .iter()
        .map(|id| {
            let shard = id.as_bytes().iter().fold(0u8, |acc, b| acc ^ b);
            dir.path()
                .join("snapshots")
                .join(format!("{shard:02x}"))
                .join(format!("{id}.snap"))
        })
        .collect();
    group.bench_function("raw_std_fs_read/sequential", |b| {
        b.iter(|| {
            for path in &paths {
                let bytes = std::fs::read(path).expect("read");
                std::hint::black_box(bytes);
            }
        });
    });
    group.bench_function("try_read/sequential", |b| {
        b.to_async(&rt).iter(|| async {
            for id in &ids {
                let bytes = store.try_read(*id).await.expect("read");
                std::hint::black_box(bytes);
            }
        });
    });
    group.bench_function("try_read/64-tasks", |b| {
        b.to_async(&rt).iter(|| {
            let store = store.clone();
            over_64_tasks(&ids, move |id| {
                let store = store.clone();
                async move { std::hint::black_box(store.try_read(id).await.expect("read")) }
            })
        });
    });
    // Claims by one owner: each claim of an id it holds is granted again (a
    // newer epoch), and reads the snapshot.
    let owner = OwnerId::new();
    group.bench_function("try_claim/sequential", |b| {
        b.to_async(&rt).iter(|| async {
            for id in &ids {
                let claim = store.try_claim(*id, owner, ClaimMode::Exclusive).await;
                std::hint::black_box(claim.expect("claim"));
            }
        });
    });
    group.bench_function("try_claim/64-tasks", |b| {
        b.to_async(&rt).iter(|| {
            let store = store.clone();
            over_64_tasks(&ids, move |id| {
                let store = store.clone();
                async move {
                    let claim = store.try_claim(id, owner, ClaimMode::Exclusive).await;
                    std::hint::black_box(claim.expect("claim"))
                }
            })
        });
    });
    group.finish();
}

/// Runs `each` on every id, the ids split over 64 tasks (each task one id at a
/// time); returns the outputs, in the order of `ids`.
async fn over_64_tasks<T, F, Fut>(ids: &[ActorId], each: F) -> Vec<T>
where
    F: Fn(ActorId) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = T> + Send,
    T: Send + 'static,
{
    let tasks: Vec<_> = ids
        .chunks(ids.len().div_ceil(64))
        .map(|chunk| {
            let (each, chunk) = (each.clone(), chunk.to_vec());
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(chunk.len());
                for id in chunk {
                    out.push(each(id).await);
                }
                out
            })
        })
        .collect();
    let mut out = Vec::with_capacity(ids.len());
    for task in tasks {
        out.extend(task.await.expect("task"));
    }
    out
}

/// Saves one snapshot for each of `ids`, from 64 tasks.
async fn save_each(store: &FsStorage, ids: &[ActorId]) {
    let store = store.clone();
    over_64_tasks(ids, move |id| {
        let store = store.clone();
        async move {
            let bytes = envelope::seal(TYPE, 0, 1, &PAYLOAD);
            store.try_write(id, bytes).await.expect("save");
        }
    })
    .await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

fn sync_dir(dir: &Path) {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .expect("dir fsync");
}

fn baselines(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("baseline");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = envelope::seal(TYPE, 0, 1, &PAYLOAD);
    group.throughput(Throughput::Elements(1));

    let target = dir.path().join("plain.snap");
    group.bench_function("std_fs_write/serial", |b| {
        b.iter(|| std::fs::write(&target, &bytes).expect("write"));
    });

    let target = dir.path().join("durable.snap");
    let temp = dir.path().join("durable.tmp");
    group.bench_function("temp_fsync_rename_dirfsync/serial", |b| {
        b.iter(|| {
            let mut file = File::create(&temp).expect("create");
            file.write_all(&bytes).expect("write");
            file.sync_all().expect("fsync");
            drop(file);
            std::fs::rename(&temp, &target).expect("rename");
            sync_dir(dir.path());
        });
    });

    let paths: Vec<PathBuf> = (0..64)
        .map(|i| dir.path().join(format!("t{i}.snap")))
        .collect();
    group.throughput(Throughput::Elements(64));
    group.bench_function("tokio_fs_write/64", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (paths, bytes) = (paths.clone(), bytes.clone());
            async move {
                let start = Instant::now();
                let tasks: Vec<_> = paths
                    .into_iter()
                    .map(|path| {
                        let bytes = bytes.clone();
                        tokio::spawn(async move {
                            for _ in 0..iters {
                                tokio::fs::write(&path, &bytes).await.expect("write");
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("task");
                }
                start.elapsed()
            }
        });
    });
    group.finish();
}

criterion_group!(benches, baselines, fs_storage, fs_reads);
criterion_main!(benches);
