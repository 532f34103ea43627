//! [`SledStorage`]: snapshots in a sled tree, one key per actor id.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sled::IVec;
use theta::ActorId;
use theta::persistence::envelope::{self, Header, Stamp};
use theta::persistence::{
    Claim, ClaimMode, ClaimTable, Durability, OwnerId, PersistentStorage, SharedStorage,
    SnapshotNotFound, StorageClosed, UnsupportedDurability,
};

use crate::SledError;
use crate::acked::{self, Acked, Mark};
use crate::flusher::{FileSync, FlushFailure, Flusher, Ledger, Progress};
use crate::keys::{self, Digest, Stored};
use crate::{layout, recovery};

/// The tree [`SledStorage::open`] and [`SledStorage::from_db`] keep snapshots in.
pub const TREE_NAME: &str = "theta.snapshots";

/// The [`Durability`] levels a [`SledStorage`] offers.
///
/// [`Durability::ProcessKill`] is not among them: sled keeps unflushed writes in
/// its own buffers, not the operating system's, so a write that is not flushed
/// and synced is lost by a process kill as well.
pub const OFFERED_DURABILITY: &[Durability] = &[Durability::PowerLoss, Durability::Volatile];

/// Writes of one id are serialized by one of this many locks (chosen by the id).
const LANES: usize = 256;

/// A [`PersistentStorage`] in a [sled](https://docs.rs/sled/0.34) embedded
/// database: each snapshot is the value under its actor id's 16 bytes, in a tree
/// of its own ([`TREE_NAME`] unless built with [`from_tree`](Self::from_tree)).
///
/// - **Durable by default** ([`Durability::PowerLoss`]): a save is acknowledged
///   after a flush and an `fsync` that cover it; concurrent saves share one
///   flush (group commit). [`Durability::Volatile`] acknowledges once sled holds
///   the write in memory.
/// - **Atomic**: a reader sees the whole old or the whole new snapshot.
/// - **The write rule** of the storage contract, atomically with each write:
///   bytes that are not an envelope, longer than
///   [`MAX_ENVELOPE_LEN`](envelope::MAX_ENVELOPE_LEN), from a fenced owner, or
///   not newer than the stored or deleted snapshot are refused. A delete leaves
///   a tombstone in the tree, so it fences stale writers across reopens too.
/// - **Ownership**: claims ([`try_claim`](PersistentStorage::try_claim)) are
///   held in memory (sled lets one process open a database) and ordered with
///   the writes of the same id; epochs start above a generation that every
///   open bumps durably.
/// - **Never misread**: a directory that is not this backend's is refused, and
///   an open that finds less than was acknowledged (sled drops everything after
///   a damaged byte of its log) fails with [`SledError::Damaged`] instead of
///   letting actors start fresh. See `ARCHITECTURE.md` for how.
/// - A missing snapshot is [`SnapshotNotFound`]; sled errors name the database.
///
/// Clones are cheap handles to the same database. Open a database through one
/// `SledStorage` at a time (clone it to share it): the checks keep their state
/// in it.
///
/// # Limits inherited from sled 0.34
///
/// - Values over about 128 KiB are stored in blob files that sled writes before
///   the log entry pointing at them and does not sync. An acknowledged durable
///   save is synced, but a power loss while a large save is in flight can leave
///   its log entry without its blob: reading that snapshot then fails with an
///   error (never a silent fresh start). Below that size a crash leaves the old
///   or the new snapshot.
/// - sled releases its directory lock shortly after the last handle is dropped;
///   [`open`](Self::open) waits for it.
///
/// # Closing
///
/// [`close`](Self::close) (or [`try_close`](PersistentStorage::try_close))
/// flushes, reports the flush's errors and records the tree's exact content, so
/// the next open checks every entry. Dropping the last handle does the same but
/// can only log an error. A store that was not closed (a crash) is checked less
/// strictly at its next open: no acknowledged id may be missing.
///
/// # Examples
///
/// ```
/// use theta::ActorId;
/// use theta::persistence::{PersistentStorage, SnapshotNotFound, StaleSnapshot, envelope::Seal};
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
/// let seal = Seal::new(ActorId::new_v4()).actor_id(id);
/// let snapshot = seal.sequence(1).seal(b"state");
/// storage.try_write(id, snapshot.clone()).await?; // fsync'd when this returns
/// assert_eq!(storage.try_read(id).await?, snapshot);
///
/// // An older snapshot never replaces a newer one.
/// let stale = storage.try_write(id, seal.sequence(0).seal(b"old state")).await;
/// assert!(stale.unwrap_err().is::<StaleSnapshot>());
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
    /// The directory, or the tree's name: what [`StorageClosed`] names.
    place: String,
    /// The database directory, when known: its `ACKED` file is kept up to date.
    dir: Option<PathBuf>,
    acked: Option<Arc<Acked>>,
    generation: u64,
    flusher: Arc<Flusher>,
    progress: Arc<Progress>,
    claims: ClaimTable,
    /// Live snapshots and the sum of the id keys' digest (the key count is in
    /// `progress`), updated under the id's lane.
    live: AtomicU64,
    sum_low: AtomicU64,
    sum_high: AtomicU64,
    lanes: Box<[Mutex<()>]>,
    closed: AtomicBool,
    /// `progress.applied` when a clean close was last recorded (`u64::MAX`: none).
    recorded_clean: AtomicU64,
}

impl SledStorage {
    /// Opens (or creates) the sled database in the directory `path` and uses its
    /// tree [`TREE_NAME`], with [`Durability::PowerLoss`] and sled's default
    /// configuration (background flush every 500 ms).
    ///
    /// - A new directory is created 0700; the files in it are made 0600.
    /// - A directory that holds anything but this backend's files (another
    ///   backend's store, other data) is refused with [`SledError::NotAStore`]
    ///   or [`SledError::UnsupportedLayout`], naming what is there. A sled
    ///   database written by an older theta build (which left no marker) is
    ///   adopted; a sled database without theta's tree is refused.
    /// - The tree is checked against what was acknowledged
    ///   ([`SledError::Damaged`] if anything is missing), its type index is
    ///   repaired if a crash left it behind, and the open generation is bumped
    ///   and flushed.
    ///
    /// This is synchronous: sled recovers the database while opening and theta
    /// reads every entry once, which takes a while for a large store.
    ///
    /// A database can be open only once at a time: sled locks it. Share it by
    /// cloning the storage. sled 0.34 releases the lock shortly *after* its last
    /// handle is dropped (its background threads finish first), so `open` waits
    /// up to one second for a held lock before it reports [`SledError::Locked`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SledError> {
        let path = path.as_ref();
        let found = layout::prepare(path)?;
        if found == layout::Found::Empty {
            layout::write_format(path)?;
        }
        let db = open_waiting_for_lock(path)?;
        if found == layout::Found::Unmarked {
            let ours = db
                .tree_names()
                .iter()
                .any(|name| name.as_ref() == TREE_NAME.as_bytes());
            if !ours {
                return Err(SledError::NotAStore {
                    path: path.to_path_buf(),
                    found: format!("a sled database without theta's tree `{TREE_NAME}`"),
                });
            }
            // A database of an older theta build: the checks below index it.
            layout::write_format(path)?;
        }
        let storage = Self::in_db(&db, Some(path), found == layout::Found::Store)?;
        layout::narrow_permissions(path)?;
        Ok(storage)
    }

    /// Uses the tree [`TREE_NAME`] of an already open database, which may hold
    /// other data in other trees: this storage reads and writes only its tree.
    ///
    /// Durable writes flush the whole database (sled has one log), so they also
    /// make the other trees' earlier writes durable.
    ///
    /// The storage does not know the database directory, so durable writes get
    /// sled's flush only, without the `fsync` that makes them survive power
    /// loss on Linux, and there is no `ACKED` record to check the tree against
    /// at the next open; prefer [`from_db_at`](Self::from_db_at).
    pub fn from_db(db: &sled::Db) -> Result<Self, SledError> {
        Self::in_db(db, None, false)
    }

    /// Like [`from_db`](Self::from_db), for the database opened in the directory
    /// `path`: durable writes `fsync` it in full, and the tree is checked
    /// against what was acknowledged, as with [`open`](Self::open). The
    /// directory gets this layout's marker if it has none; one of another
    /// layout is refused.
    pub fn from_db_at(db: &sled::Db, path: impl AsRef<Path>) -> Result<Self, SledError> {
        let path = path.as_ref();
        // The database's own log must be there: a wrong path fails here, before
        // anything is written into it.
        FileSync::new(path).map_err(|e| SledError::io("opening", &path.join("db"), e))?;
        let marked = match layout::prepare(path) {
            Ok(layout::Found::Store) => true,
            Ok(_) | Err(SledError::NotAStore { .. }) => false,
            Err(other) => return Err(other),
        };
        if !marked {
            layout::write_format(path)?;
        }
        Self::in_db(db, Some(path), marked)
    }

    /// Uses `tree`, which should hold nothing but theta's entries: keys that are
    /// not 16 bytes long and do not start with theta's meta prefix are ignored.
    /// Like [`from_db`](Self::from_db), without the `fsync` and the check
    /// against acknowledged writes.
    pub fn from_tree(tree: sled::Tree) -> Result<Self, SledError> {
        let location = format!("the sled tree `{}`", String::from_utf8_lossy(&tree.name()));
        let place = String::from_utf8_lossy(&tree.name()).into_owned();
        Self::start(tree, location, place, None, false)
    }

    fn in_db(db: &sled::Db, dir: Option<&Path>, marked: bool) -> Result<Self, SledError> {
        let (location, place) = match dir {
            Some(dir) => (
                format!("the sled database at {}", dir.display()),
                dir.display().to_string(),
            ),
            None => (format!("the sled tree `{TREE_NAME}`"), TREE_NAME.to_owned()),
        };
        let tree = db
            .open_tree(TREE_NAME)
            .map_err(|source| SledError::OpenTree {
                location: location.clone(),
                tree: TREE_NAME.to_owned(),
                source,
            })?;
        Self::start(tree, location, place, dir, marked)
    }

    /// The open checks (see [`open`](Self::open)), then a storage.
    fn start(
        tree: sled::Tree,
        location: String,
        place: String,
        dir: Option<&Path>,
        marked: bool,
    ) -> Result<Self, SledError> {
        let scan = |source| SledError::Scan {
            location: location.clone(),
            source,
        };
        let census = recovery::take_census(&tree).map_err(scan)?;
        let found = match dir {
            Some(dir) => {
                let found = acked::read(dir)
                    .map_err(|e| SledError::io("reading", &dir.join(acked::ACKED_FILE), e))?;
                recovery::check(found, &census, marked).map_err(|what| SledError::Damaged {
                    path: dir.to_path_buf(),
                    what,
                })?;
                Some(found)
            }
            None => None,
        };
        // `ACKED` records the generation too: a generation key that damage
        // reverted cannot bring back the epochs of an earlier run.
        let recorded = match found {
            Some(acked::Found::Record(record, _)) => record.generation,
            _ => 0,
        };
        let generation = census.generation.max(recorded).saturating_add(1);
        let files = dir
            .map(|dir| FileSync::new(dir).map_err(|e| SledError::io("opening", &dir.join("db"), e)))
            .transpose()?;
        let acked = match (dir, found) {
            (Some(dir), Some(found)) => {
                let path = dir.join(acked::ACKED_FILE);
                let acked =
                    Acked::open(dir, found).map_err(|e| SledError::io("opening", &path, e))?;
                Some(Arc::new(acked))
            }
            _ => None,
        };
        let progress = Arc::new(Progress::default());
        progress.keys.store(census.digest.keys, Ordering::Relaxed);
        let ledger = acked.as_ref().map(|acked| Ledger {
            acked: Arc::clone(acked),
            generation,
        });
        let flusher = Flusher::new(tree.clone(), files, ledger, Arc::clone(&progress));

        let flush = |source| SledError::Flush {
            location: location.clone(),
            source,
        };
        tree.insert(keys::generation_key(), &generation.to_le_bytes()[..])
            .map_err(flush)?;
        for key in &census.index_stale {
            tree.remove(key).map_err(flush)?;
        }
        for key in &census.index_missing {
            tree.insert(key, &[][..]).map_err(flush)?;
        }
        if !census.index_stale.is_empty() || !census.index_missing.is_empty() {
            tracing::warn!(
                stale = census.index_stale.len(),
                missing = census.index_missing.len(),
                "repaired the actor type index of {location}"
            );
        }
        // The generation (and any repair) durable before the first claim, and
        // `ACKED` marked open, synced, before the first write.
        flusher.flush_now().map_err(flush)?;
        if let Some(acked) = &acked {
            acked
                .write_durable(
                    generation,
                    Mark::Open {
                        keys: census.digest.keys,
                    },
                )
                .map_err(|e| SledError::io("writing", acked.path(), e))?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                tree,
                location,
                place,
                dir: dir.map(Path::to_path_buf),
                acked,
                generation,
                flusher: Arc::new(flusher),
                progress,
                claims: ClaimTable::new(generation << 32),
                live: AtomicU64::new(census.digest.live),
                sum_low: AtomicU64::new(census.digest.sum as u64),
                sum_high: AtomicU64::new((census.digest.sum >> 64) as u64),
                lanes: (0..LANES).map(|_| Mutex::new(())).collect(),
                closed: AtomicBool::new(false),
                recorded_clean: AtomicU64::new(u64::MAX),
            }),
            durability: Durability::PowerLoss,
        })
    }

    /// This handle with another [`Durability`]; other clones keep theirs.
    /// [`OFFERED_DURABILITY`] lists what sled offers; anything else is refused.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// use theta::persistence::Durability;
    /// use theta_persistence_sled::SledStorage;
    ///
    /// let durable = SledStorage::open(dir.path().join("snapshots"))?;
    /// // Same database, acknowledging saves before they reach the disk.
    /// let fast = durable.clone().with_durability(Durability::Volatile)?;
    /// assert_eq!(fast.durability(), Durability::Volatile);
    /// let refused = durable.clone().with_durability(Durability::ProcessKill);
    /// assert_eq!(refused.unwrap_err().requested, Durability::ProcessKill);
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_durability(
        mut self,
        durability: Durability,
    ) -> Result<Self, UnsupportedDurability> {
        if !OFFERED_DURABILITY.contains(&durability) {
            return Err(UnsupportedDurability {
                backend: "theta-persistence-sled",
                requested: durability,
                offered: OFFERED_DURABILITY,
            });
        }
        self.durability = durability;
        Ok(self)
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

    /// The database directory, if the storage was opened with one.
    pub fn path(&self) -> Option<&Path> {
        self.inner.dir.as_deref()
    }

    /// The open generation: bumped (and flushed) by every open; claims' epochs
    /// start at `generation << 32`.
    pub fn generation(&self) -> u64 {
        self.inner.generation
    }

    /// Writes everything sled buffers to disk and `fsync`s; resolves when a flush
    /// that began after this call has completed. Shares flushes with concurrent
    /// durable writes.
    pub async fn flush(&self) -> Result<(), SledError> {
        self.inner.flush().await
    }

    /// [`try_close`](PersistentStorage::try_close), then drops this handle. The
    /// database closes when its last handle (clones, and the [`sled::Db`] a
    /// storage was built from) is dropped.
    pub async fn close(self) -> Result<(), SledError> {
        self.inner.close().await
    }

    /// Makes the next flush fail as a failing `fsync` (EIO) would: the write
    /// waiting for it is refused and the storage refuses writes until the
    /// database is opened again. For tests (cargo feature `failpoints`).
    #[cfg(feature = "failpoints")]
    pub fn fail_next_sync(&self) {
        self.inner.flusher.fail_next_sync();
    }

    /// Makes a completed change as durable as this handle promises.
    async fn settle(&self) -> Result<(), SledError> {
        match self.durability {
            Durability::Volatile => Ok(()),
            _ => self.inner.flush().await,
        }
    }
}

impl Inner {
    fn lane(&self, id: ActorId) -> MutexGuard<'_, ()> {
        let bits = id.as_u128();
        let lane = ((bits ^ (bits >> 64)) as u64 % LANES as u64) as usize;
        // Nothing is guarded but the order of writes of one id.
        self.lanes[lane]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuses writes, deletes and claims of a closed or poisoned store.
    fn check_writable(&self) -> Result<(), anyhow::Error> {
        if self.closed.load(Ordering::Acquire) {
            return Err(anyhow::Error::new(StorageClosed {
                location: self.place.clone(),
            }));
        }
        if let Some(cause) = self.flusher.poisoned() {
            return Err(anyhow::Error::new(SledError::Poisoned {
                location: self.location.clone(),
                cause,
            }));
        }
        Ok(())
    }

    fn get(&self, id: ActorId) -> Result<Option<IVec>, sled::Error> {
        self.tree.get(id.as_bytes())
    }

    /// Replaces what is stored under `id` (`old`, classified as `was`) with
    /// `new` (classified as `now`), keeping the type index and the digest
    /// up to date. Called under the id's lane.
    ///
    /// The index entry of the new type goes in before the value and the old
    /// one out after it, so a crash in between leaves an extra entry (which the
    /// next open removes), never a missing one.
    fn apply(
        &self,
        id: ActorId,
        old: Option<&[u8]>,
        was: Option<Stored>,
        new: IVec,
        now: Stored,
    ) -> Result<(), anyhow::Error> {
        let old_type = was.and_then(Stored::indexed_type);
        let new_type = now.indexed_type();
        let gained = keys::contribution(id, &new);
        let result = (|| {
            if let Some(actor_type) = new_type.filter(|t| Some(*t) != old_type) {
                self.tree.insert(keys::type_key(actor_type, id), &[][..])?;
            }
            self.tree.insert(id.as_bytes(), new)?;
            if let Some(actor_type) = old_type.filter(|t| Some(*t) != new_type) {
                self.tree.remove(keys::type_key(actor_type, id))?;
            }
            Ok::<_, sled::Error>(())
        })();
        if let Err(error) = result {
            // The tree and the digest may disagree now: nothing more may be
            // acknowledged until a reopen recounts.
            self.flusher
                .poison(format!("writing to the tree failed: {error}"));
            return Err(anyhow::Error::new(error));
        }
        let lost = old.map_or(0, |old| keys::contribution(id, old));
        let delta = gained.wrapping_sub(lost);
        self.add_to_sum(delta);
        match (was.is_some_and(Stored::is_live), now.is_live()) {
            (false, true) => self.live.fetch_add(1, Ordering::AcqRel),
            (true, false) => self.live.fetch_sub(1, Ordering::AcqRel),
            _ => 0,
        };
        if old.is_none() {
            self.progress.keys.fetch_add(1, Ordering::AcqRel);
        }
        self.progress.applied.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Adds `delta` to the 128-bit sum kept in two words: the sum is only ever
    /// read whole once every lane is drained (at close), when no add is in
    /// flight.
    fn add_to_sum(&self, delta: u128) {
        let low = delta as u64;
        let previous = self.sum_low.fetch_add(low, Ordering::AcqRel);
        let carry = u64::from(previous.checked_add(low).is_none());
        self.sum_high
            .fetch_add(((delta >> 64) as u64).wrapping_add(carry), Ordering::AcqRel);
    }

    fn digest(&self) -> Digest {
        Digest {
            keys: self.progress.keys.load(Ordering::Acquire),
            live: self.live.load(Ordering::Acquire),
            sum: u128::from(self.sum_low.load(Ordering::Acquire))
                | u128::from(self.sum_high.load(Ordering::Acquire)) << 64,
        }
    }

    async fn flush(&self) -> Result<(), SledError> {
        self.flusher.flush().await.map_err(|failure| match failure {
            FlushFailure::Sled(source) => SledError::Flush {
                location: self.location.clone(),
                source,
            },
            FlushFailure::Stopped => SledError::FlushStopped {
                location: self.location.clone(),
            },
        })
    }

    /// Refuses further changes, waits for the ones in progress, flushes, and
    /// records the exact content for the next open.
    async fn close(&self) -> Result<(), SledError> {
        self.closed.store(true, Ordering::Release);
        // A change in progress holds its lane; once every lane was free, the
        // closed flag stops the next one.
        for lane in self.lanes.iter() {
            drop(lane.lock().unwrap_or_else(PoisonError::into_inner));
        }
        self.flush().await?;
        self.record_clean()
    }

    /// Writes the "closed" record to `ACKED` (synced), unless the store is
    /// poisoned or the record is already there.
    fn record_clean(&self) -> Result<(), SledError> {
        let Some(acked) = &self.acked else {
            return Ok(());
        };
        if self.flusher.poisoned().is_some() {
            return Ok(());
        }
        let applied = self.progress.applied.load(Ordering::Acquire);
        if self.recorded_clean.load(Ordering::Acquire) == applied {
            return Ok(());
        }
        acked
            .write_durable(self.generation, Mark::Closed(self.digest()))
            .map_err(|e| SledError::io("writing", acked.path(), e))?;
        self.recorded_clean.store(applied, Ordering::Release);
        Ok(())
    }
}

impl Drop for Inner {
    /// The last handle is gone: flush and record the exact content, as a close
    /// does, logging what fails (no one is left to tell).
    fn drop(&mut self) {
        if self.acked.is_none() || self.flusher.poisoned().is_some() {
            return;
        }
        if self.recorded_clean.load(Ordering::Acquire)
            == self.progress.applied.load(Ordering::Acquire)
        {
            return;
        }
        let result = self
            .flusher
            .flush_now()
            .map_err(|source| SledError::Flush {
                location: self.location.clone(),
                source,
            })
            .and_then(|()| self.record_clean());
        if let Err(error) = result {
            tracing::warn!(%error, "closing {} at its last handle's drop", self.location);
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
        let contended = match layout::clear_unfinished_snapshots(path)? {
            layout::Sweep::Locked => sled::Error::Io(io::Error::other(format!(
                "could not acquire lock on {:?}: held by another handle or process",
                path.join("db")
            ))),
            layout::Sweep::Checked => match config.open() {
                Ok(db) => return Ok(db),
                Err(source) if is_lock_contention(&source) => source,
                Err(source) => {
                    return Err(SledError::Open {
                        path: path.to_path_buf(),
                        source,
                    });
                }
            },
        };
        if Instant::now() + pause > deadline {
            return Err(SledError::Locked {
                path: path.to_path_buf(),
                source: contended,
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
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
            .field("generation", &self.inner.generation)
            .finish_non_exhaustive()
    }
}

impl PersistentStorage for SledStorage {
    async fn try_read(&self, id: ActorId) -> Result<Vec<u8>, anyhow::Error> {
        let inner = &self.inner;
        let context = || format!("reading the snapshot of actor {id} from {}", inner.location);
        match inner.get(id) {
            Ok(Some(bytes)) if keys::is_tombstone(&bytes) => match Stored::of(&bytes) {
                Ok(_) => Err(anyhow::Error::new(SnapshotNotFound)),
                Err(damaged) => Err(anyhow::Error::new(damaged).context(context())),
            },
            Ok(Some(bytes)) => Ok(bytes.to_vec()),
            Ok(None) => Err(anyhow::Error::new(SnapshotNotFound)),
            Err(error) => Err(anyhow::Error::new(error).context(context())),
        }
    }

    async fn try_write(&self, id: ActorId, bytes: Vec<u8>) -> Result<(), anyhow::Error> {
        // The common limit first, before anything looks at (or copies) the bytes.
        envelope::check_len(id, bytes.len())?;
        let inner = &self.inner;
        let context = || format!("writing the snapshot of actor {id} to {}", inner.location);
        {
            let _lane = inner.lane(id);
            inner.check_writable()?;
            let old = inner.get(id).with_context(context)?;
            let was = old.as_deref().map(Stored::classify);
            let stamp = inner
                .claims
                .check_write(id, was.and_then(Stored::stamp), &bytes)?;
            let header = Header::peek(&bytes)?;
            let now = Stored::Snapshot {
                actor_type: header.actor_type,
                stamp,
            };
            inner
                .apply(id, old.as_deref(), was, IVec::from(bytes), now)
                .with_context(context)?;
            inner.claims.record_write(id, stamp);
        }
        self.settle().await.with_context(context)
    }

    async fn try_delete(&self, id: ActorId) -> Result<(), anyhow::Error> {
        let inner = &self.inner;
        let context = || {
            format!(
                "deleting the snapshot of actor {id} from {}",
                inner.location
            )
        };
        {
            let _lane = inner.lane(id);
            inner.check_writable()?;
            let old = inner.get(id).with_context(context)?;
            let was = old.as_deref().map(Stored::classify);
            let (actor_type, stamp) = match was {
                None | Some(Stored::Tombstone { .. }) => (None, None),
                Some(Stored::Snapshot { actor_type, stamp }) => (Some(actor_type), Some(stamp)),
                Some(Stored::Foreign) => (Some(uuid::Uuid::nil()), Some(Stamp::default())),
            };
            if let (Some(actor_type), Some(stamp)) = (actor_type, stamp) {
                let stone = keys::tombstone(actor_type, stamp);
                let now = Stored::Tombstone { actor_type, stamp };
                inner
                    .apply(id, old.as_deref(), was, IVec::from(stone), now)
                    .with_context(context)?;
            }
        }
        // Settle even if nothing was removed: a concurrent delete of the same id
        // may not be durable yet.
        self.settle().await.with_context(context)
    }

    async fn try_list(&self) -> Result<Vec<ActorId>, anyhow::Error> {
        let mut ids = Vec::new();
        for entry in self.inner.tree.range(..&keys::META[..]) {
            let (key, value) = entry
                .with_context(|| format!("listing the snapshots in {}", self.inner.location))?;
            // Keys of another shape are not ours (a tree shared by mistake).
            let Some(id) = keys::parse_id_key(&key) else {
                continue;
            };
            if !Stored::classify(&value).is_live() {
                continue;
            }
            ids.push(id);
        }
        Ok(ids)
    }

    async fn try_list_type(&self, actor_type: uuid::Uuid) -> Result<Vec<ActorId>, anyhow::Error> {
        let mut ids = Vec::new();
        for entry in self.inner.tree.scan_prefix(keys::type_prefix(actor_type)) {
            let (key, _) = entry.with_context(|| {
                format!(
                    "listing the snapshots of actor type {actor_type} in {}",
                    self.inner.location
                )
            })?;
            if let Some((_, id)) = keys::parse_type_key(&key) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    async fn try_claim(
        &self,
        id: ActorId,
        owner: OwnerId,
        mode: ClaimMode,
    ) -> Result<Claim, anyhow::Error> {
        let inner = &self.inner;
        let context = || format!("claiming actor {id} in {}", inner.location);
        let (claim, applied) = {
            let _lane = inner.lane(id);
            inner.check_writable()?;
            let stored = inner.get(id).with_context(context)?;
            let was = stored.as_deref().map(Stored::classify);
            let epoch = inner
                .claims
                .claim(id, owner, mode, was.and_then(Stored::stamp))?;
            let snapshot = stored
                .filter(|_| was.is_some_and(Stored::is_live))
                .map(|bytes| bytes.to_vec());
            (
                Claim { epoch, snapshot },
                inner.progress.applied.load(Ordering::Acquire),
            )
        };
        // The snapshot a claim returns is as durable as this handle's writes:
        // wait for the flush of a write that is applied but not yet flushed.
        if self.durability != Durability::Volatile
            && inner.progress.durable.load(Ordering::Acquire) < applied
        {
            inner.flush().await.with_context(context)?;
        }
        Ok(claim)
    }

    async fn try_release(
        &self,
        id: ActorId,
        owner: OwnerId,
        epoch: u64,
    ) -> Result<(), anyhow::Error> {
        let inner = &self.inner;
        let _lane = inner.lane(id);
        let stored = inner
            .get(id)
            .with_context(|| format!("releasing actor {id} in {}", inner.location))?;
        let stamp = stored
            .as_deref()
            .map(Stored::classify)
            .and_then(Stored::stamp);
        inner.claims.release(id, owner, epoch, stamp);
        Ok(())
    }

    async fn try_close(&self) -> Result<(), anyhow::Error> {
        Ok(self.inner.close().await?)
    }

    fn shared(&self) -> Option<SharedStorage> {
        Some(SharedStorage::new(self.clone()))
    }
}
