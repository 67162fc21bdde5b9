//! Response headers and wire format on every response, errors included (SPEC §2, §10.2), and
//! path matching (trailing slash, percent-decoding).

use serde_json::json;

use crate::harness::{Resp, TestServer};
use crate::support::*;

#[track_caller]
fn assert_standard_headers(res: &Resp, what: &str) {
    assert_eq!(
        res.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(res.header("cache-control"), Some("no-store"), "{what}");
    let id = res
        .header("x-request-id")
        .unwrap_or_else(|| panic!("{what}: no X-Request-Id"));
    assert!(!id.is_empty(), "{what}");
    assert_eq!(
        res.header("content-type"),
        Some("application/json"),
        "{what}"
    );
}

/// One response of each kind the core routes produce.
fn sample_responses(srv: &TestServer) -> Vec<(&'static str, Resp)> {
    let user = srv.user("alice@example.com", false);
    let other = srv.user("bob@example.com", false);
    let key = srv.key(&user, &["user:read"]);
    let write = srv.key(&user, &["*"]);
    let too_large = format!(
        "PATCH /api/users/@me/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 2000000\r\n\r\n",
        srv.addr
    );
    vec![
        ("200 @me", srv.get("/api/users/@me/", &key)),
        ("200 list", srv.get("/api/users/", &key)),
        (
            "200 hedgehog",
            srv.get("/api/users/@me/hedgehog_config/", &key),
        ),
        (
            "200 patch",
            srv.patch("/api/users/@me/", &write, json!({"first_name": "A"})),
        ),
        (
            "401 none",
            srv.request("GET", "/api/users/@me/", None, None),
        ),
        ("401 bad key", srv.get("/api/users/@me/", &unknown_key())),
        ("403 scope", srv.patch("/api/users/@me/", &key, json!({}))),
        (
            "403 non-staff",
            srv.get(&format!("/api/users/{}/", other.uuid), &key),
        ),
        ("404", srv.get("/nope", &key)),
        ("405", srv.request("POST", "/api/users/", None, None)),
        (
            "415",
            keyed_raw(
                srv,
                "PATCH",
                "/api/users/@me/",
                &write,
                &[("Content-Type", "text/plain")],
                Some(b"x"),
            ),
        ),
        (
            "400 parse",
            keyed_raw(
                srv,
                "PATCH",
                "/api/users/@me/",
                &write,
                &[("Content-Type", "application/json")],
                Some(b"{"),
            ),
        ),
        (
            "400 field",
            srv.patch("/api/users/@me/", &write, json!({"theme_mode": "x"})),
        ),
        ("413", srv.raw(too_large.as_bytes())),
    ]
}

#[test]
fn every_response_carries_nosniff_no_store_request_id_and_json_type() {
    let srv = TestServer::start();
    for (what, res) in sample_responses(&srv) {
        assert_standard_headers(&res, what);
    }
}

#[test]
fn a_generated_request_id_is_a_uuid() {
    let srv = TestServer::start();
    for (what, res) in sample_responses(&srv) {
        let id = res.header("x-request-id").unwrap();
        assert!(is_uuid_v7(id), "{what}: {id}");
    }
    let a = srv.request("GET", "/_health", None, None);
    let b = srv.request("GET", "/_health", None, None);
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
}

#[test]
fn a_valid_request_id_is_echoed() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["*"]);
    let long = "a".repeat(128);
    for id in [
        "abc-123:x.y_z",
        "A",
        long.as_str(),
        "018f0000-0000-7000-8000-000000000000",
    ] {
        let res = keyed_raw(
            &srv,
            "GET",
            "/api/users/@me/",
            &key,
            &[("X-Request-Id", id)],
            None,
        );
        assert_eq!(res.status, 200);
        assert_eq!(res.header("x-request-id"), Some(id));
        // Errors echo it too.
        let res = srv.request_raw_body("GET", "/api/users/@me/", &[("X-Request-Id", id)], None);
        assert_eq!(res.status, 401);
        assert_eq!(res.header("x-request-id"), Some(id));
    }
}

#[test]
fn an_invalid_request_id_is_replaced_by_a_uuid() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["*"]);
    let too_long = "a".repeat(129);
    for id in [
        "has space",
        "slash/no",
        "semi;colon",
        "ünï",
        too_long.as_str(),
        "a,b",
    ] {
        let res = keyed_raw(
            &srv,
            "GET",
            "/api/users/@me/",
            &key,
            &[("X-Request-Id", id)],
            None,
        );
        assert_eq!(res.status, 200);
        let got = res.header("x-request-id").unwrap();
        assert_ne!(got, id);
        assert!(is_uuid_v7(got), "replacement {got:?} for {id:?}");
    }
}

#[test]
fn responses_are_compact_json() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["*"]);
    let res = srv.get("/api/users/@me/hedgehog_config/", &key);
    assert_eq!(res.status, 200);
    assert_eq!(res.body, b"{}");
    let res = srv.patch(
        "/api/users/@me/hedgehog_config/",
        &key,
        json!({"a": [1, 2], "b": {"c": null}}),
    );
    assert_eq!(res.body, br#"{"a":[1,2],"b":{"c":null}}"#);
    let res = srv.get("/nowhere", &key);
    assert_eq!(
        res.body,
        br#"{"type":"invalid_request","code":"not_found","detail":"Endpoint not found.","attr":null}"#
    );
    let res = srv.get("/api/users/@me/", &key);
    let text = String::from_utf8(res.body.clone()).unwrap();
    assert!(text.starts_with("{\"date_joined\":\""), "{text}");
    assert!(
        !text.contains(": ") && !text.contains(", ") && !text.contains('\n'),
        "{text}"
    );
}

#[test]
fn non_ascii_is_written_as_raw_utf8() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["*"]);
    let res = srv.patch("/api/users/@me/", &key, json!({"first_name": "Zoë 名"}));
    assert_eq!(res.status, 200);
    let text = String::from_utf8(res.body.clone()).unwrap();
    assert!(text.contains("\"first_name\":\"Zoë 名\""), "{text}");
}

#[test]
fn head_behaves_like_get_without_a_body() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["user:read"]);
    for path in [
        "/api/users/",
        "/api/users/@me/",
        "/api/users/@me/hedgehog_config/",
    ] {
        let res = srv.request("HEAD", path, Some(&key), None);
        assert_eq!(res.status, 200, "{path}");
        assert!(res.body.is_empty(), "{path}");
        assert_standard_headers(&res, path);
        let res = srv.request("HEAD", path, None, None);
        assert_eq!(res.status, 401, "{path}");
        assert!(res.body.is_empty(), "{path}");
    }
}

#[test]
fn every_route_matches_with_or_without_a_trailing_slash() {
    let srv = TestServer::start();
    let staff = srv.user("admin@example.com", true);
    let other = srv.user("bob@example.com", false);
    let key = srv.key(&staff, &["*"]);
    for path in [
        "/api/users/",
        "/api/users",
        "/api/users/@me/",
        "/api/users/@me",
        "/api/users/@me/hedgehog_config/",
        "/api/users/@me/hedgehog_config",
    ] {
        assert_eq!(srv.get(path, &key).status, 200, "GET {path}");
    }
    let uuid = &other.uuid;
    for path in [format!("/api/users/{uuid}/"), format!("/api/users/{uuid}")] {
        assert_eq!(
            ok_json(&srv.get(&path, &key))["uuid"],
            json!(uuid),
            "GET {path}"
        );
    }
    assert_eq!(
        ok_json(&srv.patch("/api/users/@me", &key, json!({"first_name": "NoSlash"})))["first_name"],
        json!("NoSlash")
    );
    assert_eq!(
        ok_json(&srv.patch(
            &format!("/api/users/{uuid}"),
            &key,
            json!({"last_name": "L"})
        ))["last_name"],
        json!("L")
    );
    assert_eq!(
        ok_json(&srv.patch("/api/users/@me/hedgehog_config", &key, json!({"x": 1}))),
        json!({"x": 1})
    );
    assert_eq!(
        ok_json(&srv.get(&format!("/api/users/{uuid}/hedgehog_config"), &key)),
        json!({})
    );
    let res = srv.request("POST", "/api/users", None, None);
    assert_method_not_allowed(&res, "POST", "GET, HEAD");
    let res = srv.request("POST", "/api/users/@me", None, None);
    assert_method_not_allowed(&res, "POST", "GET, HEAD, PUT, PATCH, DELETE");
}

#[test]
fn percent_encoded_at_me_is_at_me() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["*"]);
    assert_eq!(
        ok_json(&srv.get("/api/users/%40me/", &key))["email"],
        json!("alice@example.com")
    );
    assert_eq!(
        ok_json(&srv.get("/api/users/%40me", &key))["email"],
        json!("alice@example.com")
    );
    assert_eq!(
        ok_json(&srv.patch("/api/users/%40me/", &key, json!({"first_name": "Enc"})))["first_name"],
        json!("Enc")
    );
    assert_eq!(
        ok_json(&srv.get("/api/users/%40me/hedgehog_config/", &key)),
        json!({})
    );
}
