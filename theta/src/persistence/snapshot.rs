//! The codec seam: actor snapshot ⇄ envelope bytes.
//!
//! All encoding goes through here, so a later codec only adds a codec id and a
//! branch in [`decode_payload`]'s caller.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::actor::Actor;
use crate::id::ActorId;

use super::envelope::{self, HEADER_LEN, Seal, Stamp};
use super::{Codec, Compression, PersistenceError, PersistentActor};

/// bincode 2, standard configuration. Its own limit bounds what a lying length
/// prefix *inside* the payload may claim; the envelope limit bounds the payload.
fn config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<{ BINCODE_LIMIT }>,
> {
    bincode::config::standard().with_limit::<{ BINCODE_LIMIT }>()
}

/// A hard ceiling for any single decode; the per-actor limit is applied to the
/// payload length before decoding starts.
const BINCODE_LIMIT: usize = envelope::MAX_PAYLOAD;

/// `A`'s payload limit, never above what the codec can read back.
fn limit<A: PersistentActor>() -> usize {
    A::MAX_SNAPSHOT_BYTES.min(envelope::MAX_PAYLOAD)
}

/// Appends the encoding straight after the envelope header: no intermediate
/// buffer, no `io::Write` indirection.
struct Sink<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for Sink<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// A payload failed to encode or decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(String);

/// Decodes a snapshot payload (the bytes inside an envelope) as `T` with theta's
/// codec. Trailing bytes are an error.
///
/// For [`PersistentActor::migrate`]: decode the old layout, then convert.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    let (value, read) = bincode::serde::decode_from_slice(payload, config())
        .map_err(|e| CodecError(e.to_string()))?;
    if read != payload.len() {
        return Err(CodecError(format!(
            "{} trailing bytes after the snapshot",
            payload.len() - read
        )));
    }
    Ok(value)
}

/// Encodes `value` as a payload with theta's codec (for tests and tools that build
/// snapshots of older schema versions).
pub fn encode_payload<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError(e.to_string()))
}

/// Captures `actor`'s snapshot and frames it in an envelope with sequence number
/// `sequence` and owner epoch 0: exactly what a save without ownership writes.
/// For tools, tests and benchmarks.
pub fn encode_snapshot<A: PersistentActor>(
    id: ActorId,
    sequence: u64,
    actor: &A,
) -> Result<Vec<u8>, PersistenceError> {
    encode_stamped(id, Stamp::new(0, sequence), actor)
}

/// [`encode_snapshot`] with an owner epoch: the snapshot a save under ownership
/// writes.
pub fn encode_stamped<A: PersistentActor>(
    id: ActorId,
    stamp: Stamp,
    actor: &A,
) -> Result<Vec<u8>, PersistenceError> {
    if A::CODEC != Codec::Bincode || A::COMPRESSION != Compression::None {
        return Err(PersistenceError::Encode {
            id,
            message: format!(
                "codec {:?} with compression {:?} is not available in this build",
                A::CODEC,
                A::COMPRESSION
            ),
        });
    }
    let snapshot = A::Snapshot::from(actor);
    let mut buf = envelope::begin(256);
    bincode::serde::encode_into_writer(&snapshot, Sink(&mut buf), config()).map_err(|e| {
        PersistenceError::Encode {
            id,
            message: e.to_string(),
        }
    })?;
    let size = buf.len() - HEADER_LEN;
    if size > limit::<A>() {
        return Err(PersistenceError::TooLarge {
            id,
            size,
            limit: limit::<A>(),
        });
    }
    Ok(Seal::new(A::TYPE_ID)
        .actor_id(id)
        .schema_version(A::SCHEMA_VERSION)
        .stamp(stamp)
        .finish(buf))
}

/// Verifies stored bytes and decodes them into `A`'s snapshot (migrating an older
/// schema) and the stored sequence number: exactly what a restore reads.
pub fn decode_snapshot<A: PersistentActor>(
    id: ActorId,
    bytes: &[u8],
) -> Result<(A::Snapshot, u64), PersistenceError> {
    let (header, payload) =
        envelope::open(bytes, limit::<A>()).map_err(|e| PersistenceError::from_envelope(id, e))?;
    if let Some(found) = header.actor_id
        && found != id
    {
        return Err(PersistenceError::WrongActor { id, found });
    }
    if header.actor_type != <A as Actor>::TYPE_ID {
        return Err(PersistenceError::TypeMismatch {
            id,
            expected: A::TYPE_ID,
            found: header.actor_type,
        });
    }
    let current = A::SCHEMA_VERSION;
    let snapshot = if header.schema_version > current {
        return Err(PersistenceError::SchemaTooNew {
            id,
            found: header.schema_version,
            current,
        });
    } else if header.schema_version < current {
        A::migrate(header.schema_version, payload).map_err(|source| {
            PersistenceError::Migration {
                id,
                found: header.schema_version,
                current,
                source,
            }
        })?
    } else {
        decode_payload(payload).map_err(|source| PersistenceError::Decode { id, source })?
    };
    Ok((snapshot, header.sequence))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ActorArgs, Context};

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Huge;

    impl From<&Huge> for Huge {
        fn from(_: &Huge) -> Self {
            Huge
        }
    }

    impl Actor for Huge {
        type Msg = ();
        const TYPE_ID: uuid::Uuid = uuid::Uuid::from_u128(7);
        async fn process_msg(&mut self, _: &Context<Self>, _: ()) {}
    }

    impl ActorArgs for Huge {
        type Actor = Huge;
        async fn initialize(_: Context<Huge>, _: &Self) -> Huge {
            Huge
        }
    }

    impl PersistentActor for Huge {
        type Snapshot = Huge;
        type RuntimeArgs = ();
        type ActorArgs = Huge;
        const MAX_SNAPSHOT_BYTES: usize = usize::MAX;
        fn persistent_args(s: Huge, _: ()) -> Huge {
            s
        }
    }

    #[test]
    fn a_configured_limit_never_exceeds_what_the_codec_reads() {
        assert_eq!(limit::<Huge>(), envelope::MAX_PAYLOAD);
    }
}
