//! One integration test binary: every test talks HTTP to a real server on an ephemeral port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;
mod smoke;
mod support;

mod authz;
mod cors;
mod email;
mod email_reset;
mod email_support;
mod errors;
mod headers;
mod hedgehog;
mod key_api;
mod key_api_validation;
mod key_rate_limit;
mod keys;
mod listing;
mod notifications;
mod org_switch;
mod schema;
mod session_actions;
mod session_util;
mod sessions;
mod throttle;
mod two_factor;
mod two_factor_login;
mod two_factor_support;
mod update;
mod user_object;
