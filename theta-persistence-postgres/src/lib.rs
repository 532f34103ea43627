//! [`PersistentStorage`](theta::persistence::PersistentStorage) on PostgreSQL:
//! the store several instances of a service share, with ownership that holds
//! across processes.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use theta_persistence_postgres::PostgresStorage;
//!
//! let storage = PostgresStorage::connect("postgres://app@db.internal:5432/orders").await?;
//! # let _ = storage;
//! # Ok(())
//! # }
//! ```
//!
//! See [`PostgresStorage`] for the guarantees and [`PostgresBuilder`] for the
//! options (schema and table names, lease TTL, statement timeout, durability,
//! batching).
//!
//! # Design
//!
//! **Tables** (in the configured schema, `public` by default):
//!
//! | table | one row per | what it holds |
//! |---|---|---|
//! | `<table>` (`theta_snapshots`) | actor id | the snapshot bytes (NULL: none), their actor type, the stamp (epoch, sequence) of the stored or last deleted snapshot, the claimed epoch and its holder |
//! | `<table>_owners` | owner (one `RootContext`) | the lease: `expires_at`, by the server's clock |
//! | `<table>_migrations` | layout version applied | created with the tables; a newer version than this build's is refused |
//!
//! Rows of the snapshot table are never removed: a delete sets the bytes to
//! NULL and keeps the stamp (a tombstone) and the claimed epoch, so epochs
//! only grow and a stale writer cannot resurrect a deleted snapshot.
//!
//! **The write path**, for one `try_write`:
//!
//! 1. The length is checked against `MAX_ENVELOPE_LEN`, the envelope header is
//!    parsed (epoch, sequence, actor type): refused before anything is sent.
//! 2. The write joins the write queue; the write task sends everything queued
//!    as one statement (at most one write per id, ids sorted) on a pooled
//!    connection, with up to two such statements in flight (configurable).
//! 3. The statement is an `INSERT .. ON CONFLICT (id) DO UPDATE` whose `SET`
//!    applies the write rule to the locked row: stored when the epoch is at
//!    least the claimed one and the stamp newer than the row's; otherwise the
//!    row keeps its values and `last_write` records why (fenced or stale),
//!    which `RETURNING` reports with the row's stamps for the error.
//! 4. The statement commits on its own, at the storage's `synchronous_commit`
//!    level (set when its own connections start; on a caller's pool, inside
//!    each statement); each write is answered after the commit, with its own
//!    outcome.
//!
//! **The claim path**: the same shape. `INSERT .. ON CONFLICT DO UPDATE`
//! grants the claim (Takeover; Exclusive when the row has no holder, the holder
//! is the claimant, or the holder's lease has expired), bumps `claimed_epoch`
//! above both the claimed and the stored epoch, and returns the snapshot;
//! a refused claim returns the holder it found on the same row version.
//! Writes of older epochs are refused from that commit on, because they lock
//! the same row. An owner's lease row is written before its first claim.
//!
//! **A paused owner** (a stopped process, a long GC pause, a partition) stops
//! renewing. Once its lease has run out, other processes' exclusive claims of
//! its ids are granted with higher epochs; when it wakes up, each of its writes
//! to such an id is refused with `Fenced` (its epoch is older than the row's
//! claimed epoch), and the runtime stops that actor. Its writes to ids nobody
//! claimed still succeed: it still owns them, and its renewal task renews its
//! lease again.
//!
//! **Faults**: a statement that fails on a broken connection fails every write
//! of its batch (none is acknowledged; the commit may or may not have
//! happened, which the stamp rule makes harmless for a retry with a new
//! sequence). The broken connection is dropped; the pool connects again on the
//! next operation.
//!
//! The client is tokio-postgres with a deadpool pool: both are the maintained,
//! async-native choices for tokio, and deadpool's pool hands connections out
//! without a background reaper thread.

#![warn(missing_docs)]

mod batch;
mod core;
mod error;
mod lease;
mod ops;
mod options;
mod schema;
mod sql;
mod storage;

pub use error::PostgresError;
pub use options::{
    DEFAULT_LEASE_TTL, DEFAULT_SCHEMA, DEFAULT_STATEMENT_TIMEOUT, DEFAULT_TABLE, MAX_NAME_LEN,
    PostgresBuilder,
};
pub use storage::PostgresStorage;

/// The pool crate this backend uses (for [`PostgresStorage::from_pool`]).
pub use deadpool_postgres;
/// The client crate this backend uses.
pub use tokio_postgres;
