//! Login sessions. Only `sha256$<hex>` digests of session tokens are stored.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::clock::Micros;
use crate::error::Result;
use crate::model::UserRow;

use super::users;

#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id: i64,
    pub user_id: i64,
    pub pending: bool,
    /// Login time.
    pub created_at: Micros,
    pub last_seen_at: Micros,
}

const COLUMNS: &str = "s.id, s.user_id, s.pending, s.created_at, s.last_seen_at";

fn from_row(r: &Row, at: usize) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(at)?,
        user_id: r.get(at + 1)?,
        pending: r.get(at + 2)?,
        created_at: r.get(at + 3)?,
        last_seen_at: r.get(at + 4)?,
    })
}

/// The session with this digest and its active user, if the session was seen after
/// `seen_after` and is (`pending`) a pending login or a full session.
pub fn find(
    conn: &Connection,
    digest: &str,
    pending: bool,
    seen_after: Micros,
) -> Result<Option<(SessionRow, UserRow)>> {
    let sql = format!(
        "SELECT {}, {COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.token_hash = ?1 AND s.pending = ?2 AND s.last_seen_at > ?3 AND u.is_active = 1",
        users::COLUMNS
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![digest, pending, seen_after], |r| {
            Ok((from_row(r, users::COLUMN_COUNT)?, users::from_row(r, 0)?))
        })
        .optional()?)
}

/// Starts a session (or a pending login) for `user_id`; returns its id.
pub fn insert(
    conn: &Connection,
    user_id: i64,
    digest: &str,
    pending: bool,
    now: Micros,
) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO sessions (token_hash, user_id, pending, created_at, last_seen_at) \
         VALUES (?1, ?2, ?3, ?4, ?4)",
    )?
    .execute(params![digest, user_id, pending, now])?;
    Ok(conn.last_insert_rowid())
}

/// Records activity; callers do this at most hourly.
pub fn touch(conn: &Connection, id: i64, now: Micros) -> Result<()> {
    conn.prepare_cached("UPDATE sessions SET last_seen_at = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    Ok(())
}

pub fn delete(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM sessions WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Ends every session of a user except `keep`.
pub fn delete_for_user(conn: &Connection, user_id: i64, keep: Option<i64>) -> Result<()> {
    conn.prepare_cached("DELETE FROM sessions WHERE user_id = ?1 AND id IS NOT ?2")?
        .execute(params![user_id, keep])?;
    Ok(())
}

/// Stores a 2FA setup secret (hex) on the session until `expires_at`.
pub fn set_totp_setup(
    conn: &Connection,
    id: i64,
    secret_hex: &str,
    expires_at: Micros,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE sessions SET totp_setup_secret = ?2, totp_setup_expires_at = ?3 WHERE id = ?1",
    )?
    .execute(params![id, secret_hex, expires_at])?;
    Ok(())
}

/// The session's live 2FA setup secret (hex). Call it inside the write that consumes it, so
/// of two racing validations only the first finds it.
pub fn totp_setup(conn: &Connection, id: i64, now: Micros) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT totp_setup_secret FROM sessions WHERE id = ?1 AND totp_setup_expires_at > ?2",
        )?
        .query_row(params![id, now], |r| r.get(0))
        .optional()?
        .flatten())
}

pub fn clear_totp_setup(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE sessions SET totp_setup_secret = NULL, totp_setup_expires_at = NULL WHERE id = ?1",
    )?
    .execute([id])?;
    Ok(())
}
