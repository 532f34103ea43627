//! Failures, supervision decisions and exit reasons.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::id::ActorId;

/// What a supervisor decides for a failed child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Stop the child's children, re-initialize the child from its arguments (a
    /// persistent actor from its latest saved snapshot), keeping its id and mailbox.
    Restart,
    /// Stop the child for good.
    Stop,
    /// Treat the failure as the supervisor's own: the child stops, and the
    /// supervisor's parent decides for the supervisor.
    Escalate,
}

/// Where in an actor's life a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailurePhase {
    /// While building the actor from its arguments or snapshot.
    Initialize,
    /// In a message handler.
    Handler,
    /// In `on_start` or `on_restart`.
    StartHook,
    /// In `supervise`, while deciding for a child.
    Supervise,
}

/// Why an actor failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureCause {
    /// It panicked; the panic message if it was a string.
    Panic(String),
    /// Its initialization returned an error (for example, its snapshot could not be
    /// restored on restart).
    Error(String),
    /// A supervisor escalated a child's failure; this is that child's failure.
    Escalated(Box<Failure>),
}

/// One failure of one actor, as a supervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    actor_id: ActorId,
    actor_type: &'static str,
    phase: FailurePhase,
    cause: FailureCause,
}

impl Failure {
    pub(crate) fn new(
        actor_id: ActorId,
        actor_type: &'static str,
        phase: FailurePhase,
        cause: FailureCause,
    ) -> Self {
        Self {
            actor_id,
            actor_type,
            phase,
            cause,
        }
    }

    pub(crate) fn from_panic(
        actor_id: ActorId,
        actor_type: &'static str,
        phase: FailurePhase,
        payload: &(dyn Any + Send),
    ) -> Self {
        let msg = if let Some(s) = payload.downcast_ref::<&'static str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "non-string panic payload".to_owned()
        };
        Self::new(actor_id, actor_type, phase, FailureCause::Panic(msg))
    }

    /// The id of the actor that failed.
    pub fn actor_id(&self) -> ActorId {
        self.actor_id
    }

    /// The Rust type name of the actor that failed.
    pub fn actor_type(&self) -> &'static str {
        self.actor_type
    }

    /// Where the failure happened.
    pub fn phase(&self) -> FailurePhase {
        self.phase
    }

    /// Why it failed.
    pub fn cause(&self) -> &FailureCause {
        &self.cause
    }

    /// The failure at the bottom of an escalation chain (itself if not escalated).
    pub fn root_cause(&self) -> &Failure {
        match &self.cause {
            FailureCause::Escalated(inner) => inner.root_cause(),
            _ => self,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "actor {} ({}) failed", self.actor_id, self.actor_type)?;
        let phase = match self.phase {
            FailurePhase::Initialize => "initializing",
            FailurePhase::Handler => "in a handler",
            FailurePhase::StartHook => "in a start hook",
            FailurePhase::Supervise => "while supervising",
        };
        match &self.cause {
            FailureCause::Panic(msg) => write!(f, " {phase}: panicked: {msg}"),
            FailureCause::Error(msg) => write!(f, " {phase}: {msg}"),
            FailureCause::Escalated(inner) => write!(f, ": escalated from {inner}"),
        }
    }
}

/// Why an actor stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// `stop()` was called on a ref, on its context, by its stopping parent or by
    /// `RootContext::shutdown`.
    Stopped,
    /// Every [`ActorRef`](crate::ActorRef) was dropped and the mailbox was drained.
    RefsDropped,
    /// It failed and its supervisor decided (or defaulted to) stop.
    Failed(Arc<Failure>),
    /// It failed once more than its [`RestartLimit`](crate::RestartLimit) allows.
    RestartLimit(Arc<Failure>),
    /// Its supervisor escalated its failure; the supervisor's parent decided.
    Escalated(Arc<Failure>),
    /// The task was aborted because it did not stop within a shutdown timeout.
    Aborted,
    /// Another activation of this persistent actor's id took ownership of it (in
    /// this or another process), so its storage refused this instance's writes.
    /// The actor stopped at once, without supervision and without a final
    /// snapshot; replies waiting for a save failed.
    Fenced {
        /// The owner epoch this instance held.
        epoch: u64,
        /// The epoch of the id's current owner.
        current: u64,
    },
}

impl ExitReason {
    /// `true` for a requested stop or dropped refs: the state is consistent, so a
    /// final snapshot may be taken.
    pub fn is_graceful(&self) -> bool {
        matches!(self, ExitReason::Stopped | ExitReason::RefsDropped)
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Stopped => f.write_str("stopped"),
            ExitReason::RefsDropped => f.write_str("all refs dropped"),
            ExitReason::Failed(failure) => write!(f, "{failure}"),
            ExitReason::RestartLimit(failure) => write!(f, "restart limit reached: {failure}"),
            ExitReason::Escalated(failure) => write!(f, "escalated: {failure}"),
            ExitReason::Aborted => f.write_str("aborted after the shutdown timeout"),
            ExitReason::Fenced { epoch, current } => write!(
                f,
                "fenced: another instance owns this id now (epoch {current}; this one held {epoch})"
            ),
        }
    }
}
