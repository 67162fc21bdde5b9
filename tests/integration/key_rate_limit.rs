//! `--key-rate-limit` (SPEC §6, §10.1 step 7, §10.7): off by default; when on, every request
//! authenticated with a key counts in that key's own sliding windows, `/api/users/` included,
//! and the request over a limit gets 429 with `Retry-After` and the throttled envelope.

use std::time::Duration;

use usersvc::config::RateWindow;

use crate::harness::{Resp, TestServer};
use crate::support::*;

const PASSWORD: &str = "correct horse battery staple";

/// 3 a minute and 5 an hour: small enough to reach both windows in a test.
fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.key_rate_limit = Some(vec![
            RateWindow {
                limit: 3,
                window: Duration::from_secs(60),
            },
            RateWindow {
                limit: 5,
                window: Duration::from_secs(3600),
            },
        ])
    })
}

/// Asserts the throttled envelope and returns `Retry-After`.
#[track_caller]
fn assert_throttled(res: &Resp) -> u64 {
    let retry: u64 = res
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("whole seconds");
    let detail = if retry == 1 {
        "Request was throttled. Expected available in 1 second.".to_owned()
    } else {
        format!("Request was throttled. Expected available in {retry} seconds.")
    };
    res.assert_error(429, "throttled_error", "throttled", &detail, None);
    assert_eq!(res.header("x-content-type-options"), Some("nosniff"));
    retry
}

#[test]
fn a_key_over_its_limits_gets_429_until_the_window_slides() {
    let srv = server();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["*"]);
    // Detail, collection and action routes all count.
    for path in [
        "/api/users/@me/",
        "/api/users/",
        "/api/users/@me/hedgehog_config/",
    ] {
        assert_eq!(srv.get(path, &key).status, 200, "{path}");
    }
    let retry = assert_throttled(&srv.get("/api/users/", &key));
    assert!((1..=60).contains(&retry), "{retry}");
    // Refused requests are not counted: once the minute has passed, two more fit the hour.
    srv.clock.advance(61);
    assert_eq!(srv.get("/api/users/@me/", &key).status, 200);
    assert_eq!(srv.get("/api/users/@me/", &key).status, 200);
    let retry = assert_throttled(&srv.get("/api/users/@me/", &key));
    assert!((3000..=3600).contains(&retry), "hour window: {retry}");
    srv.clock.advance(3600);
    assert_eq!(srv.get("/api/users/@me/", &key).status, 200);
}

#[test]
fn each_key_has_its_own_bucket() {
    let srv = server();
    let user = srv.user("alice@example.com", false);
    let first = srv.key(&user, &["*"]);
    let second = srv.key(&user, &["*"]);
    for _ in 0..3 {
        assert_eq!(srv.get("/api/users/@me/", &first).status, 200);
    }
    assert_throttled(&srv.get("/api/users/@me/", &first));
    for _ in 0..3 {
        assert_eq!(srv.get("/api/users/@me/", &second).status, 200);
    }
    assert_throttled(&srv.get("/api/users/@me/", &second));
}

#[test]
fn the_limit_comes_after_access_checks_and_before_the_object() {
    let srv = server();
    let user = srv.user("alice@example.com", false);
    let other = srv.user("bob@example.com", false);
    let read = srv.key(&user, &["user:read"]);
    // A missing scope is refused at step 5 and not counted.
    for _ in 0..5 {
        let res = srv.patch("/api/users/@me/", &read, serde_json::json!({}));
        assert_missing_scope(&res, "user:write");
    }
    for _ in 0..3 {
        assert_eq!(srv.get("/api/users/@me/", &read).status, 200);
    }
    // Step 7 before step 8: another user's uuid is throttled, not refused as non-staff.
    assert_throttled(&srv.get(&format!("/api/users/{}/", other.uuid), &read));
}

#[test]
fn sessions_and_servers_without_the_flag_are_not_limited() {
    let srv = server();
    srv.user_with_password("alice@example.com", false, Some(PASSWORD));
    let session = srv.login("alice@example.com", PASSWORD);
    for _ in 0..6 {
        let res = srv.session_request("GET", "/api/users/@me/", &session, None);
        assert_eq!(res.status, 200);
    }
    let plain = TestServer::start();
    let user = plain.user("alice@example.com", false);
    let key = plain.key(&user, &["*"]);
    for _ in 0..20 {
        assert_eq!(plain.get("/api/users/@me/", &key).status, 200);
    }
}
