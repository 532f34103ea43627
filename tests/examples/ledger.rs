//! theta's main job: a bank ledger whose every acknowledged operation survives
//! a restart or a `kill -9`.
//!
//! ```text
//! cargo run --release --example ledger               # run it twice: balances continue
//! cargo run --release --example ledger -- --crash    # SIGKILL a worker mid-flight, then check
//! cargo run --release --example ledger -- --store sled:./theta-sled --million
//! ```
//! Accounts are persistent actors reached by id through [`VirtualActors`]: a
//! message activates an account from the store, an idle one is passivated. With
//! "snapshot after every message, confirm replies" an answered ask is durable.
//! Clients send deposits and withdrawals (one in flight per account); then a
//! census in a fresh runtime checks every account against what was acknowledged.
//! `--crash` runs the clients in a child SIGKILLed 1-3 s in.

use std::num::{NonZeroU64, NonZeroUsize};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use rand::{RngExt as _, rngs::StdRng};
use serde::{Deserialize, Serialize};
use theta::persistence::{SnapshotPolicy, VirtualActors};
use theta::prelude::*;
use theta_tests::bulk::{ask_all, peak_rss_mib, progress, show_for};
use theta_tests::crash::{self, Tracker};
use theta_tests::store::{Spec, Store};
use tokio::sync::Mutex;

/// A bank ledger of persistent account actors.
#[derive(Debug, Clone, Parser)]
struct Cli {
    /// The store: fs:DIR, fs+buffered:DIR, sled:DIR or postgres://…[?theta_schema=NAME].
    #[arg(long, default_value = "fs:./theta-data")]
    store: String,
    /// Number of accounts.
    #[arg(
        long,
        default_value = "10000",
        default_value_if("million", "true", "1000000")
    )]
    accounts: NonZeroUsize,
    /// A million accounts: `--accounts 1000000`.
    #[arg(long, conflicts_with = "accounts")]
    million: bool,
    /// At most this many accounts live; the least recently used are passivated.
    #[arg(long, default_value = "100000")]
    max_live: NonZeroUsize,
    /// Passivate an account after this many milliseconds without a message.
    #[arg(long, default_value = "1000")]
    idle_ms: NonZeroU64,
    /// Length of the workload in seconds.
    #[arg(long, default_value = "3")]
    seconds: NonZeroU64,
    /// Concurrent clients.
    #[arg(long, default_value = "256")]
    clients: NonZeroUsize,
    /// Run the workload in a child, SIGKILL it 1-3 s in, recover and check.
    #[arg(long)]
    crash: bool,
    /// The crash test's child: run the workload until killed, reporting on stdout.
    #[arg(long, hide = true, conflicts_with = "crash")]
    child: bool,
}

/// A bank account: its balance (never negative), how many operations changed it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ActorArgs)]
struct Account {
    balance: i64,
    ops: u64,
}

/// What a client asks of an account; answered with the new balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Op {
    Deposit(i64),
    Withdraw(i64),
}

/// A withdrawal that would have overdrawn the account: nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refused(i64);

/// Answers the account's state, unchanged (so no snapshot is written).
struct Query;

impl Account {
    /// Applies `op`: the handler's logic, and the checker's model of it.
    fn apply(&mut self, op: &Op) -> Result<i64, Refused> {
        match *op {
            Op::Withdraw(amount) if amount > self.balance => return Err(Refused(self.balance)),
            Op::Deposit(amount) => self.balance += amount,
            Op::Withdraw(amount) => self.balance -= amount,
        }
        self.ops += 1;
        Ok(self.balance)
    }

    /// The state after `op` (the [`Tracker`]'s transition function).
    fn after(&self, op: &Op) -> Account {
        let mut next = *self;
        let _refused = next.apply(op);
        next
    }
}

#[actor("1ed9e5a7-4c1b-4f0e-9d52-7a3c0b1e0001", snapshot)]
impl Actor for Account {
    const _: () = {
        async |op: Op| -> Result<i64, Refused> { self.apply(&op) };
        async |_: Query| -> Account { *self };
    };
}

/// Account `i`'s id, the same in every run.
fn account_id(i: usize) -> ActorId {
    ActorId::from_u128(0x1ed9_e500_0000_4000_8000_0000_0000_0000 + i as u128)
}

const ASK_TIMEOUT: Duration = Duration::from_secs(60);

/// Per account, the acknowledged state and the operation in flight.
type Ledger = Tracker<usize, Account, Op>;

/// A runtime and a handle to the accounts in `store`.
fn open(store: &Store, cli: &Cli) -> (RootContext, VirtualActors<Account>) {
    let root = RootContext::default();
    let policy = SnapshotPolicy::new().every_n_messages(1).confirm_replies();
    let handle =
        VirtualActors::<Account>::builder(&root, store.with_policy(policy), |_| Account::default())
            .idle_after(Duration::from_millis(cli.idle_ms.get()))
            .max_live(cli.max_live.get())
            .build();
    (root, handle)
}

/// Opens the store, asks every account for its state (64 at a time) through a
/// fresh runtime, passivates them all and closes the store: the states, the
/// seconds it took and the most accounts live at once.
async fn census(spec: &Spec, cli: &Cli) -> anyhow::Result<(Vec<Account>, f64, usize)> {
    let (started, store) = (Instant::now(), Store::open(spec.clone())?);
    let (root, handle) = open(&store, cli);
    let bar = progress(cli.accounts.get() as u64, "accounts", !cli.child);
    let ids = (0..cli.accounts.get()).map(account_id).collect();
    let found = ask_all(&handle, ids, 64, ASK_TIMEOUT, |_| Query, &bar).await;
    let live = handle.stats().peak_live;
    handle.shutdown().await; // passivates every account: final snapshots acknowledged
    root.shutdown(Duration::from_secs(60)).await?;
    store.close().await?;
    Ok((found?, started.elapsed().as_secs_f64(), live))
}

/// Client `c`: random operations on accounts `c`, `c + clients`, ..., until
/// `stop`; each recorded (the crash child: reported) when sent and when acknowledged.
async fn client(
    c: usize,
    handle: VirtualActors<Account>,
    ledger: Arc<Mutex<Ledger>>,
    (cli, stop, refused): (Cli, Arc<AtomicBool>, Arc<AtomicU64>),
) -> anyhow::Result<()> {
    let (mut rng, clients) = (rand::make_rng::<StdRng>(), cli.clients.get());
    let reports = crash::Reports::stdout(cli.child);
    let owned = (cli.accounts.get() - c).div_ceil(clients);
    while !stop.load(Relaxed) {
        let i = c + clients * rng.random_range(0..owned);
        let op = match rng.random_bool(0.5) {
            true => Op::Deposit(rng.random_range(1..=100)),
            false => Op::Withdraw(rng.random_range(1..=150)),
        };
        let next = ledger.lock().await.sent(&i, op)?;
        reports.sent(&i, &op)?;
        let asked = tokio::time::timeout(ASK_TIMEOUT, handle.ask(account_id(i), op)).await;
        let answer = asked.context("no answer in time")??;
        refused.fetch_add(u64::from(answer.is_err()), Relaxed);
        let balance = answer.unwrap_or_else(|Refused(balance)| balance);
        anyhow::ensure!(next.balance == balance, "{op:?} on {i} answered {balance}");
        ledger.lock().await.acknowledged(&i, &next)?;
        reports.acked(&i, &next)?;
    }
    Ok(())
}

/// Runs the clients for `--seconds` (the crash child: until killed), recording
/// what they send and what is acknowledged in the `ledger`.
async fn workload(store: &Store, cli: &Cli, ledger: Ledger) -> anyhow::Result<Ledger> {
    let (root, handle) = open(store, cli);
    let ledger = Arc::new(Mutex::new(ledger));
    let (stop, refused): (Arc<AtomicBool>, Arc<AtomicU64>) = Default::default();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..cli.clients.get().min(cli.accounts.get()) {
        let shared = (cli.clone(), stop.clone(), refused.clone());
        tasks.spawn(client(c, handle.clone(), ledger.clone(), shared));
    }
    let (started, writes, length) = (Instant::now(), store.writes(), cli.seconds.get());
    let acked = || ledger.try_lock().map_or(0, |ledger| ledger.acked);
    let message = || format!("{} ops acknowledged, {} live", acked(), handle.stats().live);
    if !cli.child {
        show_for(Duration::from_secs(length), true, message).await;
        stop.store(true, Relaxed);
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    let (secs, stats) = (started.elapsed().as_secs_f64(), handle.stats());
    handle.shutdown().await; // passivates every account: final snapshots acknowledged
    root.shutdown(Duration::from_secs(60)).await?;
    let (acked, snapshots) = (ledger.lock().await.acked, store.writes() - writes);
    let refused = refused.load(Relaxed);
    println!(
        "
  operations         {acked:>10}  ({refused} withdrawals refused)
  operations/s       {:>10.0}  (each acknowledged after its snapshot was durable)
  snapshots written  {snapshots:>10}  ({:.0}/s)
  live accounts      {:>10}  at the peak; {} activations, {} passivations",
        acked as f64 / secs,
        snapshots as f64 / secs,
        stats.peak_live,
        stats.activations,
        stats.passivations,
    );
    let ledger = Arc::into_inner(ledger).context("a client outlived the workload");
    Ok(ledger?.into_inner())
}

fn total<'a>(accounts: impl IntoIterator<Item = &'a Account>) -> i64 {
    accounts.into_iter().map(|a| a.balance).sum()
}

/// Recover, run the workload (here, or in a child that is killed), recover
/// again in a fresh runtime, check every account against what was acknowledged.
async fn run(cli: &Cli, spec: &Spec) -> anyhow::Result<bool> {
    let (n, backend, clients) = (cli.accounts, spec.backend(), cli.clients);
    let (cap, idle) = (cli.max_live, cli.idle_ms);
    let mode = if cli.crash { " --crash" } else { "" };
    if !cli.child {
        println!("ledger{mode}: {n} accounts in {spec} ({backend} backend), {clients} clients");
        println!("  at most {cap} accounts live, an account idle for {idle} ms is passivated");
    }
    let (before, secs, _) = census(spec, cli).await?;
    let mut ledger = Tracker::new(before.iter().copied().enumerate(), Account::after);
    if cli.child {
        let store = Store::open(spec.clone())?;
        println!("{}", crash::READY);
        workload(&store, cli, ledger).await?;
        anyhow::bail!("the workload ended before the kill");
    }
    let (start, ops) = (total(&before), before.iter().map(|a| a.ops).sum::<u64>());
    println!("recovered {n} accounts in {secs:.2} s: total balance {start}, {ops} ops so far");
    let (ledger, mut discrepancies) = if cli.crash {
        let args = std::env::args().skip(1).filter(|a| a != "--crash");
        let args: Vec<String> = args.chain(["--child".into()]).collect();
        let after = Duration::from_millis(rand::random_range(1000..=3000));
        let killed = tokio::task::block_in_place(|| crash::run_and_kill(args, after));
        let ((pid, lines), secs) = (killed?, after.as_secs_f64());
        println!("worker {pid} SIGKILLed {secs:.2} s into its workload");
        let replayed = lines.iter().filter_map(|line| ledger.replay(line).err());
        let problems = replayed.map(|err| format!("{err:#}")).collect();
        println!("\n  acknowledged ops   {:>10}", ledger.acked);
        (ledger, problems)
    } else {
        let store = Store::open(spec.clone())?;
        let ledger = workload(&store, cli, ledger).await;
        store.close().await?;
        (ledger?, Vec::new())
    };
    let (after, secs, live) = census(spec, cli).await?;
    let checked = ledger.check_all(after.iter().enumerate());
    discrepancies.extend(checked.discrepancies);
    let acked = total(ledger.iter().map(|(_, track)| &track.acked));
    let (recovered, in_flight) = (total(&after), checked.in_flight);
    let (applied, rss) = (checked.in_flight_applied, peak_rss_mib());
    println!(
        "  in flight at end   {in_flight:>10}  ({applied} of them changed the recovered state)
  balance at start   {start:>10}
  acknowledged total {acked:>10}  (start {:+} from acknowledged operations)
  recovered total    {recovered:>10}  (after stopping and reactivating every account)
  recovery           {secs:>9.2} s  ({n} accounts reactivated, {:.0}/s, at most {} live)
  peak RSS           {rss:>6.0} MiB
  census             {n:>10} accounts checked, {} discrepancies",
        acked - start,
        n.get() as f64 / secs,
        live,
        discrepancies.len(),
    );
    for discrepancy in discrepancies.iter().take(20) {
        println!("  {discrepancy}");
    }
    match discrepancies.len() {
        0 => println!("OK: every acknowledged operation survived"),
        bad => println!("MISMATCH: {bad} account(s) differ from what was acknowledged"),
    }
    Ok(discrepancies.is_empty())
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let ok = run(&cli, &Spec::parse(&cli.store)?).await?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use theta_tests::crash::Verdict::{Acknowledged, InFlightApplied};

    const fn acct(balance: i64, ops: u64) -> Account {
        Account { balance, ops }
    }

    /// A withdrawal never overdraws. Replayed reports: the acknowledged state,
    /// or that with the operation in flight, pass; a lost or an invented one fails.
    #[test]
    fn the_handler_logic_and_the_checker_agree() {
        let mut account = acct(10, 3);
        assert_eq!(account.apply(&Op::Withdraw(11)), Err(Refused(10)));
        assert_eq!(account, acct(10, 3));
        assert_eq!(account.apply(&Op::Withdraw(10)), Ok(0));
        assert_eq!(account.after(&Op::Deposit(5)), acct(5, 5));
        let mut tracker = Tracker::new([(0, acct(10, 1))], Account::after);
        let report = r#"S 0 {"Deposit":5}
A 0 {"balance":15,"ops":2}
S 0 {"Withdraw":7}"#;
        report
            .lines()
            .for_each(|line| tracker.replay(line).unwrap());
        assert_eq!(tracker.check(&0, &acct(15, 2)), Ok(Acknowledged));
        assert_eq!(tracker.check(&0, &acct(8, 3)), Ok(InFlightApplied));
        assert!(tracker.check(&0, &acct(10, 1)).is_err()); // a lost deposit
        assert!(tracker.check(&0, &acct(20, 3)).is_err()); // an invented operation
        assert!(tracker.replay(r#"A 0 {"balance":9,"ops":3}"#).is_err());
    }

    #[test]
    fn flags_are_checked() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["ledger"], args].concat());
        assert!(parse(&["--accounts", "0"]).is_err());
        assert!(parse(&["--crash", "--child"]).is_err());
        assert!(parse(&["--million", "--accounts", "5"]).is_err());
        assert_eq!(parse(&["--million"]).unwrap().accounts.get(), 1_000_000);
        assert_eq!(parse(&[]).unwrap().store, "fs:./theta-data");
    }
}
