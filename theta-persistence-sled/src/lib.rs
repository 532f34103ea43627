//! [`PersistentStorage`](theta::persistence::PersistentStorage) on the
//! [sled](https://docs.rs/sled/0.34) embedded database, for theta actors'
//! snapshots: no server, one directory, crash-safe.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("snapshots");
//! use theta_persistence_sled::{Durability, SledStorage};
//!
//! let durable = SledStorage::open(&path)?;
//! // Same database, acknowledging saves before they reach the disk.
//! let fast = durable.clone().with_durability(Durability::Buffered);
//! # let _ = fast;
//! # Ok(())
//! # }
//! ```
//!
//! See [`SledStorage`] for the guarantees, [`Durability`] for the window of loss of
//! buffered writes, and [`SledStorage::close`] for shutting down.

#![warn(missing_docs)]

mod error;
mod flusher;
mod storage;

pub use error::SledError;
pub use storage::{Durability, SledStorage, TREE_NAME};

/// The sled crate this backend is built on (0.34), for [`SledStorage::from_db`]
/// and [`SledStorage::from_tree`].
pub use sled;
