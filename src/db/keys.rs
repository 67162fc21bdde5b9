//! Personal API keys. Only `sha256$<hex>` digests are stored (SPEC §3.2).

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::auth::api_key;
use crate::clock::{Micros, iso};
use crate::error::Result;
use crate::model::{ApiKeyOut, UserRow};

use super::users;

/// A stored key, without its digest.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub id: String,
    pub user_id: i64,
    pub label: String,
    pub mask_value: String,
    pub scopes: Vec<String>,
    pub created_at: Micros,
    pub last_used_at: Option<Micros>,
    pub last_rolled_at: Option<Micros>,
    pub scoping: Scoping,
}

impl KeyRow {
    pub fn to_out(&self, value: Option<String>) -> ApiKeyOut {
        ApiKeyOut {
            id: self.id.clone(),
            label: self.label.clone(),
            description: None,
            value,
            mask_value: self.mask_value.clone(),
            created_at: iso(self.created_at),
            last_used_at: self.last_used_at.map(iso),
            last_rolled_at: self.last_rolled_at.map(iso),
            user_id: self.user_id,
            is_legacy_hashing: false,
            scopes: self.scopes.clone(),
            scoped_organizations: self.scoping.organizations.clone(),
            scoped_teams: self.scoping.teams.clone(),
            local_dev_value: None,
        }
    }
}

const COLUMNS: &str = "k.id, k.user_id, k.label, k.mask_value, k.scopes, k.created_at, \
    k.last_used_at, k.last_rolled_at, k.scoped_teams, k.scoped_organizations";

fn from_row(r: &Row, at: usize) -> rusqlite::Result<KeyRow> {
    let scopes: String = r.get(at + 4)?;
    Ok(KeyRow {
        id: r.get(at)?,
        user_id: r.get(at + 1)?,
        label: r.get(at + 2)?,
        mask_value: r.get(at + 3)?,
        scopes: serde_json::from_str(&scopes).unwrap_or_default(),
        created_at: r.get(at + 5)?,
        last_used_at: r.get(at + 6)?,
        last_rolled_at: r.get(at + 7)?,
        scoping: Scoping {
            teams: json_column(r, at + 8)?,
            organizations: json_column(r, at + 9)?,
        },
    })
}

/// A nullable JSON text column.
fn json_column<T: serde::de::DeserializeOwned>(r: &Row, at: usize) -> rusqlite::Result<Option<T>> {
    let text: Option<String> = r.get(at)?;
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(at, rusqlite::types::Type::Text, Box::new(e))
        })
    })
    .transpose()
}

/// The key with this digest and its active user: the whole cost of authenticating a request.
pub fn authenticate(conn: &Connection, digest: &str) -> Result<Option<(KeyRow, UserRow)>> {
    let sql = format!(
        "SELECT {}, {COLUMNS} FROM personal_api_keys k JOIN users u ON u.id = k.user_id \
         WHERE k.secure_value = ?1 AND u.is_active = 1",
        users::COLUMNS
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([digest], |r| {
            Ok((from_row(r, users::COLUMN_COUNT)?, users::from_row(r, 0)?))
        })
        .optional()?)
}

/// Stores a new key for `value` (its digest and mask, never the value itself).
pub fn insert(
    conn: &Connection,
    user_id: i64,
    label: &str,
    value: &str,
    scopes: &[String],
    scoping: &Scoping,
    now: Micros,
) -> Result<KeyRow> {
    let id = api_key::new_id();
    let digest = api_key::digest(value);
    let mask_value = api_key::mask(value);
    let scopes_json = serde_json::to_string(scopes).map_err(crate::error::Error::internal)?;
    conn.prepare_cached(
        "INSERT INTO personal_api_keys (id, user_id, label, secure_value, mask_value, scopes, \
         created_at, scoped_teams, scoped_organizations) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        id,
        user_id,
        label,
        digest,
        mask_value,
        scopes_json,
        now,
        to_json(scoping.teams.as_ref())?,
        to_json(scoping.organizations.as_ref())?
    ])?;
    Ok(KeyRow {
        id,
        user_id,
        label: label.to_owned(),
        mask_value,
        scopes: scopes.to_vec(),
        created_at: now,
        last_used_at: None,
        last_rolled_at: None,
        scoping: scoping.clone(),
    })
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<KeyRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM personal_api_keys k WHERE k.id = ?1"
        ))?
        .query_row([id], |r| from_row(r, 0))
        .optional()?)
}

/// Keys of one user (or all keys), newest first.
pub fn list(conn: &Connection, user_id: Option<i64>) -> Result<Vec<KeyRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM personal_api_keys k WHERE ?1 IS NULL OR k.user_id = ?1 \
         ORDER BY k.created_at DESC, k.rowid DESC"
    ))?;
    let rows = stmt
        .query_map([user_id], |r| from_row(r, 0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn count_for_user(conn: &Connection, user_id: i64) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM personal_api_keys WHERE user_id = ?1")?
        .query_row([user_id], |r| r.get(0))?)
}

pub fn delete(conn: &Connection, id: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM personal_api_keys WHERE id = ?1", [id])? > 0)
}

/// Records a use; callers only do this when the stored value is over an hour old.
pub fn touch(conn: &Connection, id: &str, now: Micros) -> Result<()> {
    conn.prepare_cached("UPDATE personal_api_keys SET last_used_at = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    Ok(())
}

/// The teams and organizations a key is limited to (V3). `None` means not limited. The limits
/// are informational here: `/api/users/` is exempt from them (reference §3.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scoping {
    pub teams: Option<Vec<i64>>,
    pub organizations: Option<Vec<String>>,
}

pub fn set_scoping(conn: &Connection, id: &str, scoping: &Scoping) -> Result<()> {
    conn.prepare_cached(
        "UPDATE personal_api_keys SET scoped_teams = ?2, scoped_organizations = ?3 WHERE id = ?1",
    )?
    .execute(params![
        id,
        to_json(scoping.teams.as_ref())?,
        to_json(scoping.organizations.as_ref())?
    ])?;
    Ok(())
}

fn to_json<T: serde::Serialize>(value: Option<&T>) -> Result<Option<String>> {
    value
        .map(serde_json::to_string)
        .transpose()
        .map_err(crate::error::Error::internal)
}

/// Replaces a key's label and scopes (PATCH sends the merged values).
pub fn update(conn: &Connection, id: &str, label: &str, scopes: &[String]) -> Result<()> {
    let scopes_json = serde_json::to_string(scopes).map_err(crate::error::Error::internal)?;
    conn.prepare_cached("UPDATE personal_api_keys SET label = ?2, scopes = ?3 WHERE id = ?1")?
        .execute(params![id, label, scopes_json])?;
    Ok(())
}

/// Gives a key a new value: only its digest and mask are stored, so the old value stops
/// authenticating with this write.
pub fn roll(conn: &Connection, id: &str, value: &str, now: Micros) -> Result<()> {
    conn.prepare_cached(
        "UPDATE personal_api_keys SET secure_value = ?2, mask_value = ?3, last_rolled_at = ?4 \
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        api_key::digest(value),
        api_key::mask(value),
        now
    ])?;
    Ok(())
}
