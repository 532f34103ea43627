//! Group commit: one `fsync` acknowledges every write inserted before it started.
//!
//! sled 0.34's `flush_async` can deadlock (sled issue #1308), so flushes run the
//! blocking `flush()` on a blocking thread. A flush costs about the same whether it
//! covers one write or a thousand, so concurrent writers share them:
//!
//! - `started` counts the flushes that have begun. A writer whose insert has
//!   completed needs flush number `started + 1`: the one that begins next, because
//!   a flush already running may have begun before its insert.
//! - The writer queues a waiter for that number and, if no flush loop is running,
//!   starts one on a blocking thread.
//! - The loop takes the next number, runs one flush, answers every waiter whose
//!   number it reached (with the flush's result), and repeats while waiters remain.
//!
//! So under load at most one flush runs at a time, and every writer waits for at
//! most the rest of the running flush plus one more.
//!
//! sled 0.34's `flush()` ends in `sync_file_range` on Linux, which neither
//! flushes the drive's write cache nor the file's metadata (its growing size),
//! and it never syncs blob files (values over about 128 KiB live in files of
//! their own). So when the database directory is known, each flush is followed
//! by an `fsync` of the log file, of the blob files written since the last
//! flush, and of the blob directory: the cost is one `fsync` per group commit.
//! Then the flush records in `ACKED` how many id keys it covered (see `acked`).
//!
//! A failed flush **poisons** the flusher: what reached the disk is unknown
//! (a failed `fsync` may have dropped dirty pages), so every later flush fails
//! too, and the storage refuses writes until the database is opened again.

use std::fs::File;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use crate::acked::{Acked, Mark};

/// Why a flush was not acknowledged.
#[derive(Debug)]
pub(crate) enum FlushFailure {
    /// sled's `flush()` or the `fsync` after it failed (now or earlier).
    Sled(sled::Error),
    /// The flush loop stopped without answering (it never ran, or panicked).
    Stopped,
}

type Ack = oneshot::Sender<Result<(), sled::Error>>;

struct Waiter {
    /// The number of the flush that covers this waiter's writes.
    needs: u64,
    ack: Ack,
}

#[derive(Default)]
struct State {
    /// Flushes begun so far; the running (or last) flush has this number.
    started: u64,
    /// Whether a flush loop is running (at most one is).
    running: bool,
    waiters: Vec<Waiter>,
    /// The first flush failure, if any.
    poisoned: Option<String>,
}

/// How far the writes have got, shared by the storage (which counts) and the
/// flusher (which records what each flush covered).
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Changes applied to the tree so far.
    pub(crate) applied: AtomicU64,
    /// `applied` as it was when the last successful flush began: those changes
    /// are durable.
    pub(crate) durable: AtomicU64,
    /// Id keys in the tree (they are never removed).
    pub(crate) keys: AtomicU64,
}

/// The files of a sled database directory that `fsync` makes durable.
pub(crate) struct FileSync {
    log: File,
    blobs: PathBuf,
    /// Blob files are named by the log sequence number that wrote them: those up
    /// to this one have been synced. Only the flush loop touches it.
    synced_blobs: Mutex<Option<u64>>,
}

impl FileSync {
    /// The log file `<dir>/db` and blob directory `<dir>/blobs` of the database
    /// in `dir` (sled 0.34's layout).
    pub(crate) fn new(dir: &Path) -> io::Result<Self> {
        Ok(Self {
            log: File::open(dir.join("db"))?,
            blobs: dir.join("blobs"),
            synced_blobs: Mutex::new(None),
        })
    }

    /// `fsync`s the log and the blob files written since the last call (making
    /// them 0600 on the way: sled creates them with the umask's mode).
    fn sync(&self) -> io::Result<()> {
        // fsync through any descriptor of the file flushes its data, metadata
        // and the drive cache.
        self.log.sync_all()?;
        let mut synced = self
            .synced_blobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut newest = *synced;
        let mut any = false;
        for entry in std::fs::read_dir(&self.blobs)? {
            let entry = entry?;
            let Some(lsn) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if synced.is_some_and(|done| lsn <= done) {
                continue;
            }
            let blob = File::open(entry.path()).and_then(|f| {
                f.set_permissions(std::fs::Permissions::from_mode(crate::layout::FILE_MODE))?;
                f.sync_all()
            });
            match blob {
                Ok(()) => {}
                // Garbage-collected meanwhile: nothing left to make durable.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            newest = newest.max(Some(lsn));
            any = true;
        }
        if any {
            File::open(&self.blobs)?.sync_all()?;
        }
        *synced = newest;
        Ok(())
    }
}

/// Where a flush records what it covered.
pub(crate) struct Ledger {
    pub(crate) acked: Arc<Acked>,
    pub(crate) generation: u64,
}

/// Called with each flush's number as it begins (tests pause flushes with it).
#[cfg(test)]
type FlushHook = Box<dyn Fn(u64) + Send + Sync>;

/// Shares flushes of one sled database between concurrent writers.
pub(crate) struct Flusher {
    /// Any tree of the database: `Tree::flush` flushes the whole database log.
    tree: sled::Tree,
    /// Present when the database directory is known.
    files: Option<FileSync>,
    ledger: Option<Ledger>,
    progress: Arc<Progress>,
    state: Mutex<State>,
    failpoint: Failpoint,
    #[cfg(test)]
    on_flush: Mutex<Option<FlushHook>>,
}

impl Flusher {
    pub(crate) fn new(
        tree: sled::Tree,
        files: Option<FileSync>,
        ledger: Option<Ledger>,
        progress: Arc<Progress>,
    ) -> Self {
        Self {
            tree,
            files,
            ledger,
            progress,
            state: Mutex::new(State::default()),
            failpoint: Failpoint::default(),
            #[cfg(test)]
            on_flush: Mutex::new(None),
        }
    }

    /// The first failure, once a flush (or a write, see [`poison`](Self::poison))
    /// failed.
    pub(crate) fn poisoned(&self) -> Option<String> {
        self.lock().poisoned.clone()
    }

    /// Records a failure after which nothing may be acknowledged any more.
    pub(crate) fn poison(&self, cause: String) {
        self.lock().poisoned.get_or_insert(cause);
    }

    /// Makes the next flush fail as a failing `fsync` would (EIO).
    #[cfg(feature = "failpoints")]
    pub(crate) fn fail_next_sync(&self) {
        self.failpoint
            .0
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// One flush: sled's, the `fsync`s sled leaves out, then the record of
    /// what it covered.
    fn flush_once(&self, number: u64) -> Result<(), sled::Error> {
        if let Some(cause) = self.poisoned() {
            return Err(sled::Error::Io(io::Error::other(format!(
                "an earlier flush failed: {cause}"
            ))));
        }
        // Read before the flush starts: every change counted here is in the
        // log that the flush writes out.
        let applied = self.progress.applied.load(Ordering::Acquire);
        let keys = self.progress.keys.load(Ordering::Acquire);
        #[cfg(test)]
        if let Some(hook) = &*self.on_flush.lock().unwrap_or_else(PoisonError::into_inner) {
            hook(number);
        }
        #[cfg(not(test))]
        let _ = number;
        let result = self.tree.flush().map(drop).and_then(|()| {
            self.failpoint.hit()?;
            if let Some(files) = &self.files {
                files.sync()?;
            }
            if let Some(ledger) = &self.ledger {
                ledger
                    .acked
                    .write_after_flush(ledger.generation, Mark::Open { keys })?;
            }
            Ok(())
        });
        match &result {
            Ok(()) => {
                self.progress.durable.fetch_max(applied, Ordering::AcqRel);
            }
            Err(error) => self.poison(error.to_string()),
        }
        result
    }

    /// A flush on the calling thread, outside the group commit: for the last
    /// handle's drop, where nothing can wait.
    pub(crate) fn flush_now(&self) -> Result<(), sled::Error> {
        let number = {
            let mut state = self.lock();
            state.started += 1;
            state.started
        };
        self.flush_once(number)
    }

    /// Resolves once a flush that began after this call has completed.
    pub(crate) async fn flush(self: &Arc<Self>) -> Result<(), FlushFailure> {
        let (ack, done) = oneshot::channel();
        let start = {
            let mut state = self.lock();
            let needs = state.started + 1;
            state.waiters.push(Waiter { needs, ack });
            !std::mem::replace(&mut state.running, true)
        };
        if start {
            self.start();
        }
        match done.await {
            Ok(result) => result.map_err(FlushFailure::Sled),
            Err(_) => Err(FlushFailure::Stopped),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic (every update is one
        // assignment or push), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the flush loop on a blocking thread. If the loop cannot start, its
    /// [`Runner`] is dropped, which answers the waiters with `Stopped`.
    fn start(self: &Arc<Self>) {
        let runner = Runner(Some(Arc::clone(self)));
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                // Fire and forget: the runner answers its waiters itself.
                drop(handle.spawn_blocking(move || runner.run()));
            }
            Err(_) => {
                // Called outside a tokio runtime: use a plain thread.
                if let Err(error) = std::thread::Builder::new()
                    .name("theta-sled-flush".into())
                    .spawn(move || runner.run())
                {
                    tracing::error!(%error, "could not start the sled flush thread");
                }
            }
        }
    }
}

/// The flush loop. Holds the flusher only while it runs; dropping it without a
/// normal finish (never started, panicked) releases the waiters with `Stopped`
/// and lets the next writer start a new loop.
struct Runner(Option<Arc<Flusher>>);

impl Runner {
    fn run(mut self) {
        let Some(flusher) = self.0.as_ref().map(Arc::clone) else {
            return;
        };
        loop {
            let this = {
                let mut state = flusher.lock();
                if state.waiters.is_empty() {
                    state.running = false;
                    self.0 = None;
                    return;
                }
                state.started += 1;
                state.started
            };
            let result = flusher.flush_once(this);
            let (ready, more) = {
                let mut state = flusher.lock();
                let (ready, waiting): (Vec<_>, Vec<_>) =
                    state.waiters.drain(..).partition(|w| w.needs <= this);
                state.waiters = waiting;
                let more = !state.waiters.is_empty();
                if !more {
                    state.running = false;
                }
                (ready, more)
            };
            if !more {
                // Let go of the database before acknowledging, so that a caller
                // who drops its last handle after the acknowledgement really
                // closes the database (and can reopen it at once).
                self.0 = None;
                drop(flusher);
                answer(ready, &result);
                return;
            }
            answer(ready, &result);
        }
    }
}

fn answer(ready: Vec<Waiter>, result: &Result<(), sled::Error>) {
    for waiter in ready {
        // A waiter whose future was dropped no longer listens; that is fine.
        let _ = waiter.ack.send(result.clone());
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if let Some(flusher) = self.0.take() {
            let mut state = flusher.lock();
            state.running = false;
            // Dropping the acknowledgement senders wakes the waiters with `Stopped`.
            state.waiters.clear();
        }
    }
}

/// Test-only fault injection (cargo feature `failpoints`): without the feature
/// it is an empty type whose check compiles to nothing.
#[derive(Debug, Default)]
struct Failpoint(#[cfg(feature = "failpoints")] std::sync::atomic::AtomicBool);

impl Failpoint {
    #[cfg(feature = "failpoints")]
    fn hit(&self) -> io::Result<()> {
        if self.0.swap(false, std::sync::atomic::Ordering::SeqCst) {
            // EIO, as a failing disk reports it from fsync.
            return Err(io::Error::from_raw_os_error(5));
        }
        Ok(())
    }

    #[cfg(not(feature = "failpoints"))]
    #[inline(always)]
    fn hit(&self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn flusher(dir: &Path, files: bool) -> (sled::Db, Arc<Flusher>) {
        let path = dir.join("db");
        let db = sled::open(&path).expect("open");
        let files = files.then(|| FileSync::new(&path).expect("files"));
        let tree = db.open_tree("t").expect("tree");
        let flusher = Flusher::new(tree, files, None, Arc::default());
        (db, Arc::new(flusher))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_flushes_share_fsyncs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, flusher) = flusher(dir.path(), false);
        // The first flush waits until every writer has queued behind it.
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Mutex::new(released);
        *flusher.on_flush.lock().unwrap() = Some(Box::new(move |number| {
            if number == 1 {
                let _ = released.lock().unwrap().recv_timeout(TIMEOUT);
            }
        }));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..64u32 {
            db.insert(i.to_le_bytes(), vec![1u8; 100]).expect("insert");
            let flusher = Arc::clone(&flusher);
            tasks.spawn(async move { flusher.flush().await });
        }
        let queued = async {
            while flusher.lock().waiters.len() < 64 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(TIMEOUT, queued)
            .await
            .expect("every writer queues a waiter");
        release.send(()).expect("release the first flush");
        let all = async {
            while let Some(result) = tasks.join_next().await {
                result.expect("join").expect("flush");
            }
        };
        tokio::time::timeout(TIMEOUT, all).await.expect("timed out");
        let state = flusher.lock();
        // The running flush serves the writers queued before it began; one more
        // serves every writer that queued while it ran.
        assert!(
            state.started <= 2,
            "{} flushes for 64 waiters",
            state.started
        );
        assert!(state.waiters.is_empty());
    }

    /// A flush that is already running may have begun before a write: a waiter
    /// that arrives during it is answered by the next flush, not by this one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_during_a_running_flush_waits_for_the_next_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_db, flusher) = flusher(dir.path(), false);
        let (started_tx, started) = mpsc::channel::<u64>();
        let (release, released) = mpsc::channel::<()>();
        let released = Mutex::new(released);
        *flusher.on_flush.lock().unwrap() = Some(Box::new(move |number| {
            started_tx.send(number).expect("test listening");
            released
                .lock()
                .unwrap()
                .recv_timeout(TIMEOUT)
                .expect("test released the flush");
        }));
        let wait_started = |expected: u64| {
            let number = started.recv_timeout(TIMEOUT).expect("a flush started");
            assert_eq!(number, expected);
        };

        let first = tokio::spawn({
            let flusher = Arc::clone(&flusher);
            async move { flusher.flush().await }
        });
        wait_started(1);
        // Flush 1 is running: this waiter needs flush 2.
        let second = tokio::spawn({
            let flusher = Arc::clone(&flusher);
            async move { flusher.flush().await }
        });
        let queued = async {
            loop {
                if flusher.lock().waiters.iter().any(|w| w.needs == 2) {
                    break;
                }
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(TIMEOUT, queued)
            .await
            .expect("the second waiter queued");
        release.send(()).unwrap();
        tokio::time::timeout(TIMEOUT, first)
            .await
            .expect("first answered")
            .unwrap()
            .expect("first flush");
        // Flush 1 answered its own waiter only; flush 2 has started for the
        // second and holds it until released.
        wait_started(2);
        assert!(
            !second.is_finished(),
            "answered by the flush before its write"
        );
        release.send(()).unwrap();
        tokio::time::timeout(TIMEOUT, second)
            .await
            .expect("second answered")
            .unwrap()
            .expect("second flush");
        assert_eq!(flusher.lock().started, 2);
    }

    /// With the directory known, a flush `fsync`s the blob files written since
    /// the last one (and narrows them to 0600), and an error of that step
    /// reaches every waiter and poisons the flusher.
    #[tokio::test(flavor = "current_thread")]
    async fn the_file_sync_covers_new_blobs_and_reports_its_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, flusher) = flusher(dir.path(), true);
        let files = flusher.files.as_ref().expect("files");
        db.insert(b"large", vec![9u8; 1 << 20]).expect("insert");
        db.insert(b"small", vec![1u8; 10]).expect("insert");
        tokio::time::timeout(TIMEOUT, flusher.flush())
            .await
            .expect("timed out")
            .expect("flush");
        let blobs: Vec<_> = std::fs::read_dir(dir.path().join("db/blobs"))
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        assert!(!blobs.is_empty(), "a 1 MiB value is a blob file");
        let newest: u64 = blobs
            .iter()
            .map(|b| b.file_name().to_str().unwrap().parse::<u64>().unwrap())
            .max()
            .unwrap();
        assert_eq!(*files.synced_blobs.lock().unwrap(), Some(newest));
        for blob in &blobs {
            let mode = blob.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{:?}", blob.path());
        }

        // The blob directory replaced by a file: the next sync cannot list it.
        let blob_dir = dir.path().join("db/blobs");
        std::fs::rename(&blob_dir, dir.path().join("moved-blobs")).unwrap();
        std::fs::write(&blob_dir, b"not a directory").unwrap();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let flusher = Arc::clone(&flusher);
                tokio::spawn(async move { flusher.flush().await })
            })
            .collect();
        for waiter in waiters {
            let result = tokio::time::timeout(TIMEOUT, waiter)
                .await
                .expect("timed out")
                .unwrap();
            match result {
                // (sled's `Clone` of an I/O error keeps its kind, not its code.)
                Err(FlushFailure::Sled(sled::Error::Io(e))) => assert!(
                    e.kind() == io::ErrorKind::NotADirectory
                        || e.to_string().contains("earlier flush"),
                    "{e}"
                ),
                other => panic!("expected the sync's error, got {other:?}"),
            }
        }
        assert!(flusher.poisoned().is_some());
        // Poisoned: even with the directory back, flushes keep failing.
        std::fs::remove_file(&blob_dir).unwrap();
        std::fs::rename(dir.path().join("moved-blobs"), &blob_dir).unwrap();
        assert!(matches!(
            tokio::time::timeout(TIMEOUT, flusher.flush())
                .await
                .expect("timed out"),
            Err(FlushFailure::Sled(_))
        ));
    }
}
