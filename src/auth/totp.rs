//! TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30 s steps) with one step of skew, and the replay rule:
//! a step is accepted only if it is later than the last one accepted for the device.

use serde_json::Value;
use totp_rs::{Algorithm, Builder, Secret};

use crate::clock::Micros;

const STEP_SECONDS: i64 = 30;

/// 20 random bytes (160 bits, as RFC 4226 recommends).
pub fn new_secret() -> [u8; 20] {
    rand::random()
}

/// RFC 4648 base32, uppercase, no padding (20 bytes give exactly 32 characters).
pub fn base32(secret: &[u8]) -> String {
    Secret::from(secret.to_vec()).to_base32()
}

/// The time step that contains `now`.
pub fn step_at(now: Micros) -> i64 {
    now.div_euclid(1_000_000).div_euclid(STEP_SECONDS)
}

/// The 6-digit code of `step`, as a number.
pub fn code(secret: &[u8], step: i64) -> u32 {
    let totp = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(STEP_SECONDS as u64)
        .with_secret(secret.to_vec())
        .build_noncompliant();
    let time = u64::try_from(step.max(0).saturating_mul(STEP_SECONDS)).unwrap_or(0);
    totp.generate(time).to_string().parse().unwrap_or(u32::MAX)
}

/// A submitted code: a string or a number, trimmed, 1 to 6 digits, compared as an integer
/// (`"012345"` is 12345), as django-otp does.
pub fn parse_token(value: &Value) -> Option<u32> {
    let text = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    if text.is_empty() || text.len() > 6 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The step (t−1, t or t+1 around `now`) whose code is `token`, if it is later than
/// `last_step` — so a code is accepted once only.
pub fn matching_step(secret: &[u8], token: u32, now: Micros, last_step: i64) -> Option<i64> {
    let t = step_at(now);
    (t - 1..=t + 1).find(|&step| step > last_step && code(secret, step) == token)
}

/// The authenticator URI, built by hand (SPEC §10.5): label `usersvc:` + the encoded email.
pub fn otpauth_url(email: &str, secret_base32: &str) -> String {
    let label = percent_encoding::utf8_percent_encode(email, percent_encoding::NON_ALPHANUMERIC);
    format!(
        "otpauth://totp/usersvc:{label}?secret={secret_base32}&issuer=usersvc&algorithm=SHA1&digits=6&period=30"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA1 secret "12345678901234567890", 8-digit values truncated to 6.
    #[test]
    fn matches_rfc6238_vectors() {
        let secret = b"12345678901234567890";
        assert_eq!(code(secret, 59 / 30), 287_082);
        assert_eq!(code(secret, 1_111_111_109 / 30), 81_804);
        assert_eq!(code(secret, 1_234_567_890 / 30), 5_924);
    }

    #[test]
    fn accepts_one_step_of_skew_once() {
        let secret = new_secret();
        let now = 1_800_000_000_000_000;
        let t = step_at(now);
        for step in [t - 1, t, t + 1] {
            assert_eq!(
                matching_step(&secret, code(&secret, step), now, -1),
                Some(step)
            );
        }
        assert_eq!(matching_step(&secret, code(&secret, t - 2), now, -1), None);
        assert_eq!(matching_step(&secret, code(&secret, t + 2), now, -1), None);
        assert_eq!(matching_step(&secret, code(&secret, t), now, t), None);
    }

    #[test]
    fn parses_tokens_like_django_otp() {
        assert_eq!(parse_token(&Value::from(" 012345 ")), Some(12_345));
        assert_eq!(parse_token(&Value::from(123_456)), Some(123_456));
        assert_eq!(parse_token(&Value::from("1234567")), None);
        assert_eq!(parse_token(&Value::from("12a456")), None);
        assert_eq!(parse_token(&Value::Null), None);
    }
}
