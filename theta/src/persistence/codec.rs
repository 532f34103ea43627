//! [`Codec`]: how a snapshot's payload is written, chosen per actor type and
//! recorded in every envelope, and the one place each codec is called.
//!
//! Both codecs share one discipline, the reason this module exists:
//!
//! - **Encoding stops at the limit.** The encoder writes into a [`Sink`] that
//!   refuses the first write past the actor's size limit, so a snapshot that is
//!   too large costs at most the limit in memory, not its whole encoding.
//! - **Decoding believes no length prefix.** A string or byte-string length is
//!   checked against the bytes actually left before anything is allocated
//!   (bincode through [`strict`](super::strict), MessagePack by reading from the
//!   slice); sequences and maps preallocate at most what serde's cautious size
//!   hint allows. A tiny hostile payload therefore allocates tiny amounts.

use std::fmt;
use std::io;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::envelope::{self, TRAILER_LEN};
use super::strict;

/// The serde format of a snapshot payload.
///
/// The codec is recorded in the envelope, so changing an actor type's codec
/// later still reads the snapshots written with the old one: a payload is
/// always decoded with the codec its envelope names.
///
/// | | bincode (default) | MessagePack |
/// |---|---|---|
/// | layout | positional, no field names | a map keyed by field name |
/// | size of a 64 KiB (bincode) text-heavy snapshot | 64 KiB | 72 KiB (field names) |
/// | add a `#[serde(default)]` field, remove a field, reorder fields | needs a [`SCHEMA_VERSION`](super::PersistentActor::SCHEMA_VERSION) bump and a migration | reads as is |
///
/// See the [schema-evolution guide](super#schema-evolution) for the whole table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Codec {
    /// bincode 2, standard configuration (the default): compact and fast, but
    /// positional: any change to the snapshot type's fields needs a
    /// [`SCHEMA_VERSION`](super::PersistentActor::SCHEMA_VERSION) bump and a
    /// migration.
    #[default]
    Bincode,
    /// MessagePack with named fields (`rmp-serde`, structs as maps keyed by
    /// field name, enum variants by name): self-describing, so adding a field
    /// with `#[serde(default)]` or removing a field needs no schema bump.
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

    /// The codec's name in messages and in `#[actor(.., codec = "..")]`:
    /// `"bincode"` or `"msgpack"`.
    pub const fn name(self) -> &'static str {
        match self {
            Codec::Bincode => "bincode",
            Codec::MessagePack => "msgpack",
        }
    }

    /// Appends `value`'s encoding to `buf`, failing with [`Overflow`] as soon as
    /// more than `limit` bytes would have been appended.
    pub(crate) fn encode_into<T: Serialize + ?Sized>(
        self,
        value: &T,
        buf: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), EncodeFailure> {
        let mut sink = Sink::new(buf, limit);
        let result = match self {
            Codec::Bincode => {
                bincode::serde::encode_into_writer(value, &mut sink, bincode_config())
                    .map_err(|e| e.to_string())
            }
            Codec::MessagePack => {
                rmp_serde::encode::write_named(&mut &mut sink, value).map_err(|e| e.to_string())
            }
        };
        match (result, sink.overflow) {
            (_, Some(overflow)) => Err(EncodeFailure::Overflow(overflow)),
            (Err(message), None) => Err(EncodeFailure::Codec(message)),
            (Ok(()), None) => Ok(()),
        }
    }

    /// Decodes all of `bytes` as `T`; trailing bytes are an error.
    pub(crate) fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, String> {
        match self {
            Codec::Bincode => {
                let (value, read) = bincode::serde::seed_decode_from_slice(
                    strict::seed::<T>(),
                    bytes,
                    bincode_config(),
                )
                .map_err(|e| e.to_string())?;
                trailing(bytes.len() - read)?;
                Ok(value)
            }
            Codec::MessagePack => {
                // Reading through `io::Read` (not borrowing from the slice) is
                // what lets us see where the value ended; a string is still
                // only ever as long as the bytes present.
                let mut rest = bytes;
                let mut deserializer = rmp_serde::Deserializer::new(&mut rest);
                deserializer.set_max_depth(MSGPACK_MAX_DEPTH);
                let value = T::deserialize(&mut deserializer).map_err(|e| e.to_string())?;
                trailing(rest.len())?;
                Ok(value)
            }
        }
    }

    /// What to tell a user whose snapshot does not decode with this codec.
    pub(crate) const fn hint(self) -> &'static str {
        match self {
            Codec::Bincode => {
                "a field was probably added or removed: bump SCHEMA_VERSION and migrate, \
                 or use the self-describing codec `codec = \"msgpack\"`"
            }
            Codec::MessagePack => {
                "the snapshot type changed incompatibly: give a new field #[serde(default)] \
                 and a renamed one #[serde(alias = \"old\")], or bump SCHEMA_VERSION and migrate"
            }
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How deep a MessagePack payload may nest (rmp-serde's default is 1024). Deep
/// enough for any snapshot type; shallow enough that skipping a hostile nest of
/// unknown fields cannot exhaust a thread's stack.
const MSGPACK_MAX_DEPTH: usize = 256;

/// bincode 2, standard configuration. Its limit is only a ceiling: bincode
/// counts it in in-memory sizes, so it cannot be the payload length; the
/// real bound on what a length prefix may claim is [`Strict`].
fn bincode_config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<{ envelope::MAX_PAYLOAD }>,
> {
    bincode::config::standard().with_limit::<{ envelope::MAX_PAYLOAD }>()
}

fn trailing(left: usize) -> Result<(), String> {
    match left {
        0 => Ok(()),
        n => Err(format!("{n} trailing bytes after the snapshot")),
    }
}

/// Why [`Codec::encode_into`] failed.
#[derive(Debug)]
pub(crate) enum EncodeFailure {
    /// The encoding grew past the limit; encoding stopped there.
    Overflow(Overflow),
    /// The codec refused the value (e.g. a map with non-string keys in a
    /// format that needs them, or a `Serialize` impl that failed).
    Codec(String),
}

/// The encoding needed more than `limit` bytes: at least `reached`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Overflow {
    /// Bytes the encoding had reached when it was stopped (more than `limit`).
    pub(crate) reached: usize,
    /// The limit.
    pub(crate) limit: usize,
}

/// An append-only writer that refuses to grow a buffer more than `limit` bytes
/// past where it started, and never reserves more than that (plus room for the
/// envelope's trailer): a doubling `Vec` would otherwise reserve twice the
/// limit just before the limit is reached.
struct Sink<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
    limit: usize,
    overflow: Option<Overflow>,
}

impl<'a> Sink<'a> {
    fn new(buf: &'a mut Vec<u8>, limit: usize) -> Self {
        let start = buf.len();
        Self {
            buf,
            start,
            limit,
            overflow: None,
        }
    }

    #[inline]
    fn accept(&mut self, bytes: &[u8]) -> bool {
        let written = self.buf.len() - self.start;
        if bytes.len() > self.limit - written {
            self.overflow = Some(Overflow {
                reached: written + bytes.len(),
                limit: self.limit,
            });
            return false;
        }
        let needed = self.buf.len() + bytes.len();
        if needed + TRAILER_LEN > self.buf.capacity() {
            let most = self
                .start
                .saturating_add(self.limit)
                .saturating_add(TRAILER_LEN);
            let target = (self.buf.capacity() * 2).clamp(needed + TRAILER_LEN, most);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(bytes);
        true
    }
}

impl bincode::enc::write::Writer for &mut Sink<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        if self.accept(bytes) {
            Ok(())
        } else {
            Err(bincode::error::EncodeError::Other(
                "snapshot size limit reached",
            ))
        }
    }
}

impl io::Write for &mut Sink<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.write_all(bytes).map(|()| bytes.len())
    }

    #[inline]
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.accept(bytes) {
            Ok(())
        } else {
            Err(io::Error::other("snapshot size limit reached"))
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        name: String,
        values: Vec<u64>,
        tags: BTreeMap<String, i32>,
        blob: Vec<u8>,
    }

    fn sample() -> Sample {
        Sample {
            name: "ada".into(),
            values: vec![0, 1, u64::MAX],
            tags: BTreeMap::from([("x".into(), -1)]),
            blob: vec![1, 2, 3],
        }
    }

    #[test]
    fn both_codecs_round_trip() {
        for codec in [Codec::Bincode, Codec::MessagePack] {
            let mut buf = Vec::new();
            codec.encode_into(&sample(), &mut buf, usize::MAX).unwrap();
            assert_eq!(codec.decode::<Sample>(&buf).unwrap(), sample(), "{codec}");
            assert_eq!(Codec::from_id(codec.id()), Some(codec));
        }
    }

    #[test]
    fn bincode_is_bincode_standard_and_msgpack_is_named() {
        let mut buf = Vec::new();
        Codec::Bincode
            .encode_into(&sample(), &mut buf, usize::MAX)
            .unwrap();
        assert_eq!(
            buf,
            bincode::serde::encode_to_vec(sample(), bincode::config::standard()).unwrap()
        );
        let mut buf = Vec::new();
        Codec::MessagePack
            .encode_into(&sample(), &mut buf, usize::MAX)
            .unwrap();
        assert_eq!(buf, rmp_serde::to_vec_named(&sample()).unwrap());
    }

    #[test]
    fn encoding_stops_at_the_limit_without_reserving_past_it() {
        let big = Sample {
            name: "x".repeat(10_000),
            ..sample()
        };
        for codec in [Codec::Bincode, Codec::MessagePack] {
            let mut buf = vec![0u8; 7];
            let err = codec.encode_into(&big, &mut buf, 4096).unwrap_err();
            let EncodeFailure::Overflow(overflow) = err else {
                panic!("{codec}: {err:?}");
            };
            assert!(
                overflow.reached > 4096 && overflow.limit == 4096,
                "{overflow:?}"
            );
            assert!(buf.len() <= 7 + 4096 && buf.capacity() <= 7 + 4096 + TRAILER_LEN);
            // Exactly at the limit is fine.
            let mut exact = Vec::new();
            codec.encode_into(&big, &mut exact, usize::MAX).unwrap();
            let mut buf = Vec::new();
            codec.encode_into(&big, &mut buf, exact.len()).unwrap();
            assert_eq!(buf, exact);
            assert!(matches!(
                codec.encode_into(&big, &mut Vec::new(), exact.len() - 1),
                Err(EncodeFailure::Overflow(_))
            ));
        }
    }

    #[test]
    fn trailing_bytes_are_refused_by_both_codecs() {
        for codec in [Codec::Bincode, Codec::MessagePack] {
            let mut buf = Vec::new();
            codec.encode_into(&sample(), &mut buf, usize::MAX).unwrap();
            buf.push(0);
            let err = codec.decode::<Sample>(&buf).unwrap_err();
            assert!(err.contains("1 trailing bytes"), "{codec}: {err}");
        }
    }

    #[test]
    fn msgpack_tolerates_added_defaulted_and_removed_fields() {
        #[derive(serde::Serialize)]
        struct Old {
            name: String,
            gone: u32,
        }
        #[derive(Debug, PartialEq, serde::Deserialize)]
        struct New {
            name: String,
            #[serde(default)]
            added: Vec<String>,
        }
        let mut buf = Vec::new();
        let old = Old {
            name: "ada".into(),
            gone: 7,
        };
        Codec::MessagePack
            .encode_into(&old, &mut buf, usize::MAX)
            .unwrap();
        assert_eq!(
            Codec::MessagePack.decode::<New>(&buf).unwrap(),
            New {
                name: "ada".into(),
                added: Vec::new()
            }
        );
        let mut buf = Vec::new();
        Codec::Bincode
            .encode_into(&old, &mut buf, usize::MAX)
            .unwrap();
        assert!(Codec::Bincode.decode::<New>(&buf).is_err());
    }

    #[test]
    fn a_hostile_msgpack_nest_is_refused_not_a_stack_overflow() {
        #[derive(Debug, serde::Deserialize)]
        struct Named {
            #[allow(dead_code)]
            name: String,
        }
        // {"x": [[[[...]]]]}: an unknown field whose value nests 100k arrays.
        let mut bytes = vec![0x81, 0xa1, b'x'];
        bytes.extend(std::iter::repeat_n(0x91, 100_000));
        bytes.push(0xc0);
        let err = Codec::MessagePack.decode::<Named>(&bytes).unwrap_err();
        assert!(err.contains("depth"), "{err}");
    }
}
