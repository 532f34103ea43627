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
//! # Backends, and how to choose
//!
//! A backend is a crate implementing [`PersistentStorage`]; every one passes the
//! same [conformance kit](conformance) (feature `conformance`) and names what an
//! acknowledged write survives with one [`Durability`] vocabulary.
//!
//! | storage | crate | where the snapshots live | durability offered | ownership across |
//! |---|---|---|---|---|
//! | [`MemoryStorage`] | `theta` | this process's memory | [`Volatile`](Durability::Volatile) | `RootContext`s of the process |
//! | `FsStorage` | `theta-persistence-fs` | one local directory: a write-ahead journal with group commit, one file per actor | [`PowerLoss`](Durability::PowerLoss) (default), [`ProcessKill`](Durability::ProcessKill) | `RootContext`s of the process (the directory is locked to one process) |
//! | `SledStorage` | `theta-persistence-sled` | one sled 0.34 database directory | [`PowerLoss`](Durability::PowerLoss) (default), [`Volatile`](Durability::Volatile) | `RootContext`s of the process (sled locks its directory) |
//! | `PostgresStorage` | `theta-persistence-postgres` | one table in a PostgreSQL database | [`PowerLoss`](Durability::PowerLoss) (default: synchronous commit), [`ProcessKill`](Durability::ProcessKill) | processes and machines (leases) |
//!
//! - **One machine, no server**: `FsStorage`. It is the fastest durable store
//!   here (group commit: concurrent saves share one `fdatasync`), reports damage
//!   it can detect instead of reading it as absent, and its files are plain to
//!   inspect and back up. `SledStorage` is the embedded alternative when a single
//!   database file is preferred.
//! - **Several instances of a service, or state that must outlive the machine**:
//!   `PostgresStorage`. Every instance shares the table; ownership of each id is
//!   held in the database with leases, so a second instance is refused (or takes
//!   over, fencing the first), and a crashed instance's ids are free again after
//!   its lease. Replication, backups and point-in-time recovery are the
//!   database's.
//! - **Tests and examples**: `MemoryStorage`.
//!
//! Actors do not depend on the choice: the same actor type runs on every backend,
//! and [`SharedStorage`] erases the type when the backend is picked at run time.
//! [`VirtualActors`] addresses persistent actors by id and activates them on
//! demand on any backend.
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
//! - **Bound to its actor.** A snapshot's envelope names the actor id it belongs
//!   to; bytes stored under another id are refused ([`PersistenceError::WrongActor`]).
//! - **Newer wins.** Each save carries the owner epoch of its activation and the
//!   previous sequence number + 1, continued from the recovered snapshot; backends
//!   refuse a write that is not newer than what they store, or stored and deleted
//!   ([`StaleSnapshot`]).
//! - **One owner per id.** In a [`RootContext`](crate::RootContext), spawning or
//!   respawning a live id is [`PersistenceError::AlreadyRunning`]; across
//!   `RootContext`s and processes on one store, every activation claims the id in
//!   the storage ([`PersistentStorage::try_claim`]): a second one is refused with
//!   [`PersistenceError::OwnedElsewhere`], and writes of an owner that was taken
//!   over are refused with [`Fenced`].
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
//! - **Virtual actors**: through [`VirtualActors`], a message to an id that is not
//!   live activates it from its snapshot; an idle one saves its final snapshot and
//!   stops, and no message is lost or delivered to a stopping instance on the way.
//! - **Writes only on change**: an automatic save whose snapshot is the one the
//!   storage already holds writes nothing (and releases its held replies at once).
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
//!
//! # Schema evolution
//!
//! Every snapshot's envelope records the actor type's
//! [`SCHEMA_VERSION`](PersistentActor::SCHEMA_VERSION), the [`Codec`] its payload
//! was written in and its [`Compression`]. A restore decodes with the codec and
//! compression *the envelope* names, so changing an actor type's codec or
//! compression later never strands its old snapshots (the next save writes the
//! new ones). A snapshot of an older schema version goes through
//! [`PersistentActor::migrate_payload`] (by default
//! [`migrate`](PersistentActor::migrate)); one of a newer version is refused with
//! [`PersistenceError::SchemaTooNew`]. A snapshot of the current version that does
//! not decode is [`PersistenceError::Decode`], whose message names the type, the
//! codec, and what to do.
//!
//! ## Which changes need a version bump
//!
//! **bincode** (the default) is positional: it stores no field or variant names,
//! only values in declaration order. It cannot notice most changes, and some it
//! *misreads* without an error (two fields of one type swapped, a variant
//! inserted before others, a signed field made unsigned). Under bincode, bump the
//! schema version for every change to the snapshot type's shape. **MessagePack**
//! (`codec = "msgpack"`) stores structs as maps keyed by field name and enum
//! variants by name, so it absorbs the everyday changes:
//!
//! | change to the snapshot type | bincode | MessagePack |
//! |---|---|---|
//! | add a field | bump + migrate | bump + migrate, or give it `#[serde(default)]` |
//! | add a field with `#[serde(default)]` (or an `Option` field) | bump + migrate | **no bump** |
//! | remove a field | bump + migrate (can be misread) | **no bump** (unless `#[serde(deny_unknown_fields)]`) |
//! | rename a field | no bump (names are not stored) | `#[serde(alias = "old")]`, or bump + migrate |
//! | reorder fields | bump + migrate (misread when types match) | **no bump** |
//! | change a field's type | bump + migrate (widening an integer of the same signedness happens to read; `i32` → `u32` is misread) | no bump to widen an integer (`u32` → `u64`, `i32` → `i64`) or to make it a float; otherwise bump + migrate |
//! | add an enum variant at the end | no bump | no bump |
//! | insert a variant before others, reorder variants | bump + migrate (misread: variants are numbered) | **no bump** (variants are named) |
//! | rename a variant | no bump | `#[serde(alias = "Old")]`, or bump + migrate |
//! | remove a variant | bump + migrate (later variants renumber: misread) | no bump if no stored snapshot holds it (one that does is refused, not misread) |
//! | tuple structs and tuples | positional | positional too (appending a `#[serde(default)]` element works) |
//!
//! Every row is checked against both codecs by `tests/tests/persistence_codec.rs`.
//! MessagePack costs some size and speed: field names are stored in every
//! snapshot (13 % more bytes on a 64 KiB text-heavy snapshot, 50 % on a 64-byte
//! record one; compression takes most of it back out), and a bare encode +
//! decode takes about 1.5–2.5× bincode's time (`cargo xtask bench --suite
//! envelope` measures both).
//!
//! ## A migration
//!
//! Bump [`SCHEMA_VERSION`](PersistentActor::SCHEMA_VERSION), keep the old layout
//! as a type, and convert in [`migrate_payload`](PersistentActor::migrate_payload)
//! ([`Payload::decode`] decodes with whatever codec the old snapshot was written
//! in; with bincode-only history, [`migrate`](PersistentActor::migrate) and
//! [`decode_payload`] do the same). The next save writes the current version.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use theta::persistence::{MemoryStorage, Payload, PersistentActor, encode_payload, envelope};
//! use theta::prelude::*;
//!
//! /// Schema version 0: whole units.
//! #[derive(Serialize, Deserialize)]
//! struct WalletV0 {
//!     units: i64,
//! }
//!
//! /// Schema version 1: cents.
//! #[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
//! struct Wallet {
//!     cents: i64,
//! }
//!
//! #[derive(Debug)]
//! struct Balance;
//!
//! #[actor("3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e01")]
//! impl Actor for Wallet {
//!     const _: () = {
//!         async |_: Balance| -> i64 { self.cents };
//!     };
//! }
//!
//! impl PersistentActor for Wallet {
//!     type Snapshot = Wallet;
//!     type RuntimeArgs = ();
//!     type ActorArgs = Wallet;
//!     const SCHEMA_VERSION: u32 = 1;
//!
//!     fn persistent_args(snapshot: Wallet, _: ()) -> Wallet {
//!         snapshot
//!     }
//!
//!     fn migrate_payload(from: u32, payload: Payload<'_>) -> Result<Wallet, anyhow::Error> {
//!         match from {
//!             0 => {
//!                 let old: WalletV0 = payload.decode()?;
//!                 Ok(Wallet { cents: old.units * 100 })
//!             }
//!             v => anyhow::bail!("no wallet migration from schema version {v}"),
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let storage = MemoryStorage::new();
//! let id = ActorId::new_v4();
//! // What a build of schema version 0 saved.
//! let old = envelope::Seal::new(<Wallet as Actor>::TYPE_ID)
//!     .actor_id(id)
//!     .schema_version(0)
//!     .sequence(1)
//!     .seal(&encode_payload(&WalletV0 { units: 7 })?);
//! storage.insert_raw(id, old);
//!
//! let wallet = RootContext::default().respawn::<_, Wallet>(&storage, id, ()).await?;
//! assert_eq!(wallet.ask(Balance).await?, 700);
//! # Ok(())
//! # }
//! ```
//!
//! ## The tolerant codec
//!
//! With MessagePack, the same build reads snapshots of the struct before a field
//! was added (with `#[serde(default)]`) or removed, without a version bump. Choose
//! it with `#[actor("..", snapshot, codec = "msgpack")]`, or with
//! [`CODEC`](PersistentActor::CODEC) in a hand-written impl; switching an existing
//! actor type to it is safe (its bincode snapshots still read).
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use theta::persistence::{
//!     Codec, Compression, MemoryStorage, PersistentActor, encode_payload_as, envelope,
//! };
//! use theta::prelude::*;
//!
//! /// The profile as the previous release saved it.
//! #[derive(Serialize)]
//! struct ProfileBefore {
//!     name: String,
//!     legacy_flags: u32,
//! }
//!
//! /// Today: `legacy_flags` removed, `theme` added, same schema version.
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ActorArgs)]
//! struct Profile {
//!     name: String,
//!     #[serde(default)]
//!     theme: String,
//! }
//!
//! #[derive(Debug)]
//! struct Get;
//!
//! #[actor("3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e02")]
//! impl Actor for Profile {
//!     const _: () = {
//!         async |_: Get| -> Profile { self.clone() };
//!     };
//! }
//!
//! impl PersistentActor for Profile {
//!     type Snapshot = Profile;
//!     type RuntimeArgs = ();
//!     type ActorArgs = Profile;
//!     const CODEC: Codec = Codec::MessagePack;
//!     const COMPRESSION: Compression = Compression::Lz4;
//!
//!     fn persistent_args(snapshot: Profile, _: ()) -> Profile {
//!         snapshot
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let storage = MemoryStorage::new();
//! let id = ActorId::new_v4();
//! let before = ProfileBefore { name: "ada".into(), legacy_flags: 3 };
//! let saved = envelope::Seal::new(<Profile as Actor>::TYPE_ID)
//!     .actor_id(id)
//!     .sequence(1)
//!     .codec(Codec::MessagePack.id())
//!     .seal(&encode_payload_as(Codec::MessagePack, &before)?);
//! storage.insert_raw(id, saved);
//!
//! let profile = RootContext::default().respawn::<_, Profile>(&storage, id, ()).await?;
//! assert_eq!(
//!     profile.ask(Get).await?,
//!     Profile { name: "ada".into(), theme: String::new() }
//! );
//! # Ok(())
//! # }
//! ```
//!
//! ## Compression
//!
//! [`COMPRESSION`](PersistentActor::COMPRESSION) compresses an actor type's
//! payloads after encoding: [`Compression::Lz4`] (fast; for actors that save
//! often) or [`Compression::Zstd`] (smaller; for large, rarely saved state).
//! Payloads under [`Compression::MIN_LEN`] bytes, or that would not shrink, are
//! stored as encoded. The size limit
//! ([`MAX_SNAPSHOT_BYTES`](PersistentActor::MAX_SNAPSHOT_BYTES)) applies to the
//! payload *before* compression, which is what a restore has to hold. Like the
//! codec, the compression is recorded per snapshot and can change at any time.
//!
//! ## Bounded work on hostile bytes
//!
//! A save stops encoding as soon as the payload passes the limit
//! ([`PersistenceError::TooLarge`]), so an oversized state costs at most the limit
//! on top of the state and its snapshot. A restore never allocates what bytes
//! merely claim: every string and byte-string length inside a payload is checked
//! against the bytes actually present, sequences and maps preallocate at most
//! about 1 MiB whatever their length prefix says, and decompression produces
//! exactly the decoded length the envelope declares (itself bounded by the
//! limit), growing its output only as the stored bytes really produce it.

mod activation;
mod codec;
mod compression;
mod durability;
mod errors;
mod memory;
mod ownership;
mod policy;
mod respawn;
mod restore;
mod shared;
mod snapshot;
mod strict;
mod virtual_actors;
mod writer;

pub mod envelope;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::actor::{Actor, ActorArgs};
use crate::id::ActorId;

pub use codec::Codec;
pub use compression::{Compression, DecompressError};
pub use durability::{Durability, UnsupportedDurability};
pub use errors::{
    Fenced, OwnedElsewhere, PersistenceError, SnapshotNotFound, SnapshotTooLarge, StaleSnapshot,
    StorageClosed, Unsupported,
};
pub use memory::MemoryStorage;
pub use ownership::{Claim, ClaimMode, ClaimTable, OwnerId};
pub use policy::SnapshotPolicy;
pub use respawn::{PersistentContextExt, PersistentSpawnExt};
pub use restore::{Restore, RestoreArgs};
pub use shared::SharedStorage;
pub use snapshot::{
    CodecError, Payload, decode_payload, decode_payload_as, decode_snapshot, encode_payload,
    encode_payload_as, encode_snapshot, encode_stamped,
};
pub use virtual_actors::{VirtualActors, VirtualActorsBuilder, VirtualError, VirtualStats};

/// A place snapshots are stored: bytes by actor id.
///
/// Implementations must be atomic per id (a reader sees a whole old or a whole new
/// value) and must report a missing snapshot as
/// `anyhow::Error::new(`[`SnapshotNotFound`]`)`, never as empty bytes.
///
/// Only `try_read` and `try_write` are required. The other methods have defaults
/// so that a minimal backend compiles; a backend for real data implements them
/// all, and the conformance kit (feature `conformance`) checks that it does so
/// correctly:
///
/// - **The write rule**, atomically with each write
///   ([`envelope::check_write`]): refuse bytes that are not an envelope or longer
///   than [`envelope::MAX_ENVELOPE_LEN`] ([`SnapshotTooLarge`]), a write from a
///   fenced owner ([`Fenced`]), and a write whose (epoch, sequence) stamp is not
///   newer than the stored one or the last deleted one ([`StaleSnapshot`]).
/// - **Ownership**: [`try_claim`](Self::try_claim) and
///   [`try_release`](Self::try_release) (see [`ClaimMode`] for the design). A
///   backend that cannot fence keeps the default, which says so with
///   [`Unsupported`]; the runtime then only guarantees one live actor per id
///   inside one [`RootContext`](crate::RootContext).
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

    /// Deletes the snapshot of `id`. Deleting an absent snapshot is `Ok`. The
    /// stamp of the deleted snapshot stays known (a tombstone), so a stale writer
    /// cannot bring it back; a new claim of the id writes under a newer epoch.
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

    /// Lists the ids whose stored snapshot was written by actor type `actor_type`
    /// (its `#[actor("uuid")]`).
    ///
    /// Backends keep an index by actor type so that this does not read the
    /// snapshots of other types. The default lists every id and reads each
    /// snapshot's header: correct, but slow on a large store; a snapshot that is
    /// not an envelope fails the listing, naming its id.
    fn try_list_type(
        &self,
        actor_type: uuid::Uuid,
    ) -> impl Future<Output = Result<Vec<ActorId>, anyhow::Error>> + Send {
        async move {
            let mut ids = Vec::new();
            for id in self.try_list().await? {
                let bytes = match self.try_read(id).await {
                    Ok(bytes) => bytes,
                    // Deleted since the listing.
                    Err(err) if errors::is_not_found(&err) => continue,
                    Err(err) => return Err(err),
                };
                let header = envelope::Header::peek(&bytes).map_err(|source| {
                    anyhow::Error::new(PersistenceError::Corrupt { id, source })
                })?;
                if header.actor_type == actor_type {
                    ids.push(id);
                }
            }
            Ok(ids)
        }
    }

    /// Claims ownership of `id` for `owner` and reads its snapshot under the
    /// claim: the new [`Claim`] epoch is higher than any the id had, and writes of
    /// older epochs are refused from now on ([`Fenced`]). In
    /// [`ClaimMode::Exclusive`], refused with [`OwnedElsewhere`] while another
    /// live owner holds the id.
    ///
    /// The default reports [`Unsupported`]: this backend cannot fence.
    fn try_claim(
        &self,
        id: ActorId,
        owner: OwnerId,
        mode: ClaimMode,
    ) -> impl Future<Output = Result<Claim, anyhow::Error>> + Send {
        let _ = (id, owner, mode);
        async {
            Err(anyhow::Error::new(Unsupported {
                operation: "ownership claims",
            }))
        }
    }

    /// Ends `owner`'s claim of `id` under `epoch` (the actor stopped); a no-op if
    /// the claim has moved on. The default does nothing.
    fn try_release(
        &self,
        id: ActorId,
        owner: OwnerId,
        epoch: u64,
    ) -> impl Future<Output = Result<(), anyhow::Error>> + Send {
        let _ = (id, owner, epoch);
        async { Ok(()) }
    }

    /// Finishes every acknowledged write (flushes, checkpoints) and closes the
    /// store for every handle: later writes, deletes and claims fail with a typed
    /// error ([`StorageClosed`] or the backend's own). Errors of the final flush
    /// are reported here. The default does nothing.
    fn try_close(&self) -> impl Future<Output = Result<(), anyhow::Error>> + Send {
        async { Ok(()) }
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

    /// The payload codec this actor type writes (default [`Codec::Bincode`]).
    /// Snapshots written with another codec still read: the envelope records it.
    const CODEC: Codec = Codec::Bincode;

    /// How this actor type's payloads are compressed (default
    /// [`Compression::None`]); skipped when it would not shrink a payload.
    const COMPRESSION: Compression = Compression::None;

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

    /// Converts a snapshot written under an older schema version into the
    /// current `Snapshot`, given its payload with the codec it was written in
    /// (see the [schema-evolution guide](self#schema-evolution)). Decode the old
    /// layout with [`Payload::decode`], then convert.
    ///
    /// The default calls [`migrate`](Self::migrate) with the payload's bytes, so
    /// implementations of `migrate` keep working; implement this one instead when
    /// old snapshots may be in another codec than bincode.
    fn migrate_payload(
        from_version: u32,
        payload: Payload<'_>,
    ) -> Result<Self::Snapshot, anyhow::Error> {
        Self::migrate(from_version, payload.bytes())
    }

    /// The automatic snapshot policy of this actor type (default: manual only).
    /// A [`SharedStorage::with_policy`] handle overrides it per spawn.
    fn snapshot_policy() -> SnapshotPolicy {
        SnapshotPolicy::new()
    }
}
