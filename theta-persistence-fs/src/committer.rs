//! The committer: one thread per store that applies writes and deletes in
//! batches, so that concurrent saves share the expensive syncs (group commit).
//!
//! # The commit of one batch (durable mode)
//!
//! The committer takes every job queued (up to a limit) and runs:
//!
//! 1. **write**: each write goes to a fresh temp file `.<uuid>.<n>.tmp` in the
//!    target's shard directory (created 0700 if missing), written completely, no
//!    sync yet;
//! 2. **data sync**: one `syncfs` on the store's file system makes every temp
//!    file's data and directory entry (and any new shard directory) durable;
//! 3. **publish**: in queue order, each write is checked against the stored
//!    sequence number and its temp file renamed over `<uuid>.snap` (a stale one is
//!    refused and its temp removed); each delete unlinks its file;
//! 4. **metadata sync**: a second `syncfs` makes the renames and unlinks durable;
//! 5. **acknowledge** every job of the batch.
//!
//! # Why a crash leaves the old or the new snapshot, never a mix or nothing
//!
//! - A file named `<uuid>.snap` is only ever created by `rename`, which replaces
//!   the name atomically: the name points at the old inode or the new one.
//! - The rename of a write is issued (step 3) only after the sync of step 2
//!   returned, so when a rename reaches the disk the new inode's data already is
//!   there. Without step 2 a file system could persist the rename before the data
//!   blocks (ext4 with `data=writeback`, XFS, btrfs all may), and a power loss
//!   would leave a zero-length or partly written snapshot under the real name.
//! - The old inode is unreachable only once the rename is durable, which implies
//!   the new data is durable: there is no moment where neither is on disk.
//! - A job is acknowledged only after step 4, so an `Ok` write survives power
//!   loss. A crash before step 4 may or may not keep the rename, and either
//!   result is a whole snapshot (old or new) of an unacknowledged write.
//! - Temp files a crash leaves behind are deleted by the next `open`, which holds
//!   the directory lock, so no live writer owns them.
//! - Check-then-rename is atomic against every other writer of the same id in
//!   this process because one thread performs all renames and deletes, in queue
//!   order; other processes are kept out by the directory lock.
//!
//! Two `syncfs` calls per batch instead of two `fsync`s per write is what makes
//! throughput grow with concurrency: while one batch syncs, the next one queues.
//! `syncfs` reports writeback errors (since Linux 5.8); any sync error poisons the
//! store, because after a failed sync the kernel may have dropped the dirty pages
//! and a retried sync could falsely succeed.
//!
//! In buffered mode steps 2 and 4 are skipped.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, OnceLock};

use theta::ActorId;
use theta::persistence::StaleSnapshot;
use theta::persistence::envelope;
use tokio::sync::oneshot;

use crate::failpoint::{Failpoints, Step};
use crate::{Durability, FsError, layout};

/// Most jobs one batch takes.
const MAX_BATCH_JOBS: usize = 1024;
/// Batch size per worker thread of the file operations, and most such threads.
const JOBS_PER_WORKER: usize = 8;
const MAX_WORKERS: usize = 8;
/// Most payload bytes one batch takes (a larger single write still goes alone).
const MAX_BATCH_BYTES: usize = 128 << 20;

pub(crate) type Reply = oneshot::Sender<Result<(), anyhow::Error>>;

pub(crate) enum Op {
    Write(Vec<u8>),
    Delete,
}

pub(crate) struct Job {
    pub(crate) id: ActorId,
    pub(crate) op: Op,
    pub(crate) reply: Reply,
}

/// State the store handle and the committer share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) snapshots: PathBuf,
    /// Set once by the first sync failure.
    pub(crate) poison: OnceLock<String>,
    pub(crate) failpoints: Failpoints,
}

impl Shared {
    pub(crate) fn check_poison(&self) -> Result<(), FsError> {
        match self.poison.get() {
            Some(cause) => Err(FsError::Poisoned {
                path: self.dir.clone(),
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }
}

pub(crate) struct Committer {
    shared: Arc<Shared>,
    durability: Durability,
    /// The `snapshots` directory, the handle `syncfs` is called on.
    snapshots_dir: File,
    /// Shard directories known to exist.
    shards: [AtomicBool; 256],
    nonce: AtomicU64,
}

/// A write whose temp file is complete.
struct Staged {
    temp: PathBuf,
    target: PathBuf,
    sequence: Option<u64>,
}

enum Action {
    Publish(Staged),
    Delete,
}

impl Committer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        durability: Durability,
        snapshots_dir: File,
        present: &[u8],
    ) -> Self {
        let mut shards: [AtomicBool; 256] = std::array::from_fn(|_| AtomicBool::new(false));
        for &byte in present {
            *shards[byte as usize].get_mut() = true;
        }
        Self {
            shared,
            durability,
            snapshots_dir,
            shards,
            nonce: AtomicU64::new(0),
        }
    }

    /// Runs until every sender is gone.
    pub(crate) fn run(self, rx: Receiver<Job>) {
        let mut batch = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut bytes = job_bytes(&first);
            batch.push(first);
            while batch.len() < MAX_BATCH_JOBS && bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(job) => {
                        bytes += job_bytes(&job);
                        batch.push(job);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            self.commit(&mut batch);
            batch.clear();
        }
    }

    fn commit(&self, batch: &mut Vec<Job>) {
        if self.shared.poison.get().is_some() {
            for job in batch.drain(..) {
                let result = self.shared.check_poison().map_err(anyhow::Error::new);
                let _ = job.reply.send(result);
            }
            return;
        }
        let durable = self.durability == Durability::Durable;

        // The file operations of a batch run on a few threads, partitioned by id:
        // the jobs of one id stay in one partition, in queue order, so the
        // check-then-rename of an id is still done by one thread at a time.
        let workers = batch.len().div_ceil(JOBS_PER_WORKER).clamp(1, MAX_WORKERS);
        let mut parts: Vec<Vec<Job>> = (0..workers).map(|_| Vec::new()).collect();
        for job in batch.drain(..) {
            let part = (job.id.as_u64_pair().1 % workers as u64) as usize;
            parts[part].push(job);
        }

        // 1. write every temp file
        let parts: Vec<Vec<(ActorId, Action, Reply)>> = parallel(parts, |jobs| {
            let mut actions = Vec::with_capacity(jobs.len());
            for job in jobs {
                let action = match job.op {
                    Op::Write(bytes) => match self.stage(job.id, &bytes) {
                        Ok(staged) => Action::Publish(staged),
                        Err(e) => {
                            let _ = job.reply.send(Err(anyhow::Error::new(e)));
                            continue;
                        }
                    },
                    Op::Delete => Action::Delete,
                };
                actions.push((job.id, action, job.reply));
            }
            actions
        });

        // 2. make the temp files' data durable before any of them is renamed
        let any_staged = parts
            .iter()
            .flatten()
            .any(|(_, action, _)| matches!(action, Action::Publish(_)));
        if durable
            && any_staged
            && let Err(e) = self.sync(Step::DataSync)
        {
            let mut replies = Vec::new();
            for (_, action, reply) in parts.into_iter().flatten() {
                if let Action::Publish(staged) = action {
                    let _ = fs::remove_file(&staged.temp);
                }
                replies.push(reply);
            }
            self.fail_all(replies, &e);
            return;
        }

        // 3. publish, in queue order per id
        let published: Vec<(Vec<Reply>, bool)> = parallel(parts, |actions| {
            let mut changed = false;
            let mut acks = Vec::with_capacity(actions.len());
            for (id, action, reply) in actions {
                let result = match action {
                    Action::Publish(staged) => self.publish(id, staged),
                    Action::Delete => self.delete(id),
                };
                match result {
                    Ok(did_change) => {
                        changed |= did_change;
                        acks.push(reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            (acks, changed)
        });
        let changed = published.iter().any(|(_, changed)| *changed);
        let acks: Vec<Reply> = published.into_iter().flat_map(|(acks, _)| acks).collect();

        // 4. make the renames and unlinks durable
        if durable
            && changed
            && let Err(e) = self.sync(Step::DirSync)
        {
            self.fail_all(acks, &e);
            return;
        }

        // 5. acknowledge
        for reply in acks {
            let _ = reply.send(Ok(()));
        }
    }

    /// Writes the temp file of one write.
    fn stage(&self, id: ActorId, bytes: &[u8]) -> Result<Staged, FsError> {
        let byte = layout::shard_byte(id);
        let shard = layout::shard_dir(&self.shared.snapshots, id);
        if !self.shards[byte as usize].load(Ordering::Acquire) {
            // The new shard's entry in `snapshots/` is made durable by the data
            // sync (syncfs covers the parent directory too).
            layout::create_dir(&shard)?;
            self.shards[byte as usize].store(true, Ordering::Release);
        }
        let (temp, mut file) = loop {
            let nonce = self.nonce.fetch_add(1, Ordering::Relaxed);
            let temp = layout::temp_path(&shard, id, nonce);
            match layout::create_file(&temp) {
                Ok(file) => break (temp, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // The shard directory vanished under us; recreate it once.
                    layout::create_dir(&shard)?;
                    let file = layout::create_file(&temp)
                        .map_err(|e| FsError::io("creating temp file", &temp, e))?;
                    break (temp, file);
                }
                Err(e) => return Err(FsError::io("creating temp file", temp, e)),
            }
        };
        let written = file
            .write_all(bytes)
            .and_then(|()| self.shared.failpoints.hit(Step::AfterTempWrite));
        drop(file);
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(FsError::io("writing temp file", temp, e));
        }
        Ok(Staged {
            temp,
            target: layout::snapshot_path(&self.shared.snapshots, id),
            sequence: envelope::sequence_of(bytes),
        })
    }

    /// Renames a staged write over its target unless the target is newer.
    fn publish(&self, id: ActorId, staged: Staged) -> Result<bool, anyhow::Error> {
        let Staged {
            temp,
            target,
            sequence,
        } = staged;
        let result = (|| {
            let stored = layout::stored_sequence(&target)
                .map_err(|e| FsError::io("reading the header of", &target, e))?;
            if let (Some(stored), Some(attempted)) = (stored, sequence)
                && attempted < stored
            {
                return Err(anyhow::Error::new(StaleSnapshot {
                    id,
                    stored,
                    attempted,
                }));
            }
            self.shared
                .failpoints
                .hit(Step::BeforeRename)
                .and_then(|()| fs::rename(&temp, &target))
                .map_err(|e| FsError::io("renaming temp file over", &target, e))?;
            Ok(true)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    fn delete(&self, id: ActorId) -> Result<bool, anyhow::Error> {
        let target = layout::snapshot_path(&self.shared.snapshots, id);
        match fs::remove_file(&target) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(anyhow::Error::new(FsError::io("removing", target, e))),
        }
    }

    /// One `syncfs` of the store's file system; a failure poisons the store.
    fn sync(&self, step: Step) -> Result<(), io::Error> {
        let result = self
            .shared
            .failpoints
            .hit(step)
            .and_then(|()| rustix::fs::syncfs(&self.snapshots_dir).map_err(io::Error::from));
        if let Err(e) = &result {
            let _ = self.shared.poison.set(format!(
                "syncfs on {} failed: {e}",
                self.shared.snapshots.display()
            ));
        }
        result
    }

    fn fail_all(&self, replies: Vec<Reply>, e: &io::Error) {
        for reply in replies {
            let _ = reply.send(Err(anyhow::Error::new(FsError::io(
                "syncing the file system of",
                &self.shared.snapshots,
                clone_io(e),
            ))));
        }
    }
}

/// Runs `f` on each part, the first on this thread and the others on scoped
/// threads (file operations block; overlapping them keeps the disk busy).
fn parallel<T: Send, R: Send>(parts: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let mut parts = parts.into_iter();
    let Some(first) = parts.next() else {
        return Vec::new();
    };
    std::thread::scope(|scope| {
        let f = &f;
        let others: Vec<_> = parts.map(|part| scope.spawn(move || f(part))).collect();
        let mut results = vec![f(first)];
        for other in others {
            match other.join() {
                Ok(result) => results.push(result),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        results
    })
}

fn job_bytes(job: &Job) -> usize {
    match &job.op {
        Op::Write(bytes) => bytes.len(),
        Op::Delete => 0,
    }
}

fn clone_io(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}
