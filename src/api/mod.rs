//! Handlers: the use cases behind each route. They never see hyper request types; `http`
//! authenticates, resolves the target and parses the body before calling them.

pub mod fields;
pub mod users;

use hyper::{Response, StatusCode};

use crate::app::App;
use crate::db::keys::KeyRow;
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
}

impl Caller {
    pub fn key(user: UserRow, key: KeyRow) -> Self {
        Caller {
            user,
            auth: AuthKind::Key(key),
        }
    }

    /// The scopes of the key, or `None` for a session (which has every permission).
    pub fn key_scopes(&self) -> Option<&[String]> {
        match &self.auth {
            AuthKind::Key(k) => Some(&k.scopes),
        }
    }

    /// Login time + 2 h for sessions; `null` for keys (SPEC §3.2).
    pub fn sensitive_session_expires_at(&self) -> Option<crate::clock::Micros> {
        match &self.auth {
            AuthKind::Key(_) => None,
        }
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
