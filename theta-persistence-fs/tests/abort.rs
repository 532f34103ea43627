//! A crash at each failpoint step leaves the old snapshot or the new one, whole,
//! and what the `Step` docs say (feature `failpoints`).
//!
//! A `harness = false` test: `main` runs every step as a child process (this
//! same binary, picked by the `THETA_FS_ABORT_STEP` environment variable) that
//! aborts itself at the step, then reopens the store the child left and checks
//! it. The child must die of `SIGABRT`: any other end (a panic, an exit)
//! means the failpoint never fired, and fails the test.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use theta::ActorId;
use theta::persistence::{PersistentStorage, envelope};
use theta_persistence_fs::{Action, FsStorage, Step};

const CHILD_DIR: &str = "THETA_FS_ABORT_DIR";
const CHILD_STEP: &str = "THETA_FS_ABORT_STEP";
/// `SIGABRT` on Linux, what `std::process::abort` raises.
const SIGABRT: i32 = 6;
const TYPE: uuid::Uuid = uuid::uuid!("6d1b7c9e-0000-4000-8000-00000000ab0d");

/// Every step, and whether the write of `new` is acknowledged before the abort
/// (the checkpoint and rotation steps) or in flight when it comes (the journal
/// steps: the batch is in the page cache, which a process crash keeps).
const STEPS: [(Step, bool); 7] = [
    (Step::JournalWrite, false),
    (Step::JournalSync, false),
    (Step::AfterTempWrite, true),
    (Step::BeforeRename, true),
    (Step::CheckpointSync, true),
    (Step::SegmentDelete, true),
    (Step::SegmentCreate, true),
];

fn env(sequence: u64, payload: &[u8]) -> Vec<u8> {
    envelope::seal(TYPE, 0, sequence, payload)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn t<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .expect("timed out")
}

/// The child: writes `old` and checkpoints it, then aborts the process at the
/// step, in the middle of writing `new` (journal steps) or of checkpointing the
/// acknowledged `new` (checkpoint and rotation steps). Never returns.
fn child(dir: &Path, step: usize) -> ! {
    let (step, acknowledged) = STEPS[step];
    runtime().block_on(async {
        let store = FsStorage::open(dir).expect("open");
        let id = ActorId::from_u128(1);
        t(store.try_write(id, env(1, b"old"))).await.expect("old");
        t(store.checkpoint()).await.expect("checkpoint of old");
        if acknowledged {
            t(store.try_write(id, env(2, b"new"))).await.expect("new");
            store.fail_next(step, Action::Abort);
            let _ = t(store.checkpoint()).await;
        } else {
            store.fail_next(step, Action::Abort);
            let _ = t(store.try_write(id, env(2, b"new"))).await;
        }
    });
    eprintln!("abort child: the failpoint at {step:?} did not fire");
    std::process::exit(3)
}

/// Runs the child for step `i` and checks what it left.
fn check(i: usize) -> Result<(), String> {
    let (step, _) = STEPS[i];
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let status = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .env(CHILD_DIR, dir.path())
        .env(CHILD_STEP, i.to_string())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("{step:?}: running the child: {e}"))?;
    if status.signal() != Some(SIGABRT) {
        return Err(format!(
            "{step:?}: the child must die of SIGABRT at the failpoint, it ended with {status}"
        ));
    }
    let id = ActorId::from_u128(1);
    let snapshots = dir.path().join("snapshots");
    runtime().block_on(async {
        let store = FsStorage::open(dir.path()).map_err(|e| format!("{step:?}: reopen: {e}"))?;
        // Every abort comes after `new` reached the journal in the page cache:
        // the replay brings it back whole. At the checkpoint steps it was
        // acknowledged, so it must.
        let read = t(store.try_read(id))
            .await
            .map_err(|e| format!("{step:?}: read: {e:#}"))?;
        if read != env(2, b"new") {
            return Err(format!(
                "{step:?}: read {} bytes that are not `new`",
                read.len()
            ));
        }
        t(store.try_close())
            .await
            .map_err(|e| format!("{step:?}: close: {e:#}"))
    })?;
    // The open removed the temp files the abort left (looked for once the
    // store is closed: its background checkpoint writes temp files of its own).
    let shards = std::fs::read_dir(&snapshots)
        .map_err(|e| format!("{step:?}: {}: {e}", snapshots.display()))?;
    for shard in shards.flatten() {
        for file in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if file.file_name().to_string_lossy().ends_with(".tmp") {
                return Err(format!(
                    "{step:?}: temp file {} left",
                    file.path().display()
                ));
            }
        }
    }
    // The orderly close checkpointed it: the file holds `new`, and the journal
    // is one segment with nothing in it.
    let file = snapshots
        .join(format!(
            "{:02x}",
            id.as_bytes().iter().fold(0u8, |a, b| a ^ b)
        ))
        .join(format!("{id}.snap"));
    if std::fs::read(&file).map_err(|e| format!("{step:?}: {}: {e}", file.display()))?
        != env(2, b"new")
    {
        return Err(format!(
            "{step:?}: the close did not write `new` to its file"
        ));
    }
    let segments: Vec<u64> = std::fs::read_dir(dir.path().join("journal"))
        .map_err(|e| e.to_string())?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(u64::MAX))
        .collect();
    if segments != [60] {
        return Err(format!(
            "{step:?}: after the close the journal should be one empty segment, it is {segments:?} (bytes)"
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    if let (Ok(dir), Ok(step)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_STEP)) {
        child(Path::new(&dir), step.parse().expect("step index"));
    }
    let mut failed = 0;
    for (i, (step, _)) in STEPS.iter().enumerate() {
        match check(i) {
            Ok(()) => println!("abort at {step:?} ... ok"),
            Err(e) => {
                failed += 1;
                println!("abort at {step:?} ... FAILED: {e}");
            }
        }
    }
    println!(
        "abort: {} steps, {} passed, {failed} failed",
        STEPS.len(),
        STEPS.len() - failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
