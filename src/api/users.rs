//! `/api/users/`: list, retrieve, update (PATCH/PUT) and `hedgehog_config` (reference §5.1–§5.5).

use std::collections::BTreeMap;

use hyper::{Response, StatusCode};
use rusqlite::types::Value as SqlValue;
use serde_json::{Map, Value};

use super::{Caller, Target, fields};
use crate::app::App;
use crate::auth::password;
use crate::db::{email_tokens, orgs, sessions, users};
use crate::error::{Error, Result};
use crate::http::body::{self, Body};
use crate::http::{RequestInfo, micros};
use crate::mail::messages;
use crate::model::{UserOut, UserRow};

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;
const HEDGEHOG_MAX_BYTES: usize = 65_536;
const ROLES: &[&str] = &[
    "engineering",
    "data",
    "product",
    "founder",
    "leadership",
    "marketing",
    "sales",
    "other",
];

/// The user object as `caller` sees it; a lazily chosen org/team is persisted in the background.
fn user_object(app: &App, user: UserRow, caller: &Caller) -> Result<UserOut> {
    let sensitive = caller.sensitive_session_expires_at(app);
    let (out, chosen) = app
        .db
        .read_cached(|conn, cache| cache.objects.build(conn, user, sensitive))?;
    persist_choice(app, out.id, chosen);
    Ok(out)
}

fn persist_choice(app: &App, id: i64, chosen: Option<users::Current>) {
    if let Some((org, team)) = chosen {
        app.db
            .write_detached(move |conn| users::persist_current(conn, id, org, team));
    }
}

/// `GET /api/users/`: staff see every active user, others only themselves.
pub async fn list(app: &App, caller: &Caller, info: &RequestInfo) -> Result<Response<Body>> {
    // Repeated parameters: the last wins; BTreeMap also gives the sorted order of §10.4.
    let params: BTreeMap<String, String> = info
        .query
        .as_deref()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let limit = params
        .get("limit")
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|n| *n > 0)
        .map_or(DEFAULT_LIMIT, |n| n.min(MAX_LIMIT));
    let offset = params
        .get("offset")
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .unwrap_or(0);
    let filter = users::Filter {
        email: params.get("email").filter(|e| !e.is_empty()).cloned(),
        is_staff: params
            .get("is_staff")
            .and_then(|v| match v.to_ascii_lowercase().as_str() {
                "true" | "1" => Some(true),
                "false" | "0" => Some(false),
                _ => None,
            }),
        only_id: (!caller.user.is_staff).then_some(caller.user.id),
        include_inactive: false,
    };

    let sensitive = caller.sensitive_session_expires_at(app);
    // Each user object is serialized as soon as it is built, on the blocking thread: a page
    // never holds 100 object trees at once.
    let (count, results, chosen) = app
        .db
        .read_blocking(move |conn, cache| {
            let (count, rows) = users::list(conn, cache, &filter, limit, offset)?;
            let mut results = Vec::with_capacity(rows.len() * 1536 + 2);
            let mut chosen = Vec::new();
            results.push(b'[');
            for (i, row) in rows.into_iter().enumerate() {
                let (out, choice) = cache.objects.build(conn, row, sensitive)?;
                if let Some(c) = choice {
                    chosen.push((out.id, c));
                }
                if i > 0 {
                    results.push(b',');
                }
                serde_json::to_writer(&mut results, &out).map_err(Error::internal)?;
            }
            results.push(b']');
            Ok((count, results, chosen))
        })
        .await?;
    for (id, choice) in chosen {
        persist_choice(app, id, Some(choice));
    }

    let base = base_url(app, info);
    let page_url = |offset: Option<i64>| {
        let mut p = params.clone();
        p.insert("limit".into(), limit.to_string());
        match offset {
            Some(o) => p.insert("offset".into(), o.to_string()),
            None => p.remove("offset"),
        };
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(p.iter())
            .finish();
        format!("{base}{}?{query}", info.raw_path)
    };
    let next = (offset + limit < count).then(|| page_url(Some(offset + limit)));
    let previous = (offset > 0).then(|| {
        if offset - limit <= 0 {
            page_url(None)
        } else {
            page_url(Some(offset - limit))
        }
    });
    // `{"count","next","previous","results"}` around the already serialized results.
    let json = |v: &Option<String>| serde_json::to_string(v).map_err(Error::internal);
    let mut page = format!(
        r#"{{"count":{count},"next":{},"previous":{},"results":"#,
        json(&next)?,
        json(&previous)?
    )
    .into_bytes();
    page.extend_from_slice(&results);
    page.push(b'}');
    Ok(body::json_bytes(StatusCode::OK, page))
}

/// `--site-url`, else `http://` + Host, else the bound address (SPEC §10.4).
fn base_url(app: &App, info: &RequestInfo) -> String {
    if let Some(site) = &app.config.site_url {
        return site.trim_end_matches('/').to_owned();
    }
    match &info.host {
        Some(host) => format!("http://{host}"),
        None => format!("http://{}", app.bound),
    }
}

/// `GET /api/users/{uuid|@me}/`.
pub async fn retrieve(app: &App, caller: &Caller, target: Target) -> Result<Response<Body>> {
    let user = match target {
        Target::Me(u) | Target::Other(u) => *u,
    };
    body::json(StatusCode::OK, &user_object(app, user, caller)?)
}

/// `GET …/hedgehog_config/`: the stored object, or `{}`.
pub fn hedgehog_config(target: Target) -> Result<Response<Body>> {
    let stored = target
        .user()
        .hedgehog_config
        .as_deref()
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .filter(|v| !v.is_null());
    body::json(
        StatusCode::OK,
        &stored.unwrap_or_else(|| Value::Object(Map::new())),
    )
}

/// `PATCH …/hedgehog_config/`: replaces the stored object with the body.
pub async fn set_hedgehog_config(
    app: &App,
    target: Target,
    body: Map<String, Value>,
) -> Result<Response<Body>> {
    let value = Value::Object(body);
    let text = hedgehog_text(&value)?;
    let id = target.user().id;
    app.db
        .write(move |conn| users::update(conn, id, &[("hedgehog_config", SqlValue::Text(text))]))
        .await?;
    body::json(StatusCode::OK, &value)
}

fn hedgehog_text(value: &Value) -> Result<String> {
    let text = serde_json::to_string(value).map_err(Error::internal)?;
    if text.len() > HEDGEHOG_MAX_BYTES {
        return Err(Error::field(
            "hedgehog_config",
            "max_length",
            format!("Ensure this field has no more than {HEDGEHOG_MAX_BYTES} bytes."),
        ));
    }
    Ok(text)
}

/// A validated update: column changes plus the parts that need more than a column write.
#[derive(Default)]
struct Update {
    columns: Vec<(&'static str, SqlValue)>,
    email: Option<String>,
    set_org: Option<i64>,
    set_team: Option<i64>,
    password: Option<String>,
    current_password: Option<String>,
}

fn bool_value(v: Option<bool>) -> SqlValue {
    v.map_or(SqlValue::Null, |b| SqlValue::Integer(b.into()))
}

fn text_value(v: Option<String>) -> SqlValue {
    v.map_or(SqlValue::Null, SqlValue::Text)
}

fn json_text(v: &Value) -> Result<String> {
    serde_json::to_string(v).map_err(Error::internal)
}

fn does_not_exist(attr: &str, value: &str) -> Error {
    Error::field(
        attr,
        "does_not_exist",
        format!("Object with id={value} does not exist."),
    )
}

/// Body keys that a session older than `--reauth-after` may still change (upstream's
/// `time_sensitive_allow_if_only_fields`).
const ALLOWED_WITH_OLD_SESSION: [&str; 8] = [
    "theme_mode",
    "set_current_organization",
    "set_current_team",
    "allow_sidebar_suggestions",
    "shortcut_position",
    "has_seen_product_intro_for",
    "events_column_config",
    "role_at_organization",
];

/// How recent a login must be to change the email without `current_password`.
const FRESH_LOGIN: std::time::Duration = std::time::Duration::from_secs(300);

/// `PATCH`/`PUT /api/users/{uuid|@me}/` (reference §5.3, SPEC §3.6 and §10.1 steps 6–15).
pub async fn update(
    app: &App,
    caller: &Caller,
    target: Target,
    body: Map<String, Value>,
    put: bool,
) -> Result<Response<Body>> {
    let user = target.user().clone();
    let now = app.clock.now();
    let email_change = match body.get("email") {
        Some(Value::String(e)) => users::email_key(e) != users::email_key(&user.email),
        _ => false,
    };
    let has_current_password = body
        .get("current_password")
        .is_some_and(|v| v.as_str().is_some_and(|s| !s.trim().is_empty()));

    // 6. Recent authentication: an old session may only change the allow-listed fields; an
    // email change needs a login within 5 minutes or the current password.
    if !caller.is_key() {
        let only_allowed = !body.is_empty()
            && body
                .keys()
                .all(|k| ALLOWED_WITH_OLD_SESSION.contains(&k.as_str()));
        if !only_allowed {
            caller.require_recent_login(app)?;
        }
        if email_change && !has_current_password && !caller.logged_in_within(app, FRESH_LOGIN) {
            return Err(Error::Forbidden {
                code: "sensitive_action_required_reauth",
                detail: "Confirm it's you before changing your email.".into(),
            });
        }
    }
    // 7. Writes carrying `current_password` are throttled per caller.
    if body.contains_key("current_password") {
        app.throttles
            .hit("current_password", &caller.user.id.to_string(), 5, 60, now)?;
    }
    // 10. A key may not change email or password.
    if caller.is_key() && (email_change || body.contains_key("password")) {
        return Err(Error::permission_denied(
            "You can only change your email or password from a logged-in session, not with an API key or token.",
        ));
    }
    // 11. Only staff may send `is_staff`.
    if body.contains_key("is_staff") && !caller.user.is_staff {
        return Err(Error::permission_denied(
            "You are not a staff user, contact your instance admin.",
        ));
    }
    // 12. Field by field, in the order of reference §4.1.
    let mut update = validate_fields(app, &user, &body, put)?;
    // 13. Organization and team must agree.
    if let (Some(org), Some(team)) = (update.set_org, update.set_team) {
        let team_org = app.db.read(|conn| orgs::team_org(conn, team))?;
        if team_org != Some(org) {
            return Err(Error::field(
                "set_current_team",
                "invalid_input",
                "Team must belong to the same organization in set_current_organization.",
            ));
        }
    }
    // 14–15. Current password, then the new one's strength; hashing runs off the runtime.
    let new_password = update.password.take();
    let current = update.current_password.take();
    let mut password_change = None;
    if new_password.is_some() || (email_change && current.is_some()) {
        let stored = app.db.read(|conn| users::password_hash(conn, user.id))?;
        let checked = stored.clone();
        let new_hash = app
            .hash_work(move || {
                if password::is_usable(&checked) {
                    let Some(current) = current else {
                        return Err(Error::field(
                            "current_password",
                            "required",
                            "This field is required when updating your password.",
                        ));
                    };
                    if password::verify(&current, &checked) == password::Verified::No {
                        return Err(incorrect_password());
                    }
                } else if email_change && current.is_some() {
                    // Nothing to confirm an email change with: there is no password.
                    return Err(incorrect_password());
                }
                match new_password {
                    Some(p) => {
                        // PostHog's validator passes no user inputs to zxcvbn.
                        fields::check_password_strength(&p, &[])?;
                        password::hash(&p).map(Some)
                    }
                    None => Ok(None),
                }
            })
            .await?;
        password_change = new_hash.map(|h| (stored, h));
    }

    let (id, keep_session) = (user.id, caller.session_row().map(|s| s.id));
    let mailer = app.mailer.clone();
    let token_expiry = now + micros(app.config.token_ttl);
    let mails = app
        .db
        .write(move |conn| {
            let mut mails = Vec::new();
            if let Some(email) = update.email.take() {
                if users::email_taken(conn, &email, Some(id))? {
                    return Err(email_taken());
                }
                if mailer.configured() {
                    // Staged: it applies when the new address is verified.
                    email_tokens::revoke(conn, id, email_tokens::VERIFY_EMAIL)?;
                    let token =
                        email_tokens::issue(conn, id, email_tokens::VERIFY_EMAIL, token_expiry)?;
                    mails.push(messages::verify_email(
                        mailer.site_url(),
                        &email,
                        &user.uuid,
                        &token,
                    ));
                    update
                        .columns
                        .push(("pending_email", SqlValue::Text(email)));
                } else {
                    update
                        .columns
                        .push(("email_key", SqlValue::Text(users::email_key(&email))));
                    update.columns.push(("email", SqlValue::Text(email)));
                }
            }
            if let Some((verified_against, new_hash)) = password_change {
                // Refuse if the password changed since it was verified.
                if users::password_hash(conn, id)? != verified_against {
                    return Err(incorrect_password());
                }
                update.columns.push(("password", SqlValue::Text(new_hash)));
                sessions::delete_for_user(conn, id, keep_session)?;
                mails.push(messages::password_changed(&user.email));
            }
            apply_current(conn, &mut update)?;
            users::update(conn, id, &update.columns)?;
            Ok(mails)
        })
        .await?;
    app.mailer.send(mails, now).await;
    respond_with_user(app, caller, id)
}

fn incorrect_password() -> Error {
    Error::field(
        "current_password",
        "incorrect_password",
        "Your current password is incorrect.",
    )
}

/// Turns `set_current_organization` / `set_current_team` into column changes: an org alone
/// brings its first team; a team alone brings its org.
fn apply_current(conn: &rusqlite::Connection, update: &mut Update) -> Result<()> {
    let (org, team) = match (update.set_org, update.set_team) {
        (None, None) => return Ok(()),
        (Some(org), None) => (Some(org), orgs::first_team_id(conn, org)?),
        (None, Some(team)) => (orgs::team_org(conn, team)?, Some(team)),
        (Some(org), Some(team)) => (Some(org), Some(team)),
    };
    let id = |v: Option<i64>| v.map_or(SqlValue::Null, SqlValue::Integer);
    update.columns.push(("current_organization_id", id(org)));
    update.columns.push(("current_team_id", id(team)));
    Ok(())
}

/// 200 with the user's fresh object.
fn respond_with_user(app: &App, caller: &Caller, id: i64) -> Result<Response<Body>> {
    let fresh = app
        .db
        .read(|conn| users::get(conn, id))?
        .ok_or(Error::NotFound)?;
    body::json(StatusCode::OK, &user_object(app, fresh, caller)?)
}

/// `DELETE /api/users/{uuid|@me}/` (sessions only): a hard delete, refused while the user
/// belongs to an organization.
pub async fn delete(app: &App, _caller: &Caller, target: Target) -> Result<Response<Body>> {
    let id = target.user().id;
    app.db
        .write(move |conn| {
            if orgs::has_memberships(conn, id)? {
                return Err(Error::Conflict(
                    "Cannot delete user with organization memberships.",
                ));
            }
            users::delete(conn, id)
        })
        .await?;
    Ok(crate::http::no_content())
}

/// `POST …/scene_personalisation/ {scene, dashboard}` (SPEC §3.7, §10.5): upsert keyed by
/// (user, current team, scene). usersvc has no dashboards, so the id is stored as given.
pub async fn scene_personalisation(
    app: &App,
    caller: &Caller,
    target: Target,
    body: Map<String, Value>,
) -> Result<Response<Body>> {
    let dashboard = match body.get("dashboard") {
        None | Some(Value::Null) => {
            return Err(Error::non_field(
                "invalid_input",
                "Dashboard must be provided.",
            ));
        }
        Some(v) => dashboard_id(v)?,
    };
    let scene = match body.get("scene") {
        None | Some(Value::Null) => {
            return Err(Error::non_field("invalid_input", "Scene must be provided."));
        }
        Some(v) => fields::string("scene", v, 200, false)?,
    };
    let user = target.user().clone();
    let (_, team) = app
        .db
        .read_cached(|conn, cache| cache.objects.effective_current(conn, &user))?;
    let Some(team) = team else {
        return Err(Error::field(
            "dashboard",
            "invalid_input",
            "Dashboard must belong to the user's current team.",
        ));
    };
    let (id, now) = (user.id, app.clock.now());
    app.db
        .write(move |conn| users::upsert_scene(conn, id, team, &scene, dashboard, now))
        .await?;
    respond_with_user(app, caller, id)
}

/// A dashboard primary key: an integer (or a string of digits) above zero.
fn dashboard_id(v: &Value) -> Result<i64> {
    let parsed = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    let Some(id) = parsed else {
        return Err(Error::field(
            "dashboard",
            "incorrect_type",
            format!(
                "Incorrect type. Expected pk value, received {}.",
                fields::python_type_name(v)
            ),
        ));
    };
    if id <= 0 {
        return Err(Error::field(
            "dashboard",
            "does_not_exist",
            format!("Invalid pk \"{id}\" - object does not exist."),
        ));
    }
    Ok(id)
}

/// `PATCH /api/users/cancel_email_change_request/` (sessions only).
pub async fn cancel_email_change(app: &App, caller: &Caller) -> Result<Response<Body>> {
    if caller.user.pending_email.is_none() {
        return Err(Error::non_field(
            "email_change_request_not_found",
            "No active email change requests found.",
        ));
    }
    let id = caller.user.id;
    app.db
        .write(move |conn| {
            email_tokens::revoke(conn, id, email_tokens::VERIFY_EMAIL)?;
            users::update(conn, id, &[("pending_email", SqlValue::Null)])
        })
        .await?;
    respond_with_user(app, caller, id)
}

fn email_taken() -> Error {
    Error::field(
        "email",
        "unique",
        "user with this email address already exists.",
    )
}

fn required(attr: &str) -> Error {
    Error::field(attr, "required", "This field is required.")
}

/// Step 12: every present field in reference §4.1 order; the first error wins. On PUT, a missing
/// `email` or `password` is `required` at its place in that order.
fn validate_fields(
    app: &App,
    user: &UserRow,
    body: &Map<String, Value>,
    put: bool,
) -> Result<Update> {
    let mut u = Update::default();
    if let Some(v) = body.get("first_name") {
        let s = fields::string("first_name", v, 150, true)?;
        u.columns.push(("first_name", SqlValue::Text(s)));
    }
    if let Some(v) = body.get("last_name") {
        let s = fields::string("last_name", v, 150, true)?;
        u.columns.push(("last_name", SqlValue::Text(s)));
    }
    match body.get("email") {
        Some(v) => {
            let email = fields::email("email", v)?;
            if users::email_key(&email) == users::email_key(&user.email) {
                // A change of case only is written directly.
                u.columns.push(("email", SqlValue::Text(email)));
            } else {
                if app
                    .db
                    .read(|conn| users::email_taken(conn, &email, Some(user.id)))?
                {
                    return Err(email_taken());
                }
                u.email = Some(email);
            }
        }
        None if put => return Err(required("email")),
        None => {}
    }
    if let Some(v) = body.get("notification_settings") {
        let stored = match user
            .notification_settings
            .as_deref()
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
        {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let merged = fields::merge_notification_settings(&stored, v)?;
        u.columns.push((
            "notification_settings",
            SqlValue::Text(json_text(&Value::Object(merged))?),
        ));
    }
    for attr in ["anonymize_data", "allow_impersonation"] {
        if let Some(v) = body.get(attr) {
            u.columns
                .push((attr, bool_value(fields::boolean(attr, v, true)?)));
        }
    }
    if let Some(v) = body.get("toolbar_mode") {
        let choice = fields::choice("toolbar_mode", v, &["disabled", "toolbar", ""], true)?;
        u.columns.push(("toolbar_mode", text_value(choice)));
    }
    if let Some(v) = body.get("is_staff") {
        let staff = fields::boolean("is_staff", v, false)?.unwrap_or(false);
        u.columns
            .push(("is_staff", SqlValue::Integer(staff.into())));
    }
    if let Some(v) = body.get("set_current_organization") {
        u.set_org = Some(validate_set_org(app, user, v)?);
    }
    if let Some(v) = body.get("set_current_team") {
        u.set_team = Some(validate_set_team(app, user, v)?);
    }
    match body.get("password") {
        Some(v) => u.password = Some(fields::string("password", v, 128, false)?),
        None if put => return Err(required("password")),
        None => {}
    }
    if let Some(v) = body.get("current_password") {
        u.current_password = Some(fields::string("current_password", v, usize::MAX, false)?);
    }
    if let Some(v) = body.get("events_column_config") {
        if v.is_null() {
            return Err(Error::field(
                "events_column_config",
                "null",
                "This field may not be null.",
            ));
        }
        u.columns
            .push(("events_column_config", SqlValue::Text(json_text(v)?)));
    }
    if let Some(v) = body.get("has_seen_product_intro_for") {
        let text = if v.is_null() {
            None
        } else {
            Some(json_text(v)?)
        };
        u.columns
            .push(("has_seen_product_intro_for", text_value(text)));
    }
    if let Some(v) = body.get("theme_mode") {
        let choice = fields::choice("theme_mode", v, &["light", "dark", "system", ""], true)?;
        u.columns.push(("theme_mode", text_value(choice)));
    }
    if let Some(v) = body.get("hedgehog_config") {
        let text = match v {
            Value::Null => None,
            Value::Object(_) => Some(hedgehog_text(v)?),
            other => {
                return Err(Error::field(
                    "hedgehog_config",
                    "invalid_input",
                    format!(
                        "Invalid data. Expected a dictionary, but got {}.",
                        fields::python_type_name(other)
                    ),
                ));
            }
        };
        u.columns.push(("hedgehog_config", text_value(text)));
    }
    if let Some(v) = body.get("allow_sidebar_suggestions") {
        let b = fields::boolean("allow_sidebar_suggestions", v, true)?;
        u.columns.push(("allow_sidebar_suggestions", bool_value(b)));
    }
    if let Some(v) = body.get("shortcut_position") {
        let choice = fields::choice(
            "shortcut_position",
            v,
            &["above", "below", "hidden", ""],
            true,
        )?;
        u.columns.push(("shortcut_position", text_value(choice)));
    }
    if let Some(v) = body.get("role_at_organization") {
        let choice = fields::choice("role_at_organization", v, ROLES, false)?;
        u.columns.push(("role_at_organization", text_value(choice)));
    }
    if let Some(v) = body.get("passkeys_enabled_for_2fa") {
        let b = fields::boolean("passkeys_enabled_for_2fa", v, true)?;
        if b == Some(true) {
            // usersvc has no passkeys yet, so nobody has a verified one.
            return Err(Error::field(
                "passkeys_enabled_for_2fa",
                "no_passkeys",
                "You must have at least one passkey set up before enabling passkeys for 2FA.",
            ));
        }
        u.columns.push(("passkeys_enabled_for_2fa", bool_value(b)));
    }
    Ok(u)
}

/// An organization uuid the target user belongs to.
fn validate_set_org(app: &App, user: &UserRow, v: &Value) -> Result<i64> {
    const ATTR: &str = "set_current_organization";
    let value = fields::string(ATTR, v, usize::MAX, false)?;
    let uuid = uuid::Uuid::parse_str(&value).map_err(|_| {
        Error::field(
            ATTR,
            "invalid_input",
            format!("“{value}” is not a valid UUID."),
        )
    })?;
    let org = app.db.read(|conn| {
        let Some(org) = orgs::get_by_uuid(conn, &uuid.hyphenated().to_string())? else {
            return Ok(None);
        };
        Ok(orgs::is_member(conn, user.id, org.id)?.then_some(org.id))
    })?;
    org.ok_or_else(|| does_not_exist(ATTR, &value))
}

/// A team id in one of the target user's organizations.
fn validate_set_team(app: &App, user: &UserRow, v: &Value) -> Result<i64> {
    const ATTR: &str = "set_current_team";
    let value = fields::string(ATTR, v, usize::MAX, false)?;
    let Ok(team_id) = value.parse::<i64>() else {
        return Err(does_not_exist(ATTR, &value));
    };
    let ok = app.db.read(|conn| match orgs::team_org(conn, team_id)? {
        Some(org) => orgs::is_member(conn, user.id, org),
        None => Ok(false),
    })?;
    if ok {
        Ok(team_id)
    } else {
        Err(does_not_exist(ATTR, &value))
    }
}
