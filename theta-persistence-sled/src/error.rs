//! [`SledError`]: what can go wrong opening or flushing a [`SledStorage`](crate::SledStorage).

use std::path::PathBuf;

/// An error of the sled backend outside the storage trait (whose methods return
/// `anyhow::Error`s carrying the same information as context).
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
    /// may not be durable.
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
}
