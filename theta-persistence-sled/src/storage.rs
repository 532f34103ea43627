//! [`SledStorage`]: snapshots in a sled tree, one key per actor id.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sled::IVec;
use theta::ActorId;
use theta::persistence::{PersistentStorage, SharedStorage, SnapshotNotFound, envelope};

use crate::SledError;
use crate::flusher::{FileSync, FlushFailure, Flusher};

/// The tree [`SledStorage::open`] and [`SledStorage::from_db`] keep snapshots in.
pub const TREE_NAME: &str = "theta.snapshots";

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Durability {
    /// `try_write` and `try_delete` return `Ok` only after a flush that began
    /// after the change: an acknowledged save survives a process kill and power
    /// loss. Concurrent writers share flushes (group commit).
    ///
    /// A flush is sled's `flush()` followed, when the storage knows the database
    /// directory ([`open`](SledStorage::open), [`from_db_at`](SledStorage::from_db_at)),
    /// by an `fsync` of the log file and of new blob files: on Linux sled itself
    /// only calls `sync_file_range`, which does not survive power loss on a
    /// drive with a volatile write cache, and never syncs blob files
    /// (sled issue #1452). Storages built with [`from_db`](SledStorage::from_db)
    /// or [`from_tree`](SledStorage::from_tree) get sled's flush only: safe
    /// against a process kill, not necessarily against power loss.
    #[default]
    Durable,
    /// `try_write` and `try_delete` return once sled holds the change in memory;
    /// sled's background flusher writes it out every `flush_every_ms` (500 ms
    /// unless the [`sled::Config`] says otherwise; never, if it is `None`).
    ///
    /// **Window of loss:** a crash (process kill or power loss) loses the changes
    /// acknowledged since the last background or explicit flush, up to about
    /// `flush_every_ms`. What survives is still consistent: sled recovers a
    /// prefix of the writes, and every snapshot is whole, old or new.
    Buffered,
}

/// A [`PersistentStorage`] in a [sled](https://docs.rs/sled/0.34) embedded
/// database: each snapshot is the value under its actor id's 16 bytes, in a tree
/// of its own ([`TREE_NAME`] unless built with [`from_tree`](Self::from_tree)).
///
/// - **Durable by default**: a save is acknowledged after an `fsync` that covers
///   it ([`Durability`]); concurrent saves share one flush (group commit).
/// - **Atomic**: a reader sees the whole old or the whole new snapshot.
/// - **Newer wins**: a write whose envelope sequence number is lower than the
///   stored one is refused with [`StaleSnapshot`](theta::persistence::StaleSnapshot)
///   (checked and swapped atomically); bytes that are not envelopes are stored
///   as they are.
/// - A missing snapshot is [`SnapshotNotFound`]; sled errors name the database.
///
/// Clones are cheap handles to the same database.
///
/// # Limits inherited from sled 0.34
///
/// - Values over about 128 KiB are stored in blob files that sled writes before
///   the log entry pointing at them and does not sync. An acknowledged durable
///   save is synced (see [`Durability::Durable`]), but a power loss while a large
///   save is in flight can leave its log entry without its blob: reading that
///   snapshot then fails with an error (never a silent fresh start). Below that
///   size a crash leaves the old or the new snapshot.
/// - sled releases its directory lock shortly after the last handle is dropped;
///   [`open`](Self::open) waits for it.
///
/// # Closing
///
/// sled flushes when the last handle to the database is dropped, but it can only
/// log an error there. Call [`flush`](Self::flush) or [`close`](Self::close)
/// before dropping a storage whose [`Buffered`](Durability::Buffered) writes you
/// want to keep, and check the result.
///
/// # Examples
///
/// ```
/// use theta::ActorId;
/// use theta::persistence::{PersistentStorage, SnapshotNotFound, envelope};
/// use theta_persistence_sled::SledStorage;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> anyhow::Result<()> {
/// let dir = tempfile::tempdir()?;
/// let storage = SledStorage::open(dir.path().join("snapshots"))?;
///
/// let id = ActorId::new_v4();
/// assert!(storage.try_read(id).await.unwrap_err().is::<SnapshotNotFound>());
///
/// let actor_type = ActorId::new_v4();
/// let snapshot = envelope::seal(actor_type, 0, 1, b"state");
/// storage.try_write(id, snapshot.clone()).await?; // fsync'd when this returns
/// assert_eq!(storage.try_read(id).await?, snapshot);
///
/// // An older snapshot never replaces a newer one.
/// let older = envelope::seal(actor_type, 0, 0, b"old state");
/// assert!(storage.try_write(id, older).await.is_err());
/// assert_eq!(storage.try_list().await?, vec![id]);
///
/// storage.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SledStorage {
    inner: Arc<Inner>,
    durability: Durability,
}

struct Inner {
    tree: sled::Tree,
    /// How errors name the database: its path, or the tree.
    location: String,
    flusher: Arc<Flusher>,
}

impl SledStorage {
    /// Opens (or creates) the sled database in the directory `path` and uses its
    /// tree [`TREE_NAME`], with [`Durability::Durable`] and sled's default
    /// configuration (background flush every 500 ms).
    ///
    /// This is synchronous: sled recovers the database while opening, which can
    /// take a while for a large one.
    ///
    /// A database can be open only once at a time: sled locks it. Share it by
    /// cloning the storage, or open it with sled and use [`from_db`](Self::from_db).
    /// sled 0.34 releases the lock shortly *after* its last handle is dropped (its
    /// background threads finish first), so `open` waits up to
    /// one second for a held lock before it reports [`SledError::Locked`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SledError> {
        let path = path.as_ref();
        let db = open_waiting_for_lock(path)?;
        let location = format!("the sled database at {}", path.display());
        let files = FileSync::new(path).map_err(|source| SledError::Open {
            path: path.to_path_buf(),
            source: source.into(),
        })?;
        Self::in_db(&db, location, Some(files))
    }

    /// Uses the tree [`TREE_NAME`] of an already open database, which may hold
    /// other data in other trees: this storage reads and writes only its tree.
    ///
    /// [`Durable`](Durability::Durable) writes flush the whole database (sled has
    /// one log), so they also make the other trees' earlier writes durable.
    ///
    /// The storage does not know the database directory, so durable writes get
    /// sled's flush only (see [`Durability::Durable`]); prefer
    /// [`from_db_at`](Self::from_db_at).
    pub fn from_db(db: &sled::Db) -> Result<Self, SledError> {
        Self::in_db(db, format!("the sled tree `{TREE_NAME}`"), None)
    }

    /// Like [`from_db`](Self::from_db), for the database opened in the directory
    /// `path`, which durable writes then `fsync` in full (see
    /// [`Durability::Durable`]).
    pub fn from_db_at(db: &sled::Db, path: impl AsRef<Path>) -> Result<Self, SledError> {
        let path = path.as_ref();
        let files = FileSync::new(path).map_err(|source| SledError::Open {
            path: path.to_path_buf(),
            source: source.into(),
        })?;
        let location = format!("the sled database at {}", path.display());
        Self::in_db(db, location, Some(files))
    }

    /// Uses `tree`, which should hold nothing but snapshots (keys that are not 16
    /// bytes long are ignored by [`try_list`](PersistentStorage::try_list)).
    pub fn from_tree(tree: sled::Tree) -> Self {
        let location = format!("the sled tree `{}`", String::from_utf8_lossy(&tree.name()));
        Self::with_location(tree, location, None)
    }

    fn in_db(db: &sled::Db, location: String, files: Option<FileSync>) -> Result<Self, SledError> {
        let tree = db
            .open_tree(TREE_NAME)
            .map_err(|source| SledError::OpenTree {
                location: location.clone(),
                tree: TREE_NAME.to_owned(),
                source,
            })?;
        Ok(Self::with_location(tree, location, files))
    }

    fn with_location(tree: sled::Tree, location: String, files: Option<FileSync>) -> Self {
        Self {
            inner: Arc::new(Inner {
                flusher: Arc::new(Flusher::new(tree.clone(), files)),
                tree,
                location,
            }),
            durability: Durability::default(),
        }
    }

    /// This handle with another [`Durability`]; other clones keep theirs.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The durability of this handle's writes.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// How error messages name the database, e.g.
    /// `the sled database at /var/lib/app/snapshots`.
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    /// The sled tree the snapshots are stored in.
    pub fn tree(&self) -> &sled::Tree {
        &self.inner.tree
    }

    /// Writes everything sled buffers to disk and `fsync`s; resolves when a flush
    /// that began after this call has completed. Shares flushes with concurrent
    /// durable writes.
    pub async fn flush(&self) -> Result<(), SledError> {
        self.inner
            .flusher
            .flush()
            .await
            .map_err(|failure| match failure {
                FlushFailure::Sled(source) => SledError::Flush {
                    location: self.inner.location.clone(),
                    source,
                },
                FlushFailure::Stopped => SledError::FlushStopped {
                    location: self.inner.location.clone(),
                },
            })
    }

    /// Flushes (see [`flush`](Self::flush)) and drops this handle, reporting a
    /// failed flush instead of having sled log it at drop. The database closes
    /// when its last handle (clones, and the [`sled::Db`] a storage was built
    /// from) is dropped.
    pub async fn close(self) -> Result<(), SledError> {
        self.flush().await
    }

    /// Makes a completed change as durable as this handle promises.
    async fn settle(&self) -> Result<(), anyhow::Error> {
        match self.durability {
            Durability::Durable => Ok(self.flush().await?),
            Durability::Buffered => Ok(()),
        }
    }
}

/// How long [`SledStorage::open`] waits for a lock that sled is still releasing.
const LOCK_WAIT: Duration = Duration::from_secs(1);

fn open_waiting_for_lock(path: &Path) -> Result<sled::Db, SledError> {
    let config = sled::Config::new().path(path);
    let deadline = Instant::now() + LOCK_WAIT;
    let mut pause = Duration::from_millis(2);
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            Err(source) if is_lock_contention(&source) => {
                if Instant::now() + pause > deadline {
                    return Err(SledError::Locked {
                        path: path.to_path_buf(),
                        source,
                    });
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(source) => {
                return Err(SledError::Open {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
}

/// sled reports a held lock as an `Other` I/O error carrying this text.
fn is_lock_contention(error: &sled::Error) -> bool {
    matches!(error, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

impl fmt::Debug for SledStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the tree: sled's `Debug` for a tree walks all of its nodes.
        f.debug_struct("SledStorage")
            .field("location", &self.inner.location)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl PersistentStorage for SledStorage {
    async fn try_read(&self, id: ActorId) -> Result<Vec<u8>, anyhow::Error> {
        match self.inner.tree.get(id.as_bytes()) {
            Ok(Some(bytes)) => Ok(bytes.to_vec()),
            Ok(None) => Err(anyhow::Error::new(SnapshotNotFound)),
            Err(error) => Err(anyhow::Error::new(error).context(format!(
                "reading the snapshot of actor {id} from {}",
                self.inner.location
            ))),
        }
    }

    async fn try_write(&self, id: ActorId, bytes: Vec<u8>) -> Result<(), anyhow::Error> {
        let tree = &self.inner.tree;
        let key = id.as_bytes();
        let context = || {
            format!(
                "writing the snapshot of actor {id} to {}",
                self.inner.location
            )
        };
        let new = IVec::from(bytes);
        let mut current = tree.get(key).with_context(context)?;
        // Check and swap as one step: a concurrent writer that got in between
        // makes the swap fail, and the check runs again against its snapshot.
        loop {
            if let Some(stored) = &current {
                envelope::check_not_stale(id, stored, &new).map_err(anyhow::Error::new)?;
            }
            match tree
                .compare_and_swap(key, current.as_ref(), Some(new.clone()))
                .with_context(context)?
            {
                Ok(()) => break,
                Err(conflict) => current = conflict.current,
            }
        }
        self.settle().await.with_context(context)
    }

    async fn try_delete(&self, id: ActorId) -> Result<(), anyhow::Error> {
        let context = || {
            format!(
                "deleting the snapshot of actor {id} from {}",
                self.inner.location
            )
        };
        self.inner
            .tree
            .remove(id.as_bytes())
            .with_context(context)?;
        // Settle even if nothing was removed: a concurrent delete of the same id
        // may not be durable yet.
        self.settle().await.with_context(context)
    }

    async fn try_list(&self) -> Result<Vec<ActorId>, anyhow::Error> {
        let mut ids = Vec::new();
        for key in self.inner.tree.iter().keys() {
            let key =
                key.with_context(|| format!("listing the snapshots in {}", self.inner.location))?;
            // Keys of another shape are not ours (a tree shared by mistake).
            if let Ok(bytes) = <[u8; 16]>::try_from(key.as_ref()) {
                ids.push(ActorId::from_bytes(bytes));
            }
        }
        Ok(ids)
    }

    fn shared(&self) -> Option<SharedStorage> {
        Some(SharedStorage::new(self.clone()))
    }
}
