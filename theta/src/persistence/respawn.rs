//! Spawning persistent actors ([`PersistentSpawnExt`]) and saving them by hand
//! ([`PersistentContextExt`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use crate::actor::{ActorArgs, Context};
use crate::actor_ref::ActorRef;
use crate::context::RootContext;
use crate::id::ActorId;
use crate::registry::Reservation;
use crate::spawn::{Id, Spawner};

use super::activation::{
    Activated, PersistHooks, PersistState, payload_hash, save_now, state_of, state_or_init,
};
use super::errors::is_not_found;
use super::snapshot::decode_snapshot as decode;
use super::virtual_actors::VirtualLink;
use super::writer::auto_save;
use super::{
    Claim, ClaimMode, OwnedElsewhere, OwnerId, PersistenceError, PersistentActor,
    PersistentStorage, SharedStorage, Unsupported,
};

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::RootContext {}
    impl<A: crate::Actor> Sealed for crate::Context<A> {}
}

/// Spawning with persistence, on [`RootContext`](crate::RootContext) (top-level actors) and
/// [`Context`] (children). See the [module docs](super#spawning-precisely) for what
/// each call does with stored data.
pub trait PersistentSpawnExt: sealed::Sealed {
    /// Starts a new persistent actor under `id` from `args`.
    ///
    /// Reads the storage first: if a snapshot exists it fails with
    /// [`PersistenceError::SnapshotExists`] and writes nothing, so it can never
    /// shadow or overwrite data it has not read. Sequence numbers start at 1.
    ///
    /// A restart after the first save restores that snapshot with
    /// `RuntimeArgs::default()`; actors whose runtime args have no default use
    /// [`respawn_or`](Self::respawn_or).
    fn spawn_persistent<S, Args>(
        &self,
        storage: &S,
        id: ActorId,
        args: Args,
    ) -> impl Future<Output = Result<ActorRef<Args::Actor>, PersistenceError>> + Send
    where
        S: PersistentStorage,
        Args: ActorArgs,
        Args::Actor: PersistentActor,
        <Args::Actor as PersistentActor>::RuntimeArgs: Default;

    /// Restores the actor `id` from its snapshot; fails with
    /// [`PersistenceError::NotFound`] if there is none.
    fn respawn<S, A>(
        &self,
        storage: &S,
        id: ActorId,
        runtime_args: A::RuntimeArgs,
    ) -> impl Future<Output = Result<ActorRef<A>, PersistenceError>> + Send
    where
        S: PersistentStorage,
        A: PersistentActor;

    /// Restores the actor `id` from its snapshot, or, only if the storage reports
    /// [`SnapshotNotFound`](super::SnapshotNotFound), starts it from
    /// `default_args()`. Every other failure is an `Err`.
    fn respawn_or<S, Args, R, D>(
        &self,
        storage: &S,
        id: ActorId,
        runtime_args: R,
        default_args: D,
    ) -> impl Future<Output = Result<ActorRef<Args::Actor>, PersistenceError>> + Send
    where
        S: PersistentStorage,
        Args: ActorArgs,
        Args::Actor: PersistentActor,
        R: FnOnce() -> <Args::Actor as PersistentActor>::RuntimeArgs + Send,
        D: FnOnce() -> Args + Send;

    /// Deletes the stored snapshot of `id`. Refused with
    /// [`PersistenceError::Running`] while an actor with that id is live.
    fn delete_snapshot<S>(
        &self,
        storage: &S,
        id: ActorId,
    ) -> impl Future<Output = Result<(), PersistenceError>> + Send
    where
        S: PersistentStorage;

    /// Restores every actor of `ids` from its snapshot (or starts it from
    /// `default_args(id)` where the storage has none), `parallelism` at a time;
    /// the results in the order of `ids`. The recovery loop of a service that
    /// knows which ids it owns; see
    /// [`VirtualActors::activate_all`](super::VirtualActors::activate_all) for
    /// actors activated on demand.
    ///
    /// ```
    /// # use theta::prelude::*;
    /// # use theta::persistence::MemoryStorage;
    /// # #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, ActorArgs)]
    /// # struct Account { balance: i64 }
    /// # #[actor("5e3f1a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b", snapshot)]
    /// # impl Actor for Account {}
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let storage = MemoryStorage::new();
    /// let root = RootContext::default();
    /// let ids: Vec<ActorId> = (0..100).map(|i| ActorId::from_u128(i)).collect();
    /// let accounts = root
    ///     .respawn_all_or(&storage, &ids, 16, |_| (), |_| Account { balance: 0 })
    ///     .await
    ///     .into_iter()
    ///     .collect::<Result<Vec<ActorRef<Account>>, _>>()?;
    /// assert_eq!(accounts.len(), 100);
    /// # Ok(())
    /// # }
    /// ```
    fn respawn_all_or<S, Args, R, D>(
        &self,
        storage: &S,
        ids: &[ActorId],
        parallelism: usize,
        runtime_args: R,
        default_args: D,
    ) -> impl Future<Output = Vec<Result<ActorRef<Args::Actor>, PersistenceError>>> + Send
    where
        S: PersistentStorage,
        Args: ActorArgs,
        Args::Actor: PersistentActor,
        R: Fn(ActorId) -> <Args::Actor as PersistentActor>::RuntimeArgs + Send + Sync,
        D: Fn(ActorId) -> Args + Send + Sync;

    /// Restores every actor of `ids` from its snapshot (an id without one is
    /// [`PersistenceError::NotFound`]), `parallelism` at a time; the results in
    /// the order of `ids`.
    fn respawn_all<S, A, R>(
        &self,
        storage: &S,
        ids: &[ActorId],
        parallelism: usize,
        runtime_args: R,
    ) -> impl Future<Output = Vec<Result<ActorRef<A>, PersistenceError>>> + Send
    where
        S: PersistentStorage,
        A: PersistentActor,
        R: Fn(ActorId) -> A::RuntimeArgs + Send + Sync;

    /// Stops `actor`, waits until it has stopped (after any final save), then
    /// deletes its snapshot: the actor is gone for good.
    fn forget<S, A>(
        &self,
        storage: &S,
        actor: ActorRef<A>,
    ) -> impl Future<Output = Result<(), PersistenceError>> + Send
    where
        S: PersistentStorage,
        A: PersistentActor;
}

/// An id activated in the storage: the claim (if the storage fences) and the
/// snapshot read under it.
struct Activation {
    id: ActorId,
    epoch: u64,
    /// Who claimed it and an owned handle to release it through.
    owner: Option<OwnerId>,
    storage: Option<SharedStorage>,
    snapshot: Option<Vec<u8>>,
}

impl Activation {
    /// Claims `id` for `owner` and reads its snapshot; on a storage that cannot
    /// fence (the claim is [`Unsupported`]), only reads it.
    async fn claim<S: PersistentStorage>(
        storage: &S,
        id: ActorId,
        owner: OwnerId,
        mode: ClaimMode,
    ) -> Result<Self, PersistenceError> {
        match storage.try_claim(id, owner, mode).await {
            Ok(Claim { epoch, snapshot }) => Ok(Self {
                id,
                epoch,
                owner: Some(owner),
                storage: storage.shared(),
                snapshot,
            }),
            Err(err) if err.is::<Unsupported>() => {
                let snapshot = match storage.try_read(id).await {
                    Ok(bytes) => Some(bytes),
                    Err(err) if is_not_found(&err) => None,
                    Err(source) => return Err(PersistenceError::Read { id, source }),
                };
                Ok(Self {
                    id,
                    epoch: 0,
                    owner: None,
                    storage: storage.shared(),
                    snapshot,
                })
            }
            Err(err) => Err(match err.downcast_ref::<OwnedElsewhere>() {
                Some(held) => PersistenceError::OwnedElsewhere {
                    id,
                    holder: held.holder,
                    epoch: held.epoch,
                },
                None => PersistenceError::Read { id, source: err },
            }),
        }
    }

    /// The persistence state of the actor this activation starts; `saved` is
    /// the payload hash of the restored snapshot.
    fn into_state(mut self, sequence: u64, saved: Option<u128>) -> PersistState {
        PersistState::new(
            self.id,
            Activated {
                epoch: self.epoch,
                owner: self.owner.take(),
                storage: self.storage.take(),
                sequence,
                saved,
            },
        )
    }

    /// Gives the claim back: the activation did not start an actor.
    async fn abandon(mut self) {
        if let (Some(owner), Some(storage)) = (self.owner.take(), &self.storage) {
            let _ = storage.try_release(self.id, owner, self.epoch).await;
        }
    }
}

impl Drop for Activation {
    /// An activation dropped on the way (its spawn future was cancelled) gives
    /// its claim back too.
    fn drop(&mut self) {
        if let (Some(owner), Some(storage)) = (self.owner.take(), self.storage.take())
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (id, epoch) = (self.id, self.epoch);
            runtime.spawn(async move {
                let _ = storage.try_release(id, owner, epoch).await;
            });
        }
    }
}

/// A decoded snapshot: the restored actor's arguments, its sequence number and
/// payload hash.
struct Restored<Args> {
    args: Args,
    sequence: u64,
    hash: u128,
}

impl<Args> Restored<Args> {
    fn start<Fresh>(self) -> Start<Fresh, Args> {
        Start::Restored(self.args, self.sequence, self.hash)
    }
}

/// How a persistent actor starts.
enum Start<Args, Restored> {
    Fresh(Args),
    /// The decoded snapshot's arguments, its sequence number and payload hash.
    Restored(Restored, u64, u128),
}

/// The spawn paths of [`PersistentSpawnExt`], for both context types.
trait PersistentSpawner: Spawner {
    /// The owner identity of this tree in the storage.
    fn owner(&self) -> OwnerId {
        OwnerId::from_uuid(self.registry().instance)
    }

    /// Reserves `id` here, then claims it in the storage.
    async fn activate<S: PersistentStorage>(
        &self,
        storage: &S,
        id: ActorId,
        mode: ClaimMode,
    ) -> Result<(Reservation, Activation), PersistenceError> {
        let reservation = self
            .reserve(id)
            .ok_or(PersistenceError::AlreadyRunning(id))?;
        let activation = Activation::claim(storage, id, self.owner(), mode).await?;
        Ok((reservation, activation))
    }

    /// Starts the actor of an activation from `start`.
    fn start<A, S, Args>(
        &self,
        storage: &S,
        reservation: Reservation,
        activation: Activation,
        start: Start<Args, A::ActorArgs>,
        runtime_args: A::RuntimeArgs,
        link: Option<VirtualLink>,
    ) -> Result<ActorRef<A>, PersistenceError>
    where
        A: PersistentActor,
        S: PersistentStorage,
        Args: ActorArgs<Actor = A>,
    {
        check_type_id::<A>(activation.id)?;
        let (sequence, saved) = match &start {
            Start::Fresh(_) => (0, None),
            Start::Restored(_, sequence, hash) => (*sequence, Some(*hash)),
        };
        let state = Arc::new(activation.into_state(sequence, saved));
        let auto = auto_save::<A, S>(storage, &state)?;
        let attachment = Some(Arc::clone(&state) as Arc<dyn crate::attachment::Attachment>);
        let site = self.site();
        let id = Id::Reserved(reservation);
        Ok(match start {
            Start::Fresh(args) => site.spawn(
                id,
                PersistHooks::<A, Args>::new(args, false, runtime_args, state, auto, link),
                attachment,
            ),
            Start::Restored(args, ..) => site.spawn(
                id,
                PersistHooks::<A, A::ActorArgs>::new(args, true, runtime_args, state, auto, link),
                attachment,
            ),
        })
    }
}

impl<C: Spawner> PersistentSpawner for C {}

/// Refuses a persistent actor type whose `TYPE_ID` another type already uses in
/// this process: their snapshots could not be told apart.
fn check_type_id<A: PersistentActor>(id: ActorId) -> Result<(), PersistenceError> {
    static TYPES: std::sync::OnceLock<std::sync::RwLock<HashMap<uuid::Uuid, &'static str>>> =
        std::sync::OnceLock::new();
    let types = TYPES.get_or_init(Default::default);
    let name = std::any::type_name::<A>();
    let known = types
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(&A::TYPE_ID)
        .copied();
    let first = match known {
        Some(first) => first,
        None => *types
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(A::TYPE_ID)
            .or_insert(name),
    };
    if first != name {
        return Err(PersistenceError::DuplicateTypeId {
            id,
            type_id: A::TYPE_ID,
            first,
            second: name,
        });
    }
    Ok(())
}

/// The claim mode a storage handle asks for ([`SharedStorage::with_claim_mode`]).
fn claim_mode<S: PersistentStorage>(storage: &S) -> ClaimMode {
    storage
        .shared()
        .and_then(|s| s.claim_mode())
        .unwrap_or_default()
}

/// The activation of a virtual actor: restored, or fresh from `fresh()`, with its
/// hooks linked to its handle.
pub(crate) async fn spawn_virtual<A: PersistentActor>(
    root: &RootContext,
    storage: &SharedStorage,
    id: ActorId,
    mode: ClaimMode,
    runtime_args: A::RuntimeArgs,
    fresh: impl FnOnce() -> A::ActorArgs,
    link: VirtualLink,
) -> Result<ActorRef<A>, PersistenceError> {
    let (reservation, mut activation) = root.activate(storage, id, mode).await?;
    let (activation, start) = match activation.snapshot.take() {
        Some(bytes) => {
            let (activation, restored) = restored::<A>(activation, &bytes, &runtime_args).await?;
            (activation, restored.start())
        }
        None => (activation, Start::Fresh(fresh())),
    };
    root.start::<A, SharedStorage, A::ActorArgs>(
        storage,
        reservation,
        activation,
        start,
        runtime_args,
        Some(link),
    )
}

/// Runs `futures` on the calling task, at most `limit` at a time; their outputs,
/// in order.
pub(crate) async fn bounded<F: Future>(futures: Vec<F>, limit: usize) -> Vec<F::Output> {
    let limit = limit.max(1);
    let mut waiting = futures.into_iter().enumerate();
    let mut running: Vec<(usize, std::pin::Pin<Box<F>>)> = Vec::new();
    let mut outputs: Vec<Option<F::Output>> = Vec::new();
    outputs.resize_with(waiting.len(), || None);
    std::future::poll_fn(|cx| {
        loop {
            while running.len() < limit {
                match waiting.next() {
                    Some((i, fut)) => running.push((i, Box::pin(fut))),
                    None => break,
                }
            }
            let mut progressed = false;
            running.retain_mut(|(i, fut)| match fut.as_mut().poll(cx) {
                std::task::Poll::Ready(out) => {
                    outputs[*i] = Some(out);
                    progressed = true;
                    false
                }
                std::task::Poll::Pending => true,
            });
            if running.is_empty() && waiting.len() == 0 {
                return std::task::Poll::Ready(());
            }
            if !progressed {
                return std::task::Poll::Pending;
            }
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Decodes a claimed snapshot (once) into the restored actor's arguments.
async fn restored<A: PersistentActor>(
    activation: Activation,
    bytes: &[u8],
    runtime_args: &A::RuntimeArgs,
) -> Result<(Activation, Restored<A::ActorArgs>), PersistenceError> {
    match decode::<A>(activation.id, bytes) {
        Ok((snapshot, sequence)) => Ok((
            activation,
            Restored {
                args: A::persistent_args(snapshot, runtime_args.clone()),
                sequence,
                hash: payload_hash(bytes),
            },
        )),
        Err(err) => {
            activation.abandon().await;
            Err(err)
        }
    }
}

impl<C: Spawner + sealed::Sealed + Sync> PersistentSpawnExt for C {
    async fn spawn_persistent<S, Args>(
        &self,
        storage: &S,
        id: ActorId,
        args: Args,
    ) -> Result<ActorRef<Args::Actor>, PersistenceError>
    where
        S: PersistentStorage,
        Args: ActorArgs,
        Args::Actor: PersistentActor,
        <Args::Actor as PersistentActor>::RuntimeArgs: Default,
    {
        let (reservation, mut activation) = self.activate(storage, id, claim_mode(storage)).await?;
        if activation.snapshot.take().is_some() {
            activation.abandon().await;
            return Err(PersistenceError::SnapshotExists(id));
        }
        self.start::<Args::Actor, S, Args>(
            storage,
            reservation,
            activation,
            Start::Fresh(args),
            Default::default(),
            None,
        )
    }

    async fn respawn<S, A>(
        &self,
        storage: &S,
        id: ActorId,
        runtime_args: A::RuntimeArgs,
    ) -> Result<ActorRef<A>, PersistenceError>
    where
        S: PersistentStorage,
        A: PersistentActor,
    {
        let (reservation, mut activation) = self.activate(storage, id, claim_mode(storage)).await?;
        let Some(bytes) = activation.snapshot.take() else {
            activation.abandon().await;
            return Err(PersistenceError::NotFound(id));
        };
        let (activation, restored) = restored::<A>(activation, &bytes, &runtime_args).await?;
        drop(bytes);
        self.start::<A, S, A::ActorArgs>(
            storage,
            reservation,
            activation,
            restored.start(),
            runtime_args,
            None,
        )
    }

    async fn respawn_or<S, Args, R, D>(
        &self,
        storage: &S,
        id: ActorId,
        runtime_args: R,
        default_args: D,
    ) -> Result<ActorRef<Args::Actor>, PersistenceError>
    where
        S: PersistentStorage,
        Args: ActorArgs,
        Args::Actor: PersistentActor,
        R: FnOnce() -> <Args::Actor as PersistentActor>::RuntimeArgs + Send,
        D: FnOnce() -> Args + Send,
    {
        let (reservation, mut activation) = self.activate(storage, id, claim_mode(storage)).await?;
        match activation.snapshot.take() {
            Some(bytes) => {
                let runtime_args = runtime_args();
                let (activation, restored) =
                    restored::<Args::Actor>(activation, &bytes, &runtime_args).await?;
                drop(bytes);
                self.start::<Args::Actor, S, Args>(
                    storage,
                    reservation,
                    activation,
                    restored.start(),
                    runtime_args,
                    None,
                )
            }
            None => self.start::<Args::Actor, S, Args>(
                storage,
                reservation,
                activation,
                Start::Fresh(default_args()),
                runtime_args(),
                None,
            ),
        }
    }

    async fn delete_snapshot<S>(&self, storage: &S, id: ActorId) -> Result<(), PersistenceError>
    where
        S: PersistentStorage,
    {
        // Holding the id keeps anyone from respawning it while the delete runs,
        // here and (through the claim) in other instances on the same store.
        let (_reservation, mut activation) = match self
            .activate(storage, id, claim_mode(storage))
            .await
        {
            Ok(activated) => activated,
            Err(PersistenceError::AlreadyRunning(id)) => return Err(PersistenceError::Running(id)),
            Err(err) => return Err(err),
        };
        activation.snapshot = None;
        let deleted = storage
            .try_delete(id)
            .await
            .map_err(|source| PersistenceError::Delete { id, source });
        activation.abandon().await;
        deleted
    }

    async fn respawn_all_or<S, Args, R, D>(
        &self,
        storage: &S,
        ids: &[ActorId],
        parallelism: usize,
        runtime_args: R,
        default_args: D,
    ) -> Vec<Result<ActorRef<Args::Actor>, PersistenceError>>
    where
        S: PersistentStorage,
        Args: ActorArgs,
        Args::Actor: PersistentActor,
        R: Fn(ActorId) -> <Args::Actor as PersistentActor>::RuntimeArgs + Send + Sync,
        D: Fn(ActorId) -> Args + Send + Sync,
    {
        let (runtime_args, default_args) = (&runtime_args, &default_args);
        let spawns = ids
            .iter()
            .map(|&id| {
                self.respawn_or(
                    storage,
                    id,
                    move || runtime_args(id),
                    move || default_args(id),
                )
            })
            .collect();
        bounded(spawns, parallelism).await
    }

    async fn respawn_all<S, A, R>(
        &self,
        storage: &S,
        ids: &[ActorId],
        parallelism: usize,
        runtime_args: R,
    ) -> Vec<Result<ActorRef<A>, PersistenceError>>
    where
        S: PersistentStorage,
        A: PersistentActor,
        R: Fn(ActorId) -> A::RuntimeArgs + Send + Sync,
    {
        let runtime_args = &runtime_args;
        let spawns = ids
            .iter()
            .map(|&id| self.respawn::<S, A>(storage, id, runtime_args(id)))
            .collect();
        bounded(spawns, parallelism).await
    }

    async fn forget<S, A>(&self, storage: &S, actor: ActorRef<A>) -> Result<(), PersistenceError>
    where
        S: PersistentStorage,
        A: PersistentActor,
    {
        let id = actor.id();
        let weak = actor.downgrade();
        actor.stop();
        drop(actor);
        weak.stopped().await;
        self.delete_snapshot(storage, id).await
    }
}

/// Saving a snapshot by hand, and the ownership epoch, from inside the actor.
pub trait PersistentContextExt<A: PersistentActor> {
    /// Encodes `state`'s snapshot with the next sequence number and writes it.
    /// `Ok` means the storage acknowledged it; a later restart restores it.
    ///
    /// If the storage refuses it as [`PersistenceError::Fenced`] (another
    /// instance owns the id now), the actor also stops, with
    /// [`ExitReason::Fenced`](crate::ExitReason::Fenced).
    fn save_snapshot<S: PersistentStorage>(
        &self,
        storage: &S,
        state: &A,
    ) -> impl Future<Output = Result<(), PersistenceError>> + Send;

    /// The owner epoch of this activation: every snapshot it writes carries it,
    /// and the storage refuses writes of older epochs. Hand it to external
    /// systems as a fencing token (an outbox row, an idempotency key) so they can
    /// refuse a stale instance too ([an example](super::ClaimMode#fencing-side-effects)).
    /// `None` if the actor was not activated by a persistent spawn, or its
    /// storage cannot fence.
    fn owner_epoch(&self) -> Option<u64>;
}

impl<A: PersistentActor + Sync> PersistentContextExt<A> for Context<A> {
    async fn save_snapshot<S: PersistentStorage>(
        &self,
        storage: &S,
        state: &A,
    ) -> Result<(), PersistenceError> {
        match state_or_init(self) {
            Some(persist) => save_now(persist, storage, state).await,
            None => Err(PersistenceError::Encode {
                id: self.id(),
                message: "this actor's context carries another layer's state".into(),
            }),
        }
    }

    fn owner_epoch(&self) -> Option<u64> {
        state_of(self)
            .map(PersistState::epoch)
            .filter(|epoch| *epoch > 0)
    }
}
