//! 2FA management routes (SPEC §4.1, §10.5; reference §5.7, §6): setup, confirmation, the
//! time-step window, the race on a pending secret, status, backup codes, disabling, and keys.

use std::sync::Barrier;

use serde_json::json;

use crate::harness::TestServer;
use crate::two_factor_support::*;

#[track_caller]
fn assert_token_invalid(resp: &crate::harness::Resp) {
    resp.assert_error(
        400,
        "validation_error",
        "token_invalid",
        "Token is not valid",
        None,
    );
}

#[track_caller]
fn assert_setup_expired(resp: &crate::harness::Resp) {
    resp.assert_error(
        400,
        "validation_error",
        "setup_expired",
        "2FA setup session expired. Please start setup again.",
        None,
    );
}

#[test]
fn setup_validate_then_status() {
    let srv = TestServer::start();
    let user = srv.user_with_password("alice@example.com", false, Some(PASSWORD));
    let session = login(&srv, "alice@example.com");

    assert_eq!(
        status(&srv, &session).to_string(),
        r#"{"is_enabled":false,"backup_codes_remaining":0,"method":null,"has_passkeys":false,"has_totp":false,"passkeys_enabled_for_2fa":false}"#
    );

    // The `{x}` segment is ignored, and the deprecated alias works the same.
    let resp = srv.session_request(
        "GET",
        "/api/users/whatever/start_2fa_setup/",
        &session,
        None,
    );
    assert_eq!(resp.status, 200);
    let body = resp.json();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["success", "secret", "otpauth_url"]);
    assert_eq!(body["success"], json!(true));
    let secret = body["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 32);
    assert!(
        secret
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
    );
    assert_eq!(
        body["otpauth_url"],
        json!(format!(
            "otpauth://totp/usersvc:alice%40example%2Ecom?secret={secret}&issuer=usersvc&algorithm=SHA1&digits=6&period=30"
        ))
    );
    // The pending secret lives on the session as 40 hex characters.
    let stored_len = srv.query_i64(
        "SELECT length(totp_setup_secret) FROM sessions WHERE totp_setup_secret IS NOT NULL",
    );
    assert_eq!(stored_len, 40);

    // Starting again replaces the pending secret: only the newest one validates.
    let old = decode_base32(secret);
    let secret = start_setup(&srv, &session);
    align_to_step(&srv);
    assert_token_invalid(&validate(&srv, &session, json!(code(&srv, &old, 0))));

    let resp = srv.session_request(
        "POST",
        "/api/users/anything/validate_2fa/",
        &session,
        Some(&json!({"token": code(&srv, &secret, 0)})),
    );
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.body, br#"{"success":true}"#);

    assert_eq!(
        status(&srv, &session).to_string(),
        r#"{"is_enabled":true,"backup_codes_remaining":0,"method":"TOTP","has_passkeys":false,"has_totp":true,"passkeys_enabled_for_2fa":false}"#
    );
    // Confirming consumed the pending secret and created no backup codes.
    assert_eq!(
        srv.query_i64("SELECT count(*) FROM sessions WHERE totp_setup_secret IS NOT NULL"),
        0
    );
    assert_eq!(srv.query_i64("SELECT count(*) FROM backup_codes"), 0);
    let me = srv.session_request("GET", "/api/users/@me/", &session, None);
    assert_eq!(me.json()["is_2fa_enabled"], json!(true));
    assert_eq!(
        srv.query_i64(&format!(
            "SELECT count(*) FROM totp_devices WHERE user_id = {}",
            user.id
        )),
        1
    );
    // Validating again needs a new setup.
    assert_setup_expired(&validate(&srv, &session, json!(code(&srv, &secret, 1))));
}

#[test]
fn wrong_missing_and_malformed_tokens() {
    let srv = TestServer::start();
    srv.user_with_password("bob@example.com", false, Some(PASSWORD));
    let session = login(&srv, "bob@example.com");
    let secret = start_setup(&srv, &session);
    align_to_step(&srv);
    let right = code(&srv, &secret, 0);
    let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 1) % 1_000_000);

    assert_token_invalid(&validate(&srv, &session, json!(wrong)));
    for token in [
        json!("abc123"),
        json!("1234567"),
        json!(""),
        json!(null),
        json!(true),
    ] {
        assert_token_invalid(&validate(&srv, &session, token));
    }
    let missing = srv.session_request(
        "POST",
        "/api/users/@me/two_factor_validate/",
        &session,
        Some(&json!({})),
    );
    assert_token_invalid(&missing);
    assert_eq!(srv.query_i64("SELECT count(*) FROM totp_devices"), 0);

    // Failures did not consume the pending secret; a number token (trimmed strings too) works.
    let resp = validate(&srv, &session, json!(right.parse::<u32>().unwrap()));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
}

#[test]
fn setup_expired_without_setup_and_after_ttl() {
    let srv = TestServer::start();
    srv.user_with_password("carol@example.com", false, Some(PASSWORD));
    let session = login(&srv, "carol@example.com");

    // No setup: `setup_expired` comes before any check of the token.
    assert_setup_expired(&validate(&srv, &session, json!("123456")));
    assert_setup_expired(&srv.session_request(
        "POST",
        "/api/users/@me/two_factor_validate/",
        &session,
        None,
    ));

    // A setup is good for 10 minutes.
    let secret = start_setup(&srv, &session);
    srv.clock.advance(9 * 60);
    align_to_step(&srv);
    assert_token_invalid(&validate(&srv, &session, json!("abc")));
    srv.clock.advance(61);
    assert_setup_expired(&validate(&srv, &session, json!(code(&srv, &secret, 0))));
    assert_eq!(srv.query_i64("SELECT count(*) FROM totp_devices"), 0);
}

#[test]
fn one_step_of_skew_either_way() {
    let srv = TestServer::start();
    srv.user_with_password("dave@example.com", false, Some(PASSWORD));
    let session = login(&srv, "dave@example.com");

    for offset in [-2, 2] {
        let secret = start_setup(&srv, &session);
        align_to_step(&srv);
        assert_token_invalid(&validate(
            &srv,
            &session,
            json!(code(&srv, &secret, offset)),
        ));
    }
    for offset in [-1, 0, 1] {
        let secret = start_setup(&srv, &session);
        align_to_step(&srv);
        let resp = validate(&srv, &session, json!(code(&srv, &secret, offset)));
        assert_eq!(
            resp.status,
            200,
            "offset {offset}: {}",
            String::from_utf8_lossy(&resp.body)
        );
    }
}

#[test]
fn racing_validations_of_one_code_exactly_one_wins() {
    let srv = TestServer::start();
    srv.user_with_password("erin@example.com", false, Some(PASSWORD));
    let session = login(&srv, "erin@example.com");
    let secret = start_setup(&srv, &session);
    align_to_step(&srv);
    let token = code(&srv, &secret, 0);

    let barrier = Barrier::new(20);
    let responses: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    validate(&srv, &session, json!(token))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wins = responses.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        wins,
        1,
        "statuses: {:?}",
        responses.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for resp in responses.iter().filter(|r| r.status != 200) {
        assert_setup_expired(resp);
    }
    assert_eq!(srv.query_i64("SELECT count(*) FROM totp_devices"), 1);
}

#[test]
fn enabling_revokes_other_sessions() {
    let srv = TestServer::start();
    srv.user_with_password("frank@example.com", false, Some(PASSWORD));
    let other_user = srv.user_with_password("grace@example.com", false, Some(PASSWORD));
    let kept = login(&srv, "frank@example.com");
    let other = login(&srv, "frank@example.com");
    let unrelated = login(&srv, "grace@example.com");
    assert_eq!(
        srv.session_request("GET", "/api/users/@me/", &other, None)
            .status,
        200
    );

    let secret = start_setup(&srv, &kept);
    align_to_step(&srv);
    assert_eq!(
        validate(&srv, &kept, json!(code(&srv, &secret, 0))).status,
        200
    );

    srv.session_request("GET", "/api/users/@me/", &other, None)
        .assert_error(
            401,
            "authentication_error",
            "not_authenticated",
            "Authentication credentials were not provided.",
            None,
        );
    assert_eq!(
        srv.session_request("GET", "/api/users/@me/", &kept, None)
            .status,
        200
    );
    let resp = srv.session_request("GET", "/api/users/@me/", &unrelated, None);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["id"], json!(other_user.id));
}

#[test]
fn backup_codes_need_2fa() {
    let srv = TestServer::start();
    srv.user_with_password("heidi@example.com", false, Some(PASSWORD));
    let session = login(&srv, "heidi@example.com");
    srv.session_request(
        "POST",
        "/api/users/@me/two_factor_backup_codes/",
        &session,
        None,
    )
    .assert_error(
        400,
        "validation_error",
        "2fa_not_enabled",
        "2FA must be enabled first",
        None,
    );
    assert_eq!(srv.query_i64("SELECT count(*) FROM backup_codes"), 0);
}

#[test]
fn backup_codes_shape_count_and_regeneration() {
    let srv = TestServer::start();
    let (_, session, _) = user_with_2fa(&srv, "ivan@example.com");

    let resp = srv.session_request(
        "POST",
        "/api/users/@me/two_factor_backup_codes/",
        &session,
        None,
    );
    assert_eq!(resp.status, 200);
    let body = resp.json();
    assert_eq!(body.as_object().unwrap().len(), 1);
    let first: Vec<String> = body["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(first.len(), 10);
    for c in &first {
        assert_eq!(c.len(), 8, "{c}");
        assert!(
            c.bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)),
            "{c}"
        );
    }
    let status_now = status(&srv, &session);
    assert_eq!(status_now["backup_codes_remaining"], json!(10));
    assert_eq!(status_now.as_object().unwrap().len(), 6);

    // Stored as argon2id hashes, never the codes.
    assert_eq!(
        srv.query_i64("SELECT count(*) FROM backup_codes WHERE code_hash LIKE '$argon2id$%'"),
        10
    );

    let second = backup_codes(&srv, &session);
    assert_eq!(second.len(), 10);
    assert!(first.iter().all(|c| !second.contains(c)));
    assert_eq!(status(&srv, &session)["backup_codes_remaining"], json!(10));
    assert_eq!(srv.query_i64("SELECT count(*) FROM backup_codes"), 10);
}

#[test]
fn disable_removes_device_and_codes() {
    let srv = TestServer::start();
    let (_, session, _) = user_with_2fa(&srv, "judy@example.com");
    backup_codes(&srv, &session);

    let resp = srv.session_request("POST", "/api/users/@me/two_factor_disable/", &session, None);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, br#"{"success":true}"#);
    assert_eq!(
        status(&srv, &session),
        json!({"is_enabled": false, "backup_codes_remaining": 0, "method": null,
               "has_passkeys": false, "has_totp": false, "passkeys_enabled_for_2fa": false})
    );
    assert_eq!(srv.query_i64("SELECT count(*) FROM backup_codes"), 0);
    assert_eq!(srv.query_i64("SELECT count(*) FROM totp_devices"), 0);

    // Without 2FA, the password alone logs in again.
    login(&srv, "judy@example.com");
    // Disabling with nothing to disable still answers success.
    let again = srv.session_request("POST", "/api/users/@me/two_factor_disable/", &session, None);
    assert_eq!(again.status, 200);
}

#[test]
fn staff_may_read_status_and_disable_for_another_user() {
    let srv = TestServer::start();
    let (target, _, _) = user_with_2fa(&srv, "ken@example.com");
    let uuid = target.uuid;
    srv.user_with_password("staff@example.com", true, Some(PASSWORD));
    let staff = login(&srv, "staff@example.com");

    let path = format!("/api/users/{uuid}/two_factor_status/");
    let resp = srv.session_request("GET", &path, &staff, None);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["is_enabled"], json!(true));
    // The staff member's own status is unaffected.
    assert_eq!(status(&srv, &staff)["is_enabled"], json!(false));

    let path = format!("/api/users/{uuid}/two_factor_disable/");
    assert_eq!(srv.session_request("POST", &path, &staff, None).status, 200);
    assert_eq!(srv.query_i64("SELECT count(*) FROM totp_devices"), 0);
}

#[test]
fn keys_are_refused_on_every_2fa_route() {
    let srv = TestServer::start();
    let user = srv.user_with_password("leo@example.com", false, Some(PASSWORD));
    let key = srv.key(&user, &["*"]);
    for (method, action) in [
        ("GET", "two_factor_start_setup"),
        ("GET", "start_2fa_setup"),
        ("POST", "two_factor_validate"),
        ("POST", "validate_2fa"),
        ("GET", "two_factor_status"),
        ("POST", "two_factor_backup_codes"),
        ("POST", "two_factor_disable"),
    ] {
        let body = (method == "POST").then(|| json!({"token": "123456"}));
        srv.request(
            method,
            &format!("/api/users/@me/{action}/"),
            Some(&key),
            body.as_ref(),
        )
        .assert_error(
            403,
            "authentication_error",
            "permission_denied",
            "This action does not support personal API key access",
            None,
        );
    }
    assert_eq!(
        srv.query_i64("SELECT count(*) FROM sessions WHERE totp_setup_secret IS NOT NULL"),
        0
    );
}
