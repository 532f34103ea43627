//! Save latency and group commit of `PostgresStorage` next to raw tokio-postgres,
//! interleaved in one run so that the server's and the disk's drift hits both
//! sides alike (this machine's fsync time wanders several-fold within minutes;
//! measured one after the other, the same code reads 1.0× in one minute and
//! 1.5× in the next).
//!
//! - **One actor**: each iteration runs one raw prepared single-row upsert
//!   (`INSERT .. ON CONFLICT DO UPDATE`, one connection, `synchronous_commit =
//!   on`), one unowned save and one owned save (claimed first, stamped with its
//!   epoch) of a 256-byte snapshot, in rotating order; the table gives the
//!   medians. Targets: a save ≤ 1.2× the upsert; owned ≤ 1.1× unowned.
//! - **64 actors**: each round times a serial loop of 64 raw upserts, then one
//!   save by each of 64 actors at once (group commit), unowned and owned.
//!   Targets: ≥ 10× the loop's rate; owned ≤ 1.1× unowned.
//!
//! Needs a server: `THETA_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); works in the schema
//! `theta_bench_latency`, which it drops and recreates. `-- --quick` for a short
//! run. The table also goes to `<target dir>/theta-bench/postgres-latency.md`.
//!
//! `cargo bench -p theta-persistence-postgres --bench latency`

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use theta::ActorId;
use theta::persistence::envelope::{self, Stamp};
use theta::persistence::{ClaimMode, OwnerId, PersistentStorage};
use theta_persistence_postgres::PostgresStorage;
use theta_persistence_postgres::tokio_postgres::{self, NoTls, Statement};

mod support;
use support::url;

const TYPE: uuid::Uuid = uuid::uuid!("be9c0000-0000-4000-8000-00000000be9d");
const PAYLOAD: [u8; 256] = [7; 256];
const SCHEMA: &str = "theta_bench_latency";
const ACTORS: usize = 64;

/// One actor of the storage: its id, epoch (0: unowned) and last sequence.
struct Actor {
    id: ActorId,
    epoch: u64,
    sequence: u64,
}

impl Actor {
    /// The next snapshot it saves.
    fn next(&mut self) -> Vec<u8> {
        self.sequence += 1;
        envelope::Seal::new(TYPE)
            .actor_id(self.id)
            .stamp(Stamp::new(self.epoch, self.sequence))
            .seal(&PAYLOAD)
    }
}

async fn actors(storage: &PostgresStorage, n: usize, owned: bool) -> Vec<Actor> {
    let owner = OwnerId::new();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let id = ActorId::new_v4();
        let epoch = if owned {
            let claim = storage.try_claim(id, owner, ClaimMode::Exclusive).await;
            claim.expect("claim").epoch
        } else {
            0
        };
        out.push(Actor {
            id,
            epoch,
            sequence: 0,
        });
    }
    out
}

/// The raw side: one connection, one prepared upsert.
struct Raw {
    client: tokio_postgres::Client,
    upsert: Statement,
    ids: Vec<ActorId>,
    bytes: Vec<u8>,
}

impl Raw {
    async fn upsert(&self, id: &ActorId) {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [id, &self.bytes];
        self.client
            .execute(&self.upsert, &params)
            .await
            .expect("upsert");
    }
}

async fn setup() -> (Raw, PostgresStorage) {
    let (client, connection) = tokio_postgres::connect(&url(), NoTls)
        .await
        .unwrap_or_else(|e| panic!("this benchmark needs a server at THETA_POSTGRES_URL: {e}"));
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "SET synchronous_commit = on; \
             DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}; \
             CREATE TABLE {SCHEMA}.raw (id uuid PRIMARY KEY, bytes bytea NOT NULL)"
        ))
        .await
        .expect("bench schema");
    let upsert = client
        .prepare(&format!(
            "INSERT INTO {SCHEMA}.raw (id, bytes) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET bytes = excluded.bytes"
        ))
        .await
        .expect("prepare");
    let ids: Vec<ActorId> = (0..ACTORS).map(|_| ActorId::new_v4()).collect();
    let bytes = envelope::Seal::new(TYPE).actor_id(ids[0]).seal(&PAYLOAD);
    let storage = PostgresStorage::builder(&url())
        .schema(SCHEMA)
        .connect()
        .await
        .expect("storage");
    let raw = Raw {
        client,
        upsert,
        ids,
        bytes,
    };
    // Every row exists before timing: all sides update, none inserts.
    for id in &raw.ids {
        raw.upsert(id).await;
    }
    (raw, storage)
}

/// One save by each of `actors`, all at once; the time it took.
async fn save_all(storage: &PostgresStorage, actors: &mut [Actor]) -> Duration {
    let saves: Vec<_> = actors.iter_mut().map(|a| (a.id, a.next())).collect();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (id, bytes) in saves {
        let storage = storage.clone();
        tasks.spawn(async move { storage.try_write(id, bytes).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task").expect("save");
    }
    start.elapsed()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Row {
    name: String,
    theta: String,
    raw: String,
    ratio: f64,
    target: &'static str,
}

async fn drive(iterations: usize, rounds: usize) -> Vec<Row> {
    let (raw, storage) = setup().await;
    let mut rows = Vec::new();

    // One actor: rotating order, so no side always runs right after another.
    let mut unowned = actors(&storage, 1, false).await;
    let mut owned = actors(&storage, 1, true).await;
    for actor in unowned.iter_mut().chain(owned.iter_mut()) {
        storage
            .try_write(actor.id, actor.next())
            .await
            .expect("warm");
    }
    let mut times: [Vec<f64>; 3] = Default::default();
    for i in 0..iterations {
        for k in 0..3 {
            let side = (i + k) % 3;
            let elapsed = match side {
                0 => {
                    let start = Instant::now();
                    raw.upsert(&raw.ids[0]).await;
                    start.elapsed()
                }
                1 => save_one(&storage, &mut unowned[0]).await,
                _ => save_one(&storage, &mut owned[0]).await,
            };
            times[side].push(elapsed.as_secs_f64() * 1e6);
        }
    }
    let [raw_one, unowned_one, owned_one] = times.map(median);
    rows.push(Row {
        name: format!("1 actor: save latency (median of {iterations})"),
        theta: format!("{unowned_one:.0} µs"),
        raw: format!("{raw_one:.0} µs (one raw upsert)"),
        ratio: unowned_one / raw_one,
        target: "≤ 1.20 (time)",
    });
    rows.push(Row {
        name: format!("1 actor: owned save latency (median of {iterations})"),
        theta: format!("{owned_one:.0} µs"),
        raw: format!("{unowned_one:.0} µs (unowned save)"),
        ratio: owned_one / unowned_one,
        target: "≤ 1.10 (time)",
    });

    // 64 actors: whole rounds, interleaved.
    let mut unowned = actors(&storage, ACTORS, false).await;
    let mut owned = actors(&storage, ACTORS, true).await;
    save_all(&storage, &mut unowned).await;
    save_all(&storage, &mut owned).await;
    let mut times: [Vec<f64>; 3] = Default::default();
    for r in 0..rounds {
        for k in 0..3 {
            let side = (r + k) % 3;
            let elapsed = match side {
                0 => {
                    let start = Instant::now();
                    for id in &raw.ids {
                        raw.upsert(id).await;
                    }
                    start.elapsed()
                }
                1 => save_all(&storage, &mut unowned).await,
                _ => save_all(&storage, &mut owned).await,
            };
            times[side].push(elapsed.as_secs_f64());
        }
    }
    let [raw_loop, unowned_all, owned_all] = times.map(median);
    let rate = |secs: f64| ACTORS as f64 / secs;
    rows.push(Row {
        name: format!("{ACTORS} actors: one save each, at once (median of {rounds} rounds)"),
        theta: format!("{:.0} saves/s", rate(unowned_all)),
        raw: format!("{:.0} upserts/s (serial loop of {ACTORS})", rate(raw_loop)),
        ratio: rate(unowned_all) / rate(raw_loop),
        target: "≥ 10 (rate)",
    });
    rows.push(Row {
        name: format!("{ACTORS} actors: owned saves (median of {rounds} rounds)"),
        theta: format!("{:.2} ms per round", owned_all * 1e3),
        raw: format!("{:.2} ms per round (unowned)", unowned_all * 1e3),
        ratio: owned_all / unowned_all,
        target: "≤ 1.10 (time)",
    });
    storage.try_close().await.expect("close");
    raw.client
        .batch_execute(&format!("DROP SCHEMA {SCHEMA} CASCADE"))
        .await
        .expect("drop");
    rows
}

async fn save_one(storage: &PostgresStorage, actor: &mut Actor) -> Duration {
    let bytes = actor.next();
    let start = Instant::now();
    storage.try_write(actor.id, bytes).await.expect("save");
    start.elapsed()
}

/// `$CARGO_TARGET_DIR`, else `<workspace>/target`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (iterations, rounds) = if quick { (200, 20) } else { (3000, 300) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Driven from a task on the runtime, as a service's own code would be.
    let rows = rt.block_on(async move {
        tokio::spawn(drive(iterations, rounds))
            .await
            .expect("the benchmark task")
    });
    let mut table = String::new();
    let _ = writeln!(table, "| benchmark | theta | baseline | ratio | target |");
    let _ = writeln!(table, "|---|---:|---:|---:|---|");
    for r in &rows {
        let _ = writeln!(
            table,
            "| {} | {} | {} | {:.2} | {} |",
            r.name, r.theta, r.raw, r.ratio, r.target
        );
    }
    print!("{table}");
    let dir = target_dir().join("theta-bench");
    if std::fs::create_dir_all(&dir).is_ok() {
        let path = dir.join("postgres-latency.md");
        if let Err(err) = std::fs::write(&path, &table) {
            eprintln!("could not write {}: {err}", path.display());
        }
    }
}
