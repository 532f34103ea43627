//! Persistent actors at run time: the per-actor persistence state, the driver that
//! restores and saves, and the background writer of automatic snapshots.

use std::fmt;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::actor::{ActorArgs, ActorId};
use crate::context::Context;
use crate::runtime::{Driver, Signal, catch, lock};

use super::envelope::Stamp;
use super::snapshot::{decode_snapshot as decode, encode_stamped as encode};
use super::{
    OwnerId, PersistentActor, PersistentStorage, SharedStorage, SnapshotPolicy, StaleSnapshot,
};

/// An `ask` answer waiting for its snapshot to be durable.
pub(crate) type HeldReply = Box<dyn FnOnce() + Send>;

/// Per-actor persistence state shared by the context (manual saves, held replies)
/// and the driver.
pub(crate) struct PersistState {
    id: ActorId,
    /// The owner epoch this activation holds (0: the storage cannot fence).
    epoch: u64,
    /// Where to release the claim when the actor stops; `None` once released (or
    /// when nothing was claimed).
    claim: Mutex<Option<ClaimHandle>>,
    /// The last sequence number handed out.
    sequence: AtomicU64,
    /// The newest snapshot the storage acknowledged (or the one recovered): what a
    /// restart restores.
    last_saved: Mutex<Option<(u64, Vec<u8>)>>,
    /// Replies are held until their snapshot is durable.
    confirm: AtomicBool,
    /// Replies sent during the current turn.
    held: Mutex<Vec<HeldReply>>,
}

impl fmt::Debug for PersistState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistState")
            .field("id", &self.id)
            .field("sequence", &self.sequence)
            .finish_non_exhaustive()
    }
}

/// A claim to release: the storage it was made in and by whom.
pub(crate) struct ClaimHandle {
    pub(crate) storage: SharedStorage,
    pub(crate) owner: OwnerId,
}

impl PersistState {
    pub(crate) fn new(id: ActorId, sequence: u64, recovered: Option<Vec<u8>>) -> Self {
        Self::owned(id, 0, None, sequence, recovered)
    }

    /// The state of an actor activated under `epoch`, whose claim `claim` releases.
    pub(crate) fn owned(
        id: ActorId,
        epoch: u64,
        claim: Option<ClaimHandle>,
        sequence: u64,
        recovered: Option<Vec<u8>>,
    ) -> Self {
        Self {
            id,
            epoch,
            claim: Mutex::new(claim),
            sequence: AtomicU64::new(sequence),
            last_saved: Mutex::new(recovered.map(|bytes| (sequence, bytes))),
            confirm: AtomicBool::new(false),
            held: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn confirms_replies(&self) -> bool {
        self.confirm.load(Ordering::Relaxed)
    }

    pub(crate) fn hold_reply(&self, reply: HeldReply) {
        lock(&self.held).push(reply);
    }

    fn take_held(&self) -> Vec<HeldReply> {
        std::mem::take(&mut *lock(&self.held))
    }

    pub(crate) fn next_sequence(&self) -> u64 {
        self.sequence.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The stamp of the next save.
    pub(crate) fn next_stamp(&self) -> Stamp {
        Stamp::new(self.epoch, self.next_sequence())
    }

    /// Ends the claim of this activation in the storage (once).
    pub(crate) async fn release(&self) {
        let claim = lock(&self.claim).take();
        if let Some(ClaimHandle { storage, owner }) = claim
            && let Err(err) = storage.try_release(self.id, owner, self.epoch).await
        {
            tracing::warn!(error = %format!("{err:#}"), "releasing the ownership claim failed");
        }
    }

    pub(crate) fn record_saved(&self, sequence: u64, bytes: Vec<u8>) {
        let mut last = lock(&self.last_saved);
        if last.as_ref().is_none_or(|(stored, _)| *stored < sequence) {
            *last = Some((sequence, bytes));
        }
    }

    fn last_saved(&self) -> Option<Vec<u8>> {
        lock(&self.last_saved).as_ref().map(|(_, b)| b.clone())
    }
}

/// Builds a persistent actor from its first arguments, rebuilds it from the latest
/// saved snapshot after a restart, and runs the automatic policy.
pub(crate) struct PersistDriver<A: PersistentActor, I> {
    pub(crate) initial: I,
    pub(crate) runtime_args: A::RuntimeArgs,
    pub(crate) state: Arc<PersistState>,
    pub(crate) auto: Option<AutoSave>,
}

impl<A: PersistentActor, I: ActorArgs<Actor = A>> Driver<A> for PersistDriver<A, I> {
    async fn init(&mut self, ctx: &Context<A>) -> Result<A, String> {
        if let Some(auto) = &mut self.auto {
            auto.start_ticker(ctx);
        }
        match self.state.last_saved() {
            Some(bytes) => {
                let (snapshot, _) =
                    decode::<A>(self.state.id, &bytes).map_err(|e| e.to_string())?;
                let args = A::persistent_args(snapshot, self.runtime_args.clone());
                Ok(<A::ActorArgs as ActorArgs>::initialize(ctx.clone(), &args).await)
            }
            None => Ok(I::initialize(ctx.clone(), &self.initial).await),
        }
    }

    fn after_turn(&mut self, actor: &A, _ctx: &Context<A>) {
        if let Some(auto) = &mut self.auto {
            auto.dirty = true;
            auto.since_save += 1;
            let every = auto
                .policy
                .messages()
                .is_some_and(|n| auto.since_save >= n.get());
            // A held reply waits for a snapshot: take one now.
            let held = auto.policy.confirms_replies() && !lock(&self.state.held).is_empty();
            if every || held {
                auto.save(actor, &self.state);
            }
        }
    }

    fn on_tick(&mut self, actor: &A, _ctx: &Context<A>) {
        if let Some(auto) = &mut self.auto
            && auto.dirty
        {
            auto.save(actor, &self.state);
        }
    }

    async fn before_restart(&mut self) {
        // Replies of the failed turn are never released: those asks fail.
        drop(self.state.take_held());
        if let Some(auto) = &mut self.auto {
            // The restart restores the latest *acknowledged* snapshot: let writes in
            // flight settle first so it is really the latest.
            auto.writer.flush().await;
            auto.dirty = false;
            auto.since_save = 0;
        }
    }

    fn on_graceful_exit(&mut self, actor: &A, _ctx: &Context<A>) {
        if let Some(auto) = &mut self.auto
            && auto.policy.saves_on_stop()
        {
            auto.save(actor, &self.state);
        }
    }

    async fn finish(&mut self) {
        drop(self.state.take_held());
        if let Some(auto) = &mut self.auto {
            if let Some(ticker) = auto.ticker.take() {
                ticker.abort();
            }
            auto.writer.close();
            let _ = (&mut auto.task).await;
        }
        self.state.release().await;
    }
}

impl<A: PersistentActor, I> Drop for PersistDriver<A, I> {
    /// An aborted actor (shutdown timeout) never reaches `finish`: still end its
    /// claim, so the id can be activated again without waiting.
    fn drop(&mut self) {
        let claimed = lock(&self.state.claim).is_some();
        if claimed && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let state = Arc::clone(&self.state);
            runtime.spawn(async move { state.release().await });
        }
    }
}

/// The automatic part of a persistent actor: policy counters and its writer.
pub(crate) struct AutoSave {
    policy: SnapshotPolicy,
    since_save: u32,
    dirty: bool,
    writer: Arc<Writer>,
    task: JoinHandle<()>,
    ticker: Option<JoinHandle<()>>,
}

impl AutoSave {
    pub(crate) fn start(
        policy: SnapshotPolicy,
        storage: SharedStorage,
        state: Arc<PersistState>,
    ) -> Self {
        state
            .confirm
            .store(policy.confirms_replies(), Ordering::Relaxed);
        let writer = Arc::new(Writer::default());
        let task = tokio::spawn(write_loop(Arc::clone(&writer), storage, state));
        Self {
            policy,
            since_save: 0,
            dirty: false,
            writer,
            task,
            ticker: None,
        }
    }

    fn start_ticker<A: PersistentActor>(&mut self, ctx: &Context<A>) {
        let (Some(period), None) = (self.policy.interval(), &self.ticker) else {
            return;
        };
        let cell = Arc::clone(ctx.cell());
        self.ticker = Some(tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                interval.tick().await;
                if !cell.send_signal(Signal::Tick) {
                    break;
                }
            }
        }));
    }

    /// Encodes now (on the actor's task) and hands the bytes to the writer.
    fn save<A: PersistentActor>(&mut self, actor: &A, state: &PersistState) {
        self.since_save = 0;
        self.dirty = false;
        let stamp = state.next_stamp();
        let sequence = stamp.sequence;
        let replies = state.take_held();
        match encode::<A>(state.id, stamp, actor) {
            Ok(bytes) => self.writer.submit(Job {
                sequence,
                bytes,
                replies,
            }),
            // The held replies drop with the error: their asks fail.
            Err(err) => tracing::error!(error = %err, "automatic snapshot not taken"),
        }
    }
}

impl Drop for AutoSave {
    /// An aborted actor (shutdown timeout) never reaches `finish`: still let the
    /// writer finish what it has and end, and stop the ticker.
    fn drop(&mut self) {
        self.writer.close();
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
    }
}

/// A one-slot mailbox between an actor and its writer task: a newer snapshot
/// replaces one not yet started, so at most one write is in flight and the last
/// write is always the newest state.
#[derive(Default)]
pub(crate) struct Writer {
    slot: Mutex<Slot>,
    wake: Notify,
    idle: Notify,
}

#[derive(Default)]
struct Slot {
    pending: Option<Job>,
    busy: bool,
    closed: bool,
}

/// One snapshot to write, and the replies it releases once durable.
struct Job {
    sequence: u64,
    bytes: Vec<u8>,
    replies: Vec<HeldReply>,
}

impl Writer {
    fn submit(&self, mut job: Job) {
        let mut slot = lock(&self.slot);
        if let Some(older) = slot.pending.take() {
            // The newer snapshot includes everything the older one did, so it
            // also releases the older one's replies.
            let mut replies = older.replies;
            replies.append(&mut job.replies);
            job.replies = replies;
        }
        slot.pending = Some(job);
        drop(slot);
        self.wake.notify_one();
    }

    fn close(&self) {
        lock(&self.slot).closed = true;
        self.wake.notify_one();
    }

    /// Waits until nothing is pending or in flight.
    async fn flush(&self) {
        loop {
            let mut idle = pin!(self.idle.notified());
            idle.as_mut().enable();
            {
                let slot = lock(&self.slot);
                if slot.pending.is_none() && !slot.busy {
                    return;
                }
            }
            idle.await;
        }
    }

    fn take(&self) -> Option<Option<Job>> {
        let mut slot = lock(&self.slot);
        match slot.pending.take() {
            Some(job) => {
                slot.busy = true;
                Some(Some(job))
            }
            None if slot.closed => Some(None),
            None => None,
        }
    }

    fn done(&self) {
        let mut slot = lock(&self.slot);
        slot.busy = false;
        if slot.pending.is_none() {
            self.idle.notify_waiters();
        }
    }
}

async fn write_loop(writer: Arc<Writer>, storage: SharedStorage, state: Arc<PersistState>) {
    loop {
        let Job {
            sequence,
            bytes,
            replies,
        } = match writer.take() {
            Some(Some(job)) => job,
            Some(None) => break,
            None => {
                writer.wake.notified().await;
                continue;
            }
        };
        let saved = bytes.clone();
        match catch(storage.try_write(state.id, bytes)).await {
            Ok(Ok(())) => {
                state.record_saved(sequence, saved);
                replies.into_iter().for_each(|reply| reply());
            }
            Ok(Err(err)) if err.is::<StaleSnapshot>() => {
                let stored = err
                    .downcast_ref::<StaleSnapshot>()
                    .map_or(u64::MAX, |s| s.stored);
                if stored <= state.sequence.load(Ordering::SeqCst) {
                    // A later save of this actor (a manual one) is durable and
                    // includes this state.
                    tracing::debug!(sequence, stored, "storage already holds a newer snapshot");
                    replies.into_iter().for_each(|reply| reply());
                } else {
                    tracing::error!(
                        sequence,
                        stored,
                        "storage holds a snapshot this actor never wrote; is another process writing this id?"
                    );
                }
            }
            Ok(Err(err)) => {
                tracing::error!(sequence, error = %format!("{err:#}"), "automatic snapshot write failed");
            }
            Err(_) => tracing::error!(sequence, "storage panicked writing an automatic snapshot"),
        }
        writer.done();
    }
    writer.idle.notify_waiters();
}

/// Storage reads and writes used by the spawn paths and manual saves.
pub(crate) async fn save_now<A: PersistentActor, S: PersistentStorage>(
    state: &PersistState,
    storage: &S,
    actor: &A,
) -> Result<(), super::PersistenceError> {
    let stamp = state.next_stamp();
    let sequence = stamp.sequence;
    let bytes = encode::<A>(state.id, stamp, actor)?;
    let saved = bytes.clone();
    storage
        .try_write(state.id, bytes)
        .await
        .map_err(|e| super::PersistenceError::from_write(state.id, e))?;
    state.record_saved(sequence, saved);
    Ok(())
}
