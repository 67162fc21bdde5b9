//! Session tokens and cookies (SPEC §3.2, §10.5): `sessionid` (HttpOnly) and the double-submit
//! CSRF cookie `posthog_csrftoken`.

use crate::error::Error;

pub const SESSION_COOKIE: &str = "sessionid";
pub const CSRF_COOKIE: &str = "posthog_csrftoken";
const MAX_AGE: u64 = 1_209_600;

/// A new session (or CSRF) token: 43 base62 characters, 256 bits.
pub fn new_token() -> String {
    super::random_base62(43)
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim())
    })
}

/// `Set-Cookie` values that start a session.
pub fn set_cookies(session_token: &str, csrf_token: &str, secure: bool) -> [String; 2] {
    let secure = if secure { "; Secure" } else { "" };
    [
        format!(
            "{SESSION_COOKIE}={session_token}; HttpOnly; Max-Age={MAX_AGE}; Path=/; SameSite=Lax{secure}"
        ),
        format!("{CSRF_COOKIE}={csrf_token}; Max-Age={MAX_AGE}; Path=/; SameSite=Lax{secure}"),
    ]
}

/// `Set-Cookie` values for a pending (second-factor) login: only the session cookie.
pub fn set_pending_cookie(session_token: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={session_token}; HttpOnly; Max-Age={MAX_AGE}; Path=/; SameSite=Lax{secure}"
    )
}

/// `Set-Cookie` values that expire both cookies.
pub fn clear_cookies(secure: bool) -> [String; 2] {
    let secure = if secure { "; Secure" } else { "" };
    [
        format!("{SESSION_COOKIE}=; HttpOnly; Max-Age=0; Path=/; SameSite=Lax{secure}"),
        format!("{CSRF_COOKIE}=; Max-Age=0; Path=/; SameSite=Lax{secure}"),
    ]
}

/// Double-submit CSRF check for an unsafe request on a full session.
pub fn check_csrf(cookie_value: Option<&str>, header_value: Option<&str>) -> Result<(), Error> {
    let fail = |why: &'static str| Error::permission_denied(why);
    let Some(cookie) = cookie_value.filter(|c| !c.is_empty()) else {
        return Err(fail("CSRF Failed: CSRF cookie not set."));
    };
    let Some(header) = header_value.filter(|h| !h.is_empty()) else {
        return Err(fail("CSRF Failed: CSRF token missing."));
    };
    if !constant_time_eq(cookie.as_bytes(), header.as_bytes()) {
        return Err(fail(
            "CSRF Failed: CSRF token from the 'X-Csrftoken' HTTP header incorrect.",
        ));
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cookies() {
        let h = "a=1; sessionid=abc ; posthog_csrftoken=xyz";
        assert_eq!(cookie(h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(h, CSRF_COOKIE), Some("xyz"));
        assert_eq!(cookie(h, "missing"), None);
    }

    #[test]
    fn csrf_messages() {
        let detail = |r: Result<(), Error>| r.err().map(|e| e.detail());
        assert_eq!(
            detail(check_csrf(None, Some("x"))).as_deref(),
            Some("CSRF Failed: CSRF cookie not set.")
        );
        assert_eq!(
            detail(check_csrf(Some("x"), None)).as_deref(),
            Some("CSRF Failed: CSRF token missing.")
        );
        assert!(detail(check_csrf(Some("x"), Some("y"))).is_some_and(|d| d.contains("incorrect")));
        assert!(check_csrf(Some("x"), Some("x")).is_ok());
    }
}
