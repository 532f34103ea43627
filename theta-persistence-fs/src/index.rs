//! The index of stored snapshots: for every id with a snapshot (in its file or
//! still only in the journal), its actor type and stamp.
//!
//! Kept in memory: built at open from the headers of the snapshot files (the
//! open walks every shard directory anyway, to remove temp files) and from the
//! journal's replay, then updated by the committer with every write and delete
//! it publishes. It answers `try_list` and `try_list_type` without touching the
//! disk (listing one type reads no snapshot of another), and gives the write
//! rule the stored stamp of any id without a file read on the committer thread.
//! It costs about 40 bytes per stored actor, and one header read per snapshot
//! file at open.

use std::collections::HashMap;

use theta::ActorId;
use theta::persistence::envelope::Stamp;

/// `Meta::kind` of a stored file that is not an envelope.
const NOT_AN_ENVELOPE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Meta {
    /// Index into `Index::types`, or [`NOT_AN_ENVELOPE`].
    kind: u32,
    stamp: Stamp,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Actor types, each stored once.
    types: Vec<uuid::Uuid>,
    type_numbers: HashMap<uuid::Uuid, u32>,
    entries: HashMap<ActorId, Meta>,
}

impl Index {
    /// Records the stored snapshot of `id`: its actor type and stamp, or `None`
    /// for bytes that are not an envelope.
    pub(crate) fn insert(&mut self, id: ActorId, described: Option<(uuid::Uuid, Stamp)>) {
        let meta = match described {
            Some((actor_type, stamp)) => {
                let next = self.types.len() as u32;
                let kind = *self.type_numbers.entry(actor_type).or_insert(next);
                if kind == next {
                    self.types.push(actor_type);
                }
                Meta { kind, stamp }
            }
            None => Meta {
                kind: NOT_AN_ENVELOPE,
                stamp: Stamp::default(),
            },
        };
        self.entries.insert(id, meta);
    }

    /// Records that `id` has no stored snapshot.
    pub(crate) fn remove(&mut self, id: ActorId) {
        self.entries.remove(&id);
    }

    /// Whether `id` has a stored snapshot.
    pub(crate) fn contains(&self, id: ActorId) -> bool {
        self.entries.contains_key(&id)
    }

    /// The stamp of the stored snapshot of `id`: `None` when there is none, or
    /// when it is not an envelope.
    pub(crate) fn stamp(&self, id: ActorId) -> Option<Stamp> {
        self.entries
            .get(&id)
            .filter(|meta| meta.kind != NOT_AN_ENVELOPE)
            .map(|meta| meta.stamp)
    }

    /// Every id with a stored snapshot.
    pub(crate) fn ids(&self) -> Vec<ActorId> {
        self.entries.keys().copied().collect()
    }

    /// The ids whose stored snapshot is of `actor_type`, and the ids whose
    /// stored bytes are not an envelope (their type is unknown).
    pub(crate) fn ids_of(&self, actor_type: uuid::Uuid) -> (Vec<ActorId>, Vec<ActorId>) {
        let kind = self.type_numbers.get(&actor_type).copied();
        let mut of_type = Vec::new();
        let mut unknown = Vec::new();
        for (id, meta) in &self.entries {
            if Some(meta.kind) == kind {
                of_type.push(*id);
            } else if meta.kind == NOT_AN_ENVELOPE {
                unknown.push(*id);
            }
        }
        (of_type, unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_by_type_and_follows_changes() {
        let (a, b) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        let mut index = Index::default();
        let ids: Vec<ActorId> = (0..6).map(ActorId::from_u128).collect();
        for (i, id) in ids.iter().enumerate() {
            let actor_type = if i % 2 == 0 { a } else { b };
            index.insert(*id, Some((actor_type, Stamp::new(0, i as u64))));
        }
        index.insert(ids[0], Some((b, Stamp::new(1, 0)))); // rewritten by another type
        index.remove(ids[2]);
        index.insert(ActorId::from_u128(99), None);
        let (mut of_a, unknown) = index.ids_of(a);
        of_a.sort();
        assert_eq!(of_a, vec![ids[4]]);
        assert_eq!(unknown, vec![ActorId::from_u128(99)]);
        assert_eq!(
            index.ids_of(uuid::Uuid::from_u128(3)).0,
            Vec::<ActorId>::new()
        );
        assert_eq!(index.stamp(ids[0]), Some(Stamp::new(1, 0)));
        assert_eq!(index.stamp(ActorId::from_u128(99)), None);
        assert!(index.contains(ActorId::from_u128(99)));
        assert!(!index.contains(ids[2]));
        assert_eq!(index.ids().len(), 6);
    }
}
