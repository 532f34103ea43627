//! The [`Registry`] of one [`RootContext`](crate::RootContext): every live actor by
//! id (so an id runs once), which of them are top-level, and how many are still
//! running (so `shutdown` knows when everything has exited).
//!
//! The map is split into shards by id, each behind its own lock, so spawns on
//! different threads do not queue on one mutex.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::control::Control;
use crate::id::ActorId;
use crate::mailbox::lock;

/// Shards of the id map: a power of two, a few per core.
const SHARDS: usize = 32;

enum Entry {
    /// Claimed for an actor being spawned (its snapshot is being read, say).
    Reserved,
    Live {
        control: Arc<dyn Control>,
        /// Spawned by the root, not by an actor: `shutdown` stops it.
        top: bool,
    },
}

/// The map of one shard. foldhash with a random seed per map: a fraction of
/// SipHash's cost per spawn, still seeded so that ids a user derives from
/// outside input cannot be chosen to collide.
type Map = HashMap<ActorId, Entry, foldhash::fast::RandomState>;

/// One shard, on its own cache line so that two threads locking two shards do
/// not fight over one line.
#[repr(align(64))]
#[derive(Default)]
struct Shard(Mutex<Map>);

/// Everything one [`RootContext`](crate::RootContext) owns.
pub(crate) struct Registry {
    /// Identifies this tree among others (in this and other processes), for
    /// example as the owner of the persistent ids it runs.
    pub(crate) instance: uuid::Uuid,
    shards: Box<[Shard]>,
    /// Actors spawned and not yet fully exited.
    running: AtomicUsize,
    drained: Notify,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            instance: uuid::Uuid::new_v4(),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            running: AtomicUsize::new(0),
            drained: Notify::new(),
        }
    }
}

impl Registry {
    fn shard(&self, id: ActorId) -> &Mutex<Map> {
        // Fold every byte: random, sequential and time-ordered ids all spread.
        let folded = id
            .as_bytes()
            .iter()
            .fold(0usize, |acc, b| acc ^ usize::from(*b));
        &self.shards[folded % SHARDS].0
    }

    /// Claims `id` for an actor about to be spawned; `None` if it is live or
    /// claimed.
    pub(crate) fn reserve(self: &Arc<Self>, id: ActorId) -> Option<Reservation> {
        match lock(self.shard(id)).entry(id) {
            Slot::Occupied(_) => return None,
            Slot::Vacant(slot) => slot.insert(Entry::Reserved),
        };
        Some(Reservation {
            registry: Arc::clone(self),
            id,
            armed: true,
        })
    }

    /// Registers a live actor under a fresh id in one step; `false` (nothing
    /// changed) if the id is taken.
    pub(crate) fn insert_new(&self, id: ActorId, control: Arc<dyn Control>, top: bool) -> bool {
        match lock(self.shard(id)).entry(id) {
            Slot::Occupied(_) => false,
            Slot::Vacant(slot) => {
                self.running.fetch_add(1, Ordering::AcqRel);
                slot.insert(Entry::Live { control, top });
                true
            }
        }
    }

    /// Whether `id` is live or reserved.
    pub(crate) fn is_live(&self, id: ActorId) -> bool {
        lock(self.shard(id)).contains_key(&id)
    }

    /// Frees `id`.
    pub(crate) fn deregister(&self, id: ActorId) {
        lock(self.shard(id)).remove(&id);
    }

    /// Counts an actor out; called after its exit is visible.
    pub(crate) fn exited(&self) {
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.drained.notify_waiters();
        }
    }

    /// Waits until every spawned actor has exited.
    pub(crate) async fn drained(&self) {
        loop {
            let mut notified = pin!(self.drained.notified());
            notified.as_mut().enable();
            if self.running.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// The live top-level actors.
    pub(crate) fn top_level(&self) -> Vec<Arc<dyn Control>> {
        let mut top = Vec::new();
        for shard in self.shards.iter() {
            top.extend(lock(&shard.0).values().filter_map(|entry| match entry {
                Entry::Live { control, top: true } => Some(Arc::clone(control)),
                _ => None,
            }));
        }
        top
    }

    /// Aborts every live actor; returns the ids of the live and reserved ones.
    pub(crate) fn abort_all(&self) -> Vec<ActorId> {
        let mut ids = Vec::new();
        let mut live = Vec::new();
        for shard in self.shards.iter() {
            for (id, entry) in lock(&shard.0).iter() {
                ids.push(*id);
                if let Entry::Live { control, .. } = entry {
                    live.push(Arc::clone(control));
                }
            }
        }
        for control in live {
            control.abort();
        }
        ids
    }
}

/// A claimed id; released on drop unless an actor was spawned under it.
pub(crate) struct Reservation {
    registry: Arc<Registry>,
    id: ActorId,
    armed: bool,
}

impl Reservation {
    pub(crate) fn id(&self) -> ActorId {
        self.id
    }

    /// Turns the claim into a live entry.
    pub(crate) fn commit(mut self, control: Arc<dyn Control>, top: bool) {
        self.registry.running.fetch_add(1, Ordering::AcqRel);
        lock(self.registry.shard(self.id)).insert(self.id, Entry::Live { control, top });
        self.armed = false;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.armed {
            self.registry.deregister(self.id);
        }
    }
}
