//! Integration tests for theta live in `tests/`; the examples in `examples/`.
//! This library holds what they share:
//!
//! - [`store`]: a storage opened from one spec string (`fs:./theta-data`,
//!   `sled:./dir`, `postgres://…`), whichever backend the cargo features
//!   (`fs`, `sled`, `postgres`) compiled in;
//! - [`crash`]: a child process to SIGKILL and a tracker of what it
//!   acknowledged, to check what recovery finds;
//! - [`bulk`]: one ask to each of many virtual actors (a census), a progress
//!   bar, the peak resident set.
//!
//! It also carries the README's code blocks as doc tests.

pub mod bulk;
pub mod crash;
pub mod store;

/// The README's examples, compiled and run by `cargo test --doc`.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
