//! [`MemoryStorage`]: the in-process backend for tests and examples.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::actor::ActorId;
use crate::runtime::lock;

use super::{PersistentStorage, SharedStorage, SnapshotNotFound, envelope};

/// Snapshots in a `HashMap` behind a mutex: the full storage contract (absent →
/// [`SnapshotNotFound`], stale writes refused, delete, list), nothing durable.
/// Clones share the same map.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> anyhow::Result<()> {
/// use theta::persistence::{MemoryStorage, PersistentStorage, SnapshotNotFound};
///
/// let storage = MemoryStorage::new();
/// let id = theta::ActorId::new_v4();
/// let err = storage.try_read(id).await.unwrap_err();
/// assert!(err.is::<SnapshotNotFound>());
/// storage.try_write(id, b"bytes".to_vec()).await?;
/// assert_eq!(storage.try_read(id).await?, b"bytes");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    map: Arc<Mutex<HashMap<ActorId, Vec<u8>>>>,
}

impl MemoryStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stored bytes of `id`, bypassing the async interface.
    pub fn get(&self, id: ActorId) -> Option<Vec<u8>> {
        lock(&self.map).get(&id).cloned()
    }

    /// Stores `bytes` for `id` unchecked (no stale check): for tests that plant
    /// damaged or foreign bytes.
    pub fn insert_raw(&self, id: ActorId, bytes: Vec<u8>) {
        lock(&self.map).insert(id, bytes);
    }

    /// Number of stored snapshots.
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        lock(&self.map).is_empty()
    }
}

impl PersistentStorage for MemoryStorage {
    async fn try_read(&self, id: ActorId) -> Result<Vec<u8>, anyhow::Error> {
        lock(&self.map)
            .get(&id)
            .cloned()
            .ok_or_else(|| anyhow::Error::new(SnapshotNotFound))
    }

    async fn try_write(&self, id: ActorId, bytes: Vec<u8>) -> Result<(), anyhow::Error> {
        let mut map = lock(&self.map);
        if let Some(stored) = map.get(&id) {
            envelope::check_not_stale(id, stored, &bytes)?;
        }
        map.insert(id, bytes);
        Ok(())
    }

    async fn try_delete(&self, id: ActorId) -> Result<(), anyhow::Error> {
        lock(&self.map).remove(&id);
        Ok(())
    }

    async fn try_list(&self) -> Result<Vec<ActorId>, anyhow::Error> {
        Ok(lock(&self.map).keys().copied().collect())
    }

    fn shared(&self) -> Option<SharedStorage> {
        Some(SharedStorage::new(self.clone()))
    }
}
