//! Persistent counter actors in several OS processes on one PostgreSQL schema,
//! with random takeovers, SIGKILLs and pauses: no acknowledged increment is ever
//! lost, and a stale owner is fenced.
//!
//! Two *active* children (this binary re-executed with `--child`) own the same
//! 100 counter ids between them; a third, idle one stands by to replace a killed
//! child. Each child runs one [`RootContext`] whose counters save after every
//! message with `confirm_replies`, so an `Ok` ask means a stored increment.
//! The parent sends commands on a child's stdin (`OWN exclusive|takeover ID`,
//! `INC ID`) and reads one line per outcome from its stdout:
//!
//! - `OWNED id epoch value refusals`: the child activated the id (after
//!   `refusals` exclusive claims were refused while another owner held it);
//! - `ACK id value epoch`: an increment was acknowledged;
//! - `FAIL id fenced epoch current`: the ask failed and the actor stopped with
//!   `ExitReason::Fenced` (its write was refused: another process owns the id);
//! - `FAIL id other ...`: any other failed ask (its outcome is unknown).
//!
//! Events, picked at random (seed printed; `--seed S` to pick the same events
//! again, timing still varies):
//!
//! - **takeover**: increments go to the owner of some ids, and at the same time
//!   the other child takes them over (`ClaimMode::Takeover`); then every taken
//!   id's stale actor is sent one more increment, which must fail with `Fenced`.
//! - **kill**: increments go to every id of one child, which is SIGKILLed after
//!   a random number of them were acknowledged; the standby child claims its ids
//!   exclusively, which succeeds once the dead child's lease runs out (no manual
//!   cleanup), and a new standby is started.
//! - **pause**: likewise, but the child is SIGSTOPped; the other child claims its
//!   ids exclusively (refused while the paused child's lease lives, granted after
//!   it), increments them, and then the paused child is SIGCONTed: its pending
//!   writes and one more increment per id must be refused with `Fenced`.
//!
//! Accounting is exact: at most one increment per id is in flight in each
//! process. Acknowledged means `ACK` was printed; an ask in flight in a killed
//! process (or failed otherwise than fenced) is *unknown*: it may or may not be
//! stored. At the end the store is read, and for every id
//! `acked <= stored <= acked + unknown`, the acknowledged values are distinct (a
//! lost update shows as a value acknowledged twice) and none is above the stored
//! one. Activations are checked as they happen: epochs only grow, a restored
//! value is never below the increments acknowledged before it, and an `ACK`
//! carries the epoch its process owns the id under.
//!
//! `--events N` (default 200) sets the number of events; `cargo xtask soak` runs
//! more. Without a server the suite prints one `postgres suite skipped` line and
//! passes, unless `CI=true`.

mod postgres_support;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use theta::persistence::{
    ClaimMode, PersistenceError, SharedStorage, SnapshotNotFound, decode_snapshot,
};
use theta::prelude::*;
use theta_persistence_postgres::PostgresStorage;

/// Counter ids.
const IDS: u128 = 100;
/// The children's lease: a paused or killed child's ids are free after it.
const LEASE: Duration = Duration::from_millis(300);
/// Events of the default run.
const DEFAULT_EVENTS: u64 = 200;
/// The longest wait for any one outcome; beyond it the run fails.
const WAIT: Duration = Duration::from_secs(30);
/// The most ids one takeover moves.
const MAX_TAKEN: usize = 30;

/// A persistent counter.
#[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
struct Tally {
    value: u64,
}

/// Adds one; answers the new value and this activation's owner epoch.
#[derive(Debug)]
struct Inc;

/// Answers the value and the owner epoch.
#[derive(Debug)]
struct Peek;

#[actor("0a7e5f10-3c2b-4d1e-9f8a-6b5c4d3e2f10", snapshot)]
impl Actor for Tally {
    const _: () = {
        async |_: Inc| -> (u64, u64) {
            self.value += 1;
            (self.value, ctx.owner_epoch().unwrap_or(0))
        };
        async |_: Peek| -> (u64, u64) { (self.value, ctx.owner_epoch().unwrap_or(0)) };
    };
}

fn ids() -> Vec<ActorId> {
    (1..=IDS)
        .map(|i| ActorId::from_u128(0x0e5 << 64 | i))
        .collect()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--child") {
        return match child() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                println!("ERROR {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let events = match number_after(&args, "--events") {
        Ok(n) => n.unwrap_or(DEFAULT_EVENTS),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let seed = match number_after(&args, "--seed") {
        Ok(n) => n.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        }),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(url) = postgres_support::server() else {
        println!("test ownership_processes ... skipped (no server)");
        return ExitCode::SUCCESS;
    };
    let schema = postgres_support::fresh_schema("theta_owners");
    let result = std::panic::catch_unwind(|| parent(&url, &schema, events, seed));
    postgres_support::drop_schemas(&url, vec![schema]);
    let passed = matches!(result, Ok(0));
    println!(
        "test ownership_processes ... {}",
        if passed { "ok" } else { "FAILED" }
    );
    println!(
        "\ntest result: {}. {} passed; {} failed; 0 ignored; 0 measured; 0 filtered out",
        if passed { "ok" } else { "FAILED" },
        u8::from(passed),
        u8::from(!passed)
    );
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The number after `flag` in `args`, if the flag is there. Other arguments
/// (libtest's, passed to every test binary) are ignored.
fn number_after(args: &[String], flag: &str) -> Result<Option<u64>, String> {
    let Some(at) = args.iter().position(|a| a == flag) else {
        return Ok(None);
    };
    match args.get(at + 1).map(|v| v.parse::<u64>()) {
        Some(Ok(n)) if n > 0 => Ok(Some(n)),
        other => Err(format!(
            "{flag} expects a positive number, got {:?}",
            other.map(|_| &args[at + 1])
        )),
    }
}

// ---------------------------------------------------------------------------
// The child: one RootContext, counters by id, commands on stdin.
// ---------------------------------------------------------------------------

type Live = Arc<Mutex<HashMap<ActorId, ActorRef<Tally>>>>;

fn say(line: String) {
    // One `println!` is one locked write of a whole line.
    println!("{line}");
}

fn child() -> anyhow::Result<()> {
    let url = std::env::var("THETA_POSTGRES_URL")?;
    let schema = std::env::var("THETA_OWNERSHIP_SCHEMA")?;
    let lease = Duration::from_millis(std::env::var("THETA_OWNERSHIP_LEASE_MS")?.parse()?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let storage = PostgresStorage::builder(&url)
            .schema(&schema)
            .lease_ttl(lease)
            .pool_size(4)
            .connect()
            .await?;
        let exclusive = SharedStorage::new(storage)
            .with_policy(SnapshotPolicy::new().every_n_messages(1).confirm_replies());
        let takeover = exclusive.clone().with_claim_mode(ClaimMode::Takeover);
        let root = RootContext::default();
        let live: Live = Arc::default();
        let (tx, mut commands) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        say("READY".into());
        // The parent gone (stdin closed) or `QUIT`: exit.
        while let Some(command) = commands.recv().await {
            let words: Vec<&str> = command.split_whitespace().collect();
            match words.as_slice() {
                ["INC", id] => {
                    let id: ActorId = id.parse()?;
                    tokio::spawn(inc(id, live.clone()));
                }
                ["OWN", mode, id] => {
                    let id: ActorId = id.parse()?;
                    let storage = match *mode {
                        "exclusive" => exclusive.clone(),
                        "takeover" => takeover.clone(),
                        other => anyhow::bail!("unknown claim mode {other:?}"),
                    };
                    tokio::spawn(own(root.clone(), storage, id, live.clone()));
                }
                ["QUIT"] => break,
                _ => anyhow::bail!("unknown command {command:?}"),
            }
        }
        anyhow::Ok(())
    })?;
    // Live actors and the runtime are dropped with the process.
    std::process::exit(0)
}

/// Activates `id` (retrying while another live owner holds it, for an
/// exclusive claim) and reports its epoch and restored value.
async fn own(root: RootContext, storage: SharedStorage, id: ActorId, live: Live) {
    let deadline = Instant::now() + WAIT;
    let mut refusals = 0u64;
    let actor = loop {
        match root
            .respawn_or(&storage, id, || (), || Tally { value: 0 })
            .await
        {
            Ok(actor) => break actor,
            Err(PersistenceError::OwnedElsewhere { .. }) if Instant::now() < deadline => {
                refusals += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return say(format!("ERROR OWN {id}: {e}")),
        }
    };
    match actor.ask(Peek).timeout(WAIT).await {
        Ok((value, epoch)) => {
            live.lock().unwrap().insert(id, actor);
            say(format!("OWNED {id} {epoch} {value} {refusals}"));
        }
        Err(e) => say(format!("ERROR OWN {id}: peek: {e}")),
    }
}

/// Increments `id` and reports the outcome; a failed ask waits for the actor
/// to stop and reports why.
async fn inc(id: ActorId, live: Live) {
    let Some(actor) = live.lock().unwrap().get(&id).cloned() else {
        return say(format!("ERROR INC {id}: no live actor here"));
    };
    let error = match actor.ask(Inc).timeout(WAIT).await {
        Ok((value, epoch)) => return say(format!("ACK {id} {value} {epoch}")),
        Err(e) => e,
    };
    let weak = actor.downgrade();
    drop(actor);
    let reason = tokio::time::timeout(WAIT, weak.stopped()).await;
    live.lock().unwrap().remove(&id);
    match reason {
        Ok(ExitReason::Fenced { epoch, current }) => {
            say(format!("FAIL {id} fenced {epoch} {current}"))
        }
        Ok(other) => say(format!("FAIL {id} other: {error}; stopped: {other}")),
        Err(_) => say(format!("FAIL {id} other: {error}; still running")),
    }
}

// ---------------------------------------------------------------------------
// The parent: the events, the accounting, the checks.
// ---------------------------------------------------------------------------

/// splitmix64: enough randomness for picking events, and replayable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// `k` distinct elements of `from`, in random order.
    fn pick(&mut self, from: &[ActorId], k: usize) -> Vec<ActorId> {
        let mut pool = from.to_vec();
        for i in 0..k.min(pool.len()) {
            let j = i + self.below(pool.len() - i);
            pool.swap(i, j);
        }
        pool.truncate(k);
        pool
    }
}

/// One child process and what the parent knows of it.
struct Proc {
    child: Child,
    stdin: ChildStdin,
    ready: bool,
    /// Its stdout reached EOF.
    closed: bool,
    /// Ids with an increment in flight here (at most one each).
    in_flight: HashSet<ActorId>,
    /// Ids whose `OWN` is not answered yet.
    owning: HashSet<ActorId>,
    /// The epoch under which this process owns each id it activated.
    epochs: HashMap<ActorId, u64>,
    /// Ids taken over from this process whose actor here has not reported its
    /// fenced stop yet.
    expect_fenced: HashSet<ActorId>,
    /// Ids sent an increment after they were taken over from here: it must fail.
    probing: HashSet<ActorId>,
}

impl Drop for Proc {
    /// A failed run leaves no child behind (a stopped one included).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default, Debug)]
struct Counts {
    takeovers: u64,
    kills: u64,
    pauses: u64,
    /// Ids moved by takeovers, kills and pauses.
    moved: u64,
    acked: u64,
    /// Asks in flight in killed processes, or failed otherwise than fenced.
    unknown: u64,
    /// Failed asks that were not fenced (part of `unknown`).
    other_failures: u64,
    /// Stale writes refused, each stopping its actor with `ExitReason::Fenced`.
    fenced: u64,
    /// Exclusive claims refused while another owner's lease lived.
    refusals: u64,
}

struct Run {
    url: String,
    schema: String,
    procs: HashMap<usize, Proc>,
    next_proc: usize,
    active: [usize; 2],
    standby: usize,
    lines: mpsc::Receiver<(usize, Option<String>)>,
    sender: mpsc::Sender<(usize, Option<String>)>,
    /// The process that owns each id (the last one that activated it).
    owner: HashMap<ActorId, usize>,
    /// Acknowledged values, per id.
    acks: HashMap<ActorId, Vec<u64>>,
    /// Increments of unknown outcome, per id.
    unknown: HashMap<ActorId, u64>,
    /// The newest epoch seen per id.
    epoch: HashMap<ActorId, u64>,
    violations: Vec<String>,
    counts: Counts,
    rng: Rng,
}

impl Run {
    fn spawn(&mut self) -> usize {
        let n = self.next_proc;
        self.next_proc += 1;
        let mut child = Command::new(std::env::current_exe().expect("the test binary"))
            .arg("--child")
            .env("THETA_POSTGRES_URL", &self.url)
            .env("THETA_OWNERSHIP_SCHEMA", &self.schema)
            .env("THETA_OWNERSHIP_LEASE_MS", LEASE.as_millis().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning a child");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let sender = self.sender.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send((n, Some(line))).is_err() {
                    return;
                }
            }
            let _ = sender.send((n, None));
        });
        self.procs.insert(
            n,
            Proc {
                child,
                stdin,
                ready: false,
                closed: false,
                in_flight: HashSet::new(),
                owning: HashSet::new(),
                epochs: HashMap::new(),
                expect_fenced: HashSet::new(),
                probing: HashSet::new(),
            },
        );
        n
    }

    fn proc(&mut self, n: usize) -> &mut Proc {
        self.procs.get_mut(&n).expect("a known process")
    }

    fn send(&mut self, n: usize, command: String) {
        let p = self.proc(n);
        writeln!(p.stdin, "{command}")
            .and_then(|()| p.stdin.flush())
            .unwrap_or_else(|e| panic!("process {n}: sending {command:?}: {e}"));
    }

    fn inc(&mut self, n: usize, id: ActorId) {
        assert!(
            self.proc(n).in_flight.insert(id),
            "process {n}: two increments of {id} in flight"
        );
        self.send(n, format!("INC {id}"));
    }

    fn own(&mut self, n: usize, id: ActorId, mode: &str) {
        self.proc(n).owning.insert(id);
        self.send(n, format!("OWN {mode} {id}"));
    }

    fn signal(&mut self, n: usize, signal: &str) {
        let pid = self.proc(n).child.id().to_string();
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    fn violation(&mut self, what: String) {
        eprintln!("VIOLATION: {what}");
        self.violations.push(what);
    }

    /// Takes one line of process `n`.
    fn take(&mut self, n: usize, line: Option<String>) {
        let Some(line) = line else {
            self.proc(n).closed = true;
            return;
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let id = || -> ActorId {
            words[1]
                .parse()
                .unwrap_or_else(|e| panic!("process {n}: {line:?}: {e}"))
        };
        let num = |i: usize| -> u64 {
            words[i]
                .parse()
                .unwrap_or_else(|e| panic!("process {n}: {line:?}: {e}"))
        };
        match words.as_slice() {
            ["READY"] => self.proc(n).ready = true,
            ["OWNED", _, _, _, _] => {
                let (id, epoch, value, refusals) = (id(), num(2), num(3), num(4));
                assert!(
                    self.proc(n).owning.remove(&id),
                    "process {n}: unasked {line:?}"
                );
                let newest = self.epoch.get(&id).copied().unwrap_or(0);
                if epoch <= newest {
                    self.violation(format!(
                        "{id}: process {n} activated it under epoch {epoch}, not above {newest}"
                    ));
                }
                self.epoch.insert(id, epoch.max(newest));
                let acked = self.acks.get(&id).map_or(0, Vec::len) as u64;
                if value < acked {
                    self.violation(format!(
                        "{id}: process {n} restored {value}, below the {acked} increments acknowledged"
                    ));
                }
                self.proc(n).epochs.insert(id, epoch);
                self.owner.insert(id, n);
                self.counts.refusals += refusals;
            }
            ["ACK", _, _, _] => {
                let (id, value, epoch) = (id(), num(2), num(3));
                let p = self.proc(n);
                assert!(p.in_flight.remove(&id), "process {n}: unasked {line:?}");
                let owned = p.epochs.get(&id).copied();
                let probed = p.probing.remove(&id);
                if owned != Some(epoch) {
                    self.violation(format!(
                        "{id}: process {n} acknowledged under epoch {epoch}, it owns {owned:?}"
                    ));
                }
                if probed {
                    self.violation(format!(
                        "{id}: process {n} acknowledged an increment after the id was taken over"
                    ));
                }
                self.acks.entry(id).or_default().push(value);
                self.counts.acked += 1;
            }
            ["FAIL", _, "fenced", _, _] => {
                let (id, epoch, current) = (id(), num(3), num(4));
                let p = self.proc(n);
                assert!(p.in_flight.remove(&id), "process {n}: unasked {line:?}");
                p.probing.remove(&id);
                p.epochs.remove(&id);
                let expected = p.expect_fenced.remove(&id);
                if !expected {
                    self.violation(format!(
                        "{id}: process {n} was fenced (epoch {epoch}, current {current}) though nobody took it over"
                    ));
                }
                if current <= epoch {
                    self.violation(format!(
                        "{id}: fenced at epoch {epoch} by an epoch {current} that is not newer"
                    ));
                }
                self.counts.fenced += 1;
            }
            ["FAIL", ..] => {
                let id = id();
                eprintln!("process {n}: {line}");
                let p = self.proc(n);
                assert!(p.in_flight.remove(&id), "process {n}: unasked {line:?}");
                p.probing.remove(&id);
                p.epochs.remove(&id);
                let expected = p.expect_fenced.remove(&id);
                *self.unknown.entry(id).or_default() += 1;
                self.counts.unknown += 1;
                self.counts.other_failures += 1;
                if expected {
                    self.violation(format!(
                        "{id}: process {n} was taken over but stopped otherwise than fenced: {line}"
                    ));
                } else if self.owner.get(&id) == Some(&n) {
                    // The owner lost its actor: activate the id again.
                    self.own(n, id, "exclusive");
                }
            }
            _ => panic!("process {n}: {line}"),
        }
    }

    /// Takes lines until `done` holds; fails the run after [`WAIT`] without it.
    fn until(&mut self, what: &str, done: impl Fn(&Run) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((n, line)) => self.take(n, line),
                Err(e) => panic!("waiting for {what}: {e}"),
            }
        }
    }

    fn owned_by(&self, n: usize) -> Vec<ActorId> {
        let mut ids: Vec<ActorId> = self
            .owner
            .iter()
            .filter(|&(_, &o)| o == n)
            .map(|(&id, _)| id)
            .collect();
        ids.sort();
        ids
    }

    /// One increment of every id, at its owner; waits for all of them.
    fn round(&mut self) {
        for id in ids() {
            let n = self.owner[&id];
            if !self.proc(n).in_flight.contains(&id) {
                self.inc(n, id);
            }
        }
        self.until("a round of increments", |r| {
            r.active.iter().all(|n| r.procs[n].in_flight.is_empty())
        });
    }

    /// An active process owning at least one id, and the other one.
    fn pick_pair(&mut self) -> (usize, usize) {
        let first = self.rng.below(2);
        let (a, b) = (self.active[first], self.active[1 - first]);
        if self.owned_by(a).is_empty() {
            (b, a)
        } else {
            (a, b)
        }
    }

    /// Sends one increment of each of `ids` to `n` and waits until all but a
    /// random number of them are answered; returns how many stay in flight.
    fn increments_then_some_answers(&mut self, n: usize, ids: &[ActorId]) -> usize {
        for &id in ids {
            self.inc(n, id);
        }
        let left = self.rng.below(ids.len() + 1);
        self.until("some increments", |r| r.procs[&n].in_flight.len() <= left);
        left
    }

    /// Checks that every id in `taken` reported its fenced stop in `n`, after
    /// one more increment of those whose stale actor is still live there.
    fn probe(&mut self, n: usize, taken: &[ActorId]) {
        let taken_set: HashSet<ActorId> = taken.iter().copied().collect();
        self.until("the stale owner's pending increments", |r| {
            r.procs[&n].in_flight.is_disjoint(&taken_set)
        });
        for &id in taken {
            if self.proc(n).expect_fenced.contains(&id) {
                self.proc(n).probing.insert(id);
                self.inc(n, id);
            }
        }
        self.until("the stale owner's probes", |r| {
            r.procs[&n].in_flight.is_disjoint(&taken_set)
        });
        for &id in taken {
            if self.proc(n).expect_fenced.remove(&id) {
                self.violation(format!(
                    "{id}: process {n}'s stale actor did not stop with ExitReason::Fenced"
                ));
            }
        }
    }

    /// The other active process takes some of this one's ids over while they
    /// are being incremented.
    fn takeover(&mut self) {
        let (x, y) = self.pick_pair();
        let owned = self.owned_by(x);
        let k = 1 + self.rng.below(owned.len().min(MAX_TAKEN));
        let taken = self.rng.pick(&owned, k);
        for &id in &taken {
            self.inc(x, id);
            self.proc(x).expect_fenced.insert(id);
            self.own(y, id, "takeover");
        }
        self.until("the takeover", |r| r.procs[&y].owning.is_empty());
        self.probe(x, &taken);
        self.counts.takeovers += 1;
        self.counts.moved += taken.len() as u64;
    }

    /// SIGKILLs an active process in the middle of increments; the standby
    /// claims its ids exclusively.
    fn kill(&mut self) {
        let (x, _) = self.pick_pair();
        let owned = self.owned_by(x);
        self.increments_then_some_answers(x, &owned);
        self.signal(x, "-KILL");
        let status = self
            .proc(x)
            .child
            .wait()
            .expect("waiting for the killed child");
        assert!(!status.success(), "the killed child exited with {status}");
        // Its lines already printed are outcomes too: read up to its EOF.
        self.until("the killed child's last lines", |r| r.procs[&x].closed);
        let lost: Vec<ActorId> = self.proc(x).in_flight.drain().collect();
        for id in lost {
            *self.unknown.entry(id).or_default() += 1;
            self.counts.unknown += 1;
        }
        self.procs.remove(&x);
        let fresh = self.standby;
        self.until("the standby child", |r| r.procs[&fresh].ready);
        let slot = self.active.iter().position(|&n| n == x).expect("active");
        self.active[slot] = fresh;
        self.standby = self.spawn();
        for &id in &owned {
            self.own(fresh, id, "exclusive");
        }
        self.until("the standby's claims", |r| {
            r.procs[&fresh].owning.is_empty()
        });
        self.counts.kills += 1;
        self.counts.moved += owned.len() as u64;
    }

    /// SIGSTOPs an active process in the middle of increments; the other one
    /// claims its ids once its lease ran out and increments them; then the
    /// paused one is continued and must be fenced on every one.
    fn pause(&mut self) {
        let (x, y) = self.pick_pair();
        let owned = self.owned_by(x);
        self.increments_then_some_answers(x, &owned);
        self.signal(x, "-STOP");
        for &id in &owned {
            self.proc(x).expect_fenced.insert(id);
            self.own(y, id, "exclusive");
        }
        self.until("the claims past the paused child's lease", |r| {
            r.procs[&y].owning.is_empty()
        });
        for &id in &owned {
            self.inc(y, id);
        }
        self.until("the new owner's increments", |r| {
            r.procs[&y].in_flight.is_empty()
        });
        self.signal(x, "-CONT");
        self.probe(x, &owned);
        self.counts.pauses += 1;
        self.counts.moved += owned.len() as u64;
    }

    /// Reads every counter from the store and checks it against the accounting.
    fn check_store(&mut self) -> u64 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let stored: Vec<(ActorId, u64)> = runtime.block_on(async {
            let storage = PostgresStorage::builder(&self.url)
                .schema(&self.schema)
                .connect()
                .await
                .expect("connecting to read the counters");
            let mut stored = Vec::new();
            for id in ids() {
                let value = match storage.try_read(id).await {
                    Ok(bytes) => {
                        decode_snapshot::<Tally>(id, &bytes)
                            .unwrap_or_else(|e| panic!("{id}: {e}"))
                            .0
                            .value
                    }
                    Err(e) if e.is::<SnapshotNotFound>() => 0,
                    Err(e) => panic!("reading {id}: {e:#}"),
                };
                stored.push((id, value));
            }
            storage.try_close().await.expect("closing");
            stored
        });
        let mut total = 0;
        for (id, value) in stored {
            total += value;
            let mut acked = self.acks.remove(&id).unwrap_or_default();
            let unknown = self.unknown.get(&id).copied().unwrap_or(0);
            let n = acked.len() as u64;
            if value < n || value > n + unknown {
                self.violation(format!(
                    "{id}: stored {value}, with {n} increments acknowledged and {unknown} unknown"
                ));
            }
            acked.sort_unstable();
            if acked.windows(2).any(|w| w[0] == w[1]) {
                self.violation(format!("{id}: a value was acknowledged twice: {acked:?}"));
            }
            if acked.last().is_some_and(|&max| max > value) {
                self.violation(format!(
                    "{id}: {} was acknowledged, {value} is stored",
                    acked[acked.len() - 1]
                ));
            }
        }
        total
    }
}

/// Runs `events` events; returns the number of violations.
fn parent(url: &str, schema: &str, events: u64, seed: u64) -> usize {
    let started = Instant::now();
    eprintln!("ownership_processes: seed {seed} (--seed {seed} picks the same events)");
    let (sender, lines) = mpsc::channel();
    let mut run = Run {
        url: url.to_owned(),
        schema: schema.to_owned(),
        procs: HashMap::new(),
        next_proc: 0,
        active: [0, 1],
        standby: 2,
        lines,
        sender,
        owner: HashMap::new(),
        acks: HashMap::new(),
        unknown: HashMap::new(),
        epoch: HashMap::new(),
        violations: Vec::new(),
        counts: Counts::default(),
        rng: Rng(seed),
    };
    for _ in 0..3 {
        run.spawn();
    }
    run.until("the children", |r| r.procs.values().all(|p| p.ready));
    let all = ids();
    let (first, second) = all.split_at(all.len() / 2);
    for &id in first {
        run.own(0, id, "exclusive");
    }
    for &id in second {
        run.own(1, id, "exclusive");
    }
    run.until("the first claims", |r| {
        r.procs.values().all(|p| p.owning.is_empty())
    });
    for _ in 0..events {
        run.round();
        match run.rng.below(20) {
            0..=13 => run.takeover(),
            14..=16 => run.kill(),
            _ => run.pause(),
        }
    }
    run.round();
    let total = run.check_store();
    let c = &run.counts;
    assert_eq!(
        c.takeovers + c.kills + c.pauses,
        events,
        "every event was counted"
    );
    assert!(
        c.fenced > 0 && c.refusals > 0,
        "the run fenced nothing or refused no claim: {c:?}"
    );
    println!(
        "ownership_processes: {events} events ({} takeovers, {} kills, {} pauses) moved {} ids; \
         {} increments acknowledged, {} unknown (in flight at a kill: {}), {total} stored; \
         {} stale writes fenced; {} exclusive claims refused while a lease lived; \
         {} violations ({:.1} s)",
        c.takeovers,
        c.kills,
        c.pauses,
        c.moved,
        c.acked,
        c.unknown,
        c.unknown - c.other_failures,
        c.fenced,
        c.refusals,
        run.violations.len(),
        started.elapsed().as_secs_f64()
    );
    run.violations.len()
}
