//! Credentials: key format and digests, password hashing, and the random values usersvc issues.

pub mod api_key;
pub mod password;
pub mod session;
pub mod totp;

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

/// `sha256$<hex>`: how session, email and API tokens are stored. They carry 256 random bits,
/// so a fast unsalted hash is enough; a slow one would only slow every request.
pub fn token_digest(token: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256${}", hex::encode(Sha256::digest(token.as_bytes())))
}
