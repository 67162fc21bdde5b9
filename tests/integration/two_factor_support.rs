//! Helpers for the 2FA tests: logging in with a second factor over HTTP, and computing TOTP
//! codes the way an authenticator app would.

use serde_json::{Value, json};
use usersvc::auth::totp;
use usersvc::model::UserRow;

pub use crate::harness::Session;
use crate::harness::{Resp, TestServer};

pub const PASSWORD: &str = "a sturdy Passphrase 42";

/// `POST /api/login/ {email, password}`.
pub fn login_raw(srv: &TestServer, email: &str, password: &str) -> Resp {
    srv.request(
        "POST",
        "/api/login/",
        None,
        Some(&json!({"email": email, "password": password})),
    )
}

/// A full login (2FA off) with the test password.
#[track_caller]
pub fn login(srv: &TestServer, email: &str) -> Session {
    srv.login(email, PASSWORD)
}

/// The session a successful login response started; both cookies must be set.
#[track_caller]
pub fn session_from(resp: &Resp) -> Session {
    let session = Session::from_response(resp).expect("sessionid cookie");
    assert!(!session.csrf.is_empty(), "no posthog_csrftoken cookie");
    session
}

/// A login with 2FA on: asserts the `2fa_required` answer and returns the pending cookie.
#[track_caller]
pub fn pending_login(srv: &TestServer, email: &str) -> String {
    let resp = login_raw(srv, email, PASSWORD);
    resp.assert_error(
        401,
        "authentication_error",
        "2fa_required",
        "2FA is required.",
        None,
    );
    Session::from_response(&resp)
        .expect("pending sessionid cookie")
        .token
}

/// `POST /api/login/token/ {token}` with the pending login cookie (no CSRF: none exists yet).
pub fn login_token(srv: &TestServer, pending: &str, token: Value) -> Resp {
    let cookie = format!("sessionid={pending}");
    let body = json!({"token": token}).to_string();
    srv.request_raw_body(
        "POST",
        "/api/login/token/",
        &[("Cookie", &cookie), ("Content-Type", "application/json")],
        Some(body.as_bytes()),
    )
}

/// `GET …/two_factor_start_setup/`: returns the secret's bytes, decoded from the base32 the
/// server showed.
#[track_caller]
pub fn start_setup(srv: &TestServer, session: &Session) -> Vec<u8> {
    let resp = srv.session_request(
        "GET",
        "/api/users/@me/two_factor_start_setup/",
        session,
        None,
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let secret = resp.json()["secret"].as_str().expect("secret").to_owned();
    decode_base32(&secret)
}

/// `POST …/two_factor_validate/ {token}`.
pub fn validate(srv: &TestServer, session: &Session, token: Value) -> Resp {
    srv.session_request(
        "POST",
        "/api/users/@me/two_factor_validate/",
        session,
        Some(&json!({"token": token})),
    )
}

/// The code of the step `offset` steps away from the server's current one, as an
/// authenticator shows it (six digits, leading zeros kept).
pub fn code(srv: &TestServer, secret: &[u8], offset: i64) -> String {
    let step = totp::step_at(srv.clock.now()) + offset;
    format!("{:06}", totp::code(secret, step))
}

/// Moves the server clock to the start of the next 30 s step when the current one is about to
/// end, so a code computed here is still in the same step when the server checks it.
pub fn align_to_step(srv: &TestServer) {
    let second_in_step = (srv.clock.now() / 1_000_000).rem_euclid(30);
    if second_in_step >= 20 {
        srv.clock.advance(30 - second_in_step);
    }
}

/// Sets up a user with a password, logs in, and turns 2FA on; returns the user, the session and
/// the secret. The code of the current step has been used by the confirmation.
#[track_caller]
pub fn user_with_2fa(srv: &TestServer, email: &str) -> (UserRow, Session, Vec<u8>) {
    let user = srv.user_with_password(email, false, Some(PASSWORD));
    let session = login(srv, email);
    let secret = start_setup(srv, &session);
    align_to_step(srv);
    let resp = validate(srv, &session, json!(code(srv, &secret, 0)));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    (user, session, secret)
}

/// `POST …/two_factor_backup_codes/`: returns the new codes.
#[track_caller]
pub fn backup_codes(srv: &TestServer, session: &Session) -> Vec<String> {
    let resp = srv.session_request(
        "POST",
        "/api/users/@me/two_factor_backup_codes/",
        session,
        None,
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    resp.json()["backup_codes"]
        .as_array()
        .expect("backup_codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect()
}

/// `GET …/two_factor_status/`.
#[track_caller]
pub fn status(srv: &TestServer, session: &Session) -> Value {
    let resp = srv.session_request("GET", "/api/users/@me/two_factor_status/", session, None);
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    resp.json()
}

/// The bytes of a base32 secret, as an authenticator app reads them.
pub fn decode_base32(secret: &str) -> Vec<u8> {
    totp_rs::Secret::try_from_base32(secret)
        .expect("base32 secret")
        .as_bytes()
        .to_vec()
}
