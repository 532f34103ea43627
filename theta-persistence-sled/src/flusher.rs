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
//! - The loop takes the next number, runs one `flush()`, answers every waiter whose
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

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

/// Why a flush was not acknowledged.
#[derive(Debug)]
pub(crate) enum FlushFailure {
    /// sled's `flush()` or the `fsync` after it failed.
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
            match File::open(entry.path()).and_then(|f| f.sync_all()) {
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

/// Shares `flush()` calls of one sled database between concurrent writers.
pub(crate) struct Flusher {
    /// Any tree of the database: `Tree::flush` flushes the whole database log.
    tree: sled::Tree,
    /// Present when the database directory is known.
    files: Option<FileSync>,
    state: Mutex<State>,
}

impl Flusher {
    pub(crate) fn new(tree: sled::Tree, files: Option<FileSync>) -> Self {
        Self {
            tree,
            files,
            state: Mutex::new(State::default()),
        }
    }

    /// One sled flush, then the `fsync`s sled leaves out.
    fn flush_once(&self) -> Result<(), sled::Error> {
        self.tree.flush()?;
        if let Some(files) = &self.files {
            files.sync()?;
        }
        Ok(())
    }

    /// Resolves once a `flush()` that began after this call has completed.
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
            let result = flusher.flush_once();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_flushes_share_fsyncs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path().join("db")).expect("open");
        let flusher = Arc::new(Flusher::new(db.open_tree("t").expect("tree"), None));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..64u32 {
            db.insert(i.to_le_bytes(), vec![1u8; 100]).expect("insert");
            let flusher = Arc::clone(&flusher);
            tasks.spawn(async move { flusher.flush().await });
        }
        let all = async {
            while let Some(result) = tasks.join_next().await {
                assert!(result.expect("join").is_ok());
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), all)
            .await
            .expect("timed out");
        let state = flusher.lock();
        // 64 waiters queued before the first flush could finish: a handful of
        // flushes serve them all.
        assert!(
            state.started < 8,
            "{} flushes for 64 waiters",
            state.started
        );
        assert!(state.waiters.is_empty());
    }
}
