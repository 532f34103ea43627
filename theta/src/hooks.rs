//! The seam between the core and the layers above it: [`Hooks`], set at spawn,
//! decide how an actor is built and run around its turns, and an
//! [`Attachment`](crate::attachment::Attachment) gives its handlers (through their
//! context) and its replies the same layer's per-actor state.
//!
//! Plain actors use [`FromArgs`], whose hooks are empty and compile away. The
//! persistence layer implements both faces (`persistence::activation`): restore
//! from a snapshot, save after turns, hold replies until their snapshot is
//! durable, release the id's ownership at the end. The core never names it.

use std::future::Future;

use crate::actor::{Actor, ActorArgs, Context};
use crate::supervision::ExitReason;

/// What a layer adds to one actor's task, at fixed points of its life.
pub(crate) trait Hooks<A: Actor>: Send + 'static {
    /// Builds (or rebuilds after a restart) the actor. `Err` is a failure with a
    /// message, supervised like a panic.
    fn init(&mut self, ctx: &Context<A>) -> impl Future<Output = Result<A, String>> + Send;

    /// After each handler that returned normally, before the next item.
    fn after_turn(&mut self, actor: &A, ctx: &Context<A>) {
        let _ = (actor, ctx);
    }

    /// On a [`Signal::Wake`](crate::cell::Signal::Wake) carrying `token` (what it
    /// means is the layer's: a timer, a request to passivate). Runs after every
    /// item queued before the signal; `Some(reason)` stops the actor gracefully
    /// with that reason.
    fn on_wake(
        &mut self,
        actor: &mut A,
        ctx: &Context<A>,
        token: u64,
    ) -> impl Future<Output = Option<ExitReason>> + Send {
        let _ = (actor, ctx, token);
        async { None }
    }

    /// Before re-initializing after a failure.
    fn before_restart(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// After `on_exit` returned normally on a graceful stop.
    fn on_graceful_stop(&mut self, actor: &A, ctx: &Context<A>) {
        let _ = (actor, ctx);
    }

    /// The last step before the id is released (finish pending writes), with
    /// the reason the actor stopped.
    fn finish(&mut self, reason: &ExitReason) -> impl Future<Output = ()> + Send {
        let _ = reason;
        async {}
    }

    /// After the exit is visible: the id is free again (it may be spawned anew)
    /// and `stopped()` has returned. Not called for an aborted task.
    fn exited(&mut self) {}
}

/// Builds the actor from its (kept) arguments: a plain actor.
pub(crate) struct FromArgs<B>(pub(crate) B);

impl<B: ActorArgs> Hooks<B::Actor> for FromArgs<B> {
    async fn init(&mut self, ctx: &Context<B::Actor>) -> Result<B::Actor, String> {
        Ok(B::initialize(ctx.clone(), &self.0).await)
    }
}
