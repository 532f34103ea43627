//! Crash tests: a child process that reports what was acknowledged, a parent that
//! SIGKILLs it and checks what recovery sees.
//!
//! - [`Child`] runs the child (usually the same binary with a flag), collects its
//!   stdout lines as they come, and kills it with SIGKILL, refusing a child that
//!   exited on its own (a kill that never happened proves nothing).
//! - [`Tracker`] is the parent's view of a workload whose each key has at most
//!   one operation in flight: after a kill, a key's recovered state must be its
//!   last acknowledged state, or that state with the operation in flight applied.
//! - [`Reports`] is the child's side of the protocol ([`Tracker::replay`]
//!   reads it): one line per operation before it is sent,
//!   `S <key> <op as JSON>`, and one after it is acknowledged,
//!   `A <key> <state as JSON>`, each flushed into the pipe before going on.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The line a child prints when its workload starts ([`run_and_kill`]).
pub const READY: &str = "READY";

/// How long [`run_and_kill`] waits for the child's [`READY`] (its recovery
/// may take a while: a million actors, a slow disk).
pub const READY_WITHIN: Duration = Duration::from_secs(600);

/// Runs this executable again with `args`, waits (up to [`READY_WITHIN`]) for
/// its [`READY`] line, lets it run for `kill_after`, then SIGKILLs it; its
/// process id and the lines it wrote after `READY`. Fails if it exits by
/// itself or never gets ready.
pub fn run_and_kill<I, S>(args: I, kill_after: Duration) -> anyhow::Result<(u32, Vec<String>)>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let exe = std::env::current_exe().context("finding this executable")?;
    let child = Child::spawn(&exe, args)?;
    child.wait_for(READY, READY_WITHIN)?;
    std::thread::sleep(kill_after);
    let id = child.id();
    Ok((id, child.kill()?))
}

/// SIGKILL's number.
const SIGKILL: i32 = 9;

/// A child process whose stdout lines arrive on a channel.
#[derive(Debug)]
pub struct Child {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    reader: Option<JoinHandle<()>>,
}

impl Child {
    /// Starts `exe` with `args`, stdout piped (stderr inherited).
    pub fn spawn<I, S>(exe: &Path, args: I) -> anyhow::Result<Child>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting the child {}", exe.display()))?;
        let stdout = child
            .stdout
            .take()
            .context("the child has no stdout pipe")?;
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Child {
            child,
            lines,
            reader: Some(reader),
        })
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The next line, or `None` if none came within `timeout` (or stdout closed).
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Waits for the line `marker`; returns the lines before it. Fails if it
    /// does not come within `timeout`.
    pub fn wait_for(&self, marker: &str, timeout: Duration) -> anyhow::Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line == marker => return Ok(before),
                Ok(line) => before.push(line),
                Err(_) => bail!("the child never printed {marker:?} (within {timeout:?})"),
            }
        }
    }

    /// Every line that has arrived so far, without waiting.
    pub fn drain(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// SIGKILLs the child and returns the lines it wrote before dying (all of
    /// them were written, so all of them count). Fails if the child had already
    /// exited by itself: then no kill was tested.
    pub fn kill(mut self) -> anyhow::Result<Vec<String>> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the child exited by itself ({status}) before the kill");
        }
        // `Child::kill` sends SIGKILL on Unix.
        self.child.kill().context("killing the child")?;
        let status = self.child.wait().context("waiting for the child")?;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        require_killed(status)?;
        Ok(self.lines.try_iter().collect())
    }

    /// Waits for the child to exit on its own; its status and remaining lines.
    pub fn wait(mut self) -> anyhow::Result<(ExitStatus, Vec<String>)> {
        let status = self.child.wait().context("waiting for the child")?;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        Ok((status, self.lines.try_iter().collect()))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `Ok` only for a process that died of SIGKILL.
pub fn require_killed(status: ExitStatus) -> anyhow::Result<()> {
    match status.signal() {
        Some(SIGKILL) => Ok(()),
        Some(signal) => bail!("the child died of signal {signal}, not of the SIGKILL sent"),
        None => bail!("the child exited ({status}) instead of being killed"),
    }
}

/// What the parent knows of one key: the state after its last acknowledged
/// operation, and the operation in flight, if any.
#[derive(Debug, Clone)]
pub struct Tracked<S, O> {
    /// The acknowledged state.
    pub acked: S,
    /// An operation sent but not acknowledged.
    pub in_flight: Option<O>,
}

/// The parent's view of a workload: per key, the acknowledged state and the one
/// operation in flight; `apply` is the workload's own transition function (the
/// one its actors run).
#[derive(Debug)]
pub struct Tracker<K, S, O> {
    keys: HashMap<K, Tracked<S, O>>,
    apply: fn(&S, &O) -> S,
    /// Acknowledged operations.
    pub acked: u64,
}

/// What [`Tracker::check_all`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// Keys checked.
    pub keys: usize,
    /// Keys that had an operation in flight.
    pub in_flight: usize,
    /// Of those, keys recovered with it applied.
    pub in_flight_applied: usize,
    /// One explanation per key in neither allowed state, or not recovered.
    pub discrepancies: Vec<String>,
}

/// How a recovered state compares with what was acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Exactly the acknowledged state.
    Acknowledged,
    /// The acknowledged state with the operation in flight applied.
    InFlightApplied,
}

impl<K, S, O> Tracker<K, S, O>
where
    K: Eq + Hash + Clone + Debug,
    S: Clone + PartialEq + Debug,
    O: Clone + Debug,
{
    /// A tracker whose keys start at `initial`.
    pub fn new(initial: impl IntoIterator<Item = (K, S)>, apply: fn(&S, &O) -> S) -> Self {
        Self {
            keys: initial
                .into_iter()
                .map(|(k, acked)| {
                    (
                        k,
                        Tracked {
                            acked,
                            in_flight: None,
                        },
                    )
                })
                .collect(),
            apply,
            acked: 0,
        }
    }

    /// `op` was sent to `key`; returns the state `key` is in once it is
    /// acknowledged.
    pub fn sent(&mut self, key: &K, op: O) -> anyhow::Result<S> {
        let apply = self.apply;
        let track = self.get(key)?;
        if track.in_flight.is_some() {
            bail!("a second operation in flight on {key:?}");
        }
        let next = apply(&track.acked, &op);
        track.in_flight = Some(op);
        Ok(next)
    }

    /// `key`'s operation in flight was acknowledged with the resulting state
    /// `reported` (checked against the transition function).
    pub fn acknowledged(&mut self, key: &K, reported: &S) -> anyhow::Result<()> {
        let apply = self.apply;
        let track = self.get(key)?;
        let Some(op) = &track.in_flight else {
            bail!("an acknowledgement on {key:?} without an operation in flight");
        };
        let next = apply(&track.acked, op);
        if next != *reported {
            bail!("{key:?}: {op:?} acknowledged {reported:?}, expected {next:?}");
        }
        track.in_flight = None;
        track.acked = next;
        self.acked += 1;
        Ok(())
    }

    fn get(&mut self, key: &K) -> anyhow::Result<&mut Tracked<S, O>> {
        self.keys
            .get_mut(key)
            .with_context(|| format!("unknown key {key:?}"))
    }

    /// The tracked view of `key`.
    pub fn tracked(&self, key: &K) -> Option<&Tracked<S, O>> {
        self.keys.get(key)
    }

    /// Every key and its tracked view, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &Tracked<S, O>)> {
        self.keys.iter()
    }

    /// `key`'s state if its operation in flight was applied (`None`: none in
    /// flight, or an unknown key).
    pub fn with_in_flight(&self, key: &K) -> Option<S> {
        let track = self.keys.get(key)?;
        track
            .in_flight
            .as_ref()
            .map(|op| (self.apply)(&track.acked, op))
    }

    /// Checks every key's recovered state (`found`); a tracked key missing
    /// from `found`, or an unknown one in it, is a discrepancy too.
    pub fn check_all<'a>(&self, found: impl IntoIterator<Item = (K, &'a S)>) -> Checked
    where
        S: 'a,
    {
        let mut checked = Checked::default();
        let mut seen = std::collections::HashSet::new();
        for (key, state) in found {
            checked.keys += 1;
            checked.in_flight += usize::from(self.with_in_flight(&key).is_some());
            match self.check(&key, state) {
                Ok(Verdict::Acknowledged) => {}
                Ok(Verdict::InFlightApplied) => checked.in_flight_applied += 1,
                Err(problem) => checked.discrepancies.push(problem),
            }
            seen.insert(key);
        }
        for key in self.keys.keys().filter(|key| !seen.contains(*key)) {
            checked
                .discrepancies
                .push(format!("{key:?}: not recovered"));
        }
        checked
    }

    /// Applies one line of the child's report (see [`Reports`]); a line that breaks the protocol is an error naming it.
    pub fn replay(&mut self, line: &str) -> anyhow::Result<()>
    where
        K: FromStr,
        S: DeserializeOwned,
        O: DeserializeOwned,
    {
        let parsed = (|| {
            let mut words = line.splitn(3, ' ');
            let (kind, key, rest) = (words.next(), words.next(), words.next());
            let key = key
                .and_then(|key| key.parse::<K>().ok())
                .context("no key")?;
            let rest = rest.context("nothing after the key")?;
            match kind {
                Some("S") => self.sent(&key, serde_json::from_str(rest)?).map(drop),
                Some("A") => self.acknowledged(&key, &serde_json::from_str(rest)?),
                _ => bail!("not a report"),
            }
        })();
        parsed.with_context(|| format!("report line {line:?}"))
    }

    /// Checks `key`'s recovered state `found`: the acknowledged state, or that
    /// state with the operation in flight; anything else is the explanation.
    pub fn check(&self, key: &K, found: &S) -> Result<Verdict, String> {
        let Some(track) = self.keys.get(key) else {
            return Err(format!("unknown key {key:?}"));
        };
        if *found == track.acked {
            return Ok(Verdict::Acknowledged);
        }
        if let Some(op) = &track.in_flight
            && (self.apply)(&track.acked, op) == *found
        {
            return Ok(Verdict::InFlightApplied);
        }
        Err(format!(
            "{key:?}: recovered {found:?}, acknowledged {:?}{}",
            track.acked,
            match &track.in_flight {
                Some(op) => format!(" (or that after the in-flight {op:?})"),
                None => String::new(),
            }
        ))
    }
}

/// The child's side of the report protocol: lines on stdout, each flushed
/// into the pipe before the caller goes on; or nothing, when disabled.
#[derive(Debug, Clone, Copy)]
pub struct Reports {
    enabled: bool,
}

impl Reports {
    /// Reports on stdout if `enabled`, else discards them.
    pub fn stdout(enabled: bool) -> Self {
        Self { enabled }
    }

    /// `op` is about to be sent to `key`.
    pub fn sent<K: Display, O: Serialize>(&self, key: &K, op: &O) -> anyhow::Result<()> {
        self.line('S', key, op)
    }

    /// `key`'s operation was acknowledged with the resulting `state`.
    pub fn acked<K: Display, S: Serialize>(&self, key: &K, state: &S) -> anyhow::Result<()> {
        self.line('A', key, state)
    }

    fn line<K: Display, T: Serialize>(&self, kind: char, key: &K, value: &T) -> anyhow::Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let json = serde_json::to_string(value).context("encoding a report")?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{kind} {key} {json}")
            .and_then(|()| out.flush())
            .context("writing a report to stdout")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(state: &i64, op: &i64) -> i64 {
        state + op
    }

    #[test]
    fn the_tracker_accepts_acknowledged_or_in_flight_and_nothing_else() {
        let mut tracker = Tracker::new([(0usize, 10i64)], add);
        assert_eq!(tracker.sent(&0, 5).unwrap(), 15);
        assert!(tracker.sent(&0, 1).is_err(), "one operation in flight");
        assert_eq!(tracker.check(&0, &10), Ok(Verdict::Acknowledged));
        assert_eq!(tracker.check(&0, &15), Ok(Verdict::InFlightApplied));
        assert!(tracker.check(&0, &11).is_err());
        assert!(
            tracker.acknowledged(&0, &14).is_err(),
            "a wrong reported state"
        );
        tracker.acknowledged(&0, &15).unwrap();
        assert_eq!(tracker.check(&0, &15), Ok(Verdict::Acknowledged));
        assert!(tracker.check(&0, &10).is_err(), "an acknowledged op lost");
        assert_eq!(tracker.acked, 1);
    }

    #[test]
    fn check_all_counts_and_explains() {
        let mut tracker = Tracker::new([(0usize, 0i64), (1, 0), (2, 0)], add);
        tracker.sent(&0, 1).unwrap();
        tracker.sent(&1, 1).unwrap();
        let checked = tracker.check_all([(0, &1), (1, &0), (3, &0)]);
        assert_eq!(
            (checked.keys, checked.in_flight, checked.in_flight_applied),
            (3, 2, 1)
        );
        assert_eq!(
            checked.discrepancies.len(),
            2,
            "{:?}",
            checked.discrepancies
        );
        assert!(
            checked
                .discrepancies
                .iter()
                .any(|d| d.contains("not recovered"))
        );
    }

    #[test]
    fn replayed_reports_follow_the_protocol() {
        let mut tracker = Tracker::new([(7usize, 1i64)], add);
        tracker.replay("S 7 4").unwrap();
        assert_eq!(tracker.with_in_flight(&7), Some(5));
        tracker.replay("A 7 5").unwrap();
        assert_eq!(tracker.tracked(&7).unwrap().acked, 5);
        for bad in ["A 7 5", "S 8 1", "S 7", "X 7 1", "S x 1", "S 7 one"] {
            assert!(tracker.replay(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_exit_is_not_a_kill() {
        let exited = Command::new("/bin/sh")
            .args(["-c", "exit 0"])
            .status()
            .unwrap();
        assert!(require_killed(exited).is_err());
        let failed = Command::new("/bin/sh")
            .args(["-c", "exit 3"])
            .status()
            .unwrap();
        assert!(require_killed(failed).is_err());
    }

    #[test]
    fn a_killed_child_is_a_kill() {
        let child =
            Child::spawn(Path::new("/bin/sh"), ["-c", "echo READY; exec sleep 30"]).unwrap();
        child.wait_for("READY", Duration::from_secs(10)).unwrap();
        child.kill().unwrap();
    }
}
