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

/// `GET /_health`: 200 once the database answers, else 503.
pub async fn health(app: &App) -> Result<Response<Body>> {
    let ok = app
        .db
        .read(|conn| Ok(conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
        .is_ok();
    if ok {
        body::json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
    } else {
        Err(Error::Unavailable("database did not answer".into()))
    }
}
