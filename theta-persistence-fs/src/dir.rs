//! [`Dir`]: a handle to one directory of the store, and every file-system call
//! the store makes.
//!
//! Files are opened, created, renamed and removed *relative to a directory
//! handle* (`openat`, `renameat`, `unlinkat`), never by a path from the root:
//! a store whose directory is removed while it is open then fails (`ENOENT`)
//! instead of writing into a directory of the same name created meanwhile, and
//! [`Dir::check_in_place`] tells whether the path still leads to the handle's
//! directory. The [`StoreFile`]s this module returns are read, written and
//! synced by `journal` (segments) and `snapshot_files` (snapshot files) through
//! their methods; no other module touches the disk.
//!
//! This module is the store's I/O seam: [`Disk`] says which disk the store is
//! on, the real one (`Disk::Os`, plain system calls) or, with the `sim` feature,
//! a simulated one ([`SimDisk`](crate::sim::SimDisk)) that keeps unsynced data
//! apart from synced data and can lose power.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::error::{Failure, FsError};
#[cfg(feature = "sim")]
use crate::sim::{OpenMode, SimDir, SimDisk, SimFile, SimKind, SimLock};

/// Directories are created 0700.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Files are created 0600.
pub(crate) const FILE_MODE: u32 = 0o600;

/// The disk the store is on: the real one, or (feature `sim`) a simulated one.
/// Without the feature this has one variant, so every `match` on it (and on
/// [`Dir`]'s and [`StoreFile`]'s insides) is compiled away: the real path is
/// the plain system call.
#[derive(Debug, Clone, Default)]
pub(crate) enum Disk {
    /// The operating system's file systems.
    #[default]
    Os,
    /// A [`SimDisk`].
    #[cfg(feature = "sim")]
    Sim(SimDisk),
}

impl Disk {
    /// Creates the directory at `path` and its missing ancestors, 0700, and
    /// syncs the parent of every directory it created (`every`: of every
    /// directory on the path), so that their entries are durable.
    ///
    /// `every` is for a store not marked yet (no `FORMAT`): an earlier open
    /// may have created a directory on the path and failed to sync its parent
    /// (`EIO`), leaving its entry unsynced, and a power loss would then take
    /// the store with it, acknowledged writes and all (found by the power-loss
    /// simulator: `tests/power_loss.rs`). Such an open never wrote `FORMAT`, so
    /// a marked store needs no more than the directories created now. With
    /// `every`, a directory this call did not create whose parent cannot be
    /// opened (no read permission) was not created by a store (it makes them
    /// 0700, its own) and is skipped; a failed sync is reported.
    pub(crate) fn create_dir_all_durable(&self, path: &Path, every: bool) -> Result<(), FsError> {
        if !every && self.is_dir(path) {
            // Nothing to create (the common case: one `stat`, as before).
            return Ok(());
        }
        let absolute = match self {
            Disk::Os => {
                std::path::absolute(path).map_err(|e| FsError::io("creating directory", path, e))?
            }
            #[cfg(feature = "sim")]
            Disk::Sim(_) => path.to_path_buf(),
        };
        let mut chain: Vec<&Path> = absolute.ancestors().collect();
        chain.reverse();
        for dir in chain {
            let Some(parent) = dir.parent() else {
                continue; // the root
            };
            let created = self
                .mkdir(dir)
                .map_err(|e| FsError::io("creating directory", dir, e))?;
            if !created && !every {
                continue;
            }
            match Dir::open(self, parent) {
                Ok(parent) => parent.sync()?,
                Err(_) if !created => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether `path` is a directory.
    fn is_dir(&self, path: &Path) -> bool {
        match self {
            Disk::Os => path.is_dir(),
            #[cfg(feature = "sim")]
            Disk::Sim(disk) => disk.open_dir(path).is_ok(),
        }
    }

    /// Creates the directory `dir` (0700) unless it is one; whether it did.
    fn mkdir(&self, dir: &Path) -> io::Result<bool> {
        match self {
            Disk::Os => {
                if dir.is_dir() {
                    return Ok(false);
                }
                match DirBuilder::new().mode(DIR_MODE).create(dir) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(false),
                    Err(e) => Err(e),
                }
            }
            #[cfg(feature = "sim")]
            Disk::Sim(disk) => disk.mkdir(dir),
        }
    }
}

/// An open directory of the store.
#[derive(Debug)]
pub(crate) struct Dir {
    inner: DirInner,
    /// As given (for messages).
    path: PathBuf,
}

#[derive(Debug)]
enum DirInner {
    Os {
        file: File,
        /// Made absolute when opened: what [`Dir::check_in_place`] looks up, so
        /// that a change of the working directory is not taken for a moved
        /// store.
        absolute: PathBuf,
        /// `(st_dev, st_ino)` when it was opened.
        identity: (u64, u64),
    },
    #[cfg(feature = "sim")]
    Sim { dir: SimDir, absolute: PathBuf },
}

/// A file of the store, opened through a [`Dir`]: every read, write, length
/// change and sync of it goes through here.
#[derive(Debug)]
pub(crate) struct StoreFile(FileInner);

#[derive(Debug)]
enum FileInner {
    Os(File),
    #[cfg(feature = "sim")]
    Sim(SimFile),
}

impl StoreFile {
    /// The file's length.
    pub(crate) fn len(&self) -> io::Result<u64> {
        match &self.0 {
            FileInner::Os(file) => Ok(file.metadata()?.len()),
            #[cfg(feature = "sim")]
            FileInner::Sim(file) => file.len(),
        }
    }

    /// How many names the file has (0: unlinked).
    pub(crate) fn nlink(&self) -> io::Result<u64> {
        match &self.0 {
            FileInner::Os(file) => Ok(file.metadata()?.nlink()),
            #[cfg(feature = "sim")]
            FileInner::Sim(file) => file.nlink(),
        }
    }

    /// `pwrite` of all of `bytes` at `at`.
    pub(crate) fn write_all_at(&self, bytes: &[u8], at: u64) -> io::Result<()> {
        match &self.0 {
            FileInner::Os(file) => file.write_all_at(bytes, at),
            #[cfg(feature = "sim")]
            FileInner::Sim(file) => file.write_all_at(bytes, at),
        }
    }

    /// Writes all of `bytes` at the file position.
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.0 {
            FileInner::Os(file) => file.write_all(bytes),
            #[cfg(feature = "sim")]
            FileInner::Sim(file) => file.write_all(bytes),
        }
    }

    /// `pread` filling `buf` from `at`.
    pub(crate) fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        match &self.0 {
            FileInner::Os(file) => file.read_exact_at(buf, at),
            #[cfg(feature = "sim")]
            FileInner::Sim(file) => {
                let got = file.read_at(buf, at)?;
                if got < buf.len() {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
                }
                Ok(())
            }
        }
    }

    /// `ftruncate`.
    pub(crate) fn set_len(&self, len: u64) -> io::Result<()> {
        match &self.0 {
            FileInner::Os(file) => file.set_len(len),
            #[cfg(feature = "sim")]
            FileInner::Sim(file) => file.set_len(len),
        }
    }

    /// `fdatasync`.
    pub(crate) fn sync_data(&self) -> io::Result<()> {
        match &self.0 {
            FileInner::Os(file) => file.sync_data(),
            #[cfg(feature = "sim")]
            FileInner::Sim(file) => file.sync(false),
        }
    }
}

impl Read for &StoreFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.0 {
            FileInner::Os(file) => {
                let mut file: &File = file;
                file.read(buf)
            }
            #[cfg(feature = "sim")]
            FileInner::Sim(file) => file.read(buf),
        }
    }
}

impl Read for StoreFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Seek for &StoreFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match &self.0 {
            FileInner::Os(file) => {
                let mut file: &File = file;
                file.seek(to)
            }
            #[cfg(feature = "sim")]
            FileInner::Sim(file) => file.seek(to),
        }
    }
}

/// The directory's `flock`, held until dropped (never read: holding it is
/// its use).
#[derive(Debug)]
pub(crate) struct Lock(#[expect(dead_code, reason = "held, not read")] LockInner);

#[derive(Debug)]
enum LockInner {
    Os(#[expect(dead_code, reason = "held, not read")] File),
    #[cfg(feature = "sim")]
    Sim(#[expect(dead_code, reason = "held, not read")] SimLock),
}

/// What kind of entry a directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Other,
}

#[cfg(feature = "sim")]
impl From<SimKind> for Kind {
    fn from(kind: SimKind) -> Self {
        match kind {
            SimKind::File => Kind::File,
            SimKind::Dir => Kind::Dir,
        }
    }
}

/// One entry of a directory.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) name: OsString,
    pub(crate) kind: Kind,
}

impl Entry {
    /// The name, if it is UTF-8 (every name the store writes is).
    pub(crate) fn name(&self) -> Option<&str> {
        self.name.to_str()
    }
}

impl Dir {
    /// Opens the directory at `path` on `disk`.
    pub(crate) fn open(disk: &Disk, path: &Path) -> Result<Dir, FsError> {
        match disk {
            Disk::Os => {
                let absolute = std::path::absolute(path)
                    .map_err(|e| FsError::io("opening directory", path, e))?;
                let file =
                    File::open(path).map_err(|e| FsError::io("opening directory", path, e))?;
                Self::from_file(file, path.to_path_buf(), absolute)
            }
            #[cfg(feature = "sim")]
            Disk::Sim(disk) => Ok(Dir {
                inner: DirInner::Sim {
                    dir: disk
                        .open_dir(path)
                        .map_err(|e| FsError::io("opening directory", path, e))?,
                    absolute: path.to_path_buf(),
                },
                path: path.to_path_buf(),
            }),
        }
    }

    fn from_file(file: File, path: PathBuf, absolute: PathBuf) -> Result<Dir, FsError> {
        let meta = file
            .metadata()
            .map_err(|e| FsError::io("inspecting directory", &path, e))?;
        if !meta.is_dir() {
            return Err(FsError::io(
                "opening directory",
                &path,
                io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        Ok(Dir {
            inner: DirInner::Os {
                file,
                absolute,
                identity: (meta.dev(), meta.ino()),
            },
            path,
        })
    }

    /// Opens the subdirectory `name`.
    pub(crate) fn open_sub(&self, name: &str) -> Result<Dir, FsError> {
        let path = self.join(name);
        let failed = |e: io::Error| FsError::io("opening directory", &path, e);
        match &self.inner {
            DirInner::Os { file, absolute, .. } => {
                let fd = rustix::fs::openat(
                    file,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| failed(e.into()))?;
                let absolute = absolute.join(name);
                Self::from_file(File::from(fd), path, absolute)
            }
            #[cfg(feature = "sim")]
            DirInner::Sim { dir, absolute } => Ok(Dir {
                inner: DirInner::Sim {
                    dir: dir.open_sub(name).map_err(failed)?,
                    absolute: absolute.join(name),
                },
                path,
            }),
        }
    }

    /// The directory's path (as opened).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in this directory, for messages.
    pub(crate) fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// `openat` of `name` with `flags` (and `CLOEXEC`), 0600 if it creates it.
    fn open_file(&self, name: &str, flags: OFlags) -> io::Result<StoreFile> {
        match &self.inner {
            DirInner::Os { file, .. } => {
                let fd = rustix::fs::openat(
                    file,
                    name,
                    flags | OFlags::CLOEXEC,
                    Mode::from_raw_mode(FILE_MODE),
                )?;
                Ok(StoreFile(FileInner::Os(File::from(fd))))
            }
            #[cfg(feature = "sim")]
            DirInner::Sim { dir, .. } => {
                let mode = if !flags.contains(OFlags::CREATE) {
                    OpenMode::Existing
                } else if flags.contains(OFlags::EXCL) {
                    OpenMode::CreateNew
                } else if flags.contains(OFlags::TRUNC) {
                    OpenMode::CreateTruncate
                } else {
                    OpenMode::CreateOrOpen
                };
                Ok(StoreFile(FileInner::Sim(dir.open(name, mode)?)))
            }
        }
    }

    /// Opens `name` (a relative path below this directory) for reading.
    pub(crate) fn open_read(&self, name: &str) -> io::Result<StoreFile> {
        self.open_file(name, OFlags::RDONLY)
    }

    /// Opens the existing file `name` for reading and writing.
    pub(crate) fn open_rw(&self, name: &str) -> io::Result<StoreFile> {
        self.open_file(name, OFlags::RDWR)
    }

    /// Creates `name` (0600); fails if it exists.
    pub(crate) fn create_new(&self, name: &str) -> io::Result<StoreFile> {
        self.open_file(name, OFlags::RDWR | OFlags::CREATE | OFlags::EXCL)
    }

    /// Creates `name` (0600), emptying it if it exists.
    pub(crate) fn create_truncate(&self, name: &str) -> io::Result<StoreFile> {
        self.open_file(name, OFlags::RDWR | OFlags::CREATE | OFlags::TRUNC)
    }

    /// Takes the `flock` of `name` (created 0600 if needed). It belongs to the
    /// open file description, so a second lock of the same directory in this
    /// process conflicts too ([`FsError::Locked`], naming this directory).
    pub(crate) fn lock(&self, name: &str) -> Result<Lock, FsError> {
        let locked = || FsError::Locked {
            path: self.path.clone(),
        };
        match &self.inner {
            DirInner::Os { file, .. } => {
                let fd = rustix::fs::openat(
                    file,
                    name,
                    OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC,
                    Mode::from_raw_mode(FILE_MODE),
                )
                .map_err(|e| FsError::io("opening lock file", self.join(name), e.into()))?;
                let lock = File::from(fd);
                match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                {
                    Ok(()) => Ok(Lock(LockInner::Os(lock))),
                    Err(rustix::io::Errno::WOULDBLOCK) => Err(locked()),
                    Err(e) => Err(FsError::io("locking", self.join(name), e.into())),
                }
            }
            #[cfg(feature = "sim")]
            DirInner::Sim { dir, .. } => match dir.lock(name) {
                Ok(Some(lock)) => Ok(Lock(LockInner::Sim(lock))),
                Ok(None) => Err(locked()),
                Err(e) => Err(FsError::io("locking", self.join(name), e)),
            },
        }
    }

    /// Creates the subdirectory `name` (0700); `Ok(false)` if it exists.
    pub(crate) fn create_dir(&self, name: &str) -> Result<bool, FsError> {
        let made: io::Result<()> = match &self.inner {
            DirInner::Os { file, .. } => {
                rustix::fs::mkdirat(file, name, Mode::from_raw_mode(DIR_MODE)).map_err(Into::into)
            }
            #[cfg(feature = "sim")]
            DirInner::Sim { dir, .. } => dir.mkdir(name),
        };
        match made {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match self.kind_of(name) {
                Ok(Some(Kind::Dir)) => Ok(false),
                _ => Err(FsError::io(
                    "creating directory",
                    self.join(name),
                    io::Error::new(io::ErrorKind::AlreadyExists, "a file of that name exists"),
                )),
            },
            Err(e) => Err(FsError::io("creating directory", self.join(name), e)),
        }
    }

    /// Renames `from` to `to` (both relative to this directory), replacing `to`.
    pub(crate) fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        match &self.inner {
            DirInner::Os { file, .. } => {
                rustix::fs::renameat(file, from, file, to)?;
                Ok(())
            }
            #[cfg(feature = "sim")]
            DirInner::Sim { dir, .. } => dir.rename(from, to),
        }
    }

    /// Removes the file `name`.
    pub(crate) fn remove(&self, name: &str) -> io::Result<()> {
        match &self.inner {
            DirInner::Os { file, .. } => {
                rustix::fs::unlinkat(file, name, AtFlags::empty())?;
                Ok(())
            }
            #[cfg(feature = "sim")]
            DirInner::Sim { dir, .. } => dir.unlink(name),
        }
    }

    /// Removes the file `name`; `Ok(false)` if there was none.
    pub(crate) fn remove_if_present(&self, name: &str) -> io::Result<bool> {
        match self.remove(name) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `fsync` of the directory: the entries created, renamed and removed in it
    /// are durable once this returns.
    pub(crate) fn sync(&self) -> Result<(), FsError> {
        let synced = match &self.inner {
            DirInner::Os { file, .. } => file.sync_all(),
            #[cfg(feature = "sim")]
            DirInner::Sim { dir, .. } => dir.sync(),
        };
        synced.map_err(|e| FsError::io("syncing directory", &self.path, e))
    }

    /// `syncfs` of the file system the directory is on.
    pub(crate) fn syncfs(&self) -> io::Result<()> {
        match &self.inner {
            DirInner::Os { file, .. } => {
                rustix::fs::syncfs(file)?;
                Ok(())
            }
            #[cfg(feature = "sim")]
            DirInner::Sim { dir, .. } => dir.syncfs(),
        }
    }

    /// The entries of the directory (without `.` and `..`), in no particular
    /// order.
    pub(crate) fn entries(&self) -> Result<Vec<Entry>, FsError> {
        let listing = |e: io::Error| FsError::io("listing", &self.path, e);
        let file = match &self.inner {
            DirInner::Os { file, .. } => file,
            #[cfg(feature = "sim")]
            DirInner::Sim { dir, .. } => {
                return Ok(dir
                    .entries()
                    .map_err(listing)?
                    .into_iter()
                    .map(|(name, kind)| Entry {
                        name: name.into(),
                        kind: kind.into(),
                    })
                    .collect());
            }
        };
        let mut dir = rustix::fs::Dir::read_from(file).map_err(|e| listing(e.into()))?;
        let mut out = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| listing(e.into()))?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = OsString::from_vec(name.to_vec());
            let kind = match entry.file_type() {
                rustix::fs::FileType::RegularFile => Kind::File,
                rustix::fs::FileType::Directory => Kind::Dir,
                rustix::fs::FileType::Unknown => match name.to_str() {
                    // File systems without d_type: ask.
                    Some(utf8) => self.kind_of(utf8).ok().flatten().unwrap_or(Kind::Other),
                    None => Kind::Other,
                },
                _ => Kind::Other,
            };
            out.push(Entry { name, kind });
        }
        Ok(out)
    }

    /// What `name` is (without following a symlink); `None` if absent.
    pub(crate) fn kind_of(&self, name: &str) -> io::Result<Option<Kind>> {
        let file = match &self.inner {
            DirInner::Os { file, .. } => file,
            #[cfg(feature = "sim")]
            DirInner::Sim { dir, .. } => return Ok(dir.kind_of(name)?.map(Kind::from)),
        };
        match rustix::fs::statat(file, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => {
                let kind = match rustix::fs::FileType::from_raw_mode(stat.st_mode) {
                    rustix::fs::FileType::RegularFile => Kind::File,
                    rustix::fs::FileType::Directory => Kind::Dir,
                    _ => Kind::Other,
                };
                Ok(Some(kind))
            }
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks that the directory is still where the store found it: not
    /// removed (its link count is not 0) and its path still leads to it (not
    /// moved away, not replaced by another directory of the same name).
    pub(crate) fn check_in_place(&self) -> Result<(), FsError> {
        let vanished = |cause: String| FsError::Vanished {
            path: self.path.clone(),
            cause,
        };
        let (file, absolute, identity) = match &self.inner {
            DirInner::Os {
                file,
                absolute,
                identity,
            } => (file, absolute, *identity),
            #[cfg(feature = "sim")]
            DirInner::Sim { dir, absolute } => {
                return match dir.in_place(absolute) {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(vanished("it was removed, moved or replaced".into())),
                    Err(e) => Err(FsError::io("inspecting directory", &self.path, e)),
                };
            }
        };
        let meta = file
            .metadata()
            .map_err(|e| FsError::io("inspecting directory", &self.path, e))?;
        if meta.nlink() == 0 {
            return Err(vanished("it was removed".into()));
        }
        // `metadata` follows a symlinked store path, as opening it did.
        match fs::metadata(absolute) {
            Ok(now) if (now.dev(), now.ino()) == identity => Ok(()),
            Ok(_) => Err(vanished(
                "the path now leads to another directory (the store's was moved or replaced)"
                    .into(),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(vanished("the path no longer exists (moved away)".into()))
            }
            Err(e) => Err(FsError::io("inspecting directory", &self.path, e)),
        }
    }

    /// Reads the small file `name` (at most `limit` bytes are read); `None` if
    /// it does not exist.
    pub(crate) fn read_small(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, FsError> {
        let file = match self.open_read(name) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FsError::io("opening", self.join(name), e)),
        };
        let mut bytes = Vec::new();
        file.take(limit)
            .read_to_end(&mut bytes)
            .map_err(|e| FsError::io("reading", self.join(name), e))?;
        Ok(Some(bytes))
    }

    /// Replaces the file `name` with `contents`, durably and atomically: a temp
    /// file `.<name>.tmp`, written and synced, renamed over `name`, then the
    /// directory synced. A failed sync is [`Failure::Sync`].
    pub(crate) fn replace_file(&self, name: &str, contents: &[u8]) -> Result<(), Failure> {
        let temp = format!(".{name}.tmp");
        let mut file = self
            .create_truncate(&temp)
            .map_err(|e| Failure::Plain(FsError::io("creating", self.join(&temp), e)))?;
        if let Err(e) = file.write_all(contents) {
            drop(file);
            let _ = self.remove(&temp);
            return Err(Failure::Plain(FsError::io("writing", self.join(&temp), e)));
        }
        file.sync_data()
            .map_err(|e| Failure::Sync(FsError::io("syncing", self.join(&temp), e)))?;
        drop(file);
        self.rename(&temp, name)
            .map_err(|e| Failure::Plain(FsError::io("renaming over", self.join(name), e)))?;
        self.sync().map_err(Failure::Sync)
    }
}
