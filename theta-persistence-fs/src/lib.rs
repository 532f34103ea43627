//! [`PersistentStorage`] on the local file system for theta: atomic, durable,
//! crash-safe snapshots in one directory.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! use theta::persistence::{PersistentStorage, SnapshotNotFound, envelope::Seal};
//! use theta_persistence_fs::FsStorage;
//!
//! let dir = tempfile::tempdir()?;
//! let storage = FsStorage::open(dir.path())?;
//! let id = theta::ActorId::new_v4();
//!
//! assert!(storage.try_read(id).await.unwrap_err().is::<SnapshotNotFound>());
//! let snapshot = Seal::new(uuid::Uuid::nil()).actor_id(id).sequence(1).seal(b"state");
//! storage.try_write(id, snapshot.clone()).await?; // durable when it returns
//! assert_eq!(storage.try_read(id).await?, snapshot);
//! assert_eq!(storage.try_list().await?, vec![id]);
//! storage.try_close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Guarantees
//!
//! - **Durable when acknowledged**: under [`Durability::PowerLoss`] (the
//!   default) `try_write` and `try_delete` return `Ok` only after the change is
//!   synced to the store's journal; it survives `kill -9` and power loss. Under
//!   [`Durability::ProcessKill`] they return once the change is in the journal
//!   in the page cache: a process crash loses nothing acknowledged, a power
//!   loss can lose the last moments (each snapshot then reads as an older
//!   acknowledged one, whole). [`Durability::Volatile`] is refused at open
//!   ([`FsError::UnsupportedDurability`]).
//! - **Old or new, never a mix or nothing**: after a crash at any point each
//!   snapshot reads as its last acknowledged write or a later unacknowledged
//!   one, whole; never an older one, a torn one, or none.
//! - **The write rule of theta's contract**, with each write: bytes that are not
//!   an envelope, longer than
//!   [`MAX_ENVELOPE_LEN`](theta::persistence::envelope::MAX_ENVELOPE_LEN), from
//!   a fenced owner, or not newer than the stored (or deleted) snapshot are
//!   refused. A delete leaves a tombstone for the store's lifetime.
//! - **Ownership**: `try_claim` / `try_release` with epochs that grow across
//!   reopens (a store generation, bumped at every open); claims are ordered with
//!   the writes of the same id.
//! - **Group commit**: concurrent writes share one journal append and one
//!   `fdatasync`, so durable throughput grows with the number of actors saving at
//!   once. The snapshot files are brought up to date in the background, in
//!   batches that share one `syncfs` (a *checkpoint*).
//! - **Damage is reported, never skipped**: a damaged journal (other than the
//!   torn tail of an unacknowledged write), a missing or shortened journal
//!   segment, and a missing marker file fail `open` with a typed error naming
//!   the file ([`FsError::CorruptJournal`], [`FsError::IncompleteJournal`],
//!   [`FsError::Damaged`]); a damaged snapshot file fails its read.
//! - **Only its own directory**: a non-empty directory that is not an fs store
//!   is refused ([`FsError::NotAStore`]), a store of another layout too
//!   ([`FsError::UnsupportedFormat`]).
//! - **One owner**: the directory is locked (`flock`) while open; a second
//!   [`FsStorage::open`] of it, in this or another process, fails with
//!   [`FsError::Locked`].
//! - **Fail-stop**: after a failed sync ([`FsError::Poisoned`]), or when the
//!   store's directory or journal segment is removed or replaced while it is
//!   open ([`FsError::Vanished`]), the store refuses every write, delete and
//!   claim until it is reopened.
//! - **Opens on a nearly full disk**: the open writes no snapshot file (what
//!   the journal holds is read from memory until a background checkpoint
//!   writes it), only a few small files.
//!
//! What no store of this design can tell without a separate manifest: a
//! snapshot file deleted behind its back once the store is reopened (while it
//! is open, the read reports [`FsError::Missing`]; after a reopen the snapshot
//! reads as absent), and whole batches cut from the end of the newest journal
//! segment, or that segment deleted outright (the journal then just ends
//! earlier). `ARCHITECTURE.md`, next to this crate's `Cargo.toml`, explains
//! why, and walks the write path, the read path, the checkpoint and the
//! recovery path step by step.
//!
//! # Reads and recovery
//!
//! Reads need no thread hop: the writes not yet checkpointed are served from
//! memory, and a snapshot file up to 64 KiB is read on the calling task (a
//! page-cache hit costs microseconds); larger ones on tokio's blocking pool.
//! `try_list` and `try_list_type` answer from an in-memory index (actor type
//! and stamp of every stored snapshot, about 40 bytes each), which the open
//! builds by reading the header of every snapshot file. A claim is granted on
//! the calling thread unless a write of the same id is in flight.
//!
//! # Layout
//!
//! - `<dir>/LOCK`, `<dir>/FORMAT` (the layout marker: a store of another layout
//!   is refused, never read as empty), `<dir>/GENERATION`;
//! - `<dir>/snapshots/<aa>/<uuid>.snap`, one file per actor, where `aa` is the
//!   XOR of the id's 16 bytes in hex, so a million actors are spread over 256
//!   directories whatever their ids look like (random, sequential, time-ordered);
//! - `<dir>/journal/<number>.log` and `<dir>/journal/START`: the writes not yet
//!   checkpointed into their files. An orderly close (`try_close`, or dropping
//!   the last handle) checkpoints them.
//!
//! Directories are created 0700, files 0600. Files with other names are ignored;
//! temp files a crash left behind are removed by `open`. Nothing else may write
//! in the directory while the store is open.
//!
//! # Platform
//!
//! Linux (uses `flock` and `syncfs`; `syncfs` reports writeback errors since
//! Linux 5.8). `syncfs` flushes the whole file system the directory is on: put
//! the store on a file system that is not also busy with unrelated bulk writes.
//!
//! # Test-only feature
//!
//! `failpoints` adds `FsStorage::fail_next` and `FsStorageBuilder::fail_next`
//! to make a step of a write, a checkpoint or a rotation fail or abort the
//! process. `sim` adds `sim::SimDisk`, a simulated disk that loses power
//! (unsynced writes dropped, torn or reordered) and fails syncs, with
//! `FsStorageBuilder::sim_disk` to open a store on it and
//! `FsStorage::settle`. Never enable them in production.
#![warn(missing_docs)]

mod checkpoint;
mod committer;
mod dir;
mod error;
mod failpoint;
mod index;
mod journal;
mod layout;
mod open;
mod pending;
#[cfg(feature = "sim")]
pub mod sim;
mod snapshot_files;
mod state;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use theta::ActorId;
use theta::persistence::envelope;
use theta::persistence::{
    Claim, ClaimMode, Durability, OwnerId, PersistenceError, PersistentStorage, SharedStorage,
    SnapshotNotFound,
};
use tokio::sync::oneshot;

use committer::{Job, with_id};
pub use error::FsError;
#[cfg(feature = "failpoints")]
pub use failpoint::{Action, Step};
use state::Shared;

/// The default [`FsStorageBuilder::journal_limit`]: 8 MiB.
pub const DEFAULT_JOURNAL_LIMIT: u64 = 8 << 20;

/// Snapshot files up to this size are read on the calling task: from the page
/// cache that takes microseconds, less than a round trip to the blocking pool
/// (the read path's cost before: a quarter of a raw `std::fs::read`). Larger
/// ones are read on the blocking pool.
const INLINE_READ_MAX: u64 = 64 << 10;

/// Options for [`FsStorage`]; start with [`FsStorage::builder`].
#[derive(Debug)]
pub struct FsStorageBuilder {
    dir: PathBuf,
    durability: Durability,
    journal_limit: u64,
    failpoints: failpoint::Failpoints,
    disk: dir::Disk,
}

impl FsStorageBuilder {
    /// What an acknowledged write survives: [`Durability::PowerLoss`] (the
    /// default) or [`Durability::ProcessKill`]; [`Durability::Volatile`] is
    /// refused by [`open`](Self::open).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How large a journal segment grows before a checkpoint writes its
    /// snapshots to their files and removes it (default
    /// [`DEFAULT_JOURNAL_LIMIT`]; at least 4 KiB). A larger journal makes
    /// checkpoints rarer, which helps when the same actors save again and again,
    /// at the cost of memory (the writes not yet checkpointed are also held in
    /// memory) and of a longer replay at `open` after a crash.
    pub fn journal_limit(mut self, bytes: u64) -> Self {
        self.journal_limit = bytes.max(4 << 10);
        self
    }

    /// Makes the first time the store reaches `step`, from the open on, fail
    /// with `action` (for a step the open's background checkpoint reaches).
    /// Test-only (feature `failpoints`).
    #[cfg(feature = "failpoints")]
    pub fn fail_next(self, step: Step, action: Action) -> Self {
        self.failpoints.arm(step, action);
        self
    }

    /// Opens the store on the simulated disk `disk` instead of the real one;
    /// the store's path is a path on that disk. Test-only (feature `sim`).
    #[cfg(feature = "sim")]
    pub fn sim_disk(mut self, disk: sim::SimDisk) -> Self {
        self.disk = dir::Disk::Sim(disk);
        self
    }

    /// Opens the store; see [`FsStorage::open`].
    pub fn open(self) -> Result<FsStorage, FsError> {
        let (shared, committer) = open::open(open::Options {
            dir: &self.dir,
            durability: self.durability,
            journal_limit: self.journal_limit,
            failpoints: self.failpoints,
            disk: self.disk,
        })?;
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("theta-fs-commit".into())
            .spawn(move || committer.run(rx))
            .map_err(|e| FsError::io("starting the committer thread for", &self.dir, e))?;
        Ok(FsStorage {
            inner: Arc::new(Inner {
                shared,
                durability: self.durability,
                jobs: Some(tx),
                committer: Some(handle),
            }),
        })
    }
}

/// A snapshot store in a local directory: a cheap, cloneable handle (clones share
/// one store).
///
/// [`try_close`](PersistentStorage::try_close) checkpoints the journal into the
/// snapshot files, reports the errors of that, releases the directory lock and
/// refuses later writes, deletes and claims ([`FsError::Closed`], which also
/// downcasts to [`StorageClosed`](theta::persistence::StorageClosed)); reads
/// still work. Dropping the last clone of a store that was not closed does the
/// same, blocking the dropping thread for as long as that takes (writing the
/// files of the actors saved since the last checkpoint, and one sync); its
/// errors are logged (`tracing`), and the journal keeps whatever was not
/// written.
///
/// ```
/// # fn main() -> anyhow::Result<()> {
/// use theta::persistence::Durability;
/// use theta_persistence_fs::{FsError, FsStorage};
///
/// let dir = tempfile::tempdir()?;
/// let storage = FsStorage::builder(dir.path())
///     .durability(Durability::ProcessKill)
///     .open()?;
/// // The directory has one owner at a time.
/// assert!(matches!(FsStorage::open(dir.path()), Err(FsError::Locked { .. })));
/// drop(storage);
/// let _reopened = FsStorage::open(dir.path())?;
/// // Writes that only live in memory are not this store's to offer.
/// let refused = FsStorage::builder(tempfile::tempdir()?.path())
///     .durability(Durability::Volatile)
///     .open();
/// assert!(matches!(refused, Err(FsError::UnsupportedDurability(_))));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct FsStorage {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    durability: Durability,
    /// `None` only while dropping.
    jobs: Option<mpsc::Sender<Job>>,
    committer: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Let the committer finish what was queued (a cancelled write may still be
        // in flight) and close the store before the lock is released, so a
        // reopen never races it.
        self.jobs = None;
        if let Some(handle) = self.committer.take() {
            let _ = handle.join();
        }
    }
}

impl FsStorage {
    /// Opens (creating if needed, 0700) the store in `dir` with
    /// [`Durability::PowerLoss`]: locks it, removes the temp files a crash left,
    /// reads the header of every snapshot file (the index by actor type) and
    /// replays the journal a crash left (its writes are read from memory until a
    /// background checkpoint writes them to their files).
    pub fn open(dir: impl AsRef<Path>) -> Result<FsStorage, FsError> {
        Self::builder(dir).open()
    }

    /// Options for opening the store in `dir`.
    pub fn builder(dir: impl AsRef<Path>) -> FsStorageBuilder {
        FsStorageBuilder {
            dir: dir.as_ref().to_path_buf(),
            durability: Durability::PowerLoss,
            journal_limit: DEFAULT_JOURNAL_LIMIT,
            failpoints: Default::default(),
            disk: dir::Disk::Os,
        }
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        self.inner.shared.dir()
    }

    /// What an acknowledged write survives.
    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// Whether an earlier sync failure, or a directory or segment removed under
    /// the open store, poisoned it (every write now fails until it is reopened).
    pub fn is_poisoned(&self) -> bool {
        self.inner.shared.is_poisoned()
    }

    /// Whether the store was closed ([`try_close`](PersistentStorage::try_close)).
    pub fn is_closed(&self) -> bool {
        self.inner.shared.is_closed()
    }

    /// Makes the next write, sync, checkpoint step or rotation that reaches
    /// `step` fail with `action`. Test-only (feature `failpoints`).
    #[cfg(feature = "failpoints")]
    pub fn fail_next(&self, step: Step, action: Action) {
        self.inner.shared.failpoints.arm(step, action);
    }

    /// Disarms the failpoint armed by `fail_next` (one that fires every time,
    /// [`Action::ErrorEveryTime`], stays until this). Test-only (feature
    /// `failpoints`).
    #[cfg(feature = "failpoints")]
    pub fn clear_failpoints(&self) {
        self.inner.shared.failpoints.clear();
    }

    /// Waits until the store has handled everything asked of it before (the
    /// rotation after a write included) and no checkpoint runs (one started by
    /// a rotation or an open runs in the background): a test's workload then
    /// reaches the disk in one order, run after run. Test-only (feature `sim`).
    #[cfg(feature = "sim")]
    pub async fn settle(&self) -> Result<(), FsError> {
        let (reply, done) = oneshot::channel();
        self.send(Job::Barrier { reply })?;
        done.await.map_err(|_| self.stopped())
    }

    /// Writes every snapshot acknowledged so far to its file, syncs the files,
    /// and removes the journal segments that held them (this also happens on
    /// its own whenever the journal reaches its limit, after an open that
    /// replayed a journal, and when the store is closed). Useful before copying
    /// the `snapshots/` directory.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> anyhow::Result<()> {
    /// use theta::persistence::{PersistentStorage, envelope::Seal};
    /// use theta_persistence_fs::FsStorage;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let storage = FsStorage::open(dir.path())?;
    /// let id = theta::ActorId::new_v4();
    /// storage.try_write(id, Seal::new(uuid::Uuid::nil()).actor_id(id).seal(b"state")).await?;
    /// storage.checkpoint().await?;
    /// let shard = dir.path().join("snapshots").read_dir()?.next().unwrap()?.path();
    /// assert_eq!(shard.read_dir()?.count(), 1); // `<uuid>.snap`
    /// # Ok(())
    /// # }
    /// ```
    pub async fn checkpoint(&self) -> Result<(), FsError> {
        self.inner.shared.check_writable()?;
        let (reply, done) = oneshot::channel();
        self.send(Job::Checkpoint { reply })?;
        done.await.map_err(|_| self.stopped())?
    }

    fn stopped(&self) -> FsError {
        FsError::CommitterStopped {
            path: self.dir().to_path_buf(),
        }
    }

    fn send(&self, job: Job) -> Result<(), FsError> {
        self.inner
            .jobs
            .as_ref()
            .ok_or_else(|| self.stopped())?
            .send(job)
            .map_err(|_| self.stopped())
    }

    /// Sends a job to the committer and waits for its answer.
    async fn submit<T>(
        &self,
        id: ActorId,
        what: &str,
        job: impl FnOnce(oneshot::Sender<Result<T, anyhow::Error>>) -> Job,
    ) -> Result<T, anyhow::Error> {
        let fail = |e| with_id(e, id, what);
        self.inner.shared.check_writable().map_err(fail)?;
        let (reply, answer) = oneshot::channel();
        self.send(job(reply)).map_err(fail)?;
        answer.await.map_err(|_| fail(self.stopped()))?
    }

    /// Reads the snapshot of `id`: the pending write if there is one, else its
    /// file (small files on this task, larger ones on the blocking pool).
    async fn read(&self, id: ActorId) -> Result<Vec<u8>, anyhow::Error> {
        let shared = &self.inner.shared;
        if let Some(pending) = shared.pending().get(id) {
            return match pending {
                Some(bytes) => Ok(bytes.as_ref().clone()),
                None => Err(anyhow::Error::new(SnapshotNotFound)),
            };
        }
        let reading = |e: FsError| {
            anyhow::Error::new(e).context(format!("reading the snapshot of actor {id}"))
        };
        let Some(opened) = shared.files.open(id).map_err(reading)? else {
            // Written meanwhile (and checkpointed)? Or a file the store wrote
            // that is gone? (Locks in the committer's order.)
            let pending = shared.pending();
            return match pending.get(id) {
                Some(Some(bytes)) => Ok(bytes.as_ref().clone()),
                Some(None) => Err(anyhow::Error::new(SnapshotNotFound)),
                None if shared.index().contains(id) => Err(reading(FsError::Missing {
                    id,
                    path: shared.files.path_of(id),
                })),
                None => Err(anyhow::Error::new(SnapshotNotFound)),
            };
        };
        if opened.len() <= INLINE_READ_MAX {
            return opened.read().map_err(reading);
        }
        tokio::task::spawn_blocking(move || opened.read())
            .await
            .map_err(|e| anyhow::anyhow!("reading the snapshot of actor {id}: {e}"))?
            .map_err(reading)
    }
}

impl fmt::Debug for FsStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FsStorage")
            .field("dir", &self.dir())
            .field("durability", &self.inner.durability)
            .field("poisoned", &self.is_poisoned())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl PersistentStorage for FsStorage {
    async fn try_read(&self, id: ActorId) -> Result<Vec<u8>, anyhow::Error> {
        self.read(id).await
    }

    /// Durable per [`Durability`] when it returns `Ok`; refused per the write
    /// rule ([`envelope::check_write`]), and with [`FsError::Poisoned`],
    /// [`FsError::Vanished`] or [`FsError::Closed`].
    async fn try_write(&self, id: ActorId, bytes: Vec<u8>) -> Result<(), anyhow::Error> {
        // The size limit first, before the bytes go anywhere.
        envelope::check_len(id, bytes.len())?;
        self.submit(id, "writing the snapshot of", |reply| Job::Write {
            id,
            bytes,
            reply,
        })
        .await
    }

    /// Durable like a write; absent is `Ok`. The deleted snapshot's stamp stays
    /// as a tombstone while the store is open.
    async fn try_delete(&self, id: ActorId) -> Result<(), anyhow::Error> {
        self.submit(id, "deleting the snapshot of", |reply| Job::Delete {
            id,
            reply,
        })
        .await
    }

    /// From the index: no disk access.
    async fn try_list(&self) -> Result<Vec<ActorId>, anyhow::Error> {
        Ok(self.inner.shared.index().ids())
    }

    /// From the index by actor type: no snapshot of another type is read. A
    /// stored file that is not an envelope (its type unknown) fails the listing,
    /// naming its id and path, rather than being left out silently.
    async fn try_list_type(&self, actor_type: uuid::Uuid) -> Result<Vec<ActorId>, anyhow::Error> {
        let (mut ids, unknown) = self.inner.shared.index().ids_of(actor_type);
        for id in unknown {
            let header = match self.read(id).await {
                Ok(bytes) => envelope::Header::peek(&bytes).map(|h| h.actor_type),
                // Deleted meanwhile.
                Err(e) if e.is::<SnapshotNotFound>() => continue,
                Err(e) => return Err(e),
            };
            match header {
                // Rewritten meanwhile.
                Ok(found) if found == actor_type => ids.push(id),
                Ok(_) => {}
                Err(source) => {
                    let path = self.inner.shared.files.path_of(id);
                    return Err(anyhow::Error::new(PersistenceError::Corrupt { id, source })
                        .context(format!(
                            "listing the actors of type {actor_type}: snapshot file {} is not an envelope, so its type is unknown",
                            path.display()
                        )));
                }
            }
        }
        Ok(ids)
    }

    /// Ordered with the writes of the id: the claim sees every write
    /// acknowledged before it, and a write of an older epoch that is not
    /// acknowledged yet is fenced or acknowledged first (the claim then waits
    /// for it in the committer's queue). The snapshot is then read like
    /// `try_read`.
    async fn try_claim(
        &self,
        id: ActorId,
        owner: OwnerId,
        mode: ClaimMode,
    ) -> Result<Claim, anyhow::Error> {
        let shared = &self.inner.shared;
        shared
            .check_writable()
            .map_err(|e| with_id(e, id, "claiming"))?;
        let epoch = match shared.claim_now(id, owner, mode) {
            Some(granted) => granted?,
            None => {
                self.submit(id, "claiming", |reply| Job::Claim {
                    id,
                    owner,
                    mode,
                    reply,
                })
                .await?
            }
        };
        match self.read(id).await {
            Ok(bytes) => Ok(Claim {
                epoch,
                snapshot: Some(bytes),
            }),
            Err(e) if e.is::<SnapshotNotFound>() => Ok(Claim {
                epoch,
                snapshot: None,
            }),
            Err(e) => {
                // The caller gets no claim: do not keep one for it.
                shared.release(id, owner, epoch);
                Err(e)
            }
        }
    }

    async fn try_release(
        &self,
        id: ActorId,
        owner: OwnerId,
        epoch: u64,
    ) -> Result<(), anyhow::Error> {
        self.inner.shared.release(id, owner, epoch);
        Ok(())
    }

    /// A last checkpoint (its errors are returned), then later writes, deletes
    /// and claims are refused and the directory is unlocked.
    async fn try_close(&self) -> Result<(), anyhow::Error> {
        if self.is_closed() {
            return Ok(());
        }
        let (reply, done) = oneshot::channel();
        self.send(Job::Close { reply })?;
        Ok(done.await.map_err(|_| self.stopped())??)
    }

    fn shared(&self) -> Option<SharedStorage> {
        Some(SharedStorage::new(self.clone()))
    }
}
