//! Second-factor codes, as `POST /api/login/token/ {token}` reads them.
//!
//! The input is tried two ways: as a JSON body (its `token` member extracted the way
//! `api::sessions::login_token` does: strings trimmed, other values printed as JSON, `""` and
//! `"null"` dropped; and the whole value through `totp::parse_token`, which also takes
//! numbers), and as the raw text of a `token` string. Each extracted code then takes the route
//! of `api::two_factor::verify_login_code`: `totp::parse_token`, and if that says no, the
//! backup-code shape check.
//!
//! TOTP matching is fuzzed too: a secret, a clock and a `last_step` derived from the input go
//! through `totp::matching_step` / `code` / `step_at`, with the replay and skew rules asserted.
//!
//! Not reachable here: `verify_backup_code` (private, async, needs the database and argon2).
//! Its shape check (trim, ASCII-lowercase, exactly 8 of `[a-z2-7]`) is reproduced in
//! [`backup_code_shape`] to assert that the TOTP and backup-code routes never overlap.

use serde_json::Value;
use usersvc::auth::totp;

/// One input; panics on a bug.
pub fn check(data: &[u8]) {
    let clock = Clock::from(data);
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        check_parse_token(&value);
        if let Some(code) = value.get("token").and_then(login_token_code) {
            verify_login_code(&code, &clock);
        }
    }
    let text = String::from_utf8_lossy(data);
    if let Some(code) = login_token_code(&Value::String(text.into_owned())) {
        verify_login_code(&code, &clock);
    }
}

/// `login_token`'s extraction of the `token` member.
fn login_token_code(v: &Value) -> Option<String> {
    Some(match v {
        Value::String(s) => s.trim().to_owned(),
        other => other.to_string(),
    })
    .filter(|s| !s.is_empty() && s != "null")
}

/// `parse_token` over any JSON value: 1–6 ASCII digits (after trimming a string), or an
/// integer 0..=999999; always below 10^6.
fn check_parse_token(v: &Value) {
    let parsed = totp::parse_token(v);
    if let Some(n) = parsed {
        assert!(n < 1_000_000, "{v:?} → {n}");
    }
    match v {
        Value::Number(n) => {
            if let Some(u) = n.as_u64().filter(|&u| u < 1_000_000) {
                assert_eq!(parsed, Some(u as u32), "{v:?}");
            }
            if n.as_i64().is_some_and(|i| i < 0) || n.is_f64() {
                assert_eq!(parsed, None, "{v:?}");
            }
        }
        Value::String(s) => {
            let t = s.trim();
            let digits = (1..=6).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit());
            assert_eq!(parsed.is_some(), digits, "{s:?}");
        }
        _ => assert_eq!(parsed, None, "{v:?}"),
    }
}

/// The routing of `verify_login_code`: a TOTP token, else a backup code — never both.
fn verify_login_code(code: &str, clock: &Clock) {
    let as_value = Value::String(code.to_owned());
    check_parse_token(&as_value);
    match totp::parse_token(&as_value) {
        Some(token) => {
            assert!(
                !backup_code_shape(code),
                "{code:?} is both a TOTP and a backup code"
            );
            check_matching(token, clock);
        }
        None => {
            let _ = backup_code_shape(code);
        }
    }
    // The authenticator URI, with the code standing in for the account email.
    let url = totp::otpauth_url(code, &totp::base32(&clock.secret));
    assert!(url.is_ascii() && url.starts_with("otpauth://totp/usersvc:"));
}

/// Reproduction of the private check in `api::two_factor::verify_backup_code`.
fn backup_code_shape(code: &str) -> bool {
    let code = code.trim().to_ascii_lowercase();
    code.len() == 8
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
}

/// A secret, a clock and a replay floor taken from the input bytes.
struct Clock {
    secret: Vec<u8>,
    now: i64,
    last_step: i64,
}

impl From<&[u8]> for Clock {
    fn from(data: &[u8]) -> Self {
        let word = |at: usize| {
            let mut b = [0u8; 8];
            for (i, slot) in b.iter_mut().enumerate() {
                *slot = data.get(at + i).copied().unwrap_or(0);
            }
            i64::from_le_bytes(b)
        };
        let secret_len = data.first().map_or(20, |&b| usize::from(b % 41));
        Clock {
            secret: data.iter().rev().take(secret_len).copied().collect(),
            now: word(1),
            last_step: word(9),
        }
    }
}

/// `matching_step`: a match is later than `last_step`, within one step of now, and is the
/// code of that step; the current step's own code always matches when it is not replayed.
fn check_matching(token: u32, clock: &Clock) {
    let Clock {
        secret,
        now,
        last_step,
    } = clock;
    let t = totp::step_at(*now);
    for step in [t - 1, t, t + 1] {
        assert!(totp::code(secret, step) < 1_000_000);
    }
    for (token, last) in [
        (token, *last_step),
        (totp::code(secret, t), *last_step),
        (totp::code(secret, t), t - 2),
        (totp::code(secret, t), t),
    ] {
        match totp::matching_step(secret, token, *now, last) {
            Some(step) => {
                assert!(step > last && (step - t).abs() <= 1, "{step} {t} {last}");
                assert_eq!(totp::code(secret, step), token);
            }
            None => assert!(
                !(t > last && totp::code(secret, t) == token),
                "the current code {token} was refused at step {t} (last {last})"
            ),
        }
    }
}
