//! CORS for browser frontends on another origin (`--cors-origin`, SPEC §10.7). Only listed
//! origins ever get CORS headers, and always with credentials allowed, because the API's
//! sessions are cookies: listing an origin trusts its scripts like the API's own pages.
//! Unlisted origins get nothing, so the browser keeps their scripts out.

use hyper::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_METHOD, HeaderMap, HeaderValue, ORIGIN, VARY,
};
use hyper::{Method, Response};

use super::body::Body;

/// Request headers a frontend may send: credentials, JSON bodies, CSRF, request ids.
const ALLOW_HEADERS: &str = "Authorization, Content-Type, X-CSRFToken, X-Request-Id";

/// Response headers a frontend's script may read besides the CORS-safelisted ones.
const EXPOSE_HEADERS: &str = "Retry-After, X-Request-Id";

/// How long a browser may cache a preflight answer, in seconds. Short, so a changed origin
/// list or route takes effect soon.
const MAX_AGE: &str = "600";

/// The request's `Origin` header when it names one of `allowed` (already lowercased by the
/// CLI), echoed back as received.
pub fn listed_origin(headers: &HeaderMap, allowed: &[String]) -> Option<HeaderValue> {
    if allowed.is_empty() {
        return None;
    }
    let origin = headers.get(ORIGIN)?;
    let text = origin.to_str().ok()?;
    allowed
        .iter()
        .any(|o| o.eq_ignore_ascii_case(text))
        .then(|| origin.clone())
}

/// A preflight: `OPTIONS` asking, via `Access-Control-Request-Method`, whether the real request
/// may follow. A plain `OPTIONS` is an ordinary request (and gets 405).
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    *method == Method::OPTIONS && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// The 204 answer to a preflight from a listed origin on a route with `methods`. The origin
/// and credential headers are added by `allow`, like on every response to that origin.
pub fn preflight(methods: &[Method]) -> Response<Body> {
    let mut res = super::no_content();
    let headers = res.headers_mut();
    let methods = methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if let Ok(v) = HeaderValue::from_str(&methods) {
        headers.insert(ACCESS_CONTROL_ALLOW_METHODS, v);
    }
    headers.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOW_HEADERS),
    );
    headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE));
    res
}

/// Lets the browser hand a response (errors included) to the listed `origin`'s script.
pub fn allow(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
    // The answer depends on the Origin header: caches must not serve it to another origin.
    headers.append(VARY, HeaderValue::from_static("Origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_origin(origin: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
        headers
    }

    #[test]
    fn only_listed_origins_match() {
        let allowed = vec!["https://app.example.com".to_owned()];
        let listed = listed_origin(&with_origin("https://app.example.com"), &allowed);
        assert_eq!(listed.unwrap(), "https://app.example.com");
        for other in [
            "https://evil.example.com",
            "http://app.example.com",
            "https://app.example.com:8443",
            "null",
        ] {
            assert!(
                listed_origin(&with_origin(other), &allowed).is_none(),
                "{other}"
            );
        }
        assert!(listed_origin(&HeaderMap::new(), &allowed).is_none());
        assert!(listed_origin(&with_origin("https://app.example.com"), &[]).is_none());
    }
}
