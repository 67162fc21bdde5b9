//! `/api/personal_api_keys/` over HTTP (SPEC §10.3, reference §11): the key object, list,
//! retrieve, PATCH, DELETE, roll, the 10-key limit, what a key itself may do, CSRF, and that no
//! issued value is ever stored.

use serde_json::{Value, json};

use usersvc::model::UserRow;

use crate::harness::{Resp, Session, TestServer};
use crate::support::*;

const PASSWORD: &str = "a strong password 123!";
const KEYS: &str = "/api/personal_api_keys/";
const NO_KEY_ACCESS: &str = "This action does not support personal API key access";

/// The key object's fields, in order (SPEC §10.3).
const KEY_FIELDS: [&str; 14] = [
    "id",
    "label",
    "description",
    "value",
    "mask_value",
    "created_at",
    "last_used_at",
    "last_rolled_at",
    "user_id",
    "is_legacy_hashing",
    "scopes",
    "scoped_organizations",
    "scoped_teams",
    "local_dev_value",
];

/// A server and a logged-in user.
fn logged_in(email: &str) -> (TestServer, Session, UserRow) {
    let srv = TestServer::start();
    let user = srv.user_with_password(email, false, Some(PASSWORD));
    let session = srv.login(email, PASSWORD);
    (srv, session, user)
}

fn key_path(id: &str) -> String {
    format!("{KEYS}{id}/")
}

/// Creates a key through the API; asserts 201 and returns the key object.
#[track_caller]
fn create(srv: &TestServer, s: &Session, label: &str, scopes: &[&str]) -> Value {
    let res = srv.session_request(
        "POST",
        KEYS,
        s,
        Some(&json!({"label": label, "scopes": scopes})),
    );
    assert_eq!(
        res.status,
        201,
        "body: {}",
        String::from_utf8_lossy(&res.body)
    );
    res.json()
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string in {v}"))
}

fn assert_no_key_access(res: &Resp) {
    res.assert_error(
        403,
        "authentication_error",
        "permission_denied",
        NO_KEY_ACCESS,
        None,
    );
}

#[test]
fn create_returns_the_key_object_with_its_value_once() {
    let (srv, s, user) = logged_in("alice@example.com");
    let before = srv.clock.now();
    let res = srv.session_request(
        "POST",
        KEYS,
        &s,
        Some(&json!({
            "label": "  deploy  ",
            "scopes": ["user:read", " user:write ", "user:read"],
            "description": "ignored",
        })),
    );
    assert_eq!(
        res.status,
        201,
        "body: {}",
        String::from_utf8_lossy(&res.body)
    );
    let created = res.json();
    assert_keys(&created, &KEY_FIELDS);
    let value = str_of(&created, "value").to_owned();
    assert!(is_prefixed_base62(&value, "phx_", 43), "{value}");
    let id = str_of(&created, "id").to_owned();
    assert!(
        id.len() == 32 && id.chars().all(|c| c.is_ascii_alphanumeric()),
        "{id}"
    );
    assert_eq!(created["label"], "deploy");
    assert_eq!(created["description"], Value::Null);
    assert_eq!(created["mask_value"], format!("phx_...{}", &value[43..]));
    assert!(is_iso_micros(str_of(&created, "created_at")));
    assert_eq!(created["last_used_at"], Value::Null);
    assert_eq!(created["last_rolled_at"], Value::Null);
    assert_eq!(created["user_id"], user.id);
    assert_eq!(created["is_legacy_hashing"], false);
    assert_eq!(created["scopes"], json!(["user:read", "user:write"]));
    assert_eq!(created["scoped_organizations"], Value::Null);
    assert_eq!(created["scoped_teams"], Value::Null);
    assert_eq!(created["local_dev_value"], Value::Null);

    // Stored: only the digest.
    let stored: String = db(&srv)
        .query_row(
            "SELECT secure_value FROM personal_api_keys WHERE id = ?1",
            [&id],
            |r| r.get(0),
        )
        .expect("key row");
    assert_eq!(stored, usersvc::auth::api_key::digest(&value));
    let created_at: i64 = srv.query_i64("SELECT created_at FROM personal_api_keys");
    assert!(created_at >= before);

    // Never shown again.
    let mut expected = created.clone();
    expected["value"] = Value::Null;
    let listed = ok_json(&srv.session_request("GET", KEYS, &s, None));
    assert_eq!(listed, json!([expected]));
    let fetched = ok_json(&srv.session_request("GET", &key_path(&id), &s, None));
    assert_eq!(fetched, expected);
    // And the key works.
    assert_eq!(me(&srv, &value)["email"], "alice@example.com");
}

#[test]
fn list_is_a_bare_array_of_own_keys_newest_first() {
    let (srv, s, _) = logged_in("alice@example.com");
    assert_eq!(
        ok_json(&srv.session_request("GET", KEYS, &s, None)),
        json!([])
    );
    let bob = srv.user("bob@example.com", false);
    srv.key(&bob, &["*"]);
    let first = create(&srv, &s, "first", &["user:read"]);
    srv.clock.advance(1);
    let second = create(&srv, &s, "second", &["*"]);
    let listed = ok_json(&srv.session_request("GET", KEYS, &s, None));
    let ids: Vec<&str> = listed
        .as_array()
        .expect("an array")
        .iter()
        .map(|k| str_of(k, "id"))
        .collect();
    assert_eq!(ids, [str_of(&second, "id"), str_of(&first, "id")]);
    for k in listed.as_array().expect("an array") {
        assert_keys(k, &KEY_FIELDS);
        assert_eq!(k["value"], Value::Null);
    }
    // Without the trailing slash too.
    let again = ok_json(&srv.session_request("GET", "/api/personal_api_keys", &s, None));
    assert_eq!(again, listed);
}

#[test]
fn another_users_key_does_not_exist_for_a_session() {
    let (srv, s, _) = logged_in("alice@example.com");
    let bob = srv.user("bob@example.com", false);
    let (bob_id, bob_key) = srv.key_with_id(&bob, &["*"]);
    let path = key_path(&bob_id);
    assert_not_found(&srv.session_request("GET", &path, &s, None));
    assert_not_found(&srv.session_request("PATCH", &path, &s, Some(&json!({"label": "mine"}))));
    assert_not_found(&srv.session_request("POST", &format!("{path}roll/"), &s, None));
    assert_not_found(&srv.session_request("DELETE", &path, &s, None));
    assert_not_found(&srv.session_request("GET", &key_path("nope"), &s, None));
    assert_not_found(&srv.session_request("DELETE", &key_path("nope"), &s, None));
    // Bob's key is untouched.
    assert_eq!(me(&srv, &bob_key)["email"], "bob@example.com");
    let label: String = db(&srv)
        .query_row(
            "SELECT label FROM personal_api_keys WHERE id = ?1",
            [&bob_id],
            |r| r.get(0),
        )
        .expect("bob's key");
    assert_eq!(label, "test");
}

#[test]
fn patch_changes_label_and_scopes_and_nothing_else() {
    let (srv, s, _) = logged_in("alice@example.com");
    let created = create(&srv, &s, "ci", &["user:write"]);
    let (id, value) = (str_of(&created, "id"), str_of(&created, "value"));
    let path = key_path(id);
    let mut expected = created.clone();
    expected["value"] = Value::Null;

    let res = srv.session_request("PATCH", &path, &s, Some(&json!({"label": " renamed "})));
    expected["label"] = json!("renamed");
    assert_eq!(ok_json(&res), expected);

    let res = srv.session_request(
        "PATCH",
        &path,
        &s,
        Some(&json!({"scopes": ["user:read", "user:read"], "id": "x", "value": "y", "user_id": 9})),
    );
    expected["scopes"] = json!(["user:read"]);
    assert_eq!(ok_json(&res), expected);
    assert_eq!(
        ok_json(&srv.session_request("PATCH", &path, &s, None)),
        expected
    );
    assert_eq!(
        ok_json(&srv.session_request("GET", &path, &s, None)),
        expected
    );

    // The new scopes apply to the very next request, and the value is unchanged.
    assert_missing_scope(
        &srv.patch("/api/users/@me/", value, json!({"first_name": "A"})),
        "user:write",
    );
    assert_eq!(me(&srv, value)["email"], "alice@example.com");
}

#[test]
fn patch_validates_like_create_and_changes_nothing_on_error() {
    let (srv, s, _) = logged_in("alice@example.com");
    let created = create(&srv, &s, "ci", &["user:read"]);
    let path = key_path(str_of(&created, "id"));
    let patch = |body: Value| srv.session_request("PATCH", &path, &s, Some(&body));
    assert_field_error(
        &patch(json!({"label": ""})),
        "label",
        "blank",
        "This field may not be blank.",
    );
    assert_field_error(
        &patch(json!({"label": null})),
        "label",
        "null",
        "This field may not be null.",
    );
    assert_field_error(
        &patch(json!({"label": "x".repeat(41)})),
        "label",
        "max_length",
        "Ensure this field has no more than 40 characters.",
    );
    assert_field_error(
        &patch(json!({"scopes": []})),
        "scopes",
        "empty",
        "This list may not be empty.",
    );
    assert_field_error(
        &patch(json!({"scopes": ["user:read", "user:delete"]})),
        "scopes",
        "invalid_input",
        "Invalid scope: user:delete",
    );
    assert_field_error(
        &patch(json!({"scopes": "*"})),
        "scopes",
        "not_a_list",
        "Expected a list of items but got type \"str\".",
    );
    // A valid label with an invalid scope: nothing is saved.
    assert_field_error(
        &patch(json!({"label": "new", "scopes": ["nope"]})),
        "scopes",
        "invalid_input",
        "Invalid scope: nope",
    );
    let mut expected = created.clone();
    expected["value"] = Value::Null;
    assert_eq!(
        ok_json(&srv.session_request("GET", &path, &s, None)),
        expected
    );
}

#[test]
fn delete_revokes_the_key_immediately() {
    let (srv, s, _) = logged_in("alice@example.com");
    let created = create(&srv, &s, "ci", &["*"]);
    let (id, value) = (str_of(&created, "id"), str_of(&created, "value"));
    assert_eq!(me(&srv, value)["email"], "alice@example.com");
    let res = srv.session_request("DELETE", &key_path(id), &s, None);
    assert_eq!(
        res.status,
        204,
        "body: {}",
        String::from_utf8_lossy(&res.body)
    );
    assert!(res.body.is_empty());
    assert_bad_key(&srv.get("/api/users/@me/", value));
    assert_not_found(&srv.session_request("GET", &key_path(id), &s, None));
    assert_not_found(&srv.session_request("DELETE", &key_path(id), &s, None));
    assert_eq!(
        ok_json(&srv.session_request("GET", KEYS, &s, None)),
        json!([])
    );
}

#[test]
fn roll_issues_a_new_value_and_the_old_one_stops_working() {
    let (srv, s, _) = logged_in("alice@example.com");
    let created = create(&srv, &s, "ci", &["user:read"]);
    let (id, old) = (str_of(&created, "id"), str_of(&created, "value"));
    assert_eq!(me(&srv, old)["email"], "alice@example.com");
    srv.clock.advance(5);
    let before = srv.clock.now();

    let res = srv.session_request("POST", &format!("{}roll/", key_path(id)), &s, None);
    let rolled = ok_json(&res);
    assert_keys(&rolled, &KEY_FIELDS);
    let new = str_of(&rolled, "value");
    assert!(is_prefixed_base62(new, "phx_", 43), "{new}");
    assert_ne!(new, old);
    assert_eq!(rolled["id"], created["id"]);
    assert_eq!(rolled["label"], created["label"]);
    assert_eq!(rolled["scopes"], created["scopes"]);
    assert_eq!(rolled["created_at"], created["created_at"]);
    assert_eq!(rolled["mask_value"], format!("phx_...{}", &new[43..]));
    let rolled_at: i64 = srv.query_i64("SELECT last_rolled_at FROM personal_api_keys");
    assert!(rolled_at >= before, "{rolled_at} < {before}");
    assert!(is_iso_micros(str_of(&rolled, "last_rolled_at")));

    assert_bad_key(&srv.get("/api/users/@me/", old));
    assert_eq!(me(&srv, new)["email"], "alice@example.com");
    let mut expected = rolled.clone();
    expected["value"] = Value::Null;
    let fetched = ok_json(&srv.session_request("GET", &key_path(id), &s, None));
    // The new value's first use may already have set last_used_at.
    expected["last_used_at"] = fetched["last_used_at"].clone();
    assert_eq!(fetched, expected);
    // Without the trailing slash too.
    let again = srv.session_request("POST", &format!("{KEYS}{id}/roll"), &s, None);
    assert_eq!(again.status, 200);
}

#[test]
fn an_eleventh_key_is_refused_until_one_is_deleted() {
    let (srv, s, alice) = logged_in("alice@example.com");
    // Keys made elsewhere (the CLI, fixtures) count too.
    let (fixture_id, _) = srv.key_with_id(&alice, &["*"]);
    for i in 2..=10 {
        create(&srv, &s, &format!("k{i}"), &["user:read"]);
    }
    let eleventh = json!({"label": "k11", "scopes": ["*"]});
    let res = srv.session_request("POST", KEYS, &s, Some(&eleventh));
    res.assert_error(
        400,
        "validation_error",
        "invalid_input",
        "You can only have 10 personal API keys. Remove an existing key before creating a new one.",
        None,
    );
    assert_eq!(srv.query_i64("SELECT count(*) FROM personal_api_keys"), 10);
    // Validation comes before the limit.
    assert_field_error(
        &srv.session_request(
            "POST",
            KEYS,
            &s,
            Some(&json!({"label": "", "scopes": ["*"]})),
        ),
        "label",
        "blank",
        "This field may not be blank.",
    );
    // Another user is not affected.
    let bob = srv.user_with_password("bob@example.com", false, Some(PASSWORD));
    let bob_session = srv.login(&bob.email, PASSWORD);
    create(&srv, &bob_session, "bob's", &["*"]);

    let res = srv.session_request("DELETE", &key_path(&fixture_id), &s, None);
    assert_eq!(res.status, 204);
    create(&srv, &s, "k11", &["*"]);
}

#[test]
fn a_key_may_read_only_itself() {
    let (srv, s, _) = logged_in("alice@example.com");
    let created = create(&srv, &s, "ci", &["user:read"]);
    let (id, value) = (str_of(&created, "id"), str_of(&created, "value"));
    let other = create(&srv, &s, "other", &["*"]);
    let other_id = str_of(&other, "id");
    let mut expected = created.clone();
    expected["value"] = Value::Null;

    // `@current` and its own id: the key object, never the value.
    let current = ok_json(&srv.get(&format!("{KEYS}@current/"), value));
    assert_eq!(current["id"], expected["id"]);
    assert_eq!(current["value"], Value::Null);
    assert_eq!(current["label"], "ci");
    let own = ok_json(&srv.get(&key_path(id), value));
    assert_eq!(own["id"], expected["id"]);
    assert_eq!(own["value"], Value::Null);
    assert_eq!(
        ok_json(&srv.get(&format!("{KEYS}@current"), value))["id"],
        expected["id"]
    );

    // Any other key, even the same user's, or an unknown id: 403 without a lookup.
    assert_no_key_access(&srv.get(&key_path(other_id), value));
    assert_no_key_access(&srv.get(&key_path("nope"), value));
    let bob = srv.user("bob@example.com", false);
    let (bob_id, _) = srv.key_with_id(&bob, &["*"]);
    assert_no_key_access(&srv.get(&key_path(&bob_id), value));

    // Every other key-management call, with any scope.
    let star = str_of(&other, "value");
    for key in [value, star] {
        assert_no_key_access(&srv.get(KEYS, key));
        assert_no_key_access(&srv.request(
            "POST",
            KEYS,
            Some(key),
            Some(&json!({"label": "x", "scopes": ["*"]})),
        ));
        assert_no_key_access(&srv.patch(&key_path(id), key, json!({"label": "x"})));
        assert_no_key_access(&srv.request("DELETE", &key_path(id), Some(key), None));
        assert_no_key_access(&srv.request(
            "POST",
            &format!("{}roll/", key_path(id)),
            Some(key),
            None,
        ));
    }
    assert_eq!(srv.query_i64("SELECT count(*) FROM personal_api_keys"), 3);
    let mut unchanged = ok_json(&srv.session_request("GET", &key_path(id), &s, None));
    unchanged["last_used_at"] = Value::Null;
    assert_eq!(unchanged, expected);
}

#[test]
fn current_needs_a_key() {
    let (srv, s, _) = logged_in("alice@example.com");
    assert_not_found(&srv.session_request("GET", &format!("{KEYS}@current/"), &s, None));
    assert_not_authenticated(&srv.request("GET", &format!("{KEYS}@current/"), None, None));
    assert_bad_key(&srv.get(&format!("{KEYS}@current/"), &unknown_key()));
    assert_not_authenticated(&srv.request("GET", KEYS, None, None));
    assert_not_authenticated(&srv.request(
        "POST",
        KEYS,
        None,
        Some(&json!({"label": "x", "scopes": ["*"]})),
    ));
    assert_method_not_allowed(
        &srv.session_request("PATCH", &format!("{KEYS}@current/"), &s, Some(&json!({}))),
        "PATCH",
        "GET, HEAD",
    );
}

#[test]
fn unsafe_session_requests_need_the_csrf_header() {
    let (srv, s, _) = logged_in("alice@example.com");
    let created = create(&srv, &s, "ci", &["*"]);
    let id = str_of(&created, "id");
    let cookie = s.cookie_header();
    let body = json!({"label": "x", "scopes": ["*"]}).to_string();
    let without_header = |method: &str, path: &str, body: Option<&[u8]>| {
        let mut headers = vec![("Cookie", cookie.as_str())];
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        srv.request_raw_body(method, path, &headers, body)
    };
    let missing = |res: &Resp| {
        res.assert_error(
            403,
            "authentication_error",
            "permission_denied",
            "CSRF Failed: CSRF token missing.",
            None,
        );
    };
    missing(&without_header("POST", KEYS, Some(body.as_bytes())));
    missing(&without_header(
        "PATCH",
        &key_path(id),
        Some(body.as_bytes()),
    ));
    missing(&without_header("DELETE", &key_path(id), None));
    missing(&without_header(
        "POST",
        &format!("{}roll/", key_path(id)),
        None,
    ));
    // Reads need none.
    assert_eq!(without_header("GET", KEYS, None).status, 200);
    let mut expected = created.clone();
    expected["value"] = Value::Null;
    assert_eq!(
        ok_json(&srv.session_request("GET", KEYS, &s, None)),
        json!([expected])
    );
}

#[test]
fn no_created_or_rolled_value_is_stored_in_the_database_or_its_wal() {
    let (srv, s, _) = logged_in("alice@example.com");
    let mut values = Vec::new();
    let created = create(&srv, &s, "one", &["*"]);
    values.push(str_of(&created, "value").to_owned());
    let second = create(&srv, &s, "two", &["user:read"]);
    values.push(str_of(&second, "value").to_owned());
    for key in [&created, &second] {
        let rolled = ok_json(&srv.session_request(
            "POST",
            &format!("{}roll/", key_path(str_of(key, "id"))),
            &s,
            None,
        ));
        let value = str_of(&rolled, "value").to_owned();
        assert_eq!(me(&srv, &value)["email"], "alice@example.com");
        values.push(value);
    }
    let main = std::fs::read(&srv.db_path).expect("read database");
    let wal = std::fs::read(srv.db_path.with_file_name("usersvc.sqlite3-wal")).unwrap_or_default();
    assert!(!wal.is_empty(), "the writes should still be in the WAL");
    for value in &values {
        // The random part alone, so no encoding of the prefix can hide a match.
        let secret = &value.as_bytes()[4..];
        for (name, bytes) in [("database", &main), ("wal", &wal)] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret),
                "a key value is stored in the {name}"
            );
        }
    }
}

#[test]
fn concurrent_creates_never_pass_the_limit() {
    let (srv, s, alice) = logged_in("alice@example.com");
    for _ in 0..6 {
        srv.key(&alice, &["*"]);
    }
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (srv, s) = (&srv, &s);
                scope.spawn(move || {
                    let body = json!({"label": format!("race {i}"), "scopes": ["*"]});
                    srv.session_request("POST", KEYS, s, Some(&body)).status
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("request thread"))
            .collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(srv.query_i64("SELECT count(*) FROM personal_api_keys"), 10);
}

#[test]
fn changes_need_a_recent_login_but_reads_do_not() {
    let (srv, s, _) = logged_in("alice@example.com");
    let created = create(&srv, &s, "ci", &["*"]);
    let path = key_path(str_of(&created, "id"));
    srv.clock.advance(2 * 3600 + 1);
    let reauth = |res: &Resp| {
        res.assert_error(
            403,
            "authentication_error",
            "sensitive_action_required_reauth",
            "This action requires you to be recently authenticated.",
            None,
        );
    };
    reauth(&srv.session_request(
        "POST",
        KEYS,
        &s,
        Some(&json!({"label": "x", "scopes": ["*"]})),
    ));
    reauth(&srv.session_request("PATCH", &path, &s, Some(&json!({"label": "x"}))));
    reauth(&srv.session_request("POST", &format!("{path}roll/"), &s, None));
    reauth(&srv.session_request("DELETE", &path, &s, None));
    assert_eq!(srv.session_request("GET", KEYS, &s, None).status, 200);
    assert_eq!(srv.session_request("GET", &path, &s, None).status, 200);
}
