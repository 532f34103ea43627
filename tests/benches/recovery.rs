//! Recovery and virtual actors on the embedded backends, next to their raw
//! baselines in the same run (recovery: medians of 3 rounds, interleaved; hot
//! set: medians of passes that alternate one by one).
//!
//! - **Recovery**: 10,000 stored actors respawned and asked once, on fs and
//!   sled, one at a time and 64 at a time (`respawn_all_or`), and activated
//!   through a `VirtualActors` handle (`activate_all`), against the raw path:
//!   `std::fs::read` of the same snapshots as files, then a bare tokio task
//!   holding the bytes, asked once.
//! - **Hot set**: 10,000 live ids asked round-robin through a `VirtualActors`
//!   handle against the same asks to direct `ActorRef`s.
//! - **A million ids** (`--million`, or `THETA_BENCH_MILLION=1`; about a minute
//!   per backend): every id asked once through a handle that passivates after
//!   1 s idle: activations per second, peak live actors and peak resident set.
//!
//! Run with `cargo bench -p theta-tests --bench recovery` (`-- --quick` for
//! small sizes, `-- --only recovery|hot|million` for one part); the table also
//! goes to `<target dir>/theta-bench/recovery.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use theta::persistence::{
    PersistentSpawnExt, PersistentStorage, SharedStorage, VirtualActors, encode_snapshot,
};
use theta::prelude::*;
use theta_persistence_fs::FsStorage;
use theta_persistence_sled::SledStorage;
use tokio::sync::{mpsc, oneshot};

/// A typical small persistent actor: an account with a few fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ActorArgs)]
struct Account {
    balance: i64,
    ops: u64,
    owner: String,
}

#[derive(Debug)]
struct Balance;

#[actor("b3e4c5d6-0a1b-4c2d-8e3f-4a5b6c7d8e9f", snapshot)]
impl Actor for Account {
    const _: () = {
        async |_: Balance| -> i64 { self.balance };
    };
}

fn account(i: u64) -> Account {
    Account {
        balance: i as i64,
        ops: i,
        owner: format!("owner-{i}"),
    }
}

fn ids(n: u64) -> Vec<ActorId> {
    (0..n)
        .map(|i| ActorId::from_u128(0xbe7c_0000_0000_4000_8000_0000_0000_0000 | u128::from(i)))
        .collect()
}

const ROUNDS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The raw path: each snapshot read from its own file, handed to a bare task
/// that answers one ask.
async fn raw_recovery(dir: &Path, ids: &[ActorId]) -> Duration {
    let start = Instant::now();
    let mut senders = Vec::with_capacity(ids.len());
    for id in ids {
        let bytes = std::fs::read(dir.join(id.to_string())).expect("raw read");
        let (tx, mut rx) = mpsc::unbounded_channel::<oneshot::Sender<usize>>();
        tokio::spawn(async move {
            while let Some(reply) = rx.recv().await {
                let _ = reply.send(bytes.len());
            }
        });
        let (reply, answer) = oneshot::channel();
        tx.send(reply).expect("send");
        answer.await.expect("answer");
        senders.push(tx);
    }
    start.elapsed()
}

/// Respawns every id one at a time, asking each once.
async fn sequential(storage: &SharedStorage, ids: &[ActorId]) -> Duration {
    let root = RootContext::default();
    let start = Instant::now();
    let mut refs = Vec::with_capacity(ids.len());
    for id in ids {
        let actor: ActorRef<Account> = root.respawn(storage, *id, ()).await.expect("respawn");
        actor.ask(Balance).await.expect("ask");
        refs.push(actor);
    }
    let elapsed = start.elapsed();
    drop(refs);
    root.shutdown(Duration::from_secs(60))
        .await
        .expect("shutdown");
    elapsed
}

/// Respawns every id 64 at a time (`respawn_all`), then asks each once.
async fn parallel(storage: &SharedStorage, ids: &[ActorId]) -> Duration {
    let root = RootContext::default();
    let start = Instant::now();
    let refs: Vec<ActorRef<Account>> = root
        .respawn_all(storage, ids, 64, |_| ())
        .await
        .into_iter()
        .map(|r| r.expect("respawn"))
        .collect();
    for actor in &refs {
        actor.ask(Balance).await.expect("ask");
    }
    let elapsed = start.elapsed();
    drop(refs);
    root.shutdown(Duration::from_secs(60))
        .await
        .expect("shutdown");
    elapsed
}

/// Activates every stored id through a handle (`activate_all`, 64 at a
/// time), then asks each once.
async fn activate_all(storage: &SharedStorage, ids: &[ActorId]) -> Duration {
    let root = RootContext::default();
    let handle =
        VirtualActors::<Account>::builder(&root, storage.clone(), |_| Account::default()).build();
    let start = Instant::now();
    let count = handle.activate_all(64).await.expect("activate_all");
    assert_eq!(count, ids.len());
    for id in ids {
        handle.ask(*id, Balance).await.expect("ask");
    }
    let elapsed = start.elapsed();
    handle.shutdown().await;
    elapsed
}

/// Stores `ids` (in the backend, and as plain files for the raw path).
async fn populate(storage: &SharedStorage, raw: &Path, ids: &[ActorId]) {
    std::fs::create_dir_all(raw).expect("raw dir");
    for (i, id) in ids.iter().enumerate() {
        let bytes = encode_snapshot(*id, 1, &account(i as u64)).expect("encode");
        std::fs::write(raw.join(id.to_string()), &bytes).expect("raw write");
        storage.try_write(*id, bytes).await.expect("populate");
    }
}

struct Row {
    name: String,
    theta: String,
    raw: String,
    ratio: f64,
    target: &'static str,
}

async fn recovery_rows(
    backend: &str,
    storage: SharedStorage,
    raw: &Path,
    n: u64,
    rows: &mut Vec<Row>,
) {
    let ids = ids(n);
    populate(&storage, raw, &ids).await;
    let mut raw_times = Vec::new();
    let mut paths: Vec<(&str, Vec<f64>)> = vec![
        ("respawn, one at a time", Vec::new()),
        ("respawn_all, 64 at a time", Vec::new()),
        ("VirtualActors::activate_all, 64 at a time", Vec::new()),
    ];
    for _ in 0..ROUNDS {
        raw_times.push(raw_recovery(raw, &ids).await.as_secs_f64());
        paths[0]
            .1
            .push(sequential(&storage, &ids).await.as_secs_f64());
        raw_times.push(raw_recovery(raw, &ids).await.as_secs_f64());
        paths[1]
            .1
            .push(parallel(&storage, &ids).await.as_secs_f64());
        raw_times.push(raw_recovery(raw, &ids).await.as_secs_f64());
        paths[2]
            .1
            .push(activate_all(&storage, &ids).await.as_secs_f64());
    }
    let raw_rate = n as f64 / median(raw_times);
    for (path, times) in paths {
        let rate = n as f64 / median(times);
        rows.push(Row {
            name: format!("{backend}: recovery of {n} actors, {path}, each asked once"),
            theta: format!("{:.1} K/s", rate / 1e3),
            raw: format!(
                "{:.1} K/s (std::fs::read + tokio::spawn, sequential)",
                raw_rate / 1e3
            ),
            ratio: rate / raw_rate,
            target: "≥ 0.80",
        });
    }
}

async fn hot_set(storage: SharedStorage, n: u64, passes: u64, rows: &mut Vec<Row>) {
    let ids = ids(n);
    let root = RootContext::default();
    let handle =
        VirtualActors::<Account>::builder(&root, storage.clone(), |_| Account::default()).build();
    let direct: Vec<ActorRef<Account>> = root
        .respawn_all_or(&storage, &ids, 64, |_| (), |_| Account::default())
        .await
        .into_iter()
        .map(|r| r.expect("respawn"))
        .collect();
    // Other ids in the handle: the hot set is live there too.
    let handle_ids: Vec<ActorId> = ids
        .iter()
        .map(|id| ActorId::from_u128(id.as_u128() ^ 0xffff_0000_0000_0000))
        .collect();
    for id in &handle_ids {
        handle.ask(*id, Balance).await.expect("warm");
    }
    // One pass over every id is one sample; the two sides alternate pass by
    // pass (in turn first), so that the machine's drift, which moves a
    // 100 ms phase by tens of percent, hits both alike.
    let (mut through, mut direct_times) = (Vec::new(), Vec::new());
    for pass in 0..passes {
        for side in [pass % 2, 1 - pass % 2] {
            let start = Instant::now();
            if side == 0 {
                for actor in &direct {
                    actor.ask(Balance).await.expect("ask");
                }
                direct_times.push(start.elapsed().as_secs_f64());
            } else {
                for id in &handle_ids {
                    handle.ask(*id, Balance).await.expect("ask");
                }
                through.push(start.elapsed().as_secs_f64());
            }
        }
    }
    let (t, d) = (
        median(through) / n as f64 * 1e9,
        median(direct_times) / n as f64 * 1e9,
    );
    rows.push(Row {
        name: format!(
            "hot set of {n} live ids, asked round-robin through VirtualActors (median of {passes} passes)"
        ),
        theta: format!("{t:.0} ns/ask"),
        raw: format!("{d:.0} ns/ask (the same asks to direct ActorRefs)"),
        ratio: t / d,
        target: "≤ 1.20 (time)",
    });
    drop(direct);
    handle.shutdown().await;
    root.shutdown(Duration::from_secs(60))
        .await
        .expect("shutdown");
}

/// Peak resident set of this process (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

async fn million(backend: &str, storage: SharedStorage, n: u64, rows: &mut Vec<Row>) {
    let root = RootContext::default();
    let handle = VirtualActors::<Account>::builder(&root, storage, |_| Account::default())
        .idle_after(Duration::from_secs(1))
        .build();
    let before = peak_rss();
    let start = Instant::now();
    let ids = ids(n);
    let chunk = 256;
    for batch in ids.chunks(chunk) {
        let asks: Vec<_> = batch.iter().map(|id| handle.ask(*id, Balance)).collect();
        for ask in asks {
            ask.await.expect("ask");
        }
    }
    let elapsed = start.elapsed();
    let stats = handle.stats();
    let peak = peak_rss().saturating_sub(before);
    handle.shutdown().await;
    rows.push(Row {
        name: format!("{backend}: {n} distinct ids, each asked once through VirtualActors (1 s idle passivation)"),
        theta: format!(
            "{:.1} K activations/s; peak {} live; peak RSS +{:.0} MiB",
            n as f64 / elapsed.as_secs_f64() / 1e3,
            stats.peak_live,
            peak as f64 / (1 << 20) as f64
        ),
        raw: format!("{} activations, {} passivations during the run", stats.activations, stats.passivations),
        ratio: f64::NAN,
        target: "",
    });
}

/// Which parts run.
#[derive(Clone, Copy)]
struct Parts {
    recovery: bool,
    hot: bool,
    million: bool,
}

async fn drive(n: u64, hot: u64, passes: u64, quick: bool, parts: Parts) -> Vec<Row> {
    let mut rows = Vec::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = SharedStorage::new(FsStorage::open(dir.path().join("fs")).expect("fs"));
    if parts.recovery {
        recovery_rows("fs", fs.clone(), &dir.path().join("raw-fs"), n, &mut rows).await;
    }
    if parts.hot {
        // Live actors answer from memory: the backend does not matter here.
        let memory = SharedStorage::new(theta::persistence::MemoryStorage::new());
        hot_set(memory, hot, passes, &mut rows).await;
    }
    drop(fs);
    if parts.recovery {
        let sled = SharedStorage::new(SledStorage::open(dir.path().join("sled")).expect("sled"));
        recovery_rows(
            "sled",
            sled.clone(),
            &dir.path().join("raw-sled"),
            n,
            &mut rows,
        )
        .await;
    }
    if parts.million {
        let m = if quick { 100_000 } else { 1_000_000 };
        let fs = SharedStorage::new(FsStorage::open(dir.path().join("fs-m")).expect("fs"));
        million("fs", fs, m, &mut rows).await;
        let sled = SharedStorage::new(SledStorage::open(dir.path().join("sled-m")).expect("sled"));
        million("sled", sled, m, &mut rows).await;
    }
    rows
}

/// `$CARGO_TARGET_DIR`, else `<workspace>/target`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let million_run = args.iter().any(|a| a == "--million")
        || std::env::var("THETA_BENCH_MILLION").is_ok_and(|v| v == "1");
    // `--only recovery|hot|million` runs one part.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str);
    let parts = Parts {
        recovery: only.is_none_or(|o| o == "recovery"),
        hot: only.is_none_or(|o| o == "hot"),
        million: only.map_or(million_run, |o| o == "million"),
    };
    let (n, hot, passes) = if quick {
        (2_000, 1_000, 11)
    } else {
        (10_000, 10_000, 41)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Driven from a task on the runtime, as a service's own code would be: from
    // `block_on`'s thread every ask would also measure an OS thread wake-up.
    let rows = rt.block_on(async move {
        tokio::spawn(drive(n, hot, passes, quick, parts))
            .await
            .expect("the benchmark task")
    });

    let mut table = String::new();
    let _ = writeln!(table, "| benchmark | theta | baseline | ratio | target |");
    let _ = writeln!(table, "|---|---:|---:|---:|---|");
    for r in &rows {
        let ratio = if r.ratio.is_nan() {
            "—".to_string()
        } else {
            format!("{:.2}", r.ratio)
        };
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {} |",
            r.name, r.theta, r.raw, ratio, r.target
        );
    }
    println!("{table}");
    let out = target_dir().join("theta-bench");
    std::fs::create_dir_all(&out).expect("bench output dir");
    std::fs::write(out.join("recovery.md"), &table).expect("write recovery.md");
}
