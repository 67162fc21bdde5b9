//! `/api/personal_api_keys/` (SPEC §10.3, reference §11), and the key rules the admin CLI
//! shares with it: label, scopes, team and organization scoping, and the per-user limit.
//!
//! Routing has already refused keys on every route but the two reads (`@current` and `{id}`),
//! and enforced CSRF and the recent-login rule for sessions. Each handler that changes a key
//! does its lookup, validation and write in one write transaction, so what it checks (the
//! owner, team memberships, the key count) is still true when it commits.

use std::collections::HashSet;

use hyper::{Response, StatusCode};
use rusqlite::Connection;
use serde_json::{Map, Value};

use super::{AuthKind, Caller, fields};
use crate::app::App;
use crate::auth::api_key;
use crate::clock::Micros;
use crate::db::keys::{self, KeyRow, Scoping};
use crate::db::orgs;
use crate::error::{Error, Result};
use crate::http::body::{self, Body};
use crate::http::no_content;
use crate::model::ApiKeyOut;

/// The model's `label` column limit.
const LABEL_MAX_LENGTH: usize = 40;
const MAX_KEYS_PER_USER: i64 = 10;
/// The reference's message for one key more than `MAX_KEYS_PER_USER`.
const TOO_MANY_KEYS: &str =
    "You can only have 10 personal API keys. Remove an existing key before creating a new one.";
const NO_KEY_ACCESS: &str = "This action does not support personal API key access";
const TEAMS_NOT_MEMBER: &str = "You must be a member of all teams that you are scoping the key to.";
const ORGS_NOT_MEMBER: &str =
    "You must be a member of all organizations that you are scoping the key to.";

// ---------------------------------------------------------------------------------------------
// Rules shared with the CLI
// ---------------------------------------------------------------------------------------------

/// A validated new key.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub label: String,
    pub scopes: Vec<String>,
    pub scoping: Scoping,
}

/// `label`: a DRF `CharField(max_length=40)`, required and not blank.
pub fn validate_label(v: &Value) -> Result<String> {
    fields::string("label", v, LABEL_MAX_LENGTH, false)
}

/// The scope rules on already-split strings: not empty, each one known, duplicates removed
/// (first occurrence kept). The known set is `api_key::SCOPES`.
pub fn check_scopes<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>> {
    api_key::parse_scopes(items).map_err(|bad| match bad {
        None => Error::field("scopes", "empty", "This list may not be empty."),
        Some(scope) => Error::field("scopes", "invalid_input", format!("Invalid scope: {scope}")),
    })
}

/// Stores a new key for `user_id` after checking the per-user limit in the same transaction
/// (so two concurrent creates cannot make an 11th). The result is the only place the value
/// ever appears.
pub fn insert_key(conn: &Connection, user_id: i64, new: &NewKey, now: Micros) -> Result<ApiKeyOut> {
    if keys::count_for_user(conn, user_id)? >= MAX_KEYS_PER_USER {
        return Err(Error::non_field("invalid_input", TOO_MANY_KEYS));
    }
    let value = api_key::generate();
    let row = keys::insert(
        conn,
        user_id,
        &new.label,
        &value,
        &new.scopes,
        &new.scoping,
        now,
    )?;
    Ok(row.to_out(Some(value)))
}

// ---------------------------------------------------------------------------------------------
// Body fields, in upstream's serializer order: label, scopes, scoped_teams, scoped_organizations
// ---------------------------------------------------------------------------------------------

fn required<'a>(body: &'a Map<String, Value>, attr: &str) -> Result<&'a Value> {
    body.get(attr)
        .ok_or_else(|| Error::field(attr, "required", "This field is required."))
}

/// DRF `ListField`: null and non-lists are refused before the items are looked at.
fn list_field<'a>(attr: &str, v: &'a Value) -> Result<&'a [Value]> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Null => Err(Error::field(attr, "null", "This field may not be null.")),
        other => Err(Error::field(
            attr,
            "not_a_list",
            format!(
                "Expected a list of items but got type \"{}\".",
                fields::python_type_name(other)
            ),
        )),
    }
}

/// `scopes`: a list of strings (an item's error is reported as `scopes__<index>`, as DRF's
/// nested errors are), then the scope rules.
fn scopes(v: &Value) -> Result<Vec<String>> {
    let items = list_field("scopes", v)?
        .iter()
        .enumerate()
        .map(|(i, item)| fields::string(&format!("scopes__{i}"), item, usize::MAX, false))
        .collect::<Result<Vec<_>>>()?;
    check_scopes(items.iter().map(String::as_str))
}

/// `scoped_teams`: null or a list of team ids, each of a team in one of the user's
/// organizations.
fn scoped_teams(conn: &Connection, user_id: i64, v: &Value) -> Result<Option<Vec<i64>>> {
    if v.is_null() {
        return Ok(None);
    }
    let ids = list_field("scoped_teams", v)?
        .iter()
        .enumerate()
        .map(|(i, item)| integer(&format!("scoped_teams__{i}"), item))
        .collect::<Result<Vec<_>>>()?;
    let not_member = || Error::field("scoped_teams", "invalid_input", TEAMS_NOT_MEMBER);
    let mut seen = HashSet::new();
    for &team in &ids {
        // Upstream compares how many teams it found with how many ids it was given, so a
        // repeated id fails too.
        if !seen.insert(team) {
            return Err(not_member());
        }
        let org = orgs::team_org(conn, team)?.ok_or_else(not_member)?;
        if !orgs::is_member(conn, user_id, org)? {
            return Err(not_member());
        }
    }
    Ok(Some(ids))
}

/// `scoped_organizations`: null or a list of uuids of the user's organizations, stored as
/// given. As upstream, every item is parsed before membership is checked, so a malformed uuid
/// anywhere in the list wins.
fn scoped_organizations(conn: &Connection, user_id: i64, v: &Value) -> Result<Option<Vec<String>>> {
    if v.is_null() {
        return Ok(None);
    }
    let given = list_field("scoped_organizations", v)?
        .iter()
        .enumerate()
        .map(|(i, item)| {
            fields::string(
                &format!("scoped_organizations__{i}"),
                item,
                usize::MAX,
                false,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let parsed = given
        .iter()
        .map(|s| python_uuid(s))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            Error::field(
                "scoped_organizations",
                "invalid_input",
                "Invalid organization UUID",
            )
        })?;
    let mine: HashSet<String> = orgs::memberships_of(conn, user_id)?
        .into_iter()
        .map(|(org, _level)| org.uuid.to_ascii_lowercase())
        .collect();
    if parsed.iter().any(|uuid| !mine.contains(uuid)) {
        return Err(Error::field(
            "scoped_organizations",
            "invalid_input",
            ORGS_NOT_MEMBER,
        ));
    }
    Ok(Some(given))
}

/// Python's `uuid.UUID(text)`: `urn:` and `uuid:` dropped, braces stripped from the ends,
/// hyphens removed anywhere, then exactly 32 hex digits. Returns the canonical lowercase
/// hyphenated form, which is how organization uuids are stored.
fn python_uuid(text: &str) -> Option<String> {
    let hex = text.replace("urn:", "").replace("uuid:", "");
    let hex = hex.trim_matches(['{', '}']).replace('-', "");
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

/// DRF `IntegerField`: integers, integral floats and numeric strings (surrounding whitespace
/// and a trailing `.0…` allowed, as DRF's `int(re.sub(r'\.0*\s*$', '', str(v)))`); null is
/// `null`; anything else "A valid integer is required.". Python's `str()` writes floats of
/// 1e16 and more in exponent form, which `int()` refuses, so those are refused here too.
/// Values beyond 64 bits (valid in Python) are refused: no row id can be that large.
fn integer(attr: &str, v: &Value) -> Result<i64> {
    let invalid = || Error::field(attr, "invalid_input", "A valid integer is required.");
    match v {
        Value::Null => Err(Error::field(attr, "null", "This field may not be null.")),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(i),
            // Integral and below 1e16, so the conversion is exact.
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e16 => Ok(f as i64),
            _ => Err(invalid()),
        },
        Value::String(s) => without_zero_fraction(s)
            .trim()
            .parse::<i64>()
            .map_err(|_| invalid()),
        Value::Bool(_) | Value::Array(_) | Value::Object(_) => Err(invalid()),
    }
}

/// DRF's `re.sub(r'\.0*\s*$', '', s)`: `"7.00 "` → `"7"`; anything else unchanged.
fn without_zero_fraction(s: &str) -> &str {
    s.trim_end()
        .trim_end_matches('0')
        .strip_suffix('.')
        .unwrap_or(s)
}

/// A create body, field by field in upstream's order so the first error is upstream's.
fn new_key_from_body(conn: &Connection, user_id: i64, body: &Map<String, Value>) -> Result<NewKey> {
    let label = validate_label(required(body, "label")?)?;
    let scopes = scopes(required(body, "scopes")?)?;
    let teams = match body.get("scoped_teams") {
        Some(v) => scoped_teams(conn, user_id, v)?,
        None => None,
    };
    let organizations = match body.get("scoped_organizations") {
        Some(v) => scoped_organizations(conn, user_id, v)?,
        None => None,
    };
    Ok(NewKey {
        label,
        scopes,
        scoping: Scoping {
            teams,
            organizations,
        },
    })
}

/// A PATCH body applied to the stored key: absent fields keep their values.
fn apply_changes(
    conn: &Connection,
    user_id: i64,
    body: &Map<String, Value>,
    row: &mut KeyRow,
    scoping: &mut Scoping,
) -> Result<()> {
    if let Some(v) = body.get("label") {
        row.label = validate_label(v)?;
    }
    if let Some(v) = body.get("scopes") {
        row.scopes = scopes(v)?;
    }
    if let Some(v) = body.get("scoped_teams") {
        scoping.teams = scoped_teams(conn, user_id, v)?;
    }
    if let Some(v) = body.get("scoped_organizations") {
        scoping.organizations = scoped_organizations(conn, user_id, v)?;
    }
    Ok(())
}

/// The caller's own key with this id; another user's key is as missing as an unknown one.
fn own_key(conn: &Connection, user_id: i64, id: &str) -> Result<KeyRow> {
    keys::get(conn, id)?
        .filter(|k| k.user_id == user_id)
        .ok_or(Error::NotFound)
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

/// `GET /api/personal_api_keys/`: the caller's keys, newest first, as a bare array.
pub async fn list(app: &App, c: &Caller) -> Result<Response<Body>> {
    let user_id = c.user.id;
    let out: Vec<ApiKeyOut> = app
        .db
        .read(|conn| keys::list(conn, Some(user_id)))?
        .iter()
        .map(|row| row.to_out(None))
        .collect();
    body::json(StatusCode::OK, &out)
}

/// `POST /api/personal_api_keys/` → 201 with `value`, shown this once.
pub async fn create(app: &App, c: &Caller, b: Map<String, Value>) -> Result<Response<Body>> {
    let user_id = c.user.id;
    let now = app.clock.now();
    let out = app
        .db
        .write(move |conn| {
            let new = new_key_from_body(conn, user_id, &b)?;
            insert_key(conn, user_id, &new, now)
        })
        .await?;
    body::json(StatusCode::CREATED, &out)
}

/// `GET /api/personal_api_keys/@current/`: the key that authenticated this request. A session
/// used no key, so there is nothing to show.
pub async fn current(c: &Caller) -> Result<Response<Body>> {
    match &c.auth {
        AuthKind::Key(key) => body::json(StatusCode::OK, &key.to_out(None)),
        AuthKind::Session(_) => Err(Error::NotFound),
    }
}

/// `GET /api/personal_api_keys/{id}/`: a session sees its user's keys; a key sees only itself.
pub async fn retrieve(app: &App, c: &Caller, id: &str) -> Result<Response<Body>> {
    if let AuthKind::Key(key) = &c.auth {
        if key.id != id {
            return Err(Error::permission_denied(NO_KEY_ACCESS));
        }
        return current(c).await;
    }
    let user_id = c.user.id;
    let out = app.db.read(|conn| own_key(conn, user_id, id))?.to_out(None);
    body::json(StatusCode::OK, &out)
}

/// `DELETE /api/personal_api_keys/{id}/` → 204; the key stops working with the commit.
pub async fn delete(app: &App, c: &Caller, id: &str) -> Result<Response<Body>> {
    let (user_id, id) = (c.user.id, id.to_owned());
    app.db
        .write(move |conn| {
            own_key(conn, user_id, &id)?;
            keys::delete(conn, &id)
        })
        .await?;
    Ok(no_content())
}

/// `PATCH /api/personal_api_keys/{id}/`: label, scopes and scoping, each optional.
pub async fn update(
    app: &App,
    c: &Caller,
    id: &str,
    b: Map<String, Value>,
) -> Result<Response<Body>> {
    let (user_id, id) = (c.user.id, id.to_owned());
    let out = app
        .db
        .write(move |conn| {
            let mut row = own_key(conn, user_id, &id)?;
            let mut scoping = row.scoping.clone();
            apply_changes(conn, user_id, &b, &mut row, &mut scoping)?;
            keys::update(conn, &id, &row.label, &row.scopes)?;
            keys::set_scoping(conn, &id, &scoping)?;
            row.scoping = scoping;
            Ok(row.to_out(None))
        })
        .await?;
    body::json(StatusCode::OK, &out)
}

/// `POST /api/personal_api_keys/{id}/roll/` → 200 with the new `value`; the old one stops
/// working with the commit.
pub async fn roll(app: &App, c: &Caller, id: &str) -> Result<Response<Body>> {
    let (user_id, id) = (c.user.id, id.to_owned());
    let now = app.clock.now();
    let out = app
        .db
        .write(move |conn| {
            own_key(conn, user_id, &id)?;
            let value = api_key::generate();
            keys::roll(conn, &id, &value, now)?;
            Ok(own_key(conn, user_id, &id)?.to_out(Some(value)))
        })
        .await?;
    body::json(StatusCode::OK, &out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error_of<T: std::fmt::Debug>(r: Result<T>) -> (String, String, Option<String>) {
        let e = r.expect_err("an error");
        (e.code().to_owned(), e.detail(), e.attr().map(str::to_owned))
    }

    #[test]
    fn scopes_follow_drf_list_rules() {
        assert_eq!(
            scopes(&json!(["user:read", " user:write ", "user:read"])).ok(),
            Some(vec!["user:read".to_owned(), "user:write".to_owned()])
        );
        assert_eq!(
            error_of(scopes(&json!("user:read"))),
            (
                "not_a_list".into(),
                "Expected a list of items but got type \"str\".".into(),
                Some("scopes".into())
            )
        );
        assert_eq!(
            error_of(scopes(&json!([]))),
            (
                "empty".into(),
                "This list may not be empty.".into(),
                Some("scopes".into())
            )
        );
        assert_eq!(
            error_of(scopes(&json!(["*", "team:read"]))),
            (
                "invalid_input".into(),
                "Invalid scope: team:read".into(),
                Some("scopes".into())
            )
        );
        assert_eq!(
            error_of(scopes(&json!(["*", ""]))),
            (
                "blank".into(),
                "This field may not be blank.".into(),
                Some("scopes__1".into())
            )
        );
        assert_eq!(error_of(scopes(&Value::Null)).0, "null");
    }

    #[test]
    fn integers_follow_drf() {
        assert_eq!(integer("a", &json!(7)).ok(), Some(7));
        assert_eq!(integer("a", &json!(7.0)).ok(), Some(7));
        assert_eq!(integer("a", &json!(" 7 ")).ok(), Some(7));
        assert_eq!(integer("a", &json!("7.00")).ok(), Some(7));
        assert_eq!(integer("a", &json!("7.")).ok(), Some(7));
        assert_eq!(
            error_of(integer("a", &json!("7.5"))),
            (
                "invalid_input".into(),
                "A valid integer is required.".into(),
                Some("a".into())
            )
        );
        assert!(integer("a", &json!(true)).is_err());
        assert!(integer("a", &json!(1e16)).is_err());
        assert_eq!(error_of(integer("a", &Value::Null)).0, "null");
    }

    #[test]
    fn uuids_parse_as_python_does() {
        let canonical = "0190a6b2-8e1c-7d3e-9f00-0123456789ab";
        for text in [
            canonical,
            "0190A6B28E1C7D3E9F000123456789AB",
            "{0190a6b2-8e1c-7d3e-9f00-0123456789ab}",
            "urn:uuid:0190a6b2-8e1c-7d3e-9f00-0123456789ab",
        ] {
            assert_eq!(python_uuid(text).as_deref(), Some(canonical), "{text}");
        }
        assert_eq!(python_uuid("not-a-uuid"), None);
        assert_eq!(python_uuid("0190a6b2-8e1c-7d3e-9f00-0123456789a"), None);
    }
}
