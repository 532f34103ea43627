//! When automatic snapshots are taken.

use std::num::NonZeroU32;
use std::time::Duration;

/// When an actor's snapshot is saved automatically. Combinable; the default is
/// manual only ([`PersistentContextExt::save_snapshot`](super::PersistentContextExt::save_snapshot)),
/// which costs nothing at run time.
///
/// ```
/// use std::time::Duration;
/// use theta::persistence::SnapshotPolicy;
///
/// let policy = SnapshotPolicy::new()
///     .every_n_messages(100)
///     .every_interval(Duration::from_secs(5))
///     .on_graceful_stop();
/// assert!(!policy.is_manual());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SnapshotPolicy {
    every: Option<NonZeroU32>,
    interval: Option<Duration>,
    on_stop: bool,
    confirm: bool,
}

impl SnapshotPolicy {
    /// Manual only.
    pub const fn new() -> Self {
        Self {
            every: None,
            interval: None,
            on_stop: false,
            confirm: false,
        }
    }

    /// Save after every `n`-th handled message (`0` turns this off).
    pub const fn every_n_messages(mut self, n: u32) -> Self {
        self.every = NonZeroU32::new(n);
        self
    }

    /// Save every `interval` if a message was handled since the last save
    /// (a zero interval turns this off).
    pub const fn every_interval(mut self, interval: Duration) -> Self {
        self.interval = if interval.is_zero() {
            None
        } else {
            Some(interval)
        };
        self
    }

    /// Save once more when the actor stops gracefully (stop, shutdown, last ref
    /// dropped), never after a panic.
    pub const fn on_graceful_stop(mut self) -> Self {
        self.on_stop = true;
        self
    }

    /// Hold every `ask` reply until a snapshot that includes the handler's effect
    /// is durable, so an answered ask means a saved change. Any handler that
    /// replies triggers that save (besides the other rules); if the write fails,
    /// the held replies are dropped and those asks fail with
    /// [`AskError::NoReply`](crate::AskError::NoReply).
    ///
    /// The mailbox is not held meanwhile: the actor handles its next messages while
    /// the write is in flight, and one write covers every reply held before it.
    pub const fn confirm_replies(mut self) -> Self {
        self.confirm = true;
        self
    }

    /// Whether no automatic save is configured.
    pub const fn is_manual(&self) -> bool {
        self.every.is_none() && self.interval.is_none() && !self.on_stop && !self.confirm
    }

    /// Whether replies wait for their snapshot ([`confirm_replies`](Self::confirm_replies)).
    pub const fn confirms_replies(&self) -> bool {
        self.confirm
    }

    /// The message count between saves, if set.
    pub const fn messages(&self) -> Option<NonZeroU32> {
        self.every
    }

    /// The interval between saves, if set.
    pub const fn interval(&self) -> Option<Duration> {
        self.interval
    }

    /// Whether a graceful stop saves.
    pub const fn saves_on_stop(&self) -> bool {
        self.on_stop
    }
}
