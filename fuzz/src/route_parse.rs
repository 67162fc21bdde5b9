//! Route parsing: the request target as the server sees it (an HTTP URI, its path
//! percent-decoded with `decode_utf8_lossy`, as `http::dispatch` does) → `Route::parse`, then
//! every per-route rule (`methods`, `access`, `is_sensitive`, `needs_csrf`, `user_segment`,
//! `template`) for every method, with the router's invariants checked.

use std::mem::discriminant;

use hyper::{Method, Uri};
use percent_encoding::percent_decode_str;
use usersvc::http::router::{Access, Route};

/// One input; panics on a bug.
pub fn check(data: &[u8]) {
    // 1. The raw bytes as a path, when they are UTF-8 (the parser's own contract).
    if let Ok(path) = std::str::from_utf8(data) {
        check_path(path);
    }
    // 2. The server's way in: a request target hyper accepts, path percent-decoded lossily.
    if let Ok(uri) = Uri::try_from(data) {
        let decoded = percent_decode_str(uri.path()).decode_utf8_lossy();
        check_path(&decoded);
    }
}

fn check_path(path: &str) {
    let route = Route::parse(path);
    // A trailing slash is optional: `p` and `p/` route alike (one slash only is stripped).
    if !path.ends_with('/') {
        assert_eq!(route, Route::parse(&format!("{path}/")), "{path:?}");
    }
    let Some(route) = route else {
        return;
    };
    check_route(&route);
}

fn check_route(route: &Route) {
    // The template routes back to the same kind of route (templates are what logs show).
    let template = route.template();
    let again = Route::parse(template);
    assert!(
        again
            .as_ref()
            .is_some_and(|r| discriminant(r) == discriminant(route)),
        "template {template:?} of {route:?} routes to {again:?}"
    );
    // A `{uuid|@me}` segment is one DRF lookup segment: non-empty, no dot, no slash.
    if let Some(segment) = route.user_segment() {
        assert!(
            !segment.is_empty() && !segment.contains(['.', '/']),
            "{route:?}"
        );
    }
    let methods = route.methods();
    assert!(!methods.is_empty(), "{route:?}");
    // HEAD wherever GET is, and only there.
    assert_eq!(
        methods.contains(&Method::GET),
        methods.contains(&Method::HEAD),
        "{route:?}"
    );
    let _ = route.needs_csrf();
    for method in [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
        Method::CONNECT,
    ] {
        let access = route.access(&method);
        let sensitive = route.is_sensitive(&method);
        // Reads are never time-sensitive.
        if matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
            assert!(!sensitive, "{route:?} {method}");
        }
        // Only DELETE on a user ignores `Authorization`.
        if access == Access::SessionOnlyIgnoringKeys {
            assert!(
                matches!(route, Route::User(_)) && method == Method::DELETE,
                "{route:?} {method}"
            );
        }
        // Scopes are always one of the two the keys know.
        if let Access::Scope(scope) = access {
            assert!(matches!(scope, "user:read" | "user:write"), "{route:?}");
        }
    }
}
