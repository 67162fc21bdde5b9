//! Credential headers, read the way `http::Credentials::read` and `http::handle` read them.
//!
//! Input: newline-separated header values (a header value can never hold `\n`, so no input is
//! lost to the split): line 1 `Authorization`, line 2 `X-CSRFToken`, line 3 `X-Request-Id`,
//! every further line one `Cookie` header. Each line goes through `HeaderValue::from_bytes` and
//! `to_str` as hyper hands it over, then `bearer_token`, `session::cookie`, `check_csrf`,
//! `valid_request_id`, and the key digest. Panics are bugs; so are broken invariants.

use hyper::header::HeaderValue;
use usersvc::auth::{api_key, session, token_digest};
use usersvc::http::{bearer_token, valid_request_id};

/// One input; panics on a bug.
pub fn check(data: &[u8]) {
    let mut lines = data.split(|&b| b == b'\n');
    let authorization = lines.next().and_then(header_str);
    let csrf_header = lines.next().and_then(header_str);
    let request_id = lines.next().and_then(header_str);
    let cookies: Vec<&str> = lines.filter_map(header_str).collect();

    // Authorization: Bearer <key>.
    if let Some(header) = authorization {
        if let Some(token) = bearer_token(header) {
            let Some(rest) = header.strip_prefix("Bearer") else {
                panic!("a bearer token from a header without `Bearer`: {header:?}");
            };
            assert!(rest.starts_with(char::is_whitespace), "{header:?}");
            assert_eq!(token, token.trim(), "{header:?}");
            assert!(token.len() >= 2 && !token.starts_with("pha_"), "{header:?}");
            assert!(rest.contains(token), "{header:?}");
            let digest = api_key::digest(token);
            assert!(digest.starts_with("sha256$") && digest.len() == 7 + 64);
            let _ = api_key::mask(token);
        }
        // Also every line as a comma-separated scope list, as the key API parses it.
        let _ = api_key::parse_scopes(header.split(',').map(str::trim));
    }

    // Cookies: the first header that has the cookie wins, as in `Credentials::read`.
    let cookie = |name: &str| {
        cookies
            .iter()
            .find_map(|h| session::cookie(h, name))
            .map(str::to_owned)
    };
    let session_token = cookie(session::SESSION_COOKIE).filter(|t| !t.is_empty());
    let csrf_cookie = cookie(session::CSRF_COOKIE);
    for value in [&session_token, &csrf_cookie].into_iter().flatten() {
        assert_eq!(value, value.trim(), "{cookies:?}");
        assert!(!value.contains(';'), "{cookies:?}");
    }
    if let Some(token) = &session_token {
        let _ = token_digest(token);
    }

    // Double-submit CSRF: passes exactly when both are present, non-empty and equal.
    let verdict = session::check_csrf(csrf_cookie.as_deref(), csrf_header);
    let expected = csrf_cookie
        .as_deref()
        .is_some_and(|c| !c.is_empty() && Some(c) == csrf_header);
    assert_eq!(verdict.is_ok(), expected, "{csrf_cookie:?} {csrf_header:?}");
    if let Err(e) = verdict {
        assert_eq!(e.status().as_u16(), 403);
        let _ = e.envelope();
    }

    // X-Request-Id: a valid id is echoed back as a header value.
    if let Some(id) = request_id
        && valid_request_id(id)
    {
        assert!(HeaderValue::from_str(id).is_ok(), "{id:?}");
        assert!((1..=128).contains(&id.len()));
    }
}

/// A header value as hyper would hand it to `to_str`: `None` where the server sees none.
fn header_str(line: &[u8]) -> Option<&str> {
    HeaderValue::from_bytes(line).ok()?;
    std::str::from_utf8(line).ok().filter(|_| {
        line.iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
    })
}
