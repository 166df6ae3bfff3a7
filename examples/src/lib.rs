//! Runnable examples live in `examples/examples/`.

/// The workspace README's examples, compiled as doctests: what a user copies from it builds.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
