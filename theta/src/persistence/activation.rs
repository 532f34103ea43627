//! One activation of a persistent actor at run time: its persistence state
//! ([`PersistState`], the context-side face of the core's seam) and its
//! [`PersistHooks`] (the task-side face): build from the decoded snapshot, save
//! around turns, restore the latest snapshot after a panic, end the ownership
//! claim when the actor stops.

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::actor::{ActorArgs, Context};
use crate::attachment::Attachment;
use crate::control::Control;
use crate::hooks::Hooks;
use crate::id::ActorId;
use crate::mailbox::lock;
use crate::supervision::ExitReason;

use super::envelope::Stamp;
use super::errors::is_not_found;
use super::snapshot::{decode_snapshot as decode, encode_stamped as encode};
use super::virtual_actors::VirtualLink;
use super::writer::{AutoSave, TIMER};
use super::{OwnerId, PersistenceError, PersistentActor, PersistentStorage, SharedStorage};

/// An `ask` answer waiting for its snapshot to be durable.
pub(crate) type HeldReply = Box<dyn FnOnce() + Send>;

/// Per-activation persistence state, shared by the context (manual saves, held
/// replies), the hooks and the background writer.
pub(crate) struct PersistState {
    pub(crate) id: ActorId,
    /// The owner epoch this activation holds (0: the storage cannot fence).
    epoch: u64,
    /// Who claimed the id, to release the claim (`None` once released, or when
    /// nothing was claimed).
    owner: Mutex<Option<OwnerId>>,
    /// An owned handle to the storage: for releasing the claim, for reading the
    /// latest snapshot back after a restart, for automatic saves.
    storage: Option<SharedStorage>,
    /// The last sequence number handed out.
    sequence: AtomicU64,
    /// The latest saved snapshot, kept only when there is no owned storage handle
    /// to read it back from after a restart.
    last_saved: Mutex<Option<(u64, Vec<u8>)>>,
    /// Replies are held until their snapshot is durable.
    confirm: AtomicBool,
    /// Replies sent during the current turn.
    held: Mutex<Vec<HeldReply>>,
    /// The actor, to stop it when its writes are fenced.
    actor: OnceLock<Weak<dyn Control>>,
    /// [`payload_hash`] of the snapshot the storage is known to hold for this
    /// actor (restored, or acknowledged since); `None` while unknown. A save of
    /// the same payload is skipped.
    saved: Mutex<Option<u128>>,
}

/// A 128-bit hash of an envelope's payload (xxh3): equal payloads, equal
/// hashes; an accidental collision of two different snapshots (2^-128) is not a
/// risk worth a copy of every actor's last snapshot.
pub(crate) fn payload_hash(envelope: &[u8]) -> u128 {
    let start = super::envelope::Header::peek(envelope)
        .map_or(0, |h| h.len())
        .min(envelope.len());
    let end = envelope
        .len()
        .saturating_sub(super::envelope::TRAILER_LEN)
        .max(start);
    xxhash_rust::xxh3::xxh3_128(&envelope[start..end])
}

impl fmt::Debug for PersistState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistState")
            .field("id", &self.id)
            .field("epoch", &self.epoch)
            .field("sequence", &self.sequence)
            .finish_non_exhaustive()
    }
}

/// How an activation started: what the storage said about the id.
pub(crate) struct Activated {
    pub(crate) epoch: u64,
    /// Who claimed it (`None`: the storage cannot fence).
    pub(crate) owner: Option<OwnerId>,
    pub(crate) storage: Option<SharedStorage>,
    /// The sequence number of the restored snapshot (0 for a fresh actor).
    pub(crate) sequence: u64,
    /// [`payload_hash`] of the restored snapshot.
    pub(crate) saved: Option<u128>,
}

impl PersistState {
    /// The state of an actor that saves by hand without having been spawned as a
    /// persistent actor (no claim, no owned storage).
    pub(crate) fn unowned(id: ActorId) -> Self {
        Self::new(
            id,
            Activated {
                epoch: 0,
                owner: None,
                storage: None,
                sequence: 0,
                saved: None,
            },
        )
    }

    pub(crate) fn new(id: ActorId, activated: Activated) -> Self {
        Self {
            id,
            epoch: activated.epoch,
            owner: Mutex::new(activated.owner),
            storage: activated.storage,
            sequence: AtomicU64::new(activated.sequence),
            last_saved: Mutex::new(None),
            confirm: AtomicBool::new(false),
            held: Mutex::new(Vec::new()),
            actor: OnceLock::new(),
            saved: Mutex::new(activated.saved),
        }
    }

    /// Whether the storage is known to hold a snapshot of payload hash `hash`.
    pub(crate) fn is_saved(&self, hash: u128) -> bool {
        *lock(&self.saved) == Some(hash)
    }

    /// The storage acknowledged a snapshot of payload hash `hash`.
    pub(crate) fn set_saved(&self, hash: u128) {
        *lock(&self.saved) = Some(hash);
    }

    /// What the storage holds is unknown (a write is in flight or failed).
    pub(crate) fn forget_saved(&self) {
        *lock(&self.saved) = None;
    }

    /// The owner epoch of this activation.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The storage handle automatic saves and restarts use.
    pub(crate) fn storage(&self) -> Option<&SharedStorage> {
        self.storage.as_ref()
    }

    pub(crate) fn set_confirms_replies(&self, confirm: bool) {
        self.confirm.store(confirm, Ordering::Relaxed);
    }

    pub(crate) fn has_held_replies(&self) -> bool {
        !lock(&self.held).is_empty()
    }

    pub(crate) fn take_held(&self) -> Vec<HeldReply> {
        std::mem::take(&mut *lock(&self.held))
    }

    /// The stamp of the next save.
    pub(crate) fn next_stamp(&self) -> Stamp {
        Stamp::new(self.epoch, self.sequence.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// The last sequence number handed out.
    pub(crate) fn last_sequence(&self) -> u64 {
        self.sequence.load(Ordering::SeqCst)
    }

    /// Notes that the storage acknowledged `bytes` as sequence `sequence`.
    pub(crate) fn record_saved(&self, sequence: u64, bytes: &[u8]) {
        if self.storage.is_some() {
            // A restart reads it back from the storage.
            return;
        }
        let mut last = lock(&self.last_saved);
        if last.as_ref().is_none_or(|(stored, _)| *stored < sequence) {
            *last = Some((sequence, bytes.to_vec()));
        }
    }

    /// The latest snapshot of this actor, for a restart: read back from the
    /// storage, or the kept copy; `None` if none was ever stored.
    async fn latest(&self) -> Result<Option<Vec<u8>>, PersistenceError> {
        let Some(storage) = &self.storage else {
            return Ok(lock(&self.last_saved).as_ref().map(|(_, b)| b.clone()));
        };
        match storage.try_read(self.id).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(source) => Err(PersistenceError::Read {
                id: self.id,
                source,
            }),
        }
    }

    /// The storage refused a write of this activation as fenced: the id belongs
    /// to a newer owner. Stop the actor for good; the held replies fail.
    pub(crate) fn fenced(&self, current: u64) {
        tracing::error!(
            actor.id = %self.id,
            epoch = self.epoch,
            current,
            "another instance took this actor's id over; stopping it"
        );
        drop(self.take_held());
        if let Some(actor) = self.actor.get().and_then(Weak::upgrade) {
            actor.stop_with(ExitReason::Fenced {
                epoch: self.epoch,
                current,
            });
        }
    }

    /// Ends the claim of this activation in the storage (once).
    pub(crate) async fn release(&self) {
        let owner = lock(&self.owner).take();
        if let (Some(owner), Some(storage)) = (owner, &self.storage)
            && let Err(err) = storage.try_release(self.id, owner, self.epoch).await
        {
            tracing::warn!(
                actor.id = %self.id,
                error = %format!("{err:#}"),
                "releasing the ownership claim failed"
            );
        }
    }

    fn claimed(&self) -> bool {
        lock(&self.owner).is_some()
    }
}

impl Attachment for PersistState {
    fn holds_replies(&self) -> bool {
        self.confirm.load(Ordering::Relaxed)
    }

    fn hold_reply(&self, release: Box<dyn FnOnce() + Send>) {
        lock(&self.held).push(release);
    }
}

/// The persistence state of a context, if its actor has one.
pub(crate) fn state_of<A: PersistentActor>(ctx: &Context<A>) -> Option<&PersistState> {
    let attachment: &dyn Any = &**ctx.attachment()?;
    attachment.downcast_ref::<PersistState>()
}

/// The persistence state of a context, created (unowned) if its actor has none.
pub(crate) fn state_or_init<A: PersistentActor>(ctx: &Context<A>) -> Option<&PersistState> {
    let attachment: &dyn Any =
        &**ctx.attachment_or_init(|| Arc::new(PersistState::unowned(ctx.id())));
    attachment.downcast_ref::<PersistState>()
}

/// The task-side hooks of a persistent actor. `I` is what its first start is
/// built from: the decoded snapshot's arguments, or fresh arguments.
pub(crate) struct PersistHooks<A: PersistentActor, I> {
    /// The first start's arguments. Kept for restarts only if nothing was
    /// restored (a restart of a restored actor reads the latest snapshot back).
    initial: Option<I>,
    /// Whether `initial` came from a stored snapshot.
    restored: bool,
    /// Whether the first start is done.
    started: bool,
    runtime_args: A::RuntimeArgs,
    state: Arc<PersistState>,
    /// Boxed, like `link`: most persistent actors have neither, and every live
    /// actor's task carries these fields.
    auto: Option<Box<AutoSave>>,
    /// The handle of a virtual actor; `None` once told the actor stopped.
    link: Option<Box<VirtualLink>>,
    /// Messages the actor left unhandled when it stopped.
    unhandled: usize,
}

impl<A: PersistentActor, I: ActorArgs<Actor = A>> PersistHooks<A, I> {
    pub(crate) fn new(
        initial: I,
        restored: bool,
        runtime_args: A::RuntimeArgs,
        state: Arc<PersistState>,
        auto: Option<AutoSave>,
        link: Option<VirtualLink>,
    ) -> Self {
        Self {
            initial: Some(initial),
            restored,
            started: false,
            runtime_args,
            state,
            auto: auto.map(Box::new),
            link: link.map(Box::new),
            unhandled: 0,
        }
    }

    /// A virtual actor's passivation: asked through its mailbox by its handle;
    /// stops the actor only once its final snapshot is acknowledged.
    async fn passivate(&mut self, actor: &mut A, token: u64) -> Option<ExitReason> {
        let link = self.link.as_ref()?;
        if !link.gate.begin(self.state.id, token) {
            return None;
        }
        // Every automatic save taken so far lands first: the final one must be
        // the newest.
        if let Some(auto) = &mut self.auto {
            auto.flush().await;
        }
        match final_save(&self.state, &link.storage, actor).await {
            Ok(()) => Some(ExitReason::Passivated),
            Err(err) => {
                link.gate.abort(self.state.id, &err);
                None
            }
        }
    }

    /// A restart: the latest snapshot, decoded once, or the fresh arguments.
    async fn rebuild(&self, ctx: &Context<A>) -> Result<A, String> {
        match self.state.latest().await.map_err(|e| e.to_string())? {
            Some(bytes) => {
                let (snapshot, _) =
                    decode::<A>(self.state.id, &bytes).map_err(|e| e.to_string())?;
                let args = A::persistent_args(snapshot, self.runtime_args.clone());
                Ok(<A::ActorArgs as ActorArgs>::initialize(ctx.clone(), &args).await)
            }
            None => match &self.initial {
                Some(initial) => Ok(I::initialize(ctx.clone(), initial).await),
                None => Err(format!(
                    "the snapshot of actor {} this actor was restored from is gone",
                    self.state.id
                )),
            },
        }
    }
}

impl<A: PersistentActor, I: ActorArgs<Actor = A>> Hooks<A> for PersistHooks<A, I> {
    async fn init(&mut self, ctx: &Context<A>) -> Result<A, String> {
        let _ = self
            .state
            .actor
            .set(Arc::downgrade(&ctx.cell) as Weak<dyn Control>);
        if !self.started {
            // The first start: built from what the spawn decoded (once).
            self.started = true;
            let Some(initial) = &self.initial else {
                return Err(format!("actor {} has no arguments to start from", ctx.id()));
            };
            let actor = I::initialize(ctx.clone(), initial).await;
            if self.restored && self.state.storage().is_some() {
                // Restarts read the latest snapshot back; no copy is kept.
                self.initial = None;
            }
            return Ok(actor);
        }
        self.rebuild(ctx).await
    }

    fn after_turn(&mut self, actor: &A, ctx: &Context<A>) {
        if let Some(auto) = &mut self.auto {
            auto.after_turn(actor, ctx, &self.state);
        }
    }

    async fn on_wake(
        &mut self,
        actor: &mut A,
        _ctx: &Context<A>,
        token: u64,
    ) -> Option<ExitReason> {
        if token == TIMER {
            if let Some(auto) = &mut self.auto {
                auto.on_timer(actor, &self.state);
            }
            return None;
        }
        self.passivate(actor, token).await
    }

    async fn before_restart(&mut self) {
        // Replies of the failed turn are never released: those asks fail.
        drop(self.state.take_held());
        if let Some(auto) = &mut self.auto {
            // The restart restores the latest *acknowledged* snapshot: let writes in
            // flight settle first so it is really the latest.
            auto.before_restart().await;
        }
    }

    fn on_graceful_stop(&mut self, actor: &A, _ctx: &Context<A>) {
        if let Some(auto) = &mut self.auto {
            auto.on_graceful_stop(actor, &self.state);
        }
    }

    async fn finish(&mut self, _reason: &ExitReason) {
        drop(self.state.take_held());
        if let Some(auto) = &mut self.auto {
            auto.finish().await;
        }
        self.state.release().await;
        self.unhandled = self
            .state
            .actor
            .get()
            .and_then(Weak::upgrade)
            .map_or(0, |actor| actor.lifecycle().unhandled());
    }

    fn exited(&mut self) {
        // The id is free: a handle may activate it again right away.
        if let Some(link) = self.link.take() {
            (*link).stopped(self.state.id, self.unhandled);
        }
    }
}

impl<A: PersistentActor, I> Drop for PersistHooks<A, I> {
    /// An aborted actor (shutdown timeout) never reaches `finish`: still end its
    /// claim, so the id can be activated again without waiting.
    fn drop(&mut self) {
        if self.state.claimed()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let state = Arc::clone(&self.state);
            runtime.spawn(async move { state.release().await });
        }
        if let Some(link) = self.link.take() {
            (*link).stopped(self.state.id, self.unhandled);
        }
    }
}

/// The final save of a passivation: nothing if the storage already holds this
/// state, else a write awaited here.
async fn final_save<A: PersistentActor>(
    state: &PersistState,
    storage: &SharedStorage,
    actor: &mut A,
) -> Result<(), PersistenceError> {
    let stamp = state.next_stamp();
    let bytes = encode::<A>(state.id, stamp, actor)?;
    let hash = payload_hash(&bytes);
    if state.is_saved(hash) {
        return Ok(());
    }
    state.forget_saved();
    match storage.try_write(state.id, bytes).await {
        Ok(()) => {
            state.set_saved(hash);
            Ok(())
        }
        Err(source) => {
            let err = PersistenceError::from_write(state.id, source);
            if let PersistenceError::Fenced { current, .. } = err {
                state.fenced(current);
            }
            Err(err)
        }
    }
}

/// A manual save: encodes now, writes, and waits for the storage.
pub(crate) async fn save_now<A: PersistentActor, S: PersistentStorage>(
    state: &PersistState,
    storage: &S,
    actor: &A,
) -> Result<(), PersistenceError> {
    let stamp = state.next_stamp();
    let bytes = encode::<A>(state.id, stamp, actor)?;
    let hash = payload_hash(&bytes);
    let kept = if state.storage.is_none() {
        Some(bytes.clone())
    } else {
        None
    };
    state.forget_saved();
    match storage.try_write(state.id, bytes).await {
        Ok(()) => {
            state.set_saved(hash);
            if let Some(bytes) = kept {
                state.record_saved(stamp.sequence, &bytes);
            }
            Ok(())
        }
        Err(source) => {
            let err = PersistenceError::from_write(state.id, source);
            if let PersistenceError::Fenced { current, .. } = err {
                state.fenced(current);
            }
            Err(err)
        }
    }
}
