//! [`FsError`]: what can go wrong in the file-system store.

use std::io;
use std::path::PathBuf;

/// An error of the file-system snapshot store. Every variant names the path
/// involved and the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// An I/O operation failed.
    #[error("{op} {path}: {source}", path = .path.display())]
    Io {
        /// What was being done, e.g. `"renaming temp file to"`.
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
    /// The directory holds a store of another layout (or snapshots without a
    /// layout marker): reading it with this layout could miss snapshots and
    /// report them absent, so it is refused.
    #[error(
        "snapshot store layout marker {path} says {found:?}; this build reads \"theta-persistence-fs layout 2\" (and upgrades layout 1)",
        path = .path.display()
    )]
    UnsupportedFormat {
        /// The marker file.
        path: PathBuf,
        /// What it holds.
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
    /// A write larger than any envelope theta writes; it was not written.
    #[error(
        "snapshot of actor {id} is {len} bytes, larger than any snapshot ({limit} bytes); not written"
    )]
    TooLarge {
        /// The actor.
        id: theta::ActorId,
        /// The write's length.
        len: u64,
        /// The largest envelope theta writes.
        limit: u64,
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
                source: crate::committer::clone_io(source),
            },
            FsError::Locked { path } => FsError::Locked { path: path.clone() },
            FsError::Poisoned { path, cause } => FsError::Poisoned {
                path: path.clone(),
                cause: cause.clone(),
            },
            FsError::UnsupportedFormat { path, found } => FsError::UnsupportedFormat {
                path: path.clone(),
                found: found.clone(),
            },
            FsError::Oversized { path, len, limit } => FsError::Oversized {
                path: path.clone(),
                len: *len,
                limit: *limit,
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
            FsError::TooLarge { id, len, limit } => FsError::TooLarge {
                id: *id,
                len: *len,
                limit: *limit,
            },
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
