//! [`Codec`] and [`Compression`]: how a snapshot's payload is written, chosen per
//! actor type and recorded in every envelope.

use super::envelope;

/// The serde format of a snapshot payload.
///
/// The codec is recorded in the envelope, so changing an actor type's codec
/// later still reads the snapshots written with the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Codec {
    /// bincode 2, standard configuration (the default): compact and fast, but
    /// positional: any change to the snapshot type's fields needs a
    /// [`SCHEMA_VERSION`](super::PersistentActor::SCHEMA_VERSION) bump and a
    /// migration.
    #[default]
    Bincode,
    /// MessagePack with named fields: self-describing, so adding a field with
    /// `#[serde(default)]` or removing a field needs no schema bump.
    MessagePack,
}

impl Codec {
    /// The codec's id in the envelope.
    pub const fn id(self) -> u8 {
        match self {
            Codec::Bincode => envelope::CODEC_BINCODE2,
            Codec::MessagePack => envelope::CODEC_MSGPACK,
        }
    }

    /// The codec with envelope id `id`, if this build knows it.
    pub const fn from_id(id: u8) -> Option<Codec> {
        match id {
            envelope::CODEC_BINCODE2 => Some(Codec::Bincode),
            envelope::CODEC_MSGPACK => Some(Codec::MessagePack),
            _ => None,
        }
    }
}

/// How a snapshot payload is compressed after encoding.
///
/// Recorded in the envelope; a payload that does not shrink is stored
/// uncompressed whatever the setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Stored as encoded (the default).
    #[default]
    None,
    /// LZ4 (block format): fast, moderate ratio.
    Lz4,
    /// zstd: slower, better ratio.
    Zstd,
}

impl Compression {
    /// The compression's id in the envelope.
    pub const fn id(self) -> u8 {
        match self {
            Compression::None => envelope::COMPRESSION_NONE,
            Compression::Lz4 => envelope::COMPRESSION_LZ4,
            Compression::Zstd => envelope::COMPRESSION_ZSTD,
        }
    }

    /// The compression with envelope id `id`, if this build knows it.
    pub const fn from_id(id: u8) -> Option<Compression> {
        match id {
            envelope::COMPRESSION_NONE => Some(Compression::None),
            envelope::COMPRESSION_LZ4 => Some(Compression::Lz4),
            envelope::COMPRESSION_ZSTD => Some(Compression::Zstd),
            _ => None,
        }
    }
}
