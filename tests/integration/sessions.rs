//! Sessions over HTTP (SPEC §3.2, §10.1 step 3, §10.5): login and its cookies, login errors
//! and the failed-login lockout, logout, CSRF, session-vs-key precedence, idle expiry, the 2 h
//! recent-authentication rule, imported Django hashes, and tokens at rest.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::harness::{Resp, Session, TestServer};
use crate::session_util::*;

const INVALID_CREDENTIALS: &str = "Invalid email or password.";
const LOCKED: &str = "Too many failed login attempts. Please try again in 15 minutes.";

#[track_caller]
fn assert_invalid_credentials(res: &Resp) {
    res.assert_error(
        400,
        "validation_error",
        "invalid_credentials",
        INVALID_CREDENTIALS,
        None,
    );
}

#[track_caller]
fn assert_locked(res: &Resp) {
    res.assert_error(
        403,
        "authentication_error",
        "too_many_failed_attempts",
        LOCKED,
        None,
    );
}

/// The login time (`sessions.created_at`, µs) of the user's only session.
fn session_created_at(srv: &TestServer, user_id: i64) -> i64 {
    db(srv)
        .query_row(
            "SELECT created_at FROM sessions WHERE user_id = ?1 AND pending = 0",
            [user_id],
            |r| r.get(0),
        )
        .expect("one session")
}

fn session_last_seen(srv: &TestServer, user_id: i64) -> i64 {
    db(srv)
        .query_row(
            "SELECT last_seen_at FROM sessions WHERE user_id = ?1 AND pending = 0",
            [user_id],
            |r| r.get(0),
        )
        .expect("one session")
}

// ---------------------------------------------------------------------------------------------
// Login: body and cookies

#[test]
fn login_answers_success_and_sets_both_cookies() {
    let srv = TestServer::start();
    srv.user_with_password("login@example.com", false, Some(PW));
    let res = login_resp(&srv, "login@example.com", PW);
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.body, br#"{"success":true}"#.to_vec());
    assert!(
        res.header("content-type")
            .is_some_and(|v| v.starts_with("application/json")),
        "{:?}",
        res.headers
    );

    let (token, attrs) = cookie_parts(&res, "sessionid");
    assert!(!token.is_empty());
    for a in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=1209600"] {
        assert!(has_attr(&attrs, a), "sessionid lacks {a}: {attrs:?}");
    }
    assert!(!has_attr(&attrs, "Secure"), "sessionid: {attrs:?}");

    let (csrf, attrs) = cookie_parts(&res, "posthog_csrftoken");
    assert!(!csrf.is_empty());
    for a in ["SameSite=Lax", "Path=/", "Max-Age=1209600"] {
        assert!(
            has_attr(&attrs, a),
            "posthog_csrftoken lacks {a}: {attrs:?}"
        );
    }
    assert!(
        !has_attr(&attrs, "HttpOnly"),
        "csrf must be readable: {attrs:?}"
    );
    assert!(!has_attr(&attrs, "Secure"), "posthog_csrftoken: {attrs:?}");
    assert_ne!(token, csrf);
}

#[test]
fn cookies_are_secure_when_site_url_is_https() {
    let srv = TestServer::start_with(|c| c.site_url = Some("https://users.example.com".into()));
    srv.user_with_password("secure@example.com", false, Some(PW));
    let res = login_resp(&srv, "secure@example.com", PW);
    assert_eq!(res.status, 200);
    let (_, attrs) = cookie_parts(&res, "sessionid");
    for a in [
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=1209600",
        "Secure",
    ] {
        assert!(has_attr(&attrs, a), "sessionid lacks {a}: {attrs:?}");
    }
    let (_, attrs) = cookie_parts(&res, "posthog_csrftoken");
    for a in ["SameSite=Lax", "Path=/", "Max-Age=1209600", "Secure"] {
        assert!(
            has_attr(&attrs, a),
            "posthog_csrftoken lacks {a}: {attrs:?}"
        );
    }
    assert!(!has_attr(&attrs, "HttpOnly"));
}

#[test]
fn cookies_are_not_secure_when_site_url_is_http() {
    let srv = TestServer::start_with(|c| c.site_url = Some("http://users.example.com".into()));
    srv.user_with_password("plain@example.com", false, Some(PW));
    let res = login_resp(&srv, "plain@example.com", PW);
    assert_eq!(res.status, 200);
    for name in ["sessionid", "posthog_csrftoken"] {
        let (_, attrs) = cookie_parts(&res, name);
        assert!(!has_attr(&attrs, "Secure"), "{name}: {attrs:?}");
    }
}

#[test]
fn every_login_issues_a_new_session_token() {
    let srv = TestServer::start();
    srv.user_with_password("fixation@example.com", false, Some(PW));
    let first = srv.login("fixation@example.com", PW);
    let second = srv.login("fixation@example.com", PW);
    assert_ne!(first.token, second.token);

    // Logging in while presenting an existing session cookie still rotates the token.
    let res = send(
        &srv,
        "POST",
        "/api/login/",
        Some(&first.cookie_header()),
        Some(&first.csrf),
        None,
        Some(&json!({"email": "fixation@example.com", "password": PW})),
    );
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let third = Session::from_response(&res).expect("session cookie");
    assert_ne!(third.token, first.token);
    assert_ne!(third.token, second.token);
    ok(&me_session(&srv, &third));
}

#[test]
fn login_email_is_case_insensitive() {
    let srv = TestServer::start();
    srv.user_with_password("Mixed.Case@Example.com", false, Some(PW));
    let res = login_resp(&srv, "mixed.case@example.COM", PW);
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.body, br#"{"success":true}"#.to_vec());
}

#[test]
fn session_reads_me_with_sensitive_session_expiry() {
    let srv = TestServer::start();
    let user = srv.user_with_password("me@example.com", false, Some(PW));
    let before = srv.clock.now();
    let session = srv.login("me@example.com", PW);
    let after = srv.clock.now();

    let me = ok(&me_session(&srv, &session));
    assert_eq!(me["email"], "me@example.com");
    assert_eq!(me["id"], user.id);
    let expires = me["sensitive_session_expires_at"]
        .as_str()
        .unwrap_or_else(|| panic!("expected a string: {me}"))
        .to_owned();
    // `YYYY-MM-DDTHH:MM:SS.ffffffZ`
    let b = expires.as_bytes();
    let pattern = b"dddd-dd-ddTdd:dd:dd.ddddddZ";
    assert!(
        b.len() == pattern.len()
            && b.iter().zip(pattern).all(|(c, p)| if *p == b'd' {
                c.is_ascii_digit()
            } else {
                c == p
            }),
        "format: {expires}"
    );
    // Login time + 2 h, exactly as recorded, and within the window around the login.
    let created = session_created_at(&srv, user.id);
    assert!(before <= created && created <= after);
    assert_eq!(
        expires,
        usersvc::clock::iso(created + TWO_HOURS * 1_000_000)
    );
    assert!(expires >= usersvc::clock::iso(before + TWO_HOURS * 1_000_000));
    assert!(expires <= usersvc::clock::iso(after + TWO_HOURS * 1_000_000));

    // It does not move with later requests.
    srv.clock.advance(600);
    let again = ok(&me_session(&srv, &session));
    assert_eq!(again["sensitive_session_expires_at"], expires.as_str());
}

#[test]
fn key_requests_have_no_sensitive_session_expiry() {
    let srv = TestServer::start();
    let user = srv.user_with_password("keyme@example.com", false, Some(PW));
    let key = srv.key(&user, &["user:read"]);
    let me = ok(&srv.get("/api/users/@me/", &key));
    assert_eq!(me["sensitive_session_expires_at"], Value::Null);
}

// ---------------------------------------------------------------------------------------------
// Login errors

#[test]
fn login_requires_email_then_password() {
    let srv = TestServer::start();
    let res = login_with(&srv, &json!({"password": PW}));
    res.assert_error(
        400,
        "validation_error",
        "required",
        "This field is required.",
        Some("email"),
    );
    let res = login_with(&srv, &json!({}));
    res.assert_error(
        400,
        "validation_error",
        "required",
        "This field is required.",
        Some("email"),
    );
    let res = login_with(&srv, &json!({"email": "someone@example.com"}));
    res.assert_error(
        400,
        "validation_error",
        "required",
        "This field is required.",
        Some("password"),
    );
    // An empty body is `{}`.
    let res = srv.request_raw_body(
        "POST",
        "/api/login/",
        &[("Content-Type", "application/json")],
        None,
    );
    res.assert_error(
        400,
        "validation_error",
        "required",
        "This field is required.",
        Some("email"),
    );
}

#[test]
fn login_rejects_a_malformed_address() {
    let srv = TestServer::start();
    for bad in ["not-an-email", "a@", "@example.com", "two@@example.com"] {
        let res = login_with(&srv, &json!({"email": bad, "password": PW}));
        res.assert_error(
            400,
            "validation_error",
            "invalid_input",
            "Enter a valid email address.",
            Some("email"),
        );
    }
}

#[test]
fn wrong_password_and_unknown_email_are_indistinguishable() {
    let srv = TestServer::start();
    srv.user_with_password("known@example.com", false, Some(PW));
    let wrong = login_resp(&srv, "known@example.com", "not the password at all");
    let unknown = login_resp(&srv, "nobody@example.com", "not the password at all");
    assert_invalid_credentials(&wrong);
    assert_invalid_credentials(&unknown);
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(
        wrong.body,
        br#"{"type":"validation_error","code":"invalid_credentials","detail":"Invalid email or password.","attr":null}"#.to_vec()
    );
    // No session cookie on failure.
    assert!(Session::from_response(&wrong).is_none());
    assert!(Session::from_response(&unknown).is_none());
}

#[test]
fn inactive_user_cannot_log_in() {
    let srv = TestServer::start();
    let user = srv.user_with_password("inactive@example.com", false, Some(PW));
    srv.set_active(&user, false);
    let res = login_resp(&srv, "inactive@example.com", PW);
    assert_invalid_credentials(&res);
    assert!(Session::from_response(&res).is_none());
}

#[test]
fn user_without_usable_password_cannot_log_in() {
    let srv = TestServer::start();
    let user = srv.user("nopass@example.com", false);
    let stored = stored_password(&srv, user.id);
    assert!(stored.starts_with('!'), "unusable password: {stored}");
    for attempt in ["", "x", stored.as_str(), &stored[1..], PW] {
        let res = login_resp(&srv, "nopass@example.com", attempt);
        // An empty password is a field error; anything else is the generic refusal.
        if attempt.is_empty() {
            assert_eq!(res.status, 400);
            assert!(Session::from_response(&res).is_none());
        } else {
            assert_invalid_credentials(&res);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Failed-login lockout

#[test]
fn ten_failures_lock_the_email_even_for_the_right_password() {
    let srv = TestServer::start();
    srv.user_with_password("locked@example.com", false, Some(PW));
    for i in 0..10 {
        let res = login_resp(&srv, "locked@example.com", "wrong password here");
        assert_eq!(
            res.status,
            400,
            "attempt {i}: {}",
            String::from_utf8_lossy(&res.body)
        );
        assert_invalid_credentials(&res);
    }
    let res = login_resp(&srv, "locked@example.com", PW);
    assert_locked(&res);
    assert!(Session::from_response(&res).is_none());
    assert_locked(&login_resp(
        &srv,
        "locked@example.com",
        "wrong password here",
    ));
    // Another account is not affected.
    srv.user_with_password("free@example.com", false, Some(PW));
    assert_eq!(login_resp(&srv, "free@example.com", PW).status, 200);
}

#[test]
fn lockout_counts_per_lowercased_email() {
    let srv = TestServer::start();
    srv.user_with_password("case@example.com", false, Some(PW));
    let variants = ["Case@Example.com", "case@example.com", "CASE@EXAMPLE.COM"];
    for i in 0..10 {
        let res = login_resp(&srv, variants[i % 3], "wrong password here");
        assert_invalid_credentials(&res);
    }
    assert_locked(&login_resp(&srv, "case@example.com", PW));
    assert_locked(&login_resp(&srv, "CaSe@ExAmPlE.cOm", PW));
}

#[test]
fn lockout_counts_unknown_emails_too() {
    let srv = TestServer::start();
    for _ in 0..10 {
        assert_invalid_credentials(&login_resp(&srv, "Ghost@Example.com", "whatever it is"));
    }
    assert_locked(&login_resp(&srv, "ghost@example.com", "whatever it is"));
}

#[test]
fn lockout_lifts_after_fifteen_minutes() {
    let srv = TestServer::start();
    srv.user_with_password("later@example.com", false, Some(PW));
    for _ in 0..10 {
        assert_invalid_credentials(&login_resp(
            &srv,
            "later@example.com",
            "wrong password here",
        ));
    }
    assert_locked(&login_resp(&srv, "later@example.com", PW));
    srv.clock.advance(14 * 60);
    assert_locked(&login_resp(&srv, "later@example.com", PW));
    srv.clock.advance(60 + 1);
    let res = login_resp(&srv, "later@example.com", PW);
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert!(Session::from_response(&res).is_some());
}

#[test]
fn a_success_clears_the_failure_count() {
    let srv = TestServer::start();
    srv.user_with_password("clear@example.com", false, Some(PW));
    for _ in 0..9 {
        assert_invalid_credentials(&login_resp(
            &srv,
            "clear@example.com",
            "wrong password here",
        ));
    }
    assert_eq!(login_resp(&srv, "clear@example.com", PW).status, 200);
    for i in 0..9 {
        let res = login_resp(&srv, "clear@example.com", "wrong password here");
        assert_eq!(res.status, 400, "failure {i} after the success");
        assert_invalid_credentials(&res);
    }
    assert_eq!(login_resp(&srv, "clear@example.com", PW).status, 200);
}

// ---------------------------------------------------------------------------------------------
// Logout

#[track_caller]
fn assert_cookies_expired(res: &Resp) {
    for name in ["sessionid", "posthog_csrftoken"] {
        let (value, attrs) = cookie_parts(res, name);
        assert_eq!(value, "", "{name} value");
        assert!(has_attr(&attrs, "Max-Age=0"), "{name}: {attrs:?}");
        assert!(has_attr(&attrs, "Path=/"), "{name}: {attrs:?}");
    }
}

#[test]
fn logout_ends_the_session() {
    let srv = TestServer::start();
    let (user, session) = user_and_session(&srv, "logout@example.com", false);
    let res = srv.session_request("POST", "/api/logout/", &session, None);
    assert_eq!(res.status, 204, "{}", String::from_utf8_lossy(&res.body));
    assert!(res.body.is_empty());
    assert_cookies_expired(&res);
    assert_unauthenticated(&me_session(&srv, &session));
    assert_eq!(
        srv.query_i64(&format!(
            "SELECT count(*) FROM sessions WHERE user_id = {}",
            user.id
        )),
        0
    );
}

#[test]
fn logout_without_a_session_is_204() {
    let srv = TestServer::start();
    let res = send(&srv, "POST", "/api/logout/", None, None, None, None);
    assert_eq!(res.status, 204, "{}", String::from_utf8_lossy(&res.body));
    assert!(res.body.is_empty());
    assert_cookies_expired(&res);

    // An unknown session cookie is no session either.
    let res = send(
        &srv,
        "POST",
        "/api/logout/",
        Some("sessionid=garbage; posthog_csrftoken=abc"),
        None,
        None,
        None,
    );
    assert_eq!(res.status, 204);
    assert_cookies_expired(&res);
}

#[test]
fn logout_needs_the_csrf_header() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "logoutcsrf@example.com", false);
    let res = send(
        &srv,
        "POST",
        "/api/logout/",
        Some(&session.cookie_header()),
        None,
        None,
        None,
    );
    assert_denied(&res, "CSRF Failed: CSRF token missing.");
    // The session survives the refused logout.
    ok(&me_session(&srv, &session));
}

#[test]
fn logout_leaves_other_sessions_alone() {
    let srv = TestServer::start();
    let (_, first) = user_and_session(&srv, "two@example.com", false);
    let second = srv.login("two@example.com", PW);
    let res = srv.session_request("POST", "/api/logout/", &first, None);
    assert_eq!(res.status, 204);
    assert_unauthenticated(&me_session(&srv, &first));
    ok(&me_session(&srv, &second));
}

// ---------------------------------------------------------------------------------------------
// CSRF

#[test]
fn unsafe_session_request_without_csrf_cookie_is_refused() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "csrf1@example.com", false);
    let cookie = format!("sessionid={}", session.token);
    let res = send(
        &srv,
        "PATCH",
        "/api/users/@me/",
        Some(&cookie),
        Some(&session.csrf),
        None,
        Some(&json!({"first_name": "Nope"})),
    );
    assert_denied(&res, "CSRF Failed: CSRF cookie not set.");
    assert_eq!(ok(&me_session(&srv, &session))["first_name"], "");
}

#[test]
fn unsafe_session_request_without_csrf_header_is_refused() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "csrf2@example.com", false);
    let res = send(
        &srv,
        "PATCH",
        "/api/users/@me/",
        Some(&session.cookie_header()),
        None,
        None,
        Some(&json!({"first_name": "Nope"})),
    );
    assert_denied(&res, "CSRF Failed: CSRF token missing.");
    assert_eq!(ok(&me_session(&srv, &session))["first_name"], "");
}

#[test]
fn unsafe_session_request_with_mismatched_csrf_is_refused() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "csrf3@example.com", false);
    let other = srv.login("csrf3@example.com", PW);
    for wrong in ["wrong", other.csrf.as_str()] {
        let res = send(
            &srv,
            "PATCH",
            "/api/users/@me/",
            Some(&session.cookie_header()),
            Some(wrong),
            None,
            Some(&json!({"first_name": "Nope"})),
        );
        assert_denied(
            &res,
            "CSRF Failed: CSRF token from the 'X-Csrftoken' HTTP header incorrect.",
        );
    }
    assert_eq!(ok(&me_session(&srv, &session))["first_name"], "");
    // With the right header it goes through.
    let res = patch_me(&srv, &session, json!({"first_name": "Yes"}));
    assert_eq!(ok(&res)["first_name"], "Yes");
}

#[test]
fn csrf_applies_to_delete_and_other_unsafe_routes() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "csrf4@example.com", false);
    let cookie = session.cookie_header();
    for (method, path) in [
        ("DELETE", "/api/users/@me/"),
        ("PATCH", "/api/users/@me/hedgehog_config/"),
        ("PUT", "/api/users/@me/"),
        ("PATCH", "/api/users/cancel_email_change_request/"),
    ] {
        let res = send(
            &srv,
            method,
            path,
            Some(&cookie),
            None,
            None,
            Some(&json!({})),
        );
        assert_denied(&res, "CSRF Failed: CSRF token missing.");
    }
    // Still there.
    ok(&me_session(&srv, &session));
}

#[test]
fn safe_requests_need_no_csrf() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "csrfget@example.com", false);
    let cookie = format!("sessionid={}", session.token);
    for path in [
        "/api/users/@me/",
        "/api/users/",
        "/api/users/@me/hedgehog_config/",
    ] {
        let res = send(&srv, "GET", path, Some(&cookie), None, None, None);
        assert_eq!(
            res.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&res.body)
        );
    }
}

#[test]
fn login_needs_no_csrf_even_with_a_live_session() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "csrflogin@example.com", false);
    let cookie = format!("sessionid={}", session.token);
    let res = send(
        &srv,
        "POST",
        "/api/login/",
        Some(&cookie),
        None,
        None,
        Some(&json!({"email": "csrflogin@example.com", "password": PW})),
    );
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.body, br#"{"success":true}"#.to_vec());
    // And with a mismatching header.
    let res = send(
        &srv,
        "POST",
        "/api/login/",
        Some(&session.cookie_header()),
        Some("mismatch"),
        None,
        Some(&json!({"email": "csrflogin@example.com", "password": PW})),
    );
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
}

// ---------------------------------------------------------------------------------------------
// Session vs key precedence

#[test]
fn live_session_wins_over_a_bad_bearer_key() {
    let srv = TestServer::start();
    let (user, session) = user_and_session(&srv, "prec@example.com", false);
    let bad = format!("phx_{}", "0".repeat(43));
    let res = send(
        &srv,
        "GET",
        "/api/users/@me/",
        Some(&session.cookie_header()),
        None,
        Some(&bad),
        None,
    );
    assert_eq!(ok(&res)["id"], user.id);
    let res = send(
        &srv,
        "PATCH",
        "/api/users/@me/",
        Some(&session.cookie_header()),
        Some(&session.csrf),
        Some("garbage-not-a-key"),
        Some(&json!({"first_name": "Sess"})),
    );
    assert_eq!(ok(&res)["first_name"], "Sess");
}

#[test]
fn live_session_wins_over_another_users_valid_key() {
    let srv = TestServer::start();
    let (user, session) = user_and_session(&srv, "owner@example.com", false);
    let other = srv.user_with_password("keyholder@example.com", false, Some(PW));
    let key = srv.key(&other, &["*"]);
    let res = send(
        &srv,
        "GET",
        "/api/users/@me/",
        Some(&session.cookie_header()),
        None,
        Some(&key),
        None,
    );
    let me = ok(&res);
    assert_eq!(me["id"], user.id);
    assert!(me["sensitive_session_expires_at"].is_string());
}

#[test]
fn unknown_session_cookie_is_ignored_for_a_valid_key() {
    let srv = TestServer::start();
    let user = srv.user_with_password("keyuser@example.com", false, Some(PW));
    let key = srv.key(&user, &["user:read", "user:write"]);
    for cookie in [
        "sessionid=garbage",
        "sessionid=garbage; posthog_csrftoken=garbage",
        "sessionid=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let res = send(
            &srv,
            "GET",
            "/api/users/@me/",
            Some(cookie),
            None,
            Some(&key),
            None,
        );
        let me = ok(&res);
        assert_eq!(me["id"], user.id);
        assert_eq!(me["sensitive_session_expires_at"], Value::Null);
        // An unsafe request on the key needs no CSRF.
        let res = send(
            &srv,
            "PATCH",
            "/api/users/@me/",
            Some(cookie),
            None,
            Some(&key),
            Some(&json!({"last_name": "Keyed"})),
        );
        assert_eq!(ok(&res)["last_name"], "Keyed");
    }
}

#[test]
fn garbage_session_cookie_alone_is_not_authenticated() {
    let srv = TestServer::start();
    for cookie in ["sessionid=garbage", "sessionid=", "posthog_csrftoken=x"] {
        let res = send(
            &srv,
            "GET",
            "/api/users/@me/",
            Some(cookie),
            None,
            None,
            None,
        );
        assert_unauthenticated(&res);
    }
}

#[test]
fn logged_out_session_cookie_falls_back_to_the_key() {
    let srv = TestServer::start();
    let (user, session) = user_and_session(&srv, "fallback@example.com", false);
    let key = srv.key(&user, &["user:read"]);
    assert_eq!(
        srv.session_request("POST", "/api/logout/", &session, None)
            .status,
        204
    );
    let res = send(
        &srv,
        "GET",
        "/api/users/@me/",
        Some(&session.cookie_header()),
        None,
        Some(&key),
        None,
    );
    let me = ok(&res);
    assert_eq!(me["sensitive_session_expires_at"], Value::Null);
}

#[test]
fn inactive_users_session_stops_working() {
    let srv = TestServer::start();
    let (user, session) = user_and_session(&srv, "deact@example.com", false);
    ok(&me_session(&srv, &session));
    srv.set_active(&user, false);
    assert_unauthenticated(&me_session(&srv, &session));
}

// ---------------------------------------------------------------------------------------------
// Idle expiry

#[test]
fn session_expires_after_fourteen_idle_days() {
    let srv = TestServer::start();
    let user = srv.user_with_password("idle@example.com", false, Some(PW));
    let key = srv.key(&user, &["user:read"]);
    let session = srv.login("idle@example.com", PW);
    srv.clock.advance(14 * DAY + 1);
    assert_unauthenticated(&me_session(&srv, &session));
    // The expired cookie is ignored; a key still works.
    let res = send(
        &srv,
        "GET",
        "/api/users/@me/",
        Some(&session.cookie_header()),
        None,
        Some(&key),
        None,
    );
    assert_eq!(ok(&res)["sensitive_session_expires_at"], Value::Null);
}

#[test]
fn session_is_alive_just_before_the_idle_limit() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "edge@example.com", false);
    srv.clock.advance(14 * DAY - 60);
    ok(&me_session(&srv, &session));
}

#[test]
fn using_a_session_keeps_it_alive() {
    let srv = TestServer::start();
    let (user, session) = user_and_session(&srv, "active@example.com", false);
    let created = session_created_at(&srv, user.id);

    srv.clock.advance(13 * DAY);
    ok(&me_session(&srv, &session));
    // The last-seen time is written in the background; wait for it.
    let seen = poll(|| {
        let seen = session_last_seen(&srv, user.id);
        (seen >= created + 13 * DAY * 1_000_000).then_some(seen)
    });
    assert!(seen.is_some(), "last_seen_at was not updated");

    srv.clock.advance(13 * DAY);
    ok(&me_session(&srv, &session));
    let seen = poll(|| {
        let seen = session_last_seen(&srv, user.id);
        (seen >= created + 26 * DAY * 1_000_000).then_some(seen)
    });
    assert!(
        seen.is_some(),
        "last_seen_at was not updated the second time"
    );

    // Unused for another 14 days: gone.
    srv.clock.advance(14 * DAY + 1);
    assert_unauthenticated(&me_session(&srv, &session));
}

#[test]
fn last_seen_is_written_at_most_hourly() {
    let srv = TestServer::start();
    let (user, session) = user_and_session(&srv, "hourly@example.com", false);
    let created = session_created_at(&srv, user.id);
    srv.clock.advance(30 * 60);
    for _ in 0..3 {
        ok(&me_session(&srv, &session));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(session_last_seen(&srv, user.id), created);
}

// ---------------------------------------------------------------------------------------------
// Recent authentication (2 h)

/// A member of an org with a team, logged in; returns (org uuid, team id, session).
fn member_with_session(srv: &TestServer, email: &str) -> (String, i64, Session) {
    let user = srv.user_with_password(email, false, Some(PW));
    let org = srv.org("Reauth Org");
    let team = srv.team(&org, "Reauth Team");
    srv.member(&user, &org, 1);
    let session = srv.login(email, PW);
    (org.uuid, team.id, session)
}

#[test]
fn old_session_cannot_change_ordinary_fields() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "old@example.com", false);
    srv.clock.advance(TWO_HOURS + 1);
    assert_reauth(&patch_me(&srv, &session, json!({"first_name": "Late"})));
    assert_reauth(&patch_me(
        &srv,
        &session,
        json!({"notification_settings": {"plugin_disabled": false}}),
    ));
    assert_reauth(&patch_me(&srv, &session, json!({"anonymize_data": true})));
    // An empty body is not "only allow-listed keys".
    assert_reauth(&patch_me(&srv, &session, json!({})));
    // A mix of allow-listed and other keys is refused.
    assert_reauth(&patch_me(
        &srv,
        &session,
        json!({"theme_mode": "dark", "first_name": "Late"}),
    ));
    // PUT too.
    let res = srv.session_request(
        "PUT",
        "/api/users/@me/",
        &session,
        Some(&json!({"first_name": "Late"})),
    );
    assert_reauth(&res);
    // Nothing was saved.
    let me = ok(&me_session(&srv, &session));
    assert_eq!(me["first_name"], "");
    assert_eq!(me["theme_mode"], Value::Null);
}

#[test]
fn session_just_under_two_hours_may_change_fields() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "young@example.com", false);
    srv.clock.advance(TWO_HOURS - 60);
    let res = patch_me(&srv, &session, json!({"first_name": "Young"}));
    assert_eq!(ok(&res)["first_name"], "Young");
}

#[test]
fn old_session_may_change_allow_listed_fields() {
    let srv = TestServer::start();
    let (org, team, session) = member_with_session(&srv, "allow@example.com");
    srv.clock.advance(TWO_HOURS + 1);
    let bodies = [
        json!({"theme_mode": "dark"}),
        json!({"set_current_organization": org}),
        json!({"set_current_team": team}),
        json!({"allow_sidebar_suggestions": true}),
        json!({"shortcut_position": "below"}),
        json!({"has_seen_product_intro_for": {"surveys": true}}),
        json!({"events_column_config": {"active": ["event", "person"]}}),
        json!({"role_at_organization": "engineering"}),
    ];
    for body in &bodies {
        let res = patch_me(&srv, &session, body.clone());
        assert_eq!(
            res.status,
            200,
            "{body}: {}",
            String::from_utf8_lossy(&res.body)
        );
    }
    let all = json!({
        "theme_mode": "light",
        "set_current_organization": org,
        "set_current_team": team,
        "allow_sidebar_suggestions": false,
        "shortcut_position": "hidden",
        "has_seen_product_intro_for": {"x": false},
        "events_column_config": {"active": "DEFAULT"},
        "role_at_organization": "data",
    });
    let me = ok(&patch_me(&srv, &session, all));
    assert_eq!(me["theme_mode"], "light");
    assert_eq!(me["shortcut_position"], "hidden");
    assert_eq!(me["role_at_organization"], "data");
    assert_eq!(me["allow_sidebar_suggestions"], false);
    assert_eq!(me["has_seen_product_intro_for"], json!({"x": false}));
    assert_eq!(me["team"]["id"], team);
}

#[test]
fn old_session_may_use_hedgehog_config_and_reads() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "hog@example.com", false);
    srv.clock.advance(TWO_HOURS + 1);
    let res = srv.session_request(
        "PATCH",
        "/api/users/@me/hedgehog_config/",
        &session,
        Some(&json!({"color": "blue"})),
    );
    assert_eq!(ok(&res), json!({"color": "blue"}));
    let res = srv.session_request("GET", "/api/users/@me/hedgehog_config/", &session, None);
    assert_eq!(ok(&res), json!({"color": "blue"}));
    ok(&me_session(&srv, &session));
    ok(&srv.session_request("GET", "/api/users/", &session, None));
    ok(&srv.session_request("GET", "/api/users/@me/two_factor_status/", &session, None));
}

#[test]
fn old_session_may_personalise_scenes() {
    let srv = TestServer::start();
    let (_, _, session) = member_with_session(&srv, "scene-old@example.com");
    srv.clock.advance(TWO_HOURS + 1);
    let res = srv.session_request(
        "POST",
        "/api/users/@me/scene_personalisation/",
        &session,
        Some(&json!({"scene": "Person", "dashboard": 7})),
    );
    assert_eq!(
        ok(&res)["scene_personalisation"],
        json!([{"scene": "Person", "dashboard": 7}])
    );
}

#[test]
fn old_session_cannot_delete_or_cancel_email_change() {
    let srv = TestServer::start();
    let (user, session) = user_and_session(&srv, "olddelete@example.com", false);
    srv.clock.advance(TWO_HOURS + 1);
    assert_reauth(&srv.session_request("DELETE", "/api/users/@me/", &session, None));
    assert_eq!(
        srv.query_i64(&format!(
            "SELECT count(*) FROM users WHERE id = {}",
            user.id
        )),
        1
    );
    assert_reauth(&srv.session_request(
        "PATCH",
        "/api/users/cancel_email_change_request/",
        &session,
        None,
    ));
    // A fresh login lifts it.
    let fresh = srv.login("olddelete@example.com", PW);
    let res = patch_me(&srv, &fresh, json!({"first_name": "Fresh"}));
    assert_eq!(ok(&res)["first_name"], "Fresh");
}

#[test]
fn keys_are_not_subject_to_recent_authentication() {
    let srv = TestServer::start();
    let user = srv.user_with_password("oldkey@example.com", false, Some(PW));
    let key = srv.key(&user, &["*"]);
    srv.clock.advance(TWO_HOURS + 1);
    let res = srv.patch("/api/users/@me/", &key, json!({"first_name": "Keyed"}));
    assert_eq!(ok(&res)["first_name"], "Keyed");
    srv.clock.advance(30 * DAY);
    let res = srv.patch("/api/users/@me/", &key, json!({"first_name": "Still"}));
    assert_eq!(ok(&res)["first_name"], "Still");
}

// ---------------------------------------------------------------------------------------------
// Imported Django hashes

fn django_pbkdf2(password: &str, salt: &str, iterations: u32) -> String {
    use base64::Engine;
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt.as_bytes(), iterations, &mut out);
    format!(
        "pbkdf2_sha256${iterations}${salt}${}",
        base64::engine::general_purpose::STANDARD.encode(out)
    )
}

#[test]
fn imported_django_hash_logs_in_and_is_rehashed() {
    let srv = TestServer::start();
    let user = srv.user_with_password("imported@example.com", false, Some(PW));
    let django = django_pbkdf2("legacy password from django 7", "Zq3saltsalt", 1000);
    set_stored_password(&srv, user.id, &django);

    // A wrong password does not match and leaves the hash alone.
    assert_invalid_credentials(&login_resp(&srv, "imported@example.com", PW));
    assert_eq!(stored_password(&srv, user.id), django);

    let res = login_resp(
        &srv,
        "imported@example.com",
        "legacy password from django 7",
    );
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let session = Session::from_response(&res).expect("session");
    assert_eq!(ok(&me_session(&srv, &session))["has_password"], true);

    let stored = poll(|| {
        let s = stored_password(&srv, user.id);
        s.starts_with("$argon2id$").then_some(s)
    });
    assert!(stored.is_some(), "still {}", stored_password(&srv, user.id));
    // The re-hashed password keeps working; the old hash string is gone.
    assert_eq!(
        login_resp(
            &srv,
            "imported@example.com",
            "legacy password from django 7"
        )
        .status,
        200
    );
    assert_invalid_credentials(&login_resp(&srv, "imported@example.com", "legacy password"));
}

#[test]
fn django_hash_with_other_iteration_counts_verifies() {
    let srv = TestServer::start();
    let user = srv.user_with_password("iter@example.com", false, Some(PW));
    set_stored_password(
        &srv,
        user.id,
        &django_pbkdf2("another old secret 99", "s4lt", 1),
    );
    assert_eq!(
        login_resp(&srv, "iter@example.com", "another old secret 99").status,
        200
    );
    set_stored_password(
        &srv,
        user.id,
        &django_pbkdf2("another old secret 99", "s4lt", 2500),
    );
    assert_eq!(
        login_resp(&srv, "iter@example.com", "another old secret 99").status,
        200
    );
}

// ---------------------------------------------------------------------------------------------
// Tokens at rest

#[test]
fn session_tokens_are_never_stored_in_plaintext() {
    let srv = TestServer::start();
    let user = srv.user_with_password("rest@example.com", false, Some(PW));
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(srv.login("rest@example.com", PW));
    }
    // Exercise the sessions (last-seen writes, an update) so the WAL has traffic.
    srv.clock.advance(2 * 3600);
    for s in &sessions {
        ok(&me_session(&srv, s));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));

    let mut bytes = std::fs::read(&srv.db_path).expect("db file");
    let wal = srv.db_path.with_extension("sqlite3-wal");
    if let Ok(w) = std::fs::read(&wal) {
        bytes.extend_from_slice(&w);
    }
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    // Positive control: the files were read, and the stored digests are in them.
    for s in &sessions {
        let digest = hex::encode(Sha256::digest(s.token.as_bytes()));
        assert!(
            contains(digest.as_bytes()),
            "digest not found in the database files"
        );
    }
    for s in &sessions {
        assert!(
            !contains(s.token.as_bytes()),
            "session token found in the database files"
        );
    }
    // What is stored is the SHA-256 digest.
    let stored: Vec<String> = {
        let conn = db(&srv);
        let mut stmt = conn
            .prepare("SELECT token_hash FROM sessions WHERE user_id = ?1")
            .expect("prepare");
        stmt.query_map([user.id], |r| r.get(0))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect()
    };
    assert_eq!(stored.len(), sessions.len());
    for s in &sessions {
        let digest = hex::encode(Sha256::digest(s.token.as_bytes()));
        assert!(
            stored.iter().any(|h| h.ends_with(&digest)),
            "no digest for a session in {stored:?}"
        );
    }
}
