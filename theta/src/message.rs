//! Typed messages and replies.

use tokio::sync::oneshot;

use crate::actor::{Actor, Context};

/// A message type that actor `A` handles, and what an `ask` of it returns.
///
/// `#[actor]` implements this once per handler; by hand, `into_msg` wraps the message
/// (and the reply slot of an `ask`) into the actor's mailbox enum.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a message that actor `{A}` handles",
    label = "`{A}` has no handler for `{Self}`",
    note = "add a handler `async |msg: {Self}| {{ .. }};` to the `#[actor]` impl of `{A}`"
)]
pub trait Message<A: Actor>: Send + 'static {
    /// What the handler returns to an `ask` (`()` for handlers without `-> R`).
    type Return: Send + 'static;

    /// Wraps the message for the mailbox; `reply` is `Some` for an `ask`.
    fn into_msg(self, reply: Option<Reply<Self::Return>>) -> A::Msg;
}

/// The reply slot of one `ask`: a typed one-shot channel back to the asker.
#[derive(Debug)]
pub struct Reply<R>(oneshot::Sender<R>);

impl<R: Send + 'static> Reply<R> {
    pub(crate) fn new(tx: oneshot::Sender<R>) -> Self {
        Self(tx)
    }

    /// Answers the ask. If the asker gave up (timed out or was dropped) the value is
    /// dropped; that is not an error for the actor.
    ///
    /// For a persistent actor whose policy
    /// [confirms replies](crate::persistence::SnapshotPolicy::confirm_replies), the
    /// answer is held until the snapshot taken after this handler is durable.
    pub fn send<A: Actor>(self, ctx: &Context<A>, value: R) {
        if let Some(attachment) = ctx.cell.attachment.get()
            && attachment.holds_replies()
        {
            let tx = self.0;
            attachment.hold_reply(Box::new(move || {
                let _ = tx.send(value);
            }));
            return;
        }
        let _ = self.0.send(value);
    }
}
