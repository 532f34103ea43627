//! [`PersistentStorage`](theta::persistence::PersistentStorage) on the
//! [sled](https://docs.rs/sled/0.34) embedded database, for theta actors'
//! snapshots: no server, one directory, crash-safe, and an open that refuses a
//! database that lost acknowledged snapshots instead of reading it as partly
//! empty.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("snapshots");
//! use theta::persistence::Durability;
//! use theta_persistence_sled::SledStorage;
//!
//! let durable = SledStorage::open(&path)?; // Durability::PowerLoss
//! // Same database, acknowledging saves before they reach the disk.
//! let fast = durable.clone().with_durability(Durability::Volatile)?;
//! # let _ = fast;
//! # Ok(())
//! # }
//! ```
//!
//! See [`SledStorage`] for the guarantees, [`OFFERED_DURABILITY`] for the
//! durability levels, [`SledStorage::close`] for shutting down, and the crate's
//! `ARCHITECTURE.md` for the write, flush and recovery paths.
//!
//! Cargo feature `failpoints` (tests only): `SledStorage::fail_next_sync`
//! makes the next flush fail.

#![warn(missing_docs)]

mod acked;
mod error;
mod flusher;
mod keys;
mod layout;
mod recovery;
mod storage;

pub use error::SledError;
pub use storage::{OFFERED_DURABILITY, SledStorage, TREE_NAME};

/// The sled crate this backend is built on (0.34), for [`SledStorage::from_db`]
/// and [`SledStorage::from_tree`].
pub use sled;
