//! What a [`Context`] (an actor's view of the runtime) does, and [`RootContext`]
//! (the owner of a tree of actors).

use std::any::{Any, type_name};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::actor::{Actor, ActorArgs, Context};
use crate::actor_ref::{ActorRef, WeakActorRef};
use crate::attachment::Attachment;
use crate::control::ParentLink;
use crate::error::{ShutdownError, SpawnError};
use crate::hooks::FromArgs;
use crate::id::ActorId;
use crate::registry::Registry;
use crate::spawn::{Id, Site, Spawner};
use crate::supervision::{Failure, FailureCause, FailurePhase};

impl<A: Actor> Clone for Context<A> {
    fn clone(&self) -> Self {
        Self {
            cell: Arc::clone(&self.cell),
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
    /// This actor's id.
    pub fn id(&self) -> ActorId {
        self.cell.id
    }

    /// A weak handle to this actor; it does not keep the actor alive.
    pub fn this(&self) -> WeakActorRef<A> {
        WeakActorRef::new(Arc::clone(&self.cell))
    }

    /// A [`RootContext`] for the tree this actor lives in: actors spawned through it
    /// are top-level, not children of this actor.
    pub fn root(&self) -> RootContext {
        RootContext {
            registry: Arc::clone(&self.cell.registry),
        }
    }

    /// Spawns a child with a fresh id. The child is supervised by this actor and is
    /// stopped before this actor stops or restarts.
    pub fn spawn<B: ActorArgs>(&self, args: B) -> ActorRef<B::Actor> {
        spawn_args(self, args)
    }

    /// Spawns a child under the given id; fails if an actor with that id is live.
    pub fn spawn_with_id<B: ActorArgs>(
        &self,
        id: ActorId,
        args: B,
    ) -> Result<ActorRef<B::Actor>, SpawnError> {
        spawn_args_with_id(self, id, args)
    }

    /// Stops this actor after the current handler returns; messages still queued are
    /// dropped (their asks fail). Safe to call from inside a handler: it only sets a
    /// flag and never waits. From outside a handler, the actor stops after the items
    /// already queued, like [`ActorRef::stop`].
    pub fn stop(&self) {
        self.cell.stop_now();
    }

    /// The attachment of the layer that spawned this actor, if any.
    #[allow(dead_code)] // used by the layers above the core, which may be compiled out
    pub(crate) fn attachment(&self) -> Option<&Arc<dyn Attachment>> {
        self.cell.attachment.get()
    }

    /// The attachment, set to `init()` if there is none yet.
    #[allow(dead_code)] // used by the layers above the core, which may be compiled out
    pub(crate) fn attachment_or_init(
        &self,
        init: impl FnOnce() -> Arc<dyn Attachment>,
    ) -> &Arc<dyn Attachment> {
        self.cell.attachment.get_or_init(init)
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

impl<A: Actor> Spawner for Context<A> {
    fn site(&self) -> Site<'_> {
        Site {
            registry: &self.cell.registry,
            parent: Some((
                Arc::clone(&self.cell) as Arc<dyn ParentLink>,
                &self.cell.children,
            )),
        }
    }

    fn registry(&self) -> &Arc<Registry> {
        &self.cell.registry
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
    registry: Arc<Registry>,
}

impl fmt::Debug for RootContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootContext")
            .field("instance", &self.registry.instance)
            .finish_non_exhaustive()
    }
}

impl RootContext {
    /// Spawns a top-level actor with a fresh id. A panic in it stops it (there is no
    /// parent to decide otherwise) and is reported as a `tracing` error event.
    pub fn spawn<B: ActorArgs>(&self, args: B) -> ActorRef<B::Actor> {
        spawn_args(self, args)
    }

    /// Spawns a top-level actor under the given id; fails if an actor with that id is
    /// live in this tree.
    pub fn spawn_with_id<B: ActorArgs>(
        &self,
        id: ActorId,
        args: B,
    ) -> Result<ActorRef<B::Actor>, SpawnError> {
        spawn_args_with_id(self, id, args)
    }

    /// Stops every actor, children before their parents, and waits for them.
    ///
    /// Each actor handles the messages queued before the stop, runs `on_exit` and
    /// finishes its pending snapshot writes. Actors still running when `timeout`
    /// elapses are aborted (without `on_exit`) and listed in the error.
    pub async fn shutdown(&self, timeout: Duration) -> Result<(), ShutdownError> {
        for actor in self.registry.top_level() {
            actor.request_stop();
        }
        if tokio::time::timeout(timeout, self.registry.drained())
            .await
            .is_ok()
        {
            return Ok(());
        }
        let mut not_stopped = self.registry.abort_all();
        not_stopped.sort();
        Err(ShutdownError {
            not_stopped,
            timeout,
        })
    }

    /// Whether an actor with this id is live (or being spawned) in this tree.
    pub fn is_live(&self, id: ActorId) -> bool {
        self.registry.is_live(id)
    }
}

impl Spawner for RootContext {
    fn site(&self) -> Site<'_> {
        Site {
            registry: &self.registry,
            parent: None,
        }
    }

    fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }
}

/// `spawn(args)` of either context type.
fn spawn_args<B: ActorArgs>(spawner: &impl Spawner, args: B) -> ActorRef<B::Actor> {
    spawner.site().spawn(Id::Fresh, FromArgs(args), None)
}

/// `spawn_with_id(id, args)` of either context type.
fn spawn_args_with_id<B: ActorArgs>(
    spawner: &impl Spawner,
    id: ActorId,
    args: B,
) -> Result<ActorRef<B::Actor>, SpawnError> {
    let reservation = spawner.reserve(id).ok_or(SpawnError::AlreadyRunning(id))?;
    Ok(spawner
        .site()
        .spawn(Id::Reserved(reservation), FromArgs(args), None))
}
