//! `PersistentStorage` on the sled embedded database for theta.
//!
//! This crate will hold `SledStorage`, a snapshot store in a sled tree. It is
//! not implemented yet.
