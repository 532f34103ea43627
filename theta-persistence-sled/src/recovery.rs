//! What an open checks before it lets anything read the tree: the census of the
//! id keys, its comparison with `ACKED`, and the repair of the type index.

use std::collections::HashSet;

use std::hash::Hasher as _;

use siphasher::sip128::{Hasher128, SipHasher13};
use theta::ActorId;

use crate::acked::{Found, Mark};
use crate::keys::{self, Digest, Stored};

/// What the tree holds, from one scan at open.
#[derive(Debug, Default)]
pub(crate) struct Census {
    /// The digest of the id keys.
    pub(crate) digest: Digest,
    /// The generation stored by the last open (0 if none).
    pub(crate) generation: u64,
    /// Index entries to add (live snapshots the index lacks).
    pub(crate) index_missing: Vec<Vec<u8>>,
    /// Index entries to remove (left by a crash between a write's steps).
    pub(crate) index_stale: Vec<Vec<u8>>,
}

/// The hash of one index entry.
fn entry_hash(actor_type: uuid::Uuid, id: ActorId) -> u128 {
    let mut hasher = SipHasher13::new_with_keys(0x0069_6e64_6578, 0x7479_7065);
    hasher.write(actor_type.as_bytes());
    hasher.write(id.as_bytes());
    hasher.finish128().as_u128()
}

/// Scans the tree: the digest of its id keys, and the difference between the
/// type index and the live snapshots.
///
/// The index is derived data, so it is repaired rather than refused: a write
/// adds its index entry before the snapshot and removes the old one after it,
/// so a crash can only leave extra entries (removed here); an entry missing for
/// a live snapshot (damage) is put back.
pub(crate) fn take_census(tree: &sled::Tree) -> Result<Census, sled::Error> {
    let mut census = Census::default();
    let (mut expected, mut expected_sum) = (0u64, 0u128);
    for entry in tree.range(..&keys::META[..]) {
        let (key, value) = entry?;
        let Some(id) = keys::parse_id_key(&key) else {
            continue;
        };
        let stored = Stored::classify(&value);
        census.digest.add(id, &value, stored);
        if let Some(actor_type) = stored.indexed_type() {
            expected += 1;
            expected_sum = expected_sum.wrapping_add(entry_hash(actor_type, id));
        }
    }
    let (mut indexed, mut indexed_sum) = (0u64, 0u128);
    for entry in tree.scan_prefix(keys::index_prefix()) {
        let (key, _) = entry?;
        if let Some((actor_type, id)) = keys::parse_type_key(&key) {
            indexed += 1;
            indexed_sum = indexed_sum.wrapping_add(entry_hash(actor_type, id));
        }
    }
    if (expected, expected_sum) != (indexed, indexed_sum) {
        reconcile_index(tree, &mut census)?;
    }
    if let Some(value) = tree.get(keys::generation_key())? {
        census.generation = <[u8; 8]>::try_from(value.as_ref())
            .map(u64::from_le_bytes)
            .unwrap_or(0);
    }
    Ok(census)
}

/// The slow path, after a crash or damage: which index entries to add and
/// remove, entry by entry.
fn reconcile_index(tree: &sled::Tree, census: &mut Census) -> Result<(), sled::Error> {
    let mut live = HashSet::new();
    for entry in tree.range(..&keys::META[..]) {
        let (key, value) = entry?;
        if let (Some(id), Some(actor_type)) = (
            keys::parse_id_key(&key),
            Stored::classify(&value).indexed_type(),
        ) {
            live.insert((actor_type, id));
        }
    }
    for entry in tree.scan_prefix(keys::index_prefix()) {
        let (key, _) = entry?;
        match keys::parse_type_key(&key) {
            Some(pair) if live.remove(&pair) => {}
            _ => census.index_stale.push(key.to_vec()),
        }
    }
    census.index_missing = live
        .into_iter()
        .map(|(actor_type, id)| keys::type_key(actor_type, id))
        .collect();
    Ok(())
}

/// Compares the census with what `ACKED` says was acknowledged. `Err` says what
/// is missing. `marked`: the directory has this layout's marker, so `ACKED`
/// should be there once anything was written.
pub(crate) fn check(found: Found, census: &Census, marked: bool) -> Result<(), String> {
    let now = census.digest;
    match found {
        Found::Record(record, _) => match record.mark {
            Mark::Closed(then) if then == now => Ok(()),
            Mark::Closed(then) if now.keys < then.keys || now.live < then.live => Err(format!(
                "{} snapshots ({} ids including deleted ones) were stored when it was last closed, \
                 {} ({}) are present: sled lost part of its log (a damaged or truncated `db` file)",
                then.live, then.keys, now.live, now.keys
            )),
            Mark::Closed(then) => Err(format!(
                "its {} snapshots ({} ids including deleted ones) differ from those stored when it \
                 was last closed ({} / {}): sled recovered older or damaged entries",
                now.live, now.keys, then.live, then.keys
            )),
            Mark::Open { keys } if now.keys >= keys => Ok(()),
            Mark::Open { keys } => Err(format!(
                "{keys} ids had acknowledged snapshots (or tombstones) when it last ran, \
                 only {} are present: sled lost part of its log (a damaged or truncated `db` file)",
                now.keys
            )),
        },
        Found::Unreadable { len } => Err(format!(
            "its record of acknowledged writes (`ACKED`, {len} bytes) is damaged, so missing \
             snapshots could not be detected"
        )),
        Found::Absent if marked && now.keys > 0 => Err(format!(
            "its record of acknowledged writes (`ACKED`) is missing while the tree holds {} ids, \
             so missing snapshots could not be detected",
            now.keys
        )),
        Found::Absent => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acked::Record;

    fn census(keys: u64, live: u64, sum: u128) -> Census {
        Census {
            digest: Digest { keys, live, sum },
            ..Census::default()
        }
    }

    fn closed(keys: u64, live: u64, sum: u128) -> Found {
        Found::Record(
            Record {
                sequence: 1,
                generation: 1,
                mark: Mark::Closed(Digest { keys, live, sum }),
            },
            0,
        )
    }

    #[test]
    fn a_closed_store_must_match_exactly() {
        assert_eq!(check(closed(5, 4, 9), &census(5, 4, 9), true), Ok(()));
        let fewer = check(closed(64, 64, 9), &census(9, 9, 1), true).unwrap_err();
        assert!(fewer.starts_with("64 snapshots"), "{fewer}");
        assert!(fewer.contains("9 (9) are present"), "{fewer}");
        let changed = check(closed(5, 4, 9), &census(5, 4, 8), true).unwrap_err();
        assert!(changed.contains("differ"), "{changed}");
    }

    #[test]
    fn an_open_store_must_hold_every_acknowledged_key() {
        let open = |keys| {
            Found::Record(
                Record {
                    sequence: 1,
                    generation: 1,
                    mark: Mark::Open { keys },
                },
                1,
            )
        };
        assert_eq!(check(open(3), &census(5, 1, 0), true), Ok(()));
        let lost = check(open(30), &census(5, 1, 0), true).unwrap_err();
        assert!(lost.starts_with("30 ids"), "{lost}");
    }

    #[test]
    fn a_missing_record_is_damage_only_in_a_marked_store_with_data() {
        assert_eq!(check(Found::Absent, &census(0, 0, 0), true), Ok(()));
        assert_eq!(check(Found::Absent, &census(3, 3, 1), false), Ok(()));
        let missing = check(Found::Absent, &census(3, 3, 1), true).unwrap_err();
        assert!(
            missing.contains("`ACKED`) is missing while the tree holds 3 ids"),
            "{missing}"
        );
        let damaged = check(Found::Unreadable { len: 7 }, &census(0, 0, 0), false).unwrap_err();
        assert!(
            damaged.contains("`ACKED`, 7 bytes) is damaged"),
            "{damaged}"
        );
    }
}
