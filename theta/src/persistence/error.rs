//! Persistence errors and the marker errors backends return.

use crate::actor::ActorId;

use super::envelope::EnvelopeError;

/// Marker error: the storage holds no snapshot for this id.
///
/// Backends return `Err(anyhow::Error::new(SnapshotNotFound))` from `try_read`;
/// it is the only read error after which `respawn_or` starts a fresh actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, thiserror::Error)]
#[error("no snapshot stored")]
pub struct SnapshotNotFound;

/// Marker error: a write was refused because the storage holds a snapshot with a
/// higher sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "refused stale snapshot of actor {id}: sequence {attempted} is older than the stored {stored}"
)]
pub struct StaleSnapshot {
    /// The actor.
    pub id: ActorId,
    /// Sequence number of the stored snapshot.
    pub stored: u64,
    /// Sequence number of the refused write.
    pub attempted: u64,
}

/// Marker error: the backend does not implement an optional operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this storage does not support {operation}")]
pub struct Unsupported {
    /// The operation, e.g. `"delete"`.
    pub operation: &'static str,
}

/// What went wrong persisting or restoring an actor. Every variant names the actor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistenceError {
    /// An actor with this id is already live in this `RootContext`.
    #[error("persistent actor {0} is already running")]
    AlreadyRunning(ActorId),
    /// The operation needs the actor stopped first.
    #[error("actor {0} is running; stop it before deleting its snapshot")]
    Running(ActorId),
    /// `respawn` found no snapshot.
    #[error("no snapshot stored for actor {0}")]
    NotFound(ActorId),
    /// `spawn_persistent` found a stored snapshot it would shadow.
    #[error(
        "actor {0} already has a stored snapshot; respawn it to recover that state, or delete the snapshot first"
    )]
    SnapshotExists(ActorId),
    /// The storage failed to read.
    #[error("reading the snapshot of actor {id} failed: {source:#}")]
    Read {
        /// The actor.
        id: ActorId,
        /// The backend's error.
        #[source]
        source: anyhow::Error,
    },
    /// The storage failed to write; the previous snapshot is still the stored one.
    #[error("writing the snapshot of actor {id} failed: {source:#}")]
    Write {
        /// The actor.
        id: ActorId,
        /// The backend's error.
        #[source]
        source: anyhow::Error,
    },
    /// The storage failed to delete.
    #[error("deleting the snapshot of actor {id} failed: {source:#}")]
    Delete {
        /// The actor.
        id: ActorId,
        /// The backend's error.
        #[source]
        source: anyhow::Error,
    },
    /// The storage refused the write because it holds a newer snapshot.
    #[error(
        "storage holds a newer snapshot of actor {id} (sequence {stored}); refused sequence {attempted}"
    )]
    Stale {
        /// The actor.
        id: ActorId,
        /// Stored sequence number.
        stored: u64,
        /// Refused sequence number.
        attempted: u64,
    },
    /// The stored bytes are not a valid envelope: empty, truncated, damaged or not a
    /// theta snapshot.
    #[error("snapshot of actor {id} is corrupt: {source}")]
    Corrupt {
        /// The actor.
        id: ActorId,
        /// What is wrong with the bytes.
        #[source]
        source: EnvelopeError,
    },
    /// The snapshot uses an envelope format this build does not read.
    #[error(
        "snapshot of actor {id} uses envelope version {found}; this build reads version {supported}"
    )]
    UnsupportedEnvelope {
        /// The actor.
        id: ActorId,
        /// Version found.
        found: u16,
        /// Version supported.
        supported: u16,
    },
    /// The snapshot was written by another actor type.
    #[error("snapshot of actor {id} belongs to actor type {found}, expected {expected}")]
    TypeMismatch {
        /// The actor.
        id: ActorId,
        /// This actor type's uuid.
        expected: uuid::Uuid,
        /// The uuid in the snapshot.
        found: uuid::Uuid,
    },
    /// The snapshot's schema version is newer than this build's.
    #[error(
        "snapshot of actor {id} has schema version {found}, newer than this build's version {current}"
    )]
    SchemaTooNew {
        /// The actor.
        id: ActorId,
        /// Version found.
        found: u32,
        /// This build's version.
        current: u32,
    },
    /// The snapshot's schema version is older and migration failed (or is not
    /// defined).
    #[error(
        "snapshot of actor {id} has schema version {found}, older than {current}, and could not be migrated: {source:#}"
    )]
    Migration {
        /// The actor.
        id: ActorId,
        /// Version found.
        found: u32,
        /// This build's version.
        current: u32,
        /// The migrate hook's error.
        #[source]
        source: anyhow::Error,
    },
    /// The payload passed every check but does not decode as the snapshot type.
    #[error("snapshot of actor {id} does not decode: {source}")]
    Decode {
        /// The actor.
        id: ActorId,
        /// The codec's error.
        #[source]
        source: super::CodecError,
    },
    /// The snapshot could not be encoded.
    #[error("snapshot of actor {id} could not be encoded: {message}")]
    Encode {
        /// The actor.
        id: ActorId,
        /// The codec's message.
        message: String,
    },
    /// The encoded snapshot is over [`PersistentActor::MAX_SNAPSHOT_BYTES`](super::PersistentActor::MAX_SNAPSHOT_BYTES),
    /// so it would not be readable; it was not written.
    #[error("snapshot of actor {id} is {size} bytes, over the limit of {limit} bytes; not written")]
    TooLarge {
        /// The actor.
        id: ActorId,
        /// Encoded payload size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// An automatic snapshot policy needs an owned storage handle.
    #[error(
        "actor {0} has an automatic snapshot policy but the storage has no shared handle; pass a theta::persistence::SharedStorage"
    )]
    NeedsSharedStorage(ActorId),
}

impl PersistenceError {
    /// The actor this error is about.
    pub fn actor_id(&self) -> ActorId {
        match self {
            Self::AlreadyRunning(id)
            | Self::Running(id)
            | Self::NotFound(id)
            | Self::SnapshotExists(id)
            | Self::NeedsSharedStorage(id) => *id,
            Self::Read { id, .. }
            | Self::Write { id, .. }
            | Self::Delete { id, .. }
            | Self::Stale { id, .. }
            | Self::Corrupt { id, .. }
            | Self::UnsupportedEnvelope { id, .. }
            | Self::TypeMismatch { id, .. }
            | Self::SchemaTooNew { id, .. }
            | Self::Migration { id, .. }
            | Self::Decode { id, .. }
            | Self::Encode { id, .. }
            | Self::TooLarge { id, .. } => *id,
        }
    }

    pub(crate) fn from_envelope(id: ActorId, err: EnvelopeError) -> Self {
        match err {
            EnvelopeError::UnsupportedVersion { found, supported } => Self::UnsupportedEnvelope {
                id,
                found,
                supported,
            },
            source => Self::Corrupt { id, source },
        }
    }

    pub(crate) fn from_write(id: ActorId, source: anyhow::Error) -> Self {
        match source.downcast_ref::<StaleSnapshot>() {
            Some(stale) => Self::Stale {
                id,
                stored: stale.stored,
                attempted: stale.attempted,
            },
            None => Self::Write { id, source },
        }
    }
}

/// Whether a backend error is the "no snapshot" marker.
pub(crate) fn is_not_found(err: &anyhow::Error) -> bool {
    err.is::<SnapshotNotFound>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}

    #[test]
    fn errors_are_send_sync_static() {
        assert_error::<PersistenceError>();
        assert_error::<SnapshotNotFound>();
        assert_error::<StaleSnapshot>();
        assert_error::<Unsupported>();
        assert_error::<crate::AskError>();
        assert_error::<crate::SendError>();
        assert_error::<crate::SpawnError>();
        assert_error::<crate::ShutdownError>();
    }

    #[test]
    fn messages_name_the_actor_and_the_cause() {
        let id = ActorId::from_u128(0xabc);
        let err = PersistenceError::from_write(
            id,
            anyhow::Error::new(std::io::Error::other("disk on fire")),
        );
        let text = err.to_string();
        assert!(
            text.contains(&id.to_string()) && text.contains("disk on fire"),
            "{text}"
        );
        let stale = PersistenceError::from_write(
            id,
            anyhow::Error::new(StaleSnapshot {
                id,
                stored: 9,
                attempted: 3,
            }),
        );
        assert!(matches!(
            stale,
            PersistenceError::Stale {
                stored: 9,
                attempted: 3,
                ..
            }
        ));
    }
}
