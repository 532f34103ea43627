//! Throughput of `SledStorage`: durable saves at 1, 8 and 64 concurrent actors
//! (group commit), buffered saves, reads, recovery of 100k snapshots, and raw
//! sled `insert + flush()` in a serial loop as the baseline.
//!
//! `cargo bench -p theta-persistence-sled`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use theta::ActorId;
use theta::persistence::{PersistentStorage, envelope};
use theta_persistence_sled::{Durability, SledStorage};

const TYPE: ActorId = ActorId::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0b0b);
const PAYLOAD: [u8; 256] = [7; 256];
const RECOVERY_SNAPSHOTS: usize = 100_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Actors, each with its own id and sequence counter.
fn actors(n: usize) -> Arc<Vec<(ActorId, AtomicU64)>> {
    Arc::new(
        (0..n)
            .map(|_| (ActorId::new_v4(), AtomicU64::new(0)))
            .collect(),
    )
}

/// One save by each actor, all at once; returns when every save is acknowledged.
async fn save_all(storage: &SledStorage, actors: &Arc<Vec<(ActorId, AtomicU64)>>) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..actors.len() {
        let (storage, actors) = (storage.clone(), Arc::clone(actors));
        tasks.spawn(async move {
            let (id, sequence) = &actors[i];
            let seq = sequence.fetch_add(1, Ordering::Relaxed) + 1;
            let bytes = envelope::seal(TYPE, 0, seq, &PAYLOAD);
            storage.try_write(*id, bytes).await.expect("save");
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
    let buffered = durable.clone().with_durability(Durability::Buffered);

    let mut group = c.benchmark_group("sled/saves");
    for (label, storage, concurrency) in [
        ("durable", &durable, 1),
        ("durable", &durable, 8),
        ("durable", &durable, 64),
        ("buffered", &buffered, 64),
    ] {
        let actors = actors(concurrency);
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

fn reads(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = SledStorage::open(dir.path().join("db")).expect("open");
    let actors = actors(1024);
    rt.block_on(save_all(&storage, &actors));
    let ids: Vec<ActorId> = actors.iter().map(|(id, _)| *id).collect();

    let mut group = c.benchmark_group("sled/reads");
    group.throughput(Throughput::Elements(ids.len() as u64));
    group.bench_function("1024 snapshots of 256 B", |b| {
        b.to_async(&rt).iter(|| async {
            for id in &ids {
                black_box(storage.try_read(*id).await.expect("read"));
            }
        })
    });
    group.finish();
}

fn recovery(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = SledStorage::open(dir.path().join("db")).expect("open");
    // Set up once, through sled directly: the measured part is the recovery.
    for i in 0..RECOVERY_SNAPSHOTS {
        let id = ActorId::from_u128(i as u128 + 1);
        let bytes = envelope::seal(TYPE, 0, 1, &PAYLOAD);
        storage.tree().insert(id.as_bytes(), bytes).expect("insert");
    }
    rt.block_on(storage.flush()).expect("flush");

    let mut group = c.benchmark_group("sled/recovery");
    group.throughput(Throughput::Elements(RECOVERY_SNAPSHOTS as u64));
    group.bench_function("list + read + envelope::open of 100k", |b| {
        b.to_async(&rt).iter(|| async {
            let ids = storage.try_list().await.expect("list");
            for id in ids {
                let bytes = storage.try_read(id).await.expect("read");
                let (header, payload) =
                    envelope::open(&bytes, envelope::DEFAULT_MAX_PAYLOAD).expect("open");
                black_box((header.sequence, payload.len()));
            }
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
    targets = baseline, saves, reads, recovery
}
criterion_main!(benches);
