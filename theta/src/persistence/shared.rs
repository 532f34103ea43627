//! [`SharedStorage`]: an owned, type-erased storage handle.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::id::ActorId;

use super::{Claim, ClaimMode, OwnerId, PersistentStorage, SnapshotPolicy};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

trait DynStorage: Send + Sync {
    fn read(&self, id: ActorId) -> BoxFuture<'_, Result<Vec<u8>, anyhow::Error>>;
    fn write(&self, id: ActorId, bytes: Vec<u8>) -> BoxFuture<'_, Result<(), anyhow::Error>>;
    fn delete(&self, id: ActorId) -> BoxFuture<'_, Result<(), anyhow::Error>>;
    fn list(&self) -> BoxFuture<'_, Result<Vec<ActorId>, anyhow::Error>>;
    fn list_type(
        &self,
        actor_type: uuid::Uuid,
    ) -> BoxFuture<'_, Result<Vec<ActorId>, anyhow::Error>>;
    fn claim(
        &self,
        id: ActorId,
        owner: OwnerId,
        mode: ClaimMode,
    ) -> BoxFuture<'_, Result<Claim, anyhow::Error>>;
    fn release(
        &self,
        id: ActorId,
        owner: OwnerId,
        epoch: u64,
    ) -> BoxFuture<'_, Result<(), anyhow::Error>>;
    fn close(&self) -> BoxFuture<'_, Result<(), anyhow::Error>>;
}

impl<S: PersistentStorage> DynStorage for S {
    fn read(&self, id: ActorId) -> BoxFuture<'_, Result<Vec<u8>, anyhow::Error>> {
        Box::pin(self.try_read(id))
    }

    fn write(&self, id: ActorId, bytes: Vec<u8>) -> BoxFuture<'_, Result<(), anyhow::Error>> {
        Box::pin(self.try_write(id, bytes))
    }

    fn delete(&self, id: ActorId) -> BoxFuture<'_, Result<(), anyhow::Error>> {
        Box::pin(self.try_delete(id))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ActorId>, anyhow::Error>> {
        Box::pin(self.try_list())
    }

    fn list_type(
        &self,
        actor_type: uuid::Uuid,
    ) -> BoxFuture<'_, Result<Vec<ActorId>, anyhow::Error>> {
        Box::pin(self.try_list_type(actor_type))
    }

    fn claim(
        &self,
        id: ActorId,
        owner: OwnerId,
        mode: ClaimMode,
    ) -> BoxFuture<'_, Result<Claim, anyhow::Error>> {
        Box::pin(self.try_claim(id, owner, mode))
    }

    fn release(
        &self,
        id: ActorId,
        owner: OwnerId,
        epoch: u64,
    ) -> BoxFuture<'_, Result<(), anyhow::Error>> {
        Box::pin(self.try_release(id, owner, epoch))
    }

    fn close(&self) -> BoxFuture<'_, Result<(), anyhow::Error>> {
        Box::pin(self.try_close())
    }
}

/// An owned, cheaply cloneable handle to any [`PersistentStorage`], optionally
/// carrying a [`SnapshotPolicy`] that overrides the actor type's policy for actors
/// spawned with it.
///
/// Automatic snapshots are written from a background task, which needs an owned
/// handle: backends that are cheap handles return one from
/// [`PersistentStorage::shared`]; any other storage can be wrapped here.
///
/// ```
/// use theta::persistence::{MemoryStorage, SharedStorage, SnapshotPolicy};
///
/// let storage = SharedStorage::new(MemoryStorage::new())
///     .with_policy(SnapshotPolicy::new().every_n_messages(1));
/// assert!(storage.policy().is_some());
/// ```
#[derive(Clone)]
pub struct SharedStorage {
    inner: Arc<dyn DynStorage>,
    policy: Option<SnapshotPolicy>,
}

impl SharedStorage {
    /// Wraps a storage.
    pub fn new<S: PersistentStorage + 'static>(storage: S) -> Self {
        Self {
            inner: Arc::new(storage),
            policy: None,
        }
    }

    /// Actors spawned with this handle use `policy` instead of their type's
    /// [`PersistentActor::snapshot_policy`](super::PersistentActor::snapshot_policy).
    pub fn with_policy(mut self, policy: SnapshotPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The overriding policy, if any.
    pub fn policy(&self) -> Option<SnapshotPolicy> {
        self.policy
    }
}

impl fmt::Debug for SharedStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedStorage")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl PersistentStorage for SharedStorage {
    fn try_read(&self, id: ActorId) -> impl Future<Output = Result<Vec<u8>, anyhow::Error>> + Send {
        self.inner.read(id)
    }

    fn try_write(
        &self,
        id: ActorId,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<(), anyhow::Error>> + Send {
        self.inner.write(id, bytes)
    }

    fn try_delete(&self, id: ActorId) -> impl Future<Output = Result<(), anyhow::Error>> + Send {
        self.inner.delete(id)
    }

    fn try_list(&self) -> impl Future<Output = Result<Vec<ActorId>, anyhow::Error>> + Send {
        self.inner.list()
    }

    fn try_list_type(
        &self,
        actor_type: uuid::Uuid,
    ) -> impl Future<Output = Result<Vec<ActorId>, anyhow::Error>> + Send {
        self.inner.list_type(actor_type)
    }

    fn try_claim(
        &self,
        id: ActorId,
        owner: OwnerId,
        mode: ClaimMode,
    ) -> impl Future<Output = Result<Claim, anyhow::Error>> + Send {
        self.inner.claim(id, owner, mode)
    }

    fn try_release(
        &self,
        id: ActorId,
        owner: OwnerId,
        epoch: u64,
    ) -> impl Future<Output = Result<(), anyhow::Error>> + Send {
        self.inner.release(id, owner, epoch)
    }

    fn try_close(&self) -> impl Future<Output = Result<(), anyhow::Error>> + Send {
        self.inner.close()
    }

    fn shared(&self) -> Option<SharedStorage> {
        Some(self.clone())
    }
}
