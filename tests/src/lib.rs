//! Integration tests for theta live in `tests/`; the examples in `examples/`. This
//! library only carries the README's code blocks as doc tests.

/// The README's examples, compiled and run by `cargo test --doc`.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
