//! The `users` table, and the reads that assemble a user's nested context.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::clock::Micros;
use crate::error::Result;
use std::collections::HashMap;

use crate::model::{
    OrgRow, Organization, OrganizationBasic, ScenePersonalisation, TeamBasic, UserContext, UserOut,
    UserRow,
};

use super::orgs;

/// Columns read into a `UserRow`, in `user_from_row`'s order.
pub const COLUMNS: &str = "u.id, u.uuid, u.distinct_id, u.email, u.pending_email, \
    u.is_email_verified, (u.password <> '' AND substr(u.password, 1, 1) <> '!'), u.first_name, \
    u.last_name, u.is_staff, u.is_active, u.date_joined, u.current_organization_id, \
    u.current_team_id, u.notification_settings, u.anonymize_data, u.allow_impersonation, \
    u.toolbar_mode, u.events_column_config, u.has_seen_product_intro_for, u.theme_mode, \
    u.hedgehog_config, u.allow_sidebar_suggestions, u.shortcut_position, \
    u.role_at_organization, u.passkeys_enabled_for_2fa";

/// Number of columns in `COLUMNS`, for queries that select more after them.
pub const COLUMN_COUNT: usize = 26;

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
        crate::auth::random_token(32),
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

/// Total matching users and one page of them, ordered by id.
pub fn list(
    conn: &Connection,
    filter: &Filter,
    limit: i64,
    offset: i64,
) -> Result<(i64, Vec<UserRow>)> {
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

/// The organization and team a user works in: the stored ones, or when none is stored, the
/// deterministic choice of SPEC §10.3 (current org if set, else earliest membership; then its
/// lowest team id).
pub fn effective_current(conn: &Connection, user: &UserRow) -> Result<Current> {
    if user.current_team_id.is_some() {
        return Ok((user.current_organization_id, user.current_team_id));
    }
    let org = match user.current_organization_id {
        Some(id) => Some(id),
        None => conn
            .prepare_cached(
                "SELECT organization_id FROM memberships WHERE user_id = ?1 ORDER BY id LIMIT 1",
            )?
            .query_row([user.id], |r| r.get(0))
            .optional()?,
    };
    let team = match org {
        Some(org) => orgs::first_team_id(conn, org)?,
        None => None,
    };
    Ok((org, team))
}

/// Builds user objects. Organizations and teams are cached for the builder's lifetime: a page
/// of users mostly shares them, and `member_count` counts a whole organization.
#[derive(Default)]
pub struct ObjectBuilder {
    orgs: HashMap<i64, Option<(OrgRow, Vec<TeamBasic>, i64)>>,
    teams: HashMap<i64, Option<TeamBasic>>,
}

impl ObjectBuilder {
    fn organization(
        &mut self,
        conn: &Connection,
        id: i64,
    ) -> Result<Option<(OrgRow, Vec<TeamBasic>, i64)>> {
        if let Some(org) = self.orgs.get(&id) {
            return Ok(org.clone());
        }
        let org = match orgs::get(conn, id)? {
            Some(org) => {
                let teams = orgs::teams_of(conn, &org)?;
                let count = orgs::member_count(conn, id)?;
                Some((org, teams, count))
            }
            None => None,
        };
        self.orgs.insert(id, org.clone());
        Ok(org)
    }

    fn team(&mut self, conn: &Connection, id: i64) -> Result<Option<TeamBasic>> {
        if let Some(team) = self.teams.get(&id) {
            return Ok(team.clone());
        }
        let team = orgs::team(conn, id)?;
        self.teams.insert(id, team.clone());
        Ok(team)
    }

    /// The user object as the API shows it, and the lazily chosen org/team to persist if any.
    pub fn build(
        &mut self,
        conn: &Connection,
        user: UserRow,
        sensitive_session_expires_at: Option<Micros>,
    ) -> Result<(UserOut, Option<Current>)> {
        let (org_id, team_id) = effective_current(conn, &user)?;
        let chosen = ((org_id, team_id) != (user.current_organization_id, user.current_team_id))
            .then_some((org_id, team_id));

        let memberships = orgs::memberships_of(conn, user.id)?;
        let level_in = |id: i64| {
            memberships
                .iter()
                .find(|(o, _)| o.id == id)
                .map(|(_, l)| *l)
        };
        let organization = match org_id {
            Some(id) => self
                .organization(conn, id)?
                .map(|(org, teams, count)| Organization::new(&org, level_in(id), teams, count)),
            None => None,
        };
        let team = match team_id {
            Some(id) => self.team(conn, id)?,
            None => None,
        };
        let organizations = memberships
            .iter()
            .map(|(org, level)| OrganizationBasic::new(org, *level))
            .collect();

        let mut stmt = conn.prepare_cached(
            "SELECT scene, dashboard FROM scene_personalisations WHERE user_id = ?1 ORDER BY id",
        )?;
        let scene_personalisation = stmt
            .query_map([user.id], |r| {
                Ok(ScenePersonalisation {
                    scene: r.get(0)?,
                    dashboard: r.get(1)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;

        let ctx = UserContext {
            team,
            organization,
            organizations,
            scene_personalisation,
            is_2fa_enabled: super::two_factor::has_device(conn, user.id)?,
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
