//! [`SledError`]: what can go wrong opening, checking or flushing a
//! [`SledStorage`](crate::SledStorage).

use std::io;
use std::path::{Path, PathBuf};

/// An error of the sled backend. The storage trait's methods return
/// `anyhow::Error`s that carry these (and theta's marker errors) with context.
///
/// Every message names the database (its path, or the tree for a storage built
/// from an existing handle) and the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SledError {
    /// sled could not open (or create) the database directory.
    #[error("opening the sled database at {} failed: {source}", path.display())]
    Open {
        /// The path passed to [`SledStorage::open`](crate::SledStorage::open).
        path: PathBuf,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
    /// The database is locked: open in another process, or by a handle in this
    /// one that is still live (or was dropped over a second ago and sled has
    /// still not released it).
    #[error(
        "the sled database at {} is locked by another process or open handle: {source}",
        path.display()
    )]
    Locked {
        /// The path passed to [`SledStorage::open`](crate::SledStorage::open).
        path: PathBuf,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
    /// A file-system operation on the store directory failed.
    #[error("{action} {} failed: {source}", path.display())]
    Io {
        /// What was being done, e.g. `"creating"`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The directory is not a store of this backend, and not empty: opening it
    /// as an empty store would make every actor whose state is there start
    /// fresh.
    #[error("{} is not a theta sled store: it is {found}", path.display())]
    NotAStore {
        /// The directory.
        path: PathBuf,
        /// What is there.
        found: String,
    },
    /// The directory's layout marker names another layout (another backend's
    /// store, or a newer layout of this one).
    #[error(
        "the layout marker {} says {found:?}; this build reads {:?}",
        path.display(),
        crate::layout::FORMAT.trim_end()
    )]
    UnsupportedLayout {
        /// The marker file.
        path: PathBuf,
        /// Its content.
        found: String,
    },
    /// Acknowledged data is missing or changed: sled recovered less than theta
    /// acknowledged (a damaged or truncated database file). The store is not
    /// opened, so no actor starts fresh over its lost state; restore the
    /// directory from a backup.
    #[error("the sled database at {} is damaged: {what}", path.display())]
    Damaged {
        /// The directory.
        path: PathBuf,
        /// What is missing or wrong.
        what: String,
    },
    /// Reading the tree while opening failed.
    #[error("reading {location} while opening it failed: {source}")]
    Scan {
        /// The database.
        location: String,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
    /// sled could not open (or create) the snapshot tree.
    #[error("opening the tree `{tree}` of {location} failed: {source}")]
    OpenTree {
        /// The database, as [`SledStorage::location`](crate::SledStorage::location) names it.
        location: String,
        /// The tree name.
        tree: String,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
    /// Flushing to disk (`fsync`) failed: writes since the last successful flush
    /// may not be durable. The storage refuses writes from then on (see
    /// [`Poisoned`](Self::Poisoned)).
    #[error("flushing {location} to disk failed: {source}")]
    Flush {
        /// The database.
        location: String,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
    /// The flush thread stopped before it acknowledged the flush (the runtime was
    /// shutting down or no thread could be started): durability is unknown.
    #[error("the flush thread of {location} stopped before the flush was acknowledged")]
    FlushStopped {
        /// The database.
        location: String,
    },
    /// An earlier flush or write failed, so what is on disk is unknown: writes,
    /// deletes and claims are refused until the database is opened again.
    #[error("{location} refuses writes since a flush or write failed: {cause}")]
    Poisoned {
        /// The database.
        location: String,
        /// The first failure.
        cause: String,
    },
}

impl SledError {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> SledError {
        SledError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}
