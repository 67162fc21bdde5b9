//! The checks behind the fuzz targets, one module per target: `check(data)` runs one input and
//! panics on a bug (a panic in usersvc, or a broken invariant asserted here).
//!
//! `fuzz_targets/*.rs` are one-line libFuzzer wrappers around these, and
//! `tests/fuzz_regressions.rs` in the main crate includes these same files by path to replay
//! the committed corpora, the seeds and every crash input under `fuzz/regressions/` on
//! `cargo test`.
//! So the files use only crates that are also dependencies of usersvc itself, and no
//! `unwrap`/`expect` (the main crate's clippy lints deny them).

pub mod auth_headers;
pub mod patch_body;
pub mod route_parse;
pub mod two_factor_codes;
