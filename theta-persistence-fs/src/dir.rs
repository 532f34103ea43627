//! [`Dir`]: a handle to one directory of the store, and every file-system call
//! the store makes.
//!
//! Files are opened, created, renamed and removed *relative to a directory
//! handle* (`openat`, `renameat`, `unlinkat`), never by a path from the root:
//! a store whose directory is removed while it is open then fails (`ENOENT`)
//! instead of writing into a directory of the same name created meanwhile, and
//! [`Dir::check_in_place`] tells whether the path still leads to the handle's
//! directory. The `File`s this module returns are read, written and synced by
//! `journal` (segments) and `snapshot_files` (snapshot files); no other module
//! touches the disk. That makes this module, with those two, the seam a
//! simulated disk (power loss, reordered writes) would replace.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::error::{Failure, FsError};

/// Directories are created 0700.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Files are created 0600.
pub(crate) const FILE_MODE: u32 = 0o600;

/// An open directory of the store.
#[derive(Debug)]
pub(crate) struct Dir {
    file: File,
    /// As given (for messages).
    path: PathBuf,
    /// Made absolute when opened: what [`Dir::check_in_place`] looks up, so that
    /// a change of the working directory is not taken for a moved store.
    absolute: PathBuf,
    /// `(st_dev, st_ino)` when it was opened.
    identity: (u64, u64),
}

/// What kind of entry a directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Other,
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
    /// Opens the directory at `path`.
    pub(crate) fn open(path: &Path) -> Result<Dir, FsError> {
        let absolute =
            std::path::absolute(path).map_err(|e| FsError::io("opening directory", path, e))?;
        let file = File::open(path).map_err(|e| FsError::io("opening directory", path, e))?;
        Self::from_file(file, path.to_path_buf(), absolute)
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
            file,
            path,
            absolute,
            identity: (meta.dev(), meta.ino()),
        })
    }

    /// Opens the subdirectory `name`.
    pub(crate) fn open_sub(&self, name: &str) -> Result<Dir, FsError> {
        let path = self.join(name);
        let fd = rustix::fs::openat(
            &self.file,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| FsError::io("opening directory", &path, e.into()))?;
        Self::from_file(File::from(fd), path, self.absolute.join(name))
    }

    /// The directory's path (as opened).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in this directory, for messages.
    pub(crate) fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// Opens `name` (a relative path below this directory) for reading.
    pub(crate) fn open_read(&self, name: &str) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.file,
            name,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(File::from(fd))
    }

    /// Opens the existing file `name` for reading and writing.
    pub(crate) fn open_rw(&self, name: &str) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.file,
            name,
            OFlags::RDWR | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(File::from(fd))
    }

    /// Creates `name` (0600); fails if it exists.
    pub(crate) fn create_new(&self, name: &str) -> io::Result<File> {
        self.create(name, OFlags::EXCL)
    }

    /// Creates `name` (0600), emptying it if it exists.
    pub(crate) fn create_truncate(&self, name: &str) -> io::Result<File> {
        self.create(name, OFlags::TRUNC)
    }

    /// Opens `name` for reading and writing, creating it (0600) if needed.
    pub(crate) fn create_or_open(&self, name: &str) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.file,
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::from_raw_mode(FILE_MODE),
        )?;
        Ok(File::from(fd))
    }

    fn create(&self, name: &str, extra: OFlags) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.file,
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | extra,
            Mode::from_raw_mode(FILE_MODE),
        )?;
        Ok(File::from(fd))
    }

    /// Creates the subdirectory `name` (0700); `Ok(false)` if it exists.
    pub(crate) fn create_dir(&self, name: &str) -> Result<bool, FsError> {
        match rustix::fs::mkdirat(&self.file, name, Mode::from_raw_mode(DIR_MODE)) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::EXIST) => match self.kind_of(name) {
                Ok(Some(Kind::Dir)) => Ok(false),
                _ => Err(FsError::io(
                    "creating directory",
                    self.join(name),
                    io::Error::new(io::ErrorKind::AlreadyExists, "a file of that name exists"),
                )),
            },
            Err(e) => Err(FsError::io("creating directory", self.join(name), e.into())),
        }
    }

    /// Renames `from` to `to` (both relative to this directory), replacing `to`.
    pub(crate) fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        rustix::fs::renameat(&self.file, from, &self.file, to)?;
        Ok(())
    }

    /// Removes the file `name`.
    pub(crate) fn remove(&self, name: &str) -> io::Result<()> {
        rustix::fs::unlinkat(&self.file, name, AtFlags::empty())?;
        Ok(())
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
        self.file
            .sync_all()
            .map_err(|e| FsError::io("syncing directory", &self.path, e))
    }

    /// `syncfs` of the file system the directory is on.
    pub(crate) fn syncfs(&self) -> io::Result<()> {
        rustix::fs::syncfs(&self.file)?;
        Ok(())
    }

    /// The entries of the directory (without `.` and `..`), in no particular
    /// order.
    pub(crate) fn entries(&self) -> Result<Vec<Entry>, FsError> {
        let listing = |e: rustix::io::Errno| FsError::io("listing", &self.path, e.into());
        let mut dir = rustix::fs::Dir::read_from(&self.file).map_err(listing)?;
        let mut out = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(listing)?;
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
        match rustix::fs::statat(&self.file, name, AtFlags::SYMLINK_NOFOLLOW) {
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
        let meta = self
            .file
            .metadata()
            .map_err(|e| FsError::io("inspecting directory", &self.path, e))?;
        if meta.nlink() == 0 {
            return Err(vanished("it was removed".into()));
        }
        // `metadata` follows a symlinked store path, as opening it did.
        match fs::metadata(&self.absolute) {
            Ok(now) if (now.dev(), now.ino()) == self.identity => Ok(()),
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

/// Creates the directory at `path` and its missing ancestors, 0700, syncing the
/// parent of every directory it created so the new entries are durable.
pub(crate) fn create_dir_all_durable(path: &Path) -> Result<(), FsError> {
    if path.is_dir() {
        return Ok(());
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if path.parent().is_some_and(|p| !p.as_os_str().is_empty()) {
        create_dir_all_durable(parent)?;
    }
    match DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => return Ok(()),
        Err(e) => return Err(FsError::io("creating directory", path, e)),
    }
    Dir::open(parent)?.sync()
}
