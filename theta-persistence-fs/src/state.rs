//! [`Shared`]: what the store handle, the committer and the checkpointer share.
//!
//! When several of its locks are held at once, they are taken in this order:
//! `unacknowledged` or `pending` first, then `index`, then the claim table's own
//! lock (inside `ClaimTable`); `journal_start` (held by a checkpoint for its
//! whole run) before all of them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

use theta::ActorId;
use theta::persistence::{ClaimMode, ClaimTable, OwnerId};

use crate::dir::Dir;
use crate::error::{Failure, FsError};
use crate::failpoint::Failpoints;
use crate::index::Index;
use crate::pending::Pending;
use crate::snapshot_files::SnapshotFiles;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The store directory.
    pub(crate) root: Dir,
    /// `journal/`.
    pub(crate) journal: Dir,
    /// `snapshots/`.
    pub(crate) files: SnapshotFiles,
    pub(crate) failpoints: Failpoints,
    /// Claims and tombstones, for the store's lifetime.
    pub(crate) claims: ClaimTable,
    /// The ids with a write or delete that the committer accepted (checked
    /// against the claims) and has not acknowledged (or failed) yet, and how
    /// many. A claim of an id with none is granted on the caller's thread,
    /// under this lock; one of an id with some goes through the committer, so
    /// that no write of an older epoch is acknowledged after it.
    unacknowledged: Mutex<HashMap<ActorId, usize>>,
    /// The error every later write gets, once a sync failed or a file vanished.
    poison: OnceLock<FsError>,
    closed: AtomicBool,
    pending: Mutex<Pending>,
    index: Mutex<Index>,
    /// The oldest segment the journal needs (what `journal/START` says).
    journal_start: Mutex<u64>,
    /// Whether a checkpoint is running; `idle` is signalled when one ends.
    checkpointing: Mutex<bool>,
    idle: Condvar,
}

/// Locks `mutex`. Its holders never panic midway through an update, so a
/// poisoned lock still guards consistent data.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn new(
        root: Dir,
        journal: Dir,
        files: SnapshotFiles,
        failpoints: Failpoints,
        claims: ClaimTable,
    ) -> Self {
        Self {
            root,
            journal,
            files,
            failpoints,
            claims,
            unacknowledged: Mutex::default(),
            poison: OnceLock::new(),
            closed: AtomicBool::new(false),
            pending: Mutex::default(),
            index: Mutex::default(),
            journal_start: Mutex::new(0),
            checkpointing: Mutex::new(false),
            idle: Condvar::new(),
        }
    }

    /// The store directory.
    pub(crate) fn dir(&self) -> &Path {
        self.root.path()
    }

    /// The error of the poisoned store, if it is.
    pub(crate) fn check_poison(&self) -> Result<(), FsError> {
        match self.poison.get() {
            Some(error) => Err(error.duplicate()),
            None => Ok(()),
        }
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poison.get().is_some()
    }

    /// Refuses a write, delete or claim of a closed or poisoned store.
    pub(crate) fn check_writable(&self) -> Result<(), FsError> {
        if self.is_closed() {
            return Err(FsError::Closed {
                path: self.dir().to_path_buf(),
            });
        }
        self.check_poison()
    }

    /// Poisons the store after a failed sync: every later write gets
    /// [`FsError::Poisoned`]. Returns `error`, for the caller to report.
    pub(crate) fn poison_sync(&self, error: FsError) -> FsError {
        let _ = self.poison.set(FsError::Poisoned {
            path: self.dir().to_path_buf(),
            cause: error.to_string(),
        });
        error
    }

    /// Poisons the store with `error` itself (a vanished file or directory):
    /// every later write gets it again.
    pub(crate) fn poison_with(&self, error: FsError) -> FsError {
        let _ = self.poison.set(error.duplicate());
        error
    }

    /// The error of a [`Failure`]; a failed sync poisons the store.
    pub(crate) fn failed(&self, failure: Failure) -> FsError {
        match failure {
            Failure::Plain(error) => error,
            Failure::Sync(error) => self.poison_sync(error),
        }
    }

    /// Checks that the store's directories are still where they were opened
    /// (not removed, moved or replaced); poisons the store if not.
    pub(crate) fn check_in_place(&self) -> Result<(), FsError> {
        for dir in [&self.root, &self.journal, self.files.dir()] {
            match dir.check_in_place() {
                Ok(()) => {}
                Err(e @ FsError::Vanished { .. }) => return Err(self.poison_with(e)),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn set_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// The ids with unacknowledged writes (see the field); lock it before the
    /// index, never after.
    pub(crate) fn unacknowledged(&self) -> MutexGuard<'_, HashMap<ActorId, usize>> {
        lock(&self.unacknowledged)
    }

    /// Claims `id` right away, unless the committer holds an unacknowledged
    /// write or delete of it (`None`: the claim must wait for those, in the
    /// committer's queue). Every acknowledged write is in the index, so the
    /// claim sees it; every later write is checked against the claim.
    pub(crate) fn claim_now(
        &self,
        id: ActorId,
        owner: OwnerId,
        mode: ClaimMode,
    ) -> Option<Result<u64, anyhow::Error>> {
        let unacknowledged = self.unacknowledged();
        if unacknowledged.contains_key(&id) {
            return None;
        }
        let stored = self.index().stamp(id);
        Some(self.claims.claim(id, owner, mode, stored))
    }

    /// Ends `owner`'s claim of `id` under `epoch`.
    pub(crate) fn release(&self, id: ActorId, owner: OwnerId, epoch: u64) {
        let _unacknowledged = self.unacknowledged();
        let stored = self.index().stamp(id);
        self.claims.release(id, owner, epoch, stored);
    }

    pub(crate) fn pending(&self) -> MutexGuard<'_, Pending> {
        lock(&self.pending)
    }

    pub(crate) fn index(&self) -> MutexGuard<'_, Index> {
        lock(&self.index)
    }

    pub(crate) fn journal_start(&self) -> MutexGuard<'_, u64> {
        lock(&self.journal_start)
    }

    pub(crate) fn set_checkpointing(&self, running: bool) {
        *lock(&self.checkpointing) = running;
        if !running {
            self.idle.notify_all();
        }
    }

    pub(crate) fn is_checkpointing(&self) -> bool {
        *lock(&self.checkpointing)
    }

    pub(crate) fn wait_checkpoint_idle(&self) {
        let mut running = lock(&self.checkpointing);
        while *running {
            running = self.idle.wait(running).unwrap_or_else(|e| e.into_inner());
        }
    }
}
