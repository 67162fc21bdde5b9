//! Email verification (`request_email_verification`, `verify_email`) and password reset
//! (`POST /api/reset/`, `POST /api/reset/{uuid}/`): the flows built on emailed single-use
//! tokens (SPEC §3.7, §10.5; reference §5.8).
//!
//! Tokens are stored only as digests (`db::email_tokens`); the plaintext exists in the message
//! and in the client's request, nowhere else. Each handler validates its input, writes once,
//! sends its mail after the commit and only then answers, so with `--mail-dir` the message is
//! on disk before the client sees the response.
//!
//! Throttles (sliding windows, refused requests not counted):
//! * `request_email_verification`: 6 per day per uuid, or per user when the caller is
//!   authenticated (upstream's `UserEmailVerificationThrottle`, SPEC §6).
//! * `POST /api/reset/`: 6 per day per lowercased address. Upstream's tests allow six resets
//!   of one address and refuse the seventh (keyed by address, not IP); without a limit anybody
//!   could make usersvc mail a stranger without end.
//! * `verify_email` and `POST /api/reset/{uuid}/` are not throttled: a token carries 256 random
//!   bits, so guessing is hopeless, and the reset's password hash already runs behind the
//!   one-per-core hash queue.

use hyper::{Response, StatusCode};
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;
use serde_json::{Map, Value, json};

use super::sessions::{self, Login};
use super::{Caller, fields};
use crate::app::App;
use crate::auth::password;
use crate::clock::Micros;
use crate::db::email_tokens::{self, RESET_PASSWORD, VERIFY_EMAIL};
use crate::db::{sessions as session_rows, users};
use crate::error::{Error, Result};
use crate::http::body::{self, Body};
use crate::http::{micros, no_content};
use crate::mail::messages;
use crate::model::UserRow;

const VERIFICATION_REQUESTS: &str = "request_email_verification";
const RESET_REQUESTS: &str = "password_reset";
const REQUESTS_PER_DAY: usize = 6;
const DAY_SECS: i64 = 86_400;

/// SPEC §4.2: passwords are at most 128 characters.
const PASSWORD_MAX_LENGTH: usize = 128;

/// Upstream words the `email_not_available` refusal differently for each flow.
const NO_MAIL_FOR_VERIFICATION: &str = "Cannot verify email address because email is not \
    configured for your instance. Please contact your administrator.";
const NO_MAIL_FOR_RESET: &str = "Cannot reset passwords because email is not configured for \
    your instance. Please contact your administrator.";

fn required(attr: &str) -> Error {
    Error::field(attr, "required", "This field is required.")
}

fn invalid_verification_token() -> Error {
    Error::field(
        "token",
        "invalid_token",
        "This verification token is invalid or has expired.",
    )
}

fn invalid_reset_token() -> Error {
    Error::field(
        "token",
        "invalid_token",
        "This reset token is invalid or has expired.",
    )
}

/// Both flows refuse to run without outbound email: the token would have nowhere to go.
fn require_mail(app: &App, detail: &str) -> Result<()> {
    if app.mailer.configured() {
        Ok(())
    } else {
        Err(Error::non_field("email_not_available", detail))
    }
}

/// The canonical (lowercase, hyphenated) form of a uuid value, or `None` when it is not one.
/// Upstream's database lookup raises on a malformed uuid; here it simply matches nobody.
fn canonical_uuid(v: &Value) -> Option<String> {
    let text = v.as_str()?.trim();
    uuid::Uuid::parse_str(text)
        .ok()
        .map(|u| u.hyphenated().to_string())
}

/// The active user with this id, read inside a write so that what the write does matches
/// the row as it is now (a concurrent PATCH may have changed `pending_email`).
fn active_user(conn: &Connection, id: i64) -> Result<Option<UserRow>> {
    Ok(users::get(conn, id)?.filter(|u| u.is_active))
}

/// `POST /api/users/request_email_verification/ {uuid}`: mails a fresh verification link to
/// the user's `pending_email`, or to `email` when nothing is pending. Always 200 for any
/// `uuid`, known or not, so accounts cannot be enumerated.
pub async fn request_verification(
    app: &App,
    caller: Option<&Caller>,
    body: Map<String, Value>,
) -> Result<Response<Body>> {
    let uuid = match body.get("uuid") {
        None | Some(Value::Null) => return Err(required("uuid")),
        Some(v) => v,
    };
    let now = app.clock.now();
    // The 429 comes before `email_not_available` (SPEC §10.5). The prefixes keep user 5's
    // window apart from that of a body `{"uuid": "5"}`.
    let throttle_key = match caller {
        Some(c) => format!("user:{}", c.user.id),
        None => format!(
            "uuid:{}",
            canonical_uuid(uuid).unwrap_or_else(|| uuid.to_string())
        ),
    };
    app.throttles.hit(
        VERIFICATION_REQUESTS,
        &throttle_key,
        REQUESTS_PER_DAY,
        DAY_SECS,
        now,
    )?;
    require_mail(app, NO_MAIL_FOR_VERIFICATION)?;

    // A read first, so garbage uuids never queue work on the single writer.
    let known = match canonical_uuid(uuid) {
        Some(uuid) => app.db.read(|conn| users::get_active_by_uuid(conn, &uuid))?,
        None => None,
    };
    if let Some(user) = known {
        let id = user.id;
        let expires_at = now + micros(app.config.token_ttl);
        let site_url = app.mailer.site_url().to_owned();
        let mail = app
            .db
            .write(move |conn| {
                let Some(user) = active_user(conn, id)? else {
                    return Ok(None);
                };
                let token = email_tokens::issue(conn, id, VERIFY_EMAIL, expires_at)?;
                let to = user.pending_email.as_deref().unwrap_or(&user.email);
                Ok(Some(messages::verify_email(
                    &site_url, to, &user.uuid, &token,
                )))
            })
            .await?;
        app.mailer.send(mail.into_iter().collect(), now).await;
    }
    body::json(StatusCode::OK, &json!({"success": true}))
}

/// `POST /api/users/verify_email/ {uuid, token}`: consumes the token, applies `pending_email`
/// (telling the old and the new address), marks the address verified and logs the client in
/// as that user — or, with 2FA on, starts a pending login instead.
pub async fn verify(app: &App, body: Map<String, Value>) -> Result<Response<Body>> {
    // Upstream's `if not token`: missing, null and blank all count as not given.
    let token = match body.get("token") {
        None | Some(Value::Null) => return Err(required("token")),
        Some(Value::String(s)) if s.trim().is_empty() => return Err(required("token")),
        Some(Value::String(s)) => s.trim().to_owned(),
        // Not a string, so it cannot be a token we issued; it fails as invalid below.
        Some(other) => other.to_string(),
    };
    let uuid = match body.get("uuid") {
        None | Some(Value::Null) => return Err(required("uuid")),
        Some(v) => canonical_uuid(v).ok_or_else(invalid_verification_token)?,
    };
    let user = app
        .db
        .read(|conn| users::get_active_by_uuid(conn, &uuid))?
        .ok_or_else(invalid_verification_token)?;

    let now = app.clock.now();
    let id = user.id;
    let consumed = token.clone();
    let (login, mails) = app
        .db
        .write(move |conn| {
            let user = active_user(conn, id)?.ok_or_else(invalid_verification_token)?;
            if !email_tokens::consume(conn, id, VERIFY_EMAIL, &consumed, now)? {
                return Err(invalid_verification_token());
            }
            let mut changes = vec![("is_email_verified", SqlValue::Integer(1))];
            let mut mails = Vec::new();
            if let Some(new) = &user.pending_email {
                // Returning an error rolls the whole write back, the consumed token included:
                // nothing changes, as SPEC §10.5 asks.
                if users::email_taken(conn, new, Some(id))? {
                    return Err(Error::field(
                        "email",
                        "email_taken",
                        "There is already an account with this email address.",
                    ));
                }
                changes.extend([
                    ("email", SqlValue::Text(new.clone())),
                    ("email_key", SqlValue::Text(users::email_key(new))),
                    ("pending_email", SqlValue::Null),
                ]);
                // A reset link mailed to the old address must not outlive the address.
                email_tokens::revoke(conn, id, RESET_PASSWORD)?;
                mails.push(messages::email_changed(&user.email, &user.email, new));
                mails.push(messages::email_changed(new, &user.email, new));
            }
            users::update(conn, id, &changes)?;
            Ok((sessions::start_login(conn, id, now)?, mails))
        })
        .await?;
    app.mailer.send(mails, now).await;

    let answer = match login {
        Login::Session(_) => json!({"success": true, "token": token}),
        Login::Pending(_) => json!({"success": true, "token": token, "requires_2fa": true}),
    };
    let mut res = body::json(StatusCode::OK, &answer)?;
    sessions::set_login_cookies(app, &mut res, &login);
    Ok(res)
}

/// `POST /api/reset/ {email}`: mails a reset link to the active user with that address.
/// 204 whether or not such a user exists, so addresses cannot be enumerated.
pub async fn request_reset(app: &App, body: Map<String, Value>) -> Result<Response<Body>> {
    let email = match body.get("email") {
        None => return Err(required("email")),
        Some(v) => fields::email("email", v)?,
    };
    let now = app.clock.now();
    // Same order as `request_email_verification`: the 429 before `email_not_available`.
    app.throttles.hit(
        RESET_REQUESTS,
        &users::email_key(&email),
        REQUESTS_PER_DAY,
        DAY_SECS,
        now,
    )?;
    require_mail(app, NO_MAIL_FOR_RESET)?;

    // A read first, so unknown addresses never queue work on the single writer.
    if app
        .db
        .read(|conn| users::find_active_by_email(conn, &email))?
        .is_some()
    {
        let expires_at = now + micros(app.config.token_ttl);
        let site_url = app.mailer.site_url().to_owned();
        let mail = app
            .db
            .write(move |conn| {
                let Some(user) = users::find_active_by_email(conn, &email)? else {
                    return Ok(None);
                };
                let token = email_tokens::issue(conn, user.id, RESET_PASSWORD, expires_at)?;
                // To the stored address, not the spelling the request used.
                Ok(Some(messages::reset_password(
                    &site_url,
                    &user.email,
                    &user.uuid,
                    &token,
                )))
            })
            .await?;
        app.mailer.send(mail.into_iter().collect(), now).await;
    }
    Ok(no_content())
}

/// `POST /api/reset/{uuid}/ {token, password}`: sets the new password, ends every session of
/// the user (whoever knew the old password may hold one) and logs the client in — or starts
/// a pending login when 2FA is on. 204 either way; the cookies carry the outcome.
pub async fn complete_reset(
    app: &App,
    uuid: &str,
    body: Map<String, Value>,
) -> Result<Response<Body>> {
    // Upstream's order: the fields (token, then password), then the user and the token, then
    // the password rules — so a weak password with a bad token reports the token.
    let token = match body.get("token") {
        None => return Err(required("token")),
        Some(v) => fields::string("token", v, usize::MAX, false)?,
    };
    let new_password = match body.get("password") {
        None => return Err(required("password")),
        Some(v) => fields::string("password", v, PASSWORD_MAX_LENGTH, false)?,
    };
    let uuid = canonical_uuid(&Value::String(uuid.to_owned())).ok_or_else(invalid_reset_token)?;
    let user = app
        .db
        .read(|conn| users::get_active_by_uuid(conn, &uuid))?
        .ok_or_else(invalid_reset_token)?;
    let now = app.clock.now();
    if let Err(weak) = fields::check_password_strength(&new_password, &[]) {
        return Err(reset_token_error_or(app, user.id, &token, now, weak));
    }
    // Hashing is slow: never inside the write, which would stall every other writer.
    let hash = app.hash_work(move || password::hash(&new_password)).await?;

    let id = user.id;
    let (login, email) = app
        .db
        .write(move |conn| {
            let user = active_user(conn, id)?.ok_or_else(invalid_reset_token)?;
            if !email_tokens::consume(conn, id, RESET_PASSWORD, &token, now)? {
                return Err(invalid_reset_token());
            }
            users::set_password(conn, id, &hash)?;
            session_rows::delete_for_user(conn, id, None)?;
            Ok((sessions::start_login(conn, id, now)?, user.email))
        })
        .await?;
    app.mailer
        .send(vec![messages::password_changed(&email)], now)
        .await;

    let mut res = no_content();
    sessions::set_login_cookies(app, &mut res, &login);
    Ok(res)
}

/// The error for a refused password: `invalid_token` when the token is bad too, else
/// `otherwise` (upstream reports the token first). The check does not use the token up.
fn reset_token_error_or(
    app: &App,
    user_id: i64,
    token: &str,
    now: Micros,
    otherwise: Error,
) -> Error {
    match app
        .db
        .read(|conn| email_tokens::is_live(conn, user_id, RESET_PASSWORD, token, now))
    {
        Ok(true) => otherwise,
        Ok(false) => invalid_reset_token(),
        Err(e) => e,
    }
}
