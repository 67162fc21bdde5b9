//! Shared helpers for the "core" HTTP tests: requests the harness has no shortcut for, the
//! expected shapes of the user object (reference §4.1, SPEC §10.3), and small format checks.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Resp, TestServer};

/// The 38 fields of the user object, in output order (reference §4.1).
pub const USER_FIELDS: [&str; 38] = [
    "date_joined",
    "uuid",
    "distinct_id",
    "first_name",
    "last_name",
    "email",
    "pending_email",
    "is_email_verified",
    "notification_settings",
    "anonymize_data",
    "allow_impersonation",
    "toolbar_mode",
    "has_password",
    "id",
    "is_staff",
    "is_impersonated",
    "is_impersonated_until",
    "is_impersonated_read_only",
    "sensitive_session_expires_at",
    "team",
    "organization",
    "organizations",
    "set_current_organization",
    "set_current_team",
    "password",
    "current_password",
    "events_column_config",
    "is_2fa_enabled",
    "has_social_auth",
    "has_sso_enforcement",
    "has_seen_product_intro_for",
    "scene_personalisation",
    "theme_mode",
    "hedgehog_config",
    "allow_sidebar_suggestions",
    "shortcut_position",
    "role_at_organization",
    "passkeys_enabled_for_2fa",
];

/// The fields actually returned: §4.1 minus the four write-only ones.
pub fn readable_user_fields() -> Vec<&'static str> {
    USER_FIELDS
        .iter()
        .copied()
        .filter(|f| {
            !matches!(
                *f,
                "set_current_organization" | "set_current_team" | "password" | "current_password"
            )
        })
        .collect()
}

/// TeamBasic keys in order (SPEC §10.3).
pub const TEAM_BASIC_FIELDS: [&str; 12] = [
    "id",
    "uuid",
    "organization",
    "project_id",
    "api_token",
    "name",
    "completed_snippet_onboarding",
    "has_completed_onboarding_for",
    "ingested_event",
    "is_demo",
    "timezone",
    "access_control",
];

/// OrganizationBasic keys in order (SPEC §10.3).
pub const ORGANIZATION_BASIC_FIELDS: [&str; 9] = [
    "id",
    "name",
    "slug",
    "logo_media_id",
    "membership_level",
    "members_can_use_personal_api_keys",
    "is_active",
    "is_not_active_reason",
    "is_pending_deletion",
];

/// Organization keys in order (SPEC §10.3).
pub const ORGANIZATION_FIELDS: [&str; 25] = [
    "id",
    "name",
    "slug",
    "logo_media_id",
    "created_at",
    "updated_at",
    "membership_level",
    "plugins_access_level",
    "teams",
    "projects",
    "available_product_features",
    "is_member_join_email_enabled",
    "metadata",
    "customer_id",
    "enforce_2fa",
    "members_can_invite",
    "members_can_use_personal_api_keys",
    "allow_publicly_shared_resources",
    "member_count",
    "is_ai_data_processing_approved",
    "default_experiment_stats_method",
    "default_anonymize_ips",
    "default_role_id",
    "is_active",
    "is_not_active_reason",
];

/// `notification_settings` defaults, in order (reference §4.3).
pub fn notification_defaults() -> Value {
    serde_json::json!({
        "plugin_disabled": true,
        "discussions_mentioned": true,
        "project_weekly_digest_disabled": {},
        "all_weekly_digest_disabled": false,
        "error_tracking_issue_assigned": true,
        "error_tracking_weekly_digest": true,
        "data_pipeline_error_threshold": 0.01,
        "project_api_key_exposed": true,
        "materialized_view_sync_failed": false,
        "web_analytics_weekly_digest": true,
        "organization_member_join_email_disabled": {}
    })
}

/// The keys of a JSON object, in order.
#[track_caller]
pub fn keys_of(v: &Value) -> Vec<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

/// Asserts that a JSON object has exactly these keys in this order.
#[track_caller]
pub fn assert_keys(v: &Value, expected: &[&str]) {
    assert_eq!(
        keys_of(v),
        expected.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
}

/// Asserts a 200 and returns the JSON body.
#[track_caller]
pub fn ok_json(res: &Resp) -> Value {
    assert_eq!(
        res.status,
        200,
        "body: {}",
        String::from_utf8_lossy(&res.body)
    );
    res.json()
}

/// A request with an `Authorization` header of exactly this value (or none) and a JSON body.
pub fn with_authorization(
    srv: &TestServer,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: Option<&Value>,
) -> Resp {
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(a) = authorization {
        headers.push(("Authorization", a));
    }
    let text = body.map(Value::to_string);
    if text.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    srv.request_raw_body(method, path, &headers, text.as_deref().map(str::as_bytes))
}

/// A request with a bearer key, arbitrary extra headers and raw body bytes.
pub fn keyed_raw(
    srv: &TestServer,
    method: &str,
    path: &str,
    key: &str,
    extra: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Resp {
    let auth = format!("Bearer {key}");
    let mut headers: Vec<(&str, &str)> = vec![("Authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    srv.request_raw_body(method, path, &headers, body)
}

/// PUT with a key and a JSON body.
pub fn put(srv: &TestServer, path: &str, key: &str, body: Value) -> Resp {
    srv.request("PUT", path, Some(key), Some(&body))
}

/// GET `@me` and return the user object.
#[track_caller]
pub fn me(srv: &TestServer, key: &str) -> Value {
    ok_json(&srv.get("/api/users/@me/", key))
}

/// A connection to the server's database, for assertions and for fixtures the harness lacks.
pub fn db(srv: &TestServer) -> rusqlite::Connection {
    usersvc::db::open_connection(&srv.db_path).expect("open db")
}

/// Polls `f` every 20 ms for up to 3 s until it returns `Some`.
pub fn poll<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (SPEC §10.2).
pub fn is_iso_micros(s: &str) -> bool {
    let b = s.as_bytes();
    let pattern = b"dddd-dd-ddTdd:dd:dd.ddddddZ";
    b.len() == pattern.len()
        && b.iter().zip(pattern.iter()).all(|(c, p)| match p {
            b'd' => c.is_ascii_digit(),
            other => c == other,
        })
}

/// A hyphenated lowercase UUID.
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

/// A hyphenated UUID of version 7.
pub fn is_uuid_v7(s: &str) -> bool {
    is_uuid(s) && s.as_bytes()[14] == b'7'
}

/// `prefix` followed by exactly `len` base62 characters.
pub fn is_prefixed_base62(s: &str, prefix: &str, len: usize) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == len && rest.bytes().all(|c| c.is_ascii_alphanumeric()))
}

/// The `current_organization_id` / `current_team_id` stored for a user.
pub fn stored_current(srv: &TestServer, user_id: i64) -> (Option<i64>, Option<i64>) {
    db(srv)
        .query_row(
            "SELECT current_organization_id, current_team_id FROM users WHERE id = ?1",
            [user_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("query current")
}

/// Number of user rows.
pub fn user_count(srv: &TestServer) -> i64 {
    srv.query_i64("SELECT count(*) FROM users")
}

/// An unused, well-formed key value (`phx_` + 43 base62 characters).
pub fn unknown_key() -> String {
    format!("phx_{}", "0".repeat(43))
}

pub const NON_STAFF_DETAIL: &str =
    "As a non-staff user you're only allowed to access the `@me` user instance.";
pub const BAD_KEY_DETAIL: &str =
    "Personal API key found in request Authorization header is invalid.";

#[track_caller]
pub fn assert_not_authenticated(res: &Resp) {
    res.assert_error(
        401,
        "authentication_error",
        "not_authenticated",
        "Authentication credentials were not provided.",
        None,
    );
}

#[track_caller]
pub fn assert_bad_key(res: &Resp) {
    res.assert_error(
        401,
        "authentication_error",
        "authentication_failed",
        BAD_KEY_DETAIL,
        None,
    );
}

#[track_caller]
pub fn assert_missing_scope(res: &Resp, scope: &str) {
    res.assert_error(
        403,
        "authentication_error",
        "permission_denied",
        &format!("API key missing required scope '{scope}'"),
        None,
    );
}

#[track_caller]
pub fn assert_non_staff(res: &Resp) {
    res.assert_error(
        403,
        "authentication_error",
        "permission_denied",
        NON_STAFF_DETAIL,
        None,
    );
}

#[track_caller]
pub fn assert_not_found(res: &Resp) {
    res.assert_error(404, "invalid_request", "not_found", "Not found.", None);
}

#[track_caller]
pub fn assert_endpoint_not_found(res: &Resp) {
    res.assert_error(
        404,
        "invalid_request",
        "not_found",
        "Endpoint not found.",
        None,
    );
}

#[track_caller]
pub fn assert_method_not_allowed(res: &Resp, method: &str, allow: &str) {
    res.assert_error(
        405,
        "invalid_request",
        "method_not_allowed",
        &format!("Method \"{method}\" not allowed."),
        None,
    );
    assert_eq!(
        res.header("allow"),
        Some(allow),
        "Allow header for {method}"
    );
}

/// A 400 `validation_error` on a field.
#[track_caller]
pub fn assert_field_error(res: &Resp, attr: &str, code: &str, detail: &str) {
    res.assert_error(400, "validation_error", code, detail, Some(attr));
}
