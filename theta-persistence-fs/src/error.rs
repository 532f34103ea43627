//! [`FsError`]: what can go wrong in the file-system store.

use std::io;
use std::path::PathBuf;

use theta::persistence::UnsupportedDurability;

/// An error of the file-system snapshot store. Every variant names the path
/// involved and the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// An I/O operation failed.
    #[error("{op} {path}: {source}", path = .path.display())]
    Io {
        /// What was being done, e.g. `"renaming temp file over"`.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The directory is already open by another `FsStorage`, in this or another
    /// process.
    #[error(
        "snapshot directory {path} is locked: another FsStorage (in this or another process) has it open",
        path = .path.display()
    )]
    Locked {
        /// The store directory.
        path: PathBuf,
    },
    /// An earlier sync failed. After a failed `fsync`/`syncfs` the kernel may have
    /// dropped the dirty pages and a retried sync can falsely succeed, so the store
    /// refuses every later write until it is reopened.
    #[error(
        "snapshot store {path} is poisoned by an earlier sync failure ({cause}); reopen it",
        path = .path.display()
    )]
    Poisoned {
        /// The store directory.
        path: PathBuf,
        /// The sync error that poisoned the store.
        cause: String,
    },
    /// A directory or journal segment of the open store was removed, moved or
    /// replaced behind its back (for example `rm -r` of the store directory). A
    /// sync of a removed file succeeds without making anything durable, so the
    /// store refuses every later write, delete and claim until it is reopened.
    #[error(
        "{path} of the open snapshot store was removed or replaced ({cause}); writes are refused, reopen the store",
        path = .path.display()
    )]
    Vanished {
        /// The directory or segment file.
        path: PathBuf,
        /// What was found.
        cause: String,
    },
    /// The directory holds a store of another layout: reading it with this
    /// layout could miss snapshots and report them absent, so it is refused.
    #[error(
        "snapshot store layout marker {path} says {found:?}; this build reads \"theta-persistence-fs layout 3\" (and upgrades layouts 1 and 2)",
        path = .path.display()
    )]
    UnsupportedFormat {
        /// The marker file.
        path: PathBuf,
        /// What it holds.
        found: String,
    },
    /// The directory is not empty and is not an fs snapshot store (it has no
    /// layout marker): adopting it would start every actor fresh over data that
    /// is there, so it is refused.
    #[error(
        "{path} is not an fs snapshot store (no FORMAT marker) and is not empty: it holds {found}; refusing to use it (open an empty directory or a new path)",
        path = .path.display()
    )]
    NotAStore {
        /// The directory.
        path: PathBuf,
        /// What it holds (a few entries, and a guess at what it is).
        found: String,
    },
    /// A snapshot file is larger than any envelope theta writes; it was not read.
    #[error(
        "snapshot file {path} is {len} bytes, larger than any snapshot ({limit} bytes); not read",
        path = .path.display()
    )]
    Oversized {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The largest envelope theta writes.
        limit: u64,
    },
    /// A snapshot file the store wrote, and did not delete, is gone: it was
    /// removed behind the store's back while the store was open. (After a
    /// reopen nothing records that it existed; see the crate docs.)
    #[error(
        "snapshot file {path} of actor {id} is missing: the store wrote it and did not delete it (was it removed behind the store's back?)",
        path = .path.display()
    )]
    Missing {
        /// The actor.
        id: theta::ActorId,
        /// The file.
        path: PathBuf,
    },
    /// A journal segment is damaged where it holds acknowledged writes (not at
    /// the torn tail a crash leaves). The store is not opened: replaying around
    /// the damage could bring back an older snapshot or lose a newer one.
    #[error(
        "journal segment {path} is damaged at byte {offset} ({cause}); it holds acknowledged snapshots, so the store was not opened (restore the directory from a backup, or move the segment out of journal/ to open the store without the writes it holds)",
        path = .path.display()
    )]
    CorruptJournal {
        /// The segment file.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong there.
        cause: &'static str,
    },
    /// A journal segment that holds acknowledged writes is missing or was cut
    /// short (or the journal's start marker is): the store is not opened, since
    /// it would open without those writes.
    #[error(
        "journal segment {path} {cause}; acknowledged snapshots would be lost, so the store was not opened (restore the directory from a backup)",
        path = .path.display()
    )]
    IncompleteJournal {
        /// The segment (or marker) file.
        path: PathBuf,
        /// What is missing or wrong.
        cause: String,
    },
    /// A small bookkeeping file of the store (its generation) is damaged or
    /// missing; the store is not opened.
    #[error("store file {path} is damaged ({cause}); the store was not opened", path = .path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        cause: String,
    },
    /// The store was asked for a durability it does not offer
    /// ([`Durability::Volatile`](theta::persistence::Durability::Volatile)).
    #[error(transparent)]
    UnsupportedDurability(#[from] UnsupportedDurability),
    /// The store was closed (`try_close`); it refuses writes, deletes and claims.
    #[error("snapshot store {path} is closed", path = .path.display())]
    Closed {
        /// The store directory.
        path: PathBuf,
    },
    /// The committer thread of the store is gone (it panicked).
    #[error("the committer thread of snapshot store {path} stopped", path = .path.display())]
    CommitterStopped {
        /// The store directory.
        path: PathBuf,
    },
}

impl FsError {
    /// The same error again (for answering several waiters with one failure).
    pub(crate) fn duplicate(&self) -> FsError {
        match self {
            FsError::Io { op, path, source } => FsError::Io {
                op,
                path: path.clone(),
                source: clone_io(source),
            },
            FsError::Locked { path } => FsError::Locked { path: path.clone() },
            FsError::Poisoned { path, cause } => FsError::Poisoned {
                path: path.clone(),
                cause: cause.clone(),
            },
            FsError::Vanished { path, cause } => FsError::Vanished {
                path: path.clone(),
                cause: cause.clone(),
            },
            FsError::UnsupportedFormat { path, found } => FsError::UnsupportedFormat {
                path: path.clone(),
                found: found.clone(),
            },
            FsError::NotAStore { path, found } => FsError::NotAStore {
                path: path.clone(),
                found: found.clone(),
            },
            FsError::Oversized { path, len, limit } => FsError::Oversized {
                path: path.clone(),
                len: *len,
                limit: *limit,
            },
            FsError::Missing { id, path } => FsError::Missing {
                id: *id,
                path: path.clone(),
            },
            FsError::CorruptJournal {
                path,
                offset,
                cause,
            } => FsError::CorruptJournal {
                path: path.clone(),
                offset: *offset,
                cause,
            },
            FsError::IncompleteJournal { path, cause } => FsError::IncompleteJournal {
                path: path.clone(),
                cause: cause.clone(),
            },
            FsError::Damaged { path, cause } => FsError::Damaged {
                path: path.clone(),
                cause: cause.clone(),
            },
            FsError::UnsupportedDurability(e) => FsError::UnsupportedDurability(e.clone()),
            FsError::Closed { path } => FsError::Closed { path: path.clone() },
            FsError::CommitterStopped { path } => FsError::CommitterStopped { path: path.clone() },
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        FsError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// An I/O failure, sorted by what the store must do about it.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Nothing was made durable or harmed: report it, retry later.
    Plain(FsError),
    /// A sync failed: the store must be poisoned (the kernel may have dropped
    /// the dirty pages; a retried sync could falsely succeed).
    Sync(FsError),
}

impl Failure {
    /// The error, where there is no store yet to poison (during `open`).
    pub(crate) fn into_error(self) -> FsError {
        match self {
            Failure::Plain(error) | Failure::Sync(error) => error,
        }
    }
}

/// The same I/O error again (`io::Error` is not `Clone`).
pub(crate) fn clone_io(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}
