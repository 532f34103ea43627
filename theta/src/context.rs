//! [`Context`] (an actor's view of the runtime) and [`RootContext`] (the owner of a
//! tree of actors).

use std::any::{Any, type_name};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::actor::{Actor, ActorArgs, ActorId};
use crate::actor_ref::{ActorRef, WeakActorRef};
use crate::error::{ShutdownError, SpawnError};
use crate::runtime::{
    ActorCell, ArgsDriver, Node, ParentLink, Reservation, Signal, SpawnSite, System,
};
use crate::supervision::{Failure, FailureCause, FailurePhase};

/// An actor's handle to itself and to the runtime, passed to every handler and hook.
///
/// Cheap to clone. Children spawned through it are supervised by this actor and
/// stopped before it stops.
pub struct Context<A: Actor> {
    inner: Arc<ContextInner<A>>,
}

struct ContextInner<A: Actor> {
    cell: Arc<ActorCell<A>>,
    system: Arc<System>,
    parent: Option<Arc<dyn ParentLink>>,
    children: Node,
    stop: AtomicBool,
    #[cfg(feature = "persistence")]
    persist: std::sync::OnceLock<Arc<crate::persistence::runtime::PersistState>>,
}

impl<A: Actor> Clone for Context<A> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<A: Actor> fmt::Debug for Context<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("id", &self.id())
            .field("actor", &type_name::<A>())
            .finish()
    }
}

impl<A: Actor> Context<A> {
    pub(crate) fn new(
        cell: Arc<ActorCell<A>>,
        system: Arc<System>,
        parent: Option<Arc<dyn ParentLink>>,
        #[cfg(feature = "persistence")] persist: Option<
            Arc<crate::persistence::runtime::PersistState>,
        >,
    ) -> Self {
        Self {
            inner: Arc::new(ContextInner {
                cell,
                system,
                parent,
                children: Node::default(),
                stop: AtomicBool::new(false),
                #[cfg(feature = "persistence")]
                persist: persist.map(std::sync::OnceLock::from).unwrap_or_default(),
            }),
        }
    }

    /// This actor's id.
    pub fn id(&self) -> ActorId {
        self.inner.cell.id
    }

    /// A weak handle to this actor; it does not keep the actor alive.
    pub fn this(&self) -> WeakActorRef<A> {
        WeakActorRef::new(self.inner.cell.weak_sender(), Arc::clone(&self.inner.cell))
    }

    /// A [`RootContext`] for the tree this actor lives in: actors spawned through it
    /// are top-level, not children of this actor.
    pub fn root(&self) -> RootContext {
        RootContext {
            system: Arc::clone(&self.inner.system),
        }
    }

    /// Spawns a child with a fresh id. The child is supervised by this actor and is
    /// stopped before this actor stops or restarts.
    pub fn spawn<B: ActorArgs>(&self, args: B) -> ActorRef<B::Actor> {
        let reservation = self.inner.system.reserve_new();
        self.site().spawn(
            reservation,
            ArgsDriver(args),
            #[cfg(feature = "persistence")]
            None,
        )
    }

    /// Spawns a child under the given id; fails if an actor with that id is live.
    pub fn spawn_with_id<B: ActorArgs>(
        &self,
        id: ActorId,
        args: B,
    ) -> Result<ActorRef<B::Actor>, SpawnError> {
        let reservation = self
            .inner
            .system
            .reserve(id)
            .ok_or(SpawnError::AlreadyRunning(id))?;
        Ok(self.site().spawn(
            reservation,
            ArgsDriver(args),
            #[cfg(feature = "persistence")]
            None,
        ))
    }

    /// Stops this actor after the current handler returns; messages still queued are
    /// dropped (their asks fail). Safe to call from inside a handler: it only sets a
    /// flag and never waits. From outside a handler, the actor stops after the items
    /// already queued, like [`ActorRef::stop`].
    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        self.inner.cell.send_signal(Signal::Stop);
    }

    pub(crate) fn stop_flag(&self) -> bool {
        self.inner.stop.load(Ordering::Relaxed)
    }

    pub(crate) fn cell(&self) -> &Arc<ActorCell<A>> {
        &self.inner.cell
    }

    pub(crate) fn system(&self) -> &Arc<System> {
        &self.inner.system
    }

    pub(crate) fn parent(&self) -> Option<&Arc<dyn ParentLink>> {
        self.inner.parent.as_ref()
    }

    pub(crate) fn children(&self) -> &Node {
        &self.inner.children
    }

    #[cfg(feature = "persistence")]
    pub(crate) fn persist_slot(
        &self,
    ) -> &std::sync::OnceLock<Arc<crate::persistence::runtime::PersistState>> {
        &self.inner.persist
    }

    pub(crate) fn site(&self) -> SpawnSite<'_> {
        SpawnSite {
            system: &self.inner.system,
            parent: Some(Arc::clone(&self.inner.cell) as Arc<dyn ParentLink>),
            node: &self.inner.children,
        }
    }

    pub(crate) fn failure(&self, phase: FailurePhase, cause: FailureCause) -> Failure {
        Failure::new(self.id(), type_name::<A>(), phase, cause)
    }

    pub(crate) fn failure_from_panic(
        &self,
        phase: FailurePhase,
        payload: &(dyn Any + Send),
    ) -> Failure {
        Failure::from_panic(self.id(), type_name::<A>(), phase, payload)
    }
}

/// Owns a tree of actors: spawns top-level actors and shuts the tree down.
///
/// Cheap to clone; clones share the tree. Must be used inside a Tokio runtime.
///
/// ```
/// use std::time::Duration;
/// use theta::prelude::*;
///
/// #[derive(Debug, Clone, ActorArgs)]
/// struct Counter { value: i64 }
///
/// #[derive(Debug)]
/// struct Add(i64);
///
/// #[actor("0b5cbd57-7f79-4b0e-8a2e-2a3d1c5b0001")]
/// impl Actor for Counter {
///     const _: () = {
///         async |Add(n): Add| -> i64 {
///             self.value += n;
///             self.value
///         };
///     };
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let root = RootContext::default();
/// let counter = root.spawn(Counter { value: 0 });
/// counter.tell(Add(1))?;
/// assert_eq!(counter.ask(Add(2)).await?, 3);
/// root.shutdown(Duration::from_secs(5)).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct RootContext {
    system: Arc<System>,
}

impl fmt::Debug for RootContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootContext").finish_non_exhaustive()
    }
}

impl RootContext {
    /// Spawns a top-level actor with a fresh id. A panic in it stops it (there is no
    /// parent to decide otherwise) and is reported as a `tracing` error event.
    pub fn spawn<B: ActorArgs>(&self, args: B) -> ActorRef<B::Actor> {
        let reservation = self.system.reserve_new();
        self.site().spawn(
            reservation,
            ArgsDriver(args),
            #[cfg(feature = "persistence")]
            None,
        )
    }

    /// Spawns a top-level actor under the given id; fails if an actor with that id is
    /// live in this tree.
    pub fn spawn_with_id<B: ActorArgs>(
        &self,
        id: ActorId,
        args: B,
    ) -> Result<ActorRef<B::Actor>, SpawnError> {
        let reservation = self
            .system
            .reserve(id)
            .ok_or(SpawnError::AlreadyRunning(id))?;
        Ok(self.site().spawn(
            reservation,
            ArgsDriver(args),
            #[cfg(feature = "persistence")]
            None,
        ))
    }

    /// Stops every actor, children before their parents, and waits for them.
    ///
    /// Each actor handles the messages queued before the stop, runs `on_exit` and
    /// finishes its pending snapshot writes. Actors still running when `timeout`
    /// elapses are aborted (without `on_exit`) and listed in the error.
    pub async fn shutdown(&self, timeout: Duration) -> Result<(), ShutdownError> {
        for actor in self.system.top.take() {
            actor.request_stop();
        }
        if tokio::time::timeout(timeout, self.system.drained())
            .await
            .is_ok()
        {
            return Ok(());
        }
        let mut not_stopped = self.system.abort_all();
        not_stopped.sort();
        Err(ShutdownError {
            not_stopped,
            timeout,
        })
    }

    /// Whether an actor with this id is live (or being spawned) in this tree.
    pub fn is_live(&self, id: ActorId) -> bool {
        self.system.is_live(id)
    }

    pub(crate) fn site(&self) -> SpawnSite<'_> {
        SpawnSite {
            system: &self.system,
            parent: None,
            node: &self.system.top,
        }
    }
}

/// Gives the persistence extension one spawning path for both context types.
pub(crate) trait SpawnerImpl {
    fn spawn_site(&self) -> SpawnSite<'_>;
    fn reserve(&self, id: ActorId) -> Option<Reservation>;
    fn instance(&self) -> uuid::Uuid;
}

impl SpawnerImpl for RootContext {
    fn spawn_site(&self) -> SpawnSite<'_> {
        self.site()
    }

    fn instance(&self) -> uuid::Uuid {
        self.system.instance
    }

    fn reserve(&self, id: ActorId) -> Option<Reservation> {
        self.system.reserve(id)
    }
}

impl<A: Actor> SpawnerImpl for Context<A> {
    fn spawn_site(&self) -> SpawnSite<'_> {
        self.site()
    }

    fn reserve(&self, id: ActorId) -> Option<Reservation> {
        self.inner.system.reserve(id)
    }

    fn instance(&self) -> uuid::Uuid {
        self.inner.system.instance
    }
}
