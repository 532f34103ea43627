//! The snapshot envelope: the framing every stored snapshot carries.
//!
//! ```text
//! offset size field
//!      0    4 magic            b"THSN"
//!      4    2 envelope version  u16 LE (this build writes and reads 1)
//!      6    1 codec id          1 = bincode 2 (standard config, serde)
//!      7    1 reserved          0
//!      8   16 actor type uuid   from #[actor("...")]
//!     24    4 schema version    u32 LE (PersistentActor::SCHEMA_VERSION)
//!     28    8 sequence number   u64 LE, per actor, +1 per save
//!     36    8 payload length    u64 LE
//!     44    n payload
//!   44+n    4 CRC-32C           over bytes 0..44+n, LE
//! ```
//!
//! [`open`] verifies magic, version, length, checksum and codec before anything is
//! decoded, and refuses a declared payload length over its limit before allocating.
//! Backends use [`Header::peek`] to read the sequence number of stored and incoming
//! bytes (to refuse a stale write) without verifying the checksum.

use crate::ActorId;

/// The first four bytes of every envelope.
pub const MAGIC: [u8; 4] = *b"THSN";
/// The envelope format version this build writes.
pub const ENVELOPE_VERSION: u16 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 44;
/// Bytes after the payload (the checksum).
pub const TRAILER_LEN: usize = 4;
/// Codec id of bincode 2 with its standard configuration, through serde.
pub const CODEC_BINCODE2: u8 = 1;
/// Default limit on a snapshot's payload: 64 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 << 20;
/// The hard ceiling on any payload (1 GiB): no configured limit goes above it.
pub const MAX_PAYLOAD: usize = 1 << 30;
/// The largest envelope theta writes or reads: backends may refuse to read
/// anything longer without allocating it.
pub const MAX_ENVELOPE_LEN: usize = HEADER_LEN + MAX_PAYLOAD + TRAILER_LEN;

/// The parsed fixed-size header of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Envelope format version.
    pub envelope_version: u16,
    /// Payload codec id.
    pub codec: u8,
    /// The uuid of the actor type that wrote the snapshot.
    pub actor_type: uuid::Uuid,
    /// The snapshot schema version of that actor type when it wrote the snapshot.
    pub schema_version: u32,
    /// The writer's per-actor sequence number.
    pub sequence: u64,
    /// Payload length in bytes.
    pub payload_len: u64,
}

/// Why bytes are not a valid envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Fewer bytes than a header and checksum (including empty input).
    #[error("truncated: {len} bytes is shorter than the {min}-byte envelope framing")]
    TooShort {
        /// Bytes present.
        len: usize,
        /// Minimum envelope size.
        min: usize,
    },
    /// The bytes do not start with the envelope magic.
    #[error("not a theta snapshot (bad magic bytes)")]
    BadMagic,
    /// Written by a newer (or unknown) envelope format.
    #[error("envelope version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        /// Version in the bytes.
        found: u16,
        /// Version this build reads.
        supported: u16,
    },
    /// The declared payload is larger than the decoder accepts.
    #[error("declared payload of {declared} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Declared payload length.
        declared: u64,
        /// The limit in force.
        limit: usize,
    },
    /// The declared payload length does not match the bytes present.
    #[error("length mismatch: header declares {declared} payload bytes, {actual} present")]
    LengthMismatch {
        /// Declared payload length.
        declared: u64,
        /// Payload bytes actually present.
        actual: usize,
    },
    /// The checksum does not match: the bytes were damaged.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        /// CRC in the trailer.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// The payload codec is unknown to this build.
    #[error("unknown payload codec id {0}")]
    UnknownCodec(u8),
}

impl Header {
    /// Parses the header without verifying the checksum: magic, version and the
    /// declared length against the bytes present.
    pub fn peek(bytes: &[u8]) -> Result<Header, EnvelopeError> {
        let min = HEADER_LEN + TRAILER_LEN;
        if bytes.len() < min {
            // A short input that does not even start like an envelope is foreign,
            // not truncated.
            if bytes.len() >= MAGIC.len() && bytes[..MAGIC.len()] != MAGIC {
                return Err(EnvelopeError::BadMagic);
            }
            return Err(EnvelopeError::TooShort {
                len: bytes.len(),
                min,
            });
        }
        if bytes[..4] != MAGIC {
            return Err(EnvelopeError::BadMagic);
        }
        let envelope_version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if envelope_version != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion {
                found: envelope_version,
                supported: ENVELOPE_VERSION,
            });
        }
        let header = Header {
            envelope_version,
            codec: bytes[6],
            actor_type: uuid::Uuid::from_bytes(array(&bytes[8..24])),
            schema_version: u32::from_le_bytes(array(&bytes[24..28])),
            sequence: u64::from_le_bytes(array(&bytes[28..36])),
            payload_len: u64::from_le_bytes(array(&bytes[36..44])),
        };
        let actual = bytes.len() - min;
        if header.payload_len != actual as u64 {
            return Err(EnvelopeError::LengthMismatch {
                declared: header.payload_len,
                actual,
            });
        }
        Ok(header)
    }
}

fn array<const N: usize>(slice: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(slice);
    out
}

/// Verifies an envelope completely and returns its header and payload.
///
/// Checks, in order: framing length, magic, version, declared length against
/// `max_payload` and against the bytes present, the CRC-32C, and the codec id.
pub fn open(bytes: &[u8], max_payload: usize) -> Result<(Header, &[u8]), EnvelopeError> {
    if bytes.len() >= HEADER_LEN
        && bytes[..4] == MAGIC
        && u16::from_le_bytes([bytes[4], bytes[5]]) == ENVELOPE_VERSION
    {
        // Refuse a hostile declared length before anything else looks at it.
        let declared = u64::from_le_bytes(array(&bytes[36..44]));
        if declared > max_payload as u64 {
            return Err(EnvelopeError::TooLarge {
                declared,
                limit: max_payload,
            });
        }
    }
    let header = Header::peek(bytes)?;
    let body_end = bytes.len() - TRAILER_LEN;
    let stored = u32::from_le_bytes(array(&bytes[body_end..]));
    let computed = crc32c::crc32c(&bytes[..body_end]);
    if stored != computed {
        return Err(EnvelopeError::Checksum { stored, computed });
    }
    if header.codec != CODEC_BINCODE2 {
        return Err(EnvelopeError::UnknownCodec(header.codec));
    }
    Ok((header, &bytes[HEADER_LEN..body_end]))
}

/// Frames an already-encoded payload (codec [`CODEC_BINCODE2`]).
///
/// For backends' tests and tools; actors' snapshots are sealed by the runtime.
pub fn seal(actor_type: uuid::Uuid, schema_version: u32, sequence: u64, payload: &[u8]) -> Vec<u8> {
    let mut buf = begin(payload.len());
    buf.extend_from_slice(payload);
    finish(buf, actor_type, schema_version, sequence)
}

/// A buffer with room for the header, ready for the payload to be appended.
pub(crate) fn begin(payload_hint: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER_LEN + payload_hint + TRAILER_LEN);
    buf.resize(HEADER_LEN, 0);
    buf
}

/// Fills in the header of a buffer from [`begin`] (payload appended) and appends the
/// checksum.
pub(crate) fn finish(
    mut buf: Vec<u8>,
    actor_type: uuid::Uuid,
    schema_version: u32,
    sequence: u64,
) -> Vec<u8> {
    let payload_len = (buf.len() - HEADER_LEN) as u64;
    buf[..4].copy_from_slice(&MAGIC);
    buf[4..6].copy_from_slice(&ENVELOPE_VERSION.to_le_bytes());
    buf[6] = CODEC_BINCODE2;
    buf[7] = 0;
    buf[8..24].copy_from_slice(actor_type.as_bytes());
    buf[24..28].copy_from_slice(&schema_version.to_le_bytes());
    buf[28..36].copy_from_slice(&sequence.to_le_bytes());
    buf[36..44].copy_from_slice(&payload_len.to_le_bytes());
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf
}

/// The sequence number of an envelope, if `bytes` parse as one.
pub fn sequence_of(bytes: &[u8]) -> Option<u64> {
    Header::peek(bytes).ok().map(|h| h.sequence)
}

/// Refuses to replace `stored` with `incoming` when both are envelopes and the
/// incoming sequence number is lower. A helper for backends.
///
/// Returns the [`StaleSnapshot`](super::StaleSnapshot) error a backend should
/// return (wrapped in `anyhow`) in that case.
pub fn check_not_stale(
    id: ActorId,
    stored: &[u8],
    incoming: &[u8],
) -> Result<(), super::StaleSnapshot> {
    match (sequence_of(stored), sequence_of(incoming)) {
        (Some(stored), Some(attempted)) if attempted < stored => Err(super::StaleSnapshot {
            id,
            stored,
            attempted,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPE: uuid::Uuid = uuid::uuid!("00000000-0000-4000-8000-000000000001");

    #[test]
    fn round_trip() {
        let bytes = seal(TYPE, 3, 7, b"hello");
        let (header, payload) = open(&bytes, DEFAULT_MAX_PAYLOAD).unwrap();
        assert_eq!(payload, b"hello");
        assert_eq!(header.actor_type, TYPE);
        assert_eq!(header.schema_version, 3);
        assert_eq!(header.sequence, 7);
        assert_eq!(bytes.len(), HEADER_LEN + 5 + TRAILER_LEN);
    }

    #[test]
    fn every_truncation_is_rejected() {
        let bytes = seal(TYPE, 0, 1, &[7u8; 32]);
        for len in 0..bytes.len() {
            assert!(
                open(&bytes[..len], DEFAULT_MAX_PAYLOAD).is_err(),
                "len {len}"
            );
        }
    }

    #[test]
    fn every_bit_flip_is_rejected() {
        let bytes = seal(TYPE, 0, 1, b"abc");
        for i in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[i / 8] ^= 1 << (i % 8);
            assert!(open(&damaged, DEFAULT_MAX_PAYLOAD).is_err(), "bit {i}");
        }
    }

    #[test]
    fn lying_length_is_refused_before_allocation() {
        let mut bytes = seal(TYPE, 0, 1, b"abc");
        bytes[36..44].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(matches!(
            open(&bytes, DEFAULT_MAX_PAYLOAD),
            Err(EnvelopeError::TooLarge { .. })
        ));
    }

    #[test]
    fn future_version_is_named() {
        let mut bytes = seal(TYPE, 0, 1, b"abc");
        bytes[4..6].copy_from_slice(&2u16.to_le_bytes());
        assert_eq!(
            open(&bytes, DEFAULT_MAX_PAYLOAD),
            Err(EnvelopeError::UnsupportedVersion {
                found: 2,
                supported: 1
            })
        );
    }

    #[test]
    fn stale_check() {
        let id = ActorId::from_u128(9);
        let newer = seal(TYPE, 0, 5, b"x");
        let older = seal(TYPE, 0, 4, b"x");
        assert!(check_not_stale(id, &newer, &older).is_err());
        assert!(check_not_stale(id, &older, &newer).is_ok());
        assert!(check_not_stale(id, b"junk", &older).is_ok());
    }
}
