//! Crash harness: a child saves snapshots as fast as it can and reports every
//! acknowledged save; the parent SIGKILLs it at a random point, reopens the store
//! and checks what recovery sees.
//!
//! ```text
//! theta_crash child --backend fs|fs-buffered|sled|postgres --dir D --seed S
//! theta_crash run   --backend fs|fs-buffered|sled|postgres --iterations N [--dir D] [--seed S]
//! theta_crash soak  --backend fs|fs-buffered|sled|postgres --seconds S [--dir D] [--seed S]
//! ```
//!
//! `soak` is `run` with as many kill points as fit in the given time. The store
//! is opened through `theta_tests::store` (the backends the cargo features
//! compiled in), fs with a small journal so that kills also land inside
//! checkpoints. `postgres` stores in the server of `THETA_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`), in a schema named
//! after the directory, dropped at the end of the run.
//!
//! The child resumes each actor from its stored snapshot, then many tasks
//! (several per actor id, so same-id writers race) save increasing values, each
//! sealed in a real envelope whose payload encodes the value; after each `Ok` it
//! prints `ACK <id> <value>` and flushes. The parent checks, after every kill:
//! every stored snapshot opens (envelope and payload verified), each id's stored
//! value is at least its last acknowledged value, every acknowledged id is
//! listed, and, once the reopened store is closed, no temp files remain. All
//! iterations share one directory, so each child also recovers the state the
//! previous kill left.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};
use theta::ActorId;
use theta::persistence::{PersistentStorage, SnapshotNotFound, StaleSnapshot, envelope};
use theta_tests::crash::Child;
use theta_tests::store::{self, Spec, Store};

/// Actor ids the child saves.
const ACTORS: u128 = 16;
/// Concurrent writer tasks per actor id.
const WRITERS_PER_ACTOR: usize = 4;
/// The actor type recorded in the envelopes.
const ACTOR_TYPE: uuid::Uuid = uuid::uuid!("c4a5c4a5-0000-4000-8000-00000000c4a5");
/// A child that was never killed stops by itself after this long.
const CHILD_LIFETIME: Duration = Duration::from_secs(20);
/// The fs journal limit: small, so that kills also land in the middle of
/// checkpoints (journal replays, files being renamed, segments being removed),
/// not only in journal appends.
const JOURNAL_LIMIT: u64 = 32 << 10;
/// How long one storage operation of the check may take.
const OP_TIMEOUT: Duration = Duration::from_secs(30);

/// SIGKILL a child saving snapshots at random points and check recovery.
#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

/// What to run.
#[derive(Debug, Subcommand)]
enum Mode {
    /// The child: save snapshots until killed, printing `ACK <id> <value>`.
    Child {
        #[command(flatten)]
        common: Common,
        /// The store directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// A number of kill points.
    Run {
        #[command(flatten)]
        common: Common,
        /// Kill points.
        #[arg(long, default_value_t = 200)]
        iterations: u64,
        /// The store directory (default: a temporary one).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// As many kill points as fit in `--seconds`.
    Soak {
        #[command(flatten)]
        common: Common,
        /// How long to go on.
        #[arg(long)]
        seconds: u64,
        /// The store directory (default: a temporary one).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Flags of every mode.
#[derive(Debug, Clone, Args)]
struct Common {
    /// fs, fs-buffered, sled or postgres.
    #[arg(long, default_value = "fs")]
    backend: String,
    /// The random seed (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
}

impl Common {
    /// The store of the run in `dir`.
    fn spec(&self, dir: &Path) -> anyhow::Result<Spec> {
        let spec = Spec::for_backend(&self.backend, dir, &store::postgres_url())?;
        Ok(spec.with_journal_limit(JOURNAL_LIMIT))
    }

    fn seed(&self) -> u64 {
        self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        })
    }
}

fn actor_ids() -> Vec<ActorId> {
    // Ids that differ in their first and last bytes (several fs shards).
    (0..ACTORS)
        .map(|i| ActorId::from_u128((i * 17) << 120 | (i + 1)))
        .collect()
}

/// The payload of `value`: the value, then a filler whose length and bytes derive
/// from it, so a torn or mixed file cannot pass as valid.
fn payload(value: u64, seed: u64) -> Vec<u8> {
    let len = (value.wrapping_mul(2_654_435_761) ^ seed) % 4096;
    let mut out = value.to_le_bytes().to_vec();
    out.extend((0..len).map(|i| (value as u8).wrapping_add(i as u8)));
    out
}

/// The value a stored snapshot holds, after verifying envelope and payload.
fn decode(bytes: &[u8]) -> anyhow::Result<u64> {
    let (header, body) =
        envelope::open(bytes, envelope::DEFAULT_MAX_PAYLOAD).context("envelope does not open")?;
    if header.actor_type != ACTOR_TYPE || body.len() < 8 {
        bail!("foreign or short payload");
    }
    let value = u64::from_le_bytes(body[..8].try_into()?);
    if value != header.sequence {
        bail!(
            "payload value {value} differs from sequence {}",
            header.sequence
        );
    }
    let filler = &body[8..];
    if filler
        .iter()
        .enumerate()
        .any(|(i, &b)| b != (value as u8).wrapping_add(i as u8))
    {
        bail!("payload filler of value {value} is damaged");
    }
    Ok(value)
}

fn child(spec: Spec, seed: u64) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let storage = Store::open(spec)?;
        let mut tasks = Vec::new();
        for id in actor_ids() {
            let start = match storage.try_read(id).await {
                Ok(bytes) => decode(&bytes).with_context(|| format!("recovering {id}"))?,
                Err(e) if e.is::<SnapshotNotFound>() => 0,
                Err(e) => return Err(e.context(format!("recovering {id}"))),
            };
            let next = Arc::new(AtomicU64::new(start + 1));
            for _ in 0..WRITERS_PER_ACTOR {
                let (storage, next) = (storage.clone(), next.clone());
                tasks.push(tokio::spawn(async move {
                    let deadline = Instant::now() + CHILD_LIFETIME;
                    while Instant::now() < deadline {
                        let value = next.fetch_add(1, Ordering::Relaxed);
                        let bytes = envelope::seal(ACTOR_TYPE, 0, value, &payload(value, seed));
                        match storage.try_write(id, bytes).await {
                            Ok(()) => {
                                let mut out = std::io::stdout().lock();
                                writeln!(out, "ACK {id} {value}")?;
                                out.flush()?;
                            }
                            // A racing writer of the same id stored a higher value.
                            Err(e) if e.is::<StaleSnapshot>() => {}
                            Err(e) => return Err(e.context(format!("saving {id} = {value}"))),
                        }
                    }
                    anyhow::Ok(())
                }));
            }
        }
        for task in tasks {
            task.await??;
        }
        Ok(())
    })
}

/// Records one `ACK <id> <value>` line: the highest acknowledged value per id.
fn record(line: &str, acked: &mut HashMap<ActorId, u64>) -> anyhow::Result<()> {
    let mut words = line.split_whitespace();
    let (Some("ACK"), Some(id), Some(value), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        bail!("unexpected child output {line:?}");
    };
    let (id, value): (ActorId, u64) = (id.parse()?, value.parse()?);
    let last = acked.entry(id).or_insert(0);
    *last = (*last).max(value);
    Ok(())
}

/// One kill point: spawn, let it run, SIGKILL, collect the acknowledgements.
fn crash_once(
    common: &Common,
    dir: &Path,
    rng: &mut StdRng,
    acked: &mut HashMap<ActorId, u64>,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let seed = rng.random::<u64>().to_string();
    let args = [
        "child",
        "--backend",
        &common.backend,
        "--seed",
        &seed,
        "--dir",
    ]
    .map(OsStr::new);
    let child = Child::spawn(&exe, args.into_iter().chain([dir.as_os_str()]))?;
    // A quarter of the kills land at a random moment from spawn (often during
    // open and recovery); the rest once the child is saving, after a random number
    // of acks or a random delay, whichever comes first.
    let kill_after_acks = rng.random_range(0..400);
    let early = rng.random_range(0..4) == 0;
    let mut seen = 0;
    let mut deadline = Instant::now() + Duration::from_micros(rng.random_range(0..60_000));
    if !early {
        let first = child
            .next_line(Duration::from_secs(30))
            .context("the child acknowledged nothing within 30 s")?;
        seen += 1;
        record(&first, acked)?;
        deadline = Instant::now() + Duration::from_micros(rng.random_range(0..40_000));
    }
    while seen < kill_after_acks {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let Some(line) = child.next_line(left) else {
            break;
        };
        seen += 1;
        record(&line, acked)?;
    }
    // Lines already written before the kill were acknowledged too.
    for line in child.kill()? {
        record(&line, acked)?;
    }
    Ok(())
}

/// Reopens the store after a kill and checks it against the acknowledgements.
async fn verify(spec: &Spec, acked: &HashMap<ActorId, u64>) -> Vec<String> {
    let mut failures = Vec::new();
    let storage = match Store::open(spec.clone()) {
        Ok(storage) => storage,
        Err(e) => return vec![format!("reopen failed: {e:#}")],
    };
    let listed = match tokio::time::timeout(OP_TIMEOUT, storage.try_list()).await {
        Ok(Ok(listed)) => listed,
        other => return vec![format!("list failed: {other:?}")],
    };
    for id in acked.keys().filter(|id| !listed.contains(id)) {
        failures.push(format!("{id}: acknowledged {} but not listed", acked[id]));
    }
    for id in listed.iter().chain(acked.keys()) {
        let stored = match tokio::time::timeout(OP_TIMEOUT, storage.try_read(*id)).await {
            Ok(Ok(bytes)) => match decode(&bytes) {
                Ok(value) => Some(value),
                Err(e) => {
                    failures.push(format!("{id}: stored snapshot is broken: {e:#}"));
                    continue;
                }
            },
            Ok(Err(e)) if e.is::<SnapshotNotFound>() => None,
            Ok(Err(e)) => {
                failures.push(format!("{id}: read failed: {e:#}"));
                continue;
            }
            Err(_) => {
                failures.push(format!("{id}: read timed out"));
                continue;
            }
        };
        match (acked.get(id), stored) {
            (Some(&last), Some(value)) if value < last => failures.push(format!(
                "{id}: stored value {value} is older than acknowledged {last}"
            )),
            (Some(&last), None) => {
                failures.push(format!("{id}: acknowledged {last} but nothing stored"))
            }
            _ => {}
        }
    }
    // Closed, its background work finished (fs checkpoints the journal it
    // replayed while it serves reads, writing temp files meanwhile), the store
    // must have removed what the kill left.
    if let Err(e) = storage.close().await {
        failures.push(format!("{e:#}"));
    }
    match spec.leftovers() {
        Ok(leftovers) if leftovers.is_empty() => {}
        Ok(leftovers) => failures.push(format!("temp files remain after reopen: {leftovers:?}")),
        Err(e) => failures.push(format!("looking for temp files: {e:#}")),
    }
    failures
}

/// When a `run` stops: after a number of kill points, or at a deadline (`soak`).
#[derive(Debug, Clone, Copy)]
enum Until {
    Iterations(u64),
    Deadline(Instant),
}

impl Until {
    fn more(self, done: u64) -> bool {
        match self {
            Until::Iterations(n) => done < n,
            Until::Deadline(deadline) => Instant::now() < deadline,
        }
    }
}

fn run(common: &Common, until: Until, dir: Option<PathBuf>) -> anyhow::Result<bool> {
    let temp;
    let dir = match dir {
        Some(dir) => dir,
        None => {
            temp = tempfile::tempdir()?;
            temp.path().join("store")
        }
    };
    let spec = common.spec(&dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let seed = common.seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut acked = HashMap::new();
    let mut failures = 0u64;
    let started = Instant::now();
    let mut iteration = 0;
    while until.more(iteration) {
        iteration += 1;
        if let Err(e) = crash_once(common, &dir, &mut rng, &mut acked) {
            failures += 1;
            eprintln!("iteration {iteration}: {e:#}");
            continue;
        }
        for failure in runtime.block_on(verify(&spec, &acked)) {
            failures += 1;
            eprintln!("iteration {iteration}: {failure}");
        }
    }
    if let Err(e) = runtime.block_on(spec.cleanup()) {
        eprintln!("cleaning up after the run: {e:#}");
    }
    let acks: u64 = acked.values().sum();
    println!(
        "crash: {iteration} kill points, {failures} failures ({} backend, highest acked values sum {acks}, seed {seed}, {:.1} s)",
        spec.backend(),
        started.elapsed().as_secs_f64()
    );
    Ok(failures == 0)
}

fn main() -> ExitCode {
    let result = match Cli::parse().mode {
        Mode::Child { common, dir } => common
            .spec(&dir)
            .and_then(|spec| child(spec, common.seed()))
            .map(|()| true),
        Mode::Run {
            common,
            iterations,
            dir,
        } => run(&common, Until::Iterations(iterations), dir),
        Mode::Soak {
            common,
            seconds,
            dir,
        } => {
            let deadline = Instant::now() + Duration::from_secs(seconds);
            run(&common, Until::Deadline(deadline), dir)
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("theta_crash: {e:#}");
            ExitCode::FAILURE
        }
    }
}
