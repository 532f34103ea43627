//! A fault-injecting storage around `MemoryStorage`: fail the next read, write or
//! delete, hold the next write, and observe acknowledged writes as events.

use std::io;
use std::sync::{Arc, Mutex};

use theta::ActorId;
use theta::persistence::{
    Claim, ClaimMode, MemoryStorage, OwnerId, PersistentStorage, SharedStorage, envelope,
};
use tokio::sync::{mpsc, oneshot};

#[derive(Default)]
struct Faults {
    read: Option<io::ErrorKind>,
    write: Option<io::ErrorKind>,
    delete: Option<io::ErrorKind>,
    /// The next write tells the first sender it started, then waits for the
    /// second to fire.
    hold: Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>,
}

/// An acknowledged write: the actor and the envelope's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub id: ActorId,
    pub sequence: u64,
}

#[derive(Clone)]
pub struct FaultStorage {
    pub inner: MemoryStorage,
    faults: Arc<Mutex<Faults>>,
    written: mpsc::UnboundedSender<Written>,
}

impl FaultStorage {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Written>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                inner: MemoryStorage::new(),
                faults: Arc::default(),
                written: tx,
            },
            rx,
        )
    }

    #[allow(
        dead_code,
        reason = "persistence_semantics uses it, virtual_actors does not"
    )]
    pub fn fail_next_read(&self) {
        self.faults.lock().unwrap().read = Some(io::ErrorKind::PermissionDenied);
    }

    pub fn fail_next_write(&self) {
        self.faults.lock().unwrap().write = Some(io::ErrorKind::StorageFull);
    }

    /// Holds the next write: the first receiver fires when it starts, and it
    /// goes on when the returned sender fires (or is dropped).
    pub fn hold_next_write(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (started_tx, started_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        self.faults.lock().unwrap().hold = Some((started_tx, release_rx));
        (started_rx, release_tx)
    }

    #[allow(
        dead_code,
        reason = "persistence_semantics uses it, virtual_actors does not"
    )]
    pub fn fail_next_delete(&self) {
        self.faults.lock().unwrap().delete = Some(io::ErrorKind::Other);
    }
}

fn injected(kind: io::ErrorKind, op: &str) -> anyhow::Error {
    anyhow::Error::new(io::Error::new(kind, format!("injected {op} failure")))
}

impl PersistentStorage for FaultStorage {
    async fn try_read(&self, id: ActorId) -> Result<Vec<u8>, anyhow::Error> {
        if let Some(kind) = self.faults.lock().unwrap().read.take() {
            return Err(injected(kind, "read"));
        }
        self.inner.try_read(id).await
    }

    async fn try_write(&self, id: ActorId, bytes: Vec<u8>) -> Result<(), anyhow::Error> {
        if let Some(kind) = self.faults.lock().unwrap().write.take() {
            return Err(injected(kind, "write"));
        }
        let hold = self.faults.lock().unwrap().hold.take();
        if let Some((started, release)) = hold {
            let _ = started.send(());
            let _ = release.await;
        }
        let sequence = envelope::sequence_of(&bytes).unwrap_or(0);
        self.inner.try_write(id, bytes).await?;
        let _ = self.written.send(Written { id, sequence });
        Ok(())
    }

    async fn try_delete(&self, id: ActorId) -> Result<(), anyhow::Error> {
        if let Some(kind) = self.faults.lock().unwrap().delete.take() {
            return Err(injected(kind, "delete"));
        }
        self.inner.try_delete(id).await
    }

    async fn try_list(&self) -> Result<Vec<ActorId>, anyhow::Error> {
        self.inner.try_list().await
    }

    async fn try_list_type(&self, actor_type: uuid::Uuid) -> Result<Vec<ActorId>, anyhow::Error> {
        self.inner.try_list_type(actor_type).await
    }

    async fn try_claim(
        &self,
        id: ActorId,
        owner: OwnerId,
        mode: ClaimMode,
    ) -> Result<Claim, anyhow::Error> {
        if let Some(kind) = self.faults.lock().unwrap().read.take() {
            // A claim reads the snapshot: the read fault applies.
            return Err(injected(kind, "read"));
        }
        self.inner.try_claim(id, owner, mode).await
    }

    async fn try_release(
        &self,
        id: ActorId,
        owner: OwnerId,
        epoch: u64,
    ) -> Result<(), anyhow::Error> {
        self.inner.try_release(id, owner, epoch).await
    }

    fn shared(&self) -> Option<SharedStorage> {
        Some(SharedStorage::new(self.clone()))
    }
}
