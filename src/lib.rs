//! usersvc: a self-contained users service. One SQLite file, a REST API wire-compatible with
//! PostHog's `/api/users/`, and an admin CLI.
//!
//! # Layout
//!
//! * `cli` — clap definitions; one small function per subcommand.
//! * `admin` — the use cases the CLI runs (create users, orgs, keys, seed, bootstrap, backup).
//! * `server` — the accept loop (hyper 1 + TokioTimer), graceful shutdown, `serve`.
//! * `http` — the router (the whole API on one screen), request handling order, bodies.
//! * `api` — handlers, one file per resource; `api::fields` validates input values.
//! * `auth` — key format and digests, password hashing, random values.
//! * `db` — the one place that talks to SQLite: writer thread, readers, one module per table.
//! * `model` — what the API returns.
//! * `error` — the one error type and its envelope.
//! * `clock`, `config`, `app` — time, settings, the shared application handle.

pub mod admin;
pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod mail;
pub mod metrics;
pub mod model;
pub mod server;
