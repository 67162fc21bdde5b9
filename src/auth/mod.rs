//! Credentials: key format and digests, password hashing, and the random values usersvc issues.

pub mod api_key;
pub mod password;

use rand::Rng;
use rand::distr::Alphanumeric;

/// A new UUIDv7 (time-ordered), lowercase hyphenated.
pub fn new_uuid() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// `n` characters from [0-9A-Za-z], from the OS-seeded CSPRNG.
pub fn random_base62(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// A URL-safe random token of `n` characters (for `distinct_id`).
pub fn random_token(n: usize) -> String {
    random_base62(n)
}
