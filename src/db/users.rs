//! The `users` table, and the reads that assemble a user's nested context.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::clock::Micros;
use crate::error::Result;
use std::collections::HashMap;

use crate::model::{
    OrgRow, Organization, OrganizationBasic, TeamBasic, UserContext, UserOut, UserRow,
};

use super::orgs;

/// Columns read into a `UserRow`, in `user_from_row`'s order. The last three gather what the
/// user object needs from other tables (2FA, memberships, scenes) in the same query, so one
/// indexed row read yields a whole user.
pub const COLUMNS: &str = "u.id, u.uuid, u.distinct_id, u.email, u.pending_email, \
    u.is_email_verified, (u.password <> '' AND substr(u.password, 1, 1) <> '!'), u.first_name, \
    u.last_name, u.is_staff, u.is_active, u.date_joined, u.current_organization_id, \
    u.current_team_id, u.notification_settings, u.anonymize_data, u.allow_impersonation, \
    u.toolbar_mode, u.events_column_config, u.has_seen_product_intro_for, u.theme_mode, \
    u.hedgehog_config, u.allow_sidebar_suggestions, u.shortcut_position, \
    u.role_at_organization, u.passkeys_enabled_for_2fa, \
    EXISTS (SELECT 1 FROM totp_devices d WHERE d.user_id = u.id), \
    (SELECT json_group_array(json_array(m.organization_id, m.level) ORDER BY m.id) \
       FROM memberships m WHERE m.user_id = u.id), \
    (SELECT json_group_array(json_object('scene', s.scene, 'dashboard', s.dashboard) ORDER BY s.id) \
       FROM scene_personalisations s WHERE s.user_id = u.id)";

/// Number of columns in `COLUMNS`, for queries that select more after them.
pub const COLUMN_COUNT: usize = 29;

/// A JSON text column made by `json_group_array`.
fn json_list<T: serde::de::DeserializeOwned>(r: &Row, at: usize) -> rusqlite::Result<Vec<T>> {
    let text: String = r.get(at)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(at, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub fn from_row(r: &Row, at: usize) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        id: r.get(at)?,
        uuid: r.get(at + 1)?,
        distinct_id: r.get(at + 2)?,
        email: r.get(at + 3)?,
        pending_email: r.get(at + 4)?,
        is_email_verified: r.get(at + 5)?,
        has_password: r.get(at + 6)?,
        first_name: r.get(at + 7)?,
        last_name: r.get(at + 8)?,
        is_staff: r.get(at + 9)?,
        is_active: r.get(at + 10)?,
        date_joined: r.get(at + 11)?,
        current_organization_id: r.get(at + 12)?,
        current_team_id: r.get(at + 13)?,
        notification_settings: r.get(at + 14)?,
        anonymize_data: r.get(at + 15)?,
        allow_impersonation: r.get(at + 16)?,
        toolbar_mode: r.get(at + 17)?,
        events_column_config: r.get(at + 18)?,
        has_seen_product_intro_for: r.get(at + 19)?,
        theme_mode: r.get(at + 20)?,
        hedgehog_config: r.get(at + 21)?,
        allow_sidebar_suggestions: r.get(at + 22)?,
        shortcut_position: r.get(at + 23)?,
        role_at_organization: r.get(at + 24)?,
        passkeys_enabled_for_2fa: r.get(at + 25)?,
        is_2fa_enabled: r.get(at + 26)?,
        memberships: json_list(r, at + 27)?,
        scenes: json_list(r, at + 28)?,
    })
}

fn one(conn: &Connection, filter: &str, param: &dyn rusqlite::ToSql) -> Result<Option<UserRow>> {
    let sql = format!("SELECT {COLUMNS} FROM users u WHERE {filter}");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([param], |r| from_row(r, 0))
        .optional()?)
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<UserRow>> {
    one(conn, "u.id = ?1", &id)
}

pub fn get_active_by_uuid(conn: &Connection, uuid: &str) -> Result<Option<UserRow>> {
    one(conn, "u.uuid = ?1 AND u.is_active = 1", &uuid)
}

/// The active user with this email (case-insensitively), for logins and emailed links.
pub fn find_active_by_email(conn: &Connection, email: &str) -> Result<Option<UserRow>> {
    one(
        conn,
        "u.email_key = ?1 AND u.is_active = 1",
        &email_key(email),
    )
}

/// Finds a user (active or not) by email (case-insensitive) or uuid, as the CLI's USER.
pub fn find(conn: &Connection, email_or_uuid: &str) -> Result<Option<UserRow>> {
    if let Some(u) = one(conn, "u.email_key = ?1", &email_key(email_or_uuid))? {
        return Ok(Some(u));
    }
    one(conn, "u.uuid = ?1", &email_or_uuid.to_ascii_lowercase())
}

/// The form of an email used for uniqueness and lookups.
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// True when another user already has this address (case-insensitively).
pub fn email_taken(conn: &Connection, email: &str, except_id: Option<i64>) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM users WHERE email_key = ?1 AND id IS NOT ?2")?
        .exists(params![email_key(email), except_id])?)
}

/// The stored password hash (a PHC string, or '!…' when unusable).
pub fn password_hash(conn: &Connection, id: i64) -> Result<String> {
    Ok(conn
        .prepare_cached("SELECT password FROM users WHERE id = ?1")?
        .query_row([id], |r| r.get(0))?)
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub password_hash: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub is_staff: bool,
}

/// Inserts a user and returns its id. The caller checks the email is free.
pub fn insert(conn: &Connection, new: &NewUser, now: Micros) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO users (uuid, distinct_id, email, email_key, password, first_name, last_name, \
         is_staff, date_joined) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        crate::auth::new_uuid(),
        crate::auth::random_base62(32),
        new.email.trim(),
        email_key(new.email),
        new.password_hash,
        new.first_name,
        new.last_name,
        new.is_staff,
        now,
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Sets the given columns of one user. Column names come from code, never from input.
pub fn update(conn: &Connection, id: i64, changes: &[(&'static str, SqlValue)]) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let sets: Vec<String> = changes
        .iter()
        .enumerate()
        .map(|(i, (col, _))| format!("{col} = ?{}", i + 2))
        .collect();
    let sql = format!("UPDATE users SET {} WHERE id = ?1", sets.join(", "));
    let mut values: Vec<SqlValue> = vec![SqlValue::Integer(id)];
    values.extend(changes.iter().map(|(_, v)| v.clone()));
    conn.prepare_cached(&sql)?
        .execute(rusqlite::params_from_iter(values))?;
    Ok(())
}

pub fn set_password(conn: &Connection, id: i64, hash: &str) -> Result<()> {
    update(conn, id, &[("password", SqlValue::Text(hash.to_owned()))])
}

pub fn set_active(conn: &Connection, id: i64, active: bool) -> Result<()> {
    update(conn, id, &[("is_active", SqlValue::Integer(active.into()))])
}

/// Hard delete; keys, memberships and the rest cascade.
pub fn delete(conn: &Connection, id: i64) -> Result<()> {
    conn.execute("DELETE FROM users WHERE id = ?1", [id])?;
    Ok(())
}

/// Filters of the list endpoint and `users list`.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub email: Option<String>,
    pub is_staff: Option<bool>,
    /// Restrict to one user (a non-staff caller sees only itself).
    pub only_id: Option<i64>,
    pub include_inactive: bool,
}

impl Filter {
    fn sql(&self) -> (String, Vec<SqlValue>) {
        let mut clauses = Vec::new();
        let mut values = Vec::new();
        if !self.include_inactive {
            clauses.push("u.is_active = 1".to_owned());
        }
        if let Some(email) = &self.email {
            values.push(SqlValue::Text(email_key(email)));
            clauses.push(format!("u.email_key = ?{}", values.len()));
        }
        if let Some(staff) = self.is_staff {
            values.push(SqlValue::Integer(staff.into()));
            clauses.push(format!("u.is_staff = ?{}", values.len()));
        }
        if let Some(id) = self.only_id {
            values.push(SqlValue::Integer(id));
            clauses.push(format!("u.id = ?{}", values.len()));
        }
        let wh = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        (wh, values)
    }
}

/// Total matching users and one page of them, ordered by id. The unfiltered listing of all
/// active users (the staff view) uses the cached ordered ids, so a deep page costs an index
/// seek rather than a scan of every row before it.
pub fn list(
    conn: &Connection,
    cache: &mut super::ReadCache,
    filter: &Filter,
    limit: i64,
    offset: i64,
) -> Result<(i64, Vec<UserRow>)> {
    let unfiltered = filter.email.is_none()
        && filter.is_staff.is_none()
        && filter.only_id.is_none()
        && !filter.include_inactive;
    if unfiltered {
        let ids = cache.active_ids(conn)?;
        let count = ids.len() as i64;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(ids.len());
        let end = start
            .saturating_add(usize::try_from(limit).unwrap_or(0))
            .min(ids.len());
        let (Some(&first), Some(&last)) = (ids.get(start), ids[start..end].last()) else {
            return Ok((count, Vec::new()));
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM users u WHERE u.id BETWEEN ?1 AND ?2 AND u.is_active = 1 \
             ORDER BY u.id"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt
            .query_map([first, last], |r| from_row(r, 0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        return Ok((count, rows));
    }
    let (wh, mut values) = filter.sql();
    let count: i64 = conn
        .prepare_cached(&format!("SELECT count(*) FROM users u {wh}"))?
        .query_row(rusqlite::params_from_iter(values.iter()), |r| r.get(0))?;
    if offset >= count || limit <= 0 {
        return Ok((count, Vec::new()));
    }
    // Seek to the first id of the page through the index, then read only the page's rows.
    values.push(SqlValue::Integer(limit));
    values.push(SqlValue::Integer(offset));
    let n = values.len();
    let sql = format!(
        "SELECT {COLUMNS} FROM users u WHERE u.id IN (SELECT u.id FROM users u {wh} \
         ORDER BY u.id LIMIT ?{} OFFSET ?{n}) ORDER BY u.id",
        n - 1
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(values.iter()), |r| {
            from_row(r, 0)
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((count, rows))
}

/// A user's current organization and team ids.
pub type Current = (Option<i64>, Option<i64>);

/// Builds user objects. Organizations (with their teams and member count) and teams are
/// cached for the builder's lifetime: a page of users mostly shares them, and a builder kept
/// in a `ReadCache` lives until the database next changes.
#[derive(Default)]
pub struct ObjectBuilder {
    orgs: HashMap<i64, Option<CachedOrg>>,
    teams: HashMap<i64, Option<TeamBasic>>,
}

/// An organization with its teams (by id) and active member count.
#[derive(Clone)]
struct CachedOrg {
    row: OrgRow,
    teams: Vec<TeamBasic>,
    member_count: i64,
}

/// Past this many cached entries a builder starts over, to bound memory.
const MAX_CACHED: usize = 10_000;

impl ObjectBuilder {
    fn organization(&mut self, conn: &Connection, id: i64) -> Result<Option<CachedOrg>> {
        if let Some(org) = self.orgs.get(&id) {
            return Ok(org.clone());
        }
        let org = match orgs::get(conn, id)? {
            Some(row) => Some(CachedOrg {
                teams: orgs::teams_of(conn, &row)?,
                member_count: orgs::member_count(conn, id)?,
                row,
            }),
            None => None,
        };
        if self.orgs.len() >= MAX_CACHED {
            self.orgs.clear();
        }
        self.orgs.insert(id, org.clone());
        Ok(org)
    }

    fn team(&mut self, conn: &Connection, id: i64) -> Result<Option<TeamBasic>> {
        if let Some(team) = self.teams.get(&id) {
            return Ok(team.clone());
        }
        let team = orgs::team(conn, id)?;
        if self.teams.len() >= MAX_CACHED {
            self.teams.clear();
        }
        self.teams.insert(id, team.clone());
        Ok(team)
    }

    /// The organization and team a user works in: the stored ones, or when no team is stored,
    /// the deterministic choice of SPEC §10.3 (the current org if set, else the earliest
    /// membership; then its lowest team id).
    pub fn effective_current(&mut self, conn: &Connection, user: &UserRow) -> Result<Current> {
        if user.current_team_id.is_some() {
            return Ok((user.current_organization_id, user.current_team_id));
        }
        let org = user
            .current_organization_id
            .or_else(|| user.memberships.first().map(|(org, _)| *org));
        let team = match org {
            Some(id) => self
                .organization(conn, id)?
                .and_then(|o| o.teams.first().map(|t| t.id)),
            None => None,
        };
        Ok((org, team))
    }

    /// The user object as the API shows it, and the lazily chosen org/team to persist if any.
    pub fn build(
        &mut self,
        conn: &Connection,
        user: UserRow,
        sensitive_session_expires_at: Option<Micros>,
    ) -> Result<(UserOut, Option<Current>)> {
        let (org_id, team_id) = self.effective_current(conn, &user)?;
        let chosen = ((org_id, team_id) != (user.current_organization_id, user.current_team_id))
            .then_some((org_id, team_id));

        let level_in = |id: i64| {
            user.memberships
                .iter()
                .find(|(org, _)| *org == id)
                .map(|(_, level)| *level)
        };
        let organization = match org_id {
            Some(id) => self
                .organization(conn, id)?
                .map(|o| Organization::new(&o.row, level_in(id), o.teams, o.member_count)),
            None => None,
        };
        let team = match team_id {
            Some(id) => self.team(conn, id)?,
            None => None,
        };
        let mut organizations = Vec::with_capacity(user.memberships.len());
        for &(id, level) in &user.memberships {
            if let Some(o) = self.organization(conn, id)? {
                organizations.push(OrganizationBasic::new(&o.row, level));
            }
        }
        let ctx = UserContext {
            team,
            organization,
            organizations,
            scene_personalisation: user.scenes.clone(),
            is_2fa_enabled: user.is_2fa_enabled,
        };
        Ok((
            UserOut::new(user, ctx, sensitive_session_expires_at),
            chosen,
        ))
    }
}

/// Persists a lazily chosen org/team, unless the user picked one in the meantime.
pub fn persist_current(
    conn: &Connection,
    id: i64,
    org: Option<i64>,
    team: Option<i64>,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE users SET current_organization_id = ?2, current_team_id = ?3 \
         WHERE id = ?1 AND current_team_id IS NULL",
    )?
    .execute(params![id, org, team])?;
    Ok(())
}

/// One user object (see `ObjectBuilder::build`).
pub fn object(
    conn: &Connection,
    user: UserRow,
    sensitive_session_expires_at: Option<Micros>,
) -> Result<(UserOut, Option<Current>)> {
    ObjectBuilder::default().build(conn, user, sensitive_session_expires_at)
}

/// Sets the dashboard of a scene for the user in a team (insert or update).
pub fn upsert_scene(
    conn: &Connection,
    user_id: i64,
    team_id: i64,
    scene: &str,
    dashboard: i64,
    now: Micros,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO scene_personalisations (user_id, team_id, scene, dashboard, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (user_id, team_id, scene) DO UPDATE SET dashboard = excluded.dashboard",
    )?
    .execute(params![user_id, team_id, scene, dashboard, now])?;
    Ok(())
}
