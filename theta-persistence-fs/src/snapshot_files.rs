//! The snapshot files: one per actor, `snapshots/<aa>/<uuid>.snap`, brought up
//! to date by checkpoints (a write is acknowledged once it is in the journal).
//!
//! A checkpoint writes each file as a temp file `.<uuid>.<n>.tmp` in its shard
//! directory and renames it over `<uuid>.snap` (a delete unlinks the file),
//! without syncs; one `syncfs` then makes the whole checkpoint durable. A file
//! the checkpoint was renaming when the power went out may be torn (a file
//! system may persist a rename before the data), but its write is then still in
//! the journal, which the next open replays.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use theta::ActorId;
use theta::persistence::envelope::{self, EnvelopeError, HEADER_LEN, Header, Stamp};

use crate::dir::{Dir, Kind, StoreFile};
use crate::error::FsError;
use crate::failpoint::{Failpoints, Step};
use crate::layout;

/// Files per checkpoint thread, and most checkpoint (and scan) threads: file
/// operations block, and overlapping them keeps the disk busy.
const FILES_PER_WORKER: usize = 8;
const MAX_WORKERS: usize = 8;

/// What the header of a stored snapshot says: its actor type and stamp, or
/// `None` when the file is not an envelope.
pub(crate) type Described = Option<(uuid::Uuid, Stamp)>;

/// The `snapshots/` directory.
#[derive(Debug)]
pub(crate) struct SnapshotFiles {
    dir: Dir,
    /// Shard directories known to exist.
    shards: [AtomicBool; 256],
    nonce: AtomicU64,
}

/// A snapshot file opened for reading.
#[derive(Debug)]
pub(crate) struct Opened {
    file: StoreFile,
    len: u64,
    path: PathBuf,
}

impl Opened {
    /// The file's length.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Reads the whole file. Never allocates more than the largest envelope
    /// theta writes, whatever the file (damaged, or not ours) claims.
    pub(crate) fn read(self) -> Result<Vec<u8>, FsError> {
        let limit = envelope::MAX_ENVELOPE_LEN as u64;
        let oversized = |len| FsError::Oversized {
            path: self.path.clone(),
            len,
            limit,
        };
        if self.len > limit {
            return Err(oversized(self.len));
        }
        let mut bytes = Vec::with_capacity(self.len as usize);
        (&self.file)
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| FsError::io("reading", &self.path, e))?;
        if bytes.len() as u64 > limit {
            return Err(oversized(bytes.len() as u64));
        }
        Ok(bytes)
    }
}

impl SnapshotFiles {
    pub(crate) fn new(dir: Dir) -> Self {
        Self {
            dir,
            shards: std::array::from_fn(|_| AtomicBool::new(false)),
            nonce: AtomicU64::new(0),
        }
    }

    /// The `snapshots/` directory.
    pub(crate) fn dir(&self) -> &Dir {
        &self.dir
    }

    /// The path of the snapshot file of `id`.
    pub(crate) fn path_of(&self, id: ActorId) -> PathBuf {
        self.dir.join(layout::snapshot_name(id))
    }

    /// Opens the snapshot file of `id`; `None` if there is none.
    pub(crate) fn open(&self, id: ActorId) -> Result<Option<Opened>, FsError> {
        let name = layout::snapshot_name(id);
        let file = match self.dir.open_read(&name) {
            Ok(file) => file,
            // A missing shard directory is "absent" as well.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FsError::io("opening", self.dir.join(&name), e)),
        };
        let len = file
            .len()
            .map_err(|e| FsError::io("inspecting", self.dir.join(&name), e))?;
        Ok(Some(Opened {
            file,
            len,
            path: self.dir.join(name),
        }))
    }

    /// Walks every shard directory: removes the temp files a crash left behind
    /// (only this store writes in the directory and it holds the lock, so every
    /// temp file found is garbage) and reads the header of every snapshot file.
    /// Files with other names are ignored.
    pub(crate) fn scan(&self) -> Result<Vec<(ActorId, Described)>, FsError> {
        let mut shards = Vec::new();
        for entry in self.dir.entries()? {
            if entry.kind == Kind::Dir
                && let Some(byte) = entry.name().and_then(layout::parse_shard_name)
            {
                shards.push(byte);
            }
        }
        shards.sort_unstable();
        for &byte in &shards {
            self.shards[byte as usize].store(true, Ordering::Relaxed);
        }
        let workers = shards.len().div_ceil(4).clamp(1, MAX_WORKERS);
        let mut parts: Vec<Vec<u8>> = vec![Vec::new(); workers];
        for (i, byte) in shards.into_iter().enumerate() {
            parts[i % workers].push(byte);
        }
        let mut found = Vec::new();
        for part in parallel(parts, |part| -> Result<_, FsError> {
            let mut found = Vec::new();
            for byte in part {
                self.scan_shard(byte, &mut found)?;
            }
            Ok(found)
        }) {
            found.extend(part?);
        }
        Ok(found)
    }

    fn scan_shard(&self, byte: u8, found: &mut Vec<(ActorId, Described)>) -> Result<(), FsError> {
        let shard_name = format!("{byte:02x}");
        let shard = self.dir.open_sub(&shard_name)?;
        for entry in shard.entries()? {
            let Some(name) = entry.name() else { continue };
            if entry.kind != Kind::File {
                continue;
            }
            if layout::is_temp_name(name) {
                shard
                    .remove_if_present(name)
                    .map_err(|e| FsError::io("removing stale temp file", shard.join(name), e))?;
                continue;
            }
            let Some(id) = layout::parse_snapshot_name(byte, name) else {
                continue;
            };
            let file = match shard.open_read(name) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(FsError::io("opening", shard.join(name), e)),
            };
            let described = file
                .len()
                .and_then(|len| read_header(&file, len))
                .map_err(|e| FsError::io("reading the header of", shard.join(name), e))?
                .ok()
                .map(|header| (header.actor_type, header.stamp()));
            found.push((id, described));
        }
        Ok(())
    }

    /// Writes (or, for `None`, removes) the file of every entry, on a few
    /// threads; no syncs. Stops at the first error.
    pub(crate) fn write_all(
        &self,
        entries: Vec<(ActorId, Option<Arc<Vec<u8>>>)>,
        failpoints: &Failpoints,
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
                    Some(bytes) => self.write(id, &bytes, failpoints)?,
                    None => self.remove(id)?,
                }
            }
            Ok(())
        })
        .into_iter()
        .collect()
    }

    fn ensure_shard(&self, id: ActorId) -> Result<(), FsError> {
        let byte = layout::shard_byte(id) as usize;
        if !self.shards[byte].load(Ordering::Acquire) {
            // The new shard's entry in `snapshots/` is made durable by the
            // checkpoint's `syncfs`.
            self.dir.create_dir(&layout::shard_name(id))?;
            self.shards[byte].store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Temp file, written whole, renamed over `<uuid>.snap`.
    fn write(&self, id: ActorId, bytes: &[u8], failpoints: &Failpoints) -> Result<(), FsError> {
        self.ensure_shard(id)?;
        let mut recreated = false;
        let (temp, mut file) = loop {
            let nonce = self.nonce.fetch_add(1, Ordering::Relaxed);
            let temp = layout::temp_name(id, nonce);
            match self.dir.create_new(&temp) {
                Ok(file) => break (temp, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound && !recreated => {
                    // The shard directory vanished under us; recreate it once.
                    self.dir.create_dir(&layout::shard_name(id))?;
                    recreated = true;
                }
                Err(e) => return Err(FsError::io("creating temp file", self.dir.join(temp), e)),
            }
        };
        let written = file
            .write_all(bytes)
            .and_then(|()| failpoints.hit(Step::AfterTempWrite));
        drop(file);
        if let Err(e) = written {
            let _ = self.dir.remove(&temp);
            return Err(FsError::io("writing temp file", self.dir.join(temp), e));
        }
        let target = layout::snapshot_name(id);
        let renamed = failpoints
            .hit(Step::BeforeRename)
            .and_then(|()| self.dir.rename(&temp, &target));
        if let Err(e) = renamed {
            let _ = self.dir.remove(&temp);
            return Err(FsError::io(
                "renaming temp file over",
                self.dir.join(target),
                e,
            ));
        }
        Ok(())
    }

    fn remove(&self, id: ActorId) -> Result<(), FsError> {
        let target = layout::snapshot_name(id);
        self.dir
            .remove_if_present(&target)
            .map(|_| ())
            .map_err(|e| FsError::io("removing", self.dir.join(target), e))
    }

    /// One `syncfs` of the store's file system: every file written and removed
    /// so far is durable once it returns `Ok`.
    pub(crate) fn sync(&self, failpoints: &Failpoints) -> io::Result<()> {
        failpoints
            .hit(Step::CheckpointSync)
            .and_then(|()| self.dir.syncfs())
    }
}

/// The envelope header at the start of `file` (of `len` bytes).
fn read_header(file: &StoreFile, len: u64) -> io::Result<Result<Header, EnvelopeError>> {
    let mut header = [0u8; HEADER_LEN];
    let want = (HEADER_LEN as u64).min(len) as usize;
    file.read_exact_at(&mut header[..want], 0)?;
    Ok(Header::peek_prefix(&header[..want], len))
}

/// Runs `f` on each part, the first on this thread and the others on scoped
/// threads.
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
