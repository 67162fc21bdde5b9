//! Email verification end to end (SPEC §3.7, §10.5; reference §5.8): the email change that
//! stages `pending_email`, the mailed link, `verify_email`, `request_email_verification`, its
//! throttle, and the `.eml` files themselves.

use serde_json::json;

use crate::email_support::{
    self as es, MailServer, PASSWORD, SITE_URL, contains, database_bytes, enable_2fa, me,
    me_with_cookie, post, reload, request_verification, session_from, set_cookie, totp_now,
    verification_token, verify,
};
use crate::harness::TestServer;

const INVALID: &str = "This verification token is invalid or has expired.";
const NOT_CONFIGURED: &str = "Cannot verify email address because email is not configured for your instance. Please contact your administrator.";
const VERIFY_SUBJECT: &str = "Verify your email address";
const CHANGED_SUBJECT: &str = "Your email address was changed";

#[track_caller]
fn assert_invalid(res: &crate::harness::Resp) {
    res.assert_error(
        400,
        "validation_error",
        "invalid_token",
        INVALID,
        Some("token"),
    );
}

#[track_caller]
fn assert_required(res: &crate::harness::Resp, attr: &str) {
    res.assert_error(
        400,
        "validation_error",
        "required",
        "This field is required.",
        Some(attr),
    );
}

/// PATCHes `email` on a session with `current_password`; returns the response body.
#[track_caller]
fn change_email(
    srv: &TestServer,
    session: &crate::harness::Session,
    email: &str,
) -> serde_json::Value {
    let res = srv.session_request(
        "PATCH",
        "/api/users/@me/",
        session,
        Some(&json!({"email": email, "current_password": PASSWORD})),
    );
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    res.json()
}

#[test]
fn email_change_is_applied_by_the_mailed_link_and_logs_the_client_in() {
    let MailServer { srv, outbox } = es::start();
    let user = srv.user_with_password("old@example.com", false, Some(PASSWORD));
    let session = srv.login("old@example.com", PASSWORD);

    let body = change_email(&srv, &session, "new@example.com");
    assert_eq!(body["email"], "old@example.com");
    assert_eq!(body["pending_email"], "new@example.com");

    let mail = outbox.one("new@example.com", VERIFY_SUBJECT);
    let (uuid, token) = mail.link("verify_email");
    assert_eq!(uuid, user.uuid);
    assert_eq!(
        token.len(),
        43,
        "32 random bytes, base64url without padding"
    );
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert!(outbox.find("old@example.com", VERIFY_SUBJECT).is_empty());

    let res = verify(&srv, &uuid, &token);
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(
        String::from_utf8_lossy(&res.body),
        format!(r#"{{"success":true,"token":"{token}"}}"#)
    );
    let fresh = session_from(&res);

    let me = me(&srv, &fresh);
    assert_eq!(me.status, 200, "the verify response logged the client in");
    let me = me.json();
    assert_eq!(me["uuid"], user.uuid.as_str());
    assert_eq!(me["email"], "new@example.com");
    assert_eq!(me["pending_email"], serde_json::Value::Null);
    assert_eq!(me["is_email_verified"], true);

    for to in ["old@example.com", "new@example.com"] {
        let changed = outbox.one(to, CHANGED_SUBJECT);
        assert!(
            changed.body().contains("old@example.com"),
            "{}",
            changed.raw
        );
        assert!(
            changed.body().contains("new@example.com"),
            "{}",
            changed.raw
        );
    }
    // The address is now the login name.
    srv.login("new@example.com", PASSWORD);
}

#[test]
fn verification_token_works_once() {
    let MailServer { srv, outbox } = es::start();
    let user = srv.user("single@example.com", false);
    assert_eq!(request_verification(&srv, &user.uuid).status, 200);
    let token = verification_token(&outbox, "single@example.com");

    assert_eq!(verify(&srv, &user.uuid, &token).status, 200);
    assert_invalid(&verify(&srv, &user.uuid, &token));
}

#[test]
fn verification_without_pending_email_only_marks_the_address_verified() {
    let MailServer { srv, outbox } = es::start();
    let user = srv.user("plain@example.com", false);
    assert_eq!(user.is_email_verified, None);
    request_verification(&srv, &user.uuid);
    let token = verification_token(&outbox, "plain@example.com");

    assert_eq!(verify(&srv, &user.uuid, &token).status, 200);
    let now = reload(&srv, &user);
    assert_eq!(now.email, "plain@example.com");
    assert_eq!(now.is_email_verified, Some(true));
    assert!(outbox.find("plain@example.com", CHANGED_SUBJECT).is_empty());
}

#[test]
fn a_new_pending_email_invalidates_earlier_tokens() {
    let MailServer { srv, outbox } = es::start();
    srv.user_with_password("first@example.com", false, Some(PASSWORD));
    let session = srv.login("first@example.com", PASSWORD);

    change_email(&srv, &session, "second@example.com");
    let (uuid, old_token) = outbox
        .one("second@example.com", VERIFY_SUBJECT)
        .link("verify_email");
    change_email(&srv, &session, "third@example.com");
    let new_token = verification_token(&outbox, "third@example.com");

    assert_invalid(&verify(&srv, &uuid, &old_token));
    assert_eq!(verify(&srv, &uuid, &new_token).status, 200);
    assert_eq!(me(&srv, &session).json()["email"], "third@example.com");
}

#[test]
fn cancelling_the_email_change_invalidates_its_token() {
    let MailServer { srv, outbox } = es::start();
    srv.user_with_password("keep@example.com", false, Some(PASSWORD));
    let session = srv.login("keep@example.com", PASSWORD);
    change_email(&srv, &session, "other@example.com");
    let (uuid, token) = outbox
        .one("other@example.com", VERIFY_SUBJECT)
        .link("verify_email");

    let res = srv.session_request(
        "PATCH",
        "/api/users/cancel_email_change_request/",
        &session,
        None,
    );
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_invalid(&verify(&srv, &uuid, &token));
    assert_eq!(me(&srv, &session).json()["email"], "keep@example.com");
}

#[test]
fn token_expires_after_24_hours() {
    let MailServer { srv, outbox } = es::start();
    let user = srv.user("late@example.com", false);
    request_verification(&srv, &user.uuid);
    let token = verification_token(&outbox, "late@example.com");

    srv.clock.advance(86_400);
    assert_invalid(&verify(&srv, &user.uuid, &token));
}

#[test]
fn token_is_still_valid_just_before_24_hours() {
    let MailServer { srv, outbox } = es::start();
    let user = srv.user("ontime@example.com", false);
    request_verification(&srv, &user.uuid);
    let token = verification_token(&outbox, "ontime@example.com");

    srv.clock.advance(86_400 - 60);
    assert_eq!(verify(&srv, &user.uuid, &token).status, 200);
}

#[test]
fn several_tokens_may_be_valid_and_one_success_invalidates_all() {
    let MailServer { srv, outbox } = es::start();
    let user = srv.user("many@example.com", false);
    request_verification(&srv, &user.uuid);
    request_verification(&srv, &user.uuid);
    let tokens: Vec<String> = outbox
        .find("many@example.com", VERIFY_SUBJECT)
        .iter()
        .map(|m| m.link("verify_email").1)
        .collect();
    assert_eq!(tokens.len(), 2);
    assert_ne!(tokens[0], tokens[1]);

    assert_eq!(verify(&srv, &user.uuid, &tokens[1]).status, 200);
    assert_invalid(&verify(&srv, &user.uuid, &tokens[0]));
}

#[test]
fn unknown_users_and_garbage_tokens_are_invalid() {
    let MailServer { srv, outbox } = es::start();
    let user = srv.user("target@example.com", false);
    let other = srv.user("other@example.com", false);
    request_verification(&srv, &user.uuid);
    request_verification(&srv, &other.uuid);
    let token = verification_token(&outbox, "target@example.com");
    let others_token = verification_token(&outbox, "other@example.com");

    // Unknown, malformed and non-string uuids.
    assert_invalid(&verify(
        &srv,
        "0190a0b0-0000-7000-8000-000000000000",
        &token,
    ));
    assert_invalid(&verify(&srv, "not-a-uuid", &token));
    assert_invalid(&verify(&srv, "", &token));
    assert_invalid(&post(
        &srv,
        "/api/users/verify_email/",
        json!({"uuid": 42, "token": token}),
    ));
    // Wrong tokens for a real user.
    assert_invalid(&verify(&srv, &user.uuid, "garbage"));
    assert_invalid(&verify(&srv, &user.uuid, &token[..token.len() - 1]));
    assert_invalid(&verify(&srv, &user.uuid, &user.uuid));
    assert_invalid(&verify(&srv, &user.uuid, &others_token));
    assert_invalid(&post(
        &srv,
        "/api/users/verify_email/",
        json!({"uuid": user.uuid, "token": 123}),
    ));
    // None of that used up the real token.
    assert_eq!(verify(&srv, &user.uuid, &token).status, 200);
}

#[test]
fn uuid_case_and_surrounding_whitespace_do_not_matter() {
    let MailServer { srv, outbox } = es::start();
    let user = srv.user("case@example.com", false);
    request_verification(&srv, &user.uuid);
    let token = verification_token(&outbox, "case@example.com");
    let res = verify(&srv, &format!(" {} ", user.uuid.to_uppercase()), &token);
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
}

#[test]
fn inactive_users_cannot_verify() {
    let MailServer { srv, outbox } = es::start();
    let user = srv.user("gone@example.com", false);
    request_verification(&srv, &user.uuid);
    let token = verification_token(&outbox, "gone@example.com");
    srv.set_active(&user, false);
    assert_invalid(&verify(&srv, &user.uuid, &token));
    srv.set_active(&user, true);
    assert_eq!(verify(&srv, &user.uuid, &token).status, 200);
}

#[test]
fn verify_checks_token_then_uuid_presence() {
    let srv = TestServer::start();
    let path = "/api/users/verify_email/";
    assert_required(&post(&srv, path, json!({})), "token");
    assert_required(&post(&srv, path, json!({"uuid": "x"})), "token");
    assert_required(
        &post(&srv, path, json!({"uuid": "x", "token": ""})),
        "token",
    );
    assert_required(
        &post(&srv, path, json!({"uuid": "x", "token": "  "})),
        "token",
    );
    assert_required(
        &post(&srv, path, json!({"uuid": "x", "token": null})),
        "token",
    );
    assert_required(&post(&srv, path, json!({"token": "x"})), "uuid");
    assert_required(
        &post(&srv, path, json!({"token": "x", "uuid": null})),
        "uuid",
    );
    // An empty body is `{}`.
    let res = srv.request_raw_body("POST", path, &[], None);
    assert_required(&res, "token");
}

#[test]
fn verify_for_a_2fa_user_starts_a_pending_login() {
    let MailServer { srv, outbox } = es::start();
    let user = srv.user_with_password("twofa@example.com", false, Some(PASSWORD));
    enable_2fa(&srv, &user);
    request_verification(&srv, &user.uuid);
    let token = verification_token(&outbox, "twofa@example.com");

    let res = verify(&srv, &user.uuid, &token);
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(
        String::from_utf8_lossy(&res.body),
        format!(r#"{{"success":true,"token":"{token}","requires_2fa":true}}"#)
    );
    assert_eq!(reload(&srv, &user).is_email_verified, Some(true));
    assert_eq!(set_cookie(&res, "posthog_csrftoken"), None);
    let pending = set_cookie(&res, "sessionid").expect("pending login cookie");

    // A pending login authenticates nothing…
    me_with_cookie(&srv, &pending).assert_error(
        401,
        "authentication_error",
        "not_authenticated",
        "Authentication credentials were not provided.",
        None,
    );
    // …until the second factor completes it.
    let cookie = format!("sessionid={pending}");
    let body = json!({"token": totp_now(&srv)}).to_string();
    let res = srv.request_raw_body(
        "POST",
        "/api/login/token/",
        &[("Cookie", &cookie), ("Content-Type", "application/json")],
        Some(body.as_bytes()),
    );
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let session = session_from(&res);
    assert_eq!(me(&srv, &session).json()["email"], "twofa@example.com");
}

#[test]
fn verify_logs_in_as_the_target_and_needs_no_csrf() {
    let MailServer { srv, outbox } = es::start();
    srv.user_with_password("caller@example.com", false, Some(PASSWORD));
    let caller = srv.login("caller@example.com", PASSWORD);
    let target = srv.user("target@example.com", false);
    request_verification(&srv, &target.uuid);
    let token = verification_token(&outbox, "target@example.com");

    // The caller's session cookie, but no X-CSRFToken header.
    let cookie = caller.cookie_header();
    let body = json!({"uuid": target.uuid, "token": token}).to_string();
    let res = srv.request_raw_body(
        "POST",
        "/api/users/verify_email/",
        &[("Cookie", &cookie), ("Content-Type", "application/json")],
        Some(body.as_bytes()),
    );
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let session = session_from(&res);
    assert_eq!(me(&srv, &session).json()["email"], "target@example.com");
}

#[test]
fn an_address_taken_meanwhile_refuses_and_changes_nothing() {
    let MailServer { srv, outbox } = es::start();
    let user = srv.user_with_password("mover@example.com", false, Some(PASSWORD));
    let session = srv.login("mover@example.com", PASSWORD);
    change_email(&srv, &session, "wanted@example.com");
    let token = verification_token(&outbox, "wanted@example.com");

    // Someone else takes the address (in another case) before the link is opened.
    let squatter = srv.user("WANTED@example.com", false);
    verify(&srv, &user.uuid, &token).assert_error(
        400,
        "validation_error",
        "email_taken",
        "There is already an account with this email address.",
        Some("email"),
    );
    let now = reload(&srv, &user);
    assert_eq!(now.email, "mover@example.com");
    assert_eq!(now.pending_email.as_deref(), Some("wanted@example.com"));
    assert_eq!(now.is_email_verified, None);
    assert!(outbox.find("mover@example.com", CHANGED_SUBJECT).is_empty());

    // The token was not used up: once the address is free again, it works.
    let conn = usersvc::db::open_connection(&srv.db_path).unwrap();
    usersvc::db::users::delete(&conn, squatter.id).unwrap();
    assert_eq!(verify(&srv, &user.uuid, &token).status, 200);
    assert_eq!(reload(&srv, &user).email, "wanted@example.com");
}

#[test]
fn request_verification_answers_200_for_any_uuid() {
    let MailServer { srv, outbox } = es::start();
    for uuid in [
        json!("0190a0b0-0000-7000-8000-000000000000"),
        json!("not-a-uuid"),
        json!(""),
        json!(7),
    ] {
        let res = post(
            &srv,
            "/api/users/request_email_verification/",
            json!({"uuid": uuid}),
        );
        assert_eq!(res.status, 200, "{uuid}");
        assert_eq!(res.body, br#"{"success":true}"#);
    }
    assert_eq!(outbox.count(), 0, "nobody to mail");

    let user = srv.user("real@example.com", false);
    let res = request_verification(&srv, &user.uuid);
    assert_eq!(res.body, br#"{"success":true}"#);
    assert_eq!(outbox.count(), 1);
}

#[test]
fn request_verification_skips_inactive_users() {
    let MailServer { srv, outbox } = es::start();
    let user = srv.user("asleep@example.com", false);
    srv.set_active(&user, false);
    assert_eq!(request_verification(&srv, &user.uuid).status, 200);
    assert_eq!(outbox.count(), 0);
}

#[test]
fn request_verification_mails_the_pending_address_when_there_is_one() {
    let MailServer { srv, outbox } = es::start();
    let user = srv.user_with_password("now@example.com", false, Some(PASSWORD));
    let session = srv.login("now@example.com", PASSWORD);
    change_email(&srv, &session, "next@example.com");
    assert_eq!(outbox.find("next@example.com", VERIFY_SUBJECT).len(), 1);

    request_verification(&srv, &user.uuid);
    assert_eq!(outbox.find("next@example.com", VERIFY_SUBJECT).len(), 2);
    assert!(outbox.find("now@example.com", VERIFY_SUBJECT).is_empty());
}

#[test]
fn request_verification_requires_uuid() {
    let srv = TestServer::start();
    let path = "/api/users/request_email_verification/";
    assert_required(&post(&srv, path, json!({})), "uuid");
    assert_required(&post(&srv, path, json!({"uuid": null})), "uuid");
}

#[test]
fn request_verification_without_email_configured() {
    let srv = TestServer::start();
    let user = srv.user("nomail@example.com", false);
    request_verification(&srv, &user.uuid).assert_error(
        400,
        "validation_error",
        "email_not_available",
        NOT_CONFIGURED,
        None,
    );
    // Unknown uuids get the same answer.
    request_verification(&srv, "whatever").assert_error(
        400,
        "validation_error",
        "email_not_available",
        NOT_CONFIGURED,
        None,
    );
}

#[test]
fn request_verification_is_throttled_at_6_per_day_per_uuid() {
    let MailServer { srv, outbox } = es::start();
    let user = srv.user("busy@example.com", false);
    for _ in 0..6 {
        assert_eq!(request_verification(&srv, &user.uuid).status, 200);
    }
    let res = request_verification(&srv, &user.uuid);
    assert_eq!(res.status, 429);
    let retry: u64 = res
        .header("Retry-After")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((86_000..=86_400).contains(&retry), "Retry-After {retry}");
    res.assert_error(
        429,
        "throttled_error",
        "throttled",
        &format!("Request was throttled. Expected available in {retry} seconds."),
        None,
    );
    assert_eq!(outbox.count(), 6, "the refused request sent nothing");

    // Another uuid has its own window.
    let other = srv.user("calm@example.com", false);
    assert_eq!(request_verification(&srv, &other.uuid).status, 200);
    // The window slides: a day later the first request has left it.
    srv.clock.advance(86_400);
    assert_eq!(request_verification(&srv, &user.uuid).status, 200);
}

#[test]
fn the_throttle_comes_before_email_not_available() {
    let srv = TestServer::start();
    let uuid = "0190a0b0-0000-7000-8000-000000000001";
    for _ in 0..6 {
        assert_eq!(request_verification(&srv, uuid).status, 400);
    }
    assert_eq!(request_verification(&srv, uuid).status, 429);
}

#[test]
fn request_verification_by_a_logged_in_caller_is_throttled_per_user() {
    let MailServer { srv, .. } = es::start();
    srv.user_with_password("me@example.com", false, Some(PASSWORD));
    let session = srv.login("me@example.com", PASSWORD);
    let path = "/api/users/request_email_verification/";
    for i in 0..6 {
        let uuid = format!("0190a0b0-0000-7000-8000-00000000000{i}");
        let res = srv.session_request("POST", path, &session, Some(&json!({"uuid": uuid})));
        assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    }
    let res = srv.session_request(
        "POST",
        path,
        &session,
        Some(&json!({"uuid": "0190a0b0-0000-7000-8000-000000000009"})),
    );
    assert_eq!(res.status, 429);
}

#[test]
fn eml_files_follow_the_spec() {
    let MailServer { srv, outbox } = es::start();
    let user = srv.user("format@example.com", false);
    request_verification(&srv, &user.uuid);

    let mail = outbox.one("format@example.com", VERIFY_SUBJECT);
    // `<unix-ms>-<uuid>.eml`, sent around the server's clock.
    let stem = mail.name.strip_suffix(".eml").expect(".eml");
    let (ms, id) = stem.split_once('-').expect("<unix-ms>-<uuid>");
    let ms: i64 = ms.parse().expect("unix ms");
    assert!(
        (ms - srv.clock.now() / 1000).abs() < 60_000,
        "{}",
        mail.name
    );
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{}", mail.name);
    // No temporary file is left behind.
    let names: Vec<String> = std::fs::read_dir(outbox.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![mail.name.clone()]);

    assert_eq!(mail.header("Subject"), Some(VERIFY_SUBJECT));
    assert_eq!(mail.header("To"), Some("format@example.com"));
    assert_eq!(
        mail.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(mail.header("Content-Transfer-Encoding"), Some("8bit"));
    assert!(mail.header("From").is_some());
    assert!(mail.header("Date").is_some());
    assert!(!mail.raw.to_ascii_lowercase().contains("quoted-printable"));

    let (uuid, token) = mail.link("verify_email");
    assert!(
        mail.body()
            .contains(&format!("{SITE_URL}/verify_email/{uuid}/{token}"))
    );
}

#[test]
fn eml_keeps_non_ascii_as_8bit_utf8() {
    let MailServer { srv, outbox } = es::start();
    srv.user_with_password("ascii@example.com", false, Some(PASSWORD));
    let session = srv.login("ascii@example.com", PASSWORD);
    change_email(&srv, &session, "joerg@münchen.de");
    let mail = outbox.one("joerg@münchen.de", VERIFY_SUBJECT);
    assert_eq!(mail.header("Content-Transfer-Encoding"), Some("8bit"));
    let (uuid, token) = mail.link("verify_email");
    assert_eq!(verify(&srv, &uuid, &token).status, 200);
    let changed = outbox.one("ascii@example.com", CHANGED_SUBJECT);
    assert!(
        changed.body().contains("joerg@münchen.de"),
        "{}",
        changed.raw
    );
}

#[test]
fn the_link_uses_the_bound_address_without_site_url() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let srv = TestServer::start_with(|c| {
        c.mail = Some(usersvc::config::MailTransport::Dir(path));
    });
    let user = srv.user("bound@example.com", false);
    request_verification(&srv, &user.uuid);
    let name = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let raw = std::fs::read_to_string(name).unwrap();
    let link = format!("http://{}/verify_email/{}/", srv.addr, user.uuid);
    assert!(raw.contains(&link), "{raw}");
    drop(srv);
}

#[test]
fn verification_tokens_are_not_stored_in_plaintext() {
    let MailServer { srv, outbox } = es::start();
    let user = srv.user("secret@example.com", false);
    request_verification(&srv, &user.uuid);
    let token = verification_token(&outbox, "secret@example.com");

    let bytes = database_bytes(&srv);
    assert!(
        !contains(&bytes, &token),
        "token in the database or its WAL"
    );
    // Its digest is what identifies it.
    assert!(contains(&bytes, &usersvc::auth::token_digest(&token)));
}
