//! [`Attachment`]: the context-side face of the seam between the core and a layer
//! above it (persistence), set at spawn and reachable through the actor's
//! [`Context`](crate::Context). The task-side face is [`Hooks`](crate::hooks::Hooks).

use std::any::Any;

/// Per-actor state of a layer above the core that handlers reach through their
/// context, and that the core consults before a reply leaves.
pub(crate) trait Attachment: Any + Send + Sync {
    /// Whether replies must wait (checked before anything is boxed).
    fn holds_replies(&self) -> bool {
        false
    }

    /// Takes a reply to release later (when the state it answers from is saved).
    fn hold_reply(&self, release: Box<dyn FnOnce() + Send>) {
        release();
    }
}
