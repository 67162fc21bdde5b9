//! Login, the second-factor step of a login, and logout (SPEC §3.2, §10.5).

use std::sync::OnceLock;

use hyper::header::{HeaderValue, SET_COOKIE};
use hyper::{Response, StatusCode};
use rusqlite::Connection;
use serde_json::{Map, Value, json};

use super::{Caller, fields, two_factor};
use crate::app::App;
use crate::auth::{password, session, token_digest};
use crate::clock::Micros;
use crate::db::{sessions, users};
use crate::error::{Error, Result};
use crate::http::body::{self, Body};
use crate::http::{RequestInfo, micros, no_content};
use crate::mail::messages;
use crate::metrics::{LoginOutcome, TwoFactorOutcome};

const LOGIN_FAILURES: &str = "login";
const LOGIN_FAILURE_LIMIT: usize = 10;
const LOGIN_WINDOW_SECS: i64 = 15 * 60;
const SECOND_FACTOR_FAILURES: &str = "2fa";
const SECOND_FACTOR_LIMIT: usize = 5;
const SECOND_FACTOR_LOCK_SECS: i64 = 10 * 60;

/// Tokens of a session just created; they go to the client as cookies, never to the database.
pub struct NewSession {
    pub token: String,
    pub csrf: String,
}

/// Starts a full session for `user_id` (inside a write) and records the login time.
pub fn create_session(conn: &Connection, user_id: i64, now: Micros) -> Result<NewSession> {
    let token = session::new_token();
    sessions::insert(conn, user_id, &token_digest(&token), false, now)?;
    conn.prepare_cached("UPDATE users SET last_login = ?2 WHERE id = ?1")?
        .execute(rusqlite::params![user_id, now])?;
    Ok(NewSession {
        token,
        csrf: session::new_token(),
    })
}

/// Starts a login that waits for its second factor; returns the token for the cookie.
pub fn create_pending_login(conn: &Connection, user_id: i64, now: Micros) -> Result<String> {
    let token = session::new_token();
    sessions::insert(conn, user_id, &token_digest(&token), true, now)?;
    Ok(token)
}

fn secure_cookies(app: &App) -> bool {
    app.config
        .site_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"))
}

fn add_cookies<'a>(res: &mut Response<Body>, cookies: impl IntoIterator<Item = &'a String>) {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            res.headers_mut().append(SET_COOKIE, v);
        }
    }
}

/// How a flow that ends with the client logged in leaves it.
pub enum Login {
    Session(NewSession),
    /// The user has 2FA: a pending login that `/api/login/token/` completes.
    Pending(String),
}

/// Logs the user in (inside the caller's write), or starts a pending login when 2FA is on, so
/// neither a password nor an emailed link ever bypasses the second factor (SPEC §10.8).
pub fn start_login(conn: &Connection, user_id: i64, now: Micros) -> Result<Login> {
    if two_factor::is_enabled(conn, user_id)? {
        Ok(Login::Pending(create_pending_login(conn, user_id, now)?))
    } else {
        Ok(Login::Session(create_session(conn, user_id, now)?))
    }
}

/// Sets the cookies of a login on a response: both for a session, only `sessionid` for a
/// pending login.
pub fn set_login_cookies(app: &App, res: &mut Response<Body>, login: &Login) {
    let secure = secure_cookies(app);
    match login {
        Login::Session(new) => {
            add_cookies(res, &session::set_cookies(&new.token, &new.csrf, secure))
        }
        Login::Pending(token) => add_cookies(res, [&session::set_pending_cookie(token, secure)]),
    }
}

fn invalid_credentials() -> Error {
    Error::non_field("invalid_credentials", "Invalid email or password.")
}

/// A real argon2id hash of a random password, verified for unknown emails so that they take
/// as long as wrong passwords.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| password::hash(&session::new_token()).unwrap_or_default())
}

/// `POST /api/login/ {email, password}`.
pub async fn login(app: &App, body: Map<String, Value>) -> Result<Response<Body>> {
    let email = match body.get("email") {
        Some(v) => fields::email("email", v)?,
        None => return Err(Error::field("email", "required", "This field is required.")),
    };
    let password_text = match body.get("password") {
        Some(v) => fields::string("password", v, usize::MAX, false)?,
        None => {
            return Err(Error::field(
                "password",
                "required",
                "This field is required.",
            ));
        }
    };
    let now = app.clock.now();
    let email_key = users::email_key(&email);
    if app
        .throttles
        .failures(LOGIN_FAILURES, &email_key, LOGIN_WINDOW_SECS, now)
        >= LOGIN_FAILURE_LIMIT
    {
        app.metrics.login(LoginOutcome::Locked);
        app.metrics.throttled(LOGIN_FAILURES);
        return Err(Error::Forbidden {
            code: "too_many_failed_attempts",
            detail: "Too many failed login attempts. Please try again in 15 minutes.".into(),
        });
    }
    let found = app.db.read(|conn| {
        let Some(user) = users::find_active_by_email(conn, &email)? else {
            return Ok(None);
        };
        let hash = users::password_hash(conn, user.id)?;
        Ok(Some((user, hash)))
    })?;
    let (stored, known) = match &found {
        Some((_, hash)) => (hash.clone(), true),
        None => (dummy_hash().to_owned(), false),
    };
    let candidate = password_text.clone();
    let (verified, rehash) = app
        .hash_work(move || {
            let verified = password::verify(&candidate, &stored);
            let rehash = match verified {
                password::Verified::YesRehash => Some(password::hash(&candidate)?),
                _ => None,
            };
            Ok((verified, rehash))
        })
        .await?;
    let Some((user, _)) = found.filter(|_| known && verified != password::Verified::No) else {
        app.throttles
            .record_failure(LOGIN_FAILURES, &email_key, now);
        app.metrics.login(LoginOutcome::InvalidCredentials);
        return Err(invalid_credentials());
    };
    app.throttles.clear(LOGIN_FAILURES, &email_key);

    let id = user.id;
    let login = app
        .db
        .write(move |conn| {
            if let Some(hash) = rehash {
                users::set_password(conn, id, &hash)?;
            }
            start_login(conn, id, now)
        })
        .await?;
    let mut res = match login {
        Login::Session(_) => {
            app.metrics.login(LoginOutcome::Success);
            body::json(StatusCode::OK, &json!({"success": true}))?
        }
        Login::Pending(_) => {
            app.metrics.login(LoginOutcome::SecondFactorRequired);
            body::error(&Error::SecondFactorRequired)
        }
    };
    set_login_cookies(app, &mut res, &login);
    Ok(res)
}

/// `POST /api/login/token/ {token}`: completes a pending login with a TOTP or backup code.
pub async fn login_token(
    app: &App,
    info: &RequestInfo,
    body: Map<String, Value>,
) -> Result<Response<Body>> {
    let now = app.clock.now();
    let expired = || {
        Error::non_field(
            "2fa_expired",
            "Login attempt has expired. Re-enter username/password.",
        )
    };
    let Some(token) = &info.session_token else {
        return Err(expired());
    };
    let digest = token_digest(token);
    let ttl = micros(app.config.pending_login_ttl);
    let Some((pending, user)) = app
        .db
        .read(|conn| sessions::find(conn, &digest, true, now - ttl))?
    else {
        return Err(expired());
    };
    let key = user.id.to_string();
    if app.throttles.streak_locked(
        SECOND_FACTOR_FAILURES,
        &key,
        SECOND_FACTOR_LIMIT,
        SECOND_FACTOR_LOCK_SECS,
        now,
    ) {
        app.metrics.two_factor(TwoFactorOutcome::LoginLocked);
        return Err(Error::non_field(
            "2fa_too_many_attempts",
            "Too many attempts.",
        ));
    }
    let code = body
        .get("token")
        .map(|v| match v {
            Value::String(s) => s.trim().to_owned(),
            other => other.to_string(),
        })
        .filter(|s| !s.is_empty() && s != "null");
    let factor = match code {
        Some(code) => two_factor::verify_login_code(app, user.id, &code).await?,
        None => None,
    };
    let Some(factor) = factor else {
        app.throttles
            .record_failure(SECOND_FACTOR_FAILURES, &key, now);
        app.metrics.two_factor(TwoFactorOutcome::LoginInvalid);
        return Err(Error::non_field(
            "2fa_invalid",
            "Invalid authentication code",
        ));
    };
    app.throttles.clear(SECOND_FACTOR_FAILURES, &key);
    let (id, pending_id) = (user.id, pending.id);
    let new = app
        .db
        .write(move |conn| {
            sessions::delete(conn, pending_id)?;
            create_session(conn, id, now)
        })
        .await?;
    app.metrics.two_factor(match factor {
        two_factor::Factor::Totp => TwoFactorOutcome::LoginTotp,
        two_factor::Factor::BackupCode => TwoFactorOutcome::LoginBackupCode,
    });
    if factor == two_factor::Factor::BackupCode {
        app.mailer
            .send(vec![messages::backup_code_used(&user.email)], now)
            .await;
    }
    let mut res = body::json(StatusCode::OK, &json!({"success": true}))?;
    set_login_cookies(app, &mut res, &Login::Session(new));
    Ok(res)
}

/// `POST /api/logout/`: ends the session server-side; 204 and expired cookies either way.
pub async fn logout(app: &App, caller: Option<Caller>) -> Result<Response<Body>> {
    if let Some(id) = caller.as_ref().and_then(|c| c.session_row()).map(|s| s.id) {
        app.db.write(move |conn| sessions::delete(conn, id)).await?;
    }
    let mut res = no_content();
    add_cookies(&mut res, &session::clear_cookies(secure_cookies(app)));
    Ok(res)
}
