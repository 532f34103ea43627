//! Spawning persistent actors ([`PersistentSpawnExt`]) and saving them by hand
//! ([`PersistentContextExt`]).

use std::future::Future;
use std::sync::Arc;

use crate::actor::{ActorArgs, Context};
use crate::actor_ref::ActorRef;
use crate::id::ActorId;
use crate::registry::Reservation;
use crate::spawn::{Id, Spawner};

use super::activation::{Activated, PersistHooks, PersistState, save_now, state_of, state_or_init};
use super::errors::is_not_found;
use super::snapshot::decode_snapshot as decode;
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

    /// The persistence state of the actor this activation starts.
    fn into_state(mut self, sequence: u64) -> PersistState {
        PersistState::new(
            self.id,
            Activated {
                epoch: self.epoch,
                owner: self.owner.take(),
                storage: self.storage.take(),
                sequence,
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

/// How a persistent actor starts.
enum Start<Args, Restored> {
    Fresh(Args),
    Restored(Restored, u64),
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
    ) -> Result<(Reservation, Activation), PersistenceError> {
        let reservation = self
            .reserve(id)
            .ok_or(PersistenceError::AlreadyRunning(id))?;
        let activation = Activation::claim(storage, id, self.owner(), ClaimMode::Exclusive).await?;
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
    ) -> Result<ActorRef<A>, PersistenceError>
    where
        A: PersistentActor,
        S: PersistentStorage,
        Args: ActorArgs<Actor = A>,
    {
        let sequence = match &start {
            Start::Fresh(_) => 0,
            Start::Restored(_, sequence) => *sequence,
        };
        let state = Arc::new(activation.into_state(sequence));
        let auto = auto_save::<A, S>(storage, &state)?;
        let attachment = Some(Arc::clone(&state) as Arc<dyn crate::attachment::Attachment>);
        let site = self.site();
        let id = Id::Reserved(reservation);
        Ok(match start {
            Start::Fresh(args) => site.spawn(
                id,
                PersistHooks::<A, Args>::new(args, false, runtime_args, state, auto),
                attachment,
            ),
            Start::Restored(args, _) => site.spawn(
                id,
                PersistHooks::<A, A::ActorArgs>::new(args, true, runtime_args, state, auto),
                attachment,
            ),
        })
    }
}

impl<C: Spawner> PersistentSpawner for C {}

/// Decodes a claimed snapshot (once) into the restored actor's arguments.
async fn restored<A: PersistentActor>(
    activation: Activation,
    bytes: &[u8],
    runtime_args: &A::RuntimeArgs,
) -> Result<(Activation, A::ActorArgs, u64), PersistenceError> {
    match decode::<A>(activation.id, bytes) {
        Ok((snapshot, sequence)) => Ok((
            activation,
            A::persistent_args(snapshot, runtime_args.clone()),
            sequence,
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
        let (reservation, mut activation) = self.activate(storage, id).await?;
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
        let (reservation, mut activation) = self.activate(storage, id).await?;
        let Some(bytes) = activation.snapshot.take() else {
            activation.abandon().await;
            return Err(PersistenceError::NotFound(id));
        };
        let (activation, args, sequence) = restored::<A>(activation, &bytes, &runtime_args).await?;
        drop(bytes);
        self.start::<A, S, A::ActorArgs>(
            storage,
            reservation,
            activation,
            Start::Restored(args, sequence),
            runtime_args,
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
        let (reservation, mut activation) = self.activate(storage, id).await?;
        match activation.snapshot.take() {
            Some(bytes) => {
                let runtime_args = runtime_args();
                let (activation, args, sequence) =
                    restored::<Args::Actor>(activation, &bytes, &runtime_args).await?;
                drop(bytes);
                self.start::<Args::Actor, S, Args>(
                    storage,
                    reservation,
                    activation,
                    Start::Restored(args, sequence),
                    runtime_args,
                )
            }
            None => self.start::<Args::Actor, S, Args>(
                storage,
                reservation,
                activation,
                Start::Fresh(default_args()),
                runtime_args(),
            ),
        }
    }

    async fn delete_snapshot<S>(&self, storage: &S, id: ActorId) -> Result<(), PersistenceError>
    where
        S: PersistentStorage,
    {
        // Holding the id keeps anyone from respawning it while the delete runs,
        // here and (through the claim) in other instances on the same store.
        let (_reservation, mut activation) = match self.activate(storage, id).await {
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
    /// refuse a stale instance too. `None` if the actor was not activated by a
    /// persistent spawn, or its storage cannot fence.
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
