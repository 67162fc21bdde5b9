//! Organizations, teams and memberships.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::clock::Micros;
use crate::error::Result;
use crate::model::{OrgRow, TeamBasic};

const ORG_COLUMNS: &str = "o.id, o.uuid, o.name, o.slug, o.created_at, o.updated_at";

fn org_from_row(r: &Row, at: usize) -> rusqlite::Result<OrgRow> {
    Ok(OrgRow {
        id: r.get(at)?,
        uuid: r.get(at + 1)?,
        name: r.get(at + 2)?,
        slug: r.get(at + 3)?,
        created_at: r.get(at + 4)?,
        updated_at: r.get(at + 5)?,
    })
}

const TEAM_COLUMNS: &str = "t.id, t.uuid, o.uuid, t.api_token, t.name";

fn team_from_row(r: &Row) -> rusqlite::Result<TeamBasic> {
    Ok(TeamBasic::new(
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
    ))
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<OrgRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {ORG_COLUMNS} FROM organizations o WHERE o.id = ?1"
        ))?
        .query_row([id], |r| org_from_row(r, 0))
        .optional()?)
}

pub fn get_by_uuid(conn: &Connection, uuid: &str) -> Result<Option<OrgRow>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {ORG_COLUMNS} FROM organizations o WHERE o.uuid = ?1"
        ))?
        .query_row([uuid.to_ascii_lowercase()], |r| org_from_row(r, 0))
        .optional()?)
}

/// ORG as the CLI takes it: a uuid or a slug.
pub fn find(conn: &Connection, uuid_or_slug: &str) -> Result<Option<OrgRow>> {
    if let Some(org) = get_by_uuid(conn, uuid_or_slug)? {
        return Ok(Some(org));
    }
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {ORG_COLUMNS} FROM organizations o WHERE o.slug = ?1"
        ))?
        .query_row([uuid_or_slug], |r| org_from_row(r, 0))
        .optional()?)
}

pub fn list(conn: &Connection) -> Result<Vec<OrgRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ORG_COLUMNS} FROM organizations o ORDER BY o.id"
    ))?;
    let rows = stmt
        .query_map([], |r| org_from_row(r, 0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn slug_taken(conn: &Connection, slug: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM organizations WHERE slug = ?1")?
        .exists([slug])?)
}

pub fn insert(conn: &Connection, name: &str, slug: &str, now: Micros) -> Result<OrgRow> {
    let uuid = crate::auth::new_uuid();
    conn.prepare_cached(
        "INSERT INTO organizations (uuid, name, slug, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
    )?
    .execute(params![uuid, name, slug, now])?;
    Ok(OrgRow {
        id: conn.last_insert_rowid(),
        uuid,
        name: name.to_owned(),
        slug: slug.to_owned(),
        created_at: now,
        updated_at: now,
    })
}

pub fn insert_team(conn: &Connection, org: &OrgRow, name: &str, now: Micros) -> Result<TeamBasic> {
    let uuid = crate::auth::new_uuid();
    let token = format!("phc_{}", crate::auth::random_base62(43));
    conn.prepare_cached(
        "INSERT INTO teams (uuid, organization_id, name, api_token, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![uuid, org.id, name, token, now])?;
    Ok(TeamBasic::new(
        conn.last_insert_rowid(),
        uuid,
        org.uuid.clone(),
        token,
        name.to_owned(),
    ))
}

pub fn team(conn: &Connection, id: i64) -> Result<Option<TeamBasic>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {TEAM_COLUMNS} FROM teams t JOIN organizations o ON o.id = t.organization_id WHERE t.id = ?1"
        ))?
        .query_row([id], team_from_row)
        .optional()?)
}

/// The organization id a team belongs to.
pub fn team_org(conn: &Connection, team_id: i64) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT organization_id FROM teams WHERE id = ?1")?
        .query_row([team_id], |r| r.get(0))
        .optional()?)
}

pub fn teams_of(conn: &Connection, org: &OrgRow) -> Result<Vec<TeamBasic>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TEAM_COLUMNS} FROM teams t JOIN organizations o ON o.id = t.organization_id \
         WHERE t.organization_id = ?1 ORDER BY t.id"
    ))?;
    let rows = stmt
        .query_map([org.id], team_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Every team, or every team of one organization, by id.
pub fn list_teams(conn: &Connection, org: Option<i64>) -> Result<Vec<TeamBasic>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TEAM_COLUMNS} FROM teams t JOIN organizations o ON o.id = t.organization_id \
         WHERE ?1 IS NULL OR t.organization_id = ?1 ORDER BY t.id"
    ))?;
    let rows = stmt
        .query_map([org], team_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn first_team_id(conn: &Connection, org_id: i64) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT min(id) FROM teams WHERE organization_id = ?1")?
        .query_row([org_id], |r| r.get(0))?)
}

/// Active members of the organization (kept by the triggers of migration V4).
pub fn member_count(conn: &Connection, org_id: i64) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT member_count FROM organizations WHERE id = ?1")?
        .query_row([org_id], |r| r.get(0))?)
}

/// A user's organizations with the user's level in each, in membership order.
pub fn memberships_of(conn: &Connection, user_id: i64) -> Result<Vec<(OrgRow, i64)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ORG_COLUMNS}, m.level FROM memberships m JOIN organizations o ON o.id = m.organization_id \
         WHERE m.user_id = ?1 ORDER BY m.id"
    ))?;
    let rows = stmt
        .query_map([user_id], |r| Ok((org_from_row(r, 0)?, r.get(6)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn is_member(conn: &Connection, user_id: i64, org_id: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM memberships WHERE user_id = ?1 AND organization_id = ?2")?
        .exists([user_id, org_id])?)
}

pub fn has_memberships(conn: &Connection, user_id: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM memberships WHERE user_id = ?1")?
        .exists([user_id])?)
}

/// Adds a membership (or changes its level). A user with no current organization gets this
/// one and its first team as current (SPEC §10.3). Returns the membership's joined_at.
pub fn add_member(
    conn: &Connection,
    user_id: i64,
    org_id: i64,
    level: i64,
    now: Micros,
) -> Result<Micros> {
    conn.prepare_cached(
        "INSERT INTO memberships (organization_id, user_id, level, joined_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (user_id, organization_id) DO UPDATE SET level = excluded.level",
    )?
    .execute(params![org_id, user_id, level, now])?;
    let team = first_team_id(conn, org_id)?;
    conn.prepare_cached(
        "UPDATE users SET current_organization_id = ?2, current_team_id = ?3 \
         WHERE id = ?1 AND current_organization_id IS NULL",
    )?
    .execute(params![user_id, org_id, team])?;
    Ok(conn
        .prepare_cached(
            "SELECT joined_at FROM memberships WHERE user_id = ?1 AND organization_id = ?2",
        )?
        .query_row([user_id, org_id], |r| r.get(0))?)
}

/// Removes a membership; a current org/team inside that organization is cleared. Returns
/// whether a membership existed.
pub fn remove_member(conn: &Connection, user_id: i64, org_id: i64) -> Result<bool> {
    let n = conn.execute(
        "DELETE FROM memberships WHERE user_id = ?1 AND organization_id = ?2",
        [user_id, org_id],
    )?;
    conn.execute(
        "UPDATE users SET current_organization_id = NULL, current_team_id = NULL \
         WHERE id = ?1 AND (current_organization_id = ?2 \
           OR current_team_id IN (SELECT id FROM teams WHERE organization_id = ?2))",
        [user_id, org_id],
    )?;
    Ok(n > 0)
}
