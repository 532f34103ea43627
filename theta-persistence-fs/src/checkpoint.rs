//! The checkpoint: brings the snapshot files up to date with the pending writes
//! of the sealed journal segments, then shortens the journal.
//!
//! One routine, [`checkpoint`], run by the checkpointer thread in the
//! background (when the journal reaches its limit, on request, and right after
//! an open that replayed a journal) and by the committer when the store closes.
//! It goes one sealed segment at a time, oldest first, so that on a nearly full
//! disk each step frees the space of a segment before the next one needs more.

use std::sync::Arc;
use std::sync::mpsc::Receiver;

use crate::error::FsError;
use crate::failpoint::Step;
use crate::journal;
use crate::layout::{self, START_FILE};
use crate::state::Shared;

/// Where the answer to a checkpoint request goes.
pub(crate) type Reply = tokio::sync::oneshot::Sender<Result<(), FsError>>;

/// Checkpoints every segment up to `through` (sealed: no write goes to it any
/// more). For each segment `k` from `journal/START` on:
///
/// 1. writes the file of every pending write held by segment `k` or an older
///    one (temp file and rename; a delete unlinks the file);
/// 2. one `syncfs` makes them durable, and they are forgotten from memory
///    (those not written again meanwhile);
/// 3. `journal/START` is moved to the next segment (`k + 1`, but the numbers
///    of version-1 segments may skip), durably; then segment `k` is removed.
///
/// Every write in segment `k` is then in a durable file, or superseded by a
/// newer write in a later segment, which stays. A failure stops the checkpoint
/// where it is; what is done stays done, the rest is retried by the next one.
/// A failed sync poisons the store.
pub(crate) fn checkpoint(shared: &Shared, through: u64) -> Result<(), FsError> {
    shared.check_poison()?;
    shared.check_in_place()?;
    let mut start = shared.journal_start();
    // `START` must always name a segment that exists: the one after `k` among
    // those present (the segment after `through` is the current one).
    let sealed: Vec<u64> = journal::segments(&shared.journal)?
        .into_iter()
        .filter(|n| (*start..=through).contains(n))
        .collect();
    for (i, &segment) in sealed.iter().enumerate() {
        let next = sealed.get(i + 1).copied().unwrap_or(through + 1);
        let taken = shared.pending().through(segment);
        if !taken.is_empty() {
            let writes = taken.iter().map(|t| (t.id, t.snapshot.clone())).collect();
            shared.files.write_all(writes, &shared.failpoints)?;
            shared.files.sync(&shared.failpoints).map_err(|e| {
                let dir = shared.files.dir().path();
                shared.poison_sync(FsError::io("syncing the file system of", dir, e))
            })?;
            shared.pending().forget(&taken);
        }
        shared
            .failpoints
            .hit(Step::SegmentDelete)
            .map_err(|e| FsError::io("moving", shared.journal.join(START_FILE), e))?;
        journal::write_start(&shared.journal, next).map_err(|f| shared.failed(f))?;
        *start = next;
        remove_segment(shared, segment)?;
    }
    // Segments a checkpoint moved `START` past but could not remove (or that
    // an open found): no longer needed.
    for segment in journal::segments(&shared.journal)? {
        if segment >= *start {
            break;
        }
        remove_segment(shared, segment)?;
    }
    Ok(())
}

/// Removes a segment that `START` no longer names. Its directory entry needs no
/// sync of its own: if a power loss brings it back, it is older than `START`
/// and removed again.
fn remove_segment(shared: &Shared, segment: u64) -> Result<(), FsError> {
    let name = layout::segment_name(segment);
    shared
        .journal
        .remove_if_present(&name)
        .map(|_| ())
        .map_err(|e| FsError::io("removing journal segment", shared.journal.join(name), e))
}

/// A request to the checkpointer.
pub(crate) struct Request {
    /// The newest segment that no write will go to any more.
    pub(crate) through: u64,
    pub(crate) replies: Vec<Reply>,
}

/// The checkpointer thread: runs [`checkpoint`] for each request.
pub(crate) struct Checkpointer {
    pub(crate) shared: Arc<Shared>,
}

impl Checkpointer {
    pub(crate) fn run(self, rx: Receiver<Request>) {
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
            let result = checkpoint(&self.shared, request.through);
            drop(idle);
            if let Err(e) = &result
                && request.replies.is_empty()
            {
                // Nobody asked for this one: say it somewhere. Every write
                // stays in the journal (and in memory) until a checkpoint
                // succeeds; the next one retries them all.
                tracing::warn!(
                    store = %self.shared.dir().display(),
                    error = %e,
                    "background checkpoint failed; the journal keeps every write"
                );
            }
            reply_all(request.replies, &result);
        }
    }
}

/// Sends `result` to every reply.
pub(crate) fn reply_all(replies: Vec<Reply>, result: &Result<(), FsError>) {
    for reply in replies {
        let _ = reply.send(match result {
            Ok(()) => Ok(()),
            Err(e) => Err(e.duplicate()),
        });
    }
}
