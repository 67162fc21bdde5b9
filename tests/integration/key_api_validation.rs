//! Input rules of `POST`/`PATCH /api/personal_api_keys/` (SPEC §10.3, reference §11): label,
//! scopes, `scoped_teams` and `scoped_organizations`, with upstream's messages, codes and
//! attrs, in upstream's field order.

use serde_json::{Value, json};

use crate::harness::{Resp, Session, TestServer};
use crate::support::*;

const PASSWORD: &str = "a strong password 123!";
const KEYS: &str = "/api/personal_api_keys/";
const TEAMS_NOT_MEMBER: &str = "You must be a member of all teams that you are scoping the key to.";
const ORGS_NOT_MEMBER: &str =
    "You must be a member of all organizations that you are scoping the key to.";

fn logged_in() -> (TestServer, Session, usersvc::model::UserRow) {
    let srv = TestServer::start();
    let user = srv.user_with_password("alice@example.com", false, Some(PASSWORD));
    let session = srv.login("alice@example.com", PASSWORD);
    (srv, session, user)
}

fn post(srv: &TestServer, s: &Session, body: Value) -> Resp {
    srv.session_request("POST", KEYS, s, Some(&body))
}

#[track_caller]
fn created(res: &Resp) -> Value {
    assert_eq!(
        res.status,
        201,
        "body: {}",
        String::from_utf8_lossy(&res.body)
    );
    res.json()
}

fn key_count(srv: &TestServer) -> i64 {
    srv.query_i64("SELECT count(*) FROM personal_api_keys")
}

#[test]
fn label_rules() {
    let (srv, s, _) = logged_in();
    let scopes = json!(["*"]);
    let cases = [
        (
            json!({"scopes": scopes}),
            "required",
            "This field is required.",
        ),
        (
            json!({"label": "", "scopes": scopes}),
            "blank",
            "This field may not be blank.",
        ),
        (
            json!({"label": "  \t ", "scopes": scopes}),
            "blank",
            "This field may not be blank.",
        ),
        (
            json!({"label": null, "scopes": scopes}),
            "null",
            "This field may not be null.",
        ),
        (
            json!({"label": ["a"], "scopes": scopes}),
            "invalid_input",
            "Not a valid string.",
        ),
        (
            json!({"label": "é".repeat(41), "scopes": scopes}),
            "max_length",
            "Ensure this field has no more than 40 characters.",
        ),
        // The label is checked before the scopes.
        (
            json!({"label": "", "scopes": []}),
            "blank",
            "This field may not be blank.",
        ),
    ];
    for (body, code, detail) in cases {
        assert_field_error(&post(&srv, &s, body), "label", code, detail);
    }
    assert_eq!(key_count(&srv), 0);
    let key = created(&post(
        &srv,
        &s,
        json!({"label": "é".repeat(40), "scopes": scopes}),
    ));
    assert_eq!(key["label"], "é".repeat(40));
    let key = created(&post(&srv, &s, json!({"label": 42, "scopes": scopes})));
    assert_eq!(key["label"], "42");
}

#[test]
fn scope_rules() {
    let (srv, s, _) = logged_in();
    let with = |scopes: Value| post(&srv, &s, json!({"label": "l", "scopes": scopes}));
    assert_field_error(
        &post(&srv, &s, json!({"label": "l"})),
        "scopes",
        "required",
        "This field is required.",
    );
    assert_field_error(
        &with(json!(null)),
        "scopes",
        "null",
        "This field may not be null.",
    );
    for (value, kind) in [
        (json!("user:read"), "str"),
        (json!(1), "int"),
        (json!(1.5), "float"),
        (json!(true), "bool"),
        (json!({"user:read": true}), "dict"),
    ] {
        assert_field_error(
            &with(value),
            "scopes",
            "not_a_list",
            &format!("Expected a list of items but got type \"{kind}\"."),
        );
    }
    assert_field_error(
        &with(json!([])),
        "scopes",
        "empty",
        "This list may not be empty.",
    );
    for bad in [
        "team:read",
        "user:delete",
        "user",
        "USER:READ",
        "user:read:x",
        "**",
    ] {
        assert_field_error(
            &with(json!(["user:read", bad])),
            "scopes",
            "invalid_input",
            &format!("Invalid scope: {bad}"),
        );
    }
    // The first invalid scope is the one reported.
    assert_field_error(
        &with(json!(["a:read", "b:read"])),
        "scopes",
        "invalid_input",
        "Invalid scope: a:read",
    );
    // Items are DRF CharFields: errors name the item.
    assert_field_error(
        &with(json!(["*", ""])),
        "scopes__1",
        "blank",
        "This field may not be blank.",
    );
    assert_field_error(
        &with(json!([null])),
        "scopes__0",
        "null",
        "This field may not be null.",
    );
    assert_field_error(
        &with(json!([{}])),
        "scopes__0",
        "invalid_input",
        "Not a valid string.",
    );
    assert_eq!(key_count(&srv), 0);

    let key = created(&with(json!([
        "user:write",
        "*",
        " user:write",
        "user:read",
        "*"
    ])));
    assert_eq!(key["scopes"], json!(["user:write", "*", "user:read"]));
}

#[test]
fn scoping_to_own_teams_and_organizations_is_stored_and_returned() {
    let (srv, s, alice) = logged_in();
    let org = srv.org("Acme");
    let web = srv.team(&org, "Web");
    let app = srv.team(&org, "App");
    srv.member(&alice, &org, 1);

    let key = created(&post(
        &srv,
        &s,
        json!({
            "label": "scoped",
            "scopes": ["user:read"],
            "scoped_teams": [app.id, web.id],
            "scoped_organizations": [org.uuid],
        }),
    ));
    assert_eq!(key["scoped_teams"], json!([app.id, web.id]));
    assert_eq!(key["scoped_organizations"], json!([org.uuid]));
    let id = key["id"].as_str().expect("id").to_owned();
    let value = key["value"].as_str().expect("value").to_owned();
    let path = format!("{KEYS}{id}/");

    // Informational only: /api/users/ ignores them (reference §3.3).
    assert_eq!(me(&srv, &value)["email"], "alice@example.com");
    let fetched = ok_json(&srv.session_request("GET", &path, &s, None));
    assert_eq!(fetched["scoped_teams"], json!([app.id, web.id]));
    assert_eq!(
        ok_json(&srv.get(&format!("{KEYS}@current/"), &value))["scoped_organizations"],
        json!([org.uuid])
    );
    let listed = ok_json(&srv.session_request("GET", KEYS, &s, None));
    assert_eq!(listed[0]["scoped_teams"], json!([app.id, web.id]));

    // PATCH: an absent field keeps its value, null clears it, [] is kept as given.
    let res = srv.session_request("PATCH", &path, &s, Some(&json!({"label": "renamed"})));
    assert_eq!(ok_json(&res)["scoped_teams"], json!([app.id, web.id]));
    let res = srv.session_request(
        "PATCH",
        &path,
        &s,
        Some(&json!({"scoped_teams": null, "scoped_organizations": []})),
    );
    let patched = ok_json(&res);
    assert_eq!(patched["scoped_teams"], Value::Null);
    assert_eq!(patched["scoped_organizations"], json!([]));
    assert_eq!(patched["label"], "renamed");

    // Roll keeps them.
    let rolled = ok_json(&srv.session_request("POST", &format!("{path}roll/"), &s, None));
    assert_eq!(rolled["scoped_organizations"], json!([]));

    // Numeric strings and integral floats are team ids too (DRF IntegerField); the uuid may be
    // written in any form Python's uuid.UUID reads, and is returned as given.
    let braced = format!("{{{}}}", org.uuid.to_uppercase());
    let key = created(&post(
        &srv,
        &s,
        json!({
            "label": "forms",
            "scopes": ["*"],
            "scoped_teams": [format!(" {} ", web.id), f64::from(u32::try_from(app.id).expect("small id"))],
            "scoped_organizations": [braced],
        }),
    ));
    assert_eq!(key["scoped_teams"], json!([web.id, app.id]));
    assert_eq!(key["scoped_organizations"], json!([braced]));
    let key = created(&post(
        &srv,
        &s,
        json!({"label": "unscoped", "scopes": ["*"], "scoped_teams": null, "scoped_organizations": null}),
    ));
    assert_eq!(key["scoped_teams"], Value::Null);
    assert_eq!(key["scoped_organizations"], Value::Null);
}

#[test]
fn scoping_to_teams_or_organizations_of_others_is_refused() {
    let (srv, s, alice) = logged_in();
    let mine = srv.org("Mine");
    let my_team = srv.team(&mine, "Mine");
    srv.member(&alice, &mine, 1);
    let theirs = srv.org("Theirs");
    let their_team = srv.team(&theirs, "Theirs");
    let body = |teams: Value, orgs: Value| json!({"label": "l", "scopes": ["*"], "scoped_teams": teams, "scoped_organizations": orgs});
    let teams_error = |res: &Resp| {
        assert_field_error(res, "scoped_teams", "invalid_input", TEAMS_NOT_MEMBER);
    };
    teams_error(&post(
        &srv,
        &s,
        body(json!([my_team.id, their_team.id]), Value::Null),
    ));
    teams_error(&post(&srv, &s, body(json!([999_999]), Value::Null)));
    // Upstream counts the teams it finds: a repeated id does not match the count.
    teams_error(&post(
        &srv,
        &s,
        body(json!([my_team.id, my_team.id]), Value::Null),
    ));
    assert_field_error(
        &post(&srv, &s, body(json!(["seven"]), Value::Null)),
        "scoped_teams__0",
        "invalid_input",
        "A valid integer is required.",
    );
    assert_field_error(
        &post(&srv, &s, body(json!([my_team.id, 1.5]), Value::Null)),
        "scoped_teams__1",
        "invalid_input",
        "A valid integer is required.",
    );
    assert_field_error(
        &post(&srv, &s, body(json!(my_team.id), Value::Null)),
        "scoped_teams",
        "not_a_list",
        "Expected a list of items but got type \"int\".",
    );

    let orgs_error = |res: &Resp| {
        assert_field_error(
            res,
            "scoped_organizations",
            "invalid_input",
            ORGS_NOT_MEMBER,
        );
    };
    orgs_error(&post(
        &srv,
        &s,
        body(Value::Null, json!([mine.uuid, theirs.uuid])),
    ));
    orgs_error(&post(
        &srv,
        &s,
        body(Value::Null, json!([usersvc::auth::new_uuid()])),
    ));
    // Every item is parsed before membership is checked.
    assert_field_error(
        &post(
            &srv,
            &s,
            body(Value::Null, json!([theirs.uuid, "not-a-uuid"])),
        ),
        "scoped_organizations",
        "invalid_input",
        "Invalid organization UUID",
    );
    assert_field_error(
        &post(&srv, &s, body(Value::Null, json!([""]))),
        "scoped_organizations__0",
        "blank",
        "This field may not be blank.",
    );
    assert_field_error(
        &post(&srv, &s, body(Value::Null, json!("x"))),
        "scoped_organizations",
        "not_a_list",
        "Expected a list of items but got type \"str\".",
    );
    // Field order: label, scopes, scoped_teams, scoped_organizations.
    teams_error(&post(&srv, &s, body(json!([their_team.id]), json!("x"))));
    assert_field_error(
        &post(
            &srv,
            &s,
            json!({"label": "l", "scopes": ["bad"], "scoped_teams": [their_team.id]}),
        ),
        "scopes",
        "invalid_input",
        "Invalid scope: bad",
    );
    assert_eq!(key_count(&srv), 0);

    // The same rules on PATCH, which then changes nothing.
    let key = created(&post(
        &srv,
        &s,
        body(json!([my_team.id]), json!([mine.uuid])),
    ));
    let path = format!("{KEYS}{}/", key["id"].as_str().expect("id"));
    let res = srv.session_request(
        "PATCH",
        &path,
        &s,
        Some(&json!({"label": "changed", "scoped_teams": [their_team.id]})),
    );
    teams_error(&res);
    let res = srv.session_request(
        "PATCH",
        &path,
        &s,
        Some(&json!({"scoped_organizations": [theirs.uuid]})),
    );
    orgs_error(&res);
    let fetched = ok_json(&srv.session_request("GET", &path, &s, None));
    assert_eq!(fetched["label"], "l");
    assert_eq!(fetched["scoped_teams"], json!([my_team.id]));
    assert_eq!(fetched["scoped_organizations"], json!([mine.uuid]));
}

#[test]
fn the_cli_and_the_api_share_the_key_rules() {
    let (srv, s, _) = logged_in();
    let out = srv.cli(&[
        "keys",
        "create",
        "--user",
        "alice@example.com",
        "--label",
        " from cli ",
        "--scopes",
        "user:read,*,user:read",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_key: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(cli_key["label"], "from cli");
    assert_eq!(cli_key["scopes"], json!(["user:read", "*"]));
    let mut expected = cli_key.clone();
    expected["value"] = Value::Null;
    assert_eq!(
        ok_json(&srv.session_request("GET", KEYS, &s, None)),
        json!([expected])
    );

    for i in 2..=10 {
        created(&post(
            &srv,
            &s,
            json!({"label": format!("k{i}"), "scopes": ["*"]}),
        ));
    }
    let out = srv.cli(&[
        "keys",
        "create",
        "--user",
        "alice@example.com",
        "--label",
        "k11",
        "--scopes",
        "*",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "usersvc: You can only have 10 personal API keys. Remove an existing key before creating a new one."
    );
    let out = srv.cli(&[
        "keys",
        "create",
        "--user",
        "alice@example.com",
        "--label",
        "x",
        "--scopes",
        "user:admin",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "usersvc: Invalid scope: user:admin"
    );
    assert_eq!(key_count(&srv), 10);
}
