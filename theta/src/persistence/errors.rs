//! Persistence errors and the marker errors backends return.

use crate::id::ActorId;

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

/// Marker error: a write was refused because its owner epoch is older than the
/// epoch of the id's current owner: the writer was fenced (another activation of
/// the id took ownership since).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "refused write of actor {id} from owner epoch {epoch}: the id is owned under epoch {current} now"
)]
pub struct Fenced {
    /// The actor.
    pub id: ActorId,
    /// The writer's epoch.
    pub epoch: u64,
    /// The current owner's epoch.
    pub current: u64,
}

/// Marker error: [`PersistentStorage::try_claim`](super::PersistentStorage::try_claim)
/// in [`ClaimMode::Exclusive`](super::ClaimMode::Exclusive) found the id held by
/// another live owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("actor {id} is owned by {holder} (epoch {epoch})")]
pub struct OwnedElsewhere {
    /// The actor.
    pub id: ActorId,
    /// The owner holding it.
    pub holder: super::OwnerId,
    /// The holder's epoch.
    pub epoch: u64,
}

/// Marker error: a write longer than
/// [`envelope::MAX_ENVELOPE_LEN`](super::envelope::MAX_ENVELOPE_LEN), the size limit
/// of every backend, was refused before anything was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("refused snapshot of actor {id}: {len} bytes is over the limit of {limit} bytes")]
pub struct SnapshotTooLarge {
    /// The actor.
    pub id: ActorId,
    /// Bytes attempted.
    pub len: usize,
    /// The limit.
    pub limit: usize,
}

/// Marker error: the storage was closed with
/// [`PersistentStorage::try_close`](super::PersistentStorage::try_close); it
/// refuses further writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the storage at {location} is closed")]
pub struct StorageClosed {
    /// Where the storage is (a path, a URL without credentials, "memory").
    pub location: String,
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
    /// The storage refused the write: another activation of this id owns it now
    /// (a newer owner epoch). The actor that tried it stops with this reason.
    #[error(
        "actor {id} was fenced: its owner epoch {epoch} is older than the current owner's epoch {current}; another instance took it over"
    )]
    Fenced {
        /// The actor.
        id: ActorId,
        /// The epoch this instance held.
        epoch: u64,
        /// The current owner's epoch.
        current: u64,
    },
    /// The storage refused to give ownership of the id: another live owner holds it.
    #[error(
        "actor {id} is owned by another instance ({holder}, epoch {epoch}); take it over explicitly if that instance is gone"
    )]
    OwnedElsewhere {
        /// The actor.
        id: ActorId,
        /// The owner holding it.
        holder: super::OwnerId,
        /// The holder's epoch.
        epoch: u64,
    },
    /// The stored snapshot belongs to another actor (its envelope names another
    /// id): it was copied or moved to the wrong place.
    #[error("snapshot stored for actor {id} belongs to actor {found}; refusing to restore it")]
    WrongActor {
        /// The actor whose snapshot was read.
        id: ActorId,
        /// The id the snapshot names.
        found: ActorId,
    },
    /// Two actor types declare the same type uuid, so their snapshots could not be
    /// told apart.
    #[error(
        "actor types {first} and {second} both declare the type uuid {type_id}; give one of them another uuid in #[actor(\"...\")] (spawning actor {id})"
    )]
    DuplicateTypeId {
        /// The actor being spawned.
        id: ActorId,
        /// The shared uuid.
        type_id: uuid::Uuid,
        /// The type registered first.
        first: &'static str,
        /// The type being spawned.
        second: &'static str,
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
            | Self::TooLarge { id, .. }
            | Self::Fenced { id, .. }
            | Self::OwnedElsewhere { id, .. }
            | Self::WrongActor { id, .. }
            | Self::DuplicateTypeId { id, .. } => *id,
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
        if let Some(stale) = source.downcast_ref::<StaleSnapshot>() {
            return Self::Stale {
                id,
                stored: stale.stored,
                attempted: stale.attempted,
            };
        }
        if let Some(fenced) = source.downcast_ref::<Fenced>() {
            return Self::Fenced {
                id,
                epoch: fenced.epoch,
                current: fenced.current,
            };
        }
        if let Some(large) = source.downcast_ref::<SnapshotTooLarge>() {
            return Self::TooLarge {
                id,
                size: large.len,
                limit: large.limit,
            };
        }
        Self::Write { id, source }
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
        assert_error::<Fenced>();
        assert_error::<OwnedElsewhere>();
        assert_error::<SnapshotTooLarge>();
        assert_error::<StorageClosed>();
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
