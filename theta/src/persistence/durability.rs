//! [`Durability`]: one vocabulary for what an acknowledged write survives.

use std::fmt;

/// What an acknowledged write (a `try_write` that returned `Ok`) survives.
///
/// Every backend names the levels it offers in these terms and refuses the
/// others with [`UnsupportedDurability`], so a choice never silently means less
/// than it says.
///
/// | level | `kill -9` of the process | power loss, kernel crash |
/// |---|---|---|
/// | [`PowerLoss`](Self::PowerLoss) | survives | survives |
/// | [`ProcessKill`](Self::ProcessKill) | survives | the last moments may be lost |
/// | [`Volatile`](Self::Volatile) | may be lost | may be lost |
///
/// ```
/// use theta::persistence::Durability;
///
/// assert!(Durability::PowerLoss.survives(Durability::ProcessKill));
/// assert!(!Durability::Volatile.survives(Durability::ProcessKill));
/// assert_eq!(Durability::default(), Durability::PowerLoss);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Nothing promised: an acknowledged write may be lost if the process dies
    /// (memory; buffered writes not yet handed to the OS).
    Volatile,
    /// An acknowledged write survives the process being killed (it is in the
    /// OS's hands), but a power loss or kernel crash can lose the last moments;
    /// what is read after one is still a whole, older acknowledged snapshot.
    ProcessKill,
    /// An acknowledged write survives power loss: it was synced to stable
    /// storage (or committed by a database with synchronous commit).
    #[default]
    PowerLoss,
}

impl Durability {
    /// Whether a write acknowledged at this level also meets `other`.
    pub fn survives(self, other: Durability) -> bool {
        self >= other
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Durability::Volatile => "volatile (survives nothing)",
            Durability::ProcessKill => "survives a process kill",
            Durability::PowerLoss => "survives power loss",
        })
    }
}

/// A backend was asked for a [`Durability`] it cannot give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{backend} cannot acknowledge writes as `{requested:?}` ({requested}); it offers {offered:?}"
)]
pub struct UnsupportedDurability {
    /// The backend, e.g. `"theta-persistence-sled"`.
    pub backend: &'static str,
    /// The level asked for.
    pub requested: Durability,
    /// The levels it offers.
    pub offered: &'static [Durability],
}
