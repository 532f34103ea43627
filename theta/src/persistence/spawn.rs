//! Spawning persistent actors ([`PersistentSpawnExt`]) and saving them by hand
//! ([`PersistentContextExt`]).

use std::future::Future;
use std::sync::Arc;

use crate::actor::{ActorArgs, ActorId};
use crate::actor_ref::ActorRef;
use crate::context::{Context, SpawnerImpl};

use super::error::is_not_found;
use super::runtime::{AutoSave, ClaimHandle, PersistDriver, PersistState, save_now};
use super::snapshot::decode_snapshot as decode;
use super::{
    Claim, ClaimMode, OwnedElsewhere, OwnerId, PersistenceError, PersistentActor,
    PersistentStorage, Unsupported,
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

/// An id activated in the storage: its claim (if the storage fences) and the
/// snapshot read under it.
struct Activation {
    epoch: u64,
    claim: Option<ClaimHandle>,
    snapshot: Option<Vec<u8>>,
}

impl Activation {
    /// The persistence state of the actor this activation starts.
    fn into_state(self, id: ActorId, sequence: u64, recovered: Option<Vec<u8>>) -> PersistState {
        PersistState::owned(id, self.epoch, self.claim, sequence, recovered)
    }

    /// Gives the claim back (the activation did not start an actor).
    async fn abandon(self, id: ActorId) {
        if let Some(ClaimHandle { storage, owner }) = self.claim {
            let _ = storage.try_release(id, owner, self.epoch).await;
        }
    }
}

/// Claims `id` for `owner` and reads its snapshot; on a storage that cannot fence
/// (the claim is [`Unsupported`]), only reads it.
async fn activate<S: PersistentStorage>(
    storage: &S,
    id: ActorId,
    owner: OwnerId,
) -> Result<Activation, PersistenceError> {
    match storage.try_claim(id, owner, ClaimMode::Exclusive).await {
        Ok(Claim { epoch, snapshot }) => Ok(Activation {
            epoch,
            claim: storage
                .shared()
                .map(|storage| ClaimHandle { storage, owner }),
            snapshot,
        }),
        Err(err) if err.is::<Unsupported>() => {
            let snapshot = match storage.try_read(id).await {
                Ok(bytes) => Some(bytes),
                Err(err) if is_not_found(&err) => None,
                Err(source) => return Err(PersistenceError::Read { id, source }),
            };
            Ok(Activation {
                epoch: 0,
                claim: None,
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

enum Start<A: PersistentActor, Args> {
    Fresh(Args),
    Restored(A::ActorArgs),
}

/// The owner identity of a context's tree in the storage.
trait Owner {
    fn owner(&self) -> OwnerId;
}

impl<C: SpawnerImpl> Owner for C {
    fn owner(&self) -> OwnerId {
        OwnerId::from_uuid(self.instance())
    }
}

impl<C: SpawnerImpl + sealed::Sealed + Sync> PersistentSpawnExt for C {
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
        let reservation = self
            .reserve(id)
            .ok_or(PersistenceError::AlreadyRunning(id))?;
        let activation = activate(storage, id, self.owner()).await?;
        if activation.snapshot.is_some() {
            activation.abandon(id).await;
            return Err(PersistenceError::SnapshotExists(id));
        }
        let state = Arc::new(activation.into_state(id, 0, None));
        let auto = auto_save::<Args::Actor, S>(storage, id, &state)?;
        Ok(self.spawn_site().spawn(
            reservation,
            PersistDriver::<Args::Actor, Args> {
                initial: args,
                runtime_args: Default::default(),
                state: Arc::clone(&state),
                auto,
            },
            Some(state),
        ))
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
        let reservation = self
            .reserve(id)
            .ok_or(PersistenceError::AlreadyRunning(id))?;
        let mut activation = activate(storage, id, self.owner()).await?;
        let Some(bytes) = activation.snapshot.take() else {
            activation.abandon(id).await;
            return Err(PersistenceError::NotFound(id));
        };
        let (snapshot, sequence) = match decode::<A>(id, &bytes) {
            Ok(decoded) => decoded,
            Err(err) => {
                activation.abandon(id).await;
                return Err(err);
            }
        };
        let args = A::persistent_args(snapshot, runtime_args.clone());
        let state = Arc::new(activation.into_state(id, sequence, Some(bytes)));
        let auto = auto_save::<A, S>(storage, id, &state)?;
        Ok(self.spawn_site().spawn(
            reservation,
            PersistDriver::<A, A::ActorArgs> {
                initial: args,
                runtime_args,
                state: Arc::clone(&state),
                auto,
            },
            Some(state),
        ))
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
        let reservation = self
            .reserve(id)
            .ok_or(PersistenceError::AlreadyRunning(id))?;
        let mut activation = activate(storage, id, self.owner()).await?;
        let (start, state) = match activation.snapshot.take() {
            Some(bytes) => {
                let (snapshot, sequence) = match decode::<Args::Actor>(id, &bytes) {
                    Ok(decoded) => decoded,
                    Err(err) => {
                        activation.abandon(id).await;
                        return Err(err);
                    }
                };
                let runtime_args = runtime_args();
                let args = <Args::Actor as PersistentActor>::persistent_args(
                    snapshot,
                    runtime_args.clone(),
                );
                (
                    (Start::<Args::Actor, Args>::Restored(args), runtime_args),
                    activation.into_state(id, sequence, Some(bytes)),
                )
            }
            None => (
                (Start::Fresh(default_args()), runtime_args()),
                activation.into_state(id, 0, None),
            ),
        };
        let state = Arc::new(state);
        let auto = auto_save::<Args::Actor, S>(storage, id, &state)?;
        let site = self.spawn_site();
        let ((start, runtime_args), persist) = (start, Some(Arc::clone(&state)));
        Ok(match start {
            Start::Fresh(initial) => site.spawn(
                reservation,
                PersistDriver::<Args::Actor, Args> {
                    initial,
                    runtime_args,
                    state,
                    auto,
                },
                persist,
            ),
            Start::Restored(initial) => site.spawn(
                reservation,
                PersistDriver::<Args::Actor, <Args::Actor as PersistentActor>::ActorArgs> {
                    initial,
                    runtime_args,
                    state,
                    auto,
                },
                persist,
            ),
        })
    }

    async fn delete_snapshot<S>(&self, storage: &S, id: ActorId) -> Result<(), PersistenceError>
    where
        S: PersistentStorage,
    {
        // Holding the id keeps anyone from respawning it while the delete runs,
        // here and (through the claim) in other instances on the same store.
        let _reservation = self.reserve(id).ok_or(PersistenceError::Running(id))?;
        let activation = activate(storage, id, self.owner()).await?;
        let deleted = storage
            .try_delete(id)
            .await
            .map_err(|source| PersistenceError::Delete { id, source });
        activation.abandon(id).await;
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

/// The automatic-save machinery for a new persistent actor, if its effective policy
/// is not manual.
fn auto_save<A: PersistentActor, S: PersistentStorage>(
    storage: &S,
    id: ActorId,
    state: &Arc<PersistState>,
) -> Result<Option<AutoSave>, PersistenceError> {
    let shared = storage.shared();
    let policy = shared
        .as_ref()
        .and_then(|s| s.policy())
        .unwrap_or_else(A::snapshot_policy);
    if policy.is_manual() {
        return Ok(None);
    }
    let shared = shared.ok_or(PersistenceError::NeedsSharedStorage(id))?;
    Ok(Some(AutoSave::start(policy, shared, Arc::clone(state))))
}

/// Saving a snapshot by hand, from inside the actor.
pub trait PersistentContextExt<A: PersistentActor> {
    /// Encodes `state`'s snapshot with the next sequence number and writes it.
    /// `Ok` means the storage acknowledged it; a later restart restores it.
    fn save_snapshot<S: PersistentStorage>(
        &self,
        storage: &S,
        state: &A,
    ) -> impl Future<Output = Result<(), PersistenceError>> + Send;
}

impl<A: PersistentActor + Sync> PersistentContextExt<A> for Context<A> {
    async fn save_snapshot<S: PersistentStorage>(
        &self,
        storage: &S,
        state: &A,
    ) -> Result<(), PersistenceError> {
        let persist = self
            .persist_slot()
            .get_or_init(|| Arc::new(PersistState::new(self.id(), 0, None)));
        save_now(persist, storage, state).await
    }
}
