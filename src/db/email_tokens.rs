//! Single-use emailed tokens (email verification, password reset), stored as digests.

use rusqlite::{Connection, params};

use crate::clock::Micros;
use crate::error::Result;

pub const VERIFY_EMAIL: &str = "verify_email";
pub const RESET_PASSWORD: &str = "reset_password";

/// Issues a token (32 random bytes, base64url) valid until `expires_at`; returns the token.
pub fn issue(conn: &Connection, user_id: i64, purpose: &str, expires_at: Micros) -> Result<String> {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    conn.prepare_cached(
        "INSERT INTO email_tokens (user_id, purpose, token_hash, expires_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![user_id, purpose, crate::auth::token_digest(&token), expires_at])?;
    Ok(token)
}

/// Is this a live token of `user_id` for `purpose`? (Checks without using it up.)
pub fn is_live(
    conn: &Connection,
    user_id: i64,
    purpose: &str,
    token: &str,
    now: Micros,
) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM email_tokens WHERE user_id = ?1 AND purpose = ?2 AND token_hash = ?3 \
             AND expires_at > ?4",
        )?
        .exists(params![
            user_id,
            purpose,
            crate::auth::token_digest(token),
            now
        ])?)
}

/// Consumes a live token of `user_id` for `purpose`: returns whether it was valid. All the
/// user's tokens for that purpose are deleted on success (any success invalidates the rest).
pub fn consume(
    conn: &Connection,
    user_id: i64,
    purpose: &str,
    token: &str,
    now: Micros,
) -> Result<bool> {
    let live = is_live(conn, user_id, purpose, token, now)?;
    if live {
        revoke(conn, user_id, purpose)?;
    }
    Ok(live)
}

/// Invalidates every token of a user for a purpose (e.g. when `pending_email` changes).
pub fn revoke(conn: &Connection, user_id: i64, purpose: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM email_tokens WHERE user_id = ?1 AND purpose = ?2")?
        .execute(params![user_id, purpose])?;
    Ok(())
}
