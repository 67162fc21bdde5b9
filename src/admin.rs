//! The use cases behind the admin CLI: organizations, teams, memberships, users, personal API
//! keys, first-run bootstrap, seeding, backup, integrity checks and migration status.
//!
//! Each function takes the `Db` (or, for the commands that must not migrate, a path) and returns a
//! typed result that `cli` prints. Writes go through `db.write_blocking`, so the CLI shares the
//! server's single-writer transaction discipline and never meets "database is locked" from it.
//! Input that can be refused without the database (`validate_*`, `parse_scopes`) is exposed
//! separately so the CLI can refuse it before opening the file (exit 2).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};
use serde::Serialize;

use crate::api::fields;
use crate::api::keys as key_api;
use crate::auth::{self, password};
use crate::clock::{Micros, iso};
use crate::db::{self, Db, keys, orgs, sessions, two_factor, users};
use crate::error::{Error, Result};
use crate::model::{ApiKeyOut, OrgRow, OrgSummary, TeamBasic, UserOut, UserRow};

/// Membership levels, as PostHog stores them.
pub const LEVEL_MEMBER: i64 = 1;
pub const LEVEL_ADMIN: i64 = 8;
pub const LEVEL_OWNER: i64 = 15;

/// The longest slug we derive or accept.
const SLUG_MAX_LENGTH: usize = 48;
/// PostHog's `Organization.name` and `Team.name` limits.
const ORG_NAME_MAX_LENGTH: usize = 64;
const TEAM_NAME_MAX_LENGTH: usize = 200;
/// Django's `first_name` / `last_name` limit.
const NAME_MAX_LENGTH: usize = 150;
const PASSWORD_MAX_LENGTH: usize = 128;
/// Rows per write transaction when seeding: large, because every commit rewrites the leaf
/// pages of the randomly keyed indexes (distinct_id) that the batch touched; yet one batch
/// holds the write lock for only about 3 s, so a running server's writes wait, never fail.
const SEED_BATCH: u64 = 250_000;
/// The writer's page cache while seeding, in KiB as `PRAGMA cache_size` takes it (negative).
const SEED_CACHE_KIB: i64 = -262_144;
const SEED_DEFAULT_ORG: &str = "Example Organization";
const SEED_DEFAULT_TEAM: &str = "Default project";
/// Same patience as the server's connections, so a backup or check racing the server waits.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// An error whose `detail` is the whole message the CLI prints.
fn refused(detail: impl Into<String>) -> Error {
    Error::non_field("invalid", detail)
}

fn no_match(what: &str, given: &str) -> Error {
    Error::non_field("not_found", format!("no {what} matches \"{given}\""))
}

fn blank_or_too_long(value: &str, what: &str, max: usize) -> Result<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(refused(format!("{what}: This field may not be blank.")));
    }
    if value.chars().count() > max {
        return Err(refused(format!(
            "{what}: Ensure this field has no more than {max} characters."
        )));
    }
    Ok(value.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Lookups
// ---------------------------------------------------------------------------------------------

/// USER as the CLI takes it: an email (case-insensitive) or a uuid.
fn find_user(conn: &Connection, who: &str) -> Result<UserRow> {
    users::find(conn, who.trim())?.ok_or_else(|| no_match("user", who))
}

/// ORG as the CLI takes it: a uuid or a slug.
fn find_org(conn: &Connection, org: &str) -> Result<OrgRow> {
    orgs::find(conn, org.trim())?.ok_or_else(|| no_match("organization", org))
}

/// The user object as the user sees it at `GET @me`, plus `is_active` (SPEC §10.6). A lazily
/// chosen current org/team is shown but not persisted: the server persists it on first use.
fn user_out(conn: &Connection, row: UserRow) -> Result<UserOut> {
    build_user_out(&mut users::ObjectBuilder::default(), conn, row)
}

fn build_user_out(
    builder: &mut users::ObjectBuilder,
    conn: &Connection,
    row: UserRow,
) -> Result<UserOut> {
    let is_active = row.is_active;
    let (out, _chosen) = builder.build(conn, row, None)?;
    Ok(UserOut {
        is_active: Some(is_active),
        ..out
    })
}

// ---------------------------------------------------------------------------------------------
// Organizations and teams
// ---------------------------------------------------------------------------------------------

/// Django's `slugify` for ASCII: lowercase letters, digits and `_` kept, every run of other
/// characters becomes one `-`, leading and trailing `-`/`_` trimmed, at most 48 characters.
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug: String = slug
        .trim_matches(['-', '_'])
        .chars()
        .take(SLUG_MAX_LENGTH)
        .collect();
    slug.trim_end_matches(['-', '_']).to_owned()
}

/// An explicit `--slug`: `[-a-zA-Z0-9_]+`, at most 48 characters.
pub fn validate_slug(slug: &str) -> Result<()> {
    let valid_chars = slug
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if slug.is_empty() || !valid_chars {
        return Err(refused(
            "slug: Enter a valid \"slug\" consisting of letters, numbers, underscores or hyphens.",
        ));
    }
    if slug.chars().count() > SLUG_MAX_LENGTH {
        return Err(refused(format!(
            "slug: Ensure this field has no more than {SLUG_MAX_LENGTH} characters."
        )));
    }
    Ok(())
}

/// Checks an organization name and, without `--slug`, that a slug can be derived from it.
/// Returns the trimmed name.
pub fn validate_org(name: &str, slug: Option<&str>) -> Result<String> {
    let name = blank_or_too_long(name, "name", ORG_NAME_MAX_LENGTH)?;
    match slug {
        Some(slug) => validate_slug(slug)?,
        None if slugify(&name).is_empty() => {
            return Err(refused("cannot derive a slug from this name; pass --slug"));
        }
        None => {}
    }
    Ok(name)
}

/// `base`, or `base-2`, `base-3`, … : the first slug no organization has, within 48 characters.
fn free_slug(conn: &Connection, base: &str) -> Result<String> {
    if !orgs::slug_taken(conn, base)? {
        return Ok(base.to_owned());
    }
    for n in 2u64.. {
        let suffix = format!("-{n}");
        let stem: String = base
            .chars()
            .take(SLUG_MAX_LENGTH.saturating_sub(suffix.len()))
            .collect();
        let candidate = format!("{}{suffix}", stem.trim_end_matches(['-', '_']));
        if !orgs::slug_taken(conn, &candidate)? {
            return Ok(candidate);
        }
    }
    Err(Error::internal("no free slug"))
}

/// Creates an organization. A derived slug is made unique; an explicit one that is taken is
/// refused.
pub fn create_org(db: &Db, name: &str, slug: Option<&str>, now: Micros) -> Result<OrgRow> {
    let name = validate_org(name, slug)?;
    let explicit = slug.map(str::to_owned);
    db.write_blocking(move |conn| {
        let slug = match explicit {
            Some(slug) if orgs::slug_taken(conn, &slug)? => {
                return Err(refused(format!(
                    "slug: Organization with this slug already exists: \"{slug}\""
                )));
            }
            Some(slug) => slug,
            None => free_slug(conn, &slugify(&name))?,
        };
        orgs::insert(conn, &name, &slug, now)
    })
}

pub fn list_orgs(db: &Db) -> Result<Vec<OrgRow>> {
    db.read(orgs::list)
}

/// Returns the trimmed team name.
pub fn validate_team_name(name: &str) -> Result<String> {
    blank_or_too_long(name, "name", TEAM_NAME_MAX_LENGTH)
}

pub fn create_team(db: &Db, org: &str, name: &str, now: Micros) -> Result<TeamBasic> {
    let name = validate_team_name(name)?;
    let org = org.to_owned();
    db.write_blocking(move |conn| {
        let org = find_org(conn, &org)?;
        orgs::insert_team(conn, &org, &name, now)
    })
}

/// Every team, or the teams of one organization, by id.
pub fn list_teams(db: &Db, org: Option<&str>) -> Result<Vec<TeamBasic>> {
    db.read(|conn| {
        let org_id = match org {
            Some(org) => Some(find_org(conn, org)?.id),
            None => None,
        };
        orgs::list_teams(conn, org_id)
    })
}

// ---------------------------------------------------------------------------------------------
// Memberships
// ---------------------------------------------------------------------------------------------

/// A membership as the CLI prints it (SPEC §10.6).
#[derive(Debug, Clone, Serialize)]
pub struct Membership {
    /// The organization's uuid.
    pub organization: String,
    /// The user's uuid.
    pub user: String,
    pub email: String,
    pub level: i64,
    pub joined_at: String,
}

/// The answer to `members remove`.
#[derive(Debug, Clone, Serialize)]
pub struct RemovedMembership {
    pub deleted: bool,
    pub organization: String,
    pub user: String,
    pub email: String,
}

/// Adds a membership, or changes the level of an existing one. A user without a current
/// organization gets this one (and its first team) as current.
pub fn add_member(db: &Db, org: &str, who: &str, level: i64, now: Micros) -> Result<Membership> {
    let (org, who) = (org.to_owned(), who.to_owned());
    db.write_blocking(move |conn| {
        let org = find_org(conn, &org)?;
        let user = find_user(conn, &who)?;
        let joined_at = orgs::add_member(conn, user.id, org.id, level, now)?;
        Ok(Membership {
            organization: org.uuid,
            user: user.uuid,
            email: user.email,
            level,
            joined_at: iso(joined_at),
        })
    })
}

pub fn remove_member(db: &Db, org: &str, who: &str) -> Result<RemovedMembership> {
    let (org, who) = (org.to_owned(), who.to_owned());
    db.write_blocking(move |conn| {
        let org = find_org(conn, &org)?;
        let user = find_user(conn, &who)?;
        if !orgs::remove_member(conn, user.id, org.id)? {
            return Err(refused(format!(
                "{} is not a member of {}",
                user.email, org.slug
            )));
        }
        Ok(RemovedMembership {
            deleted: true,
            organization: org.uuid,
            user: user.uuid,
            email: user.email,
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------------

/// What `users create` takes, besides the password.
#[derive(Debug, Clone, Default)]
pub struct NewUserInput {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub is_staff: bool,
    /// ORG (uuid or slug) to join, at `level`.
    pub org: Option<String>,
    pub level: i64,
}

/// The checks that need no database: a valid address (Django's `EmailValidator`) within 254
/// characters, names within 150.
pub fn validate_new_user(input: &NewUserInput) -> Result<()> {
    let email = input.email.trim();
    if email.is_empty() {
        return Err(refused("email: This field may not be blank."));
    }
    if email.chars().count() > fields::EMAIL_MAX_LENGTH {
        return Err(refused(format!(
            "email: Ensure this field has no more than {} characters.",
            fields::EMAIL_MAX_LENGTH
        )));
    }
    if !fields::is_valid_email(email) {
        return Err(refused("Enter a valid email address."));
    }
    for (what, value) in [
        ("first_name", &input.first_name),
        ("last_name", &input.last_name),
    ] {
        if value.trim().chars().count() > NAME_MAX_LENGTH {
            return Err(refused(format!(
                "{what}: Ensure this field has no more than {NAME_MAX_LENGTH} characters."
            )));
        }
    }
    Ok(())
}

/// The password rules of SPEC §4.2: at least 8, at most 128 characters, zxcvbn score ≥ 3.
/// zxcvbn runs without user inputs, as upstream and the API do, so the CLI and the API accept
/// the same passwords.
pub fn check_password(password: &str) -> Result<()> {
    if password.chars().count() > PASSWORD_MAX_LENGTH {
        return Err(refused(format!(
            "Ensure this field has no more than {PASSWORD_MAX_LENGTH} characters."
        )));
    }
    fields::check_password_strength(password, &[])
}

/// Creates a user. Without a password the user has no usable one. With `org` the user joins it,
/// and that org and its first team become current.
pub fn create_user(
    db: &Db,
    input: &NewUserInput,
    password: Option<&str>,
    now: Micros,
) -> Result<UserOut> {
    validate_new_user(input)?;
    // Hashing is slow on purpose; it must not hold the writer.
    let hash = match password {
        Some(p) => {
            check_password(p)?;
            password::hash(p)?
        }
        None => password::unusable(),
    };
    let input = input.clone();
    db.write_blocking(move |conn| {
        if users::email_taken(conn, &input.email, None)? {
            return Err(refused("user with this email address already exists."));
        }
        let org = match &input.org {
            Some(org) => Some(find_org(conn, org)?),
            None => None,
        };
        let id = users::insert(
            conn,
            &users::NewUser {
                email: &input.email,
                password_hash: &hash,
                first_name: input.first_name.trim(),
                last_name: input.last_name.trim(),
                is_staff: input.is_staff,
            },
            now,
        )?;
        if let Some(org) = org {
            orgs::add_member(conn, id, org.id, input.level, now)?;
        }
        let row = users::get(conn, id)?.ok_or_else(|| Error::internal("new user vanished"))?;
        user_out(conn, row)
    })
}

pub fn show_user(db: &Db, who: &str) -> Result<UserOut> {
    db.read(|conn| {
        let row = find_user(conn, who)?;
        user_out(conn, row)
    })
}

/// Calls `each` with every user (inactive ones included), by id, optionally only one address
/// or only staff. Streams, so listing a million seeded users needs no million-element Vec.
pub fn list_users(
    db: &Db,
    email: Option<&str>,
    staff_only: bool,
    mut each: impl FnMut(UserOut) -> Result<()>,
) -> Result<()> {
    let email_key = email
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(users::email_key);
    db.read(|conn| {
        let sql = format!(
            "SELECT {} FROM users u WHERE (?1 IS NULL OR u.email_key = ?1) \
             AND (?2 = 0 OR u.is_staff = 1) ORDER BY u.id",
            users::COLUMNS
        );
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query(params![email_key, staff_only])?;
        let mut builder = users::ObjectBuilder::default();
        while let Some(r) = rows.next()? {
            let row = users::from_row(r, 0)?;
            each(build_user_out(&mut builder, conn, row)?)?;
        }
        Ok(())
    })
}

/// Applies the password rules, then stores the new hash. The user's sessions (once the table
/// exists) end, as Django's session-hash check would end them.
pub fn set_password(db: &Db, who: &str, password: &str) -> Result<UserOut> {
    check_password(password)?;
    let hash = password::hash(password)?;
    let who = who.to_owned();
    db.write_blocking(move |conn| {
        let user = find_user(conn, &who)?;
        users::set_password(conn, user.id, &hash)?;
        sessions::delete_for_user(conn, user.id, None)?;
        let row = users::get(conn, user.id)?.ok_or_else(|| no_match("user", &who))?;
        user_out(conn, row)
    })
}

/// Activates or deactivates a user. Deactivating ends its sessions but keeps its keys, which
/// work again after activation.
pub fn set_active(db: &Db, who: &str, active: bool) -> Result<UserOut> {
    let who = who.to_owned();
    db.write_blocking(move |conn| {
        let user = find_user(conn, &who)?;
        users::set_active(conn, user.id, active)?;
        if !active {
            sessions::delete_for_user(conn, user.id, None)?;
        }
        let row = users::get(conn, user.id)?.ok_or_else(|| no_match("user", &who))?;
        user_out(conn, row)
    })
}

/// Deletes a user and, by cascade, everything it owns. Returns the user's id.
pub fn delete_user(db: &Db, who: &str) -> Result<i64> {
    let who = who.to_owned();
    db.write_blocking(move |conn| {
        let user = find_user(conn, &who)?;
        users::delete(conn, user.id)?;
        Ok(user.id)
    })
}

/// The lost-phone escape hatch: removes the user's TOTP devices and backup codes. The tables
/// arrive with a later migration; before that there is nothing to remove.
pub fn reset_2fa(db: &Db, who: &str) -> Result<UserOut> {
    let who = who.to_owned();
    db.write_blocking(move |conn| {
        let user = find_user(conn, &who)?;
        two_factor::delete_all(conn, user.id)?;
        user_out(conn, user)
    })
}

// ---------------------------------------------------------------------------------------------
// Personal API keys
// ---------------------------------------------------------------------------------------------

/// `--scopes`: comma-separated and trimmed, then the API's scope rules (SPEC §10.3).
pub fn parse_scopes(text: &str) -> Result<Vec<String>> {
    key_api::check_scopes(text.split(',').map(str::trim).filter(|s| !s.is_empty()))
}

/// The API's label rule; returns the trimmed label. The message names the field, since the
/// CLI has no `attr` to show.
pub fn validate_key_label(label: &str) -> Result<String> {
    key_api::validate_label(&serde_json::Value::String(label.to_owned()))
        .map_err(|e| refused(format!("label: {}", e.detail())))
}

/// Creates a personal API key with the API's rules (the per-user limit included); the result
/// is the only place its value ever appears.
pub fn create_key(
    db: &Db,
    who: &str,
    label: &str,
    scopes: Vec<String>,
    now: Micros,
) -> Result<ApiKeyOut> {
    let new = key_api::NewKey {
        label: validate_key_label(label)?,
        scopes: key_api::check_scopes(scopes.iter().map(String::as_str))?,
        scoping: keys::Scoping::default(),
    };
    let who = who.to_owned();
    db.write_blocking(move |conn| {
        let user = find_user(conn, &who)?;
        key_api::insert_key(conn, user.id, &new, now)
    })
}

/// Keys of one user, or all keys, newest first; never the secret.
pub fn list_keys(db: &Db, who: Option<&str>) -> Result<Vec<ApiKeyOut>> {
    db.read(|conn| {
        let user_id = match who {
            Some(who) => Some(find_user(conn, who)?.id),
            None => None,
        };
        Ok(keys::list(conn, user_id)?
            .iter()
            .map(|k| k.to_out(None))
            .collect())
    })
}

/// Deletes a key; the server refuses it from the very next request.
pub fn revoke_key(db: &Db, id: &str) -> Result<()> {
    let id = id.trim().to_owned();
    db.write_blocking(move |conn| {
        if keys::delete(conn, &id)? {
            Ok(())
        } else {
            Err(no_match("key", &id))
        }
    })
}

// ---------------------------------------------------------------------------------------------
// First run and development data
// ---------------------------------------------------------------------------------------------

/// On a database with no users at all, creates staff `admin@localhost` (no usable password)
/// and a `*` key labelled `bootstrap`, in one transaction. Returns the key when it made one.
/// Blocking: the server calls it through `spawn_blocking`.
pub fn bootstrap(db: &Db, now: Micros) -> Result<Option<String>> {
    db.write_blocking(move |conn| {
        let empty: bool =
            conn.query_row("SELECT NOT EXISTS (SELECT 1 FROM users)", [], |r| r.get(0))?;
        if !empty {
            return Ok(None);
        }
        let id = users::insert(
            conn,
            &users::NewUser {
                email: "admin@localhost",
                password_hash: &password::unusable(),
                first_name: "",
                last_name: "",
                is_staff: true,
            },
            now,
        )?;
        let key = crate::api::keys::NewKey {
            label: "bootstrap".into(),
            scopes: vec!["*".into()],
            scoping: keys::Scoping::default(),
        };
        Ok(crate::api::keys::insert_key(conn, id, &key, now)?.value)
    })
}

/// The answer to `seed`.
#[derive(Debug, Clone, Serialize)]
pub struct SeedReport {
    pub organization: OrgSummary,
    pub team: TeamBasic,
    pub created: u64,
    pub existing: u64,
}

/// Ensures the org (found by the slug of `org_name`) and a team, then adds users
/// `user1@example.com` … `user<n>@example.com` as members with that org and team current.
/// Addresses that exist are skipped, so re-running adds only the missing ones. A password is
/// hashed once and shared by every new user: seeding a million users takes seconds.
pub fn seed(
    db: &Db,
    n: u64,
    org_name: Option<&str>,
    password: Option<&str>,
    now: Micros,
) -> Result<SeedReport> {
    let name = validate_org(org_name.unwrap_or(SEED_DEFAULT_ORG), None)?;
    let hash = match password {
        Some(p) => Some(password::hash(p)?),
        None => None,
    };
    let (org, team) = db.write_blocking(move |conn| {
        let slug = slugify(&name);
        let org = match orgs::find(conn, &slug)? {
            Some(org) => org,
            None => orgs::insert(conn, &name, &slug, now)?,
        };
        let team = match orgs::first_team_id(conn, org.id)? {
            Some(id) => orgs::team(conn, id)?.ok_or_else(|| Error::internal("team vanished"))?,
            None => orgs::insert_team(conn, &org, SEED_DEFAULT_TEAM, now)?,
        };
        Ok((org, team))
    })?;
    let (mut created, mut existing) = (0, 0);
    let mut first = 1;
    while first <= n {
        let last = n.min(first + SEED_BATCH - 1);
        let (org_id, team_id, hash) = (org.id, team.id, hash.clone());
        let (c, e) = db.write_blocking(move |conn| {
            // Random `distinct_id`s and addresses land all over their indexes; with SQLite's
            // default 2 MiB page cache a batch keeps spilling pages to the WAL mid-transaction.
            let cache: i64 = conn.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
            conn.pragma_update(None, "cache_size", SEED_CACHE_KIB)?;
            let counts =
                insert_seed_users(conn, first, last, org_id, team_id, hash.as_deref(), now);
            conn.pragma_update(None, "cache_size", cache)?;
            counts
        })?;
        created += c;
        existing += e;
        first = last + 1;
    }
    Ok(SeedReport {
        organization: OrgSummary::from(&org),
        team,
        created,
        existing,
    })
}

/// Inserts `user<first>` … `user<last>` with one prepared statement per table. Returns
/// (created, existing).
fn insert_seed_users(
    conn: &Connection,
    first: u64,
    last: u64,
    org_id: i64,
    team_id: i64,
    hash: Option<&str>,
    now: Micros,
) -> Result<(u64, u64)> {
    // The address is already lowercase, so it is its own email_key.
    let mut insert_user = conn.prepare_cached(
        "INSERT INTO users (uuid, distinct_id, email, email_key, password, date_joined, \
         current_organization_id, current_team_id) VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (email_key) DO NOTHING",
    )?;
    let mut insert_member = conn.prepare_cached(
        "INSERT INTO memberships (organization_id, user_id, level, joined_at) \
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    // Count the new (active) members once at the end instead of one trigger run per row
    // (migration V4); all of it is this one transaction, so no reader sees it half done.
    conn.execute("INSERT INTO bulk_load (id) VALUES (1)", [])?;
    let (mut created, mut existing) = (0, 0);
    for i in first..=last {
        let unusable;
        let password = match hash {
            Some(h) => h,
            None => {
                unusable = password::unusable();
                &unusable
            }
        };
        let inserted = insert_user.execute(params![
            auth::new_uuid(),
            auth::random_base62(32),
            format!("user{i}@example.com"),
            password,
            now,
            org_id,
            team_id,
        ])?;
        if inserted == 0 {
            existing += 1;
            continue;
        }
        insert_member.execute(params![org_id, conn.last_insert_rowid(), LEVEL_MEMBER, now])?;
        created += 1;
    }
    conn.execute(
        "UPDATE organizations SET member_count = member_count + ?2 WHERE id = ?1",
        params![org_id, i64::try_from(created).unwrap_or(i64::MAX)],
    )?;
    conn.execute("DELETE FROM bulk_load", [])?;
    Ok((created, existing))
}

// ---------------------------------------------------------------------------------------------
// Backup, check, migrations: these never migrate
// ---------------------------------------------------------------------------------------------

/// Opens an existing database file without creating it and without running migrations.
fn open_existing(path: &Path) -> Result<Connection> {
    if !path.is_file() {
        return Err(refused(format!("no database at {}", path.display())));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

fn integrity_check(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// The answer to `backup`.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub path: String,
    pub bytes: u64,
    pub integrity_check: String,
}

/// A consistent hot copy of `db_path` at `dest`: `VACUUM INTO` a private temporary file next to
/// `dest`, integrity-check and fsync it, rename it over `dest`, fsync the directory. `dest` is
/// never seen half-written, and an existing `dest` is replaced only with `force`.
///
/// `VACUUM INTO` rather than the online backup API: it copies inside one read transaction, so
/// under WAL it sees one snapshot and never blocks the server's writer. The backup API, stepped
/// in increments from this separate process, restarts whenever the server commits meanwhile, so
/// under steady write load it may never finish.
pub fn backup(db_path: &Path, dest: &Path, force: bool) -> Result<BackupReport> {
    if dest.is_dir() {
        return Err(refused(format!("{} is a directory", dest.display())));
    }
    if dest.symlink_metadata().is_ok() && !force {
        return Err(refused(format!(
            "{} already exists; pass --force to overwrite it",
            dest.display()
        )));
    }
    let source = open_existing(db_path)?;
    // Renaming a copy over the live file would leave a running server writing to a deleted one.
    if let (Ok(a), Ok(b)) = (db_path.canonicalize(), dest.canonicalize())
        && a == b
    {
        return Err(refused(format!(
            "{} is the database itself",
            dest.display()
        )));
    }
    let file_name = dest
        .file_name()
        .ok_or_else(|| refused(format!("{} is not a file name", dest.display())))?;
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    // Absolute, so SQLite never reads the temporary name as a `file:` URI.
    let dir = dir.canonicalize().map_err(|e| {
        refused(format!(
            "cannot write {}: {}: {e}",
            dest.display(),
            dir.display()
        ))
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        auth::random_base62(8)
    ));
    let tmp_text = tmp
        .to_str()
        .ok_or_else(|| refused(format!("{} is not valid UTF-8", dest.display())))?
        .to_owned();
    // Created empty with mode 0600 first (VACUUM INTO accepts an empty file), so the copy is
    // never readable by others, not even for a moment.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| refused(format!("cannot create {}: {e}", tmp.display())))?;
    let written = (|| {
        source.execute("VACUUM INTO ?1", [&tmp_text])?;
        drop(source);
        let copy = Connection::open_with_flags(
            &tmp,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let check = integrity_check(&copy)?;
        drop(copy);
        if check != ["ok"] {
            return Err(refused(format!(
                "the copy failed its integrity check: {}",
                check.join("; ")
            )));
        }
        let file = File::open(&tmp)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.sync_all()?;
        std::fs::rename(&tmp, dest)?;
        File::open(&dir)?.sync_all()?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(BackupReport {
        path: dest.display().to_string(),
        bytes: std::fs::metadata(dest)?.len(),
        integrity_check: "ok".to_owned(),
    })
}

/// One row of `PRAGMA foreign_key_check`.
#[derive(Debug, Clone, Serialize)]
pub struct ForeignKeyProblem {
    pub table: String,
    pub rowid: Option<i64>,
    pub parent: String,
    pub fkid: i64,
}

/// The answer to `check`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub ok: bool,
    pub integrity_check: Vec<String>,
    pub foreign_key_check: Vec<ForeignKeyProblem>,
}

/// `PRAGMA integrity_check` and `PRAGMA foreign_key_check`, read-only.
pub fn check(db_path: &Path) -> Result<CheckReport> {
    let conn = open_existing(db_path)?;
    conn.pragma_update(None, "query_only", "ON")?;
    let integrity = integrity_check(&conn)?;
    let mut stmt = conn.prepare("PRAGMA foreign_key_check")?;
    let problems = stmt
        .query_map([], |r| {
            Ok(ForeignKeyProblem {
                table: r.get(0)?,
                rowid: r.get(1)?,
                parent: r.get(2)?,
                fkid: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(CheckReport {
        ok: integrity == ["ok"] && problems.is_empty(),
        integrity_check: integrity,
        foreign_key_check: problems,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct MigrationOut {
    pub version: i64,
    pub name: String,
}

/// The answer to `migrate [--status]`.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationReport {
    pub applied: Vec<MigrationOut>,
    pub pending: Vec<MigrationOut>,
}

/// Applies pending migrations, then reports.
pub fn migrate(db_path: &Path) -> Result<MigrationReport> {
    db::migrate(db_path)?;
    migration_status(db_path)
}

/// Applied and pending migrations, changing nothing.
pub fn migration_status(db_path: &Path) -> Result<MigrationReport> {
    let status = db::migration_status(db_path)?;
    let out = |list: Vec<(i64, String)>| {
        list.into_iter()
            .map(|(version, name)| MigrationOut { version, name })
            .collect()
    };
    Ok(MigrationReport {
        applied: out(status.applied),
        pending: out(status.pending),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugify_follows_django() {
        assert_eq!(slugify("Example Organization"), "example-organization");
        assert_eq!(slugify("  Hello,   World!  "), "hello-world");
        assert_eq!(slugify("snake_case name"), "snake_case-name");
        assert_eq!(slugify("--x--"), "x");
        assert_eq!(slugify("!!!"), "");
        assert_eq!(slugify(&"a".repeat(60)).len(), 48);
        assert_eq!(slugify(&format!("{} b", "a".repeat(47))), "a".repeat(47));
    }

    #[test]
    fn slug_pattern() {
        assert!(validate_slug("a-b_C9").is_ok());
        assert!(validate_slug("a b").is_err());
        assert!(validate_slug("").is_err());
        assert!(validate_slug(&"a".repeat(49)).is_err());
    }

    #[test]
    fn scopes_are_checked_and_deduplicated() {
        assert_eq!(
            parse_scopes(" user:read , user:read,*").ok(),
            Some(vec!["user:read".to_owned(), "*".to_owned()])
        );
        let empty = parse_scopes(" , ").err().map(|e| e.detail());
        assert_eq!(empty.as_deref(), Some("This list may not be empty."));
        let bad = parse_scopes("user:read,team:read")
            .err()
            .map(|e| e.detail());
        assert_eq!(bad.as_deref(), Some("Invalid scope: team:read"));
    }
}
