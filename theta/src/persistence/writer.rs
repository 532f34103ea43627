//! Automatic snapshots: when the policy says to save ([`AutoSave`]) and the
//! background [`Writer`] that hands the bytes to the storage.
//!
//! Encoding happens on the actor's task, right after the handler (the state is
//! borrowed there); the write happens on a writer task, so the actor goes on with
//! its next message. One write is in flight per actor at a time, and a newer
//! snapshot replaces one that has not started yet: the last write is always the
//! newest state. The writer task exists only while there is something to write,
//! and the interval timer only while something changed since the last save, so
//! an idle persistent actor costs no task besides its own.

use std::pin::pin;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::actor::Context;
use crate::cell::Signal;
use crate::mailbox::lock;
use crate::task::catch;

use super::activation::{HeldReply, PersistState};
use super::snapshot::encode_stamped as encode;
use super::{
    Fenced, PersistentActor, PersistentStorage, SharedStorage, SnapshotPolicy, StaleSnapshot,
};

/// The automatic part of a persistent actor: policy counters and its writer.
pub(crate) struct AutoSave {
    policy: SnapshotPolicy,
    since_save: u32,
    dirty: bool,
    /// An interval wake-up is on its way.
    timer_armed: bool,
    writer: Arc<Writer>,
    storage: SharedStorage,
}

impl AutoSave {
    pub(crate) fn new(
        policy: SnapshotPolicy,
        storage: SharedStorage,
        state: &PersistState,
    ) -> Self {
        state.set_confirms_replies(policy.confirms_replies());
        Self {
            policy,
            since_save: 0,
            dirty: false,
            timer_armed: false,
            writer: Arc::new(Writer::default()),
            storage,
        }
    }

    pub(crate) fn after_turn<A: PersistentActor>(
        &mut self,
        actor: &A,
        ctx: &Context<A>,
        state: &Arc<PersistState>,
    ) {
        self.dirty = true;
        self.since_save += 1;
        let every = self
            .policy
            .messages()
            .is_some_and(|n| self.since_save >= n.get());
        // A held reply waits for a snapshot: take one now.
        let held = self.policy.confirms_replies() && state.has_held_replies();
        if every || held {
            self.save(actor, state);
        } else if let Some(period) = self.policy.interval()
            && !self.timer_armed
        {
            // The first change since the last save: save within one interval.
            self.timer_armed = true;
            let cell = Arc::clone(&ctx.cell);
            tokio::spawn(async move {
                tokio::time::sleep(period).await;
                cell.signal(Signal::Wake);
            });
        }
    }

    pub(crate) fn on_wake<A: PersistentActor>(
        &mut self,
        actor: &A,
        _ctx: &Context<A>,
        state: &Arc<PersistState>,
    ) {
        self.timer_armed = false;
        if self.dirty {
            self.save(actor, state);
        }
    }

    pub(crate) async fn before_restart(&mut self) {
        self.writer.flush().await;
        self.dirty = false;
        self.since_save = 0;
    }

    pub(crate) fn on_graceful_stop<A: PersistentActor>(
        &mut self,
        actor: &A,
        state: &Arc<PersistState>,
    ) {
        if self.policy.saves_on_stop() {
            self.save(actor, state);
        }
    }

    /// Waits for the pending write; no save is taken after this.
    pub(crate) async fn finish(&mut self) {
        self.writer.close();
        self.writer.flush().await;
    }

    /// Encodes now (on the actor's task) and hands the bytes to the writer.
    fn save<A: PersistentActor>(&mut self, actor: &A, state: &Arc<PersistState>) {
        self.since_save = 0;
        self.dirty = false;
        let stamp = state.next_stamp();
        let replies = state.take_held();
        match encode::<A>(state.id, stamp, actor) {
            Ok(bytes) => self.writer.submit(
                Job {
                    sequence: stamp.sequence,
                    bytes,
                    replies,
                },
                &self.storage,
                state,
            ),
            // The held replies drop with the error: their asks fail.
            Err(err) => tracing::error!(error = %err, "automatic snapshot not taken"),
        }
    }
}

/// A one-slot mailbox between an actor and its writer task.
#[derive(Default)]
pub(crate) struct Writer {
    slot: Mutex<Slot>,
    idle: Notify,
}

#[derive(Default)]
struct Slot {
    pending: Option<Job>,
    /// A writer task is running.
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
    fn submit(self: &Arc<Self>, mut job: Job, storage: &SharedStorage, state: &Arc<PersistState>) {
        let mut slot = lock(&self.slot);
        if slot.closed {
            return;
        }
        if let Some(older) = slot.pending.take() {
            // The newer snapshot includes everything the older one did, so it
            // also releases the older one's replies.
            let mut replies = older.replies;
            replies.append(&mut job.replies);
            job.replies = replies;
        }
        slot.pending = Some(job);
        if !slot.busy {
            slot.busy = true;
            drop(slot);
            tokio::spawn(write_loop(
                Arc::clone(self),
                storage.clone(),
                Arc::clone(state),
            ));
        }
    }

    /// No more snapshots are accepted.
    fn close(&self) {
        lock(&self.slot).closed = true;
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

    /// The next job, or `None` (and the task ends) when there is none.
    fn next(&self) -> Option<Job> {
        let mut slot = lock(&self.slot);
        let job = slot.pending.take();
        if job.is_none() {
            slot.busy = false;
            drop(slot);
            self.idle.notify_waiters();
        }
        job
    }
}

async fn write_loop(writer: Arc<Writer>, storage: SharedStorage, state: Arc<PersistState>) {
    while let Some(job) = writer.next() {
        write(job, &storage, &state).await;
    }
}

async fn write(job: Job, storage: &SharedStorage, state: &PersistState) {
    let Job {
        sequence,
        bytes,
        replies,
    } = job;
    let written = catch(storage.try_write(state.id, bytes)).await;
    match written {
        Ok(Ok(())) => replies.into_iter().for_each(|reply| reply()),
        Ok(Err(err)) if err.is::<Fenced>() => {
            let current = err.downcast_ref::<Fenced>().map_or(u64::MAX, |f| f.current);
            drop(replies);
            state.fenced(current);
        }
        Ok(Err(err)) if err.is::<StaleSnapshot>() => {
            let stored = err
                .downcast_ref::<StaleSnapshot>()
                .map_or(u64::MAX, |s| s.stored);
            if stored <= state.last_sequence() {
                // A later save of this actor (a manual one) is durable and
                // includes this state.
                tracing::debug!(sequence, stored, "storage already holds a newer snapshot");
                replies.into_iter().for_each(|reply| reply());
            } else {
                tracing::error!(
                    actor.id = %state.id,
                    sequence,
                    stored,
                    "storage holds a snapshot this actor never wrote; is another process writing this id?"
                );
            }
        }
        Ok(Err(err)) => {
            tracing::error!(
                actor.id = %state.id,
                sequence,
                error = %format!("{err:#}"),
                "automatic snapshot write failed"
            );
        }
        Err(_) => tracing::error!(
            actor.id = %state.id,
            sequence,
            "storage panicked writing an automatic snapshot"
        ),
    }
}

/// The automatic-save machinery for a new persistent actor, if its effective
/// policy is not manual.
pub(crate) fn auto_save<A: PersistentActor, S: PersistentStorage>(
    storage: &S,
    state: &PersistState,
) -> Result<Option<AutoSave>, super::PersistenceError> {
    let shared = storage.shared();
    let policy = shared
        .as_ref()
        .and_then(|s| s.policy())
        .unwrap_or_else(A::snapshot_policy);
    if policy.is_manual() {
        return Ok(None);
    }
    let shared = shared.ok_or(super::PersistenceError::NeedsSharedStorage(state.id))?;
    Ok(Some(AutoSave::new(policy, shared, state)))
}
