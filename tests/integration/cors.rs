//! `--cors-origin` (SPEC §10.7): preflights from listed origins get 204 with the CORS headers,
//! every response to a listed origin (errors included) lets the browser read it with
//! credentials, and unlisted origins get no CORS headers at all.

use crate::harness::{Resp, TestServer};
use crate::support::*;

const APP: &str = "https://app.example.com";
const DEV: &str = "http://localhost:3000";

fn server() -> TestServer {
    TestServer::start_with(|c| c.cors_origins = vec![APP.to_owned(), DEV.to_owned()])
}

fn preflight(srv: &TestServer, path: &str, origin: &str) -> Resp {
    srv.request_raw_body(
        "OPTIONS",
        path,
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "PATCH"),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ),
        ],
        None,
    )
}

fn cors_headers(res: &Resp) -> Vec<&(String, String)> {
    res.headers
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().starts_with("access-control-"))
        .collect()
}

#[track_caller]
fn assert_allowed(res: &Resp, origin: &str) {
    assert_eq!(res.header("access-control-allow-origin"), Some(origin));
    assert_eq!(res.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(res.header("vary"), Some("Origin"));
    assert_eq!(res.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(res.header("cache-control"), Some("no-store"));
    assert!(res.header("x-request-id").is_some());
}

#[test]
fn a_preflight_from_a_listed_origin_is_204_with_the_route_methods() {
    let srv = server();
    for origin in [APP, DEV] {
        let res = preflight(&srv, "/api/users/@me/", origin);
        assert_eq!(res.status, 204, "{}", String::from_utf8_lossy(&res.body));
        assert!(res.body.is_empty());
        assert_allowed(&res, origin);
        assert_eq!(
            res.header("access-control-allow-methods"),
            Some("GET, HEAD, PUT, PATCH, DELETE")
        );
        assert_eq!(
            res.header("access-control-allow-headers"),
            Some("Authorization, Content-Type, X-CSRFToken, X-Request-Id")
        );
        let max_age: u64 = res
            .header("access-control-max-age")
            .unwrap()
            .parse()
            .unwrap();
        assert!(max_age > 0);
    }
    let res = preflight(&srv, "/api/login", APP);
    assert_eq!(res.status, 204);
    assert_eq!(res.header("access-control-allow-methods"), Some("POST"));
}

#[test]
fn other_options_requests_are_405_or_404() {
    let srv = server();
    // An unlisted origin's preflight: an ordinary OPTIONS, and no CORS headers.
    let res = preflight(&srv, "/api/users/@me/", "https://evil.example.com");
    assert_method_not_allowed(&res, "OPTIONS", "GET, HEAD, PUT, PATCH, DELETE");
    assert!(cors_headers(&res).is_empty(), "{:?}", res.headers);
    // A plain OPTIONS (not a preflight) from a listed origin is not routed either.
    let res = srv.request_raw_body("OPTIONS", "/api/users/", &[("Origin", APP)], None);
    assert_method_not_allowed(&res, "OPTIONS", "GET, HEAD");
    assert_eq!(res.header("access-control-allow-origin"), Some(APP));
    // Unknown paths stay 404.
    assert_endpoint_not_found(&preflight(&srv, "/api/nowhere/", APP));
}

#[test]
fn responses_to_a_listed_origin_allow_it_errors_included() {
    let srv = server();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["user:read"]);
    let ok = keyed_raw(
        &srv,
        "GET",
        "/api/users/@me/",
        &key,
        &[("Origin", APP)],
        None,
    );
    assert_eq!(ok.status, 200);
    assert_allowed(&ok, APP);
    assert!(
        ok.header("access-control-expose-headers")
            .is_some_and(|h| h.contains("Retry-After") && h.contains("X-Request-Id"))
    );
    let unauthenticated = srv.request_raw_body("GET", "/api/users/@me/", &[("Origin", DEV)], None);
    assert_not_authenticated(&unauthenticated);
    assert_allowed(&unauthenticated, DEV);
    let not_found = srv.request_raw_body("GET", "/nope", &[("Origin", APP)], None);
    assert_allowed(&not_found, APP);
}

#[test]
fn unlisted_origins_and_servers_without_the_flag_get_no_cors_headers() {
    let srv = server();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["user:read"]);
    for origin in [
        "https://evil.example.com",
        "https://app.example.com.evil.com",
        "null",
    ] {
        let res = keyed_raw(
            &srv,
            "GET",
            "/api/users/@me/",
            &key,
            &[("Origin", origin)],
            None,
        );
        assert_eq!(res.status, 200);
        assert!(cors_headers(&res).is_empty(), "{origin}: {:?}", res.headers);
    }
    let plain = TestServer::start();
    let res = preflight(&plain, "/api/users/@me/", APP);
    assert_method_not_allowed(&res, "OPTIONS", "GET, HEAD, PUT, PATCH, DELETE");
    assert!(cors_headers(&res).is_empty());
}
