//! [`ActorCell`]: the one allocation a live actor has besides its task. Its refs,
//! its context and its parent's child list all point at it.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use crate::attachment::Attachment;
use crate::control::{Children, Control, Lifecycle, ParentLink};
use crate::id::ActorId;
use crate::mailbox::Mailbox;
use crate::registry::Registry;
use crate::supervision::{Decision, ExitReason, Failure};

/// One mailbox item: a message of the actor's `Msg` type (told, or asked: its
/// sender waits for a reply, and learns of a drop), or a runtime signal.
pub(crate) enum Item<M> {
    Msg(M),
    Ask(M),
    Signal(Signal),
}

/// What the runtime tells an actor besides its messages.
pub(crate) enum Signal {
    /// Stop after the items queued before this one.
    Stop,
    /// A child failed and waits for this actor's `supervise`. Boxed: it is rare,
    /// and every mailbox slot is as large as the largest variant.
    ChildFailed(Box<ChildFailed>),
    /// A wake-up for the actor's hooks, with a token whose meaning is theirs (a
    /// timer, a request to passivate, from the persistence layer).
    #[allow(dead_code)] // sent by the layers above the core, which may be compiled out
    Wake(u64),
}

/// A child's failure report.
pub(crate) struct ChildFailed {
    pub(crate) failure: Failure,
    pub(crate) decision: oneshot::Sender<Decision>,
}

/// The shared state of one actor.
pub(crate) struct ActorCell<M> {
    pub(crate) id: ActorId,
    pub(crate) mailbox: Mailbox<Item<M>>,
    /// Strong [`ActorRef`](crate::ActorRef)s: the actor lives while there is one.
    refs: AtomicUsize,
    /// `Context::stop` was called: stop after the current handler.
    stop_now: AtomicBool,
    /// Asks sent through a layer above the core (a virtual actors handle) that
    /// still wait for their reply: such an actor is busy, even with an empty
    /// mailbox. Fits in the padding after `stop_now`.
    pub(crate) pending_asks: AtomicU32,
    pub(crate) lifecycle: Lifecycle,
    abort: OnceLock<AbortHandle>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) parent: Option<Arc<dyn ParentLink>>,
    pub(crate) children: Children,
    pub(crate) attachment: OnceLock<Arc<dyn Attachment>>,
}

impl<M: Send + 'static> ActorCell<M> {
    /// A cell with one strong ref (the one `spawn` returns).
    pub(crate) fn new(
        id: ActorId,
        registry: Arc<Registry>,
        parent: Option<Arc<dyn ParentLink>>,
        attachment: Option<Arc<dyn Attachment>>,
    ) -> Self {
        Self {
            id,
            mailbox: Mailbox::default(),
            refs: AtomicUsize::new(1),
            stop_now: AtomicBool::new(false),
            pending_asks: AtomicU32::new(0),
            lifecycle: Lifecycle::default(),
            abort: OnceLock::new(),
            registry,
            parent,
            children: Children::default(),
            attachment: attachment.map(OnceLock::from).unwrap_or_default(),
        }
    }

    /// Queues a signal; `false` if the mailbox is closed.
    pub(crate) fn signal(&self, signal: Signal) -> bool {
        self.mailbox.push(Item::Signal(signal)).is_ok()
    }

    /// One more strong ref.
    pub(crate) fn acquire_ref(&self) {
        self.refs.fetch_add(1, Ordering::Relaxed);
    }

    /// One more strong ref, unless none is left (the actor is draining or gone).
    pub(crate) fn try_acquire_ref(&self) -> bool {
        let mut refs = self.refs.load(Ordering::Relaxed);
        loop {
            if refs == 0 {
                return false;
            }
            match self.refs.compare_exchange_weak(
                refs,
                refs + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => refs = now,
            }
        }
    }

    /// One strong ref fewer; the last one wakes the actor so it drains and stops.
    pub(crate) fn release_ref(&self) {
        if self.refs.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.mailbox.wake();
        }
    }

    /// Whether every strong ref is gone.
    pub(crate) fn unreferenced(&self) -> bool {
        self.refs.load(Ordering::Acquire) == 0
    }

    /// `Context::stop`: stop after the current handler.
    pub(crate) fn stop_now(&self) {
        self.stop_now.store(true, Ordering::Relaxed);
        self.signal(Signal::Stop);
    }

    pub(crate) fn stop_now_requested(&self) -> bool {
        self.stop_now.load(Ordering::Relaxed)
    }

    pub(crate) fn set_abort(&self, handle: AbortHandle) {
        let _ = self.abort.set(handle);
    }
}

impl<M: Send + 'static> Control for ActorCell<M> {
    fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    fn request_stop(&self) {
        self.lifecycle.request_stop();
        self.signal(Signal::Stop);
    }

    fn abort(&self) {
        if let Some(handle) = self.abort.get() {
            handle.abort();
        }
    }

    fn stop_with(&self, reason: ExitReason) {
        self.lifecycle.request_stop_with(reason);
        self.stop_now();
    }
}

impl<M: Send + 'static> ParentLink for ActorCell<M> {
    fn report_failure(&self, failure: Failure, decision: oneshot::Sender<Decision>) -> bool {
        self.signal(Signal::ChildFailed(Box::new(ChildFailed {
            failure,
            decision,
        })))
    }
}
