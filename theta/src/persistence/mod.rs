//! Actor persistence capabilities for state snapshots and recovery.
//!
//! This module enables actors to persist their state and recover from failures
//! or system restarts. It provides a flexible architecture that supports
//! multiple storage backends and automatic snapshot management.
//!
//! # Core Concepts
//!
//! ## Snapshots
//!
//! A **snapshot** is a serializable representation of an actor's state that can be
//! captured from the Actor's current state and supports serde for restoration.
//! Snapshots are one of the ActorArgs, which means they can be used to initialize
//! actors during recovery. Snapshots must:
//! - Capture all essential state needed to restore the actor
//! - Be serializable (implement `Serialize` + `Deserialize`)
//! - Be usable as actor initialization arguments (implement `ActorArgs`)
//! - Convert from the actor's current state (implement `From<&Actor>`)
//!
//! ## Storage Backends
//!
//! Storage backends implement the `PersistentStorage` trait and handle:
//! - Reading snapshots by actor ID
//! - Writing snapshots atomically
//! - Storage-specific optimizations (compression, indexing, etc.)
//!
//! Built-in storage backends:
//! - **File system**: Local disk storage with configurable directories
//!
//! ## Persistence Lifecycle
//!
//! 1. **Snapshot Creation**: Actors create snapshots from their current state
//! 2. **Storage**: Snapshots are written to the configured storage backend
//! 3. **Recovery**: Actors are restored from snapshots during spawn operations
//! 4. **Automatic Management**: Framework handles snapshot timing and cleanup
//!
//! # Usage Patterns
//!
//! ## Basic Persistence
//!
//! ```no_run
//! use theta::prelude::*;
//! use serde::{Serialize, Deserialize};
//!
//! #[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
//! struct Counter {
//! value: i64,
//! name: String,
//! }
//!
//! # #[derive(Debug, Clone, Serialize, Deserialize)]
//! # struct Increment(i64);
//! # struct DummyStorage;
//! # impl PersistentStorage for DummyStorage {
//! # async fn try_read(&self, _: ActorId) -> Result<Vec<u8>, anyhow::Error> { Ok(vec![]) }
//! # async fn try_write(&self, _: ActorId, _: Vec<u8>) -> Result<(), anyhow::Error> { Ok(()) }
//! # }
//! # static STORAGE: DummyStorage = DummyStorage;
//!
//! // The `snapshot` flag automatically implements PersistentActor
//! // with Snapshot = Counter, RuntimeArgs = (), ActorArgs = Counter
//! #[actor("12345678-1234-5678-9abc-123456789abc", snapshot)]
//! impl Actor for Counter {
//! const _: () = {
//! async |Increment(amount): Increment| {
//! self.value += amount;
//! // Manual snapshot saving when needed
//! let _ = ctx.save_snapshot(&STORAGE, self).await;
//! };
//! };
//! }
//! ```
//!
//! ## Custom Snapshot Types
//!
//! ```
//! # use theta::prelude::*;
//! # use serde::{Serialize, Deserialize};
//! # use std::collections::HashMap;
//! # #[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
//! # struct Counter { value: i64, cache: HashMap<String, String> }
//! # #[derive(Debug, Clone, Serialize, Deserialize)]
//! # struct Increment(i64);
//! # #[actor("aaaaaaaa-bbbb-cccc-dddd-999999999999", snapshot)]
//! # impl Actor for Counter {
//! # const _: () = { async |Increment(_): Increment| {}; };
//! # }
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! struct CounterSnapshot {
//! value: i64,
//! // Exclude non-essential state like caches
//! }
//!
//! impl From<&Counter> for CounterSnapshot {
//! fn from(counter: &Counter) -> Self {
//! Self { value: counter.value }
//! }
//! }
//!
//! impl ActorArgs for CounterSnapshot {
//! type Actor = Counter;
//!
//! async fn initialize(_ctx: Context<Counter>, args: &Self) -> Counter {
//! Counter {
//! value: args.value,
//! cache: HashMap::new(), // Rebuilt on recovery
//! }
//! }
//! }
//! ```
//!
//! ## Recovery-aware Spawning
//!
//! ```no_run
//! # use theta::prelude::*;
//! # use serde::{Serialize, Deserialize};
//! # #[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
//! # struct Counter { value: i64, name: String }
//! # #[derive(Debug, Clone, Serialize, Deserialize)]
//! # struct Increment(i64);
//! # #[actor("aaaaaaaa-bbbb-cccc-dddd-aaaaaaaaaaaa", snapshot)]
//! # impl Actor for Counter {
//! # const _: () = { async |Increment(_): Increment| {}; };
//! # }
//! # struct DummyStorage;
//! # impl PersistentStorage for DummyStorage {
//! # async fn try_read(&self, _: ActorId) -> Result<Vec<u8>, anyhow::Error> { Ok(vec![]) }
//! # async fn try_write(&self, _: ActorId, _: Vec<u8>) -> Result<(), anyhow::Error> { Ok(()) }
//! # }
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! # let ctx = RootContext::default();
//! # let storage = DummyStorage;
//! # let actor_id = ActorId::new_v4();
//! // Try to restore from snapshot, fallback to new instance
//! let counter = ctx.respawn_or(
//! &storage,
//! actor_id,
//! || (), // runtime args
//! || Counter { value: 0, name: "default".to_string() }
//! ).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # What theta guarantees
//!
//! - **Absent is not broken.** A backend reports "no snapshot" with
//!   [`SnapshotNotFound`]. Only then does [`respawn_or`](PersistentSpawnExt::respawn_or)
//!   start from the default arguments. Any other read error, and any empty,
//!   truncated, corrupt, foreign-type or unknown-version snapshot, is an
//!   `Err(`[`PersistenceError`]`)` naming the actor id and the cause: a fresh actor
//!   never silently replaces data that exists.
//! - **Every snapshot is framed** by an [`envelope`]: magic bytes, format version,
//!   codec, the actor type's uuid, schema version, a per-actor sequence number,
//!   length and a CRC-32C, all verified before decoding, with a size limit
//!   ([`PersistentActor::MAX_SNAPSHOT_BYTES`]).
//! - **Newer wins.** Each save carries the previous sequence number + 1, continued
//!   from the recovered snapshot; backends refuse a write older than what they
//!   store ([`StaleSnapshot`]).
//! - **One live actor per id** in a [`RootContext`](crate::RootContext): spawning or
//!   respawning a live id is [`PersistenceError::AlreadyRunning`].
//! - **Automatic management**: a [`SnapshotPolicy`] (every N messages, every
//!   interval, on graceful stop) from `#[actor(.., snapshot, snapshot_every = N)]`
//!   or from a [`SharedStorage`] handle. Automatic saves encode the state after a
//!   handler returned and hand the bytes to a per-actor writer, one write in
//!   flight, latest state wins. A handler that panicked is never saved. A restart
//!   after a panic restores the latest saved snapshot. `RootContext::shutdown`
//!   waits for pending writes. With
//!   [`confirm_replies`](SnapshotPolicy::confirm_replies) an answered `ask` means a
//!   durable change: replies wait for the snapshot that includes them.
//! - **Schema evolution**: [`PersistentActor::SCHEMA_VERSION`] is recorded;
//!   older snapshots go through [`PersistentActor::migrate`], newer ones are
//!   refused.
//!
//! # Spawning, precisely
//!
//! | call | stored snapshot present | absent | read error / bad bytes |
//! |---|---|---|---|
//! | [`spawn_persistent`](PersistentSpawnExt::spawn_persistent) | `Err(SnapshotExists)`, nothing written | fresh actor from `args`, sequence 0 | `Err` |
//! | [`respawn`](PersistentSpawnExt::respawn) | restored | `Err(NotFound)` | `Err` |
//! | [`respawn_or`](PersistentSpawnExt::respawn_or) | restored | fresh actor from `default_args()` | `Err` |
//!
//! None of them writes anything at spawn time; the first snapshot is written by the
//! first save (manual or by policy).

mod error;
mod memory;
mod policy;
mod restore;
pub(crate) mod runtime;
mod shared;
mod snapshot;
mod spawn;

pub mod envelope;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::actor::{Actor, ActorArgs, ActorId};

pub use error::{PersistenceError, SnapshotNotFound, StaleSnapshot, Unsupported};
pub use memory::MemoryStorage;
pub use policy::SnapshotPolicy;
pub use restore::{Restore, RestoreArgs};
pub use shared::SharedStorage;
pub use snapshot::{CodecError, decode_payload, decode_snapshot, encode_payload, encode_snapshot};
pub use spawn::{PersistentContextExt, PersistentSpawnExt};

/// A place snapshots are stored: bytes by actor id.
///
/// Implementations must be atomic per id (a reader sees a whole old or a whole new
/// value) and must report a missing snapshot as
/// `anyhow::Error::new(`[`SnapshotNotFound`]`)`, never as empty bytes. A backend
/// that can should refuse a write whose envelope sequence number is lower than the
/// stored one with [`StaleSnapshot`] (see [`envelope::check_not_stale`]).
///
/// `try_delete`, `try_list` and `shared` have defaults so that a minimal backend
/// only implements reading and writing.
pub trait PersistentStorage: Send + Sync {
    /// Reads the stored snapshot of `id`.
    fn try_read(&self, id: ActorId) -> impl Future<Output = Result<Vec<u8>, anyhow::Error>> + Send;

    /// Stores `bytes` as the snapshot of `id`, replacing the previous one atomically.
    /// `Ok` means the write is as durable as the backend promises.
    fn try_write(
        &self,
        id: ActorId,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<(), anyhow::Error>> + Send;

    /// Deletes the snapshot of `id`. Deleting an absent snapshot is `Ok`.
    ///
    /// The default reports [`Unsupported`].
    fn try_delete(&self, id: ActorId) -> impl Future<Output = Result<(), anyhow::Error>> + Send {
        let _ = id;
        async {
            Err(anyhow::Error::new(Unsupported {
                operation: "delete",
            }))
        }
    }

    /// Lists the ids that have a stored snapshot.
    ///
    /// The default reports [`Unsupported`].
    fn try_list(&self) -> impl Future<Output = Result<Vec<ActorId>, anyhow::Error>> + Send {
        async { Err(anyhow::Error::new(Unsupported { operation: "list" })) }
    }

    /// An owned, shareable handle to this storage, used by automatic snapshot
    /// policies (which write from a background task). Cheap-to-clone backends return
    /// `Some(SharedStorage::new(self.clone()))`; the default is `None`.
    fn shared(&self) -> Option<SharedStorage> {
        None
    }
}

/// An actor whose state can be saved as a snapshot and restored from one.
///
/// `#[actor("..", snapshot)]` implements it with `Snapshot = Self`,
/// `RuntimeArgs = ()` and `ActorArgs = Self`; `snapshot = S` uses `S` for both the
/// snapshot and the arguments.
pub trait PersistentActor: Actor {
    /// What is stored: captured from the actor with `From<&Self>`.
    type Snapshot: Serialize + DeserializeOwned + for<'a> From<&'a Self> + Send + 'static;

    /// Arguments that are not stored but supplied at every (re)spawn: handles,
    /// configuration. Cloned for each restart.
    type RuntimeArgs: Clone + Send + Sync + 'static;

    /// The arguments a restored actor is initialized from.
    type ActorArgs: ActorArgs<Actor = Self>;

    /// The snapshot schema version this build writes. Bump it when `Snapshot`
    /// changes incompatibly, and handle older versions in [`migrate`](Self::migrate).
    const SCHEMA_VERSION: u32 = 0;

    /// The largest snapshot payload this actor writes or reads (default 64 MiB;
    /// values above [`envelope::MAX_PAYLOAD`], 1 GiB, count as 1 GiB). A larger
    /// snapshot is refused at save time, so nothing unreadable is ever written.
    const MAX_SNAPSHOT_BYTES: usize = envelope::DEFAULT_MAX_PAYLOAD;

    /// Builds initialization arguments from a restored snapshot and runtime args.
    fn persistent_args(
        snapshot: Self::Snapshot,
        runtime_args: Self::RuntimeArgs,
    ) -> Self::ActorArgs;

    /// Converts the payload of a snapshot written under an older schema version
    /// into the current `Snapshot`. Decode the old layout with [`decode_payload`].
    ///
    /// The default refuses, so an old snapshot is never misread as the new type.
    fn migrate(from_version: u32, payload: &[u8]) -> Result<Self::Snapshot, anyhow::Error> {
        let _ = payload;
        Err(anyhow::anyhow!(
            "no migration from schema version {from_version} to {} is defined",
            Self::SCHEMA_VERSION
        ))
    }

    /// The automatic snapshot policy of this actor type (default: manual only).
    /// A [`SharedStorage::with_policy`] handle overrides it per spawn.
    fn snapshot_policy() -> SnapshotPolicy {
        SnapshotPolicy::new()
    }
}
