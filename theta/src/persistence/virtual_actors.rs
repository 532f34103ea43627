//! [`VirtualActors`]: address a persistent actor by id without keeping it live.
//!
//! A handle serves one persistent actor type over one storage. A message to an id
//! that is not live activates it (restored from its snapshot, or started fresh
//! from arguments built from the id when nothing is stored) and is then
//! delivered; an idle actor is passivated: it saves its final snapshot, stops,
//! and comes back with its next message.
//!
//! # How an id moves
//!
//! Each id has one slot in the handle, under a lock shared with a few other ids:
//!
//! ```text
//!   (none) --message--> Activating --spawned--> Live --idle, accepted--> Passivating
//!                          ^   | failed: senders get the error          |   | final save failed:
//!                          |   v                                         |   v back to Live
//!                          +----------------- stopped, messages waiting -+
//! ```
//!
//! - While an id is *activating* or *passivating*, its messages wait in the slot,
//!   in order, and go to the next live instance. A message is pushed to an
//!   actor's mailbox only while its slot is *live*, under the slot's lock, so none
//!   reaches an instance that is stopping.
//! - Passivation is asked of the actor itself, through its mailbox: the request
//!   is handled after every message sent before it, and it is refused if any
//!   message came in since it was sent, an ask through the handle is still
//!   waiting for its reply, or the actor is saving. So a busy actor is never
//!   passivated. An accepted passivation waits for the automatic saves in flight,
//!   writes the final snapshot (nothing if the storage already holds that
//!   state), and only when the storage acknowledged it does the actor stop. If
//!   the write fails, the actor stays live, its waiting messages go to it, and
//!   the failure is counted and logged: nothing is lost.
//! - With a cap on live instances ([`max_live`](VirtualActorsBuilder::max_live)),
//!   an activation first takes a place under it. While none is free its
//!   messages wait in the slot, in order, as while activating, and the sweeper
//!   passivates the least recently used idle actors to make room; a burst of
//!   new ids never holds more actors in memory than the cap.
//! - A message that cannot be delivered (its activation failed, or the actor
//!   stopped with it queued) is returned to its sender as an error: an
//!   [`ask`](VirtualActors::ask) or [`send`](VirtualActors::send) fails with a
//!   [`VirtualError`]; a [`tell`](VirtualActors::tell), which has nobody to
//!   answer, is counted in [`VirtualStats::dead_letters`] and logged.
//!
//! Ownership is claimed in the storage at every activation as for any persistent
//! spawn: another instance of the service running the same id is refused, or
//! fenced under [`take_over`](VirtualActorsBuilder::take_over).

use std::collections::HashMap;
use std::fmt;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, TryAcquireError, oneshot};

use crate::actor::Actor;
use crate::actor_ref::{ActorRef, PendingAsk, WeakActorRef};
use crate::context::RootContext;
use crate::id::ActorId;
use crate::mailbox::lock;
use crate::message::{Message, Reply};

use super::respawn::spawn_virtual;
use super::{ClaimMode, PersistenceError, PersistentActor, PersistentStorage, SharedStorage};

/// The top bit of a wake-up token marks a passivation request; the rest is the
/// slot's activity count when it was sent.
pub(crate) const PASSIVATE: u64 = 1 << 63;
/// A passivation request that skips the activity check (shutdown).
pub(crate) const FORCE: u64 = u64::MAX;

/// What an actor's hooks ask of the handle that activated it.
pub(crate) trait Gate: Send + Sync + 'static {
    /// May the actor passivate now (`token` from its request)? If so its slot
    /// starts holding new messages back.
    fn begin(&self, id: ActorId, token: u64) -> bool;

    /// The accepted passivation's final save failed: the actor stays live.
    fn abort(&self, id: ActorId, error: &PersistenceError);

    /// The actor stopped (for whatever reason); `unhandled` messages were still
    /// in its mailbox.
    fn stopped(&self, id: ActorId, unhandled: usize);
}

/// The link from an actor's hooks to its handle.
pub(crate) struct VirtualLink {
    pub(crate) gate: Arc<dyn Gate>,
    pub(crate) storage: SharedStorage,
    /// The instance's place among the handle's live ones, given back when the
    /// link is dropped: the instance is gone, or it never started.
    pub(crate) _place: Place,
}

impl VirtualLink {
    /// The instance is gone: its place is given back, then its handle told.
    /// In that order, so that a shutdown that sees no slot left sees no
    /// instance live either.
    pub(crate) fn stopped(self, id: ActorId, unhandled: usize) {
        let VirtualLink { gate, _place, .. } = self;
        drop(_place);
        gate.stopped(id, unhandled);
    }
}

/// The live instances of one handle, and its cap on them.
struct Census {
    live: AtomicUsize,
    peak: AtomicUsize,
    cap: Option<Cap>,
}

/// A cap on live instances: an activation takes a permit before it reads the
/// snapshot; the instance gives it back once it is gone.
struct Cap {
    max: usize,
    permits: Semaphore,
    /// Permits granted beyond `max` because every live actor stayed busy while
    /// activations waited; taken back first as instances end.
    overdraft: AtomicUsize,
    /// Activations waiting for a permit.
    waiting: AtomicUsize,
    /// Instances ended so far: the sweeper's sign of progress.
    released: AtomicU64,
}

/// One live instance, counted until dropped.
pub(crate) struct Place(Arc<Census>);

impl Drop for Place {
    fn drop(&mut self) {
        let census = &self.0;
        census.live.fetch_sub(1, Ordering::AcqRel);
        if let Some(cap) = &census.cap {
            cap.released.fetch_add(1, Ordering::Relaxed);
            let owed = cap
                .overdraft
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok();
            if !owed {
                cap.permits.add_permits(1);
            }
        }
    }
}

impl Census {
    fn new(max_live: Option<usize>) -> Self {
        Self {
            live: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            cap: max_live.map(|max| Cap {
                max,
                permits: Semaphore::new(max),
                overdraft: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
                released: AtomicU64::new(0),
            }),
        }
    }

    /// Waits for a place for one more instance under the cap (waking the
    /// sweeper to free one); `None` if the handle shut down first.
    async fn admit(self: &Arc<Self>, over_cap: &Notify) -> Option<Place> {
        if let Some(cap) = &self.cap {
            let permit = match cap.permits.try_acquire() {
                Ok(permit) => permit,
                Err(TryAcquireError::Closed) => return None,
                Err(TryAcquireError::NoPermits) => {
                    cap.waiting.fetch_add(1, Ordering::AcqRel);
                    over_cap.notify_one();
                    let permit = cap.permits.acquire().await;
                    cap.waiting.fetch_sub(1, Ordering::AcqRel);
                    permit.ok()?
                }
            };
            // Given back by the place's drop, not by the permit's.
            permit.forget();
        }
        let live = self.live.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak.fetch_max(live, Ordering::Relaxed);
        Some(Place(Arc::clone(self)))
    }
}

/// A message through [`VirtualActors`] that could not be handled.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum VirtualError {
    /// Activating the actor failed (its snapshot could not be read or decoded,
    /// another instance owns the id, ...); the message was not delivered.
    #[error("activating virtual actor {id} failed: {source}")]
    Activation {
        /// The actor.
        id: ActorId,
        /// Why.
        #[source]
        source: Arc<PersistenceError>,
    },
    /// The actor took the message but stopped or failed before replying.
    #[error("virtual actor {id} stopped or failed before replying")]
    NoReply {
        /// The actor.
        id: ActorId,
    },
    /// The handle was shut down; the message was not delivered.
    #[error("the virtual actors handle is shut down; the message to {id} was not delivered")]
    Closed {
        /// The actor.
        id: ActorId,
    },
    /// A passivation's final save failed; the actor stays live with its state.
    #[error("passivating virtual actor {id} failed; it stays live: {source}")]
    Passivation {
        /// The actor.
        id: ActorId,
        /// The save's error.
        #[source]
        source: Arc<PersistenceError>,
    },
}

/// What a handle has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct VirtualStats {
    /// Instances live now: restoring, running or passivating. With a cap
    /// ([`VirtualActorsBuilder::max_live`]) at most the cap, unless every live
    /// actor stayed busy while others waited.
    pub live: usize,
    /// The most instances live at once.
    pub peak_live: usize,
    /// Ids whose messages wait for a place under the cap before they activate.
    pub waiting: usize,
    /// Activations that started an actor.
    pub activations: u64,
    /// Passivations completed (final snapshot acknowledged, actor stopped).
    pub passivations: u64,
    /// Passivations whose final save failed (the actor stayed live).
    pub failed_passivations: u64,
    /// Messages that could not be delivered and had no sender to return to
    /// (tells).
    pub dead_letters: u64,
}

/// A message waiting in a slot, and who to tell how it went.
struct Pending<M> {
    msg: Option<M>,
    /// An ask: its sender hears of a drop through its reply.
    ask: bool,
    /// `Ok` once it is in a live actor's mailbox, or the error.
    notify: Option<oneshot::Sender<Result<(), VirtualError>>>,
}

/// Who waits for the outcome of a passivation request.
type Waiters = Vec<oneshot::Sender<Result<bool, VirtualError>>>;

/// Counters of one activation.
#[derive(Default)]
struct SlotStats {
    /// Asks through the handle still waiting for their reply.
    asks: AtomicU32,
}

enum Slot<A: Actor> {
    Activating {
        buffer: Vec<Pending<A::Msg>>,
        stats: Arc<SlotStats>,
    },
    Live {
        actor: ActorRef<A>,
        /// Messages routed to it (changes with every one).
        activity: u64,
        /// The sweep tick of its last message.
        seen: u64,
        /// The handle's use count at its last message (with a cap on live
        /// actors only): orders the least recently used exactly, where ticks
        /// only tell sweeps apart.
        used: u64,
        stats: Arc<SlotStats>,
        /// [`VirtualActors::passivate`] calls waiting for the next request's
        /// outcome.
        waiters: Waiters,
    },
    Passivating {
        actor: ActorRef<A>,
        buffer: Vec<Pending<A::Msg>>,
        stats: Arc<SlotStats>,
        waiters: Waiters,
        /// A passivation the actor accepted (not a stop of its own).
        accepted: bool,
    },
}

const SHARDS: usize = 32;

type Shard<A> = Mutex<HashMap<ActorId, Slot<A>, foldhash::fast::RandomState>>;

/// Turns `id`'s live slot into a stopping one holding `buffer` (for the next
/// activation); `accepted`: the stop is a passivation the actor agreed to.
/// Returns the slot's stats, or `None` if the id was not live.
fn stop_live<A: Actor>(
    slots: &mut HashMap<ActorId, Slot<A>, foldhash::fast::RandomState>,
    id: ActorId,
    buffer: Vec<Pending<A::Msg>>,
    accepted: bool,
) -> Option<Arc<SlotStats>> {
    let Some(Slot::Live {
        actor,
        stats,
        waiters,
        ..
    }) = slots.remove(&id)
    else {
        return None;
    };
    slots.insert(
        id,
        Slot::Passivating {
            actor,
            buffer,
            stats: Arc::clone(&stats),
            waiters,
            accepted,
        },
    );
    Some(stats)
}

/// Builds a persistent actor's first arguments from its id.
type Fresh<A> = dyn Fn(ActorId) -> <A as PersistentActor>::ActorArgs + Send + Sync;
/// Builds a persistent actor's runtime arguments from its id.
type Runtime<A> = dyn Fn(ActorId) -> <A as PersistentActor>::RuntimeArgs + Send + Sync;

struct Inner<A: PersistentActor> {
    root: RootContext,
    storage: SharedStorage,
    fresh: Box<Fresh<A>>,
    runtime_args: Box<Runtime<A>>,
    mode: ClaimMode,
    idle_ticks: Option<u64>,
    max_live: Option<usize>,
    shards: Box<[Shard<A>]>,
    /// Advanced by the sweeper, a quarter of the idle time at a time.
    tick: AtomicU64,
    /// Messages routed to live actors, counted with a cap on live actors only.
    uses: AtomicU64,
    closed: AtomicBool,
    /// Ids with a slot: activating (or waiting to), live or passivating.
    slots: AtomicUsize,
    census: Arc<Census>,
    activations: AtomicU64,
    passivations: AtomicU64,
    failed_passivations: AtomicU64,
    dead_letters: AtomicU64,
    /// Wakes `shutdown`: an activation settled or an id is gone.
    changed: Notify,
    /// Wakes the sweeper early: more ids are live than the cap.
    over_cap: Notify,
    /// Itself, for the gates handed to actors and for activation tasks.
    this: Weak<Inner<A>>,
}

/// A handle to every actor of type `A` in one storage, by id. Cheap to clone;
/// clones share the actors.
///
/// ```
/// use std::time::Duration;
/// use serde::{Deserialize, Serialize};
/// use theta::persistence::{MemoryStorage, SharedStorage, SnapshotPolicy, VirtualActors};
/// use theta::prelude::*;
///
/// #[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
/// struct Cart { items: Vec<String> }
///
/// #[derive(Debug)]
/// struct Add(String);
/// #[derive(Debug)]
/// struct Count;
///
/// #[actor("6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b", snapshot)]
/// impl Actor for Cart {
///     const _: () = {
///         async |Add(item): Add| { self.items.push(item); };
///         async |_: Count| -> usize { self.items.len() };
///     };
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let memory = MemoryStorage::new();
/// let storage = SharedStorage::new(memory.clone())
///     .with_policy(SnapshotPolicy::new().every_n_messages(1).confirm_replies());
/// let root = RootContext::default();
/// let carts = VirtualActors::<Cart>::builder(&root, storage, |_id| Cart { items: Vec::new() })
///     .idle_after(Duration::from_secs(60))
///     .build();
///
/// let id = ActorId::new_v4();
/// carts.tell(id, Add("tea".into()))?; // activates the cart
/// assert_eq!(carts.ask(id, Count).await?, 1);
///
/// carts.shutdown().await; // passivates every cart: final snapshots, stops
/// assert_eq!(carts.stats().passivations, 1);
///
/// // Another handle (after a restart, say) finds the cart where it was left.
/// let carts = VirtualActors::<Cart>::builder(&root, SharedStorage::new(memory), |_id| {
///     Cart { items: Vec::new() }
/// })
/// .build();
/// assert_eq!(carts.ask(id, Count).await?, 1);
/// # Ok(())
/// # }
/// ```
pub struct VirtualActors<A: PersistentActor> {
    inner: Arc<Inner<A>>,
}

impl<A: PersistentActor> Clone for VirtualActors<A> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<A: PersistentActor> fmt::Debug for VirtualActors<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualActors")
            .field("actor", &std::any::type_name::<A>())
            .field("stats", &self.stats())
            .finish()
    }
}

/// Options for [`VirtualActors`]; start with [`VirtualActors::builder`].
pub struct VirtualActorsBuilder<A: PersistentActor> {
    root: RootContext,
    storage: SharedStorage,
    fresh: Box<Fresh<A>>,
    runtime_args: Box<Runtime<A>>,
    mode: ClaimMode,
    idle_after: Option<Duration>,
    max_live: Option<usize>,
}

impl<A: PersistentActor> fmt::Debug for VirtualActorsBuilder<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualActorsBuilder")
            .field("mode", &self.mode)
            .field("idle_after", &self.idle_after)
            .field("max_live", &self.max_live)
            .finish_non_exhaustive()
    }
}

impl<A: PersistentActor> VirtualActors<A>
where
    A::RuntimeArgs: Default,
{
    /// A handle for actors of type `A` in `storage`, spawned as top-level actors
    /// of `root`. An id with no stored snapshot starts from `fresh(id)`; its
    /// runtime arguments are `Default::default()` (see
    /// [`builder_with`](Self::builder_with) otherwise).
    pub fn builder(
        root: &RootContext,
        storage: impl PersistentStorage + 'static,
        fresh: impl Fn(ActorId) -> A::ActorArgs + Send + Sync + 'static,
    ) -> VirtualActorsBuilder<A> {
        Self::builder_with(root, storage, fresh, |_| Default::default())
    }
}

impl<A: PersistentActor> VirtualActors<A> {
    /// [`builder`](Self::builder) with the runtime arguments of each activation
    /// built from its id.
    pub fn builder_with(
        root: &RootContext,
        storage: impl PersistentStorage + 'static,
        fresh: impl Fn(ActorId) -> A::ActorArgs + Send + Sync + 'static,
        runtime_args: impl Fn(ActorId) -> A::RuntimeArgs + Send + Sync + 'static,
    ) -> VirtualActorsBuilder<A> {
        let storage = storage
            .shared()
            .unwrap_or_else(|| SharedStorage::new(storage));
        VirtualActorsBuilder {
            root: root.clone(),
            storage,
            fresh: Box::new(fresh),
            runtime_args: Box::new(runtime_args),
            mode: ClaimMode::Exclusive,
            idle_after: None,
            max_live: None,
        }
    }
}

impl<A: PersistentActor> VirtualActorsBuilder<A> {
    /// Passivate an actor once it has been idle this long (checked a quarter of
    /// this time at a time, so it happens within 1.25× of it). Default: never.
    pub fn idle_after(mut self, idle: Duration) -> Self {
        self.idle_after = Some(idle);
        self
    }

    /// At most `n` instances live at once. An activation beyond the cap waits
    /// (its messages held in order, as while activating) until the least
    /// recently used idle actor has passivated; so a burst of new ids never
    /// holds more than `n` actors in memory. Busy actors are never passivated:
    /// if every live actor stays busy for two sweep periods while activations
    /// wait (say, each is waiting on an ask to a waiting id), the waiting ones
    /// are let in over the cap rather than deadlock, and the excess is
    /// passivated once actors are idle again ([`VirtualStats::live`] shows
    /// it). The sweep period is a quarter of [`idle_after`](Self::idle_after),
    /// or 100 ms without it. Default: no cap.
    pub fn max_live(mut self, n: usize) -> Self {
        self.max_live = Some(n.max(1));
        self
    }

    /// Activate by taking ids over ([`ClaimMode::Takeover`]): an instance
    /// elsewhere that holds one is fenced instead of this activation being
    /// refused. For failover; the default refuses
    /// ([`PersistenceError::OwnedElsewhere`]).
    pub fn take_over(mut self) -> Self {
        self.mode = ClaimMode::Takeover;
        self
    }

    /// The handle. Must be called inside a tokio runtime (it starts the idle
    /// sweeper when idle passivation or a cap is configured).
    pub fn build(self) -> VirtualActors<A> {
        let tick = self
            .idle_after
            .map(|idle| (idle / 4).max(Duration::from_millis(1)));
        let inner = Arc::new_cyclic(|this| Inner {
            root: self.root,
            storage: self.storage,
            fresh: self.fresh,
            runtime_args: self.runtime_args,
            mode: self.mode,
            idle_ticks: tick.map(|_| 4),
            max_live: self.max_live,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            tick: AtomicU64::new(0),
            uses: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            slots: AtomicUsize::new(0),
            census: Arc::new(Census::new(self.max_live)),
            activations: AtomicU64::new(0),
            passivations: AtomicU64::new(0),
            failed_passivations: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            changed: Notify::new(),
            over_cap: Notify::new(),
            this: this.clone(),
        });
        if tick.is_some() || self.max_live.is_some() {
            let period = tick.unwrap_or(Duration::from_millis(100));
            tokio::spawn(sweep(Arc::downgrade(&inner), period));
        }
        VirtualActors { inner }
    }
}

impl<A: PersistentActor> VirtualActors<A> {
    /// Sends `msg` to actor `id`, activating it if it is not live. Returns at
    /// once; messages from one sender are handled in order. A message that
    /// turns out undeliverable (its activation fails) is counted in
    /// [`VirtualStats::dead_letters`] and logged; use [`send`](Self::send) to
    /// learn of it.
    pub fn tell<M: Message<A>>(&self, id: ActorId, msg: M) -> Result<(), VirtualError> {
        self.inner
            .route(id, Some(msg.into_msg(None)), false, None)
            .map(drop)
    }

    /// Sends `msg` to actor `id` and waits until it is in a live instance's
    /// mailbox (after the activation, if one was needed), or returns why it
    /// cannot be.
    pub async fn send<M: Message<A>>(&self, id: ActorId, msg: M) -> Result<(), VirtualError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .route(id, Some(msg.into_msg(None)), false, Some(tx))?;
        rx.await.unwrap_or(Err(VirtualError::NoReply { id }))
    }

    /// Sends `msg` to actor `id` (activating it if needed) and waits for the
    /// handler's return value.
    pub async fn ask<M: Message<A>>(&self, id: ActorId, msg: M) -> Result<M::Return, VirtualError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let (_waiting, held) = self
            .inner
            .route_ask(id, msg.into_msg(Some(Reply::new(reply_tx))))?;
        // Delivered at once (the id was live): only the reply is left to wait for.
        let Some(notify_rx) = held else {
            return reply_rx.await.map_err(|_| VirtualError::NoReply { id });
        };
        let mut reply_rx = pin!(reply_rx);
        let mut notify_rx = pin!(notify_rx);
        tokio::select! {
            biased;
            delivered = &mut notify_rx => {
                if let Ok(Err(err)) = delivered {
                    return Err(err);
                }
            }
            reply = &mut reply_rx => {
                return reply.map_err(|_| match notify_rx.try_recv() {
                    Ok(Err(err)) => err,
                    _ => VirtualError::NoReply { id },
                });
            }
        }
        reply_rx.await.map_err(|_| VirtualError::NoReply { id })
    }

    /// Activates actor `id` if it is not live, and waits until it is.
    pub async fn activate(&self, id: ActorId) -> Result<(), VirtualError> {
        let (tx, rx) = oneshot::channel();
        self.inner.route(id, None, false, Some(tx))?;
        rx.await.unwrap_or(Err(VirtualError::NoReply { id }))
    }

    /// Activates every actor of type `A` the storage holds, `parallelism` at a
    /// time; returns how many were activated, or the first error (listing the
    /// storage, or activating an id).
    pub async fn activate_all(&self, parallelism: usize) -> Result<usize, VirtualError> {
        let ids = self
            .inner
            .storage
            .try_list_type(A::TYPE_ID)
            .await
            .map_err(|source| VirtualError::Activation {
                id: ActorId::nil(),
                source: Arc::new(PersistenceError::Read {
                    id: ActorId::nil(),
                    source,
                }),
            })?;
        let count = ids.len();
        let results = super::respawn::bounded(
            ids.into_iter().map(|id| self.activate(id)).collect(),
            parallelism,
        )
        .await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(count)
    }

    /// Whether actor `id` is live (activating, live or passivating) in this
    /// handle.
    pub fn is_live(&self, id: ActorId) -> bool {
        lock(self.inner.shard(id)).contains_key(&id)
    }

    /// What the handle has done so far.
    pub fn stats(&self) -> VirtualStats {
        let i = &self.inner;
        VirtualStats {
            live: i.census.live.load(Ordering::Relaxed),
            peak_live: i.census.peak.load(Ordering::Relaxed),
            waiting: i
                .census
                .cap
                .as_ref()
                .map_or(0, |cap| cap.waiting.load(Ordering::Relaxed)),
            activations: i.activations.load(Ordering::Relaxed),
            passivations: i.passivations.load(Ordering::Relaxed),
            failed_passivations: i.failed_passivations.load(Ordering::Relaxed),
            dead_letters: i.dead_letters.load(Ordering::Relaxed),
        }
    }

    /// Asks actor `id` to passivate now, as if it were idle, without waiting:
    /// `false` if it is not live. The actor refuses if a message reaches it
    /// before the request does, or while it is busy.
    pub fn request_passivation(&self, id: ActorId) -> bool {
        let shard = lock(self.inner.shard(id));
        match shard.get(&id) {
            Some(Slot::Live {
                actor, activity, ..
            }) => actor.wake(PASSIVATE | (*activity & !PASSIVATE)),
            _ => false,
        }
    }

    /// Asks actor `id` to passivate now and waits for the outcome: `Ok(true)`
    /// once its final snapshot is acknowledged and it stopped; `Ok(false)` if it
    /// was not live or refused (busy, or a message came in first);
    /// [`VirtualError::Passivation`] if the final save failed (it stays live).
    pub async fn passivate(&self, id: ActorId) -> Result<bool, VirtualError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut shard = lock(self.inner.shard(id));
            match shard.get_mut(&id) {
                Some(Slot::Live {
                    actor,
                    activity,
                    waiters,
                    ..
                }) => {
                    if !actor.wake(PASSIVATE | (*activity & !PASSIVATE)) {
                        return Ok(false);
                    }
                    waiters.push(tx);
                }
                _ => return Ok(false),
            }
        }
        rx.await.unwrap_or(Ok(false))
    }

    /// Passivates every live actor (final snapshots, acknowledged) and refuses
    /// new messages ([`VirtualError::Closed`]); returns when every actor of this
    /// handle has stopped.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.closed.store(true, Ordering::Release);
        if let Some(cap) = &inner.census.cap {
            // Activations waiting for a place return their messages instead.
            cap.permits.close();
        }
        loop {
            let mut changed = pin!(inner.changed.notified());
            changed.as_mut().enable();
            if inner.slots.load(Ordering::Acquire) == 0 {
                return;
            }
            for shard in inner.shards.iter() {
                for slot in lock(shard).values() {
                    if let Slot::Live { actor, .. } = slot {
                        actor.wake(FORCE);
                    }
                }
            }
            changed.await;
        }
    }
}

/// An ask through the handle, counted as waiting for its reply until dropped
/// (counted under the shard lock, so that no passivation slips in between).
enum AskGuard<M: Send + 'static> {
    /// Counted in its slot's stats by [`Inner::route`]: it went through a
    /// slot that was activating or passivating.
    Slot(Arc<SlotStats>),
    /// Counted on the live instance it went to (the fast path: no other
    /// memory than the actor's own is touched).
    Live {
        /// Uncounts itself when dropped.
        _ticket: PendingAsk<M>,
    },
}

impl<M: Send + 'static> Drop for AskGuard<M> {
    fn drop(&mut self) {
        if let Self::Slot(stats) = self {
            stats.asks.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl<A: PersistentActor> Inner<A> {
    fn shard(&self, id: ActorId) -> &Shard<A> {
        let folded = id
            .as_bytes()
            .iter()
            .fold(0usize, |acc, b| acc ^ usize::from(*b));
        &self.shards[folded % SHARDS]
    }

    /// [`route`](Self::route) for an ask: a delivery notice is created only if
    /// the message has to wait in the slot (the id is not live).
    #[allow(clippy::type_complexity)]
    fn route_ask(
        &self,
        id: ActorId,
        msg: A::Msg,
    ) -> Result<
        (
            AskGuard<A::Msg>,
            Option<oneshot::Receiver<Result<(), VirtualError>>>,
        ),
        VirtualError,
    > {
        if self.closed.load(Ordering::Acquire) {
            return Err(VirtualError::Closed { id });
        }
        {
            let mut shard = lock(self.shard(id));
            if let Some(Slot::Live {
                actor,
                activity,
                seen,
                used,
                ..
            }) = shard.get_mut(&id)
            {
                match actor.push_msg(msg, true) {
                    Ok(()) => {
                        *activity += 1;
                        *seen = self.tick.load(Ordering::Relaxed);
                        *used = self.next_use();
                        let guard = AskGuard::Live {
                            _ticket: actor.pending_ask(),
                        };
                        return Ok((guard, None));
                    }
                    Err(msg) => {
                        drop(shard);
                        let (tx, rx) = oneshot::channel();
                        let stats = self.route(id, Some(msg), true, Some(tx))?;
                        return Ok((AskGuard::Slot(stats), Some(rx)));
                    }
                }
            }
        }
        let (tx, rx) = oneshot::channel();
        let stats = self.route(id, Some(msg), true, Some(tx))?;
        Ok((AskGuard::Slot(stats), Some(rx)))
    }

    /// Where a message for `id` goes: into the live actor's mailbox, or held in
    /// its slot (starting its activation if nothing is there). The slot's
    /// stats are returned; an ask's message is counted in them (under the
    /// lock) as waiting for its reply, for the caller's [`AskGuard::Slot`].
    fn route(
        &self,
        id: ActorId,
        msg: Option<A::Msg>,
        ask: bool,
        notify: Option<oneshot::Sender<Result<(), VirtualError>>>,
    ) -> Result<Arc<SlotStats>, VirtualError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(VirtualError::Closed { id });
        }
        // Counted while the lock is held: no passivation can be accepted
        // between its delivery and its count.
        let counts = ask && msg.is_some();
        let counted = |stats: &Arc<SlotStats>| {
            if counts {
                stats.asks.fetch_add(1, Ordering::AcqRel);
            }
            Arc::clone(stats)
        };
        let mut shard = lock(self.shard(id));
        let mut pending = Pending { msg, ask, notify };
        let refused = match shard.get_mut(&id) {
            Some(Slot::Live {
                actor,
                activity,
                seen,
                used,
                stats,
                ..
            }) => match pending
                .msg
                .take()
                .map(|msg| actor.push_msg(msg, pending.ask))
            {
                None | Some(Ok(())) => {
                    *activity += 1;
                    *seen = self.tick.load(Ordering::Relaxed);
                    *used = self.next_use();
                    if let Some(notify) = pending.notify {
                        let _ = notify.send(Ok(()));
                    }
                    return Ok(counted(stats));
                }
                Some(Err(msg)) => {
                    pending.msg = Some(msg);
                    true
                }
            },
            Some(Slot::Activating { buffer, stats } | Slot::Passivating { buffer, stats, .. }) => {
                buffer.push(pending);
                return Ok(counted(stats));
            }
            None => false,
        };
        if refused {
            // The instance stopped on its own (failed, stopped itself): the
            // message waits for the next activation, which starts once that stop
            // is complete.
            return stop_live(&mut shard, id, vec![pending], false)
                .map(|stats| counted(&stats))
                .ok_or(VirtualError::NoReply { id });
        }
        let stats = counted(&Arc::new(SlotStats::default()));
        shard.insert(
            id,
            Slot::Activating {
                buffer: vec![pending],
                stats: Arc::clone(&stats),
            },
        );
        drop(shard);
        self.slots.fetch_add(1, Ordering::AcqRel);
        self.start_activation(id, None);
        Ok(stats)
    }

    /// Starts activating `id` (after `previous`, its last instance, has fully
    /// stopped).
    fn start_activation(&self, id: ActorId, previous: Option<WeakActorRef<A>>) {
        let Some(inner) = self.this.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            if let Some(previous) = previous {
                previous.stopped().await;
            }
            let Some(place) = inner.census.admit(&inner.over_cap).await else {
                inner.closed_before_activation(id);
                return;
            };
            let gate: Arc<dyn Gate> = inner.clone();
            let link = VirtualLink {
                gate,
                storage: inner.storage.clone(),
                _place: place,
            };
            let result = spawn_virtual(
                &inner.root,
                &inner.storage,
                id,
                inner.mode,
                (inner.runtime_args)(id),
                || (inner.fresh)(id),
                link,
            )
            .await;
            inner.activated(id, result);
        });
    }

    /// Settles an activation: the held messages go to the new instance, or back
    /// to their senders with the error.
    fn activated(&self, id: ActorId, result: Result<ActorRef<A>, PersistenceError>) {
        let mut shard = lock(self.shard(id));
        let Some(Slot::Activating { buffer, stats }) = shard.remove(&id) else {
            drop(shard);
            if let Ok(actor) = result {
                // Cannot happen (only activations leave Activating); do not
                // leak a live actor nobody routes to.
                actor.stop();
            }
            return;
        };
        match result {
            Ok(actor) => {
                self.activations.fetch_add(1, Ordering::Relaxed);
                let mut undelivered = Vec::new();
                for Pending { msg, ask, notify } in buffer {
                    let refused = msg.and_then(|msg| actor.push_msg(msg, ask).err());
                    match (refused, notify) {
                        (None, Some(notify)) => {
                            let _ = notify.send(Ok(()));
                        }
                        (None, None) => {}
                        (Some(msg), notify) => undelivered.push(Pending {
                            msg: Some(msg),
                            ask,
                            notify,
                        }),
                    }
                }
                let slot = if undelivered.is_empty() {
                    Slot::Live {
                        actor,
                        activity: 0,
                        seen: self.tick.load(Ordering::Relaxed),
                        used: self.next_use(),
                        stats,
                        waiters: Vec::new(),
                    }
                } else {
                    // It stopped before it got them: they wait for the next one.
                    Slot::Passivating {
                        actor,
                        buffer: undelivered,
                        stats,
                        waiters: Vec::new(),
                        accepted: false,
                    }
                };
                shard.insert(id, slot);
                drop(shard);
                // A shutdown in progress passivates it too.
                self.changed.notify_waiters();
            }
            Err(err) => {
                drop(shard);
                tracing::warn!(actor.id = %id, error = %err, "virtual actor activation failed");
                let source = Arc::new(err);
                self.bounce(
                    buffer,
                    &VirtualError::Activation {
                        id,
                        source: Arc::clone(&source),
                    },
                );
                // After the count, as above.
                self.gone();
            }
        }
    }

    /// The handle shut down while `id` waited for a place under the cap: its
    /// messages go back to their senders.
    fn closed_before_activation(&self, id: ActorId) {
        let mut shard = lock(self.shard(id));
        match shard.remove(&id) {
            Some(Slot::Activating { buffer, .. }) => {
                drop(shard);
                self.bounce(buffer, &VirtualError::Closed { id });
                self.gone();
            }
            Some(other) => {
                // Cannot happen (the activation owns its slot): leave it be.
                shard.insert(id, other);
            }
            None => {}
        }
    }

    /// Returns undeliverable messages to their senders; counts the others.
    fn bounce(&self, buffer: Vec<Pending<A::Msg>>, error: &VirtualError) {
        for Pending { msg, notify, .. } in buffer {
            match notify {
                Some(notify) => {
                    let _ = notify.send(Err(error.clone()));
                }
                None if msg.is_some() => {
                    self.dead_letters.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %error, "a message to a virtual actor could not be delivered");
                }
                None => {}
            }
            drop(msg);
        }
    }

    /// One id fewer has a slot.
    fn gone(&self) {
        self.slots.fetch_sub(1, Ordering::AcqRel);
        self.changed.notify_waiters();
    }
}

impl<A: PersistentActor> Gate for Inner<A> {
    fn begin(&self, id: ActorId, token: u64) -> bool {
        let mut shard = lock(self.shard(id));
        let accept = match shard.get(&id) {
            Some(Slot::Live {
                actor,
                activity,
                stats,
                ..
            }) => {
                token == FORCE
                    || (*activity & !PASSIVATE == token & !PASSIVATE
                        && stats.asks.load(Ordering::Acquire) == 0
                        && actor.pending_asks() == 0)
            }
            _ => false,
        };
        if !accept {
            if let Some(Slot::Live { waiters, .. }) = shard.get_mut(&id) {
                for waiter in waiters.drain(..) {
                    let _ = waiter.send(Ok(false));
                }
            }
            return false;
        }
        stop_live(&mut shard, id, Vec::new(), true);
        true
    }

    fn abort(&self, id: ActorId, error: &PersistenceError) {
        self.failed_passivations.fetch_add(1, Ordering::Relaxed);
        tracing::error!(actor.id = %id, error = %error, "passivation's final save failed; the actor stays live");
        let mut shard = lock(self.shard(id));
        let Some(Slot::Passivating {
            actor,
            buffer,
            stats,
            waiters,
            ..
        }) = shard.remove(&id)
        else {
            return;
        };
        let source = Arc::new(PersistenceError::Write {
            id,
            source: anyhow::anyhow!("{error}"),
        });
        for waiter in waiters {
            let _ = waiter.send(Err(VirtualError::Passivation {
                id,
                source: Arc::clone(&source),
            }));
        }
        let mut activity = 0;
        for Pending { msg, ask, notify } in buffer {
            if let Some(msg) = msg {
                // The actor is live (it is running this very call).
                let _ = actor.push_msg(msg, ask);
                activity += 1;
            }
            if let Some(notify) = notify {
                let _ = notify.send(Ok(()));
            }
        }
        shard.insert(
            id,
            Slot::Live {
                actor,
                activity,
                seen: self.tick.load(Ordering::Relaxed),
                used: self.next_use(),
                stats,
                waiters: Vec::new(),
            },
        );
    }

    fn stopped(&self, id: ActorId, unhandled: usize) {
        if unhandled > 0 {
            self.dead_letters
                .fetch_add(unhandled as u64, Ordering::Relaxed);
            tracing::warn!(actor.id = %id, unhandled, "a virtual actor stopped with messages unhandled");
        }
        let mut shard = lock(self.shard(id));
        let (actor, buffer) = match shard.remove(&id) {
            Some(Slot::Passivating {
                actor,
                buffer,
                waiters,
                accepted,
                ..
            }) => {
                for waiter in waiters {
                    let _ = waiter.send(Ok(accepted));
                }
                if accepted {
                    self.passivations.fetch_add(1, Ordering::Relaxed);
                }
                (actor, buffer)
            }
            Some(Slot::Live { actor, waiters, .. }) => {
                for waiter in waiters {
                    let _ = waiter.send(Ok(false));
                }
                (actor, Vec::new())
            }
            Some(activating @ Slot::Activating { .. }) => {
                // Another activation owns the slot now.
                shard.insert(id, activating);
                return;
            }
            None => return,
        };
        if buffer.is_empty() {
            drop(shard);
            drop(actor);
            self.gone();
            return;
        }
        if self.closed.load(Ordering::Acquire) {
            drop(shard);
            // Counted before the id stops counting as live: a shutdown that
            // sees none live reads the dead letters complete.
            self.bounce(buffer, &VirtualError::Closed { id });
            self.gone();
            return;
        }
        // Messages came while it was stopping: the next activation gets them.
        shard.insert(
            id,
            Slot::Activating {
                buffer,
                stats: Arc::new(SlotStats::default()),
            },
        );
        drop(shard);
        self.start_activation(id, Some(actor.downgrade()));
    }
}

/// The idle sweeper of a handle: every `period`, asks the idle actors to
/// passivate; woken early when an activation waits for a place under the cap,
/// asks the least recently used ones. Ends with the handle.
async fn sweep<A: PersistentActor>(inner: Weak<Inner<A>>, period: Duration) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    let mut stall = Stall::default();
    loop {
        let over_cap = match inner.upgrade() {
            Some(inner) => {
                let inner2 = Arc::clone(&inner);
                let wait = async move { inner2.over_cap.notified().await };
                // Not holding the handle while waiting: it ends when the last
                // user clone is dropped.
                drop(inner);
                Box::pin(wait)
            }
            None => return,
        };
        let ticked = tokio::select! {
            _ = interval.tick() => true,
            () = over_cap => false,
        };
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if Arc::strong_count(&inner) <= 1 && inner.slots.load(Ordering::Relaxed) == 0 {
            return;
        }
        let passivating = inner.sweep_once(ticked);
        if ticked {
            inner.break_stall(&mut stall, passivating);
        }
    }
}

/// What the sweeper saw at its last ticks of activations waiting under the cap.
#[derive(Default)]
struct Stall {
    /// [`Cap::released`] at the last tick.
    released: u64,
    /// Ticks in a row with activations waiting and no instance ending or
    /// passivating.
    ticks: u32,
}

impl<A: PersistentActor> Inner<A> {
    /// The use count for a message routed now (0 without a cap: nothing
    /// orders by it then).
    fn next_use(&self) -> u64 {
        if self.max_live.is_some() {
            self.uses.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        }
    }

    /// One sweep: on a tick (`ticked`), the idle actors are asked to passivate;
    /// while more instances are live or waiting than the cap allows, the least
    /// recently used idle ones are too (and a few more, so that a burst of
    /// activations does not need a sweep each). Returns how many ids are
    /// passivating.
    fn sweep_once(&self, ticked: bool) -> usize {
        let now = if ticked {
            self.tick.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.tick.load(Ordering::Relaxed)
        };
        let (over, spare) = self.census.cap.as_ref().map_or((0, 0), |cap| {
            let wanted =
                self.census.live.load(Ordering::Acquire) + cap.waiting.load(Ordering::Acquire);
            (wanted.saturating_sub(cap.max), cap.max / 64)
        });
        if !ticked && over == 0 {
            return 0;
        }
        let idle_ticks = self.idle_ticks.filter(|_| ticked);
        let mut passivating = 0;
        let mut oldest: Vec<(u64, ActorId)> = Vec::new();
        for shard in self.shards.iter() {
            for (id, slot) in lock(shard).iter() {
                let (actor, activity, seen, used, stats) = match slot {
                    Slot::Live {
                        actor,
                        activity,
                        seen,
                        used,
                        stats,
                        ..
                    } => (actor, activity, seen, used, stats),
                    Slot::Passivating { .. } => {
                        passivating += 1;
                        continue;
                    }
                    Slot::Activating { .. } => continue,
                };
                if stats.asks.load(Ordering::Relaxed) > 0 || actor.pending_asks() > 0 {
                    continue;
                }
                let token = PASSIVATE | (*activity & !PASSIVATE);
                if idle_ticks.is_some_and(|idle| now.saturating_sub(*seen) >= idle) {
                    actor.wake(token);
                } else if over > 0 {
                    oldest.push((*used, *id));
                }
            }
        }
        // Those already passivating free their places soon.
        let wanted = over.saturating_sub(passivating);
        if wanted > 0 {
            let take = (wanted + spare).min(oldest.len());
            if take < oldest.len() {
                oldest.select_nth_unstable(take);
                oldest.truncate(take);
            }
            for (_, id) in oldest {
                let shard = lock(self.shard(id));
                if let Some(Slot::Live {
                    actor, activity, ..
                }) = shard.get(&id)
                {
                    actor.wake(PASSIVATE | (*activity & !PASSIVATE));
                }
            }
        }
        passivating
    }

    /// Activations waiting under the cap while, for two ticks in a row, no
    /// instance ended and none was passivating: every live actor is busy (it
    /// may be waiting on one of the waiting ids). Rather than deadlock, the
    /// waiting ones are let in over the cap; the excess is passivated as soon
    /// as actors become idle.
    fn break_stall(&self, stall: &mut Stall, passivating: usize) {
        let Some(cap) = &self.census.cap else {
            return;
        };
        let released = cap.released.load(Ordering::Acquire);
        let waiting = cap.waiting.load(Ordering::Acquire);
        if waiting > 0 && passivating == 0 && released == stall.released {
            stall.ticks += 1;
        } else {
            stall.ticks = 0;
        }
        stall.released = released;
        if stall.ticks >= 2 {
            stall.ticks = 0;
            tracing::warn!(
                waiting,
                max_live = cap.max,
                "every live virtual actor stayed busy while activations waited; activating over the cap"
            );
            cap.overdraft.fetch_add(waiting, Ordering::AcqRel);
            cap.permits.add_permits(waiting);
        }
    }
}
