//! Session-only user actions over HTTP (SPEC §3.1, §3.6, §3.7, §10.5; reference §5.3.5, §5.4,
//! §5.6, §5.9, §7, §8): email and password changes through a session, DELETE, the
//! `scene_personalisation` and `cancel_email_change_request` actions, and keys on session-only
//! routes.

use std::path::PathBuf;

use serde_json::{Value, json};
use usersvc::config::MailTransport;

use crate::harness::{Resp, Session, TestServer};
use crate::session_util::*;
use crate::support::{NON_STAFF_DETAIL, keys_of, readable_user_fields};

const CONFIRM_EMAIL: &str = "Confirm it's you before changing your email.";

/// A server whose mail goes to a temp directory (email is configured).
fn mail_server() -> (TestServer, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("mail dir");
    let path = dir.path().to_path_buf();
    let for_config = path.clone();
    let srv = TestServer::start_with(move |c| c.mail = Some(MailTransport::Dir(for_config)));
    (srv, dir, path)
}

#[track_caller]
fn assert_field(res: &Resp, attr: &str, code: &str, detail: &str) {
    res.assert_error(400, "validation_error", code, detail, Some(attr));
}

#[track_caller]
fn assert_non_field(res: &Resp, code: &str, detail: &str) {
    res.assert_error(400, "validation_error", code, detail, None);
}

fn user_exists(srv: &TestServer, id: i64) -> bool {
    srv.query_i64(&format!("SELECT count(*) FROM users WHERE id = {id}")) == 1
}

// ---------------------------------------------------------------------------------------------
// Email changes through a session (email not configured: applied directly)

#[test]
fn fresh_session_changes_email_directly() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "before@example.com", false);
    let me = ok(&patch_me(
        &srv,
        &session,
        json!({"email": "after@example.com"}),
    ));
    assert_eq!(me["email"], "after@example.com");
    assert_eq!(me["pending_email"], Value::Null);
    assert_eq!(
        ok(&me_session(&srv, &session))["email"],
        "after@example.com"
    );
    // The new address logs in, the old one no longer exists.
    assert_eq!(login_resp(&srv, "after@example.com", PW).status, 200);
    assert_eq!(login_resp(&srv, "before@example.com", PW).status, 400);
}

#[test]
fn email_change_after_five_minutes_needs_confirmation() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "stale@example.com", false);
    srv.clock.advance(5 * 60 + 1);
    let res = patch_me(&srv, &session, json!({"email": "stale-new@example.com"}));
    res.assert_error(
        403,
        "authentication_error",
        "sensitive_action_required_reauth",
        CONFIRM_EMAIL,
        None,
    );
    // Nothing changed, also not other fields in the same body.
    let res = patch_me(
        &srv,
        &session,
        json!({"first_name": "Mixed", "email": "stale-new@example.com"}),
    );
    res.assert_error(
        403,
        "authentication_error",
        "sensitive_action_required_reauth",
        CONFIRM_EMAIL,
        None,
    );
    let me = ok(&me_session(&srv, &session));
    assert_eq!(me["email"], "stale@example.com");
    assert_eq!(me["first_name"], "");

    // With the current password it goes through.
    let me = ok(&patch_me(
        &srv,
        &session,
        json!({"email": "stale-new@example.com", "current_password": PW}),
    ));
    assert_eq!(me["email"], "stale-new@example.com");
}

#[test]
fn email_change_with_a_wrong_current_password_is_refused() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "wrongcp@example.com", false);
    srv.clock.advance(5 * 60 + 1);
    let res = patch_me(
        &srv,
        &session,
        json!({"email": "wrongcp-new@example.com", "current_password": "not my password"}),
    );
    assert_field(
        &res,
        "current_password",
        "incorrect_password",
        "Your current password is incorrect.",
    );
    assert_eq!(
        ok(&me_session(&srv, &session))["email"],
        "wrongcp@example.com"
    );
}

#[test]
fn email_change_with_current_password_still_obeys_the_two_hour_rule() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "twohour@example.com", false);
    srv.clock.advance(TWO_HOURS + 1);
    let res = patch_me(
        &srv,
        &session,
        json!({"email": "twohour-new@example.com", "current_password": PW}),
    );
    assert_reauth(&res);
}

#[test]
fn case_only_email_change_needs_no_confirmation() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "casey@example.com", false);
    srv.clock.advance(5 * 60 + 1);
    let me = ok(&patch_me(
        &srv,
        &session,
        json!({"email": "Casey@Example.com"}),
    ));
    assert_eq!(me["email"], "Casey@Example.com");
    assert_eq!(me["pending_email"], Value::Null);
    // Sending the current address is no change at all.
    let me = ok(&patch_me(
        &srv,
        &session,
        json!({"email": "Casey@Example.com"}),
    ));
    assert_eq!(me["email"], "Casey@Example.com");
}

#[test]
fn email_uniqueness_is_case_insensitive() {
    let srv = TestServer::start();
    srv.user_with_password("Taken@Example.com", false, Some(PW));
    let (_, session) = user_and_session(&srv, "mine@example.com", false);
    for clash in [
        "taken@example.com",
        "TAKEN@EXAMPLE.COM",
        "Taken@Example.com",
    ] {
        let res = patch_me(&srv, &session, json!({"email": clash}));
        assert_field(
            &res,
            "email",
            "unique",
            "user with this email address already exists.",
        );
    }
    assert_eq!(ok(&me_session(&srv, &session))["email"], "mine@example.com");
}

#[test]
fn invalid_email_is_refused() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "valid@example.com", false);
    for bad in ["not-an-email", "missing-at.example.com", "a@b@c.com"] {
        let res = patch_me(&srv, &session, json!({"email": bad}));
        assert_field(
            &res,
            "email",
            "invalid_input",
            "Enter a valid email address.",
        );
    }
    assert_eq!(
        ok(&me_session(&srv, &session))["email"],
        "valid@example.com"
    );
}

// ---------------------------------------------------------------------------------------------
// Email changes with email configured, and cancel_email_change_request

#[test]
fn configured_email_stages_the_change_and_mails_a_verification() {
    let (srv, _dir, mail) = mail_server();
    let (user, session) = user_and_session(&srv, "stage@example.com", false);
    let me = ok(&patch_me(
        &srv,
        &session,
        json!({"email": "staged@example.com"}),
    ));
    assert_eq!(me["email"], "stage@example.com");
    assert_eq!(me["pending_email"], "staged@example.com");

    // The file exists by the time the response arrived: no polling.
    let mails = mails_with_subject(&mail, "Verify your email address");
    assert_eq!(mails.len(), 1, "mail dir: {:?}", eml_files(&mail));
    assert!(is_to(&mails[0], "staged@example.com"), "{}", mails[0]);
    assert!(
        mails[0].contains(&format!("/verify_email/{}/", user.uuid)),
        "{}",
        mails[0]
    );

    let me = ok(&me_session(&srv, &session));
    assert_eq!(me["email"], "stage@example.com");
    assert_eq!(me["pending_email"], "staged@example.com");
    // The old address still logs in.
    assert_eq!(login_resp(&srv, "stage@example.com", PW).status, 200);
}

#[test]
fn cancel_email_change_clears_the_pending_address() {
    let (srv, _dir, _mail) = mail_server();
    let (_, session) = user_and_session(&srv, "cancel@example.com", false);
    ok(&patch_me(
        &srv,
        &session,
        json!({"email": "cancel-new@example.com"}),
    ));

    let res = srv.session_request(
        "PATCH",
        "/api/users/cancel_email_change_request/",
        &session,
        None,
    );
    let me = ok(&res);
    assert_eq!(keys_of(&me), readable_user_fields());
    assert_eq!(me["pending_email"], Value::Null);
    assert_eq!(me["email"], "cancel@example.com");
    assert_eq!(
        ok(&me_session(&srv, &session))["pending_email"],
        Value::Null
    );

    // Nothing left to cancel; also without a trailing slash.
    for path in [
        "/api/users/cancel_email_change_request/",
        "/api/users/cancel_email_change_request",
    ] {
        let res = srv.session_request("PATCH", path, &session, None);
        assert_non_field(
            &res,
            "email_change_request_not_found",
            "No active email change requests found.",
        );
    }
}

#[test]
fn cancel_email_change_without_a_request_is_400() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "nothing@example.com", false);
    let res = srv.session_request(
        "PATCH",
        "/api/users/cancel_email_change_request/",
        &session,
        Some(&json!({})),
    );
    assert_non_field(
        &res,
        "email_change_request_not_found",
        "No active email change requests found.",
    );
}

#[test]
fn cancel_email_change_refuses_keys() {
    let (srv, _dir, _mail) = mail_server();
    let (user, session) = user_and_session(&srv, "cancelkey@example.com", false);
    ok(&patch_me(
        &srv,
        &session,
        json!({"email": "cancelkey-new@example.com"}),
    ));
    for scopes in [&["*"][..], &["user:read", "user:write"][..]] {
        let key = srv.key(&user, scopes);
        let res = srv.request(
            "PATCH",
            "/api/users/cancel_email_change_request/",
            Some(&key),
            None,
        );
        assert_denied(&res, NO_KEY_ACCESS);
    }
    assert_eq!(
        ok(&me_session(&srv, &session))["pending_email"],
        "cancelkey-new@example.com"
    );
}

#[test]
fn cancel_email_change_without_credentials_is_401() {
    let srv = TestServer::start();
    let res = srv.request(
        "PATCH",
        "/api/users/cancel_email_change_request/",
        None,
        None,
    );
    assert_unauthenticated(&res);
}

// ---------------------------------------------------------------------------------------------
// Password changes through a session

#[test]
fn password_change_requires_current_password() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "pwreq@example.com", false);
    let res = patch_me(&srv, &session, json!({"password": NEW_PW}));
    assert_field(
        &res,
        "current_password",
        "required",
        "This field is required when updating your password.",
    );
    assert_eq!(login_resp(&srv, "pwreq@example.com", PW).status, 200);
}

#[test]
fn password_change_with_wrong_current_password_is_refused() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "pwwrong@example.com", false);
    let res = patch_me(
        &srv,
        &session,
        json!({"password": NEW_PW, "current_password": "definitely not it"}),
    );
    assert_field(
        &res,
        "current_password",
        "incorrect_password",
        "Your current password is incorrect.",
    );
    assert_eq!(login_resp(&srv, "pwwrong@example.com", PW).status, 200);
    assert_eq!(login_resp(&srv, "pwwrong@example.com", NEW_PW).status, 400);
}

#[test]
fn new_password_must_be_long_enough() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "pwshort@example.com", false);
    let res = patch_me(
        &srv,
        &session,
        json!({"password": "Xk9#q", "current_password": PW}),
    );
    assert_field(
        &res,
        "password",
        "invalid_input",
        "This password is too short. It must contain at least 8 characters.",
    );
}

#[test]
fn new_password_must_be_strong() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "pwweak@example.com", false);
    for weak in ["password123", "aaaaaaaaaa", "12345678"] {
        let res = patch_me(
            &srv,
            &session,
            json!({"password": weak, "current_password": PW}),
        );
        assert_eq!(
            res.status,
            400,
            "{weak}: {}",
            String::from_utf8_lossy(&res.body)
        );
        let body = res.json();
        assert_eq!(body["type"], "validation_error", "{body}");
        assert_eq!(body["code"], "invalid_input", "{body}");
        assert_eq!(body["attr"], "password", "{body}");
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
    }
    assert_eq!(login_resp(&srv, "pwweak@example.com", PW).status, 200);
}

#[test]
fn blank_password_is_refused() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "pwblank@example.com", false);
    let res = patch_me(&srv, &session, json!({"password": ""}));
    assert_field(&res, "password", "blank", "This field may not be blank.");
    let res = patch_me(
        &srv,
        &session,
        json!({"password": "", "current_password": PW}),
    );
    assert_field(&res, "password", "blank", "This field may not be blank.");
}

#[test]
fn password_change_keeps_this_session_and_ends_the_others() {
    let srv = TestServer::start();
    let (user, session) = user_and_session(&srv, "pwok@example.com", false);
    let other = srv.login("pwok@example.com", PW);
    let key = srv.key(&user, &["user:read"]);

    let res = patch_me(
        &srv,
        &session,
        json!({"password": NEW_PW, "current_password": PW}),
    );
    let me = ok(&res);
    assert_eq!(keys_of(&me), readable_user_fields());
    assert_eq!(me["has_password"], true);

    // This session keeps working, for reads and writes.
    ok(&me_session(&srv, &session));
    assert_eq!(
        ok(&patch_me(&srv, &session, json!({"first_name": "Still"})))["first_name"],
        "Still"
    );
    // The other session is gone.
    assert_unauthenticated(&me_session(&srv, &other));
    // Keys are unaffected.
    ok(&srv.get("/api/users/@me/", &key));
    // Old password fails, the new one works.
    let res = login_resp(&srv, "pwok@example.com", PW);
    res.assert_error(
        400,
        "validation_error",
        "invalid_credentials",
        "Invalid email or password.",
        None,
    );
    assert_eq!(login_resp(&srv, "pwok@example.com", NEW_PW).status, 200);
    assert!(stored_password(&srv, user.id).starts_with("$argon2id$"));
}

#[test]
fn user_without_usable_password_sets_one_without_current_password() {
    let srv = TestServer::start();
    let (user, session) = user_and_session(&srv, "nopw@example.com", false);
    set_stored_password(&srv, user.id, &usersvc::auth::password::unusable());
    assert_eq!(ok(&me_session(&srv, &session))["has_password"], false);

    let me = ok(&patch_me(&srv, &session, json!({"password": NEW_PW})));
    assert_eq!(me["has_password"], true);
    ok(&me_session(&srv, &session));
    assert_eq!(login_resp(&srv, "nopw@example.com", NEW_PW).status, 200);
}

#[test]
fn password_change_mails_a_notice_when_email_is_configured() {
    let (srv, _dir, mail) = mail_server();
    let (_, session) = user_and_session(&srv, "pwmail@example.com", false);
    assert!(mails_with_subject(&mail, "Your password was changed").is_empty());
    ok(&patch_me(
        &srv,
        &session,
        json!({"password": NEW_PW, "current_password": PW}),
    ));
    let mails = mails_with_subject(&mail, "Your password was changed");
    assert_eq!(mails.len(), 1, "mail dir: {:?}", eml_files(&mail));
    assert!(is_to(&mails[0], "pwmail@example.com"), "{}", mails[0]);
}

#[test]
fn failed_password_change_sends_no_mail() {
    let (srv, _dir, mail) = mail_server();
    let (_, session) = user_and_session(&srv, "pwnomail@example.com", false);
    let res = patch_me(
        &srv,
        &session,
        json!({"password": NEW_PW, "current_password": "wrong wrong wrong"}),
    );
    assert_eq!(res.status, 400);
    assert!(mails_with_subject(&mail, "Your password was changed").is_empty());
}

#[test]
fn current_password_writes_are_throttled() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "throttle@example.com", false);
    for i in 0..5 {
        let res = patch_me(
            &srv,
            &session,
            json!({"password": NEW_PW, "current_password": "wrong guess"}),
        );
        assert_eq!(
            res.status,
            400,
            "write {i}: {}",
            String::from_utf8_lossy(&res.body)
        );
        // GETs never count.
        ok(&me_session(&srv, &session));
    }
    // The 6th within the minute is throttled, even with the right password.
    let res = patch_me(
        &srv,
        &session,
        json!({"password": NEW_PW, "current_password": PW}),
    );
    assert_eq!(res.status, 429, "{}", String::from_utf8_lossy(&res.body));
    let body = res.json();
    assert_eq!(body["type"], "throttled_error");
    assert_eq!(body["code"], "throttled");
    assert_eq!(body["attr"], Value::Null);
    let retry: u64 = res
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After: {:?}", res.headers));
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let unit = if retry == 1 { "second" } else { "seconds" };
    assert_eq!(
        body["detail"],
        format!("Request was throttled. Expected available in {retry} {unit}.")
    );
    // The password did not change.
    assert_eq!(login_resp(&srv, "throttle@example.com", PW).status, 200);

    // Writes without current_password are not throttled.
    ok(&patch_me(&srv, &session, json!({"first_name": "Free"})));

    // A minute later it is allowed again.
    srv.clock.advance(61);
    ok(&patch_me(
        &srv,
        &session,
        json!({"password": NEW_PW, "current_password": PW}),
    ));
    assert_eq!(login_resp(&srv, "throttle@example.com", NEW_PW).status, 200);
}

// ---------------------------------------------------------------------------------------------
// DELETE /api/users/{uuid|@me}/

#[test]
fn delete_with_memberships_is_a_conflict() {
    let srv = TestServer::start();
    let (user, session) = user_and_session(&srv, "member@example.com", false);
    let org = srv.org("Conflict Org");
    srv.member(&user, &org, 1);
    let res = srv.session_request("DELETE", "/api/users/@me/", &session, None);
    assert_eq!(res.status, 409);
    assert_eq!(
        res.body,
        br#"{"type":"server_error","code":"conflict","detail":"Cannot delete user with organization memberships.","attr":null}"#.to_vec()
    );
    assert!(user_exists(&srv, user.id));
    ok(&me_session(&srv, &session));
}

#[test]
fn delete_me_removes_the_user_its_sessions_and_keys() {
    let srv = TestServer::start();
    let (user, session) = user_and_session(&srv, "bye@example.com", false);
    let other_session = srv.login("bye@example.com", PW);
    let key = srv.key(&user, &["*"]);
    let res = srv.session_request("DELETE", "/api/users/@me/", &session, None);
    assert_eq!(res.status, 204, "{}", String::from_utf8_lossy(&res.body));
    assert!(res.body.is_empty());
    assert!(!user_exists(&srv, user.id));
    assert_eq!(
        srv.query_i64(&format!(
            "SELECT count(*) FROM personal_api_keys WHERE user_id = {}",
            user.id
        )),
        0
    );
    assert_eq!(
        srv.query_i64(&format!(
            "SELECT count(*) FROM sessions WHERE user_id = {}",
            user.id
        )),
        0
    );
    assert_unauthenticated(&me_session(&srv, &session));
    assert_unauthenticated(&me_session(&srv, &other_session));
    let res = srv.get("/api/users/@me/", &key);
    res.assert_error(
        401,
        "authentication_error",
        "authentication_failed",
        "Personal API key found in request Authorization header is invalid.",
        None,
    );
    assert_eq!(login_resp(&srv, "bye@example.com", PW).status, 400);
}

#[test]
fn delete_with_a_key_is_not_authenticated() {
    let srv = TestServer::start();
    let user = srv.user_with_password("keydel@example.com", false, Some(PW));
    for scopes in [
        &["*"][..],
        &["user:read", "user:write"][..],
        &["user:read"][..],
    ] {
        let key = srv.key(&user, scopes);
        for path in ["/api/users/@me/", &format!("/api/users/{}/", user.uuid)] {
            let res = srv.request("DELETE", path, Some(&key), None);
            assert_unauthenticated(&res);
        }
    }
    // An invalid key on DELETE is not even read: still not_authenticated.
    let res = srv.request(
        "DELETE",
        "/api/users/@me/",
        Some(&format!("phx_{}", "1".repeat(43))),
        None,
    );
    assert_unauthenticated(&res);
    assert!(user_exists(&srv, user.id));
}

#[test]
fn non_staff_session_cannot_delete_others() {
    let srv = TestServer::start();
    let (me, session) = user_and_session(&srv, "plain@example.com", false);
    let victim = srv.user_with_password("victim@example.com", false, Some(PW));
    for target in [
        victim.uuid.as_str(),
        me.uuid.as_str(),
        "00000000-0000-7000-8000-000000000000",
        "not-a-uuid",
    ] {
        let res = srv.session_request("DELETE", &format!("/api/users/{target}/"), &session, None);
        res.assert_error(
            403,
            "authentication_error",
            "permission_denied",
            NON_STAFF_DETAIL,
            None,
        );
    }
    assert!(user_exists(&srv, victim.id));
    assert!(user_exists(&srv, me.id));
}

#[test]
fn staff_session_deletes_another_user() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "staff@example.com", true);
    let victim = srv.user_with_password("gone@example.com", false, Some(PW));
    let victim_key = srv.key(&victim, &["*"]);
    let res = srv.session_request(
        "DELETE",
        &format!("/api/users/{}/", victim.uuid),
        &session,
        None,
    );
    assert_eq!(res.status, 204, "{}", String::from_utf8_lossy(&res.body));
    assert!(res.body.is_empty());
    assert!(!user_exists(&srv, victim.id));
    assert_eq!(srv.get("/api/users/@me/", &victim_key).status, 401);
    // The staff session is unaffected.
    ok(&me_session(&srv, &session));
    // Deleting it again: 404.
    let res = srv.session_request(
        "DELETE",
        &format!("/api/users/{}/", victim.uuid),
        &session,
        None,
    );
    res.assert_error(404, "invalid_request", "not_found", "Not found.", None);
}

#[test]
fn staff_delete_of_a_member_is_a_conflict() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "staff2@example.com", true);
    let victim = srv.user_with_password("busy@example.com", false, Some(PW));
    let org = srv.org("Busy Org");
    srv.member(&victim, &org, 1);
    let res = srv.session_request(
        "DELETE",
        &format!("/api/users/{}/", victim.uuid),
        &session,
        None,
    );
    res.assert_error(
        409,
        "server_error",
        "conflict",
        "Cannot delete user with organization memberships.",
        None,
    );
    assert!(user_exists(&srv, victim.id));
}

#[test]
fn staff_delete_of_unknown_uuid_is_404() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "staff3@example.com", true);
    let inactive = srv.user_with_password("inactive@example.com", false, Some(PW));
    srv.set_active(&inactive, false);
    for target in [
        "00000000-0000-7000-8000-000000000000".to_owned(),
        "not-a-uuid".to_owned(),
        inactive.uuid.clone(),
    ] {
        let res = srv.session_request("DELETE", &format!("/api/users/{target}/"), &session, None);
        res.assert_error(404, "invalid_request", "not_found", "Not found.", None);
    }
    assert!(user_exists(&srv, inactive.id));
}

#[test]
fn delete_without_credentials_is_401() {
    let srv = TestServer::start();
    assert_unauthenticated(&srv.request("DELETE", "/api/users/@me/", None, None));
}

// ---------------------------------------------------------------------------------------------
// scene_personalisation

const SCENE_PATH: &str = "/api/users/@me/scene_personalisation/";

/// A user with an org and a team (current), logged in.
fn member_session(srv: &TestServer, email: &str) -> (usersvc::model::UserRow, i64, Session) {
    let user = srv.user_with_password(email, false, Some(PW));
    let org = srv.org("Scene Org");
    let team = srv.team(&org, "Scene Team");
    srv.member(&user, &org, 1);
    let session = srv.login(email, PW);
    (user, team.id, session)
}

fn scene(srv: &TestServer, session: &Session, body: Value) -> Resp {
    srv.session_request("POST", SCENE_PATH, session, Some(&body))
}

#[test]
fn scene_personalisation_requires_dashboard_then_scene() {
    let srv = TestServer::start();
    let (_, _, session) = member_session(&srv, "scene1@example.com");
    assert_non_field(
        &scene(&srv, &session, json!({})),
        "invalid_input",
        "Dashboard must be provided.",
    );
    assert_non_field(
        &scene(&srv, &session, json!({"scene": "Person"})),
        "invalid_input",
        "Dashboard must be provided.",
    );
    assert_non_field(
        &scene(&srv, &session, json!({"dashboard": 1})),
        "invalid_input",
        "Scene must be provided.",
    );
    // An empty body is `{}`.
    let res = srv.session_request("POST", SCENE_PATH, &session, None);
    assert_non_field(&res, "invalid_input", "Dashboard must be provided.");
}

#[test]
fn scene_personalisation_validates_the_dashboard() {
    let srv = TestServer::start();
    let (_, _, session) = member_session(&srv, "scene2@example.com");
    let res = scene(
        &srv,
        &session,
        json!({"scene": "Person", "dashboard": "abc"}),
    );
    assert_field(
        &res,
        "dashboard",
        "incorrect_type",
        "Incorrect type. Expected pk value, received str.",
    );
    // The dashboard is checked before the scene.
    let res = scene(&srv, &session, json!({"dashboard": "abc"}));
    assert_field(
        &res,
        "dashboard",
        "incorrect_type",
        "Incorrect type. Expected pk value, received str.",
    );
    let res = scene(&srv, &session, json!({"scene": "Person", "dashboard": 0}));
    assert_field(
        &res,
        "dashboard",
        "does_not_exist",
        "Invalid pk \"0\" - object does not exist.",
    );
    let res = scene(&srv, &session, json!({"scene": "Person", "dashboard": -3}));
    assert_field(
        &res,
        "dashboard",
        "does_not_exist",
        "Invalid pk \"-3\" - object does not exist.",
    );
}

#[test]
fn scene_personalisation_validates_the_scene() {
    let srv = TestServer::start();
    let (_, _, session) = member_session(&srv, "scene3@example.com");
    let res = scene(&srv, &session, json!({"scene": "", "dashboard": 1}));
    assert_field(&res, "scene", "blank", "This field may not be blank.");
    let res = scene(
        &srv,
        &session,
        json!({"scene": "x".repeat(201), "dashboard": 1}),
    );
    assert_field(
        &res,
        "scene",
        "max_length",
        "Ensure this field has no more than 200 characters.",
    );
    let me = ok(&scene(
        &srv,
        &session,
        json!({"scene": "y".repeat(200), "dashboard": 1}),
    ));
    assert_eq!(me["scene_personalisation"][0]["scene"], "y".repeat(200));
}

#[test]
fn scene_personalisation_needs_a_current_team() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "noteam@example.com", false);
    let res = scene(&srv, &session, json!({"scene": "Person", "dashboard": 1}));
    assert_field(
        &res,
        "dashboard",
        "invalid_input",
        "Dashboard must belong to the user's current team.",
    );
}

#[test]
fn scene_personalisation_upserts_per_scene_in_creation_order() {
    let srv = TestServer::start();
    let (user, _, session) = member_session(&srv, "scene4@example.com");
    let me = ok(&scene(
        &srv,
        &session,
        json!({"scene": "Person", "dashboard": 2}),
    ));
    assert_eq!(keys_of(&me), readable_user_fields());
    assert_eq!(me["id"], user.id);
    assert_eq!(
        me["scene_personalisation"],
        json!([{"scene": "Person", "dashboard": 2}])
    );
    assert_eq!(
        keys_of(&me["scene_personalisation"][0]),
        vec!["scene".to_owned(), "dashboard".to_owned()]
    );

    // Other keys are ignored.
    let me = ok(&scene(
        &srv,
        &session,
        json!({"scene": "Group", "dashboard": 3, "user": 999, "team": 999}),
    ));
    assert_eq!(
        me["scene_personalisation"],
        json!([{"scene": "Person", "dashboard": 2}, {"scene": "Group", "dashboard": 3}])
    );

    // Same scene again: updated in place, order kept.
    let me = ok(&scene(
        &srv,
        &session,
        json!({"scene": "Person", "dashboard": 5}),
    ));
    assert_eq!(
        me["scene_personalisation"],
        json!([{"scene": "Person", "dashboard": 5}, {"scene": "Group", "dashboard": 3}])
    );
    assert_eq!(
        ok(&me_session(&srv, &session))["scene_personalisation"],
        json!([{"scene": "Person", "dashboard": 5}, {"scene": "Group", "dashboard": 3}])
    );
    // Without a trailing slash.
    let res = srv.session_request(
        "POST",
        "/api/users/@me/scene_personalisation",
        &session,
        Some(&json!({"scene": "Group", "dashboard": 4})),
    );
    assert_eq!(
        ok(&res)["scene_personalisation"],
        json!([{"scene": "Person", "dashboard": 5}, {"scene": "Group", "dashboard": 4}])
    );
}

#[test]
fn scene_personalisation_refuses_keys() {
    let srv = TestServer::start();
    let (user, _, _) = member_session(&srv, "scenekey@example.com");
    for scopes in [&["*"][..], &["user:read", "user:write"][..]] {
        let key = srv.key(&user, scopes);
        let res = srv.request(
            "POST",
            SCENE_PATH,
            Some(&key),
            Some(&json!({"scene": "Person", "dashboard": 2})),
        );
        assert_denied(&res, NO_KEY_ACCESS);
    }
}

#[test]
fn scene_personalisation_on_another_uuid_is_refused_for_non_staff() {
    let srv = TestServer::start();
    let (_, _, session) = member_session(&srv, "scene5@example.com");
    let other = srv.user_with_password("scene6@example.com", false, Some(PW));
    let res = srv.session_request(
        "POST",
        &format!("/api/users/{}/scene_personalisation/", other.uuid),
        &session,
        Some(&json!({"scene": "Person", "dashboard": 2})),
    );
    res.assert_error(
        403,
        "authentication_error",
        "permission_denied",
        NON_STAFF_DETAIL,
        None,
    );
}

// ---------------------------------------------------------------------------------------------
// Keys on session-only routes

#[test]
fn keys_are_refused_on_session_only_routes() {
    let srv = TestServer::start();
    let user = srv.user_with_password("sessiononly@example.com", false, Some(PW));
    let routes: [(&str, &str, Option<Value>); 9] = [
        ("GET", "/api/users/@me/two_factor_status/", None),
        (
            "POST",
            "/api/users/@me/scene_personalisation/",
            Some(json!({"scene": "Person", "dashboard": 1})),
        ),
        ("PATCH", "/api/users/cancel_email_change_request/", None),
        ("GET", "/api/personal_api_keys/", None),
        (
            "POST",
            "/api/personal_api_keys/",
            Some(json!({"label": "x", "scopes": ["*"]})),
        ),
        ("GET", "/api/users/@me/two_factor_start_setup/", None),
        (
            "POST",
            "/api/users/@me/two_factor_validate/",
            Some(json!({"token": "123456"})),
        ),
        ("POST", "/api/users/@me/two_factor_backup_codes/", None),
        ("POST", "/api/users/@me/two_factor_disable/", None),
    ];
    for scopes in [&["*"][..], &["user:read", "user:write"][..]] {
        let key = srv.key(&user, scopes);
        for (method, path, body) in &routes {
            let res = srv.request(method, path, Some(&key), body.as_ref());
            assert_eq!(
                res.status,
                403,
                "{method} {path} with {scopes:?}: {}",
                String::from_utf8_lossy(&res.body)
            );
            assert_denied(&res, NO_KEY_ACCESS);
        }
    }
    // Nothing was created by the refused key-management call.
    assert_eq!(
        srv.query_i64(&format!(
            "SELECT count(*) FROM personal_api_keys WHERE user_id = {}",
            user.id
        )),
        2
    );
}

#[test]
fn sessions_may_use_session_only_routes() {
    let srv = TestServer::start();
    let (_, session) = user_and_session(&srv, "sessionok@example.com", false);
    let status =
        ok(&srv.session_request("GET", "/api/users/@me/two_factor_status/", &session, None));
    assert_eq!(status["is_enabled"], false);
    let keys = ok(&srv.session_request("GET", "/api/personal_api_keys/", &session, None));
    assert_eq!(keys, json!([]));
}
