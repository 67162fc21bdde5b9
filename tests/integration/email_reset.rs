//! Password reset end to end (SPEC §10.5): `POST /api/reset/ {email}` mails a link,
//! `POST /api/reset/{uuid}/ {token, password}` sets the password, revokes every session and
//! logs the client in.

use serde_json::json;

use crate::email_support::{
    self as es, MailServer, NEW_PASSWORD, PASSWORD, contains, database_bytes, enable_2fa, me,
    me_with_cookie, post, session_from, set_cookie, verify,
};
use crate::harness::{Resp, TestServer};

const RESET_SUBJECT: &str = "Reset your password";
const CHANGED_SUBJECT: &str = "Your password was changed";
const INVALID: &str = "This reset token is invalid or has expired.";
const NOT_CONFIGURED: &str = "Cannot reset passwords because email is not configured for your instance. Please contact your administrator.";

fn request_reset(srv: &TestServer, email: &str) -> Resp {
    post(srv, "/api/reset/", json!({"email": email}))
}

fn complete(srv: &TestServer, uuid: &str, token: &str, password: &str) -> Resp {
    post(
        srv,
        &format!("/api/reset/{uuid}/"),
        json!({"token": token, "password": password}),
    )
}

#[track_caller]
fn assert_invalid(res: &Resp) {
    res.assert_error(
        400,
        "validation_error",
        "invalid_token",
        INVALID,
        Some("token"),
    );
}

#[track_caller]
fn assert_no_content(res: &Resp) {
    assert_eq!(res.status, 204, "{}", String::from_utf8_lossy(&res.body));
    assert!(res.body.is_empty());
}

#[track_caller]
fn assert_not_authenticated(res: &Resp) {
    res.assert_error(
        401,
        "authentication_error",
        "not_authenticated",
        "Authentication credentials were not provided.",
        None,
    );
}

#[test]
fn reset_sets_the_password_revokes_sessions_and_logs_in() {
    let MailServer { srv, outbox } = es::start();
    let user = srv.user_with_password("forgot@example.com", false, Some(PASSWORD));
    let laptop = srv.login("forgot@example.com", PASSWORD);
    let phone = srv.login("forgot@example.com", PASSWORD);

    // The address is matched case-insensitively; the mail goes to the stored spelling.
    assert_no_content(&request_reset(&srv, "FORGOT@example.com"));
    let (uuid, token) = outbox
        .one("forgot@example.com", RESET_SUBJECT)
        .link("reset");
    assert_eq!(uuid, user.uuid);

    let res = complete(&srv, &uuid, &token, NEW_PASSWORD);
    assert_no_content(&res);
    assert_eq!(res.header("Content-Type"), None);
    let fresh = session_from(&res);

    assert_eq!(
        me(&srv, &fresh).status,
        200,
        "the reset logged the client in"
    );
    for old in [&laptop, &phone] {
        assert_not_authenticated(&me(&srv, old));
    }
    outbox.one("forgot@example.com", CHANGED_SUBJECT);

    post(
        &srv,
        "/api/login/",
        json!({"email": "forgot@example.com", "password": PASSWORD}),
    )
    .assert_error(
        400,
        "validation_error",
        "invalid_credentials",
        "Invalid email or password.",
        None,
    );
    srv.login("forgot@example.com", NEW_PASSWORD);

    // Single use.
    assert_invalid(&complete(
        &srv,
        &uuid,
        &token,
        "yet another Sturdy passphrase 5",
    ));
}

#[test]
fn unknown_and_inactive_addresses_get_204_and_no_mail() {
    let MailServer { srv, outbox } = es::start();
    let sleeper = srv.user("asleep@example.com", false);
    srv.set_active(&sleeper, false);
    assert_no_content(&request_reset(&srv, "nobody@example.com"));
    assert_no_content(&request_reset(&srv, "asleep@example.com"));
    assert_eq!(outbox.count(), 0);
}

#[test]
fn reset_request_validates_the_address() {
    let MailServer { srv, .. } = es::start();
    post(&srv, "/api/reset/", json!({})).assert_error(
        400,
        "validation_error",
        "required",
        "This field is required.",
        Some("email"),
    );
    request_reset(&srv, "not an address").assert_error(
        400,
        "validation_error",
        "invalid_input",
        "Enter a valid email address.",
        Some("email"),
    );
}

#[test]
fn reset_request_without_email_configured() {
    let srv = TestServer::start();
    srv.user("someone@example.com", false);
    request_reset(&srv, "someone@example.com").assert_error(
        400,
        "validation_error",
        "email_not_available",
        NOT_CONFIGURED,
        None,
    );
    // The address is still validated first.
    post(&srv, "/api/reset/", json!({})).assert_error(
        400,
        "validation_error",
        "required",
        "This field is required.",
        Some("email"),
    );
}

#[test]
fn reset_requests_are_throttled_at_6_per_day_per_address() {
    let MailServer { srv, outbox } = es::start();
    srv.user("spam@example.com", false);
    for _ in 0..6 {
        assert_no_content(&request_reset(&srv, "spam@example.com"));
    }
    // Any spelling of the address shares the window.
    let res = request_reset(&srv, "SPAM@example.com");
    assert_eq!(res.status, 429);
    assert!(res.header("Retry-After").is_some());
    assert_eq!(res.json()["code"], "throttled");
    assert_eq!(outbox.count(), 6);

    srv.clock.advance(86_400);
    assert_no_content(&request_reset(&srv, "spam@example.com"));
}

#[test]
fn complete_reset_checks_fields_then_token_then_password_rules() {
    let MailServer { srv, outbox } = es::start();
    let user = srv.user("rules@example.com", false);
    request_reset(&srv, "rules@example.com");
    let (uuid, token) = outbox.one("rules@example.com", RESET_SUBJECT).link("reset");
    let path = format!("/api/reset/{uuid}/");
    let required = |res: &Resp, attr: &str| {
        res.assert_error(
            400,
            "validation_error",
            "required",
            "This field is required.",
            Some(attr),
        )
    };

    required(&post(&srv, &path, json!({})), "token");
    required(
        &post(&srv, &path, json!({"password": NEW_PASSWORD})),
        "token",
    );
    required(&post(&srv, &path, json!({"token": token})), "password");
    post(&srv, &path, json!({"token": "", "password": NEW_PASSWORD})).assert_error(
        400,
        "validation_error",
        "blank",
        "This field may not be blank.",
        Some("token"),
    );
    complete(&srv, &uuid, &token, "short").assert_error(
        400,
        "validation_error",
        "invalid_input",
        "This password is too short. It must contain at least 8 characters.",
        Some("password"),
    );
    complete(&srv, &uuid, &token, &"x".repeat(129)).assert_error(
        400,
        "validation_error",
        "max_length",
        "Ensure this field has no more than 128 characters.",
        Some("password"),
    );
    // Field errors come before the token.
    let long = complete(&srv, &uuid, "garbage", &"x".repeat(129));
    assert_eq!(long.json()["code"], "max_length");
    let weak = complete(&srv, &uuid, &token, "password1");
    assert_eq!(weak.status, 400);
    assert_eq!(weak.json()["code"], "invalid_input");
    assert_eq!(weak.json()["attr"], "password");
    // A weak password and a bad token: the token is reported (upstream's order).
    assert_invalid(&complete(&srv, &uuid, "garbage", "password1"));
    assert_invalid(&complete(&srv, "not-a-uuid", &token, "short"));

    // None of the refusals used the token up.
    assert_no_content(&complete(&srv, &user.uuid, &token, NEW_PASSWORD));
}

#[test]
fn bad_tokens_and_unknown_users_are_invalid() {
    let MailServer { srv, outbox } = es::start();
    let user = srv.user("victim@example.com", false);
    let other = srv.user("other@example.com", false);
    request_reset(&srv, "victim@example.com");
    request_reset(&srv, "other@example.com");
    let token = outbox
        .one("victim@example.com", RESET_SUBJECT)
        .link("reset")
        .1;
    let others = outbox
        .one("other@example.com", RESET_SUBJECT)
        .link("reset")
        .1;

    assert_invalid(&complete(&srv, &user.uuid, "garbage", NEW_PASSWORD));
    assert_invalid(&complete(&srv, &user.uuid, &others, NEW_PASSWORD));
    assert_invalid(&complete(&srv, &user.uuid, &token[1..], NEW_PASSWORD));
    assert_invalid(&complete(
        &srv,
        "0190a0b0-0000-7000-8000-000000000000",
        &token,
        NEW_PASSWORD,
    ));
    assert_invalid(&complete(&srv, "not-a-uuid", &token, NEW_PASSWORD));
    assert_invalid(&complete(&srv, &other.uuid, &token, NEW_PASSWORD));
    srv.set_active(&user, false);
    assert_invalid(&complete(&srv, &user.uuid, &token, NEW_PASSWORD));
    srv.set_active(&user, true);

    assert_no_content(&complete(&srv, &user.uuid, &token, NEW_PASSWORD));
}

#[test]
fn reset_token_expires_after_24_hours() {
    let MailServer { srv, outbox } = es::start();
    let user = srv.user("slow@example.com", false);
    request_reset(&srv, "slow@example.com");
    let token = outbox
        .one("slow@example.com", RESET_SUBJECT)
        .link("reset")
        .1;
    srv.clock.advance(86_400);
    assert_invalid(&complete(&srv, &user.uuid, &token, NEW_PASSWORD));
}

#[test]
fn reset_and_verification_tokens_are_not_interchangeable() {
    let MailServer { srv, outbox } = es::start();
    let user = srv.user("purpose@example.com", false);
    request_reset(&srv, "purpose@example.com");
    let reset = outbox
        .one("purpose@example.com", RESET_SUBJECT)
        .link("reset")
        .1;
    es::request_verification(&srv, &user.uuid);
    let verification = es::verification_token(&outbox, "purpose@example.com");

    let res = verify(&srv, &user.uuid, &reset);
    assert_eq!(res.json()["code"], "invalid_token");
    assert_invalid(&complete(&srv, &user.uuid, &verification, NEW_PASSWORD));
    // Both still work for their own purpose.
    assert_eq!(verify(&srv, &user.uuid, &verification).status, 200);
    assert_no_content(&complete(&srv, &user.uuid, &reset, NEW_PASSWORD));
}

#[test]
fn reset_for_a_2fa_user_starts_a_pending_login() {
    let MailServer { srv, outbox } = es::start();
    let user = srv.user_with_password("guarded@example.com", false, Some(PASSWORD));
    enable_2fa(&srv, &user);
    request_reset(&srv, "guarded@example.com");
    let token = outbox
        .one("guarded@example.com", RESET_SUBJECT)
        .link("reset")
        .1;

    let res = complete(&srv, &user.uuid, &token, NEW_PASSWORD);
    assert_no_content(&res);
    assert_eq!(set_cookie(&res, "posthog_csrftoken"), None);
    let pending = set_cookie(&res, "sessionid").expect("pending login cookie");
    assert_not_authenticated(&me_with_cookie(&srv, &pending));
    // The password did change.
    let res = post(
        &srv,
        "/api/login/",
        json!({"email": "guarded@example.com", "password": NEW_PASSWORD}),
    );
    assert_eq!(res.json()["code"], "2fa_required");
}

#[test]
fn reset_tokens_are_not_stored_in_plaintext() {
    let MailServer { srv, outbox } = es::start();
    srv.user("hidden@example.com", false);
    request_reset(&srv, "hidden@example.com");
    let token = outbox
        .one("hidden@example.com", RESET_SUBJECT)
        .link("reset")
        .1;
    let bytes = database_bytes(&srv);
    assert!(
        !contains(&bytes, &token),
        "token in the database or its WAL"
    );
}

#[test]
fn verifying_a_new_address_voids_reset_links_sent_to_the_old_one() {
    let MailServer { srv, outbox } = es::start();
    let user = srv.user_with_password("before@example.com", false, Some(PASSWORD));
    let session = srv.login("before@example.com", PASSWORD);
    request_reset(&srv, "before@example.com");
    let reset = outbox
        .one("before@example.com", RESET_SUBJECT)
        .link("reset")
        .1;

    let res = srv.session_request(
        "PATCH",
        "/api/users/@me/",
        &session,
        Some(&json!({"email": "after@example.com", "current_password": PASSWORD})),
    );
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let token = es::verification_token(&outbox, "after@example.com");
    assert_eq!(verify(&srv, &user.uuid, &token).status, 200);

    assert_invalid(&complete(&srv, &user.uuid, &reset, NEW_PASSWORD));
}
