//! Handlers: the use cases behind each route. They never see hyper request types; `http`
//! authenticates, resolves the target and parses the body before calling them.

pub mod email;
pub mod fields;
pub mod keys;
pub mod schema;
pub mod sessions;
pub mod two_factor;
pub mod users;

use hyper::{Response, StatusCode};

use crate::app::App;
use crate::clock::Micros;
use crate::db::keys::KeyRow;
use crate::db::sessions::SessionRow;
use crate::error::{Error, Result};
use crate::http::body::{self, Body};
use crate::model::UserRow;

/// Who is calling, and how they proved it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: UserRow,
    pub auth: AuthKind,
}

#[derive(Debug, Clone)]
pub enum AuthKind {
    Key(KeyRow),
    Session(SessionRow),
}

impl Caller {
    pub fn key(user: UserRow, key: KeyRow) -> Self {
        Caller {
            user,
            auth: AuthKind::Key(key),
        }
    }

    pub fn session(user: UserRow, session: SessionRow) -> Self {
        Caller {
            user,
            auth: AuthKind::Session(session),
        }
    }

    /// The scopes of the key, or `None` for a session (which has every permission).
    pub fn key_scopes(&self) -> Option<&[String]> {
        match &self.auth {
            AuthKind::Key(k) => Some(&k.scopes),
            AuthKind::Session(_) => None,
        }
    }

    /// The session, for session-authenticated callers.
    pub fn session_row(&self) -> Option<&SessionRow> {
        match &self.auth {
            AuthKind::Session(s) => Some(s),
            AuthKind::Key(_) => None,
        }
    }

    /// Login time + `--reauth-after` for sessions; `null` for keys (SPEC §3.2).
    pub fn sensitive_session_expires_at(&self, app: &App) -> Option<Micros> {
        self.session_row()
            .map(|s| s.created_at + crate::http::micros(app.config.reauth_after))
    }

    /// Upstream's time-sensitive rule: a session that logged in longer ago than
    /// `--reauth-after` may not perform sensitive actions. Keys are not subject to it.
    pub fn require_recent_login(&self, app: &App) -> Result<()> {
        match &self.auth {
            AuthKind::Session(s)
                if app.clock.now() - s.created_at
                    >= crate::http::micros(app.config.reauth_after) =>
            {
                Err(Error::Forbidden {
                    code: "sensitive_action_required_reauth",
                    detail: "This action requires you to be recently authenticated.".into(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Did this session log in within `window` (the fresh-login rule for email changes)?
    pub fn logged_in_within(&self, app: &App, window: std::time::Duration) -> bool {
        self.session_row()
            .is_some_and(|s| app.clock.now() - s.created_at < crate::http::micros(window))
    }

    pub fn is_key(&self) -> bool {
        matches!(self.auth, AuthKind::Key(_))
    }
}

/// The user a detail route acts on.
#[derive(Debug, Clone)]
pub enum Target {
    /// `@me`: the caller.
    Me(Box<UserRow>),
    /// A uuid (staff only).
    Other(Box<UserRow>),
}

impl Target {
    pub fn user(&self) -> &UserRow {
        match self {
            Target::Me(u) | Target::Other(u) => u,
        }
    }
}

/// How long `/_health` waits for the database before answering 503: well inside the timeouts
/// that load balancers and orchestrators give a probe.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// The probe connection's lock wait: a file locked by another process for longer than this
/// counts as not answering.
const HEALTH_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// `GET /_health`: 200 when the database file can be read and the writer commits, both within
/// `HEALTH_TIMEOUT`; otherwise 503 with the envelope (SPEC §10.7).
/// The probe opens a connection and goes through the writer: an answer is reused for this
/// long, so a load balancer polling hard (or a load test) costs no database work.
pub const HEALTH_CACHE: std::time::Duration = std::time::Duration::from_secs(1);

pub async fn health(app: &App) -> Result<Response<Body>> {
    let cached = app
        .health
        .lock()
        .ok()
        .and_then(|last| last.clone())
        .filter(|(at, _)| at.elapsed() < HEALTH_CACHE);
    let outcome = match cached {
        Some((_, outcome)) => outcome,
        None => {
            let outcome = match tokio::time::timeout(HEALTH_TIMEOUT, probe_database(app)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {HEALTH_TIMEOUT:?}")),
            };
            if let Err(cause) = &outcome {
                tracing::warn!("health check failed: {cause}");
            }
            if let Ok(mut last) = app.health.lock() {
                *last = Some((std::time::Instant::now(), outcome.clone()));
            }
            outcome
        }
    };
    match outcome {
        Ok(()) => body::json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
        Err(cause) => Err(Error::Unavailable(cause)),
    }
}

async fn probe_database(app: &App) -> Result<()> {
    // A fresh connection, not a pooled one: `SELECT 1` never touches the file, and a pooled
    // connection may answer from its page cache after the file was deleted or overwritten.
    // Opened without CREATE, so a vanished file is an error instead of a new empty database.
    let path = app.db.path().to_owned();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(HEALTH_BUSY_TIMEOUT)?;
        conn.pragma_update(None, "query_only", "ON")?;
        // Reads the header and the schema pages from disk.
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })?;
        Ok(())
    })
    .await
    .map_err(Error::internal)??;
    // An empty job through the single writer: proves its thread is alive and can take the
    // write lock, without writing anything.
    app.db.write(|_| Ok(())).await
}
