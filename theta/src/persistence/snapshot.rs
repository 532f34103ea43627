//! The codec seam: actor snapshot ⇄ envelope bytes.
//!
//! All encoding goes through here. A save encodes with the actor type's
//! [`Codec`] (stopping at its size limit), compresses with its [`Compression`]
//! when that shrinks the payload, and records both in the envelope. A restore
//! decodes with the codec and compression *the envelope* names, so snapshots
//! written before a change of either still read.

use std::any::type_name;
use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::actor::Actor;
use crate::id::ActorId;

use super::codec::{EncodeFailure, Overflow};
use super::compression::DecompressError;
use super::envelope::{self, HEADER_LEN, Seal, Stamp, TRAILER_LEN};
use super::{Codec, Compression, PersistenceError, PersistentActor};

/// `A`'s payload limit, never above what the codec can read back.
fn limit<A: PersistentActor>() -> usize {
    A::MAX_SNAPSHOT_BYTES.min(envelope::MAX_PAYLOAD)
}

/// A payload failed to encode, decode or decompress. Its message names the type,
/// the codec and the cause, and, for a snapshot of the current schema that does
/// not decode, what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError {
    subject: Subject,
    cause: String,
    hint: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject {
    Value {
        type_name: &'static str,
        codec: Codec,
    },
    Decompress(Compression),
}

impl CodecError {
    fn value<T: ?Sized>(codec: Codec, cause: String) -> Self {
        Self {
            subject: Subject::Value {
                type_name: type_name::<T>(),
                codec,
            },
            cause,
            hint: None,
        }
    }

    fn with_hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }

    /// The codec the payload was (to be) written with; `None` for a payload that
    /// failed to decompress.
    pub fn codec(&self) -> Option<Codec> {
        match self.subject {
            Subject::Value { codec, .. } => Some(codec),
            Subject::Decompress(_) => None,
        }
    }
}

impl From<DecompressError> for CodecError {
    fn from(err: DecompressError) -> Self {
        Self {
            subject: Subject::Decompress(err.compression()),
            cause: err.to_string(),
            hint: None,
        }
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.subject {
            Subject::Value { type_name, codec } => {
                write!(f, "`{type_name}` with {codec}: {}", self.cause)?
            }
            Subject::Decompress(_) => f.write_str(&self.cause)?,
        }
        if let Some(hint) = self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for CodecError {}

/// A snapshot payload as stored (decompressed), with the codec it was written
/// in: what [`PersistentActor::migrate_payload`] receives.
///
/// ```
/// use theta::persistence::{Codec, Payload, encode_payload_as};
///
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Old { units: i64 }
///
/// let bytes = encode_payload_as(Codec::MessagePack, &Old { units: 7 })?;
/// let payload = Payload::new(Codec::MessagePack, &bytes);
/// assert_eq!(payload.decode::<Old>()?, Old { units: 7 });
/// # Ok::<(), theta::persistence::CodecError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload<'a> {
    codec: Codec,
    bytes: &'a [u8],
}

impl<'a> Payload<'a> {
    /// `bytes` written with `codec` (for tests of a migration).
    pub const fn new(codec: Codec, bytes: &'a [u8]) -> Self {
        Self { codec, bytes }
    }

    /// The codec the payload was written with (the envelope's, not necessarily
    /// the actor type's current one).
    pub const fn codec(&self) -> Codec {
        self.codec
    }

    /// The encoded bytes.
    pub const fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Decodes the payload as `T` with the codec it was written in.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, CodecError> {
        decode_payload_as(self.codec, self.bytes)
    }
}

/// Decodes a snapshot payload (the bytes inside an envelope, decompressed) as
/// `T` with bincode, theta's default codec. Trailing bytes are an error.
///
/// For [`PersistentActor::migrate`]: decode the old layout, then convert. A
/// payload of another codec needs [`decode_payload_as`] (or [`Payload::decode`]
/// in [`PersistentActor::migrate_payload`]).
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    decode_payload_as(Codec::Bincode, payload)
}

/// Decodes a snapshot payload as `T` with `codec`. Trailing bytes are an error;
/// no length prefix inside the payload makes it allocate more than the bytes
/// present.
pub fn decode_payload_as<T: DeserializeOwned>(
    codec: Codec,
    payload: &[u8],
) -> Result<T, CodecError> {
    codec
        .decode(payload)
        .map_err(|cause| CodecError::value::<T>(codec, cause))
}

/// Encodes `value` as a bincode payload (for tests and tools that build
/// snapshots of older schema versions).
pub fn encode_payload<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    encode_payload_as(Codec::Bincode, value)
}

/// Encodes `value` as a payload with `codec`, exactly as a save of an actor
/// type with that codec encodes it (before compression).
pub fn encode_payload_as<T: Serialize>(codec: Codec, value: &T) -> Result<Vec<u8>, CodecError> {
    let mut buf = Vec::new();
    codec
        .encode_into(value, &mut buf, envelope::MAX_PAYLOAD)
        .map_err(|failure| {
            let cause = match failure {
                EncodeFailure::Overflow(Overflow { limit, .. }) => {
                    format!("the encoding is over the ceiling of {limit} bytes")
                }
                EncodeFailure::Codec(message) => message,
            };
            CodecError::value::<T>(codec, cause)
        })?;
    Ok(buf)
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
///
/// Encodes with `A::CODEC` straight after the envelope header, stopping with
/// [`PersistenceError::TooLarge`] as soon as the encoding passes `A`'s limit (so
/// an oversized state never costs more than the limit in memory), then
/// compresses with `A::COMPRESSION` if the payload is at least
/// [`Compression::MIN_LEN`] bytes and compression shrinks it.
pub fn encode_stamped<A: PersistentActor>(
    id: ActorId,
    stamp: Stamp,
    actor: &A,
) -> Result<Vec<u8>, PersistenceError> {
    let snapshot = A::Snapshot::from(actor);
    let limit = limit::<A>();
    let mut buf = envelope::begin(256);
    A::CODEC
        .encode_into(&snapshot, &mut buf, limit)
        .map_err(|failure| match failure {
            EncodeFailure::Overflow(Overflow { reached, limit }) => PersistenceError::TooLarge {
                id,
                size: reached,
                limit,
            },
            EncodeFailure::Codec(message) => PersistenceError::Encode {
                id,
                message: CodecError::value::<A::Snapshot>(A::CODEC, message).to_string(),
            },
        })?;
    drop(snapshot);
    let decoded_len = buf.len() - HEADER_LEN;
    let seal = Seal::new(A::TYPE_ID)
        .actor_id(id)
        .schema_version(A::SCHEMA_VERSION)
        .stamp(stamp)
        .codec(A::CODEC.id());
    if A::COMPRESSION != Compression::None && decoded_len >= Compression::MIN_LEN {
        let mut packed = vec![0; HEADER_LEN];
        // Room for one byte less than the encoding: what does not fit does not
        // shrink.
        if A::COMPRESSION
            .compress_into(&buf[HEADER_LEN..], &mut packed, decoded_len - 1)
            .is_some()
        {
            drop(buf);
            packed.shrink_to(packed.len() + TRAILER_LEN);
            return Ok(seal
                .compressed(A::COMPRESSION.id(), decoded_len as u64)
                .finish(packed));
        }
    }
    Ok(seal.finish(buf))
}

/// Verifies stored bytes and decodes them into `A`'s snapshot (migrating an older
/// schema) and the stored sequence number: exactly what a restore reads.
///
/// The payload is decompressed and decoded with the compression and codec the
/// envelope names, whatever `A::CODEC` and `A::COMPRESSION` say today.
pub fn decode_snapshot<A: PersistentActor>(
    id: ActorId,
    bytes: &[u8],
) -> Result<(A::Snapshot, u64), PersistenceError> {
    let (header, stored) =
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
    if header.schema_version > current {
        return Err(PersistenceError::SchemaTooNew {
            id,
            found: header.schema_version,
            current,
        });
    }
    // `open` verified both ids; these only fail if the two lists ever disagree.
    let codec = Codec::from_id(header.codec).ok_or(PersistenceError::Corrupt {
        id,
        source: envelope::EnvelopeError::UnknownCodec(header.codec),
    })?;
    let compression =
        Compression::from_id(header.compression).ok_or(PersistenceError::Corrupt {
            id,
            source: envelope::EnvelopeError::UnknownCompression(header.compression),
        })?;
    // `open` bounded the declared decoded length by the limit.
    let decoded = compression
        .decompress_cow(stored, header.decoded_len as usize)
        .map_err(|e| PersistenceError::Decode {
            id,
            source: e.into(),
        })?;
    let payload = Payload::new(codec, &decoded);
    let snapshot = if header.schema_version < current {
        A::migrate_payload(header.schema_version, payload).map_err(|source| {
            PersistenceError::Migration {
                id,
                found: header.schema_version,
                current,
                source,
            }
        })?
    } else {
        payload
            .decode::<A::Snapshot>()
            .map_err(|source| PersistenceError::Decode {
                id,
                source: source.with_hint(codec.hint()),
            })?
    };
    Ok((snapshot, header.sequence))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ActorArgs, Context};

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Notes {
        text: String,
    }

    impl From<&Notes> for Notes {
        fn from(n: &Notes) -> Self {
            n.clone()
        }
    }

    /// `Notes` persisted with codec `C` (0 bincode, 1 msgpack) and compression
    /// `Z` (0 none, 1 lz4, 2 zstd), limit `L`.
    struct As<const C: u8, const Z: u8, const L: usize>(Notes);

    impl<const C: u8, const Z: u8, const L: usize> Actor for As<C, Z, L> {
        type Msg = ();
        const TYPE_ID: uuid::Uuid = uuid::Uuid::from_u128(0x5a7);
        async fn process_msg(&mut self, _: &Context<Self>, _: ()) {}
    }

    impl<const C: u8, const Z: u8, const L: usize> From<&As<C, Z, L>> for Notes {
        fn from(a: &As<C, Z, L>) -> Self {
            a.0.clone()
        }
    }

    struct Args<const C: u8, const Z: u8, const L: usize>;

    impl<const C: u8, const Z: u8, const L: usize> ActorArgs for Args<C, Z, L> {
        type Actor = As<C, Z, L>;
        async fn initialize(_: Context<As<C, Z, L>>, _: &Self) -> As<C, Z, L> {
            As(Notes {
                text: String::new(),
            })
        }
    }

    impl<const C: u8, const Z: u8, const L: usize> PersistentActor for As<C, Z, L> {
        type Snapshot = Notes;
        type RuntimeArgs = ();
        type ActorArgs = Args<C, Z, L>;
        const MAX_SNAPSHOT_BYTES: usize = L;
        const CODEC: Codec = [Codec::Bincode, Codec::MessagePack][C as usize];
        const COMPRESSION: Compression =
            [Compression::None, Compression::Lz4, Compression::Zstd][Z as usize];
        fn persistent_args(_: Notes, _: ()) -> Args<C, Z, L> {
            Args
        }
    }

    const ID: ActorId = ActorId::from_u128(0x1d);
    const BIG: usize = usize::MAX;

    fn notes(len: usize) -> Notes {
        Notes {
            text: "the actor saved its ledger; ".repeat(len / 28 + 1)[..len].to_string(),
        }
    }

    fn round_trip<const C: u8, const Z: u8>(len: usize) -> envelope::Header {
        let bytes = encode_snapshot(ID, 3, &As::<C, Z, BIG>(notes(len))).unwrap();
        let (back, sequence) = decode_snapshot::<As<C, Z, BIG>>(ID, &bytes).unwrap();
        assert_eq!((back, sequence), (notes(len), 3));
        envelope::Header::peek(&bytes).unwrap()
    }

    #[test]
    fn every_codec_and_compression_round_trips_and_is_recorded() {
        let header = round_trip::<0, 0>(4096);
        assert_eq!((header.codec, header.compression), (1, 0));
        let header = round_trip::<1, 0>(4096);
        assert_eq!((header.codec, header.compression), (2, 0));
        for header in [round_trip::<0, 1>(4096), round_trip::<1, 1>(4096)] {
            assert_eq!(header.compression, envelope::COMPRESSION_LZ4);
            assert!(header.payload_len * 3 < header.decoded_len, "{header:?}");
        }
        let header = round_trip::<1, 2>(4096);
        assert_eq!(header.compression, envelope::COMPRESSION_ZSTD);
        assert!(header.payload_len * 3 < header.decoded_len, "{header:?}");
    }

    #[test]
    fn tiny_and_incompressible_payloads_are_stored_as_encoded() {
        let header = round_trip::<0, 2>(Compression::MIN_LEN - 10);
        assert_eq!(header.compression, envelope::COMPRESSION_NONE);
        // Random bytes (as a string of hex digits pairs would compress; use
        // every byte value through a Vec<u8>-like string of noise).
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let noise: String = (0..2048)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from_u32(0x4e00 + (state % 20_000) as u32).unwrap()
            })
            .collect();
        let bytes = encode_snapshot(
            ID,
            1,
            &As::<0, 1, BIG>(Notes {
                text: noise.clone(),
            }),
        )
        .unwrap();
        let header = envelope::Header::peek(&bytes).unwrap();
        assert_eq!(header.compression, envelope::COMPRESSION_NONE);
        assert_eq!(
            decode_snapshot::<As<0, 1, BIG>>(ID, &bytes).unwrap().0.text,
            noise
        );
    }

    #[test]
    fn a_snapshot_reads_after_its_type_changed_codec_and_compression() {
        // Written as msgpack + zstd, read by the same type now on bincode.
        let bytes = encode_snapshot(ID, 1, &As::<1, 2, BIG>(notes(1000))).unwrap();
        assert_eq!(
            decode_snapshot::<As<0, 0, BIG>>(ID, &bytes).unwrap().0,
            notes(1000)
        );
        let bytes = encode_snapshot(ID, 1, &As::<0, 1, BIG>(notes(1000))).unwrap();
        assert_eq!(
            decode_snapshot::<As<1, 2, BIG>>(ID, &bytes).unwrap().0,
            notes(1000)
        );
    }

    #[test]
    fn encoding_stops_at_the_limit() {
        let err = encode_snapshot(ID, 1, &As::<0, 0, 1000>(notes(5000))).unwrap_err();
        assert!(
            matches!(err, PersistenceError::TooLarge { size, limit: 1000, .. } if size > 1000),
            "{err}"
        );
        let err = encode_snapshot(ID, 1, &As::<1, 2, 1000>(notes(5000))).unwrap_err();
        assert!(matches!(err, PersistenceError::TooLarge { .. }), "{err}");
        // Compression does not make room: the limit is on the encoded payload,
        // which is also what a reader must hold.
        assert!(encode_snapshot(ID, 1, &As::<0, 0, 1000>(notes(990))).is_ok());
    }

    #[test]
    fn a_decode_failure_names_the_type_the_codec_and_what_to_do() {
        let bytes = Seal::new(ID_TYPE)
            .actor_id(ID)
            .seal(&encode_payload(&7u8).unwrap());
        let err = decode_snapshot::<As<0, 0, BIG>>(ID, &bytes).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, PersistenceError::Decode { .. }), "{text}");
        for part in [
            &ID.to_string(),
            "`theta::persistence::snapshot::tests::Notes` with bincode",
            "bump SCHEMA_VERSION and migrate",
            "codec = \"msgpack\"",
        ] {
            assert!(text.contains(part), "{part:?} not in {text}");
        }
        let bytes = Seal::new(ID_TYPE)
            .actor_id(ID)
            .codec(envelope::CODEC_MSGPACK)
            .seal(&encode_payload_as(Codec::MessagePack, &7u8).unwrap());
        let text = decode_snapshot::<As<0, 0, BIG>>(ID, &bytes)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("with msgpack") && text.contains("#[serde(default)]"),
            "{text}"
        );
    }

    #[test]
    fn a_compressed_frame_of_the_wrong_length_is_a_decode_error() {
        let payload = encode_payload(&notes(4096)).unwrap();
        let stored = Compression::Lz4.compress(&payload);
        let bytes = Seal::new(ID_TYPE)
            .actor_id(ID)
            .compressed(envelope::COMPRESSION_LZ4, payload.len() as u64 + 1)
            .seal(&stored);
        let err = decode_snapshot::<As<0, 0, BIG>>(ID, &bytes).unwrap_err();
        assert!(matches!(err, PersistenceError::Decode { .. }), "{err}");
        assert!(
            err.to_string().contains("lz4 payload does not decompress"),
            "{err}"
        );
    }

    const ID_TYPE: uuid::Uuid = uuid::Uuid::from_u128(0x5a7);

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
