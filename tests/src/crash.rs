//! Crash tests: a child process that reports what was acknowledged, a parent that
//! SIGKILLs it and checks what recovery sees.
//!
//! - [`Child`] runs the child (usually the same binary with a flag), collects its
//!   stdout lines as they come, and kills it with SIGKILL, refusing a child that
//!   exited on its own (a kill that never happened proves nothing).
//! - [`Tracker`] is the parent's view of a workload whose each key has at most
//!   one operation in flight: after a kill, a key's recovered state must be its
//!   last acknowledged state, or that state with the operation in flight applied.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::hash::Hash;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

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
        let stdout = child.stdout.take().context("the child has no stdout pipe")?;
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

/// How a recovered state compares with what was acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Exactly the acknowledged state.
    Acknowledged,
    /// The acknowledged state with the operation in flight applied.
    InFlightApplied,
}

impl<K: Eq + Hash + Clone + std::fmt::Debug, S: Clone + PartialEq + std::fmt::Debug, O: Clone + std::fmt::Debug>
    Tracker<K, S, O>
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

    /// `op` was sent to `key`.
    pub fn sent(&mut self, key: &K, op: O) -> anyhow::Result<()> {
        let track = self.get(key)?;
        if track.in_flight.is_some() {
            bail!("a second operation in flight on {key:?}");
        }
        track.in_flight = Some(op);
        Ok(())
    }

    /// `key`'s operation in flight was acknowledged with the resulting state
    /// `reported` (checked against the transition function).
    pub fn acknowledged(&mut self, key: &K, reported: &S) -> anyhow::Result<()> {
        let apply = self.apply;
        let track = self.get(key)?;
        let Some(op) = track.in_flight.take() else {
            bail!("an acknowledgement on {key:?} without an operation in flight");
        };
        let next = apply(&track.acked, &op);
        if next != *reported {
            bail!("{key:?}: {op:?} acknowledged {reported:?}, expected {next:?}");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn add(state: &i64, op: &i64) -> i64 {
        state + op
    }

    #[test]
    fn the_tracker_accepts_acknowledged_or_in_flight_and_nothing_else() {
        let mut tracker = Tracker::new([(0usize, 10i64)], add);
        tracker.sent(&0, 5).unwrap();
        assert!(tracker.sent(&0, 1).is_err(), "one operation in flight");
        assert_eq!(tracker.check(&0, &10), Ok(Verdict::Acknowledged));
        assert_eq!(tracker.check(&0, &15), Ok(Verdict::InFlightApplied));
        assert!(tracker.check(&0, &11).is_err());
        assert!(tracker.acknowledged(&0, &14).is_err(), "a wrong reported state");
    }

    #[test]
    fn an_exit_is_not_a_kill() {
        let exited = Command::new("/bin/sh").args(["-c", "exit 0"]).status().unwrap();
        assert!(require_killed(exited).is_err());
        let failed = Command::new("/bin/sh").args(["-c", "exit 3"]).status().unwrap();
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
