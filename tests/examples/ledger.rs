//! The main theta demo: a bank ledger of 10,000 persistent account actors whose
//! every acknowledged operation survives a restart or a `kill -9`.
//!
//! ```text
//! cargo run --release --example ledger                  # run, then run it again: balances continue
//! cargo run --release --example ledger -- --crash       # SIGKILL a worker mid-flight, then check
//! cargo run --release --example ledger -- --backend sled --data ./theta-sled
//! ```
//!
//! Each account is a `#[actor(.., snapshot)]` actor recovered with `respawn_or`
//! from `./theta-data`. Concurrent clients send deposits and withdrawals (a
//! withdrawal that would overdraw is refused); every actor is spawned with the
//! automatic policy "snapshot after every message, confirm replies", so an
//! answered `ask` means the snapshot holding its effect is durable. At the end the
//! actors are stopped, recovered in a fresh `RootContext`, and their balances are
//! compared with what was acknowledged.
//!
//! Each client owns a disjoint set of accounts and has one operation in flight at
//! a time, so after a crash every account's recovered state is either its last
//! acknowledged state or that state plus the one operation in flight: anything
//! else is reported as a discrepancy.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use theta::persistence::{PersistenceError, SharedStorage, SnapshotPolicy};
use theta::prelude::*;
use theta_persistence_fs::FsStorage;
use theta_persistence_sled::SledStorage;

/// The usage text printed by `--help` and after a bad flag.
const USAGE: &str = "usage: ledger [--backend fs|sled] [--data DIR] [--accounts N] [--seconds N] [--clients N] [--crash]

  --backend fs|sled  snapshot store (default fs: one file per account)
  --data DIR         where snapshots live (default ./theta-data)
  --accounts N       number of account actors (default 10000)
  --seconds N        length of the workload (default 3)
  --clients N        concurrent client tasks (default 256)
  --crash            run the workload in a child process, SIGKILL it 1-3 s in,
                     then recover every account and check it against what was
                     acknowledged";

/// The first account id; account `i` is `ActorId::from_u128(ACCOUNT_BASE + i)`, the
/// same in every run.
const ACCOUNT_BASE: u128 = 0x1ed9_e500_0000_4000_8000_0000_0000_0000;

/// How long one operation may take before the demo reports it as stuck.
const ASK_TIMEOUT: Duration = Duration::from_secs(30);

/// How many accounts are respawned concurrently during recovery.
const RECOVERY_PARALLELISM: usize = 64;

// ---------------------------------------------------------------------------------
// The actor.

/// One bank account: its balance and how many operations changed it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ActorArgs)]
struct Account {
    /// The balance; never negative.
    balance: i64,
    /// The number of applied deposits and withdrawals.
    ops: u64,
}

/// Adds the amount; answers the new balance.
#[derive(Debug)]
struct Deposit(i64);

/// Takes the amount out if the balance covers it; answers the new balance or
/// [`Refused`].
#[derive(Debug)]
struct Withdraw(i64);

/// Answers the account's state, unchanged.
#[derive(Debug)]
struct Query;

/// A withdrawal that would have overdrawn the account: nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refused {
    /// The balance, which stays as it was.
    balance: i64,
}

#[actor("1ed9e5a7-4c1b-4f0e-9d52-7a3c0b1e0001", snapshot)]
impl Actor for Account {
    const _: () = {
        async |Deposit(amount): Deposit| -> i64 {
            self.balance += amount;
            self.ops += 1;
            self.balance
        };
        async |Withdraw(amount): Withdraw| -> Result<i64, Refused> {
            if amount > self.balance {
                return Err(Refused {
                    balance: self.balance,
                });
            }
            self.balance -= amount;
            self.ops += 1;
            Ok(self.balance)
        };
        async |_: Query| -> Account { *self };
    };
}

/// An operation a client sends to one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// [`Deposit`] of the amount.
    Deposit(i64),
    /// [`Withdraw`] of the amount.
    Withdraw(i64),
}

impl Op {
    /// The state `account` is in after this operation, the way the actor applies it.
    fn apply(self, account: Account) -> Account {
        match self {
            Op::Deposit(amount) => Account {
                balance: account.balance + amount,
                ops: account.ops + 1,
            },
            Op::Withdraw(amount) if amount <= account.balance => Account {
                balance: account.balance - amount,
                ops: account.ops + 1,
            },
            Op::Withdraw(_) => account,
        }
    }

    /// The protocol letter and amount of this operation (`D 17`, `W 40`).
    fn encode(self) -> (char, i64) {
        match self {
            Op::Deposit(amount) => ('D', amount),
            Op::Withdraw(amount) => ('W', amount),
        }
    }

    /// Parses what [`encode`](Self::encode) wrote.
    fn decode(kind: &str, amount: i64) -> Option<Op> {
        match kind {
            "D" => Some(Op::Deposit(amount)),
            "W" => Some(Op::Withdraw(amount)),
            _ => None,
        }
    }
}

/// The stable id of account number `index`.
fn account_id(index: usize) -> ActorId {
    ActorId::from_u128(ACCOUNT_BASE + index as u128)
}

// ---------------------------------------------------------------------------------
// Command line.

/// The snapshot store the demo uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BackendKind {
    /// `theta_persistence_fs::FsStorage`.
    Fs,
    /// `theta_persistence_sled::SledStorage`.
    Sled,
}

impl BackendKind {
    /// The flag value naming this backend.
    fn name(self) -> &'static str {
        match self {
            BackendKind::Fs => "fs",
            BackendKind::Sled => "sled",
        }
    }
}

/// Parsed command-line options.
#[derive(Debug, Clone)]
struct Options {
    /// Which store.
    backend: BackendKind,
    /// The store's directory.
    data: PathBuf,
    /// Number of accounts.
    accounts: usize,
    /// Workload length.
    seconds: u64,
    /// Number of concurrent clients.
    clients: usize,
    /// Parent side of the crash test.
    crash: bool,
    /// Child side of the crash test (hidden): run the workload until killed and
    /// report every operation on stdout.
    child: bool,
}

/// A command-line problem: reported with the usage text and exit code 2.
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// What the command line asks for.
#[derive(Debug)]
enum Invocation {
    /// `--help`.
    Help,
    /// A run.
    Run(Options),
}

/// Parses the arguments after the program name.
fn parse_args(args: &[String]) -> Result<Invocation, UsageError> {
    let mut options = Options {
        backend: BackendKind::Fs,
        data: PathBuf::from("theta-data"),
        accounts: 10_000,
        seconds: 3,
        clients: 256,
        crash: false,
        child: false,
    };
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        let mut value = |name: &str| {
            iter.next()
                .cloned()
                .ok_or_else(|| UsageError(format!("{name} needs a value")))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Invocation::Help),
            "--backend" => {
                options.backend = match value("--backend")?.as_str() {
                    "fs" => BackendKind::Fs,
                    "sled" => BackendKind::Sled,
                    other => {
                        return Err(UsageError(format!(
                            "unknown backend {other:?} (expected fs or sled)"
                        )));
                    }
                }
            }
            "--data" => options.data = PathBuf::from(value("--data")?),
            "--accounts" => options.accounts = positive("--accounts", &value("--accounts")?)?,
            "--seconds" => options.seconds = positive("--seconds", &value("--seconds")?)? as u64,
            "--clients" => options.clients = positive("--clients", &value("--clients")?)?,
            "--crash" => options.crash = true,
            "--child" => options.child = true,
            other => return Err(UsageError(format!("unknown argument {other:?}"))),
        }
    }
    if options.crash && options.child {
        return Err(UsageError("--crash and --child exclude each other".into()));
    }
    Ok(Invocation::Run(options))
}

/// Parses a whole number of at least 1 for `flag`.
fn positive(flag: &str, text: &str) -> Result<usize, UsageError> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(UsageError(format!(
            "{flag} expects a whole number of at least 1, got {text:?}"
        ))),
    }
}

// ---------------------------------------------------------------------------------
// Storage.

/// Either backend behind one [`PersistentStorage`], counting the snapshots written.
#[derive(Clone)]
struct Store {
    /// The backend.
    backend: Backend,
    /// Successful snapshot writes since the store was opened.
    writes: Arc<AtomicU64>,
}

/// The opened backend.
#[derive(Clone)]
enum Backend {
    /// File system.
    Fs(FsStorage),
    /// sled.
    Sled(SledStorage),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.backend {
            Backend::Fs(_) => "fs",
            Backend::Sled(_) => "sled",
        };
        f.debug_struct("Store").field("backend", &kind).finish()
    }
}

impl Store {
    /// Opens the store of `kind` in `dir` (durable writes, the default of both).
    fn open(kind: BackendKind, dir: &Path) -> anyhow::Result<Store> {
        let backend = match kind {
            BackendKind::Fs => Backend::Fs(FsStorage::open(dir).with_context(|| {
                format!("cannot open the fs snapshot store in {}", dir.display())
            })?),
            BackendKind::Sled => Backend::Sled(SledStorage::open(dir).with_context(|| {
                format!("cannot open the sled snapshot store in {}", dir.display())
            })?),
        };
        Ok(Store {
            backend,
            writes: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The number of snapshots written so far.
    fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Flushes and releases the store (sled reports flush errors only here).
    async fn close(self) -> anyhow::Result<()> {
        match self.backend {
            Backend::Fs(storage) => drop(storage),
            Backend::Sled(storage) => storage
                .close()
                .await
                .context("flushing the sled snapshot store")?,
        }
        Ok(())
    }
}

impl PersistentStorage for Store {
    async fn try_read(&self, id: ActorId) -> Result<Vec<u8>, anyhow::Error> {
        match &self.backend {
            Backend::Fs(s) => s.try_read(id).await,
            Backend::Sled(s) => s.try_read(id).await,
        }
    }

    async fn try_write(&self, id: ActorId, bytes: Vec<u8>) -> Result<(), anyhow::Error> {
        match &self.backend {
            Backend::Fs(s) => s.try_write(id, bytes).await,
            Backend::Sled(s) => s.try_write(id, bytes).await,
        }?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn shared(&self) -> Option<SharedStorage> {
        Some(SharedStorage::new(self.clone()))
    }
}

// ---------------------------------------------------------------------------------
// Recovery.

/// Respawns accounts `0..count` from `storage` in `root` (`respawn_or`: restored
/// from the snapshot, or new and empty if there is none), `RECOVERY_PARALLELISM`
/// at a time. Fails on the first account whose snapshot cannot be read.
async fn respawn_all<S>(
    root: &RootContext,
    storage: &S,
    count: usize,
) -> Result<Vec<ActorRef<Account>>, PersistenceError>
where
    S: PersistentStorage + Clone + 'static,
{
    let mut refs = Vec::with_capacity(count);
    let mut next = 0;
    while next < count {
        let end = (next + RECOVERY_PARALLELISM * 16).min(count);
        let mut tasks = tokio::task::JoinSet::new();
        for chunk_start in (next..end).step_by(16) {
            let (root, storage) = (root.clone(), storage.clone());
            let chunk_end = (chunk_start + 16).min(end);
            tasks.spawn(async move {
                let mut chunk = Vec::with_capacity(chunk_end - chunk_start);
                for index in chunk_start..chunk_end {
                    let account = root
                        .respawn_or(&storage, account_id(index), || (), Account::default)
                        .await?;
                    chunk.push((index, account));
                }
                Ok::<_, PersistenceError>(chunk)
            });
        }
        let mut batch = Vec::with_capacity(end - next);
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(chunk) => batch.extend(chunk?),
                Err(panic) => std::panic::resume_unwind(panic.into_panic()),
            }
        }
        batch.sort_by_key(|(index, _)| *index);
        refs.extend(batch.into_iter().map(|(_, account)| account));
        next = end;
    }
    Ok(refs)
}

/// What a census of the store found.
#[derive(Debug)]
struct Census {
    /// The state of each account, by index.
    accounts: Vec<Account>,
    /// How long respawning every account took.
    respawn: Duration,
}

impl Census {
    /// The sum of all balances.
    fn total(&self) -> i64 {
        self.accounts.iter().map(|a| a.balance).sum()
    }
}

/// Recovers every account in a fresh `RootContext` on the store without a policy
/// (so nothing is written), asks each for its state, and stops them all.
async fn census(store: &Store, count: usize) -> anyhow::Result<Census> {
    let root = RootContext::default();
    let started = Instant::now();
    let refs = respawn_all(&root, store, count).await;
    let respawn = started.elapsed();
    let result = match refs {
        Ok(refs) => {
            let mut accounts = Vec::with_capacity(count);
            for account in &refs {
                let state = account
                    .ask(Query)
                    .timeout(ASK_TIMEOUT)
                    .await
                    .with_context(|| format!("reading account {}", account.id()))?;
                accounts.push(state);
            }
            Ok(Census { accounts, respawn })
        }
        Err(err) => Err(anyhow::Error::new(err).context(
            "recovery stopped: a snapshot could not be restored; nothing was overwritten",
        )),
    };
    root.shutdown(Duration::from_secs(30))
        .await
        .context("stopping the recovered accounts")?;
    result
}

// ---------------------------------------------------------------------------------
// Workload.

/// A tiny xorshift generator: the demo needs variety, not quality.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    /// Seeded from the clock and `salt`.
    fn new(salt: u64) -> Rng {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng((nanos ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }

    /// The next number.
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Shared counters of the workload.
#[derive(Debug, Default)]
struct Counters {
    /// Acknowledged operations (deposits, withdrawals, refusals).
    acked: AtomicU64,
    /// Acknowledged refused withdrawals.
    refused: AtomicU64,
}

/// How a client reports its operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Report {
    /// Nothing (the normal run checks the totals itself).
    Quiet,
    /// One line per operation on stdout, flushed before the operation is sent
    /// (`S <account> D|W <amount>`) and after it is acknowledged
    /// (`A <account> <balance> <ops>`): the crash test's parent reads them.
    Lines,
}

/// What one client ended with: the expected state of each account it owns.
#[derive(Debug)]
struct ClientResult {
    /// `(account index, state after its last acknowledged operation)`.
    accounts: Vec<(usize, Account)>,
}

/// One client: owns the accounts `index ≡ client (mod clients)`, sends them random
/// operations one at a time until `stop`, and tracks the acknowledged state of each.
async fn client(
    client: usize,
    mut owned: Vec<(usize, ActorRef<Account>, Account)>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    report: Report,
) -> anyhow::Result<ClientResult> {
    let mut rng = Rng::new(client as u64 + 1);
    while !owned.is_empty() && !stop.load(Ordering::Relaxed) {
        let slot = rng.below(owned.len() as u64) as usize;
        let (index, account, expected) = &mut owned[slot];
        let op = if rng.below(2) == 0 {
            Op::Deposit(1 + rng.below(100) as i64)
        } else {
            Op::Withdraw(1 + rng.below(150) as i64)
        };
        if report == Report::Lines {
            let (kind, amount) = op.encode();
            emit(&format!("S {index} {kind} {amount}"))?;
        }
        let answered = match op {
            Op::Deposit(amount) => account.ask(Deposit(amount)).timeout(ASK_TIMEOUT).await,
            Op::Withdraw(amount) => {
                match account.ask(Withdraw(amount)).timeout(ASK_TIMEOUT).await {
                    Ok(Ok(balance)) => Ok(balance),
                    Ok(Err(Refused { balance })) => {
                        counters.refused.fetch_add(1, Ordering::Relaxed);
                        Ok(balance)
                    }
                    Err(err) => Err(err),
                }
            }
        };
        let balance = answered
            .with_context(|| format!("operation {op:?} on account {index} was not acknowledged"))?;
        let next = op.apply(*expected);
        if next.balance != balance {
            bail!(
                "account {index}: {op:?} answered balance {balance}, expected {} from its previous state",
                next.balance
            );
        }
        *expected = next;
        counters.acked.fetch_add(1, Ordering::Relaxed);
        if report == Report::Lines {
            emit(&format!("A {index} {} {}", next.balance, next.ops))?;
        }
    }
    Ok(ClientResult {
        accounts: owned.into_iter().map(|(i, _, state)| (i, state)).collect(),
    })
}

/// Writes one protocol line to stdout and flushes it into the pipe.
fn emit(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

/// What the workload did.
#[derive(Debug)]
struct Workload {
    /// The expected state of every account, by index.
    expected: Vec<Account>,
    /// Acknowledged operations.
    acked: u64,
    /// Of those, refused withdrawals.
    refused: u64,
    /// Snapshots written during the workload.
    snapshots: u64,
    /// How long it ran.
    elapsed: Duration,
}

/// Runs `clients` clients over `refs` for `length` (or until the process is killed,
/// if `length` is `None`), starting from the `initial` account states.
async fn workload(
    refs: &[ActorRef<Account>],
    initial: &[Account],
    store: &Store,
    clients: usize,
    length: Option<Duration>,
    report: Report,
) -> anyhow::Result<Workload> {
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let clients = clients.min(refs.len()).max(1);
    let mut owned: Vec<Vec<_>> = (0..clients).map(|_| Vec::new()).collect();
    for (index, (account, state)) in refs.iter().zip(initial).enumerate() {
        owned[index % clients].push((index, account.clone(), *state));
    }
    let snapshots_before = store.writes();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (number, accounts) in owned.into_iter().enumerate() {
        tasks.spawn(client(
            number,
            accounts,
            Arc::clone(&stop),
            Arc::clone(&counters),
            report,
        ));
    }

    let bar = match (report, length) {
        (Report::Quiet, Some(length)) => {
            let bar = ProgressBar::with_draw_target(
                Some(length.as_millis() as u64),
                ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
                    .context("progress bar template")?,
            );
            Some(bar)
        }
        _ => None,
    };
    loop {
        let elapsed = started.elapsed();
        if let Some(bar) = &bar {
            let acked = counters.acked.load(Ordering::Relaxed);
            bar.set_position(elapsed.as_millis() as u64);
            bar.set_message(format!(
                "{acked} ops acknowledged ({:.0}/s), {} snapshots",
                acked as f64 / elapsed.as_secs_f64().max(1e-3),
                store.writes() - snapshots_before
            ));
        }
        match length {
            Some(length) if elapsed >= length => break,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut expected = initial.to_vec();
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(result)) => {
                for (index, state) in result.accounts {
                    expected[index] = state;
                }
            }
            Ok(Err(err)) => failure = failure.or(Some(err)),
            Err(panic) => std::panic::resume_unwind(panic.into_panic()),
        }
    }
    let elapsed = started.elapsed();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(err) = failure {
        return Err(err);
    }
    Ok(Workload {
        expected,
        acked: counters.acked.load(Ordering::Relaxed),
        refused: counters.refused.load(Ordering::Relaxed),
        snapshots: store.writes() - snapshots_before,
        elapsed,
    })
}

/// The store handle every workload actor is spawned with: a snapshot after every
/// message, and `ask` replies held until that snapshot is durable.
fn confirmed(store: &Store) -> SharedStorage {
    SharedStorage::new(store.clone())
        .with_policy(SnapshotPolicy::new().every_n_messages(1).confirm_replies())
}

// ---------------------------------------------------------------------------------
// The normal run.

/// Recovers, runs the workload, stops everything, recovers again and checks.
/// `Ok(false)` means the check found a discrepancy.
async fn normal_run(options: &Options) -> anyhow::Result<bool> {
    println!(
        "ledger: {} accounts in {} ({} backend), {} clients, {} s",
        options.accounts,
        options.data.display(),
        options.backend.name(),
        options.clients,
        options.seconds
    );
    let store = Store::open(options.backend, &options.data)?;

    let before = census(&store, options.accounts).await?;
    let recovered_total = before.total();
    let recovered_ops: u64 = before.accounts.iter().map(|a| a.ops).sum();
    println!(
        "recovered {} accounts in {:.2} s: total balance {recovered_total}, {recovered_ops} operations so far",
        options.accounts,
        before.respawn.as_secs_f64()
    );

    let root = RootContext::default();
    let shared = confirmed(&store);
    let started = Instant::now();
    let refs = respawn_all(&root, &shared, options.accounts)
        .await
        .context("starting the accounts")?;
    let spawn_time = started.elapsed();

    let length = Duration::from_secs(options.seconds);
    let outcome = workload(
        &refs,
        &before.accounts,
        &store,
        options.clients,
        Some(length),
        Report::Quiet,
    )
    .await;
    drop(refs);
    root.shutdown(Duration::from_secs(30))
        .await
        .context("stopping the accounts")?;
    let work = outcome?;

    let after = census(&store, options.accounts).await?;
    let expected_total: i64 = work.expected.iter().map(|a| a.balance).sum();
    let secs = work.elapsed.as_secs_f64();
    println!();
    println!(
        "  operations         {:>10}  ({} withdrawals refused)",
        work.acked, work.refused
    );
    println!(
        "  operations/s       {:>10.0}  (each acknowledged after its snapshot was durable)",
        work.acked as f64 / secs
    );
    println!(
        "  snapshots written  {:>10}  ({:.0}/s)",
        work.snapshots,
        work.snapshots as f64 / secs
    );
    println!(
        "  recovery           {:>9.2} s  (respawn of {} accounts; {:.2} s to start them with the policy)",
        before.respawn.as_secs_f64(),
        options.accounts,
        spawn_time.as_secs_f64()
    );
    println!("  balance at start   {recovered_total:>10}");
    println!(
        "  acknowledged total {expected_total:>10}  (start {:+} from acknowledged operations)",
        expected_total - recovered_total
    );
    println!(
        "  recovered total    {:>10}  (after stopping and respawning every account)",
        after.total()
    );
    store.close().await?;

    let mismatched: Vec<String> = work
        .expected
        .iter()
        .zip(&after.accounts)
        .enumerate()
        .filter(|(_, (expected, found))| expected != found)
        .map(|(index, (expected, found))| {
            format!(
                "account {index} ({}): acknowledged balance {} after {} ops, recovered balance {} after {} ops",
                account_id(index),
                expected.balance,
                expected.ops,
                found.balance,
                found.ops
            )
        })
        .collect();
    if mismatched.is_empty() && after.total() == expected_total {
        println!("OK: every acknowledged operation survived");
        Ok(true)
    } else {
        println!(
            "MISMATCH: recovered total {} vs acknowledged total {expected_total} (difference {:+}); {} account(s) differ:",
            after.total(),
            after.total() - expected_total,
            mismatched.len()
        );
        for line in mismatched.iter().take(20) {
            println!("  {line}");
        }
        Ok(false)
    }
}

// ---------------------------------------------------------------------------------
// The crash test.

/// The child side: start the accounts, say `READY`, run the workload reporting
/// each operation until the parent kills the process.
async fn child_run(options: &Options) -> anyhow::Result<()> {
    let store = Store::open(options.backend, &options.data)?;
    // The parent took the census; the child only needs the starting states to
    // check the answers, so it reads them from the actors it starts.
    let root = RootContext::default();
    let before = census(&store, options.accounts).await?;
    let refs = respawn_all(&root, &confirmed(&store), options.accounts)
        .await
        .context("starting the accounts")?;
    emit("READY")?;
    workload(
        &refs,
        &before.accounts,
        &store,
        options.clients,
        None,
        Report::Lines,
    )
    .await?;
    Ok(())
}

/// What the parent knows about one account from the child's reports.
#[derive(Debug, Clone, Copy)]
struct Tracked {
    /// The state after the last acknowledged operation (or the census).
    acked: Account,
    /// An operation sent but not acknowledged.
    in_flight: Option<Op>,
}

impl Tracked {
    /// Checks the recovered state `found` against what was acknowledged:
    /// `Ok(false)` if it is the acknowledged state, `Ok(true)` if it is that state
    /// plus the operation in flight, `Err` (the explanation) otherwise.
    fn check(&self, found: Account) -> Result<bool, String> {
        let with_in_flight = self.in_flight.map(|op| op.apply(self.acked));
        if found == self.acked {
            return Ok(false);
        }
        if with_in_flight == Some(found) {
            return Ok(true);
        }
        Err(format!(
            "recovered balance {} after {} ops; acknowledged {} after {} ops{}",
            found.balance,
            found.ops,
            self.acked.balance,
            self.acked.ops,
            match (self.in_flight, with_in_flight) {
                (Some(op), Some(next)) => format!(
                    " (or {} after {} ops if the in-flight {op:?} was applied)",
                    next.balance, next.ops
                ),
                _ => String::new(),
            }
        ))
    }
}

/// The parent side: census, run the child, kill it 1-3 s into its workload,
/// recover and check every account.
fn crash_run(options: &Options) -> anyhow::Result<bool> {
    let runtime = runtime()?;
    println!(
        "ledger --crash: {} accounts in {} ({} backend), {} clients",
        options.accounts,
        options.data.display(),
        options.backend.name(),
        options.clients
    );
    // The census before the child starts; the store is closed again so the child
    // can lock it.
    let before = runtime.block_on(async {
        let store = Store::open(options.backend, &options.data)?;
        let census = census(&store, options.accounts).await?;
        store.close().await?;
        anyhow::Ok(census)
    })?;
    println!(
        "recovered {} accounts in {:.2} s: total balance {}",
        options.accounts,
        before.respawn.as_secs_f64(),
        before.total()
    );
    let mut tracked: Vec<Tracked> = before
        .accounts
        .iter()
        .map(|&acked| Tracked {
            acked,
            in_flight: None,
        })
        .collect();

    let exe = std::env::current_exe().context("finding the demo's own executable")?;
    let mut child = Command::new(&exe)
        .arg("--child")
        .args(["--backend", options.backend.name()])
        .arg("--data")
        .arg(&options.data)
        .args(["--accounts", &options.accounts.to_string()])
        .args(["--clients", &options.clients.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting the worker {}", exe.display()))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("the worker has no stdout pipe"))?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || -> anyhow::Result<Vec<String>> {
        let mut lines = Vec::new();
        let mut ready = Some(ready_tx);
        for line in BufReader::new(stdout).lines() {
            let line = line.context("reading the worker's reports")?;
            if line == "READY" {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
                continue;
            }
            lines.push(line);
        }
        Ok(lines)
    });

    let ready = ready_rx.recv_timeout(Duration::from_secs(120)).is_ok();
    let kill_after = Duration::from_millis(1000 + Rng::new(0xc0ffee).below(2001));
    if ready {
        println!(
            "worker {} is running; SIGKILL in {:.2} s",
            child.id(),
            kill_after.as_secs_f64()
        );
        std::thread::sleep(kill_after);
    }
    // `Child::kill` sends SIGKILL on Unix.
    let _ = child.kill();
    let status = child.wait().context("waiting for the worker")?;
    let lines = reader
        .join()
        .map_err(|_| anyhow!("the report reader panicked"))??;
    if !ready {
        bail!("the worker never started its workload ({status})");
    }
    println!("worker killed ({status}); {} report lines", lines.len());

    // Replay the reports.
    let mut acked_ops = 0u64;
    let mut acked_delta = 0i64;
    let mut protocol_errors = Vec::new();
    for line in &lines {
        if let Err(err) = replay(line, &mut tracked, &mut acked_ops, &mut acked_delta) {
            protocol_errors.push(format!("{line:?}: {err}"));
        }
    }

    let after = runtime.block_on(async {
        let store = Store::open(options.backend, &options.data)?;
        let census = census(&store, options.accounts).await?;
        store.close().await?;
        anyhow::Ok(census)
    })?;

    let mut in_flight = 0usize;
    let mut applied = 0usize;
    let mut range = (0i64, 0i64);
    let mut discrepancies = protocol_errors;
    for (index, (track, found)) in tracked.iter().zip(&after.accounts).enumerate() {
        let with_in_flight = track.in_flight.map(|op| op.apply(track.acked));
        if let Some(next) = with_in_flight {
            in_flight += 1;
            let delta = next.balance - track.acked.balance;
            range.0 += delta.min(0);
            range.1 += delta.max(0);
        }
        match track.check(*found) {
            Ok(true) => applied += 1,
            Ok(false) => {}
            Err(problem) => discrepancies.push(format!(
                "account {index} ({}): {problem}",
                account_id(index)
            )),
        }
    }

    let acked_total = before.total() + acked_delta;
    println!();
    println!("  acknowledged operations  {acked_ops:>10}");
    println!(
        "  in flight at the kill    {in_flight:>10}  ({applied} of them changed the recovered state, {} did not)",
        in_flight - applied
    );
    println!("  balance at start         {:>10}", before.total());
    println!("  acknowledged total       {acked_total:>10}  (start {acked_delta:+})");
    println!(
        "  recovered total          {:>10}  (allowed: {}..={} given the in-flight operations)",
        after.total(),
        acked_total + range.0,
        acked_total + range.1
    );
    println!(
        "  recovery                 {:>8.2} s  (respawn of {} accounts)",
        after.respawn.as_secs_f64(),
        options.accounts
    );
    if discrepancies.is_empty() {
        println!("OK: every acknowledged operation survived the SIGKILL");
        Ok(true)
    } else {
        println!("MISMATCH: {} discrepancies:", discrepancies.len());
        for line in discrepancies.iter().take(20) {
            println!("  {line}");
        }
        Ok(false)
    }
}

/// Applies one report line of the child to the parent's view.
fn replay(
    line: &str,
    tracked: &mut [Tracked],
    acked_ops: &mut u64,
    acked_delta: &mut i64,
) -> anyhow::Result<()> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let number = |i: usize| -> anyhow::Result<i64> {
        fields
            .get(i)
            .ok_or_else(|| anyhow!("missing field {i}"))?
            .parse::<i64>()
            .context("not a number")
    };
    let index = usize::try_from(number(1)?).context("bad account")?;
    let track = tracked
        .get_mut(index)
        .ok_or_else(|| anyhow!("no account {index}"))?;
    match fields.first().copied() {
        Some("S") => {
            if track.in_flight.is_some() {
                bail!("a second operation in flight on account {index}");
            }
            let kind = fields.get(2).copied().unwrap_or_default();
            let op = Op::decode(kind, number(3)?).ok_or_else(|| anyhow!("bad operation"))?;
            track.in_flight = Some(op);
        }
        Some("A") => {
            let op = track
                .in_flight
                .take()
                .ok_or_else(|| anyhow!("acknowledgement without an operation"))?;
            let next = op.apply(track.acked);
            let reported = Account {
                balance: number(2)?,
                ops: u64::try_from(number(3)?).context("bad ops")?,
            };
            if reported != next {
                bail!("acknowledged {reported:?}, expected {next:?}");
            }
            *acked_ops += 1;
            *acked_delta += next.balance - track.acked.balance;
            track.acked = next;
        }
        _ => bail!("unknown report"),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// main.

/// A multi-threaded tokio runtime.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// Runs the demo; the exit code is 0 when the check passed, 1 on a discrepancy or
/// error, 2 on bad usage.
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_args(&args) {
        Ok(Invocation::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Run(options)) => options,
        Err(err) => {
            eprintln!("ledger: {err}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let outcome = if options.crash {
        crash_run(&options)
    } else {
        runtime().and_then(|rt| {
            if options.child {
                rt.block_on(child_run(&options)).map(|()| true)
            } else {
                rt.block_on(normal_run(&options))
            }
        })
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("ledger: error: {}", render(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, leaving out a cause whose text its
/// parent's message already includes (many errors print their source).
fn render(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

/// Unit tests.
#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `lines` to [`replay`] starting from `start`.
    fn tracked_after(start: Account, lines: &[&str]) -> anyhow::Result<(Tracked, u64, i64)> {
        let mut tracked = vec![Tracked {
            acked: start,
            in_flight: None,
        }];
        let (mut ops, mut delta) = (0, 0);
        for line in lines {
            replay(line, &mut tracked, &mut ops, &mut delta)?;
        }
        Ok((tracked[0], ops, delta))
    }

    /// `Op::apply` mirrors the actor: a withdrawal never overdraws.
    #[test]
    fn withdrawals_never_overdraw() {
        let account = Account {
            balance: 10,
            ops: 3,
        };
        assert_eq!(Op::Withdraw(11).apply(account), account);
        assert_eq!(
            Op::Withdraw(10).apply(account),
            Account { balance: 0, ops: 4 }
        );
        assert_eq!(
            Op::Deposit(5).apply(account),
            Account {
                balance: 15,
                ops: 4
            }
        );
    }

    /// The crash check accepts exactly the acknowledged state or that state plus
    /// the operation in flight.
    #[test]
    fn acknowledged_state_or_in_flight_op_pass_anything_else_fails() {
        let start = Account {
            balance: 10,
            ops: 1,
        };
        let (track, ops, delta) =
            tracked_after(start, &["S 0 D 5", "A 0 15 2", "S 0 W 7"]).expect("replays");
        assert_eq!((ops, delta), (1, 5));
        assert_eq!(
            track.check(Account {
                balance: 15,
                ops: 2
            }),
            Ok(false)
        );
        assert_eq!(track.check(Account { balance: 8, ops: 3 }), Ok(true));
        // Lost an acknowledged deposit.
        assert!(track.check(start).is_err());
        // Applied something nobody sent.
        assert!(
            track
                .check(Account {
                    balance: 20,
                    ops: 3
                })
                .is_err()
        );
    }

    /// Reports that contradict the protocol are errors, not silently skipped.
    #[test]
    fn inconsistent_reports_are_rejected() {
        let start = Account::default();
        // An acknowledgement whose balance does not follow from the operation.
        assert!(tracked_after(start, &["S 0 D 5", "A 0 6 1"]).is_err());
        // Two operations in flight on one account.
        assert!(tracked_after(start, &["S 0 D 5", "S 0 D 1"]).is_err());
        // An acknowledgement without an operation, an unknown account, garbage.
        assert!(tracked_after(start, &["A 0 0 0"]).is_err());
        assert!(tracked_after(start, &["S 1 D 5"]).is_err());
        assert!(tracked_after(start, &["X"]).is_err());
    }

    /// Bad flags are usage errors.
    #[test]
    fn flags_are_checked() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(parse_args(&args(&["--backend", "foo"])).is_err());
        assert!(parse_args(&args(&["--accounts", "x"])).is_err());
        assert!(parse_args(&args(&["--accounts", "0"])).is_err());
        assert!(parse_args(&args(&["--seconds"])).is_err());
        assert!(parse_args(&args(&["--crash", "--child"])).is_err());
        match parse_args(&args(&["--backend", "sled", "--accounts", "5"])) {
            Ok(Invocation::Run(options)) => {
                assert_eq!(options.backend, BackendKind::Sled);
                assert_eq!(options.accounts, 5);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
