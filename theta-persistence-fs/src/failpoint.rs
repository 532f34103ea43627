//! Test-only fault injection (cargo feature `failpoints`).
//!
//! Without the feature [`Failpoints::hit`] is an empty inline function, so the
//! commit path carries no cost and no `cfg` noise.

use std::io;

/// A step of the commit where a failpoint can fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Step {
    /// After the temp file was completely written, before any sync. A failure
    /// fails only that write; the previous snapshot stays.
    AfterTempWrite,
    /// At the data sync that makes the batch's temp files durable (the first
    /// `syncfs`). A failure fails the batch and poisons the store; no target was
    /// replaced yet.
    DataSync,
    /// Just before the temp file is renamed over the target. A failure fails only
    /// that write; the previous snapshot stays.
    BeforeRename,
    /// After the renames, at the sync that makes them durable (the second
    /// `syncfs`, or the directory sync of a delete). A failure fails the batch and
    /// poisons the store; the renamed files are visible but not acknowledged.
    DirSync,
}

/// What a failpoint does when it fires.
#[cfg(feature = "failpoints")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Return this OS error (e.g. `libc` `EIO` = 5, `ENOSPC` = 28) from the step.
    Error(i32),
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

    /// Fires (once) if armed for `step`.
    pub(crate) fn hit(&self, step: Step) -> io::Result<()> {
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        match *armed {
            Some((armed_step, action)) if armed_step == step => {
                *armed = None;
                match action {
                    Action::Abort => std::process::abort(),
                    Action::Error(code) => Err(io::Error::from_raw_os_error(code)),
                }
            }
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
