//! TOTP devices and backup codes. Backup codes are stored as argon2id hashes that share one
//! salt per batch, so checking a code costs one hash, not one per stored code.

use rusqlite::{Connection, OptionalExtension, params};

use crate::clock::Micros;
use crate::error::Result;

/// A user's TOTP device: hex key and the last accepted time step.
pub struct Device {
    pub secret_hex: String,
    pub last_step: i64,
}

pub fn has_device(conn: &Connection, user_id: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM totp_devices WHERE user_id = ?1")?
        .exists([user_id])?)
}

pub fn device(conn: &Connection, user_id: i64) -> Result<Option<Device>> {
    Ok(conn
        .prepare_cached("SELECT secret, last_step FROM totp_devices WHERE user_id = ?1")?
        .query_row([user_id], |r| {
            Ok(Device {
                secret_hex: r.get(0)?,
                last_step: r.get(1)?,
            })
        })
        .optional()?)
}

/// Creates or replaces the user's device; `step` is the step just accepted with it.
pub fn put_device(
    conn: &Connection,
    user_id: i64,
    secret_hex: &str,
    step: i64,
    now: Micros,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO totp_devices (user_id, secret, last_step, created_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, last_step = excluded.last_step, \
         created_at = excluded.created_at",
    )?
    .execute(params![user_id, secret_hex, step, now])?;
    Ok(())
}

/// Records `step` as used if it is later than the last one: returns false when another
/// request already used this or a later step (the replay rule).
pub fn accept_step(conn: &Connection, user_id: i64, step: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "UPDATE totp_devices SET last_step = ?2 WHERE user_id = ?1 AND last_step < ?2",
        )?
        .execute(params![user_id, step])?
        == 1)
}

/// Removes every device and backup code of the user.
pub fn delete_all(conn: &Connection, user_id: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM totp_devices WHERE user_id = ?1")?
        .execute([user_id])?;
    conn.prepare_cached("DELETE FROM backup_codes WHERE user_id = ?1")?
        .execute([user_id])?;
    Ok(())
}

/// Replaces all backup codes of the user with these hashes.
pub fn replace_codes(
    conn: &Connection,
    user_id: i64,
    hashes: &[String],
    now: Micros,
) -> Result<()> {
    conn.prepare_cached("DELETE FROM backup_codes WHERE user_id = ?1")?
        .execute([user_id])?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO backup_codes (user_id, code_hash, created_at) VALUES (?1, ?2, ?3)",
    )?;
    for hash in hashes {
        insert.execute(params![user_id, hash, now])?;
    }
    Ok(())
}

/// One stored code hash of the user (they share the batch's salt and parameters).
pub fn any_code_hash(conn: &Connection, user_id: i64) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT code_hash FROM backup_codes WHERE user_id = ?1 LIMIT 1")?
        .query_row([user_id], |r| r.get(0))
        .optional()?)
}

/// Deletes the code with this hash: true if it existed (a code works once).
pub fn consume_code(conn: &Connection, user_id: i64, hash: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM backup_codes WHERE user_id = ?1 AND code_hash = ?2")?
        .execute(params![user_id, hash])?
        >= 1)
}

pub fn count_codes(conn: &Connection, user_id: i64) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM backup_codes WHERE user_id = ?1")?
        .query_row([user_id], |r| r.get(0))?)
}
