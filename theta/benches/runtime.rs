//! The actor runtime next to raw tokio, interleaved in one run: tell, ask, spawn,
//! memory per live idle actor (plain and persistent), and a 1,000,000-actor run.
//!
//! Every figure is the median of 5 rounds; in each round theta and its raw
//! baseline run back to back, in alternating order, so that the machine's drift
//! hits both alike. Memory is measured in a fresh child process per figure (this
//! binary, re-run with `--child <what>`), as the growth of its resident set
//! across N spawned actors.
//!
//! The raw baseline is what an actor is at its barest: a `tokio::spawn`ed task
//! that owns the same state and loops on a tokio unbounded channel, answering
//! asks on a `oneshot`.
//!
//! Run with `cargo bench -p theta --bench runtime` (or `cargo xtask bench --suite
//! runtime`); the figures also go to `<target dir>/theta-bench/runtime.json`
//! for the report. `--quick` runs smaller workloads.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use theta::persistence::{MemoryStorage, PersistentActor, PersistentSpawnExt, encode_snapshot};
use theta::prelude::*;
use theta::{Message, Reply};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};

const ROUNDS: usize = 5;

/// The counter every workload uses, written by hand (no macro) like the raw one.
struct Counter {
    total: u64,
}

struct Add(u64);
struct Get;

enum CounterMsg {
    Add(Add, Option<Reply<()>>),
    Get(Get, Option<Reply<u64>>),
}

impl Message<Counter> for Add {
    type Return = ();
    fn into_msg(self, reply: Option<Reply<()>>) -> CounterMsg {
        CounterMsg::Add(self, reply)
    }
}

impl Message<Counter> for Get {
    type Return = u64;
    fn into_msg(self, reply: Option<Reply<u64>>) -> CounterMsg {
        CounterMsg::Get(self, reply)
    }
}

impl Actor for Counter {
    type Msg = CounterMsg;
    const TYPE_ID: uuid::Uuid = uuid::uuid!("a3c1f0f2-1111-4a5b-8c6d-000000000002");

    async fn process_msg(&mut self, ctx: &Context<Self>, msg: CounterMsg) {
        match msg {
            CounterMsg::Add(Add(n), reply) => {
                self.total += n;
                if let Some(r) = reply {
                    r.send(ctx, ());
                }
            }
            CounterMsg::Get(Get, reply) => {
                if let Some(r) = reply {
                    r.send(ctx, self.total);
                }
            }
        }
    }
}

struct Start;

impl ActorArgs for Start {
    type Actor = Counter;
    async fn initialize(_ctx: Context<Counter>, _args: &Self) -> Counter {
        Counter { total: 0 }
    }
}

/// A persistent actor with a 256-byte state, for the memory of persistent actors.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Account {
    total: u64,
    note: Vec<u8>,
}

struct Balance;

enum AccountMsg {
    Balance(Balance, Option<Reply<u64>>),
}

impl Message<Account> for Balance {
    type Return = u64;
    fn into_msg(self, reply: Option<Reply<u64>>) -> AccountMsg {
        AccountMsg::Balance(self, reply)
    }
}

impl Actor for Account {
    type Msg = AccountMsg;
    const TYPE_ID: uuid::Uuid = uuid::uuid!("a3c1f0f2-1111-4a5b-8c6d-000000000003");

    async fn process_msg(&mut self, ctx: &Context<Self>, msg: AccountMsg) {
        let AccountMsg::Balance(Balance, reply) = msg;
        if let Some(r) = reply {
            r.send(ctx, self.total);
        }
    }
}

impl ActorArgs for Account {
    type Actor = Account;
    async fn initialize(_ctx: Context<Account>, args: &Self) -> Account {
        args.clone()
    }
}

impl From<&Account> for Account {
    fn from(a: &Account) -> Self {
        a.clone()
    }
}

impl PersistentActor for Account {
    type Snapshot = Account;
    type RuntimeArgs = ();
    type ActorArgs = Account;
    fn persistent_args(snapshot: Account, _: ()) -> Account {
        snapshot
    }
}

fn account() -> Account {
    Account {
        total: 7,
        note: vec![0x5a; 256],
    }
}

/// The same account state in a raw task.
struct RawAccount {
    total: u64,
    _note: Vec<u8>,
}

enum RawMsg {
    Add(u64),
    Get(oneshot::Sender<u64>),
}

fn raw_counter() -> mpsc::UnboundedSender<RawMsg> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut total = 0u64;
        while let Some(msg) = rx.recv().await {
            match msg {
                RawMsg::Add(n) => total += n,
                RawMsg::Get(reply) => {
                    let _ = reply.send(total);
                }
            }
        }
    });
    tx
}

/// [`raw_counter`] whose task holds `done` until it ends, so that its end can be
/// awaited.
fn raw_counter_until(done: mpsc::UnboundedSender<()>) -> mpsc::UnboundedSender<RawMsg> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _done = done;
        let mut total = 0u64;
        while let Some(msg) = rx.recv().await {
            match msg {
                RawMsg::Add(n) => total += n,
                RawMsg::Get(reply) => {
                    let _ = reply.send(total);
                }
            }
        }
    });
    tx
}

fn raw_account(state: RawAccount) -> mpsc::UnboundedSender<RawMsg> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut state = state;
        while let Some(msg) = rx.recv().await {
            match msg {
                RawMsg::Add(n) => state.total += n,
                RawMsg::Get(reply) => {
                    let _ = reply.send(state.total);
                }
            }
        }
    });
    tx
}

async fn raw_ask(tx: &mpsc::UnboundedSender<RawMsg>) -> u64 {
    let (rtx, rrx) = oneshot::channel();
    tx.send(RawMsg::Get(rtx)).expect("send");
    rrx.await.expect("reply")
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Workload sizes.
#[derive(Clone, Copy)]
struct Sizes {
    tells: u64,
    asks: u64,
    spawns: u64,
    idle: u64,
    million: u64,
}

const FULL: Sizes = Sizes {
    tells: 1_000_000,
    asks: 20_000,
    spawns: 20_000,
    idle: 100_000,
    million: 1_000_000,
};

const QUICK: Sizes = Sizes {
    tells: 200_000,
    asks: 5_000,
    spawns: 5_000,
    idle: 20_000,
    million: 100_000,
};

fn tell_theta(rt: &Runtime, n: u64) -> Duration {
    rt.block_on(async {
        let root = RootContext::default();
        let actor = root.spawn(Start);
        actor.ask(Get).await.expect("warm");
        let start = Instant::now();
        for i in 0..n {
            actor.tell(Add(i)).expect("tell");
        }
        actor.ask(Get).await.expect("ask");
        start.elapsed()
    })
}

fn tell_raw(rt: &Runtime, n: u64) -> Duration {
    rt.block_on(async {
        let tx = raw_counter();
        raw_ask(&tx).await;
        let start = Instant::now();
        for i in 0..n {
            tx.send(RawMsg::Add(i)).expect("send");
        }
        raw_ask(&tx).await;
        start.elapsed()
    })
}

fn ask_theta(rt: &Runtime, n: u64) -> Duration {
    rt.block_on(async {
        let actor = RootContext::default().spawn(Start);
        tokio::spawn(async move {
            actor.ask(Get).await.expect("warm");
            let start = Instant::now();
            for _ in 0..n {
                actor.ask(Get).await.expect("ask");
            }
            start.elapsed()
        })
        .await
        .expect("client task")
    })
}

fn ask_raw(rt: &Runtime, n: u64) -> Duration {
    rt.block_on(async {
        let tx = raw_counter();
        tokio::spawn(async move {
            raw_ask(&tx).await;
            let start = Instant::now();
            for _ in 0..n {
                raw_ask(&tx).await;
            }
            start.elapsed()
        })
        .await
        .expect("client task")
    })
}

fn spawn_theta(rt: &Runtime, n: u64) -> Duration {
    rt.block_on(async {
        let root = RootContext::default();
        let start = Instant::now();
        let actors: Vec<_> = (0..n).map(|_| root.spawn(Start)).collect();
        let elapsed = start.elapsed();
        drop(actors);
        root.shutdown(Duration::from_secs(60))
            .await
            .expect("shutdown");
        elapsed
    })
}

fn spawn_raw(rt: &Runtime, n: u64) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let actors: Vec<_> = (0..n).map(|_| raw_counter()).collect();
        let elapsed = start.elapsed();
        drop(actors);
        elapsed
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Medians of (theta, raw) over the rounds, alternating which goes first.
fn interleaved(
    rt: &Runtime,
    theta: impl Fn(&Runtime) -> f64,
    raw: impl Fn(&Runtime) -> f64,
) -> (f64, f64) {
    let (mut t, mut r) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            t.push(theta(rt));
            r.push(raw(rt));
        } else {
            r.push(raw(rt));
            t.push(theta(rt));
        }
    }
    (median(t), median(r))
}

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

/// What a child process measures; prints one line `key=value ...`.
fn child(what: &str, n: u64) {
    let rt = runtime();
    let line = match what {
        "idle-theta" => rt.block_on(async {
            let root = RootContext::default();
            let before = rss();
            let actors: Vec<_> = (0..n).map(|_| root.spawn(Start)).collect();
            for a in &actors {
                a.ask(Get).await.expect("ask");
            }
            let after = rss();
            format!("bytes_per_actor={}", (after - before) as f64 / n as f64)
        }),
        "idle-raw" => rt.block_on(async {
            let before = rss();
            let actors: Vec<_> = (0..n).map(|_| raw_counter()).collect();
            for a in &actors {
                raw_ask(a).await;
            }
            let after = rss();
            format!("bytes_per_actor={}", (after - before) as f64 / n as f64)
        }),
        "persistent-theta" | "plain-account-theta" => rt.block_on(async {
            let root = RootContext::default();
            let storage = MemoryStorage::new();
            let ids: Vec<ActorId> = (0..n).map(|_| ActorId::new_v4()).collect();
            let persistent = what == "persistent-theta";
            if persistent {
                for id in &ids {
                    let bytes = encode_snapshot(*id, 1, &account()).expect("encode");
                    storage.insert_raw(*id, bytes);
                }
            }
            let before = rss();
            let mut actors = Vec::with_capacity(ids.len());
            for id in &ids {
                let actor = if persistent {
                    root.respawn::<_, Account>(&storage, *id, ())
                        .await
                        .expect("respawn")
                } else {
                    root.spawn(account())
                };
                actor.ask(Balance).await.expect("ask");
                actors.push(actor);
            }
            let after = rss();
            format!("bytes_per_actor={}", (after - before) as f64 / n as f64)
        }),
        "account-raw" => rt.block_on(async {
            let before = rss();
            let mut actors = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let a = raw_account(RawAccount {
                    total: 7,
                    _note: vec![0x5a; 256],
                });
                raw_ask(&a).await;
                actors.push(a);
            }
            let after = rss();
            format!("bytes_per_actor={}", (after - before) as f64 / n as f64)
        }),
        "million-theta" => rt.block_on(async {
            let root = RootContext::default();
            let before = rss();
            let start = Instant::now();
            let actors: Vec<_> = (0..n).map(|_| root.spawn(Start)).collect();
            let spawned = start.elapsed();
            let start = Instant::now();
            for a in &actors {
                a.ask(Get).await.expect("ask");
            }
            let asked = start.elapsed();
            let after = rss();
            let start = Instant::now();
            drop(actors);
            root.shutdown(Duration::from_secs(120))
                .await
                .expect("shutdown");
            let teardown = start.elapsed();
            format!(
                "spawn_per_s={} ask_per_s={} bytes_per_actor={} teardown_s={}",
                n as f64 / spawned.as_secs_f64(),
                n as f64 / asked.as_secs_f64(),
                (after - before) as f64 / n as f64,
                teardown.as_secs_f64()
            )
        }),
        "million-raw" => rt.block_on(async {
            let (done_tx, mut done_rx) = mpsc::unbounded_channel::<()>();
            let before = rss();
            let start = Instant::now();
            let actors: Vec<_> = (0..n).map(|_| raw_counter_until(done_tx.clone())).collect();
            let spawned = start.elapsed();
            let start = Instant::now();
            for a in &actors {
                raw_ask(a).await;
            }
            let asked = start.elapsed();
            let after = rss();
            let start = Instant::now();
            // Every task holds a sender of `done`: it closes when the last ends.
            drop(done_tx);
            drop(actors);
            while done_rx.recv().await.is_some() {}
            let teardown = start.elapsed();
            format!(
                "spawn_per_s={} ask_per_s={} bytes_per_actor={} teardown_s={}",
                n as f64 / spawned.as_secs_f64(),
                n as f64 / asked.as_secs_f64(),
                (after - before) as f64 / n as f64,
                teardown.as_secs_f64()
            )
        }),
        other => panic!("unknown child workload {other}"),
    };
    println!("{line}");
}

/// Runs `what` in a fresh child process; returns its `key=value` pairs.
fn in_child(what: &str, n: u64) -> Vec<(String, f64)> {
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(exe)
        .args(["--child", what, "--n", &n.to_string()])
        .output()
        .expect("child process");
    assert!(
        out.status.success(),
        "child {what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn get(pairs: &[(String, f64)], key: &str) -> f64 {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("missing {key}"))
}

/// Medians over the rounds of a child measurement, theta and raw interleaved.
fn child_medians(theta: &str, raw: &str, n: u64, keys: &[&str]) -> Vec<(f64, f64)> {
    let mut t: Vec<Vec<f64>> = vec![Vec::new(); keys.len()];
    let mut r: Vec<Vec<f64>> = vec![Vec::new(); keys.len()];
    for round in 0..ROUNDS {
        let order = if round % 2 == 0 {
            [theta, raw]
        } else {
            [raw, theta]
        };
        for what in order {
            let pairs = in_child(what, n);
            let into = if what == theta { &mut t } else { &mut r };
            for (i, key) in keys.iter().enumerate() {
                into[i].push(get(&pairs, key));
            }
        }
    }
    t.into_iter()
        .zip(r)
        .map(|(t, r)| (median(t), median(r)))
        .collect()
}

/// One row of the report: theta, raw, and how theta compares.
struct Line {
    name: String,
    theta: String,
    raw: String,
    ratio: f64,
    ratio_means: &'static str,
    target: &'static str,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--child") {
        let what = &args[at + 1];
        let n = args
            .iter()
            .position(|a| a == "--n")
            .and_then(|i| args[i + 1].parse().ok())
            .expect("--n");
        child(what, n);
        return;
    }
    // `cargo bench` passes `--bench`; criterion-style filters are ignored.
    let sizes = if args.iter().any(|a| a == "--quick") {
        QUICK
    } else {
        FULL
    };
    let rt = runtime();
    let mut lines = Vec::new();

    let (t, r) = interleaved(
        &rt,
        |rt| sizes.tells as f64 / tell_theta(rt, sizes.tells).as_secs_f64(),
        |rt| sizes.tells as f64 / tell_raw(rt, sizes.tells).as_secs_f64(),
    );
    lines.push(Line {
        name: format!("tell, {} messages to one actor", sizes.tells),
        theta: format!("{:.2} M msg/s", t / 1e6),
        raw: format!("{:.2} M msg/s", r / 1e6),
        ratio: t / r,
        ratio_means: "× raw throughput",
        target: "≥ 0.90",
    });

    let (t, r) = interleaved(
        &rt,
        |rt| ask_theta(rt, sizes.asks).as_nanos() as f64 / sizes.asks as f64,
        |rt| ask_raw(rt, sizes.asks).as_nanos() as f64 / sizes.asks as f64,
    );
    lines.push(Line {
        name: "ask, sequential round trip".into(),
        theta: format!("{t:.0} ns"),
        raw: format!("{r:.0} ns"),
        ratio: t / r,
        ratio_means: "× raw time",
        target: "≤ 1.15",
    });

    let (t, r) = interleaved(
        &rt,
        |rt| sizes.spawns as f64 / spawn_theta(rt, sizes.spawns).as_secs_f64(),
        |rt| sizes.spawns as f64 / spawn_raw(rt, sizes.spawns).as_secs_f64(),
    );
    lines.push(Line {
        name: format!("spawn, {} actors", sizes.spawns),
        theta: format!("{:.0} K/s", t / 1e3),
        raw: format!("{:.0} K/s", r / 1e3),
        ratio: t / r,
        ratio_means: "× raw rate",
        target: "≥ 1.00",
    });
    drop(rt);

    let idle = child_medians("idle-theta", "idle-raw", sizes.idle, &["bytes_per_actor"]);
    let (t, r) = idle[0];
    lines.push(Line {
        name: format!(
            "memory per live idle actor ({} actors, asked once)",
            sizes.idle
        ),
        theta: format!("{t:.0} B"),
        raw: format!("{r:.0} B"),
        ratio: t / r,
        ratio_means: "× raw bytes",
        target: "≤ 1.00",
    });

    let persistent = child_medians(
        "persistent-theta",
        "plain-account-theta",
        sizes.idle,
        &["bytes_per_actor"],
    );
    let (p, plain) = persistent[0];
    let account_raw = median(
        (0..ROUNDS)
            .map(|_| get(&in_child("account-raw", sizes.idle), "bytes_per_actor"))
            .collect(),
    );
    lines.push(Line {
        name: format!(
            "memory per idle persistent actor, 256 B of state ({} actors, respawned, asked once)",
            sizes.idle
        ),
        theta: format!("{p:.0} B"),
        raw: format!("{plain:.0} B (plain theta actor, same state); raw task {account_raw:.0} B"),
        ratio: p / plain,
        ratio_means: "× plain theta actor",
        target: "≤ 1.25",
    });

    let keys = ["spawn_per_s", "ask_per_s", "bytes_per_actor", "teardown_s"];
    let million = child_medians("million-theta", "million-raw", sizes.million, &keys);
    let names = [
        ("spawn", "K/s", 1e-3, "× raw rate"),
        ("ask each once", "K/s", 1e-3, "× raw rate"),
        ("memory per actor", "B", 1.0, "× raw bytes"),
        ("teardown", "s", 1.0, "× raw time"),
    ];
    for ((t, r), (what, unit, scale, means)) in million.into_iter().zip(names) {
        lines.push(Line {
            name: format!("{} actors: {what}", sizes.million),
            theta: format!("{:.2} {unit}", t * scale),
            raw: format!("{:.2} {unit}", r * scale),
            ratio: t / r,
            ratio_means: means,
            target: "",
        });
    }

    let mut table = String::new();
    let _ = writeln!(table, "| benchmark | theta | raw tokio | ratio | target |");
    let _ = writeln!(table, "|---|---:|---:|---:|---|");
    for l in &lines {
        let _ = writeln!(
            table,
            "| {} | {} | {} | {:.2} {} | {} |",
            l.name, l.theta, l.raw, l.ratio, l.ratio_means, l.target
        );
    }
    println!("{table}");
    let dir = target_dir().join("theta-bench");
    std::fs::create_dir_all(&dir).expect("bench output dir");
    std::fs::write(dir.join("runtime.md"), &table).expect("write runtime.md");
}

/// `$CARGO_TARGET_DIR`, else `<workspace>/target`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}
