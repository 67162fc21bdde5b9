//! Helpers for the session tests (`sessions`, `session_actions`): requests with exactly the
//! cookies and headers a test wants, `Set-Cookie` parsing, mail-dir reading and polling.

pub use super::support::{
    assert_not_authenticated as assert_unauthenticated, db, ok_json as ok, poll,
};
use std::path::Path;

use serde_json::{Value, json};
use usersvc::model::UserRow;

use crate::harness::{Resp, Session, TestServer};

/// A password zxcvbn scores ≥ 3.
pub const PW: &str = "correct horse battery staple 42";
/// Another strong password, for changes.
pub const NEW_PW: &str = "purple monkey dishwasher 1987 lamp";

pub const TWO_HOURS: i64 = 2 * 3600;
pub const DAY: i64 = 86_400;

pub const NO_KEY_ACCESS: &str = "This action does not support personal API key access";
pub const REAUTH: &str = "This action requires you to be recently authenticated.";

/// A request with these optional cookie header, `X-CSRFToken`, bearer key and JSON body.
pub fn send(
    srv: &TestServer,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    csrf: Option<&str>,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> Resp {
    let auth = bearer.map(|k| format!("Bearer {k}"));
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(c) = cookie {
        headers.push(("Cookie", c));
    }
    if let Some(t) = csrf {
        headers.push(("X-CSRFToken", t));
    }
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let text = body.map(Value::to_string);
    if text.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    srv.request_raw_body(method, path, &headers, text.as_deref().map(str::as_bytes))
}

/// `POST /api/login/` with this JSON body and no cookies.
pub fn login_with(srv: &TestServer, body: &Value) -> Resp {
    send(srv, "POST", "/api/login/", None, None, None, Some(body))
}

/// `POST /api/login/ {email, password}` with no cookies.
pub fn login_resp(srv: &TestServer, email: &str, password: &str) -> Resp {
    login_with(srv, &json!({"email": email, "password": password}))
}

/// A user with password [`PW`] and a fresh session.
pub fn user_and_session(srv: &TestServer, email: &str, staff: bool) -> (UserRow, Session) {
    let user = srv.user_with_password(email, staff, Some(PW));
    let session = srv.login(email, PW);
    (user, session)
}

/// `GET /api/users/@me/` on a session.
pub fn me_session(srv: &TestServer, session: &Session) -> Resp {
    srv.session_request("GET", "/api/users/@me/", session, None)
}

/// `PATCH /api/users/@me/` on a session (cookies and CSRF header).
pub fn patch_me(srv: &TestServer, session: &Session, body: Value) -> Resp {
    srv.session_request("PATCH", "/api/users/@me/", session, Some(&body))
}

/// Every `Set-Cookie` value for cookie `name`.
pub fn set_cookies<'a>(res: &'a Resp, name: &str) -> Vec<&'a str> {
    res.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.as_str())
        .filter(|v| {
            v.split(';')
                .next()
                .and_then(|first| first.split_once('='))
                .is_some_and(|(k, _)| k.trim() == name)
        })
        .collect()
}

/// The single `Set-Cookie` for `name`, split into value and attributes (trimmed).
#[track_caller]
pub fn cookie_parts(res: &Resp, name: &str) -> (String, Vec<String>) {
    let all = set_cookies(res, name);
    assert_eq!(all.len(), 1, "one Set-Cookie for {name}: {:?}", res.headers);
    let mut parts = all[0].split(';').map(|p| p.trim().to_owned());
    let first = parts.next().unwrap_or_default();
    let value = first
        .split_once('=')
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default();
    (value, parts.filter(|p| !p.is_empty()).collect())
}

/// Whether `attrs` holds `attr` (attribute names compared case-insensitively, values exactly).
pub fn has_attr(attrs: &[String], attr: &str) -> bool {
    attrs
        .iter()
        .any(|a| match (a.split_once('='), attr.split_once('=')) {
            (Some((an, av)), Some((bn, bv))) => {
                an.trim().eq_ignore_ascii_case(bn) && av.trim() == bv
            }
            (None, None) => a.eq_ignore_ascii_case(attr),
            _ => false,
        })
}

/// The `.eml` files of a mail directory (contents), oldest name first.
pub fn eml_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("read eml"))
        .collect()
}

/// The `.eml` files whose `Subject:` header is exactly `subject`.
pub fn mails_with_subject(dir: &Path, subject: &str) -> Vec<String> {
    let header = format!("Subject: {subject}");
    eml_files(dir)
        .into_iter()
        .filter(|m| m.lines().any(|l| l.trim_end() == header))
        .collect()
}

/// Whether a mail has `To:` exactly `to`.
pub fn is_to(mail: &str, to: &str) -> bool {
    let header = format!("To: {to}");
    mail.lines().any(|l| l.trim_end() == header)
}

/// The stored password column of a user.
pub fn stored_password(srv: &TestServer, user_id: i64) -> String {
    db(srv)
        .query_row("SELECT password FROM users WHERE id = ?1", [user_id], |r| {
            r.get(0)
        })
        .expect("password column")
}

/// Overwrites the stored password column of a user.
pub fn set_stored_password(srv: &TestServer, user_id: i64, value: &str) {
    db(srv)
        .execute(
            "UPDATE users SET password = ?1 WHERE id = ?2",
            rusqlite::params![value, user_id],
        )
        .expect("set password column");
}

/// Asserts a 403 `authentication_error`/`permission_denied` with this detail.
#[track_caller]
pub fn assert_denied(res: &Resp, detail: &str) {
    res.assert_error(
        403,
        "authentication_error",
        "permission_denied",
        detail,
        None,
    );
}

/// Asserts the 2 h recent-authentication refusal.
#[track_caller]
pub fn assert_reauth(res: &Resp) {
    res.assert_error(
        403,
        "authentication_error",
        "sensitive_action_required_reauth",
        REAUTH,
        None,
    );
}
