//! The committer and the checkpointer: the two threads of a store.
//!
//! # A write
//!
//! The **committer** takes every job queued (up to a limit) as one batch:
//!
//! 1. **check**: each write is checked, in queue order, against the newest
//!    sequence number of its id (the batch's own earlier writes, then the
//!    not-yet-checkpointed writes in memory, then the snapshot file's header); a
//!    stale one is refused;
//! 2. **append**: the batch's records go to the journal in one write;
//! 3. **sync**: one `fdatasync` of the journal segment (durable mode only);
//! 4. **publish**: the writes become visible to reads, from memory;
//! 5. **acknowledge** every job of the batch.
//!
//! One `fdatasync` per batch, instead of a file, a rename and their syncs per
//! write, is what makes durable throughput grow with the number of actors saving
//! at once.
//!
//! # A checkpoint
//!
//! When the journal segment reaches the store's journal limit (or on
//! [`FsStorage::checkpoint`](crate::FsStorage::checkpoint), and when the store
//! closes) the committer starts a new segment and the **checkpointer** brings the
//! snapshot files up to date in the background:
//!
//! 1. it copies the list of writes held in memory;
//! 2. writes each to a fresh temp file `.<uuid>.<n>.tmp` in its shard directory
//!    and renames it over `<uuid>.snap` (a delete unlinks the file), on a few
//!    threads;
//! 3. one `syncfs` makes all of that durable;
//! 4. it forgets the writes it wrote (those not overwritten meanwhile), then
//!    removes the sealed journal segments and syncs the journal directory.
//!
//! # Why nothing acknowledged is lost, and nothing older comes back
//!
//! - A write is acknowledged only once its journal record is synced, and a
//!   record's segment is removed only after a checkpoint made a file holding that
//!   write, or a newer one, durable (step 3 before step 4).
//! - Until then, a crash is repaired by the next `open`: it replays every
//!   segment, oldest first, keeping the last record of each id, writes those
//!   files, syncs and removes the segments, exactly like a checkpoint. Replaying
//!   a record whose file was already written writes the same bytes again.
//! - A file the checkpointer was renaming when the power went out may be torn
//!   (a file system may persist a rename before the data), but then its record
//!   is still in the journal and the replay rewrites it.
//! - The removal of a checkpoint's segments is synced before the next checkpoint
//!   starts, so an old segment can never reappear after a newer checkpoint and be
//!   replayed over newer files.
//! - Stale checks, appends and publication happen on the committer thread alone,
//!   in queue order; other processes are kept out by the directory lock.
//! - Reads look at the writes in memory first, so they see every acknowledged
//!   write whether or not a checkpoint has written its file yet.
//!
//! Any failed sync (`fdatasync`, `syncfs`, a directory `fsync`) poisons the
//! store: after a failed sync the kernel may have dropped the dirty pages, and a
//! retried sync could falsely succeed.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;

use theta::ActorId;
use theta::persistence::StaleSnapshot;
use theta::persistence::envelope::{self, Stamp};
use tokio::sync::oneshot;

use crate::failpoint::{Failpoints, Step};
use crate::journal::{self, AppendError, CreateError, Segment};
use crate::{Durability, FsError, layout};

/// Most jobs one batch takes.
const MAX_BATCH_JOBS: usize = 1024;
/// Most snapshot bytes one batch takes (a larger single write still goes alone).
const MAX_BATCH_BYTES: usize = 128 << 20;
/// The journal buffer is released after a batch larger than this.
const KEEP_BUFFER_BYTES: usize = 16 << 20;
/// While a checkpoint runs, the journal may grow to this many times the limit
/// before writes wait for the checkpoint to finish.
const HARD_LIMIT_FACTOR: u64 = 4;
/// Files per checkpoint thread, and most checkpoint threads.
const FILES_PER_WORKER: usize = 8;
const MAX_WORKERS: usize = 8;

/// Where the answer to a write or a delete goes.
pub(crate) type Reply = oneshot::Sender<Result<(), anyhow::Error>>;
/// Where the answer to a checkpoint request goes.
pub(crate) type CheckpointReply = oneshot::Sender<Result<(), FsError>>;

pub(crate) enum Job {
    Write {
        id: ActorId,
        bytes: Vec<u8>,
        reply: Reply,
    },
    Delete {
        id: ActorId,
        reply: Reply,
    },
    Checkpoint {
        reply: CheckpointReply,
    },
}

/// A write or delete of a batch that passed its checks, waiting for the append.
struct Accepted {
    id: ActorId,
    /// `None` for a delete.
    snapshot: Option<Vec<u8>>,
    /// The snapshot's envelope stamp, if it has one.
    stamp: Option<Stamp>,
    reply: Reply,
}

/// An acknowledged write that a checkpoint has not written to its file yet.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Changes whenever the id is written again (a counter of the committer).
    version: u64,
    /// `None` for a delete.
    pub(crate) snapshot: Option<Arc<Vec<u8>>>,
    /// The snapshot's envelope stamp, if it has one.
    stamp: Option<Stamp>,
}

#[derive(Debug, Default)]
struct Pending {
    entries: HashMap<ActorId, Entry>,
}

/// State the store handle, the committer and the checkpointer share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) snapshots: PathBuf,
    pub(crate) journal: PathBuf,
    /// Set once by the first sync failure.
    pub(crate) poison: OnceLock<String>,
    pub(crate) failpoints: Failpoints,
    pending: Mutex<Pending>,
    /// Whether a checkpoint is running; `idle` is signalled when one ends.
    checkpointing: Mutex<bool>,
    idle: Condvar,
}

impl Shared {
    pub(crate) fn new(dir: PathBuf, snapshots: PathBuf, journal: PathBuf) -> Self {
        Self {
            dir,
            snapshots,
            journal,
            poison: OnceLock::new(),
            failpoints: Default::default(),
            pending: Mutex::default(),
            checkpointing: Mutex::new(false),
            idle: Condvar::new(),
        }
    }

    pub(crate) fn check_poison(&self) -> Result<(), FsError> {
        match self.poison.get() {
            Some(cause) => Err(FsError::Poisoned {
                path: self.dir.clone(),
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    fn poison(&self, cause: String) {
        let _ = self.poison.set(cause);
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        // The lock is never held across code that can panic midway through an
        // update, so a poisoned lock still guards consistent data.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The acknowledged write of `id` not yet in its file: `Some(None)` for a
    /// delete, `None` when the file is up to date.
    pub(crate) fn pending_snapshot(&self, id: ActorId) -> Option<Option<Arc<Vec<u8>>>> {
        self.pending()
            .entries
            .get(&id)
            .map(|entry| entry.snapshot.clone())
    }

    /// The ids written and the ids deleted since their files were last updated.
    pub(crate) fn pending_ids(&self) -> (Vec<ActorId>, HashSet<ActorId>) {
        let pending = self.pending();
        let mut written = Vec::new();
        let mut deleted = HashSet::new();
        for (id, entry) in &pending.entries {
            if entry.snapshot.is_some() {
                written.push(*id);
            } else {
                deleted.insert(*id);
            }
        }
        (written, deleted)
    }

    fn set_checkpointing(&self, running: bool) {
        *self.checkpointing.lock().unwrap_or_else(|e| e.into_inner()) = running;
        if !running {
            self.idle.notify_all();
        }
    }

    fn is_checkpointing(&self) -> bool {
        *self.checkpointing.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait_checkpoint_idle(&self) {
        let mut running = self.checkpointing.lock().unwrap_or_else(|e| e.into_inner());
        while *running {
            running = self.idle.wait(running).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The snapshot files: writing them (without syncs) and syncing them.
pub(crate) struct Files {
    shared: Arc<Shared>,
    /// The `snapshots` directory, the handle `syncfs` is called on.
    snapshots_dir: File,
    /// Shard directories known to exist.
    shards: [AtomicBool; 256],
    nonce: AtomicU64,
}

impl Files {
    pub(crate) fn new(shared: Arc<Shared>, snapshots_dir: File, present: &[u8]) -> Self {
        let mut shards: [AtomicBool; 256] = std::array::from_fn(|_| AtomicBool::new(false));
        for &byte in present {
            *shards[byte as usize].get_mut() = true;
        }
        Self {
            shared,
            snapshots_dir,
            shards,
            nonce: AtomicU64::new(0),
        }
    }

    /// Writes (or, for `None`, removes) the file of every entry, on a few
    /// threads; no syncs. Stops at the first error.
    pub(crate) fn write_all(
        &self,
        entries: Vec<(ActorId, Option<Arc<Vec<u8>>>)>,
    ) -> Result<(), FsError> {
        let workers = entries
            .len()
            .div_ceil(FILES_PER_WORKER)
            .clamp(1, MAX_WORKERS);
        let mut parts: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
        for (i, entry) in entries.into_iter().enumerate() {
            parts[i % workers].push(entry);
        }
        parallel(parts, |part| {
            for (id, snapshot) in part {
                match snapshot {
                    Some(bytes) => self.write(id, &bytes)?,
                    None => self.remove(id)?,
                }
            }
            Ok(())
        })
        .into_iter()
        .collect()
    }

    /// Temp file, written whole, renamed over `<uuid>.snap`.
    fn write(&self, id: ActorId, bytes: &[u8]) -> Result<(), FsError> {
        let byte = layout::shard_byte(id);
        let shard = layout::shard_dir(&self.shared.snapshots, id);
        if !self.shards[byte as usize].load(Ordering::Acquire) {
            // The new shard's entry in `snapshots/` is made durable by the
            // checkpoint's `syncfs`.
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
        let target = layout::snapshot_path(&self.shared.snapshots, id);
        let renamed = self
            .shared
            .failpoints
            .hit(Step::BeforeRename)
            .and_then(|()| fs::rename(&temp, &target));
        if let Err(e) = renamed {
            let _ = fs::remove_file(&temp);
            return Err(FsError::io("renaming temp file over", target, e));
        }
        Ok(())
    }

    fn remove(&self, id: ActorId) -> Result<(), FsError> {
        let target = layout::snapshot_path(&self.shared.snapshots, id);
        match fs::remove_file(&target) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(FsError::io("removing", target, e)),
        }
    }

    /// One `syncfs` of the store's file system; a failure poisons the store.
    pub(crate) fn sync(&self) -> Result<(), FsError> {
        let result = self
            .shared
            .failpoints
            .hit(Step::CheckpointSync)
            .and_then(|()| rustix::fs::syncfs(&self.snapshots_dir).map_err(io::Error::from));
        result.map_err(|e| {
            self.shared.poison(format!(
                "syncfs on {} failed: {e}",
                self.shared.snapshots.display()
            ));
            FsError::io("syncing the file system of", &self.shared.snapshots, e)
        })
    }

    /// Removes the journal segments up to `sealed_through` and syncs the
    /// journal directory (a failed sync poisons the store).
    pub(crate) fn remove_segments(&self, sealed_through: u64) -> Result<(), FsError> {
        let journal = &self.shared.journal;
        self.shared
            .failpoints
            .hit(Step::SegmentDelete)
            .map_err(|e| FsError::io("removing journal segments in", journal, e))?;
        let mut removed = false;
        for (generation, path) in journal::segments(journal)? {
            if generation > sealed_through {
                break;
            }
            match fs::remove_file(&path) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(FsError::io("removing journal segment", path, e)),
            }
        }
        if removed && let Err(e) = layout::sync_dir(journal) {
            self.shared.poison(e.to_string());
            return Err(e);
        }
        Ok(())
    }
}

/// A request to the checkpointer.
struct Checkpoint {
    /// The newest segment that no write will go to any more.
    sealed_through: u64,
    replies: Vec<CheckpointReply>,
}

/// The checkpointer thread: see the module docs.
struct Checkpointer {
    shared: Arc<Shared>,
    files: Arc<Files>,
}

impl Checkpointer {
    fn run(self, rx: Receiver<Checkpoint>) {
        /// Marks the checkpointer idle however a checkpoint ends, a panic
        /// included, so that the committer never waits for a dead thread.
        struct Idle<'a>(&'a Shared);
        impl Drop for Idle<'_> {
            fn drop(&mut self) {
                self.0.set_checkpointing(false);
            }
        }
        while let Ok(request) = rx.recv() {
            let idle = Idle(&self.shared);
            let result = self.checkpoint(request.sealed_through);
            drop(idle);
            if let Err(e) = &result
                && request.replies.is_empty()
            {
                // Nobody asked for this one: say it somewhere. Every write
                // stays in the journal (and in memory) until a checkpoint
                // succeeds; the next one retries them all.
                tracing::warn!(
                    store = %self.shared.dir.display(),
                    error = %e,
                    "background checkpoint failed; the journal keeps every write"
                );
            }
            reply_all(request.replies, &result);
        }
    }

    fn checkpoint(&self, sealed_through: u64) -> Result<(), FsError> {
        self.shared.check_poison()?;
        let taken: Vec<(ActorId, Entry)> = self
            .shared
            .pending()
            .entries
            .iter()
            .map(|(id, entry)| (*id, entry.clone()))
            .collect();
        if !taken.is_empty() {
            let writes = taken
                .iter()
                .map(|(id, entry)| (*id, entry.snapshot.clone()))
                .collect();
            self.files.write_all(writes)?;
            self.files.sync()?;
            let mut pending = self.shared.pending();
            for (id, entry) in &taken {
                if pending
                    .entries
                    .get(id)
                    .is_some_and(|now| now.version == entry.version)
                {
                    pending.entries.remove(id);
                }
            }
        }
        self.files.remove_segments(sealed_through)
    }
}

/// The committer thread: see the module docs.
pub(crate) struct Committer {
    shared: Arc<Shared>,
    durability: Durability,
    journal_limit: u64,
    segment: Segment,
    /// The generation the next segment gets.
    next_generation: u64,
    /// Counts writes, for [`Entry::version`].
    version: u64,
    buf: Vec<u8>,
    checkpoints: Option<mpsc::Sender<Checkpoint>>,
    checkpointer: Option<JoinHandle<()>>,
}

impl Committer {
    /// Starts the checkpointer thread; the committer runs on the caller's
    /// thread of choice (see [`Committer::run`]).
    pub(crate) fn new(
        shared: Arc<Shared>,
        files: Arc<Files>,
        durability: Durability,
        journal_limit: u64,
        segment: Segment,
    ) -> Result<Self, FsError> {
        let (tx, rx) = mpsc::channel();
        let checkpointer = Checkpointer {
            shared: shared.clone(),
            files,
        };
        let handle = std::thread::Builder::new()
            .name("theta-fs-checkpoint".into())
            .spawn(move || checkpointer.run(rx))
            .map_err(|e| FsError::io("starting the checkpoint thread for", &shared.dir, e))?;
        Ok(Self {
            next_generation: segment.generation() + 1,
            shared,
            durability,
            journal_limit,
            segment,
            version: 0,
            buf: Vec::new(),
            checkpoints: Some(tx),
            checkpointer: Some(handle),
        })
    }

    /// Runs until every sender is gone, then checkpoints everything and stops
    /// the checkpointer.
    pub(crate) fn run(mut self, rx: Receiver<Job>) {
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
            let requests = self.commit(&mut batch);
            self.maybe_checkpoint(requests);
        }
        self.close();
    }

    /// Commits the writes and deletes of `batch`; returns its checkpoint
    /// requests.
    fn commit(&mut self, batch: &mut Vec<Job>) -> Vec<CheckpointReply> {
        let mut requests = Vec::new();
        let mut accepted: Vec<Accepted> = Vec::new();
        // The sequence number each id has after the batch's accepted jobs so far.
        let mut batch_sequences: HashMap<ActorId, Option<Stamp>> = HashMap::new();
        journal::start_batch(&mut self.buf);
        for job in batch.drain(..) {
            let (id, snapshot, reply) = match job {
                Job::Checkpoint { reply } => {
                    requests.push(reply);
                    continue;
                }
                Job::Write { id, bytes, reply } => (id, Some(bytes), reply),
                Job::Delete { id, reply } => (id, None, reply),
            };
            if let Err(e) = self.shared.check_poison() {
                let _ = reply.send(Err(with_id(e, id, snapshot.is_some())));
                continue;
            }
            let attempted = snapshot.as_deref().and_then(envelope::stamp_of);
            if let Some(bytes) = &snapshot {
                if !journal::fits(bytes.len()) {
                    let error = FsError::TooLarge {
                        id,
                        len: bytes.len() as u64,
                        limit: envelope::MAX_ENVELOPE_LEN as u64,
                    };
                    let _ = reply.send(Err(error.into()));
                    continue;
                }
                let stored = match batch_sequences.get(&id) {
                    Some(sequence) => Ok(*sequence),
                    None => self.stored_stamp(id),
                };
                match stored {
                    Ok(Some(stored)) if attempted.is_some_and(|attempted| attempted <= stored) => {
                        let stale = StaleSnapshot {
                            id,
                            stored: stored.sequence,
                            attempted: attempted.map_or(0, |a| a.sequence),
                        };
                        let _ = reply.send(Err(stale.into()));
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                        continue;
                    }
                }
            }
            journal::encode(&mut self.buf, id, snapshot.as_deref());
            batch_sequences.insert(id, attempted);
            accepted.push(Accepted {
                id,
                snapshot,
                stamp: attempted,
                reply,
            });
        }
        if !accepted.is_empty() {
            self.append(accepted);
        }
        if self.buf.capacity() > KEEP_BUFFER_BYTES {
            self.buf = Vec::new();
        }
        requests
    }

    /// The newest stamp of `id` before this batch.
    fn stored_stamp(&self, id: ActorId) -> Result<Option<Stamp>, FsError> {
        if let Some(entry) = self.shared.pending().entries.get(&id) {
            return Ok(entry.stamp);
        }
        let path = layout::snapshot_path(&self.shared.snapshots, id);
        layout::stored_stamp(&path).map_err(|e| FsError::io("reading the header of", path, e))
    }

    /// Steps 2 to 5 of a batch: append, sync, publish, acknowledge.
    fn append(&mut self, accepted: Vec<Accepted>) {
        let failpoints = &self.shared.failpoints;
        let good_len = self.segment.len();
        let appended = self
            .segment
            .append(&mut self.buf, || failpoints.hit(Step::JournalWrite));
        let failure = match appended {
            Ok(()) => None,
            Err(AppendError::Undone(e)) => Some(e),
            Err(AppendError::Stuck { error, undo }) => {
                self.shared.poison(format!(
                    "cutting a failed append off journal segment {} failed: {undo}",
                    self.segment.path().display()
                ));
                Some(error)
            }
        };
        if let Some(e) = failure {
            let path = self.segment.path().to_path_buf();
            fail_all(accepted, "appending to journal segment", &path, &e);
            return;
        }
        if self.durability == Durability::Durable {
            let synced = failpoints
                .hit(Step::JournalSync)
                .and_then(|()| self.segment.sync());
            if let Err(e) = synced {
                let path = self.segment.path().to_path_buf();
                self.shared
                    .poison(format!("fdatasync of {} failed: {e}", path.display()));
                // Best effort: the store is poisoned either way, and a refused
                // write that comes back at the next open is still a whole one.
                let _ = self.segment.truncate(good_len);
                fail_all(accepted, "syncing journal segment", &path, &e);
                return;
            }
        }
        let mut replies = Vec::with_capacity(accepted.len());
        {
            let mut pending = self.shared.pending();
            for Accepted {
                id,
                snapshot,
                stamp,
                reply,
            } in accepted
            {
                self.version += 1;
                let entry = Entry {
                    version: self.version,
                    snapshot: snapshot.map(Arc::new),
                    stamp,
                };
                pending.entries.insert(id, entry);
                replies.push(reply);
            }
        }
        for reply in replies {
            let _ = reply.send(Ok(()));
        }
    }

    /// Starts a checkpoint when one was asked for, or when the journal segment
    /// has reached its limit (waiting for a running checkpoint only if asked, or
    /// if the journal is far over its limit).
    fn maybe_checkpoint(&mut self, requests: Vec<CheckpointReply>) {
        let full = self.segment.len() >= self.journal_limit;
        if requests.is_empty() && !full {
            return;
        }
        if self.shared.is_checkpointing() {
            let far_over =
                self.segment.len() >= self.journal_limit.saturating_mul(HARD_LIMIT_FACTOR);
            if requests.is_empty() && !far_over {
                return;
            }
            self.shared.wait_checkpoint_idle();
        }
        let sealed_through = match self.seal() {
            Ok(generation) => generation,
            Err(e) => {
                reply_all(requests, &Err(e));
                return;
            }
        };
        self.start_checkpoint(sealed_through, requests);
    }

    /// Syncs the current segment and starts the next one; returns the sealed
    /// segment's generation.
    fn seal(&mut self) -> Result<u64, FsError> {
        self.shared.check_poison()?;
        let sealed = self.segment.generation();
        // Durable mode synced every batch already; buffered mode did not, and
        // a segment must be whole on disk before a newer one exists (replay
        // treats damage to any but the newest segment as corruption).
        if let Err(e) = self.segment.sync() {
            let path = self.segment.path().to_path_buf();
            self.shared
                .poison(format!("fdatasync of {} failed: {e}", path.display()));
            return Err(FsError::io("syncing journal segment", path, e));
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let synced = self.durability == Durability::Durable;
        match Segment::create(&self.shared.journal, generation, synced) {
            Ok(segment) => {
                self.segment = segment;
                Ok(sealed)
            }
            Err(CreateError::Plain(e)) => Err(e),
            Err(CreateError::Sync(e)) => {
                self.shared.poison(e.to_string());
                Err(e)
            }
        }
    }

    fn start_checkpoint(&mut self, sealed_through: u64, replies: Vec<CheckpointReply>) {
        self.shared.set_checkpointing(true);
        let request = Checkpoint {
            sealed_through,
            replies,
        };
        if let Some(tx) = &self.checkpoints
            && let Err(mpsc::SendError(request)) = tx.send(request)
        {
            self.shared.set_checkpointing(false);
            let stopped = Err(FsError::CommitterStopped {
                path: self.shared.dir.clone(),
            });
            reply_all(request.replies, &stopped);
        }
    }

    /// The orderly close: a last checkpoint of everything, the journal included,
    /// then the checkpointer stops.
    fn close(&mut self) {
        self.shared.wait_checkpoint_idle();
        if self.shared.check_poison().is_ok() && self.segment.sync().is_ok() {
            self.start_checkpoint(self.segment.generation(), Vec::new());
        }
        self.checkpoints = None;
        if let Some(handle) = self.checkpointer.take() {
            let _ = handle.join();
        }
    }
}

fn reply_all(replies: Vec<CheckpointReply>, result: &Result<(), FsError>) {
    for reply in replies {
        let _ = reply.send(match result {
            Ok(()) => Ok(()),
            Err(e) => Err(e.duplicate()),
        });
    }
}

fn fail_all(accepted: Vec<Accepted>, op: &'static str, path: &std::path::Path, e: &io::Error) {
    for Accepted {
        id,
        snapshot,
        reply,
        ..
    } in accepted
    {
        let error = FsError::io(op, path, clone_io(e));
        let _ = reply.send(Err(with_id(error, id, snapshot.is_some())));
    }
}

/// `error`, with the actor it failed for (it still downcasts to [`FsError`]).
pub(crate) fn with_id(error: FsError, id: ActorId, write: bool) -> anyhow::Error {
    let what = if write { "writing" } else { "deleting" };
    anyhow::Error::new(error).context(format!("{what} the snapshot of actor {id}"))
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
    match job {
        Job::Write { bytes, .. } => bytes.len(),
        Job::Delete { .. } | Job::Checkpoint { .. } => 0,
    }
}

pub(crate) fn clone_io(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}
