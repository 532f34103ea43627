//! Test-only fault injection (cargo feature `failpoints`).
//!
//! Without the feature [`Failpoints::hit`] is an empty inline function, so the
//! write path carries no cost and no `cfg` noise.

use std::io;

/// A step of a write where a failpoint can fire.
///
/// Writes are acknowledged once they are in the journal; the snapshot files are
/// brought up to date later, by a checkpoint (see `FsStorage::checkpoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Step {
    /// After a batch of writes was appended to the journal, before its sync. A
    /// failure fails the batch and cuts it off the journal again; the previous
    /// snapshots stay. An abort leaves the batch in the page cache,
    /// unacknowledged.
    JournalWrite,
    /// At the `fdatasync` that makes a batch durable. A failure fails the batch
    /// and poisons the store.
    JournalSync,
    /// In a checkpoint, after a snapshot file's temp file was written. A failure
    /// fails the checkpoint (it is retried later); no write is affected.
    AfterTempWrite,
    /// In a checkpoint, just before a temp file is renamed over a snapshot file.
    /// A failure fails the checkpoint, as above.
    BeforeRename,
    /// At the `syncfs` that makes a checkpoint's files durable. A failure fails
    /// the checkpoint and poisons the store; the journal keeps every write.
    CheckpointSync,
    /// In a checkpoint, after its files were synced, before `journal/START` is
    /// moved past the segment they cover and the segment removed. A failure
    /// fails the checkpoint; the segment stays and is replayed (harmlessly,
    /// again) at the next open.
    SegmentDelete,
    /// When the journal moves on to a new segment (its limit reached, or a
    /// checkpoint asked for), before the segment file is created. A failure
    /// fails that rotation: writes go on into the current segment, and the
    /// next rotation uses the same segment number.
    SegmentCreate,
}

/// What a failpoint does when it fires.
#[cfg(feature = "failpoints")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Return this OS error (e.g. `libc` `EIO` = 5, `ENOSPC` = 28) from the step,
    /// once.
    Error(i32),
    /// Return this OS error from the step every time it is reached, until the
    /// failpoints are cleared (a disk that stays full).
    ErrorEveryTime(i32),
    /// Let the step pass `n - 1` times, then return the OS error `code` once.
    ErrorOnHit {
        /// Which time the step is reached that fails (1: the next).
        n: u32,
        /// The OS error.
        code: i32,
    },
    /// `std::process::abort()` at the step: a crash at exactly that point.
    Abort,
}

#[cfg(feature = "failpoints")]
#[derive(Debug, Default)]
pub(crate) struct Failpoints {
    armed: std::sync::Mutex<Option<(Step, Action)>>,
}

#[cfg(feature = "failpoints")]
impl Failpoints {
    pub(crate) fn arm(&self, step: Step, action: Action) {
        *self.armed.lock().unwrap_or_else(|e| e.into_inner()) = Some((step, action));
    }

    pub(crate) fn clear(&self) {
        *self.armed.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Fires if armed for `step`: once (`ErrorOnHit`: the n-th time), except for
    /// `Action::ErrorEveryTime`.
    /// With `Action::Abort` the process aborts (`SIGABRT`): a crash at exactly
    /// that point.
    pub(crate) fn hit(&self, step: Step) -> io::Result<()> {
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        match *armed {
            Some((armed_step, action)) if armed_step == step => match action {
                Action::Abort => std::process::abort(),
                Action::Error(code) | Action::ErrorOnHit { n: 0 | 1, code } => {
                    *armed = None;
                    Err(io::Error::from_raw_os_error(code))
                }
                Action::ErrorEveryTime(code) => Err(io::Error::from_raw_os_error(code)),
                Action::ErrorOnHit { n, code } => {
                    *armed = Some((step, Action::ErrorOnHit { n: n - 1, code }));
                    Ok(())
                }
            },
            _ => Ok(()),
        }
    }
}

#[cfg(not(feature = "failpoints"))]
#[derive(Debug, Default)]
pub(crate) struct Failpoints;

#[cfg(not(feature = "failpoints"))]
impl Failpoints {
    #[inline(always)]
    pub(crate) fn hit(&self, _step: Step) -> io::Result<()> {
        Ok(())
    }
}
