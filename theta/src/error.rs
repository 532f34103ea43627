//! Errors of the actor runtime.

use std::time::Duration;

use crate::id::ActorId;

/// `tell` failed: the actor has stopped and its mailbox is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("actor {id} has stopped")]
pub struct SendError {
    /// The actor the message was for.
    pub id: ActorId,
}

/// An `ask` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    /// The actor had already stopped; the message was not delivered.
    #[error("actor {0} has stopped")]
    Stopped(ActorId),
    /// The actor took the message but dropped its reply: it panicked in the handler
    /// or stopped before reaching the message.
    #[error("actor {0} stopped or failed before replying")]
    NoReply(ActorId),
    /// No reply arrived within the timeout given to [`Ask::timeout`](crate::Ask::timeout).
    #[error("actor {id} did not reply within {after:?}")]
    Timeout {
        /// The actor asked.
        id: ActorId,
        /// The timeout that elapsed.
        after: Duration,
    },
}

/// Spawning failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpawnError {
    /// An actor with this id is already live in this [`RootContext`](crate::RootContext).
    #[error("an actor with id {0} is already running")]
    AlreadyRunning(ActorId),
}

/// [`RootContext::shutdown`](crate::RootContext::shutdown) timed out; the listed
/// actors were aborted without running `on_exit`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} actor(s) did not stop within {timeout:?}: {not_stopped:?}", not_stopped.len())]
pub struct ShutdownError {
    /// The actors still running at the deadline.
    pub not_stopped: Vec<ActorId>,
    /// The timeout given to `shutdown`.
    pub timeout: Duration,
}
