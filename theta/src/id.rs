//! [`ActorId`].

/// Identifies one actor instance. Persistent actors keep their id across restarts
/// and processes; it is the key their snapshots are stored under.
pub type ActorId = uuid::Uuid;
