//! The committer thread: the one place where the store changes. Writes,
//! deletes, ownership claims and releases, checkpoint requests and the close
//! all go through its queue, and it handles them in queue order, so the write
//! rule, the claims and the journal always agree.
//!
//! It takes every job queued (up to a limit) as one batch; the steps of a
//! batch are described in `ARCHITECTURE.md` ("The write path").

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::thread::JoinHandle;

use theta::ActorId;
use theta::persistence::envelope::{Header, Stamp};
use theta::persistence::{ClaimMode, Durability, OwnerId};
use tokio::sync::oneshot;

use crate::checkpoint::{self, Checkpointer, Request};
use crate::dir::Lock;
use crate::error::FsError;
use crate::failpoint::Step;
use crate::journal::{self, AppendError, Segment};
use crate::state::Shared;

/// Most jobs one batch takes.
const MAX_BATCH_JOBS: usize = 1024;
/// Most snapshot bytes one batch takes (a larger single write still goes alone).
const MAX_BATCH_BYTES: usize = 128 << 20;
/// The journal buffer is released after a batch larger than this.
const KEEP_BUFFER_BYTES: usize = 16 << 20;
/// While a checkpoint runs, the journal may grow to this many times the limit
/// before writes wait for the checkpoint to finish.
const HARD_LIMIT_FACTOR: u64 = 4;

/// Where the answer to a write or a delete goes.
pub(crate) type Reply = oneshot::Sender<Result<(), anyhow::Error>>;
/// Where the epoch of a granted claim goes.
pub(crate) type ClaimReply = oneshot::Sender<Result<u64, anyhow::Error>>;

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
    Claim {
        id: ActorId,
        owner: OwnerId,
        mode: ClaimMode,
        reply: ClaimReply,
    },
    Checkpoint {
        reply: checkpoint::Reply,
    },
    Close {
        reply: checkpoint::Reply,
    },
    /// Answered once every job queued before it is handled, the rotation
    /// after them included, and no checkpoint runs (test-only, feature `sim`:
    /// `FsStorage::settle`).
    #[cfg(feature = "sim")]
    Barrier {
        reply: oneshot::Sender<()>,
    },
}

/// A write or delete of a batch that passed its checks, waiting for the append.
struct Accepted {
    id: ActorId,
    change: Change,
    reply: Reply,
}

enum Change {
    Write {
        bytes: Vec<u8>,
        actor_type: uuid::Uuid,
        stamp: Stamp,
    },
    /// A delete of a stored snapshot, of this stamp (`None`: not an envelope).
    Delete { deleted: Option<Stamp> },
}

/// What the batch's accepted jobs so far did to one id.
#[derive(Clone, Copy)]
struct Seen {
    /// The stamp a later write must be newer than: the last written, or the
    /// last deleted one.
    last: Option<Stamp>,
    /// Whether a snapshot is stored after them.
    stored: bool,
}

/// The committer thread: see the module docs.
pub(crate) struct Committer {
    shared: Arc<Shared>,
    durability: Durability,
    journal_limit: u64,
    segment: Segment,
    /// After a rotation of a full segment failed: the length the segment must
    /// reach before the next automatic attempt (a full disk is not retried,
    /// and logged, after every batch).
    retry_rotation_at: Option<u64>,
    buf: Vec<u8>,
    /// Holds the directory's `flock`; dropped (unlocking) at the close.
    lock: Option<Lock>,
    checkpoints: Option<mpsc::Sender<Request>>,
    checkpointer: Option<JoinHandle<()>>,
    /// Barriers of the batch being handled (feature `sim`).
    #[cfg(feature = "sim")]
    barriers: Vec<oneshot::Sender<()>>,
}

impl Committer {
    /// Starts the checkpointer thread, and a first checkpoint through segment
    /// `replayed` if the open replayed segments; the committer runs on the
    /// caller's thread of choice (see [`Committer::run`]).
    pub(crate) fn new(
        shared: Arc<Shared>,
        durability: Durability,
        journal_limit: u64,
        segment: Segment,
        lock: Lock,
        replayed: Option<u64>,
    ) -> Result<Self, FsError> {
        let (tx, rx) = mpsc::channel();
        let checkpointer = Checkpointer {
            shared: shared.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("theta-fs-checkpoint".into())
            .spawn(move || checkpointer.run(rx))
            .map_err(|e| FsError::io("starting the checkpoint thread for", shared.dir(), e))?;
        let mut committer = Self {
            shared,
            durability,
            journal_limit,
            segment,
            retry_rotation_at: None,
            buf: Vec::new(),
            lock: Some(lock),
            checkpoints: Some(tx),
            checkpointer: Some(handle),
            #[cfg(feature = "sim")]
            barriers: Vec::new(),
        };
        journal::start_batch(&mut committer.buf);
        if let Some(through) = replayed {
            committer.start_checkpoint(through, Vec::new());
        }
        Ok(committer)
    }

    /// Runs until every sender is gone, then closes the store (a last
    /// checkpoint) and stops the checkpointer.
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
            #[cfg(feature = "sim")]
            for barrier in std::mem::take(&mut self.barriers) {
                self.shared.wait_checkpoint_idle();
                let _ = barrier.send(());
            }
        }
        if let Err(e) = self.close() {
            tracing::warn!(
                store = %self.shared.dir().display(),
                error = %e,
                "the last checkpoint of a dropped store failed; the journal keeps every write"
            );
        }
        self.checkpoints = None;
        if let Some(handle) = self.checkpointer.take() {
            let _ = handle.join();
        }
    }

    /// Handles the jobs of `batch` in order; returns its checkpoint requests.
    fn commit(&mut self, batch: &mut Vec<Job>) -> Vec<checkpoint::Reply> {
        let mut requests = Vec::new();
        let mut accepted: Vec<Accepted> = Vec::new();
        let mut seen: HashMap<ActorId, Seen> = HashMap::new();
        for job in batch.drain(..) {
            match job {
                Job::Write { id, bytes, reply } => {
                    if let Some(ok) = self.accept_write(id, bytes, reply, &mut seen) {
                        accepted.push(ok);
                    }
                }
                Job::Delete { id, reply } => {
                    if let Some(ok) = self.accept_delete(id, reply, &mut seen) {
                        accepted.push(ok);
                    }
                }
                Job::Claim {
                    id,
                    owner,
                    mode,
                    reply,
                } => {
                    // A claim sees every write before it acknowledged, and
                    // fences every write after it: commit those before it first.
                    self.append(&mut accepted);
                    seen.clear();
                    let _ = reply.send(self.claim(id, owner, mode));
                }
                Job::Checkpoint { reply } => requests.push(reply),
                #[cfg(feature = "sim")]
                Job::Barrier { reply } => {
                    self.append(&mut accepted);
                    seen.clear();
                    self.barriers.push(reply);
                }
                Job::Close { reply } => {
                    self.append(&mut accepted);
                    seen.clear();
                    let result = self.close();
                    checkpoint::reply_all(std::mem::take(&mut requests), &result);
                    let _ = reply.send(result);
                }
            }
        }
        self.append(&mut accepted);
        if self.buf.capacity() > KEEP_BUFFER_BYTES {
            self.buf = Vec::new();
            journal::start_batch(&mut self.buf);
        }
        requests
    }

    /// What a write or delete of `id` must be checked against: the batch's
    /// earlier jobs of the id, or what is stored.
    fn seen(&self, id: ActorId, seen: &HashMap<ActorId, Seen>) -> Seen {
        seen.get(&id).copied().unwrap_or_else(|| {
            let index = self.shared.index();
            Seen {
                last: index.stamp(id),
                stored: index.contains(id),
            }
        })
    }

    /// Step 1 of a batch for a write: the write rule.
    fn accept_write(
        &mut self,
        id: ActorId,
        bytes: Vec<u8>,
        reply: Reply,
        seen: &mut HashMap<ActorId, Seen>,
    ) -> Option<Accepted> {
        if let Err(e) = self.shared.check_writable() {
            let _ = reply.send(Err(with_id(e, id, "writing the snapshot of")));
            return None;
        }
        // Checked and marked unacknowledged at once: a claim granted outside
        // the committer comes before the check (and fences the write) or
        // after the acknowledgement.
        let mut unacknowledged = self.shared.unacknowledged();
        let before = self.seen(id, seen);
        // Stamp and epoch checks, against the tombstone of a deleted snapshot
        // and the id's claim too.
        let stamp = match self.shared.claims.check_write(id, before.last, &bytes) {
            Ok(stamp) => stamp,
            Err(e) => {
                drop(unacknowledged);
                let _ = reply.send(Err(e));
                return None;
            }
        };
        *unacknowledged.entry(id).or_insert(0) += 1;
        drop(unacknowledged);
        let actor_type = Header::peek(&bytes)
            .expect("check_write accepted an envelope")
            .actor_type;
        journal::encode(&mut self.buf, id, Some(&bytes));
        seen.insert(
            id,
            Seen {
                last: Some(stamp),
                stored: true,
            },
        );
        Some(Accepted {
            id,
            change: Change::Write {
                bytes,
                actor_type,
                stamp,
            },
            reply,
        })
    }

    /// Step 1 of a batch for a delete: nothing to check, except that there is
    /// something to delete (a delete of an absent snapshot changes nothing and
    /// is acknowledged at once).
    fn accept_delete(
        &mut self,
        id: ActorId,
        reply: Reply,
        seen: &mut HashMap<ActorId, Seen>,
    ) -> Option<Accepted> {
        if let Err(e) = self.shared.check_writable() {
            let _ = reply.send(Err(with_id(e, id, "deleting the snapshot of")));
            return None;
        }
        let mut unacknowledged = self.shared.unacknowledged();
        let before = self.seen(id, seen);
        if !before.stored {
            drop(unacknowledged);
            let _ = reply.send(Ok(()));
            return None;
        }
        *unacknowledged.entry(id).or_insert(0) += 1;
        drop(unacknowledged);
        journal::encode(&mut self.buf, id, None);
        seen.insert(
            id,
            Seen {
                last: before.last,
                stored: false,
            },
        );
        Some(Accepted {
            id,
            change: Change::Delete {
                deleted: before.last,
            },
            reply,
        })
    }

    /// A claim of `id`, against what is stored now (every write of it queued
    /// before the claim was acknowledged or failed).
    fn claim(&self, id: ActorId, owner: OwnerId, mode: ClaimMode) -> Result<u64, anyhow::Error> {
        self.shared
            .check_writable()
            .map_err(|e| with_id(e, id, "claiming"))?;
        let stored = self.shared.index().stamp(id);
        self.shared.claims.claim(id, owner, mode, stored)
    }

    /// Steps 2 to 5 of a batch: append, sync, publish, acknowledge.
    fn append(&mut self, accepted: &mut Vec<Accepted>) {
        if accepted.is_empty() {
            return;
        }
        let accepted = std::mem::take(accepted);
        let ids: Vec<ActorId> = accepted.iter().map(|a| a.id).collect();
        let result = self.append_and_sync();
        journal::start_batch(&mut self.buf);
        match result {
            Ok(()) => self.publish(accepted),
            Err(e) => fail_all(accepted, &e),
        }
        let mut unacknowledged = self.shared.unacknowledged();
        for id in ids {
            if let Some(count) = unacknowledged.get_mut(&id) {
                *count -= 1;
                if *count == 0 {
                    unacknowledged.remove(&id);
                }
            }
        }
    }

    /// Publishes and acknowledges the appended (and synced) batch.
    fn publish(&mut self, accepted: Vec<Accepted>) {
        let segment = self.segment.number();
        let mut replies = Vec::with_capacity(accepted.len());
        {
            let mut pending = self.shared.pending();
            let mut index = self.shared.index();
            for Accepted { id, change, reply } in accepted {
                match change {
                    Change::Write {
                        bytes,
                        actor_type,
                        stamp,
                    } => {
                        pending.publish(id, Some(Arc::new(bytes)), segment);
                        index.insert(id, Some((actor_type, stamp)));
                        self.shared.claims.record_write(id, stamp);
                    }
                    Change::Delete { deleted } => {
                        pending.publish(id, None, segment);
                        index.remove(id);
                        self.shared.claims.record_delete(id, deleted);
                    }
                }
                replies.push(reply);
            }
        }
        for reply in replies {
            let _ = reply.send(Ok(()));
        }
    }

    /// Appends the batch in the buffer to the journal and, in durable mode,
    /// syncs it; then checks that the segment is still linked.
    fn append_and_sync(&mut self) -> Result<(), FsError> {
        let shared = &self.shared;
        let good_len = self.segment.len();
        let appended = self
            .segment
            .append(&mut self.buf, || shared.failpoints.hit(Step::JournalWrite));
        let path = self.segment.path().to_path_buf();
        match appended {
            Ok(()) => {}
            Err(AppendError::Undone(e)) => {
                return Err(FsError::io("appending to journal segment", path, e));
            }
            Err(AppendError::Stuck { error, undo }) => {
                shared.poison_sync(FsError::io(
                    "cutting a failed append off journal segment",
                    &path,
                    undo,
                ));
                return Err(FsError::io("appending to journal segment", path, error));
            }
        }
        if self.durability == Durability::PowerLoss {
            let synced = shared
                .failpoints
                .hit(Step::JournalSync)
                .and_then(|()| self.segment.sync());
            if let Err(e) = synced {
                let error = shared.poison_sync(FsError::io("syncing journal segment", &path, e));
                // Best effort: the store is poisoned either way, and a refused
                // write that comes back at the next open is still a whole one.
                let _ = self.segment.truncate(good_len);
                return Err(error);
            }
        }
        check_linked(shared, &self.segment)
    }

    /// Starts a checkpoint when one was asked for, or when the journal segment
    /// has reached its limit (waiting for a running checkpoint only if asked, or
    /// if the journal is far over its limit).
    fn maybe_checkpoint(&mut self, requests: Vec<checkpoint::Reply>) {
        if self.shared.is_closed() {
            // The close checkpointed everything; nothing is written any more.
            let closed = Err(FsError::Closed {
                path: self.shared.dir().to_path_buf(),
            });
            checkpoint::reply_all(requests, &closed);
            return;
        }
        let len = self.segment.len();
        let full = len >= self.journal_limit && self.retry_rotation_at.is_none_or(|at| len >= at);
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
        match self.seal() {
            Ok(sealed) => {
                self.retry_rotation_at = None;
                self.start_checkpoint(sealed, requests);
            }
            Err(e) => {
                self.retry_rotation_at = Some(len.saturating_add(self.journal_limit / 4));
                if requests.is_empty() {
                    tracing::warn!(
                        store = %self.shared.dir().display(),
                        segment = %self.segment.path().display(),
                        error = %e,
                        "starting a new journal segment failed; writes go on into the current one"
                    );
                }
                checkpoint::reply_all(requests, &Err(e));
            }
        }
    }

    /// Syncs the current segment and starts the next one, which records the
    /// sealed one's final length; returns the sealed segment's number. On a
    /// failure the current segment stays current, and the next attempt uses
    /// the same number (numbers have no gaps).
    fn seal(&mut self) -> Result<u64, FsError> {
        self.shared.check_writable()?;
        self.shared.check_in_place()?;
        let sealed = self.segment.number();
        let path = self.segment.path().to_path_buf();
        let next = sealed.checked_add(1).ok_or_else(|| FsError::Damaged {
            path: path.clone(),
            cause: "its number is the largest a segment can have; no segment can follow it".into(),
        })?;
        // Durable mode synced every batch already; buffered mode did not, and
        // a segment must be whole on disk before a newer one records its
        // length.
        self.segment.sync().map_err(|e| {
            self.shared
                .poison_sync(FsError::io("syncing journal segment", &path, e))
        })?;
        check_linked(&self.shared, &self.segment)?;
        let failpoints = &self.shared.failpoints;
        let segment = Segment::create(
            &self.shared.journal,
            next,
            Some(self.segment.link()),
            self.durability == Durability::PowerLoss,
            || failpoints.hit(Step::SegmentCreate),
        )
        .map_err(|f| self.shared.failed(f))?;
        self.segment = segment;
        Ok(sealed)
    }

    fn start_checkpoint(&mut self, through: u64, replies: Vec<checkpoint::Reply>) {
        self.shared.set_checkpointing(true);
        let request = Request { through, replies };
        if let Some(tx) = &self.checkpoints
            && let Err(mpsc::SendError(request)) = tx.send(request)
        {
            self.shared.set_checkpointing(false);
            let stopped = Err(FsError::CommitterStopped {
                path: self.shared.dir().to_path_buf(),
            });
            checkpoint::reply_all(request.replies, &stopped);
        }
    }

    /// The orderly close: a last checkpoint of everything, then writes, deletes
    /// and claims are refused and the directory is unlocked. Errors of the last
    /// checkpoint are returned; the store is closed either way (the journal
    /// keeps whatever the checkpoint did not write).
    fn close(&mut self) -> Result<(), FsError> {
        if self.shared.is_closed() {
            return Ok(());
        }
        self.shared.wait_checkpoint_idle();
        let result = self.last_checkpoint();
        self.shared.set_closed();
        self.lock = None;
        result
    }

    fn last_checkpoint(&mut self) -> Result<(), FsError> {
        self.shared.check_poison()?;
        // An empty current segment holds nothing to checkpoint: it stays, and
        // the next open continues after it.
        let through = if self.segment.is_empty() {
            self.segment.number() - 1
        } else {
            self.seal()?
        };
        self.shared.set_checkpointing(true);
        let result = checkpoint::checkpoint(&self.shared, through);
        self.shared.set_checkpointing(false);
        result
    }
}

/// Poisons the store if `segment` was unlinked: a sync of it made nothing
/// durable.
fn check_linked(shared: &Shared, segment: &Segment) -> Result<(), FsError> {
    match segment.is_linked() {
        Ok(true) => Ok(()),
        Ok(false) => Err(shared.poison_with(FsError::Vanished {
            path: segment.path().to_path_buf(),
            cause: "the open journal segment was unlinked (was the store directory removed?); what was synced to it is lost".into(),
        })),
        Err(e) => Err(FsError::io(
            "inspecting journal segment",
            segment.path(),
            e,
        )),
    }
}

fn fail_all(accepted: Vec<Accepted>, error: &FsError) {
    for Accepted { id, change, reply } in accepted {
        let what = match change {
            Change::Write { .. } => "writing the snapshot of",
            Change::Delete { .. } => "deleting the snapshot of",
        };
        let _ = reply.send(Err(with_id(error.duplicate(), id, what)));
    }
}

/// `error`, with what was being done (`"writing the snapshot of"`, ...) for
/// which actor (it still downcasts to
/// [`FsError`], and a closed store's error to
/// [`StorageClosed`](theta::persistence::StorageClosed) too).
pub(crate) fn with_id(error: FsError, id: ActorId, what: &str) -> anyhow::Error {
    let error = match error {
        FsError::Closed { path } => anyhow::Error::new(theta::persistence::StorageClosed {
            location: path.display().to_string(),
        })
        .context(FsError::Closed { path }),
        other => anyhow::Error::new(other),
    };
    error.context(format!("{what} actor {id}"))
}

fn job_bytes(job: &Job) -> usize {
    match job {
        Job::Write { bytes, .. } => bytes.len(),
        _ => 0,
    }
}
