//! [`ActorRef`], [`WeakActorRef`] and the [`Ask`] builder: how messages get to an
//! actor.
//!
//! `tell` wraps the message into the actor's mailbox enum and pushes it onto the
//! actor's unbounded channel; `ask` does the same with a one-shot reply slot and
//! waits on it.
//!
//! # Lifetime rule
//!
//! An actor lives while at least one strong [`ActorRef`] to it exists (or until it is
//! stopped). When the last strong ref is dropped, the actor handles what is already
//! in its mailbox, then stops with [`ExitReason::RefsDropped`] and runs `on_exit`.
//! [`WeakActorRef`]s, the actor's own [`Context`](crate::Context) and its parent do
//! not keep it alive.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Sleep;

use crate::actor::Actor;
use crate::cell::{ActorCell, Item, Signal};
use crate::control::Control;
use crate::error::{AskError, SendError};
use crate::id::ActorId;
use crate::message::{Message, Reply};
use crate::supervision::ExitReason;

/// A strong, typed handle to an actor: send it the messages it handles.
///
/// One pointer wide; cloning it counts one more strong ref.
pub struct ActorRef<A: Actor> {
    cell: Arc<ActorCell<A::Msg>>,
}

impl<A: Actor> ActorRef<A> {
    /// Wraps a cell whose ref count already includes this ref.
    pub(crate) fn from_cell(cell: Arc<ActorCell<A::Msg>>) -> Self {
        Self { cell }
    }

    /// The actor's id.
    pub fn id(&self) -> ActorId {
        self.cell.id
    }

    /// Sends a message without waiting for it to be handled.
    ///
    /// Messages from one sender are handled in the order they were sent. Fails only
    /// if the actor has stopped.
    pub fn tell<M: Message<A>>(&self, msg: M) -> Result<(), SendError> {
        self.cell
            .mailbox
            .push(Item::Msg(msg.into_msg(None)))
            .map_err(|_| SendError { id: self.id() })
    }

    /// Sends a message and waits for the handler's return value.
    ///
    /// Nothing is sent until the returned [`Ask`] is awaited. Add
    /// [`.timeout(d)`](Ask::timeout) to bound the wait.
    pub fn ask<M: Message<A>>(&self, msg: M) -> Ask<'_, A, M> {
        Ask {
            actor: self,
            msg,
            timeout: None,
        }
    }

    /// Asks the actor to stop after the messages already in its mailbox.
    pub fn stop(&self) {
        self.cell.signal(Signal::Stop);
    }

    /// Queues an already-wrapped message (a layer above the core buffers them):
    /// an ask's if `ask` (its sender learns if it is dropped unhandled); gives it
    /// back if the actor has stopped.
    #[allow(dead_code)] // used by the layers above the core, which may be compiled out
    pub(crate) fn push_msg(&self, msg: A::Msg, ask: bool) -> Result<(), A::Msg> {
        if ask {
            self.cell.mailbox.push_with(msg, Item::Ask)
        } else {
            self.cell.mailbox.push_with(msg, Item::Msg)
        }
    }

    /// Counts an ask sent through a layer above the core (a virtual actors
    /// handle) as waiting for its reply until the ticket is dropped.
    #[allow(dead_code)] // used by the layers above the core, which may be compiled out
    pub(crate) fn pending_ask(&self) -> PendingAsk<A::Msg> {
        self.cell
            .pending_asks
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        PendingAsk {
            cell: Arc::clone(&self.cell),
        }
    }

    /// How many asks counted by [`pending_ask`](Self::pending_ask) still wait
    /// for their reply.
    #[allow(dead_code)] // used by the layers above the core, which may be compiled out
    pub(crate) fn pending_asks(&self) -> u32 {
        self.cell
            .pending_asks
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Wakes the actor's hooks with `token`; `false` if it has stopped.
    #[allow(dead_code)] // used by the layers above the core, which may be compiled out
    pub(crate) fn wake(&self, token: u64) -> bool {
        self.cell.signal(Signal::Wake(token))
    }

    /// A weak handle that does not keep the actor alive.
    pub fn downgrade(&self) -> WeakActorRef<A> {
        WeakActorRef::new(Arc::clone(&self.cell))
    }

    /// Whether the actor has stopped for good.
    pub fn is_stopped(&self) -> bool {
        self.cell.lifecycle().exit().is_some()
    }

    /// Waits until the actor has stopped for good (after `on_exit` and its final
    /// snapshot write) and returns why.
    pub fn stopped(&self) -> impl Future<Output = ExitReason> + Send + '_ {
        self.cell.lifecycle().exited()
    }
}

/// One ask counted as waiting for its reply on its actor, until dropped.
pub(crate) struct PendingAsk<M: Send + 'static> {
    cell: Arc<ActorCell<M>>,
}

impl<M: Send + 'static> Drop for PendingAsk<M> {
    fn drop(&mut self) {
        self.cell
            .pending_asks
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl<A: Actor> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        self.cell.acquire_ref();
        Self {
            cell: Arc::clone(&self.cell),
        }
    }
}

impl<A: Actor> Drop for ActorRef<A> {
    fn drop(&mut self) {
        self.cell.release_ref();
    }
}

impl<A: Actor> PartialEq for ActorRef<A> {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl<A: Actor> Eq for ActorRef<A> {}

impl<A: Actor> Hash for ActorRef<A> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id().hash(state);
    }
}

impl<A: Actor> fmt::Debug for ActorRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorRef")
            .field("id", &self.id())
            .field("actor", &std::any::type_name::<A>())
            .finish()
    }
}

/// A handle that does not keep the actor alive; [`upgrade`](Self::upgrade) to send.
pub struct WeakActorRef<A: Actor> {
    cell: Arc<ActorCell<A::Msg>>,
}

impl<A: Actor> WeakActorRef<A> {
    pub(crate) fn new(cell: Arc<ActorCell<A::Msg>>) -> Self {
        Self { cell }
    }

    /// The actor's id.
    pub fn id(&self) -> ActorId {
        self.cell.id
    }

    /// A strong ref, or `None` once every strong ref is gone (the actor is then
    /// draining its mailbox or stopped).
    pub fn upgrade(&self) -> Option<ActorRef<A>> {
        if self.cell.lifecycle().exit().is_some() || !self.cell.try_acquire_ref() {
            return None;
        }
        Some(ActorRef::from_cell(Arc::clone(&self.cell)))
    }

    /// Whether the actor has stopped for good.
    pub fn is_stopped(&self) -> bool {
        self.cell.lifecycle().exit().is_some()
    }

    /// Waits until the actor has stopped for good and returns why.
    pub fn stopped(&self) -> impl Future<Output = ExitReason> + Send + '_ {
        self.cell.lifecycle().exited()
    }
}

impl<A: Actor> Clone for WeakActorRef<A> {
    fn clone(&self) -> Self {
        Self {
            cell: Arc::clone(&self.cell),
        }
    }
}

impl<A: Actor> PartialEq for WeakActorRef<A> {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl<A: Actor> Eq for WeakActorRef<A> {}

impl<A: Actor> Hash for WeakActorRef<A> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id().hash(state);
    }
}

impl<A: Actor> fmt::Debug for WeakActorRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakActorRef")
            .field("id", &self.id())
            .field("actor", &std::any::type_name::<A>())
            .finish()
    }
}

/// A pending `ask`: await it for the reply. Built by [`ActorRef::ask`].
#[must_use = "an ask does nothing until it is awaited"]
pub struct Ask<'a, A: Actor, M> {
    actor: &'a ActorRef<A>,
    msg: M,
    timeout: Option<Duration>,
}

impl<A: Actor, M> Ask<'_, A, M> {
    /// Fails with [`AskError::Timeout`] if no reply arrives within `after`. The
    /// message may still be handled later; only the wait is bounded.
    pub fn timeout(mut self, after: Duration) -> Self {
        self.timeout = Some(after);
        self
    }
}

impl<A: Actor, M> fmt::Debug for Ask<'_, A, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ask")
            .field("actor", &self.actor.id())
            .field("message", &std::any::type_name::<M>())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<'a, A: Actor, M: Message<A>> IntoFuture for Ask<'a, A, M> {
    type Output = Result<M::Return, AskError>;
    type IntoFuture = AskFuture<M::Return>;

    fn into_future(self) -> Self::IntoFuture {
        let id = self.actor.id();
        let (tx, rx) = oneshot::channel();
        let sent = self
            .actor
            .cell
            .mailbox
            .push(Item::Ask(self.msg.into_msg(Some(Reply::new(tx)))));
        let state = match sent {
            Ok(()) => AskState::Waiting(rx),
            Err(_) => AskState::Failed(Some(AskError::Stopped(id))),
        };
        AskFuture {
            id,
            state,
            timeout: self.timeout,
            sleep: None,
        }
    }
}

/// The future of an awaited [`Ask`].
pub struct AskFuture<R> {
    id: ActorId,
    state: AskState<R>,
    timeout: Option<Duration>,
    sleep: Option<Pin<Box<Sleep>>>,
}

enum AskState<R> {
    Waiting(oneshot::Receiver<R>),
    Failed(Option<AskError>),
}

impl<R> fmt::Debug for AskFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AskFuture")
            .field("actor", &self.id)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<R> Future for AskFuture<R> {
    type Output = Result<R, AskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let rx = match &mut this.state {
            AskState::Failed(err) => {
                return Poll::Ready(Err(err.take().unwrap_or(AskError::NoReply(this.id))));
            }
            AskState::Waiting(rx) => rx,
        };
        if let Poll::Ready(reply) = Pin::new(rx).poll(cx) {
            return Poll::Ready(reply.map_err(|_| AskError::NoReply(this.id)));
        }
        if let Some(after) = this.timeout {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(AskError::Timeout { id: this.id, after }));
            }
        }
        Poll::Pending
    }
}
