//! [`Restore`] and [`RestoreArgs`]: persistent actors rebuilt from their snapshot
//! *plus* runtime arguments (`#[actor(.., snapshot, runtime_args = T)]`).

use std::fmt;
use std::future::Future;

use crate::actor::{ActorArgs, Context};

use super::PersistentActor;

/// How a persistent actor with runtime arguments is rebuilt: from the snapshot
/// that was restored and the runtime arguments given to
/// [`respawn`](super::PersistentSpawnExt::respawn) /
/// [`respawn_or`](super::PersistentSpawnExt::respawn_or) (a clone of them after a
/// restart).
///
/// `#[actor("..", snapshot, runtime_args = T)]` (or `snapshot = S, runtime_args = T`)
/// sets `RuntimeArgs = T` and `ActorArgs = RestoreArgs<Self>`, whose
/// initialization calls this. Runtime arguments are what a snapshot must not
/// hold: a storage handle to save by hand or to spawn persistent children with,
/// configuration, a channel.
///
/// # Examples
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use theta::persistence::{MemoryStorage, Restore, RestoreArgs, SharedStorage};
/// use theta::prelude::*;
///
/// struct Journal {
///     lines: Vec<String>,
///     storage: SharedStorage,
/// }
///
/// #[derive(Serialize, Deserialize)]
/// struct JournalSnapshot {
///     lines: Vec<String>,
/// }
///
/// impl From<&Journal> for JournalSnapshot {
///     fn from(journal: &Journal) -> Self {
///         Self { lines: journal.lines.clone() }
///     }
/// }
///
/// struct Write(String);
///
/// #[actor("0b6c1f9e-3d2a-4e5b-8c7d-1a2b3c4d5e6f", snapshot = JournalSnapshot, runtime_args = SharedStorage)]
/// impl Actor for Journal {
///     const _: () = {
///         async |Write(line): Write| -> bool {
///             self.lines.push(line);
///             ctx.save_snapshot(&self.storage, self).await.is_ok()
///         };
///     };
/// }
///
/// impl Restore for Journal {
///     async fn restore(
///         _ctx: Context<Self>,
///         snapshot: &JournalSnapshot,
///         storage: &SharedStorage,
///     ) -> Self {
///         Journal { lines: snapshot.lines.clone(), storage: storage.clone() }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let storage = SharedStorage::new(MemoryStorage::new());
/// let root = RootContext::default();
/// let id = ActorId::new_v4();
/// let journal = root
///     .respawn_or(
///         &storage,
///         id,
///         || storage.clone(),
///         || RestoreArgs::new(JournalSnapshot { lines: Vec::new() }, storage.clone()),
///     )
///     .await?;
/// assert!(journal.ask(Write("hello".into())).await?);
/// # Ok(())
/// # }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is restored with runtime args but does not implement `Restore`",
    label = "`{Self}` needs `impl Restore for {Self}`",
    note = "write `impl theta::persistence::Restore for {Self} {{ async fn restore(ctx: Context<Self>, \
            snapshot: &Self::Snapshot, runtime_args: &Self::RuntimeArgs) -> Self {{ .. }} }}`"
)]
pub trait Restore: PersistentActor {
    /// Builds the actor from `snapshot` and `runtime_args`. Runs on the actor's
    /// task, at the first start and at every restart.
    fn restore(
        ctx: Context<Self>,
        snapshot: &Self::Snapshot,
        runtime_args: &Self::RuntimeArgs,
    ) -> impl Future<Output = Self> + Send;
}

/// The arguments of an actor with `runtime_args`: a snapshot and the runtime
/// arguments, turned into the actor by [`Restore::restore`].
///
/// Restoring builds one from the stored snapshot; to start a fresh actor from an
/// initial snapshot, pass `RestoreArgs::new(initial, runtime_args)` as the
/// arguments of [`spawn_persistent`](super::PersistentSpawnExt::spawn_persistent)
/// or the default of [`respawn_or`](super::PersistentSpawnExt::respawn_or).
pub struct RestoreArgs<A: PersistentActor> {
    /// The state to restore.
    pub snapshot: A::Snapshot,
    /// Handles and configuration that are not stored.
    pub runtime_args: A::RuntimeArgs,
}

impl<A: PersistentActor> RestoreArgs<A> {
    /// Pairs a snapshot with runtime arguments.
    pub fn new(snapshot: A::Snapshot, runtime_args: A::RuntimeArgs) -> Self {
        Self {
            snapshot,
            runtime_args,
        }
    }
}

impl<A> ActorArgs for RestoreArgs<A>
where
    A: Restore,
    A::Snapshot: Sync,
{
    type Actor = A;

    fn initialize(ctx: Context<A>, args: &Self) -> impl Future<Output = A> + Send {
        A::restore(ctx, &args.snapshot, &args.runtime_args)
    }
}

impl<A> Clone for RestoreArgs<A>
where
    A: PersistentActor,
    A::Snapshot: Clone,
{
    fn clone(&self) -> Self {
        Self::new(self.snapshot.clone(), self.runtime_args.clone())
    }
}

impl<A> fmt::Debug for RestoreArgs<A>
where
    A: PersistentActor,
    A::Snapshot: fmt::Debug,
    A::RuntimeArgs: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestoreArgs")
            .field("snapshot", &self.snapshot)
            .field("runtime_args", &self.runtime_args)
            .finish()
    }
}
