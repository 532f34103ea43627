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
//! `soak` is `run` with as many kill points as fit in the given time.
//!
//! `postgres` stores in the server of `THETA_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), in a schema named after the
//! directory, dropped at the end of the run.
//!
//! The child resumes each actor from its stored snapshot, then many tasks (several
//! per actor id, so same-id writers race) save increasing values, each sealed in a
//! real envelope whose payload encodes the value; after each `Ok` it prints
//! `ACK <id> <value>` and flushes. The parent checks, after every kill: every
//! stored snapshot opens (envelope and payload verified), each id's stored value is
//! at least its last acknowledged value, and no temp files remain after reopen.
//! All iterations share one directory, so each child also recovers the state the
//! previous kill left.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use theta::ActorId;
use theta::persistence::{PersistentStorage, SharedStorage, StaleSnapshot, envelope};

/// Actor ids the child saves.
const ACTORS: u128 = 16;
/// Concurrent writer tasks per actor id.
const WRITERS_PER_ACTOR: usize = 4;
/// The actor type recorded in the envelopes.
const ACTOR_TYPE: uuid::Uuid = uuid::uuid!("c4a5c4a5-0000-4000-8000-00000000c4a5");
/// A child that was never killed stops by itself after this long.
const CHILD_LIFETIME: Duration = Duration::from_secs(20);

/// The storage backends the harness can crash. Add a variant (and its arms) to
/// crash another backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Fs,
    /// fs with `Durability::ProcessKill`: no sync per write, but a process kill
    /// still loses nothing acknowledged (the page cache survives it).
    FsBuffered,
    Sled,
    /// PostgreSQL (`synchronous_commit = on`): a kill of the client may not
    /// lose an acknowledged write.
    Postgres,
}

/// The server of the postgres backend.
fn postgres_url() -> String {
    std::env::var("THETA_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The schema of the postgres backend for `dir`: one per run directory.
fn postgres_schema(dir: &Path) -> String {
    // FNV-1a of the path: stable across the parent and its children.
    let hash = dir
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("theta_crash_{hash:016x}")
}

impl Backend {
    fn parse(name: &str) -> anyhow::Result<Backend> {
        match name {
            "fs" => Ok(Backend::Fs),
            "fs-buffered" => Ok(Backend::FsBuffered),
            "sled" => Ok(Backend::Sled),
            "postgres" => Ok(Backend::Postgres),
            other => bail!("unknown backend {other:?} (known: fs, fs-buffered, sled, postgres)"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Backend::Fs => "fs",
            Backend::FsBuffered => "fs-buffered",
            Backend::Sled => "sled",
            Backend::Postgres => "postgres",
        }
    }

    fn open(self, dir: &Path) -> anyhow::Result<SharedStorage> {
        match self {
            // A small journal, so that kills also land in the middle of
            // checkpoints (journal replays, files being renamed, segments being
            // removed), not only in journal appends.
            Backend::Fs | Backend::FsBuffered => {
                let durability = if self == Backend::Fs {
                    theta::persistence::Durability::PowerLoss
                } else {
                    theta::persistence::Durability::ProcessKill
                };
                Ok(SharedStorage::new(
                    theta_persistence_fs::FsStorage::builder(dir)
                        .durability(durability)
                        .journal_limit(32 << 10)
                        .open()?,
                ))
            }
            // PowerLoss (the default): an acknowledged save has been flushed and
            // fsync'd, so a kill may not lose it.
            Backend::Sled => Ok(SharedStorage::new(
                theta_persistence_sled::SledStorage::open(dir)?,
            )),
            // Connects on the first operation (inside the caller's runtime).
            Backend::Postgres => Ok(SharedStorage::new(
                theta_persistence_postgres::PostgresStorage::builder(&postgres_url())
                    .schema(postgres_schema(dir))
                    .build()?,
            )),
        }
    }

    /// Removes what the run left outside its directory.
    fn cleanup(self, dir: &Path) -> anyhow::Result<()> {
        if self != Backend::Postgres {
            return Ok(());
        }
        use theta_persistence_postgres::tokio_postgres;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let (client, connection) =
                tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            client
                .batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                    postgres_schema(dir)
                ))
                .await?;
            anyhow::Ok(())
        })
    }

    /// Files of unfinished writes that must not survive a reopen.
    fn leftovers(self, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        match self {
            Backend::Fs | Backend::FsBuffered => {
                let mut out = Vec::new();
                // The directory must be there: a scan of nothing would find no
                // temp file and prove nothing.
                let snapshots = dir.join("snapshots");
                let shards = std::fs::read_dir(&snapshots)
                    .with_context(|| format!("listing {}", snapshots.display()))?;
                for shard in shards.flatten() {
                    for file in std::fs::read_dir(shard.path())
                        .into_iter()
                        .flatten()
                        .flatten()
                    {
                        if file.file_name().to_string_lossy().ends_with(".tmp") {
                            out.push(file.path());
                        }
                    }
                }
                Ok(out)
            }
            // sled writes in place into its own log and recovers a prefix of it on
            // open; it leaves no per-write temp files to look for.
            Backend::Sled => Ok(Vec::new()),
            // The server's transactions leave nothing half-written to look for.
            Backend::Postgres => Ok(Vec::new()),
        }
    }
}

/// splitmix64: enough randomness for kill points and payload sizes.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
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

fn child(backend: Backend, dir: &Path, seed: u64) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let storage = backend.open(dir)?;
        let mut tasks = Vec::new();
        for id in actor_ids() {
            let start = match storage.try_read(id).await {
                Ok(bytes) => decode(&bytes).with_context(|| format!("recovering {id}"))?,
                Err(e) if e.is::<theta::persistence::SnapshotNotFound>() => 0,
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

/// One kill point: spawn, let it run, SIGKILL, collect the acknowledgements.
fn crash_once(
    backend: Backend,
    dir: &Path,
    seed: u64,
    rng: &mut Rng,
    acked: &mut HashMap<ActorId, u64>,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args([
            "child",
            "--backend",
            backend.name(),
            "--seed",
            &seed.to_string(),
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawning the child")?;
    let stdout = child.stdout.take().context("child stdout")?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let record = |line: String, acked: &mut HashMap<ActorId, u64>| -> anyhow::Result<()> {
        let mut words = line.split_whitespace();
        let (Some("ACK"), Some(id), Some(value)) = (words.next(), words.next(), words.next())
        else {
            bail!("unexpected child output {line:?}");
        };
        let (id, value): (ActorId, u64) = (id.parse()?, value.parse()?);
        let last = acked.entry(id).or_insert(0);
        *last = (*last).max(value);
        Ok(())
    };
    // A quarter of the kills land at a random moment from spawn (often during
    // open and recovery); the rest once the child is saving, after a random number
    // of acks or a random delay, whichever comes first.
    let kill_after_acks = rng.below(400);
    let mut seen = 0;
    let early = rng.below(4) == 0;
    let mut deadline = Instant::now() + Duration::from_micros(rng.below(60_000));
    if !early {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                seen += 1;
                record(line, acked)?;
            }
            Err(e) => bail!("child acknowledged nothing: {e}"),
        }
        deadline = Instant::now() + Duration::from_micros(rng.below(40_000));
    }
    while seen < kill_after_acks {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(line) => {
                seen += 1;
                record(line, acked)?;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.kill();
    let status = child.wait()?;
    // Lines already written before the kill were acknowledged too.
    for line in rx.iter() {
        record(line, acked)?;
    }
    let _ = reader.join();
    if status.success() || status.code().is_some_and(|c| c != 0) {
        bail!("child was not killed but exited: {status}");
    }
    Ok(())
}

/// Reopens the store after a kill and checks it against the acknowledgements.
fn verify(backend: Backend, dir: &Path, acked: &HashMap<ActorId, u64>) -> Vec<String> {
    let mut failures = Vec::new();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return vec![format!("runtime: {e}")],
    };
    runtime.block_on(async {
        let storage = match backend.open(dir) {
            Ok(storage) => storage,
            Err(e) => {
                failures.push(format!("reopen failed: {e:#}"));
                return;
            }
        };
        let listed = match tokio::time::timeout(Duration::from_secs(30), storage.try_list()).await {
            Ok(Ok(listed)) => listed,
            other => {
                failures.push(format!("list failed: {other:?}"));
                return;
            }
        };
        for id in listed.iter().copied().chain(acked.keys().copied()) {
            let read = tokio::time::timeout(Duration::from_secs(30), storage.try_read(id)).await;
            let stored = match read {
                Ok(Ok(bytes)) => match decode(&bytes) {
                    Ok(value) => Some(value),
                    Err(e) => {
                        failures.push(format!("{id}: stored snapshot is broken: {e:#}"));
                        continue;
                    }
                },
                Ok(Err(e)) if e.is::<theta::persistence::SnapshotNotFound>() => None,
                Ok(Err(e)) => {
                    failures.push(format!("{id}: read failed: {e:#}"));
                    continue;
                }
                Err(_) => {
                    failures.push(format!("{id}: read timed out"));
                    continue;
                }
            };
            if let Some(&last) = acked.get(&id) {
                match stored {
                    Some(value) if value >= last => {}
                    Some(value) => failures.push(format!(
                        "{id}: stored value {value} is older than acknowledged {last}"
                    )),
                    None => failures.push(format!("{id}: acknowledged {last} but nothing stored")),
                }
            }
        }
        // Closed (its background work finished: fs checkpoints the journal it
        // replayed while it serves reads), the store must have removed what
        // the kill left.
        drop(storage);
        match backend.leftovers(dir) {
            Ok(leftovers) if leftovers.is_empty() => {}
            Ok(leftovers) => {
                failures.push(format!("temp files remain after reopen: {leftovers:?}"))
            }
            Err(e) => failures.push(format!("looking for temp files: {e:#}")),
        }
    });
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

fn run(backend: Backend, until: Until, dir: Option<PathBuf>, seed: u64) -> anyhow::Result<bool> {
    let temp;
    let dir = match dir {
        Some(dir) => dir,
        None => {
            temp = tempfile::tempdir()?;
            temp.path().join("store")
        }
    };
    let mut rng = Rng(seed);
    let mut acked = HashMap::new();
    let mut failures = 0u64;
    let started = Instant::now();
    let mut iteration = 0;
    while until.more(iteration) {
        iteration += 1;
        let child_seed = rng.next();
        if let Err(e) = crash_once(backend, &dir, child_seed, &mut rng, &mut acked) {
            failures += 1;
            eprintln!("iteration {iteration}: {e:#}");
            continue;
        }
        for failure in verify(backend, &dir, &acked) {
            failures += 1;
            eprintln!("iteration {iteration}: {failure}");
        }
    }
    if let Err(e) = backend.cleanup(&dir) {
        eprintln!("cleaning up after the run: {e:#}");
    }
    let acks: u64 = acked.values().sum();
    println!(
        "crash: {iteration} kill points, {failures} failures ({} backend, highest acked values sum {acks}, seed {seed}, {:.1} s)",
        backend.name(),
        started.elapsed().as_secs_f64()
    );
    Ok(failures == 0)
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: theta_crash child --backend fs|fs-buffered|sled|postgres --dir D --seed S\n       theta_crash run --backend fs|fs-buffered|sled|postgres --iterations N [--dir D] [--seed S]\n       theta_crash soak --backend fs|fs-buffered|sled|postgres --seconds S [--dir D] [--seed S]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = args.first() else {
        return usage();
    };
    let mut flags = HashMap::new();
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let (Some(name), Some(value)) = (flag.strip_prefix("--"), rest.next()) else {
            return usage();
        };
        flags.insert(name.to_owned(), value.clone());
    }
    let result = (|| -> anyhow::Result<bool> {
        let backend = Backend::parse(flags.get("backend").map_or("fs", String::as_str))?;
        let seed = match flags.get("seed") {
            Some(seed) => seed.parse().context("--seed")?,
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos() as u64,
        };
        match mode.as_str() {
            "child" => {
                let dir = flags.get("dir").context("child needs --dir")?;
                child(backend, Path::new(dir), seed)?;
                Ok(true)
            }
            "run" => {
                let iterations = flags
                    .get("iterations")
                    .map_or(Ok(200), |n| n.parse())
                    .context("--iterations")?;
                run(
                    backend,
                    Until::Iterations(iterations),
                    flags.get("dir").map(PathBuf::from),
                    seed,
                )
            }
            "soak" => {
                let seconds: u64 = flags
                    .get("seconds")
                    .context("soak needs --seconds")?
                    .parse()
                    .context("--seconds")?;
                run(
                    backend,
                    Until::Deadline(Instant::now() + Duration::from_secs(seconds)),
                    flags.get("dir").map(PathBuf::from),
                    seed,
                )
            }
            other => bail!("unknown mode {other:?}"),
        }
    })();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("theta_crash: {e:#}");
            ExitCode::FAILURE
        }
    }
}
