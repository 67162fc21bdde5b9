//! 2FA at login (SPEC §3.2, §6, §10.5): TOTP and backup codes at `/api/login/token/`, the
//! replay rule, the lockout after 5 wrong codes, secrets at rest, and the 2FA mails.

use std::path::Path;
use std::sync::Barrier;

use serde_json::json;

use crate::harness::{Resp, TestServer};
use crate::two_factor_support::*;

#[track_caller]
fn assert_2fa_invalid(resp: &Resp) {
    resp.assert_error(
        400,
        "validation_error",
        "2fa_invalid",
        "Invalid authentication code",
        None,
    );
}

#[track_caller]
fn assert_logged_in(srv: &TestServer, resp: &Resp) -> Session {
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.body, br#"{"success":true}"#);
    let session = session_from(resp);
    let me = srv.session_request("GET", "/api/users/@me/", &session, None);
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["is_2fa_enabled"], json!(true));
    session
}

/// Subjects and recipients of the mails in `dir`, oldest first.
fn mails(dir: &Path) -> Vec<(String, String)> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".eml") && !n.starts_with('.'))
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(dir.join(n)).unwrap();
            let header = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap()
                    .trim()
                    .to_owned()
            };
            (header("Subject:"), header("To:"))
        })
        .collect()
}

#[test]
fn login_with_totp_and_replay_refused() {
    let srv = TestServer::start();
    let (_, _, secret) = user_with_2fa(&srv, "alice@example.com");

    let pending = pending_login(&srv, "alice@example.com");
    // A pending login is not a session.
    let as_session = Session {
        token: pending.clone(),
        csrf: String::new(),
    };
    let resp = srv.session_request("GET", "/api/users/@me/", &as_session, None);
    assert_eq!(resp.status, 401);

    // The code that confirmed the device is used up: replay.
    assert_2fa_invalid(&login_token(&srv, &pending, json!(code(&srv, &secret, 0))));
    let next = code(&srv, &secret, 1);
    assert_logged_in(&srv, &login_token(&srv, &pending, json!(next)));

    // The same code again, and an older one, at a new login: refused.
    let pending = pending_login(&srv, "alice@example.com");
    assert_2fa_invalid(&login_token(&srv, &pending, json!(next)));
    assert_2fa_invalid(&login_token(&srv, &pending, json!(code(&srv, &secret, -1))));
    // Two steps later a fresh code works; the pending login survived the failures.
    srv.clock.advance(60);
    align_to_step(&srv);
    let resp = login_token(&srv, &pending, json!(code(&srv, &secret, 0)));
    assert_logged_in(&srv, &resp);
    // The pending login became the session: it cannot be completed twice.
    login_token(&srv, &pending, json!(code(&srv, &secret, 1))).assert_error(
        400,
        "validation_error",
        "2fa_expired",
        "Login attempt has expired. Re-enter username/password.",
        None,
    );
}

#[test]
fn login_accepts_one_step_of_skew() {
    let srv = TestServer::start();
    let (_, _, secret) = user_with_2fa(&srv, "bob@example.com");
    // Well past the step that confirmed the device.
    srv.clock.advance(300);
    align_to_step(&srv);

    let pending = pending_login(&srv, "bob@example.com");
    assert_2fa_invalid(&login_token(&srv, &pending, json!(code(&srv, &secret, -2))));
    assert_2fa_invalid(&login_token(&srv, &pending, json!(code(&srv, &secret, 2))));
    // In increasing order, since an accepted step makes earlier ones stale.
    for offset in [-1, 0, 1] {
        let pending = pending_login(&srv, "bob@example.com");
        let token = code(&srv, &secret, offset);
        // A JSON number works too (leading zeros are lost, the value is what counts).
        let token = if offset == 0 {
            json!(token.parse::<u32>().unwrap())
        } else {
            json!(token)
        };
        assert_logged_in(&srv, &login_token(&srv, &pending, token));
    }
}

#[test]
fn racing_logins_with_one_code_exactly_one_wins() {
    let srv = TestServer::start();
    let (_, _, secret) = user_with_2fa(&srv, "carol@example.com");
    srv.clock.advance(120);
    let pendings: Vec<String> = (0..4)
        .map(|_| pending_login(&srv, "carol@example.com"))
        .collect();
    align_to_step(&srv);
    let token = code(&srv, &secret, 0);

    let barrier = Barrier::new(pendings.len());
    let responses: Vec<Resp> = std::thread::scope(|s| {
        let handles: Vec<_> = pendings
            .iter()
            .map(|p| {
                let (srv, barrier, token) = (&srv, &barrier, &token);
                s.spawn(move || {
                    barrier.wait();
                    login_token(srv, p, json!(token))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(responses.iter().filter(|r| r.status == 200).count(), 1);
    for resp in responses.iter().filter(|r| r.status != 200) {
        assert_2fa_invalid(resp);
    }
}

#[test]
fn backup_codes_at_login_and_mails() {
    let mail_dir = tempfile::tempdir().unwrap();
    let dir = mail_dir.path().to_owned();
    let srv = TestServer::start_with(|c| {
        c.mail = Some(usersvc::config::MailTransport::Dir(dir));
    });
    let (_, session, _) = user_with_2fa(&srv, "dave@example.com");
    assert_eq!(
        mails(mail_dir.path()),
        [(
            "Two-factor authentication enabled".to_owned(),
            "dave@example.com".to_owned()
        )]
    );

    let codes = backup_codes(&srv, &session);
    let pending = pending_login(&srv, "dave@example.com");
    // Trimmed and case-insensitive, as typed from a printout.
    let typed = format!("  {} ", codes[0].to_uppercase());
    assert_logged_in(&srv, &login_token(&srv, &pending, json!(typed)));
    assert_eq!(status(&srv, &session)["backup_codes_remaining"], json!(9));
    assert_eq!(
        mails(mail_dir.path()).last().unwrap(),
        &(
            "A backup code was used".to_owned(),
            "dave@example.com".to_owned()
        )
    );

    // A used code is gone; the others still work.
    let pending = pending_login(&srv, "dave@example.com");
    assert_2fa_invalid(&login_token(&srv, &pending, json!(codes[0])));
    assert_logged_in(&srv, &login_token(&srv, &pending, json!(codes[1])));
    assert_eq!(status(&srv, &session)["backup_codes_remaining"], json!(8));

    let resp = srv.session_request("POST", "/api/users/@me/two_factor_disable/", &session, None);
    assert_eq!(resp.status, 200);
    let all = mails(mail_dir.path());
    assert_eq!(
        all.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        [
            "Two-factor authentication enabled",
            "A backup code was used",
            "A backup code was used",
            "Two-factor authentication disabled",
        ]
    );
    assert!(all.iter().all(|(_, to)| to == "dave@example.com"));
}

#[test]
fn regenerated_backup_codes_replace_old_ones() {
    let srv = TestServer::start();
    let (_, session, _) = user_with_2fa(&srv, "erin@example.com");
    let old = backup_codes(&srv, &session);
    let new = backup_codes(&srv, &session);

    let pending = pending_login(&srv, "erin@example.com");
    for code in &old[..3] {
        assert_2fa_invalid(&login_token(&srv, &pending, json!(code)));
    }
    assert_logged_in(&srv, &login_token(&srv, &pending, json!(new[9])));
    assert_eq!(status(&srv, &session)["backup_codes_remaining"], json!(9));
}

#[test]
fn five_wrong_codes_lock_for_ten_minutes() {
    let srv = TestServer::start();
    let (_, session, secret) = user_with_2fa(&srv, "frank@example.com");
    backup_codes(&srv, &session);
    srv.clock.advance(60);
    align_to_step(&srv);

    let pending = pending_login(&srv, "frank@example.com");
    let right = code(&srv, &secret, 0);
    let wrong = format!(
        "{:06}",
        (right.parse::<u32>().unwrap() + 500_000) % 1_000_000
    );
    // TOTP and backup codes both count towards the 5.
    for token in [wrong.as_str(), "aaaaaaaa", &wrong, "bbbbbbbb", &wrong] {
        assert_2fa_invalid(&login_token(&srv, &pending, json!(token)));
    }
    let locked = |resp: &Resp| {
        resp.assert_error(
            400,
            "validation_error",
            "2fa_too_many_attempts",
            "Too many attempts.",
            None,
        )
    };
    // Even the right code is refused now.
    locked(&login_token(&srv, &pending, json!(right)));

    srv.clock.advance(590);
    locked(&login_token(&srv, &pending, json!(code(&srv, &secret, 0))));

    // 10 minutes after the 5th failure the lock lifts; the pending login has lapsed by then.
    srv.clock.advance(11);
    align_to_step(&srv);
    let pending = pending_login(&srv, "frank@example.com");
    assert_logged_in(
        &srv,
        &login_token(&srv, &pending, json!(code(&srv, &secret, 0))),
    );
}

#[test]
fn no_backup_code_or_session_token_in_plaintext_at_rest() {
    let srv = TestServer::start();
    let (_, session, _) = user_with_2fa(&srv, "grace@example.com");
    let codes = backup_codes(&srv, &session);
    let pending = pending_login(&srv, "grace@example.com");
    let second = assert_logged_in(&srv, &login_token(&srv, &pending, json!(codes[0])));
    let pending_unused = pending_login(&srv, "grace@example.com");

    let mut secrets: Vec<String> = codes.clone();
    secrets.extend([
        session.token.clone(),
        second.token.clone(),
        pending.clone(),
        pending_unused,
    ]);
    let mut stored = std::fs::read(&srv.db_path).unwrap();
    let wal = srv.db_path.with_file_name(format!(
        "{}-wal",
        srv.db_path.file_name().unwrap().to_string_lossy()
    ));
    if let Ok(bytes) = std::fs::read(&wal) {
        stored.extend(bytes);
    }
    for secret in &secrets {
        assert!(
            !stored.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} is stored in plaintext"
        );
    }
}
