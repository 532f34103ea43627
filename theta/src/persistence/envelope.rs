//! The snapshot envelope: the framing every stored snapshot carries.
//!
//! This build writes version 2 and reads versions 1 and 2.
//!
//! ```text
//! version 2                               version 1 (read only)
//! offset size field                       offset size field
//!      0    4 magic         b"THSN"            0    4 magic
//!      4    2 version       u16 LE = 2         4    2 version = 1
//!      6    1 codec id                         6    1 codec id (1)
//!      7    1 compression id                   7    1 reserved (0)
//!      8   16 actor type uuid                  8   16 actor type uuid
//!     24   16 actor id                        24    4 schema version
//!     40    4 schema version  u32 LE          28    8 sequence number
//!     44    8 sequence number u64 LE          36    8 payload length
//!     52    8 owner epoch     u64 LE          44    n payload
//!     60    8 payload length  u64 LE        44+n    4 CRC-32C
//!     68    8 decoded length  u64 LE
//!     76    n payload
//!   76+n    4 CRC-32C over bytes 0..76+n, LE
//! ```
//!
//! - The **actor id** binds a snapshot to the actor it belongs to: bytes copied
//!   from one actor's place to another's are refused, not restored (version 1 has
//!   no id, and is read as bound to whichever id it is stored under).
//! - The **owner epoch** is the ownership epoch the writer held (see
//!   [`ClaimMode`](super::ClaimMode)); stores refuse a write of an epoch older than
//!   the id's current owner ([`Fenced`]). Version 1 reads as epoch 0.
//! - **Codec** and **compression** ids say how the payload was written, so a later
//!   change of either still reads old snapshots. The *decoded length* is the
//!   payload's length before compression; decompression never produces more.
//! - The **(epoch, sequence) [`Stamp`]** orders the writes of one id: a store
//!   accepts a write only if its stamp is newer than the stored one
//!   ([`check_write`]).
//!
//! [`open`] verifies magic, version, lengths, checksum, codec and compression ids
//! before anything is decoded, and refuses a declared payload length over its
//! limit before allocating. Backends use [`Header::peek`] to read the stamp of
//! stored and incoming bytes without verifying the checksum.

use crate::ActorId;

use super::errors::{Fenced, SnapshotTooLarge, StaleSnapshot};

/// The first four bytes of every envelope.
pub const MAGIC: [u8; 4] = *b"THSN";
/// The envelope format version this build writes.
pub const ENVELOPE_VERSION: u16 = 2;
/// The oldest envelope format version this build reads.
pub const OLDEST_READABLE_VERSION: u16 = 1;
/// Bytes before the payload in a version-2 envelope.
pub const HEADER_LEN: usize = 76;
/// Bytes before the payload in a version-1 envelope.
pub const HEADER_LEN_V1: usize = 44;
/// Bytes after the payload (the checksum).
pub const TRAILER_LEN: usize = 4;
/// Codec id of bincode 2 with its standard configuration, through serde.
pub const CODEC_BINCODE2: u8 = 1;
/// Codec id of MessagePack with named fields (`rmp-serde`, maps keyed by field name).
pub const CODEC_MSGPACK: u8 = 2;
/// Compression id: the payload is stored as encoded.
pub const COMPRESSION_NONE: u8 = 0;
/// Compression id: LZ4 block format.
pub const COMPRESSION_LZ4: u8 = 1;
/// Compression id: zstd frame.
pub const COMPRESSION_ZSTD: u8 = 2;
/// Default limit on a snapshot's payload: 64 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 << 20;
/// The hard ceiling on any payload (1 GiB), stored or decoded: no configured limit
/// goes above it.
pub const MAX_PAYLOAD: usize = 1 << 30;
/// The largest envelope theta writes or reads, of any version. Every backend
/// refuses a longer write with [`SnapshotTooLarge`] (see [`check_len`]) and may
/// refuse to read anything longer without allocating it.
pub const MAX_ENVELOPE_LEN: usize = HEADER_LEN + MAX_PAYLOAD + TRAILER_LEN;

/// The (owner epoch, sequence number) pair that orders the writes of one id:
/// compared epoch first.
///
/// Each activation of a persistent actor writes under a new, higher epoch, and
/// each of its saves takes the next sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Stamp {
    /// The owner epoch the writer held (0 when written without ownership).
    pub epoch: u64,
    /// The writer's per-actor sequence number.
    pub sequence: u64,
}

impl Stamp {
    /// A stamp of `epoch` and `sequence`.
    pub const fn new(epoch: u64, sequence: u64) -> Self {
        Self { epoch, sequence }
    }
}

/// The parsed fixed-size header of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Header {
    /// Envelope format version (1 or 2).
    pub envelope_version: u16,
    /// Payload codec id ([`CODEC_BINCODE2`], [`CODEC_MSGPACK`]).
    pub codec: u8,
    /// Payload compression id ([`COMPRESSION_NONE`], ...; always none in version 1).
    pub compression: u8,
    /// The uuid of the actor type that wrote the snapshot.
    pub actor_type: uuid::Uuid,
    /// The id of the actor the snapshot belongs to; `None` in version 1.
    pub actor_id: Option<ActorId>,
    /// The snapshot schema version of that actor type when it wrote the snapshot.
    pub schema_version: u32,
    /// The writer's per-actor sequence number.
    pub sequence: u64,
    /// The owner epoch the writer held (0 in version 1).
    pub epoch: u64,
    /// Payload length in bytes, as stored.
    pub payload_len: u64,
    /// Payload length before compression (equal to `payload_len` when not
    /// compressed).
    pub decoded_len: u64,
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
    #[error(
        "envelope version {found} is not supported (this build reads versions {OLDEST_READABLE_VERSION} to {supported})"
    )]
    UnsupportedVersion {
        /// Version in the bytes.
        found: u16,
        /// The newest version this build reads.
        supported: u16,
    },
    /// The declared payload is larger than the decoder accepts.
    #[error("declared payload of {declared} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Declared payload length (stored or decoded).
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
    /// The payload compression is unknown to this build.
    #[error("unknown payload compression id {0}")]
    UnknownCompression(u8),
    /// An uncompressed payload declares a decoded length other than its own.
    #[error("uncompressed payload of {payload} bytes declares a decoded length of {decoded}")]
    DecodedLengthMismatch {
        /// Stored payload length.
        payload: u64,
        /// Declared decoded length.
        decoded: u64,
    },
}

fn array<const N: usize>(slice: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(slice);
    out
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(array(&bytes[at..at + 8]))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array(&bytes[at..at + 4]))
}

/// The header length of an envelope of `version`, if this build reads it.
pub const fn header_len(version: u16) -> Option<usize> {
    match version {
        1 => Some(HEADER_LEN_V1),
        2 => Some(HEADER_LEN),
        _ => None,
    }
}

impl Header {
    /// Parses the header without verifying the checksum: magic, version and the
    /// declared length against the bytes present.
    pub fn peek(bytes: &[u8]) -> Result<Header, EnvelopeError> {
        Self::peek_prefix(bytes, bytes.len() as u64)
    }

    /// Parses the header from the first bytes of an envelope whose total length is
    /// `total_len`, without the payload: for backends that read only the start of
    /// a stored snapshot. `prefix` must hold the whole header ([`HEADER_LEN`]
    /// bytes, or all of a shorter envelope).
    pub fn peek_prefix(prefix: &[u8], total_len: u64) -> Result<Header, EnvelopeError> {
        let short = |min: usize| {
            // A short input that does not even start like an envelope is foreign,
            // not truncated.
            if prefix.len() >= MAGIC.len() && prefix[..MAGIC.len()] != MAGIC {
                EnvelopeError::BadMagic
            } else {
                EnvelopeError::TooShort {
                    len: total_len.min(usize::MAX as u64) as usize,
                    min,
                }
            }
        };
        let min_v1 = HEADER_LEN_V1 + TRAILER_LEN;
        if prefix.len() < 6 || total_len < min_v1 as u64 {
            return Err(short(min_v1));
        }
        if prefix[..4] != MAGIC {
            return Err(EnvelopeError::BadMagic);
        }
        let envelope_version = u16::from_le_bytes([prefix[4], prefix[5]]);
        let Some(header_len) = header_len(envelope_version) else {
            return Err(EnvelopeError::UnsupportedVersion {
                found: envelope_version,
                supported: ENVELOPE_VERSION,
            });
        };
        let min = header_len + TRAILER_LEN;
        if total_len < min as u64 || prefix.len() < header_len {
            return Err(short(min));
        }
        let header = if envelope_version == 1 {
            let payload_len = u64_at(prefix, 36);
            Header {
                envelope_version,
                codec: prefix[6],
                compression: COMPRESSION_NONE,
                actor_type: uuid::Uuid::from_bytes(array(&prefix[8..24])),
                actor_id: None,
                schema_version: u32_at(prefix, 24),
                sequence: u64_at(prefix, 28),
                epoch: 0,
                payload_len,
                decoded_len: payload_len,
            }
        } else {
            Header {
                envelope_version,
                codec: prefix[6],
                compression: prefix[7],
                actor_type: uuid::Uuid::from_bytes(array(&prefix[8..24])),
                actor_id: Some(ActorId::from_bytes(array(&prefix[24..40]))),
                schema_version: u32_at(prefix, 40),
                sequence: u64_at(prefix, 44),
                epoch: u64_at(prefix, 52),
                payload_len: u64_at(prefix, 60),
                decoded_len: u64_at(prefix, 68),
            }
        };
        let actual = total_len - min as u64;
        if header.payload_len != actual {
            return Err(EnvelopeError::LengthMismatch {
                declared: header.payload_len,
                actual: actual.min(usize::MAX as u64) as usize,
            });
        }
        Ok(header)
    }

    /// The header length of this envelope's version.
    pub fn len(&self) -> usize {
        header_len(self.envelope_version).unwrap_or(HEADER_LEN)
    }

    /// Always `false`: a header is never empty (for clippy's `len` convention).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The (epoch, sequence) stamp of the snapshot.
    pub fn stamp(&self) -> Stamp {
        Stamp::new(self.epoch, self.sequence)
    }
}

/// Verifies an envelope completely and returns its header and its payload as
/// stored (still compressed if [`Header::compression`] says so).
///
/// Checks, in order: framing length, magic, version, declared lengths against
/// `max_payload` and against the bytes present, the CRC-32C, and the codec and
/// compression ids.
pub fn open(bytes: &[u8], max_payload: usize) -> Result<(Header, &[u8]), EnvelopeError> {
    let limit = max_payload.min(MAX_PAYLOAD);
    if bytes.len() >= 6 && bytes[..4] == MAGIC {
        // Refuse a hostile declared length before anything else looks at it.
        let declared = match u16::from_le_bytes([bytes[4], bytes[5]]) {
            1 if bytes.len() >= HEADER_LEN_V1 => Some(u64_at(bytes, 36)),
            2 if bytes.len() >= HEADER_LEN => Some(u64_at(bytes, 60).max(u64_at(bytes, 68))),
            _ => None,
        };
        if let Some(declared) = declared
            && declared > limit as u64
        {
            return Err(EnvelopeError::TooLarge { declared, limit });
        }
    }
    let header = Header::peek(bytes)?;
    let body_end = bytes.len() - TRAILER_LEN;
    let stored = u32::from_le_bytes(array(&bytes[body_end..]));
    let computed = crc32c::crc32c(&bytes[..body_end]);
    if stored != computed {
        return Err(EnvelopeError::Checksum { stored, computed });
    }
    if !matches!(header.codec, CODEC_BINCODE2 | CODEC_MSGPACK)
        || (header.envelope_version == 1 && header.codec != CODEC_BINCODE2)
    {
        return Err(EnvelopeError::UnknownCodec(header.codec));
    }
    match header.compression {
        COMPRESSION_NONE if header.decoded_len != header.payload_len => {
            return Err(EnvelopeError::DecodedLengthMismatch {
                payload: header.payload_len,
                decoded: header.decoded_len,
            });
        }
        COMPRESSION_NONE | COMPRESSION_LZ4 | COMPRESSION_ZSTD => {}
        other => return Err(EnvelopeError::UnknownCompression(other)),
    }
    Ok((header, &bytes[header.len()..body_end]))
}

/// How to frame a payload: every header field of a version-2 envelope.
///
/// ```
/// use theta::persistence::envelope::{self, Seal};
///
/// let actor_type = uuid::uuid!("6b3a6c1e-2a8f-4d54-9a0b-0c2f7b7f0001");
/// let id = theta::ActorId::new_v4();
/// let bytes = Seal::new(actor_type).actor_id(id).epoch(3).sequence(7).seal(b"payload");
/// let (header, payload) = envelope::open(&bytes, envelope::DEFAULT_MAX_PAYLOAD)?;
/// assert_eq!((header.actor_id, header.epoch, header.sequence), (Some(id), 3, 7));
/// assert_eq!(payload, b"payload");
/// # Ok::<(), envelope::EnvelopeError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Seal {
    actor_type: uuid::Uuid,
    actor_id: ActorId,
    schema_version: u32,
    sequence: u64,
    epoch: u64,
    codec: u8,
    compression: u8,
    decoded_len: Option<u64>,
}

impl Seal {
    /// A seal for snapshots of `actor_type`: nil actor id, schema version 0,
    /// sequence 0, epoch 0, bincode, uncompressed.
    pub const fn new(actor_type: uuid::Uuid) -> Self {
        Self {
            actor_type,
            actor_id: ActorId::nil(),
            schema_version: 0,
            sequence: 0,
            epoch: 0,
            codec: CODEC_BINCODE2,
            compression: COMPRESSION_NONE,
            decoded_len: None,
        }
    }

    /// The actor the snapshot belongs to.
    pub const fn actor_id(mut self, id: ActorId) -> Self {
        self.actor_id = id;
        self
    }

    /// The snapshot schema version.
    pub const fn schema_version(mut self, version: u32) -> Self {
        self.schema_version = version;
        self
    }

    /// The per-actor sequence number.
    pub const fn sequence(mut self, sequence: u64) -> Self {
        self.sequence = sequence;
        self
    }

    /// The owner epoch.
    pub const fn epoch(mut self, epoch: u64) -> Self {
        self.epoch = epoch;
        self
    }

    /// Epoch and sequence at once.
    pub const fn stamp(self, stamp: Stamp) -> Self {
        self.epoch(stamp.epoch).sequence(stamp.sequence)
    }

    /// The payload codec id.
    pub const fn codec(mut self, codec: u8) -> Self {
        self.codec = codec;
        self
    }

    /// The compression id and the payload's length before compression.
    pub const fn compressed(mut self, compression: u8, decoded_len: u64) -> Self {
        self.compression = compression;
        self.decoded_len = Some(decoded_len);
        self
    }

    /// Frames `payload`.
    pub fn seal(&self, payload: &[u8]) -> Vec<u8> {
        let mut buf = begin(payload.len());
        buf.extend_from_slice(payload);
        self.finish(buf)
    }

    /// Fills in the header of a buffer from [`begin`] (payload appended after
    /// [`HEADER_LEN`] bytes) and appends the checksum.
    pub(crate) fn finish(&self, mut buf: Vec<u8>) -> Vec<u8> {
        let payload_len = (buf.len() - HEADER_LEN) as u64;
        buf[..4].copy_from_slice(&MAGIC);
        buf[4..6].copy_from_slice(&ENVELOPE_VERSION.to_le_bytes());
        buf[6] = self.codec;
        buf[7] = self.compression;
        buf[8..24].copy_from_slice(self.actor_type.as_bytes());
        buf[24..40].copy_from_slice(self.actor_id.as_bytes());
        buf[40..44].copy_from_slice(&self.schema_version.to_le_bytes());
        buf[44..52].copy_from_slice(&self.sequence.to_le_bytes());
        buf[52..60].copy_from_slice(&self.epoch.to_le_bytes());
        buf[60..68].copy_from_slice(&payload_len.to_le_bytes());
        let decoded_len = self.decoded_len.unwrap_or(payload_len);
        buf[68..76].copy_from_slice(&decoded_len.to_le_bytes());
        let crc = crc32c::crc32c(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        buf
    }
}

/// Frames an already-encoded bincode payload with a nil actor id and epoch 0.
///
/// For backends' tests and tools; actors' snapshots are sealed by the runtime
/// (see [`Seal`] for every field).
pub fn seal(actor_type: uuid::Uuid, schema_version: u32, sequence: u64, payload: &[u8]) -> Vec<u8> {
    Seal::new(actor_type)
        .schema_version(schema_version)
        .sequence(sequence)
        .seal(payload)
}

/// A buffer with room for the header, ready for the payload to be appended.
pub(crate) fn begin(payload_hint: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER_LEN + payload_hint + TRAILER_LEN);
    buf.resize(HEADER_LEN, 0);
    buf
}

/// The sequence number of an envelope, if `bytes` parse as one.
pub fn sequence_of(bytes: &[u8]) -> Option<u64> {
    Header::peek(bytes).ok().map(|h| h.sequence)
}

/// The (epoch, sequence) stamp of an envelope, if `bytes` parse as one.
pub fn stamp_of(bytes: &[u8]) -> Option<Stamp> {
    Header::peek(bytes).ok().map(|h| h.stamp())
}

/// Refuses a write longer than [`MAX_ENVELOPE_LEN`], the one size limit of every
/// backend, with [`SnapshotTooLarge`]. Backends call it before anything else.
pub fn check_len(id: ActorId, len: usize) -> Result<(), SnapshotTooLarge> {
    if len > MAX_ENVELOPE_LEN {
        return Err(SnapshotTooLarge {
            id,
            len,
            limit: MAX_ENVELOPE_LEN,
        });
    }
    Ok(())
}

/// The write rule every backend applies, atomically with the write: may
/// `incoming` replace what the store holds for `id`?
///
/// - `last` is the stamp of the stored snapshot, or of the last deleted one (a
///   tombstone), if the store knows one;
/// - `claimed_epoch` is the epoch of the id's current owner (0 if never claimed).
///
/// Refused, as an `anyhow::Error` wrapping the marker the runtime recognizes:
/// - bytes that are not an envelope ([`EnvelopeError`]) or longer than
///   [`MAX_ENVELOPE_LEN`] ([`SnapshotTooLarge`]);
/// - an epoch older than the current owner's ([`Fenced`]): a stale owner;
/// - a stamp not newer than `last` ([`StaleSnapshot`]), equal included: a write
///   can never replace one taken later, nor repeat one.
///
/// On success returns the incoming stamp; the store then records it as `last`
/// and raises its claimed epoch to at least the incoming epoch.
///
/// ```
/// use theta::persistence::envelope::{self, Seal, Stamp};
/// use theta::persistence::{Fenced, StaleSnapshot};
///
/// let id = theta::ActorId::new_v4();
/// let seal = Seal::new(uuid::Uuid::nil()).actor_id(id);
/// let stored = Some(Stamp::new(2, 5));
/// // Same epoch, next sequence: accepted.
/// assert!(envelope::check_write(id, stored, 2, &seal.epoch(2).sequence(6).seal(b"")).is_ok());
/// // Same stamp again: stale.
/// let err = envelope::check_write(id, stored, 2, &seal.epoch(2).sequence(5).seal(b"")).unwrap_err();
/// assert!(err.is::<StaleSnapshot>());
/// // An owner of epoch 2 after epoch 3 claimed the id: fenced.
/// let err = envelope::check_write(id, stored, 3, &seal.epoch(2).sequence(9).seal(b"")).unwrap_err();
/// assert!(err.is::<Fenced>());
/// ```
pub fn check_write(
    id: ActorId,
    last: Option<Stamp>,
    claimed_epoch: u64,
    incoming: &[u8],
) -> Result<Stamp, anyhow::Error> {
    check_len(id, incoming.len())?;
    let header = Header::peek(incoming)?;
    let stamp = header.stamp();
    if stamp.epoch < claimed_epoch {
        return Err(anyhow::Error::new(Fenced {
            id,
            epoch: stamp.epoch,
            current: claimed_epoch,
        }));
    }
    if let Some(last) = last
        && stamp <= last
    {
        return Err(anyhow::Error::new(StaleSnapshot {
            id,
            stored: last.sequence,
            attempted: stamp.sequence,
        }));
    }
    Ok(stamp)
}

/// Refuses to replace `stored` with `incoming` when both are envelopes and the
/// incoming stamp is not newer. The ownership-free form of [`check_write`].
pub fn check_not_stale(id: ActorId, stored: &[u8], incoming: &[u8]) -> Result<(), StaleSnapshot> {
    match (stamp_of(stored), stamp_of(incoming)) {
        (Some(stored), Some(attempted)) if attempted <= stored => Err(StaleSnapshot {
            id,
            stored: stored.sequence,
            attempted: attempted.sequence,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPE: uuid::Uuid = uuid::uuid!("00000000-0000-4000-8000-000000000001");

    /// A version-1 envelope exactly as builds before version 2 wrote it.
    pub(crate) fn seal_v1(schema_version: u32, sequence: u64, payload: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        buf.extend_from_slice(&MAGIC);
        buf.extend_from_slice(&1u16.to_le_bytes());
        buf.push(CODEC_BINCODE2);
        buf.push(0);
        buf.extend_from_slice(TYPE.as_bytes());
        buf.extend_from_slice(&schema_version.to_le_bytes());
        buf.extend_from_slice(&sequence.to_le_bytes());
        buf.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        buf.extend_from_slice(payload);
        let crc = crc32c::crc32c(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        buf
    }

    #[test]
    fn round_trip() {
        let id = ActorId::from_u128(42);
        let bytes = Seal::new(TYPE)
            .actor_id(id)
            .schema_version(3)
            .sequence(7)
            .epoch(9)
            .seal(b"hello");
        let (header, payload) = open(&bytes, DEFAULT_MAX_PAYLOAD).unwrap();
        assert_eq!(payload, b"hello");
        assert_eq!(header.envelope_version, 2);
        assert_eq!(header.actor_type, TYPE);
        assert_eq!(header.actor_id, Some(id));
        assert_eq!(header.schema_version, 3);
        assert_eq!(header.stamp(), Stamp::new(9, 7));
        assert_eq!((header.payload_len, header.decoded_len), (5, 5));
        assert_eq!(bytes.len(), HEADER_LEN + 5 + TRAILER_LEN);
    }

    #[test]
    fn version_1_still_reads() {
        let bytes = seal_v1(3, 7, b"hello");
        let (header, payload) = open(&bytes, DEFAULT_MAX_PAYLOAD).unwrap();
        assert_eq!(payload, b"hello");
        assert_eq!(header.envelope_version, 1);
        assert_eq!(header.actor_id, None);
        assert_eq!(header.stamp(), Stamp::new(0, 7));
        assert_eq!(header.len(), HEADER_LEN_V1);
    }

    #[test]
    fn every_truncation_is_rejected() {
        for bytes in [seal(TYPE, 0, 1, &[7u8; 32]), seal_v1(0, 1, &[7u8; 32])] {
            for len in 0..bytes.len() {
                assert!(
                    open(&bytes[..len], DEFAULT_MAX_PAYLOAD).is_err(),
                    "len {len}"
                );
            }
        }
    }

    #[test]
    fn every_bit_flip_is_rejected() {
        for bytes in [seal(TYPE, 0, 1, b"abc"), seal_v1(0, 1, b"abc")] {
            for i in 0..bytes.len() * 8 {
                let mut damaged = bytes.clone();
                damaged[i / 8] ^= 1 << (i % 8);
                assert!(open(&damaged, DEFAULT_MAX_PAYLOAD).is_err(), "bit {i}");
            }
        }
    }

    #[test]
    fn lying_lengths_are_refused_before_allocation() {
        let mut bytes = seal(TYPE, 0, 1, b"abc");
        bytes[60..68].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(matches!(
            open(&bytes, DEFAULT_MAX_PAYLOAD),
            Err(EnvelopeError::TooLarge { .. })
        ));
        let mut bytes = Seal::new(TYPE)
            .compressed(COMPRESSION_LZ4, 1 << 40)
            .seal(b"abc");
        assert!(matches!(
            open(&bytes, usize::MAX),
            Err(EnvelopeError::TooLarge { .. })
        ));
        bytes = seal_v1(0, 1, b"abc");
        bytes[36..44].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(matches!(
            open(&bytes, DEFAULT_MAX_PAYLOAD),
            Err(EnvelopeError::TooLarge { .. })
        ));
    }

    #[test]
    fn future_version_is_named() {
        let mut bytes = seal(TYPE, 0, 1, b"abc");
        bytes[4..6].copy_from_slice(&3u16.to_le_bytes());
        assert_eq!(
            open(&bytes, DEFAULT_MAX_PAYLOAD),
            Err(EnvelopeError::UnsupportedVersion {
                found: 3,
                supported: 2
            })
        );
    }

    #[test]
    fn unknown_codec_and_compression_are_named() {
        let bytes = Seal::new(TYPE).codec(9).seal(b"abc");
        assert_eq!(
            open(&bytes, DEFAULT_MAX_PAYLOAD),
            Err(EnvelopeError::UnknownCodec(9))
        );
        let bytes = Seal::new(TYPE).compressed(9, 3).seal(b"abc");
        assert_eq!(
            open(&bytes, DEFAULT_MAX_PAYLOAD),
            Err(EnvelopeError::UnknownCompression(9))
        );
        let bytes = Seal::new(TYPE).compressed(COMPRESSION_NONE, 4).seal(b"abc");
        assert!(matches!(
            open(&bytes, DEFAULT_MAX_PAYLOAD),
            Err(EnvelopeError::DecodedLengthMismatch { .. })
        ));
    }

    #[test]
    fn peek_prefix_reads_only_the_header() {
        let bytes = Seal::new(TYPE).sequence(4).epoch(2).seal(&[1u8; 1000]);
        let header = Header::peek_prefix(&bytes[..HEADER_LEN], bytes.len() as u64).unwrap();
        assert_eq!(header, Header::peek(&bytes).unwrap());
        assert!(matches!(
            Header::peek_prefix(&bytes[..HEADER_LEN], bytes.len() as u64 - 1),
            Err(EnvelopeError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn write_rule() {
        let id = ActorId::from_u128(9);
        let at = |epoch, sequence| Seal::new(TYPE).epoch(epoch).sequence(sequence).seal(b"x");
        let last = Some(Stamp::new(1, 5));
        assert_eq!(
            check_write(id, None, 0, &at(0, 1)).unwrap(),
            Stamp::new(0, 1)
        );
        assert!(check_write(id, last, 1, &at(1, 6)).is_ok());
        // A new epoch may restart the sequence.
        assert!(check_write(id, last, 2, &at(2, 1)).is_ok());
        let stale = check_write(id, last, 1, &at(1, 5)).unwrap_err();
        assert_eq!(
            stale.downcast_ref::<StaleSnapshot>(),
            Some(&StaleSnapshot {
                id,
                stored: 5,
                attempted: 5
            })
        );
        assert!(
            check_write(id, last, 0, &at(0, 9))
                .unwrap_err()
                .is::<StaleSnapshot>()
        );
        let fenced = check_write(id, last, 3, &at(2, 9)).unwrap_err();
        assert_eq!(
            fenced.downcast_ref::<Fenced>(),
            Some(&Fenced {
                id,
                epoch: 2,
                current: 3
            })
        );
        assert!(
            check_write(id, None, 0, b"junk")
                .unwrap_err()
                .is::<EnvelopeError>()
        );
    }

    #[test]
    fn stale_check() {
        let id = ActorId::from_u128(9);
        let newer = seal(TYPE, 0, 5, b"x");
        let older = seal(TYPE, 0, 4, b"x");
        assert!(check_not_stale(id, &newer, &older).is_err());
        assert!(check_not_stale(id, &newer, &newer).is_err());
        assert!(check_not_stale(id, &older, &newer).is_ok());
        assert!(check_not_stale(id, b"junk", &older).is_ok());
    }
}
