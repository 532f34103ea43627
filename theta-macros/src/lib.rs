//! Procedural macros for [theta](https://docs.rs/theta): `#[actor]` and
//! `#[derive(ActorArgs)]`. Use them through `theta` (`use theta::prelude::*;`);
//! the generated code refers to `::theta` only.
//!
//! The macros only implement traits that can be written by hand; the `theta`
//! crate docs show a complete hand-written actor.

#![warn(missing_docs)]

mod attr;
mod derive;
mod errors;
mod expand;
mod parse;
mod persist;
mod render;
mod validate;

use proc_macro::TokenStream;

/// Turns `impl Actor for T { .. }` with handler closures into an actor.
///
/// # Grammar
///
/// ```text
/// #[actor("<uuid>"
///     [, snapshot | snapshot = Type]          // makes the actor persistent; then:
///     [, runtime_args = Type]                 //   arguments given at every (re)spawn
///     [, schema_version = <u32>]              //   the snapshot layout this build writes
///     [, migrate = path]                      //   converts older layouts
///     [, codec = "bincode" | "msgpack"]       //   payload encoding
///     [, compression = "none" | "lz4" | "zstd"]
///     [, snapshot_every = <u32>] [, snapshot_interval_ms = <u64>] [, snapshot_on_stop]
/// )]
/// impl Actor for T {
///     const _: () = {
///         async |pattern: Message| { body };            // answers `ask` with ()
///         async |pattern: Message| -> Return { body };  // answers `ask` with Return
///     };
///     // any other `Actor` items: on_start, on_exit, supervise, restart_limit, ..
/// }
/// ```
///
/// - `"<uuid>"` (required, first): the actor *type's* stable id, 32 hex digits in
///   groups 8-4-4-4-12. Snapshot envelopes record it.
/// - `snapshot`: implements `PersistentActor` with `Snapshot = T`,
///   `RuntimeArgs = ()` and `ActorArgs = T` (`T` needs serde and
///   `#[derive(ActorArgs)]`).
/// - `snapshot = S`: the same with `Snapshot = S` and `ActorArgs = S`
///   (`S: ActorArgs<Actor = T> + Serialize + DeserializeOwned + From<&T>`).
///
/// The other options need `snapshot` (or `snapshot = S`):
///
/// - `runtime_args = R`: `RuntimeArgs = R` (`R: Clone + Send + Sync + 'static`) and
///   `ActorArgs = theta::persistence::RestoreArgs<T>`, for what a snapshot must not
///   hold: a storage handle to save by hand or to spawn persistent children with,
///   configuration, a channel. The actor is built by
///   `impl theta::persistence::Restore for T { async fn restore(ctx: Context<Self>,
///   snapshot: &S, runtime_args: &R) -> Self }`, which also runs after a restart
///   (with the latest snapshot and a clone of `R`); without that impl the build
///   fails with the impl to write. The snapshot type then needs `From<&T>` but not
///   `ActorArgs`. `respawn(&storage, id, r)` and `respawn_or(&storage, id, || r, ||
///   fresh_args)` take the runtime args; `spawn_persistent` works when `R: Default`
///   (a restart uses `R::default()`). A fresh actor starts from any `ActorArgs` of
///   `T`, for example `RestoreArgs::new(initial_snapshot, r)`.
/// - `schema_version = N`: `const SCHEMA_VERSION: u32 = N;` (default 0). Bump it when
///   the snapshot type changes incompatibly. A snapshot of an older version is
///   passed to `migrate`; without `migrate` it is refused at respawn with
///   `PersistenceError::Migration` (never misread), which is the right choice when
///   no older snapshot may be read. A newer one is always refused.
/// - `migrate = f`: `fn migrate(from_version, payload) { f(from_version, payload) }`
///   with `f: fn(u32, &[u8]) -> Result<Snapshot, anyhow::Error>`; decode the old
///   layout with `theta::persistence::decode_payload`. Needs `schema_version` above 0.
/// - `codec = ".."`: `const CODEC: Codec = Codec::Bincode` (`"bincode"`) or
///   `Codec::MessagePack` (`"msgpack"`); see `theta::persistence::Codec`. The
///   envelope records the codec, so snapshots written with the previous one still
///   read.
/// - `compression = ".."`: `const COMPRESSION: Compression = Compression::None`
///   (`"none"`), `Compression::Lz4` (`"lz4"`) or `Compression::Zstd` (`"zstd"`).
/// - `snapshot_every = N`, `snapshot_interval_ms = MS`, `snapshot_on_stop`: the
///   automatic `SnapshotPolicy`.
///
/// Inside a handler body `self` is the actor (`&mut Self`), `ctx` its
/// `&Context<Self>`, `.await` works, and so do `?` and `return` when the handler
/// returns a `Result`. Each message type has one handler per actor; any number of
/// `const _` blocks may hold handlers. `tell`/`ask` of a type without a handler does
/// not compile.
///
/// # Expansion
///
/// ```ignore
/// #[actor("6b3a6c1e-2a8f-4d54-9a0b-0c2f7b7f0001")]
/// impl Actor for Counter {
///     const _: () = {
///         async |Add(n): Add| { self.value += n; };
///         async |_: Get| -> i64 { self.value };
///     };
/// }
/// ```
///
/// expands to (paths shortened):
///
/// ```ignore
/// const _: () = {
///     pub enum __ThetaMsg_Counter {
///         V0(Add, Option<Reply<()>>),
///         V1(Get, Option<Reply<i64>>),
///     }
///
///     impl Message<Counter> for Add {
///         type Return = ();
///         fn into_msg(self, reply: Option<Reply<()>>) -> __ThetaMsg_Counter {
///             __ThetaMsg_Counter::V0(self, reply)
///         }
///     }
///     // ... the same for `Get` with `Return = i64`
///
///     impl Counter {
///         async fn __theta_handle_0(&mut self, ctx: &Context<Self>, msg: Add) {
///             let Add(n) = msg;
///             { self.value += n; }
///         }
///         async fn __theta_handle_1(&mut self, ctx: &Context<Self>, msg: Get) -> i64 {
///             let _ = msg;
///             { self.value }
///         }
///     }
///
///     impl Actor for Counter {
///         type Msg = __ThetaMsg_Counter;
///         const TYPE_ID: Uuid = Uuid::from_u128(0x6b3a6c1e2a8f4d549a0b0c2f7b7f0001);
///
///         async fn process_msg(&mut self, ctx: &Context<Self>, msg: __ThetaMsg_Counter) {
///             match msg {
///                 __ThetaMsg_Counter::V0(msg, reply) => {
///                     let result = Self::__theta_handle_0(self, ctx, msg).await;
///                     if let Some(reply) = reply { reply.send(ctx, result); }
///                 }
///                 // ... V1 likewise
///             }
///         }
///         // the user's other items
///     }
/// };
/// ```
///
/// With `snapshot` it also emits
///
/// ```ignore
/// impl PersistentActor for Counter {
///     type Snapshot = Counter;
///     type RuntimeArgs = ();
///     type ActorArgs = Counter;
///     fn persistent_args(snapshot: Counter, _: ()) -> Counter { snapshot }
///     // with policy options:
///     fn snapshot_policy() -> SnapshotPolicy {
///         SnapshotPolicy::new().every_n_messages(N).every_interval(Duration::from_millis(MS)).on_graceful_stop()
///     }
/// }
/// ```
///
/// and with `snapshot = S, runtime_args = R, schema_version = 2, migrate = f,
/// codec = "msgpack", compression = "zstd"`
///
/// ```ignore
/// impl PersistentActor for Counter {
///     type Snapshot = S;
///     type RuntimeArgs = R;
///     type ActorArgs = RestoreArgs<Self>;
///     fn persistent_args(snapshot: S, runtime_args: R) -> RestoreArgs<Self> {
///         RestoreArgs::new(snapshot, runtime_args)
///     }
///     const SCHEMA_VERSION: u32 = 2;
///     fn migrate(from_version: u32, payload: &[u8]) -> Result<S, anyhow::Error> {
///         let f: fn(u32, &[u8]) -> Result<S, anyhow::Error> = f;
///         f(from_version, payload)
///     }
///     const CODEC: Codec = Codec::MessagePack;
///     const COMPRESSION: Compression = Compression::Zstd;
/// }
/// ```
///
/// Before that impl come checks that turn a missing `From<&Counter>` or
/// `ActorArgs` on the snapshot type, or a missing `Restore` impl, into a first
/// error that says what to add.
///
/// Mistakes (a non-`async` closure, a parameter without a type, a message type
/// handled twice, a handler written as a method, a reply that borrows from the
/// actor, a pattern that does not match every message, an unknown, repeated or
/// misplaced option, a malformed uuid, a generic impl, ...) are reported at the
/// offending tokens, all in one build, and the rest of the item is still expanded
/// so later errors stay to the point. Syntax errors are rustc's own (it parses the
/// item before the macro runs); the macro does not repeat them.
#[proc_macro_attribute]
pub fn actor(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::actor(attr.into(), item.into()).into()
}

/// Makes a non-generic struct or enum its own `ActorArgs` and its own snapshot.
///
/// ```ignore
/// #[derive(Clone, ActorArgs)]
/// struct Counter { value: i64 }
/// ```
///
/// expands to (paths shortened)
///
/// ```ignore
/// impl ActorArgs for Counter {
///     type Actor = Counter;
///     fn initialize(_: Context<Counter>, args: &Self) -> impl Future<Output = Counter> + Send {
///         core::future::ready(Clone::clone(args))
///     }
/// }
///
/// impl From<&Counter> for Counter {
///     fn from(args: &Counter) -> Self { Clone::clone(args) }
/// }
/// ```
///
/// The type must be `Clone` (it is cloned on every start and restart) and an
/// `#[actor]` actor.
#[proc_macro_derive(ActorArgs)]
pub fn derive_actor_args(item: TokenStream) -> TokenStream {
    derive::derive_actor_args(item.into()).into()
}
