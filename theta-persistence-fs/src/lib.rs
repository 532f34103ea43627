//! `PersistentStorage` on the local file system for theta.
//!
//! This crate will hold `FsStorage`: an atomic, durable, crash-safe snapshot
//! store in a local directory. It is not implemented yet.
