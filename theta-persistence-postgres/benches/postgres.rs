//! Throughput and latency of `PostgresStorage` against raw tokio-postgres on the
//! same server, in the same run:
//!
//! - saves of 256-byte snapshots by 1 and 64 concurrent actors, unowned and
//!   owned (claimed first, writes carrying the epoch), against a serial loop of
//!   single-row upserts (`INSERT .. ON CONFLICT DO UPDATE`, prepared, one
//!   connection, `synchronous_commit = on`): at 64 actors the target is 10× the
//!   loop's rate; one actor's save at most 1.2× one raw upsert's latency; an
//!   owned save at most 1.1× an unowned one;
//! - recovery of 100,000 snapshots through `try_read` and through `try_claim`
//!   (64 tasks), against a serial loop of `SELECT bytes .. WHERE id = $1` of
//!   the same rows on one connection: target ≥ 1×.
//!
//! Needs a server: `THETA_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); works in the schema
//! `theta_bench`, which it drops and recreates.
//!
//! `cargo bench -p theta-persistence-postgres --bench postgres`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use theta::ActorId;
use theta::persistence::envelope::{self, Stamp};
use theta::persistence::{ClaimMode, OwnerId, PersistentStorage};
use theta_persistence_postgres::PostgresStorage;
use theta_persistence_postgres::tokio_postgres::{self, NoTls};

mod support;
use support::url;

const TYPE: uuid::Uuid = uuid::uuid!("be9c0000-0000-4000-8000-00000000be9c");
const PAYLOAD: [u8; 256] = [7; 256];
const SCHEMA: &str = "theta_bench";
const RECOVERY: usize = 100_000;
const TASKS: usize = 64;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn raw_client() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&url(), NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("the postgres benchmarks need a server at THETA_POSTGRES_URL: {e}")
        });
    tokio::spawn(connection);
    client
        .batch_execute("SET synchronous_commit = on")
        .await
        .expect("set");
    client
}

/// A fresh bench schema with the raw baseline's table, and a storage in it.
async fn setup() -> (tokio_postgres::Client, PostgresStorage) {
    let client = raw_client().await;
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}; \
             CREATE TABLE {SCHEMA}.raw (id uuid PRIMARY KEY, bytes bytea NOT NULL)"
        ))
        .await
        .expect("bench schema");
    let storage = PostgresStorage::builder(&url())
        .schema(SCHEMA)
        .connect()
        .await
        .expect("storage");
    (client, storage)
}

/// Actors: an id, its epoch (0: unowned) and a sequence counter.
struct Actor {
    id: ActorId,
    epoch: u64,
    sequence: AtomicU64,
}

async fn actors(storage: &PostgresStorage, n: usize, owned: bool) -> Arc<Vec<Actor>> {
    let owner = OwnerId::new();
    let mut out = Vec::new();
    for _ in 0..n {
        let id = ActorId::new_v4();
        let epoch = if owned {
            storage
                .try_claim(id, owner, ClaimMode::Exclusive)
                .await
                .expect("claim")
                .epoch
        } else {
            0
        };
        out.push(Actor {
            id,
            epoch,
            sequence: AtomicU64::new(0),
        });
    }
    Arc::new(out)
}

/// One save by each actor, all at once.
async fn save_all(storage: &PostgresStorage, actors: &Arc<Vec<Actor>>) {
    if let [actor] = actors.as_slice() {
        return save(storage, actor).await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..actors.len() {
        let (storage, actors) = (storage.clone(), Arc::clone(actors));
        tasks.spawn(async move { save(&storage, &actors[i]).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
}

async fn save(storage: &PostgresStorage, actor: &Actor) {
    let sequence = actor.sequence.fetch_add(1, Ordering::Relaxed) + 1;
    let bytes = envelope::Seal::new(TYPE)
        .actor_id(actor.id)
        .stamp(Stamp::new(actor.epoch, sequence))
        .seal(&PAYLOAD);
    storage.try_write(actor.id, bytes).await.expect("save");
}

fn saves(c: &mut Criterion) {
    let rt = runtime();
    let (client, storage) = rt.block_on(setup());

    // Latency is dominated by the commit's fsync, which other work on the
    // machine's disk makes noisy: long measurements, many samples.
    let mut group = c.benchmark_group("postgres/baseline");
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(1));
    let upsert = rt
        .block_on(client.prepare(&format!(
            "INSERT INTO {SCHEMA}.raw (id, bytes) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET bytes = excluded.bytes"
        )))
        .expect("prepare");
    let raw_id = ActorId::new_v4();
    let raw_bytes = envelope::Seal::new(TYPE).actor_id(raw_id).seal(&PAYLOAD);
    group.bench_function("raw upsert/serial", |b| {
        b.to_async(&rt).iter(|| async {
            client
                .execute(&upsert, &[&raw_id, &raw_bytes])
                .await
                .expect("upsert");
        })
    });
    group.finish();

    let mut group = c.benchmark_group("postgres/saves");
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(10));
    for (label, concurrency, owned) in [
        ("theta", 1, false),
        ("theta-owned", 1, true),
        ("theta", 64, false),
        ("theta-owned", 64, true),
    ] {
        let actors = rt.block_on(actors(&storage, concurrency, owned));
        group.throughput(Throughput::Elements(concurrency as u64));
        group.bench_function(format!("{label}/{concurrency}"), |b| {
            b.to_async(&rt).iter(|| save_all(&storage, &actors))
        });
    }
    group.finish();
    rt.block_on(storage.try_close()).expect("close");
}

fn recovery(c: &mut Criterion) {
    let rt = runtime();
    let (client, storage) = rt.block_on(setup());
    let ids: Arc<Vec<ActorId>> = Arc::new((0..RECOVERY).map(|_| ActorId::new_v4()).collect());
    rt.block_on(async {
        // Written through the storage (batched), copied to the raw table.
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..TASKS {
            let (storage, ids) = (storage.clone(), Arc::clone(&ids));
            tasks.spawn(async move {
                for id in ids.iter().skip(t).step_by(TASKS) {
                    let bytes = envelope::Seal::new(TYPE)
                        .actor_id(*id)
                        .sequence(1)
                        .seal(&PAYLOAD);
                    storage.try_write(*id, bytes).await.expect("write");
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("task");
        }
        client
            .batch_execute(&format!(
                "INSERT INTO {SCHEMA}.raw SELECT id, bytes FROM {SCHEMA}.theta_snapshots \
                   ON CONFLICT (id) DO UPDATE SET bytes = excluded.bytes"
            ))
            .await
            .expect("copy");
        for table in ["raw", "theta_snapshots"] {
            client
                .batch_execute(&format!("VACUUM ANALYZE {SCHEMA}.{table}"))
                .await
                .expect("vacuum");
        }
    });

    let mut group = c.benchmark_group("postgres/recovery");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(RECOVERY as u64));
    let select = rt
        .block_on(client.prepare(&format!("SELECT bytes FROM {SCHEMA}.raw WHERE id = $1")))
        .expect("prepare");
    group.bench_function("raw select loop/100k", |b| {
        b.to_async(&rt).iter(|| async {
            for id in ids.iter() {
                let row = client.query_one(&select, &[id]).await.expect("select");
                black_box(row.get::<_, &[u8]>(0).len());
            }
        })
    });
    group.bench_function("theta read/100k", |b| {
        b.to_async(&rt).iter(|| {
            each(&storage, &ids, |s, id| async move {
                black_box(s.try_read(id).await.expect("read").len());
            })
        })
    });
    group.bench_function("theta claim/100k", |b| {
        b.to_async(&rt).iter(|| {
            let owner = OwnerId::new();
            each(&storage, &ids, move |s, id| async move {
                let claim = s
                    .try_claim(id, owner, ClaimMode::Takeover)
                    .await
                    .expect("claim");
                black_box(claim.snapshot.map(|b| b.len()));
            })
        })
    });
    group.finish();
    rt.block_on(async {
        storage.try_close().await.expect("close");
        client
            .batch_execute(&format!("DROP SCHEMA {SCHEMA} CASCADE"))
            .await
            .expect("drop");
    });
}

/// Runs `f` for every id from `TASKS` concurrent tasks (as a respawn of many
/// actors does).
async fn each<F, Fut>(storage: &PostgresStorage, ids: &Arc<Vec<ActorId>>, f: F)
where
    F: Fn(PostgresStorage, ActorId) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let (storage, ids, f) = (storage.clone(), Arc::clone(ids), f.clone());
        tasks.spawn(async move {
            for id in ids.iter().skip(t).step_by(TASKS) {
                f(storage.clone(), *id).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
}

criterion_group!(benches, saves, recovery);
criterion_main!(benches);
