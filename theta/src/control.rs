//! The type-erased control surface of a live actor: its [`Lifecycle`] (stop
//! requested, exit reason), the [`Control`] trait the registry and parents hold
//! it by, and the [`Children`] of an actor.

use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{Notify, oneshot};

use crate::mailbox::lock;
use crate::supervision::{Decision, ExitReason, Failure};

/// Where an actor is in its life: whether a stop was requested, and why it
/// stopped once it has. Awaitable.
#[derive(Debug, Default)]
pub(crate) struct Lifecycle {
    exit: OnceLock<ExitReason>,
    /// The reason a stop was requested with, if not a plain stop (rare: boxed).
    requested: OnceLock<Box<ExitReason>>,
    stopping: AtomicBool,
    /// Told messages still queued when the actor stopped, dropped unhandled.
    unhandled: AtomicUsize,
    /// Wakes whoever waits for the exit or for a stop request.
    changed: Notify,
}

impl Lifecycle {
    /// Records the exit (once) and wakes the waiters.
    pub(crate) fn set_exit(&self, reason: ExitReason) {
        let _ = self.exit.set(reason);
        self.changed.notify_waiters();
    }

    /// Why the actor stopped, once it has.
    pub(crate) fn exit(&self) -> Option<&ExitReason> {
        self.exit.get()
    }

    /// Waits until the actor has stopped for good.
    pub(crate) async fn exited(&self) -> ExitReason {
        loop {
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            if let Some(reason) = self.exit.get() {
                return reason.clone();
            }
            changed.await;
        }
    }

    /// Records that `n` messages were dropped unhandled at the exit.
    pub(crate) fn count_unhandled(&self, n: usize) {
        self.unhandled.fetch_add(n, Ordering::Relaxed);
    }

    /// How many messages were dropped unhandled when the actor stopped.
    #[allow(dead_code)] // read by the layers above the core, which may be compiled out
    pub(crate) fn unhandled(&self) -> usize {
        self.unhandled.load(Ordering::Relaxed)
    }

    /// The reason the next stop ends the actor with.
    pub(crate) fn stop_reason(&self) -> ExitReason {
        self.requested
            .get()
            .map_or(ExitReason::Stopped, |reason| (**reason).clone())
    }

    /// Records `reason` for the requested stop (the first one wins).
    #[allow(dead_code)] // used by the layers above the core, which may be compiled out
    pub(crate) fn request_stop_with(&self, reason: ExitReason) {
        let _ = self.requested.set(Box::new(reason));
        self.request_stop();
    }

    /// Marks a graceful stop as requested.
    pub(crate) fn request_stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Waits until a stop is requested (a failed actor waiting for its
    /// supervisor's decision gives up waiting then).
    pub(crate) async fn stop_requested(&self) {
        loop {
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            changed.await;
        }
    }
}

/// A live actor, whatever its type: what the registry, a parent and shutdown
/// need.
pub(crate) trait Control: Send + Sync + 'static {
    /// The actor's lifecycle.
    fn lifecycle(&self) -> &Lifecycle;

    /// Graceful stop: the items queued before it first. Also ends a pending wait
    /// for a supervision decision, so a stopping parent never waits on itself.
    fn request_stop(&self);

    /// Aborts the actor's task (no `on_exit`).
    fn abort(&self);

    /// Stops the actor after its current handler with `reason`, dropping what is
    /// still queued (their asks fail), without supervision: a layer above the
    /// core decided it must not go on (its id was taken over, say).
    #[allow(dead_code)] // used by the layers above the core, which may be compiled out
    fn stop_with(&self, reason: ExitReason);
}

/// The erased link a child uses to ask its parent for a supervision decision.
pub(crate) trait ParentLink: Send + Sync + 'static {
    /// Queues the report on the parent; `false` if the parent has stopped.
    fn report_failure(&self, failure: Failure, decision: oneshot::Sender<Decision>) -> bool;
}

/// The children of an actor. Stopped ones are pruned when the list is full,
/// before it would grow, so it stays within twice the live children.
#[derive(Default)]
pub(crate) struct Children {
    live: Mutex<Vec<Arc<dyn Control>>>,
}

impl Children {
    pub(crate) fn add(&self, child: Arc<dyn Control>) {
        let mut live = lock(&self.live);
        if live.len() == live.capacity() {
            live.retain(|c| c.lifecycle().exit().is_none());
        }
        live.push(child);
    }

    /// Whether there is no child left to stop (stopped ones not yet pruned
    /// count).
    pub(crate) fn is_empty(&self) -> bool {
        lock(&self.live).is_empty()
    }

    /// Stops every child (each stops its own children first) and waits for all.
    pub(crate) async fn stop_all(&self) {
        let children = std::mem::take(&mut *lock(&self.live));
        for child in &children {
            child.request_stop();
        }
        for child in &children {
            child.lifecycle().exited().await;
        }
    }
}
