//! [`PersistentStorage`] on the local file system for theta: atomic, durable,
//! crash-safe snapshots in one directory.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! use theta::persistence::{PersistentStorage, SnapshotNotFound, envelope};
//! use theta_persistence_fs::FsStorage;
//!
//! let dir = tempfile::tempdir()?;
//! let storage = FsStorage::open(dir.path())?;
//! let id = theta::ActorId::new_v4();
//!
//! assert!(storage.try_read(id).await.unwrap_err().is::<SnapshotNotFound>());
//! let snapshot = envelope::seal(uuid::Uuid::nil(), 0, 1, b"state");
//! storage.try_write(id, snapshot.clone()).await?; // durable when it returns
//! assert_eq!(storage.try_read(id).await?, snapshot);
//! assert_eq!(storage.try_list().await?, vec![id]);
//! # Ok(())
//! # }
//! ```
//!
//! # Guarantees
//!
//! - **Durable when acknowledged** (under [`Durability::Durable`], the default):
//!   `try_write` and `try_delete` return `Ok` only after the change is synced to
//!   the store's journal; it survives `kill -9` and power loss.
//! - **Old or new, never a mix or nothing**: after a crash at any point each
//!   snapshot reads as its last acknowledged write or a later unacknowledged
//!   one, whole; never an older one, a torn one, or none.
//! - **Newer wins**: a write whose envelope sequence number is lower than the
//!   stored one is refused with [`theta::persistence::StaleSnapshot`].
//! - **Group commit**: concurrent writes share one journal append and one
//!   `fdatasync`, so durable throughput grows with the number of actors saving at
//!   once. The snapshot files are brought up to date in the background, in
//!   batches that share one `syncfs` (a *checkpoint*). The scheme and its
//!   crash-safety argument are documented in the `committer` and `journal`
//!   module sources.
//! - **Damage is reported, never skipped**: a damaged journal (other than the
//!   torn tail of an unacknowledged write) fails `open` with
//!   [`FsError::CorruptJournal`]; a damaged snapshot file fails its read.
//! - **One owner**: the directory is locked (`flock`) while open; a second
//!   [`FsStorage::open`] of it, in this or another process, fails with
//!   [`FsError::Locked`].
//! - **Fail-stop on sync errors**: after a failed sync the store is poisoned and
//!   refuses every write ([`FsError::Poisoned`]) until it is reopened.
//!
//! # Layout
//!
//! - `<dir>/LOCK`;
//! - `<dir>/FORMAT`, the layout version: a store of another layout is refused
//!   with [`FsError::UnsupportedFormat`], never read as empty;
//! - `<dir>/snapshots/<aa>/<uuid>.snap`, one file per actor, where `aa` is the
//!   XOR of the id's 16 bytes in hex, so a million actors are spread over 256
//!   directories whatever their ids look like (random, sequential, time-ordered);
//! - `<dir>/journal/<generation>.log`, the writes not yet checkpointed into
//!   their files. `open` replays it; an orderly close (dropping the last handle)
//!   checkpoints it away.
//!
//! Directories are created 0700, files 0600. Files with other names are ignored;
//! temp files a crash left behind are removed by `open`.
//!
//! # Platform
//!
//! Linux (uses `flock` and `syncfs`; `syncfs` reports writeback errors since
//! Linux 5.8). `syncfs` flushes the whole file system the directory is on: put
//! the store on a file system that is not also busy with unrelated bulk writes.
//!
//! # Test-only feature
//!
//! `failpoints` adds `FsStorage::fail_next` to make the next write fail or abort
//! the process at a chosen step of the commit. Never enable it in production.
#![warn(missing_docs)]

mod committer;
mod error;
mod failpoint;
mod journal;
mod layout;

use std::collections::HashSet;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use theta::ActorId;
use theta::persistence::{PersistentStorage, SharedStorage, SnapshotNotFound, envelope};
use tokio::sync::oneshot;

use committer::{Committer, Files, Job, Shared};
pub use error::FsError;
#[cfg(feature = "failpoints")]
pub use failpoint::{Action, Step};
use journal::Segment;

/// When a write is acknowledged, relative to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Durability {
    /// `try_write` returns after the write is synced to the journal: an
    /// acknowledged write survives power loss.
    #[default]
    Durable,
    /// No sync per write: `try_write` returns once the write is in the journal
    /// in the page cache. A process crash (`kill -9`) loses nothing acknowledged;
    /// a power loss or kernel crash can lose the writes of the last moments
    /// (those the OS had not flushed yet, typically up to ~30 s), and then each
    /// snapshot reads as an older acknowledged one, whole. Checkpoints still sync
    /// the files they write, so no snapshot file is ever left torn.
    Buffered,
}

/// The default [`FsStorageBuilder::journal_limit`]: 8 MiB.
pub const DEFAULT_JOURNAL_LIMIT: u64 = 8 << 20;

/// Options for [`FsStorage`]; start with [`FsStorage::builder`].
#[derive(Debug, Clone)]
pub struct FsStorageBuilder {
    dir: PathBuf,
    durability: Durability,
    journal_limit: u64,
}

impl FsStorageBuilder {
    /// When writes are acknowledged (default [`Durability::Durable`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How large the journal grows before a checkpoint writes its snapshots to
    /// their files and removes it (default [`DEFAULT_JOURNAL_LIMIT`]; at least
    /// 4 KiB). A larger journal makes checkpoints rarer, which helps when the
    /// same actors save again and again, at the cost of memory (the writes not
    /// yet checkpointed are also held in memory) and of a longer replay at
    /// `open` after a crash.
    pub fn journal_limit(mut self, bytes: u64) -> Self {
        self.journal_limit = bytes.max(4 << 10);
        self
    }

    /// Opens the store; see [`FsStorage::open`].
    pub fn open(self) -> Result<FsStorage, FsError> {
        FsStorage::open_inner(self)
    }
}

/// A snapshot store in a local directory: a cheap, cloneable handle (clones share
/// one store). Dropping the last clone closes the store: it waits for the writes
/// already submitted, checkpoints the journal into the snapshot files (blocking
/// the dropping thread for as long as that takes: writing the files of the actors
/// saved since the last checkpoint, and one sync), then releases the directory
/// lock.
///
/// ```
/// # fn main() -> anyhow::Result<()> {
/// use theta_persistence_fs::{Durability, FsError, FsStorage};
///
/// let dir = tempfile::tempdir()?;
/// let storage = FsStorage::builder(dir.path())
///     .durability(Durability::Buffered)
///     .open()?;
/// // The directory has one owner at a time.
/// assert!(matches!(FsStorage::open(dir.path()), Err(FsError::Locked { .. })));
/// drop(storage);
/// let _reopened = FsStorage::open(dir.path())?;
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
    /// Holds the `flock`; closed (unlocking) after the committer has stopped.
    _lock: File,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Let the committer finish what was queued (a cancelled write may still be
        // in flight) before the lock is released, so a reopen never races it.
        self.jobs = None;
        if let Some(handle) = self.committer.take() {
            let _ = handle.join();
        }
    }
}

impl FsStorage {
    /// Opens (creating if needed, 0700) the store in `dir` with
    /// [`Durability::Durable`]: locks it, removes the temp files a crash left,
    /// and replays the journal a crash left into the snapshot files.
    pub fn open(dir: impl AsRef<Path>) -> Result<FsStorage, FsError> {
        Self::builder(dir).open()
    }

    /// Options for opening the store in `dir`.
    pub fn builder(dir: impl AsRef<Path>) -> FsStorageBuilder {
        FsStorageBuilder {
            dir: dir.as_ref().to_path_buf(),
            durability: Durability::Durable,
            journal_limit: DEFAULT_JOURNAL_LIMIT,
        }
    }

    fn open_inner(options: FsStorageBuilder) -> Result<FsStorage, FsError> {
        let FsStorageBuilder {
            dir,
            durability,
            journal_limit,
        } = options;
        layout::create_dir_all_durable(&dir)?;
        let lock_path = dir.join(layout::LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(layout::FILE_MODE)
            .open(&lock_path)
            .map_err(|e| FsError::io("opening lock file", &lock_path, e))?;
        // An flock belongs to the open file description, so a second open of the
        // same directory in this process conflicts too.
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(FsError::Locked { path: dir }),
            Err(e) => return Err(FsError::io("locking", lock_path, io::Error::from(e))),
        }

        layout::check_or_write_format(&dir)?;
        let snapshots = dir.join(layout::SNAPSHOTS);
        let journal = dir.join(journal::JOURNAL);
        let mut created = layout::create_dir(&snapshots)?;
        created |= layout::create_dir(&journal)?;
        if created {
            layout::sync_dir(&dir)?;
        }
        let present = layout::clean_temp_files(&snapshots)?;
        let snapshots_dir = layout::open_dir(&snapshots)?;

        let shared = Arc::new(Shared::new(dir.clone(), snapshots, journal.clone()));
        let files = Arc::new(Files::new(shared.clone(), snapshots_dir, &present));
        // What a crash left in the journal goes to the files before anything
        // else: the journal then starts empty, and reads and stale checks see
        // every acknowledged write.
        let replayed = journal::replay(&journal)?;
        let mut next_generation = 1;
        if let Some((newest, _)) = replayed.segments.last() {
            next_generation = newest + 1;
            let entries: Vec<_> = replayed
                .entries
                .into_iter()
                .map(|(id, snapshot)| (id, snapshot.map(Arc::new)))
                .collect();
            if !entries.is_empty() {
                files.write_all(entries)?;
                files.sync()?;
            }
            files.remove_segments(*newest)?;
        }
        let synced = durability == Durability::Durable;
        let segment = match Segment::create(&journal, next_generation, synced) {
            Ok(segment) => segment,
            Err(journal::CreateError::Plain(e) | journal::CreateError::Sync(e)) => return Err(e),
        };

        let (tx, rx) = mpsc::channel();
        let committer = Committer::new(shared.clone(), files, durability, journal_limit, segment)?;
        let handle = std::thread::Builder::new()
            .name("theta-fs-commit".into())
            .spawn(move || committer.run(rx))
            .map_err(|e| FsError::io("starting the committer thread for", &dir, e))?;
        Ok(FsStorage {
            inner: Arc::new(Inner {
                shared,
                durability,
                jobs: Some(tx),
                committer: Some(handle),
                _lock: lock,
            }),
        })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    /// When writes are acknowledged.
    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// Whether an earlier sync failure poisoned the store (every write now fails
    /// with [`FsError::Poisoned`] until it is reopened).
    pub fn is_poisoned(&self) -> bool {
        self.inner.shared.poison.get().is_some()
    }

    /// Makes the next write (or sync) that reaches `step` fail with `action`.
    /// Test-only (feature `failpoints`).
    #[cfg(feature = "failpoints")]
    pub fn fail_next(&self, step: Step, action: Action) {
        self.inner.shared.failpoints.arm(step, action);
    }

    /// Writes every snapshot acknowledged so far to its file, syncs the files,
    /// and removes the journal that held them (this also happens on its own
    /// whenever the journal reaches its limit, and when the store is closed).
    /// Useful before copying the `snapshots/` directory.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> anyhow::Result<()> {
    /// use theta::persistence::{PersistentStorage, envelope};
    /// use theta_persistence_fs::FsStorage;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let storage = FsStorage::open(dir.path())?;
    /// let id = theta::ActorId::new_v4();
    /// storage.try_write(id, envelope::seal(uuid::Uuid::nil(), 0, 1, b"state")).await?;
    /// storage.checkpoint().await?;
    /// let file = dir.path().join("snapshots").read_dir()?.next().unwrap()?.path();
    /// assert_eq!(file.read_dir()?.count(), 1); // `<uuid>.snap`
    /// # Ok(())
    /// # }
    /// ```
    pub async fn checkpoint(&self) -> Result<(), FsError> {
        let shared = &self.inner.shared;
        shared.check_poison()?;
        let (reply, done) = oneshot::channel();
        self.send(Job::Checkpoint { reply })?;
        done.await.map_err(|_| self.stopped())?
    }

    fn stopped(&self) -> FsError {
        FsError::CommitterStopped {
            path: self.inner.shared.dir.clone(),
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

    async fn submit(
        &self,
        id: ActorId,
        write: bool,
        job: impl FnOnce(committer::Reply) -> Job,
    ) -> Result<(), anyhow::Error> {
        let fail = |e| committer::with_id(e, id, write);
        self.inner.shared.check_poison().map_err(fail)?;
        let (reply, ack) = oneshot::channel();
        self.send(job(reply)).map_err(fail)?;
        ack.await.map_err(|_| fail(self.stopped()))?
    }
}

impl fmt::Debug for FsStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FsStorage")
            .field("dir", &self.inner.shared.dir)
            .field("durability", &self.inner.durability)
            .field("poisoned", &self.is_poisoned())
            .finish()
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, anyhow::Error> + Send + 'static,
) -> Result<T, anyhow::Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow::anyhow!("file-system task failed: {e}"))?
}

impl PersistentStorage for FsStorage {
    async fn try_read(&self, id: ActorId) -> Result<Vec<u8>, anyhow::Error> {
        match self.inner.shared.pending_snapshot(id) {
            Some(Some(bytes)) => return Ok(bytes.as_ref().clone()),
            Some(None) => return Err(anyhow::Error::new(SnapshotNotFound)),
            // Not written since the last checkpoint: the file is up to date.
            None => {}
        }
        let path = layout::snapshot_path(&self.inner.shared.snapshots, id);
        blocking(move || {
            let file = match File::open(&path) {
                Ok(file) => file,
                // A missing shard directory is "absent" as well.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(anyhow::Error::new(SnapshotNotFound));
                }
                Err(e) => return Err(anyhow::Error::new(FsError::io("opening", path, e))),
            };
            // Never allocate more than the largest envelope theta writes, whatever
            // the file (damaged, or not ours) claims.
            let limit = envelope::MAX_ENVELOPE_LEN as u64;
            let len = file
                .metadata()
                .map_err(|e| FsError::io("inspecting", &path, e))?
                .len();
            if len > limit {
                return Err(anyhow::Error::new(FsError::Oversized { path, len, limit }));
            }
            let mut bytes = Vec::with_capacity(len as usize);
            (&file)
                .take(limit + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| FsError::io("reading", &path, e))?;
            if bytes.len() as u64 > limit {
                let len = bytes.len() as u64;
                return Err(anyhow::Error::new(FsError::Oversized { path, len, limit }));
            }
            Ok(bytes)
        })
        .await
    }

    /// Durable (or buffered) per [`Durability`]; refuses a stale write with
    /// [`theta::persistence::StaleSnapshot`].
    async fn try_write(&self, id: ActorId, bytes: Vec<u8>) -> Result<(), anyhow::Error> {
        self.submit(id, true, |reply| Job::Write { id, bytes, reply })
            .await
    }

    /// Durable (or buffered) per [`Durability`], like a write; absent is `Ok`.
    async fn try_delete(&self, id: ActorId) -> Result<(), anyhow::Error> {
        self.submit(id, false, |reply| Job::Delete { id, reply })
            .await
    }

    async fn try_list(&self) -> Result<Vec<ActorId>, anyhow::Error> {
        // The writes in memory first: one that a checkpoint finishes meanwhile
        // is in its file by the time the files are listed.
        let (written, deleted) = self.inner.shared.pending_ids();
        let snapshots = self.inner.shared.snapshots.clone();
        blocking(move || {
            let mut ids = layout::list(&snapshots).map_err(anyhow::Error::new)?;
            let mut seen: HashSet<ActorId> = written.iter().copied().collect();
            ids.retain(|id| !deleted.contains(id) && seen.insert(*id));
            ids.extend(written);
            Ok(ids)
        })
        .await
    }

    fn shared(&self) -> Option<SharedStorage> {
        Some(SharedStorage::new(self.clone()))
    }
}
