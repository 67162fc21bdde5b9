//! PATCH body validation without a server: the body bytes → `http::body::json_object` (with a
//! JSON content type, as step 9 reads it) and `serde_json::from_slice::<Value>` (its recursion
//! limit is what bounds the recursive printers below), then
//!
//! * the `PATCH /api/users/@me/` field table of `api::users::validate_fields`, reproduced with
//!   the same public validators and the same arguments (that function itself needs an `App`);
//! * every public validator of `api::fields` over every value of the object (and over the
//!   top-level value when it is not an object);
//! * every error rendered the way the server renders it (`http::body::error`).
//!
//! Panics are bugs; so are broken invariants (asserted below).

use hyper::HeaderMap;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use serde_json::{Map, Value};
use usersvc::api::fields;
use usersvc::error::Error;
use usersvc::http::body;

/// `api::users::ROLES` (private there), the `role_at_organization` choices.
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

/// One input; panics on a bug.
pub fn check(data: &[u8]) {
    // The body reader, with the content types a client may send.
    let json = headers("application/json");
    let parsed = body::json_object(&json, data);
    let with_params = body::json_object(&headers("Application/JSON; charset=utf-8"), data);
    assert_eq!(parsed.is_ok(), with_params.is_ok());
    let other_type = body::json_object(&headers("text/plain"), data);
    assert_eq!(other_type.is_ok(), data.is_empty());
    for err in [&parsed, &other_type]
        .into_iter()
        .filter_map(|r| r.as_ref().err())
    {
        render(err);
    }

    let value: Option<Value> = serde_json::from_slice(data).ok();
    // `json_object` accepts exactly the JSON objects (and the empty body).
    assert_eq!(
        parsed.is_ok(),
        data.is_empty() || matches!(value, Some(Value::Object(_))),
        "{value:?}"
    );
    match (parsed, value) {
        (Ok(map), _) => {
            patch_user(&map);
            for (key, v) in &map {
                every_validator(key, v);
            }
        }
        (Err(_), Some(v)) => every_validator("value", &v),
        (Err(_), None) => {}
    }
}

fn headers(content_type: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h
}

/// An error as the client would get it: status, envelope, headers.
fn render(err: &Error) {
    let _ = err.envelope();
    let _ = err.detail();
    let res = body::error(err);
    assert_eq!(res.status(), err.status());
}

fn validated<T>(result: Result<T, Error>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            assert_eq!(e.status().as_u16(), 400, "{e:?}");
            render(&e);
            None
        }
    }
}

/// The field table of `PATCH /api/users/@me/` (`api::users::validate_fields`), minus the
/// database look-ups. Every field is run, not only up to the first error.
fn patch_user(body: &Map<String, Value>) {
    if let Some(v) = body.get("first_name") {
        checked_string("first_name", v, 150, true);
    }
    if let Some(v) = body.get("last_name") {
        checked_string("last_name", v, 150, true);
    }
    if let Some(v) = body.get("email")
        && let Some(email) = validated(fields::email("email", v))
    {
        assert!(fields::is_valid_email(&email), "{email:?}");
        assert!(
            email.chars().count() <= fields::EMAIL_MAX_LENGTH,
            "{email:?}"
        );
    }
    if let Some(v) = body.get("notification_settings") {
        merge_settings(v);
    }
    for attr in [
        "anonymize_data",
        "allow_impersonation",
        "allow_sidebar_suggestions",
        "passkeys_enabled_for_2fa",
    ] {
        if let Some(v) = body.get(attr) {
            validated(fields::boolean(attr, v, true));
        }
    }
    if let Some(v) = body.get("is_staff") {
        validated(fields::boolean("is_staff", v, false));
    }
    if let Some(v) = body.get("toolbar_mode") {
        checked_choice("toolbar_mode", v, &["disabled", "toolbar", ""], true);
    }
    if let Some(v) = body.get("theme_mode") {
        checked_choice("theme_mode", v, &["light", "dark", "system", ""], true);
    }
    if let Some(v) = body.get("shortcut_position") {
        checked_choice(
            "shortcut_position",
            v,
            &["above", "below", "hidden", ""],
            true,
        );
    }
    if let Some(v) = body.get("role_at_organization") {
        checked_choice("role_at_organization", v, ROLES, false);
    }
    for attr in [
        "set_current_organization",
        "set_current_team",
        "current_password",
    ] {
        if let Some(v) = body.get(attr) {
            checked_string(attr, v, usize::MAX, false);
        }
    }
    if let Some(v) = body.get("password")
        && let Some(p) = checked_string("password", v, 128, false)
    {
        // As `update` does: the strength check only ever sees a validated (≤ 128) password.
        let _ = fields::check_password_strength(&p, &[]).map_err(|e| render(&e));
    }
    for attr in [
        "events_column_config",
        "has_seen_product_intro_for",
        "hedgehog_config",
    ] {
        if let Some(v) = body.get(attr) {
            assert_eq!(&round_trip(v), v);
        }
    }
}

/// `notification_settings`: merged onto nothing, onto the defaults, and onto its own result
/// (a second PATCH), which must succeed again and keep every key.
fn merge_settings(v: &Value) {
    let empty = Map::new();
    let Some(merged) = validated(fields::merge_notification_settings(&empty, v)) else {
        return;
    };
    let defaults = fields::notification_defaults();
    for key in defaults.keys() {
        assert!(merged.contains_key(key), "{key} missing after merging {v}");
    }
    let again = fields::merge_notification_settings(&merged, v)
        .unwrap_or_else(|e| panic!("second merge of {v} failed: {e:?}"));
    assert!(merged.keys().all(|k| again.contains_key(k)));
    let _ = fields::merge_notification_settings(&defaults, v);
    // Stored text round-trips, and the output overlay keeps what was stored.
    let Value::Object(stored) = round_trip(&Value::Object(merged)) else {
        panic!("stored notification settings are not an object");
    };
    let out = fields::notification_settings_for_output(Some(&stored));
    assert!(stored.keys().all(|k| out.contains_key(k)));
}

/// A value stored as JSON text (`json_text`) and read back.
fn round_trip(v: &Value) -> Value {
    let text = serde_json::to_string(v).unwrap_or_else(|e| panic!("{v:?} does not serialize: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"))
}

fn checked_string(attr: &str, v: &Value, max_len: usize, allow_blank: bool) -> Option<String> {
    let s = validated(fields::string(attr, v, max_len, allow_blank))?;
    assert!(s.chars().count() <= max_len, "{s:?}");
    assert!(!s.contains('\0'), "{s:?}");
    assert_eq!(s, s.trim(), "not trimmed: {s:?}");
    assert!(allow_blank || !s.is_empty());
    Some(s)
}

fn checked_choice(attr: &str, v: &Value, choices: &[&str], allow_null: bool) {
    if let Some(Some(s)) = validated(fields::choice(attr, v, choices, allow_null)) {
        assert!(choices.contains(&s.as_str()), "{s:?}");
    }
}

/// Every public validator and printer of `api::fields` over one value.
fn every_validator(attr: &str, v: &Value) {
    let repr = fields::python_repr(v);
    let shown = fields::python_str(v);
    let type_name = fields::python_type_name(v);
    match v {
        Value::String(s) => {
            assert_eq!(&shown, s);
            assert!(repr.len() >= 2, "{repr:?}");
            let _ = fields::is_valid_email(s);
        }
        _ => assert_eq!(shown, repr),
    }
    assert!(!type_name.is_empty());
    for max_len in [0, 1, 150, 254, usize::MAX] {
        for allow_blank in [false, true] {
            checked_string(attr, v, max_len, allow_blank);
            let _ = validated(fields::nullable_string(attr, v, max_len, allow_blank));
        }
    }
    for allow_null in [false, true] {
        let _ = validated(fields::boolean(attr, v, allow_null));
        checked_choice(attr, v, &["", "1", "true", "None", "light"], allow_null);
        checked_choice(attr, v, &[], allow_null);
    }
    let _ = validated(fields::email(attr, v));
    merge_settings(v);
}
