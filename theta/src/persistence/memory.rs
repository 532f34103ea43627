//! [`MemoryStorage`]: the in-process backend for tests and examples.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::id::ActorId;
use crate::mailbox::lock;

use super::{
    Claim, ClaimMode, ClaimTable, OwnerId, PersistentStorage, SharedStorage, SnapshotNotFound,
    StorageClosed, envelope,
};

/// Snapshots in a `HashMap` behind a mutex: the full storage contract (absent →
/// [`SnapshotNotFound`], the write rule, ownership claims, tombstones, delete,
/// list, close), nothing durable ([`Durability::Volatile`](super::Durability::Volatile)).
/// Clones share the same map.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> anyhow::Result<()> {
/// use theta::persistence::{MemoryStorage, PersistentStorage, SnapshotNotFound, envelope};
///
/// let storage = MemoryStorage::new();
/// let id = theta::ActorId::new_v4();
/// let err = storage.try_read(id).await.unwrap_err();
/// assert!(err.is::<SnapshotNotFound>());
/// let bytes = envelope::Seal::new(uuid::Uuid::nil()).actor_id(id).sequence(1).seal(b"state");
/// storage.try_write(id, bytes.clone()).await?;
/// assert_eq!(storage.try_read(id).await?, bytes);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    map: Mutex<HashMap<ActorId, Vec<u8>>>,
    claims: ClaimTable,
    closed: AtomicBool,
}

impl MemoryStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stored bytes of `id`, bypassing the async interface.
    pub fn get(&self, id: ActorId) -> Option<Vec<u8>> {
        lock(&self.inner.map).get(&id).cloned()
    }

    /// Stores `bytes` for `id` unchecked (no write rule): for tests that plant
    /// damaged or foreign bytes.
    pub fn insert_raw(&self, id: ActorId, bytes: Vec<u8>) {
        lock(&self.inner.map).insert(id, bytes);
    }

    /// Number of stored snapshots.
    pub fn len(&self) -> usize {
        lock(&self.inner.map).len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        lock(&self.inner.map).is_empty()
    }

    fn check_open(&self) -> Result<(), anyhow::Error> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(anyhow::Error::new(StorageClosed {
                location: "memory".into(),
            }));
        }
        Ok(())
    }
}

impl PersistentStorage for MemoryStorage {
    async fn try_read(&self, id: ActorId) -> Result<Vec<u8>, anyhow::Error> {
        lock(&self.inner.map)
            .get(&id)
            .cloned()
            .ok_or_else(|| anyhow::Error::new(SnapshotNotFound))
    }

    async fn try_write(&self, id: ActorId, bytes: Vec<u8>) -> Result<(), anyhow::Error> {
        self.check_open()?;
        let mut map = lock(&self.inner.map);
        let stored = map.get(&id).and_then(|b| envelope::stamp_of(b));
        let stamp = self.inner.claims.check_write(id, stored, &bytes)?;
        map.insert(id, bytes);
        self.inner.claims.record_write(id, stamp);
        Ok(())
    }

    async fn try_delete(&self, id: ActorId) -> Result<(), anyhow::Error> {
        self.check_open()?;
        let mut map = lock(&self.inner.map);
        if let Some(bytes) = map.remove(&id) {
            self.inner
                .claims
                .record_delete(id, envelope::stamp_of(&bytes));
        }
        Ok(())
    }

    async fn try_list(&self) -> Result<Vec<ActorId>, anyhow::Error> {
        Ok(lock(&self.inner.map).keys().copied().collect())
    }

    async fn try_list_type(&self, actor_type: uuid::Uuid) -> Result<Vec<ActorId>, anyhow::Error> {
        // The headers are in memory: peeking at them is the index.
        Ok(lock(&self.inner.map)
            .iter()
            .filter(|(_, bytes)| {
                envelope::Header::peek(bytes).is_ok_and(|h| h.actor_type == actor_type)
            })
            .map(|(id, _)| *id)
            .collect())
    }

    async fn try_claim(
        &self,
        id: ActorId,
        owner: OwnerId,
        mode: ClaimMode,
    ) -> Result<Claim, anyhow::Error> {
        self.check_open()?;
        let map = lock(&self.inner.map);
        let snapshot = map.get(&id).cloned();
        let stored = snapshot.as_deref().and_then(envelope::stamp_of);
        let epoch = self.inner.claims.claim(id, owner, mode, stored)?;
        Ok(Claim { epoch, snapshot })
    }

    async fn try_release(
        &self,
        id: ActorId,
        owner: OwnerId,
        epoch: u64,
    ) -> Result<(), anyhow::Error> {
        let map = lock(&self.inner.map);
        let stored = map.get(&id).and_then(|b| envelope::stamp_of(b));
        self.inner.claims.release(id, owner, epoch, stored);
        Ok(())
    }

    async fn try_close(&self) -> Result<(), anyhow::Error> {
        self.inner.closed.store(true, Ordering::Release);
        Ok(())
    }

    fn shared(&self) -> Option<SharedStorage> {
        Some(SharedStorage::new(self.clone()))
    }
}
