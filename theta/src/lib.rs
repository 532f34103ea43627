//! theta: an async actor framework whose actors persist their state as snapshots
//! and come back after a crash, a restart or a redeploy.
//!
//! # Actors
//!
//! An actor is a struct plus the messages it handles. Write it with the
//! [`#[actor]`](macro@actor) attribute: each `async |pattern: Type| { .. }` closure
//! inside `const _: () = { .. };` is one handler, with `self` the actor (`&mut`) and
//! `ctx` its [`Context`]. A handler with `-> R` answers [`ActorRef::ask`] with `R`.
//!
//! ```
//! use std::time::Duration;
//! use theta::prelude::*;
//!
//! #[derive(Debug, Clone, ActorArgs)]
//! struct Counter { value: i64 }
//!
//! #[derive(Debug)]
//! struct Add(i64);
//! #[derive(Debug)]
//! struct Get;
//!
//! #[actor("6b3a6c1e-2a8f-4d54-9a0b-0c2f7b7f0001")]
//! impl Actor for Counter {
//!     const _: () = {
//!         async |Add(n): Add| {
//!             self.value += n;
//!         };
//!         async |_: Get| -> i64 { self.value };
//!     };
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let root = RootContext::default();
//! let counter = root.spawn(Counter { value: 0 });
//! counter.tell(Add(2))?;
//! let value = counter.ask(Get).timeout(Duration::from_secs(1)).await?;
//! assert_eq!(value, 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Actors without the macro
//!
//! The macro only implements traits you can implement yourself: a message enum,
//! one [`Message`] impl per message type, and [`Actor::process_msg`].
//!
//! ```
//! use theta::prelude::*;
//! use theta::{Message, Reply};
//!
//! struct Counter { value: i64 }
//! struct Add(i64);
//! struct Get;
//!
//! enum CounterMsg {
//!     Add(Add, Option<Reply<()>>),
//!     Get(Get, Option<Reply<i64>>),
//! }
//!
//! impl Message<Counter> for Add {
//!     type Return = ();
//!     fn into_msg(self, reply: Option<Reply<()>>) -> CounterMsg { CounterMsg::Add(self, reply) }
//! }
//!
//! impl Message<Counter> for Get {
//!     type Return = i64;
//!     fn into_msg(self, reply: Option<Reply<i64>>) -> CounterMsg { CounterMsg::Get(self, reply) }
//! }
//!
//! impl Actor for Counter {
//!     type Msg = CounterMsg;
//!     const TYPE_ID: uuid::Uuid = uuid::uuid!("6b3a6c1e-2a8f-4d54-9a0b-0c2f7b7f0002");
//!
//!     async fn process_msg(&mut self, ctx: &Context<Self>, msg: CounterMsg) {
//!         match msg {
//!             CounterMsg::Add(Add(n), reply) => {
//!                 self.value += n;
//!                 if let Some(reply) = reply { reply.send(ctx, ()) }
//!             }
//!             CounterMsg::Get(Get, reply) => {
//!                 if let Some(reply) = reply { reply.send(ctx, self.value) }
//!             }
//!         }
//!     }
//! }
//!
//! struct Start;
//! impl ActorArgs for Start {
//!     type Actor = Counter;
//!     async fn initialize(_ctx: Context<Counter>, _args: &Self) -> Counter {
//!         Counter { value: 0 }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let counter = RootContext::default().spawn(Start);
//! counter.tell(Add(5))?;
//! assert_eq!(counter.ask(Get).await?, 5);
//! # Ok(())
//! # }
//! ```
//!
//! # Supervision
//!
//! A panic in a handler, a start hook or `initialize` is caught. The parent's
//! [`Actor::supervise`] decides: [`Decision::Restart`] (default; re-initialize with
//! the same id and mailbox, within [`Actor::restart_limit`]), [`Decision::Stop`] or
//! [`Decision::Escalate`]. Top-level actors have no parent: they stop, and the panic
//! is logged as a `tracing` error.
//!
//! # Persistence
//!
//! See [`persistence`]: snapshots, storage backends and recovery.

#![warn(missing_docs)]

extern crate self as theta;

mod actor;
mod actor_ref;
mod attachment;
mod cell;
mod context;
mod control;
mod error;
mod hooks;
mod id;
mod mailbox;
mod message;
mod registry;
mod spawn;
mod supervision;
mod task;

#[cfg(feature = "persistence")]
pub mod persistence;

pub use actor::{Actor, ActorArgs, Context, RestartLimit};
pub use actor_ref::{ActorRef, Ask, AskFuture, WeakActorRef};
pub use context::RootContext;
pub use error::{AskError, SendError, ShutdownError, SpawnError};
pub use id::ActorId;
pub use message::{Message, Reply};
pub use supervision::{Decision, ExitReason, Failure, FailureCause, FailurePhase};

/// `#[actor("<uuid>")]`: turns an `impl Actor for T` with handler closures into an
/// actor. See the crate docs and `theta-macros` for the full grammar.
pub use theta_macros::actor;

/// `#[derive(ActorArgs)]`: the struct is its own arguments (cloned on start) and
/// gets `From<&T> for T` so it can be its own snapshot.
pub use theta_macros::ActorArgs;

/// What everyday code needs: `use theta::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Actor, ActorArgs, ActorId, ActorRef, AskError, Context, Decision, ExitReason, Failure,
        RootContext, SendError, WeakActorRef, actor,
    };

    #[cfg(feature = "persistence")]
    pub use crate::persistence::{
        PersistentActor, PersistentContextExt, PersistentSpawnExt, PersistentStorage,
        SnapshotPolicy,
    };
}

/// Paths the macros expand to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::actor::{Actor, ActorArgs, Context};
    pub use crate::message::{Message, Reply};
    pub use uuid::Uuid;

    #[cfg(feature = "persistence")]
    pub use crate::persistence::{Codec, Compression, PersistentActor, SnapshotPolicy};

    pub use core::future::Future;
    pub use core::option::Option;

    #[cfg(feature = "persistence")]
    pub use crate::persistence::{Restore, RestoreArgs};
    /// The error type of `PersistentActor::migrate`.
    #[cfg(feature = "persistence")]
    pub use anyhow::Error as AnyhowError;

    #[cfg(feature = "conformance")]
    pub use tokio;
}
