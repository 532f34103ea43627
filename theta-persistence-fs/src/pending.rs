//! The pending writes: acknowledged writes and deletes that no checkpoint has
//! written to their files yet. They are in the journal (durably) and here (for
//! reads), and each remembers the journal segment that holds it, so that a
//! checkpoint knows which writes it must write before it removes a segment.

use std::collections::HashMap;
use std::sync::Arc;

use theta::ActorId;

/// An acknowledged write not yet in its file.
#[derive(Debug, Clone)]
struct Entry {
    /// Changes whenever the id is written again.
    version: u64,
    /// The journal segment that holds the write.
    segment: u64,
    /// `None` for a delete.
    snapshot: Option<Arc<Vec<u8>>>,
}

/// A pending write taken by a checkpoint: forgotten once its file is durable,
/// unless the id was written again meanwhile.
#[derive(Debug)]
pub(crate) struct Taken {
    pub(crate) id: ActorId,
    pub(crate) snapshot: Option<Arc<Vec<u8>>>,
    version: u64,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    entries: HashMap<ActorId, Entry>,
    versions: u64,
}

impl Pending {
    /// Records an acknowledged write (`Some`) or delete (`None`) of `id`, held
    /// by journal segment `segment`.
    pub(crate) fn publish(&mut self, id: ActorId, snapshot: Option<Arc<Vec<u8>>>, segment: u64) {
        self.versions += 1;
        let entry = Entry {
            version: self.versions,
            segment,
            snapshot,
        };
        self.entries.insert(id, entry);
    }

    /// The pending write of `id`: `Some(None)` for a delete, `None` when the
    /// file is up to date.
    pub(crate) fn get(&self, id: ActorId) -> Option<Option<Arc<Vec<u8>>>> {
        self.entries.get(&id).map(|entry| entry.snapshot.clone())
    }

    /// The pending writes held by segment `segment` or older.
    pub(crate) fn through(&self, segment: u64) -> Vec<Taken> {
        self.entries
            .iter()
            .filter(|(_, entry)| entry.segment <= segment)
            .map(|(id, entry)| Taken {
                id: *id,
                snapshot: entry.snapshot.clone(),
                version: entry.version,
            })
            .collect()
    }

    /// Forgets the `taken` writes whose files are now durable, except those
    /// written again since they were taken.
    pub(crate) fn forget(&mut self, taken: &[Taken]) {
        for taken in taken {
            if self
                .entries
                .get(&taken.id)
                .is_some_and(|now| now.version == taken.version)
            {
                self.entries.remove(&taken.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_again_after_it_was_taken_is_not_forgotten() {
        let mut pending = Pending::default();
        let (a, b) = (ActorId::from_u128(1), ActorId::from_u128(2));
        pending.publish(a, Some(Arc::new(vec![1])), 3);
        pending.publish(b, None, 4);
        let taken = pending.through(3);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].id, a);
        pending.publish(a, Some(Arc::new(vec![2])), 5);
        pending.forget(&taken);
        assert_eq!(pending.get(a), Some(Some(Arc::new(vec![2]))));
        assert_eq!(pending.get(b), Some(None));
        let taken = pending.through(5);
        assert_eq!(taken.len(), 2);
        pending.forget(&taken);
        assert_eq!((pending.get(a), pending.get(b)), (None, None));
    }
}
