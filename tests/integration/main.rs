//! One integration test binary: every test talks HTTP to a real server on an ephemeral port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;
mod smoke;
mod support;

mod authz;
mod errors;
mod headers;
mod hedgehog;
mod keys;
mod listing;
mod notifications;
mod org_switch;
mod throttle;
mod update;
mod user_object;
