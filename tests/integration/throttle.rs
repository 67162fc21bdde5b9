//! The `current_password` write throttle: 5 per minute per user → 429 (SPEC §3.6, §6, §10.1
//! step 7, §10.5; reference §3.5). With a key, a body carrying `password` is refused at step
//! 10, which runs after the body-dependent throttle: such requests still count.

use serde_json::{Value, json};

use crate::harness::{Resp, TestServer};
use crate::support::*;

const KEY_EMAIL_DETAIL: &str = "You can only change your email or password from a logged-in session, not with an API key or token.";

/// Asserts a 429 with the throttled envelope and a consistent `Retry-After`; returns it.
#[track_caller]
fn assert_throttled(res: &Resp) -> u64 {
    assert_eq!(
        res.status,
        429,
        "body: {}",
        String::from_utf8_lossy(&res.body)
    );
    let retry: u64 = res
        .header("retry-after")
        .expect("Retry-After header")
        .parse()
        .expect("Retry-After is whole seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let detail = if retry == 1 {
        "Request was throttled. Expected available in 1 second.".to_owned()
    } else {
        format!("Request was throttled. Expected available in {retry} seconds.")
    };
    res.assert_error(429, "throttled_error", "throttled", &detail, None);
    retry
}

fn with_password() -> Value {
    json!({"current_password": "old", "password": "a much better passphrase 42"})
}

fn current_only() -> Value {
    json!({"current_password": "whatever"})
}

fn setup() -> (TestServer, String) {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["*"]);
    (srv, key)
}

#[test]
fn five_password_writes_get_403_then_the_sixth_gets_429() {
    let (srv, key) = setup();
    for i in 0..5 {
        let res = srv.patch("/api/users/@me/", &key, with_password());
        assert_eq!(res.status, 403, "request {i}");
        res.assert_error(
            403,
            "authentication_error",
            "permission_denied",
            KEY_EMAIL_DETAIL,
            None,
        );
    }
    assert_throttled(&srv.patch("/api/users/@me/", &key, with_password()));
    // The throttle covers every write carrying current_password, whatever else it holds.
    assert_throttled(&srv.patch("/api/users/@me/", &key, current_only()));
    assert_throttled(&put(&srv, "/api/users/@me/", &key, with_password()));
}

#[test]
fn current_password_alone_counts_and_the_sixth_is_429_before_validation() {
    let (srv, key) = setup();
    for i in 0..5 {
        let res = srv.patch("/api/users/@me/", &key, current_only());
        assert_eq!(
            res.status,
            200,
            "request {i}: {}",
            String::from_utf8_lossy(&res.body)
        );
    }
    assert_throttled(&srv.patch("/api/users/@me/", &key, current_only()));
    // A body that would fail validation is throttled first.
    assert_throttled(&srv.patch(
        "/api/users/@me/",
        &key,
        json!({"current_password": "x", "theme_mode": "bad"}),
    ));
    // Writes without current_password are not throttled.
    let res = srv.patch("/api/users/@me/", &key, json!({"first_name": "Still"}));
    assert_eq!(ok_json(&res)["first_name"], json!("Still"));
}

#[test]
fn gets_never_count() {
    let (srv, key) = setup();
    for _ in 0..10 {
        assert_eq!(srv.get("/api/users/@me/", &key).status, 200);
        assert_eq!(srv.get("/api/users/", &key).status, 200);
    }
    for i in 0..5 {
        assert_eq!(
            srv.patch("/api/users/@me/", &key, current_only()).status,
            200,
            "request {i}"
        );
    }
    assert_throttled(&srv.patch("/api/users/@me/", &key, current_only()));
    // GETs still work while throttled.
    assert_eq!(srv.get("/api/users/@me/", &key).status, 200);
}

#[test]
fn writes_without_current_password_never_count() {
    let (srv, key) = setup();
    for i in 0..10 {
        let res = srv.patch(
            "/api/users/@me/",
            &key,
            json!({"first_name": format!("n{i}")}),
        );
        assert_eq!(res.status, 200);
        let res = srv.patch(
            "/api/users/@me/hedgehog_config/",
            &key,
            json!({"current_password": "x"}),
        );
        assert_eq!(res.status, 200, "hedgehog_config has no throttle");
    }
    for i in 0..5 {
        assert_eq!(
            srv.patch("/api/users/@me/", &key, current_only()).status,
            200,
            "request {i}"
        );
    }
    assert_throttled(&srv.patch("/api/users/@me/", &key, current_only()));
}

#[test]
fn requests_refused_before_the_throttle_do_not_count() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let read = srv.key(&user, &["user:read"]);
    let write = srv.key(&user, &["user:write"]);
    for _ in 0..6 {
        assert_missing_scope(
            &srv.patch("/api/users/@me/", &read, current_only()),
            "user:write",
        );
        assert_not_authenticated(&srv.request(
            "PATCH",
            "/api/users/@me/",
            None,
            Some(&current_only()),
        ));
    }
    for i in 0..5 {
        assert_eq!(
            srv.patch("/api/users/@me/", &write, current_only()).status,
            200,
            "request {i}"
        );
    }
    assert_throttled(&srv.patch("/api/users/@me/", &write, current_only()));
}

#[test]
fn the_throttle_is_per_user() {
    let srv = TestServer::start();
    let alice = srv.user("alice@example.com", false);
    let bob = srv.user("bob@example.com", false);
    let alice_key = srv.key(&alice, &["*"]);
    let alice_other_key = srv.key(&alice, &["*"]);
    let bob_key = srv.key(&bob, &["*"]);
    for _ in 0..5 {
        srv.patch("/api/users/@me/", &alice_key, current_only());
    }
    assert_throttled(&srv.patch("/api/users/@me/", &alice_key, current_only()));
    // Another key of the same user shares the budget; another user has its own.
    assert_throttled(&srv.patch("/api/users/@me/", &alice_other_key, current_only()));
    assert_eq!(
        srv.patch("/api/users/@me/", &bob_key, current_only())
            .status,
        200
    );
}

#[test]
fn the_window_slides_and_throttled_requests_are_not_counted() {
    let (srv, key) = setup();
    for _ in 0..5 {
        assert_eq!(
            srv.patch("/api/users/@me/", &key, current_only()).status,
            200
        );
    }
    srv.clock.advance(30);
    for _ in 0..3 {
        assert_throttled(&srv.patch("/api/users/@me/", &key, current_only()));
    }
    srv.clock.advance(31);
    // The first five left the window; the three refused ones were never counted.
    for i in 0..5 {
        let res = srv.patch("/api/users/@me/", &key, current_only());
        assert_eq!(
            res.status,
            200,
            "request {i} after the window: {}",
            String::from_utf8_lossy(&res.body)
        );
    }
    assert_throttled(&srv.patch("/api/users/@me/", &key, current_only()));
}

#[test]
fn retry_after_is_the_time_until_the_oldest_write_leaves_the_window() {
    let (srv, key) = setup();
    let started = std::time::Instant::now();
    for _ in 0..5 {
        srv.patch("/api/users/@me/", &key, current_only());
    }
    let retry = assert_throttled(&srv.patch("/api/users/@me/", &key, current_only()));
    assert!((59..=60).contains(&retry), "Retry-After {retry}");
    srv.clock.advance(20);
    let retry = assert_throttled(&srv.patch("/api/users/@me/", &key, current_only()));
    assert!((39..=40).contains(&retry), "Retry-After {retry}");
    srv.clock.advance(39);
    let res = srv.patch("/api/users/@me/", &key, current_only());
    // 59 s of the 60 s window have passed on the server's clock, plus real time: unless this
    // machine took more than a second for these requests, one second is left ("in 1 second.").
    if started.elapsed() < std::time::Duration::from_millis(900) {
        assert_eq!(assert_throttled(&res), 1);
    }
}
