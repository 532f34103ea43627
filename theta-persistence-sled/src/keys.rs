//! What the snapshot tree holds: its key space, the values stored under actor
//! ids (snapshots and tombstones), and the digest that sums them up.
//!
//! ```text
//! key                                        value
//! <actor id: 16 bytes>                       an envelope, or a tombstone (below)
//! META ++ b"generation"                      u64 LE: bumped at every open
//! META ++ b"type/" ++ <type: 16> ++ <id: 16> empty: the index by actor type
//! ```
//!
//! `META` is sixteen `0xff` bytes and `b"theta/"`: every meta key sorts after
//! every 16-byte id (the all-`0xff` id is a prefix of it, so it sorts first), so
//! `..META` ranges over the ids alone. Keys of other shapes are not theta's and
//! are left alone (a tree shared by mistake).
//!
//! A delete stores a **tombstone** under the id instead of removing the key, so
//! the key of an id stays once written: the stamp of the deleted snapshot keeps
//! fencing stale writers across reopens, and the number of id keys only grows,
//! which the high-water check relies on (see `recovery`).

use std::hash::Hasher as _;

use siphasher::sip128::{Hasher128, SipHasher13};
use theta::ActorId;
use theta::persistence::envelope::{HEADER_LEN, Header, Stamp, TRAILER_LEN};

/// The prefix of every meta key.
pub(crate) const META: &[u8; 22] =
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfftheta/";

/// The key of the open generation.
pub(crate) fn generation_key() -> Vec<u8> {
    [&META[..], b"generation"].concat()
}

/// The prefix of the index entries of `actor_type`.
pub(crate) fn type_prefix(actor_type: uuid::Uuid) -> Vec<u8> {
    [&META[..], b"type/", actor_type.as_bytes()].concat()
}

/// The prefix of every index entry.
pub(crate) fn index_prefix() -> Vec<u8> {
    [&META[..], b"type/"].concat()
}

/// The index entry of `id` under `actor_type`.
pub(crate) fn type_key(actor_type: uuid::Uuid, id: ActorId) -> Vec<u8> {
    [&META[..], b"type/", actor_type.as_bytes(), id.as_bytes()].concat()
}

/// The (type, id) of an index entry key, if it is one.
pub(crate) fn parse_type_key(key: &[u8]) -> Option<(uuid::Uuid, ActorId)> {
    let rest = key.strip_prefix(&index_prefix()[..])?;
    let (actor_type, id) = (rest.get(..16)?, rest.get(16..)?);
    Some((
        uuid::Uuid::from_bytes(actor_type.try_into().ok()?),
        ActorId::from_bytes(id.try_into().ok()?),
    ))
}

/// The id of a snapshot key, if it is one (16 bytes).
pub(crate) fn parse_id_key(key: &[u8]) -> Option<ActorId> {
    <[u8; 16]>::try_from(key).ok().map(ActorId::from_bytes)
}

/// The first bytes of a tombstone.
const TOMBSTONE_MAGIC: [u8; 4] = *b"THTB";
const TOMBSTONE_VERSION: u16 = 1;
/// magic, version, actor type, epoch, sequence, CRC-32C.
pub(crate) const TOMBSTONE_LEN: usize = 4 + 2 + 16 + 8 + 8 + 4;

/// What is stored under an id key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// An envelope: its actor type and stamp.
    Snapshot {
        actor_type: uuid::Uuid,
        stamp: Stamp,
    },
    /// A deleted snapshot's type and stamp.
    Tombstone {
        actor_type: uuid::Uuid,
        stamp: Stamp,
    },
    /// Bytes that are neither (stored as they were by theta builds before the
    /// write rule refused non-envelopes): readable as they are, no stamp.
    Foreign,
}

/// A stored tombstone that does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the tombstone stored for it is damaged ({len} bytes, checksum or length wrong)")]
pub(crate) struct BadTombstone {
    pub(crate) len: usize,
}

impl Stored {
    /// Classifies a stored value.
    pub(crate) fn of(value: &[u8]) -> Result<Stored, BadTombstone> {
        if value.starts_with(&TOMBSTONE_MAGIC) {
            return parse_tombstone(value).ok_or(BadTombstone { len: value.len() });
        }
        Ok(match Header::peek(value) {
            Ok(header) => Stored::Snapshot {
                actor_type: header.actor_type,
                stamp: header.stamp(),
            },
            Err(_) => Stored::Foreign,
        })
    }

    /// Classifies a stored value for counting: a damaged tombstone counts as
    /// foreign bytes (a read reports it).
    pub(crate) fn classify(value: &[u8]) -> Stored {
        Self::of(value).unwrap_or(Stored::Foreign)
    }

    /// The stamp a new write must be newer than.
    pub(crate) fn stamp(self) -> Option<Stamp> {
        match self {
            Stored::Snapshot { stamp, .. } | Stored::Tombstone { stamp, .. } => Some(stamp),
            Stored::Foreign => None,
        }
    }

    /// The actor type the index lists the id under (live snapshots only).
    pub(crate) fn indexed_type(self) -> Option<uuid::Uuid> {
        match self {
            Stored::Snapshot { actor_type, .. } => Some(actor_type),
            Stored::Tombstone { .. } | Stored::Foreign => None,
        }
    }

    /// Whether a read finds a snapshot here.
    pub(crate) fn is_live(self) -> bool {
        !matches!(self, Stored::Tombstone { .. })
    }
}

/// Whether `value` starts like a tombstone (a read then checks it whole).
pub(crate) fn is_tombstone(value: &[u8]) -> bool {
    value.starts_with(&TOMBSTONE_MAGIC)
}

/// The tombstone of a deleted snapshot of `actor_type` with `stamp`.
pub(crate) fn tombstone(actor_type: uuid::Uuid, stamp: Stamp) -> Vec<u8> {
    let mut out = Vec::with_capacity(TOMBSTONE_LEN);
    out.extend_from_slice(&TOMBSTONE_MAGIC);
    out.extend_from_slice(&TOMBSTONE_VERSION.to_le_bytes());
    out.extend_from_slice(actor_type.as_bytes());
    out.extend_from_slice(&stamp.epoch.to_le_bytes());
    out.extend_from_slice(&stamp.sequence.to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn parse_tombstone(value: &[u8]) -> Option<Stored> {
    if value.len() != TOMBSTONE_LEN {
        return None;
    }
    let (body, crc) = value.split_at(TOMBSTONE_LEN - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    if u16::from_le_bytes(body[4..6].try_into().ok()?) != TOMBSTONE_VERSION {
        return None;
    }
    let u64_at = |at: usize| body[at..at + 8].try_into().ok().map(u64::from_le_bytes);
    Some(Stored::Tombstone {
        actor_type: uuid::Uuid::from_bytes(body[6..22].try_into().ok()?),
        stamp: Stamp::new(u64_at(22)?, u64_at(30)?),
    })
}

/// An order-independent sum over the id keys of the tree: how many there are,
/// how many hold a live snapshot, and the wrapping sum of a 128-bit hash of each
/// (id, value). Adding and removing entries in any order gives the same sum, so
/// the writers keep it up to date with atomic adds and the open recomputes it
/// from a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Digest {
    /// Id keys (snapshots and tombstones).
    pub(crate) keys: u64,
    /// Id keys holding a live snapshot (or foreign bytes).
    pub(crate) live: u64,
    /// The wrapping sum of [`contribution`]s.
    pub(crate) sum: u128,
}

impl Digest {
    /// Adds the entry `value` (classified as `stored`) under `id`.
    pub(crate) fn add(&mut self, id: ActorId, value: &[u8], stored: Stored) {
        self.keys += 1;
        self.live += u64::from(stored.is_live());
        self.sum = self.sum.wrapping_add(contribution(id, value));
    }
}

/// The hash of one entry: the id, the value's length, its header (the whole of a
/// tombstone) and its last four bytes (an envelope's CRC over all of it). Fixed
/// keys: the sum is stored, so the hash must never change.
pub(crate) fn contribution(id: ActorId, value: &[u8]) -> u128 {
    let mut hasher = SipHasher13::new_with_keys(0x7468_6574_612d_736c, 0x6564_2d64_6967_6573);
    hasher.write(id.as_bytes());
    hasher.write(&(value.len() as u64).to_le_bytes());
    let head = value.len().min(HEADER_LEN);
    hasher.write(&value[..head]);
    hasher.write(&value[value.len() - value.len().min(TRAILER_LEN)..]);
    hasher.finish128().as_u128()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_keys_sort_after_every_id() {
        let max = ActorId::from_bytes([0xff; 16]);
        assert!(max.as_bytes().as_slice() < generation_key().as_slice());
        assert!(max.as_bytes().as_slice() < META.as_slice());
        let key = type_key(uuid::Uuid::from_u128(7), max);
        assert!(key.as_slice() > META.as_slice());
        assert_eq!(parse_type_key(&key), Some((uuid::Uuid::from_u128(7), max)));
        assert_eq!(parse_id_key(&key), None);
    }

    #[test]
    fn tombstones_round_trip_and_damage_is_caught() {
        let actor_type = uuid::Uuid::from_u128(0xabc);
        let stone = tombstone(actor_type, Stamp::new(3, 9));
        assert_eq!(stone.len(), TOMBSTONE_LEN);
        assert_eq!(
            Stored::of(&stone),
            Ok(Stored::Tombstone {
                actor_type,
                stamp: Stamp::new(3, 9)
            })
        );
        let mut bad = stone.clone();
        bad[20] ^= 1;
        assert_eq!(Stored::of(&bad), Err(BadTombstone { len: TOMBSTONE_LEN }));
        assert_eq!(
            Stored::of(&stone[..10]),
            Err(BadTombstone { len: 10 }),
            "a truncated tombstone"
        );
        assert_eq!(Stored::of(b"plain bytes"), Ok(Stored::Foreign));
    }

    #[test]
    fn the_digest_does_not_depend_on_order_and_sees_every_byte_of_a_header() {
        let (a, b) = (ActorId::from_u128(1), ActorId::from_u128(2));
        let mut one = Digest::default();
        one.add(a, b"first", Stored::Foreign);
        one.add(b, b"second", Stored::Foreign);
        let mut other = Digest::default();
        other.add(b, b"second", Stored::Foreign);
        other.add(a, b"first", Stored::Foreign);
        assert_eq!(one, other);
        assert_ne!(contribution(a, b"first"), contribution(a, b"firsT"));
        assert_ne!(contribution(a, b"first"), contribution(b, b"first"));
    }
}
