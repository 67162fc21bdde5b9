//! `GET`/`PATCH /api/users/{uuid|@me}/hedgehog_config/` (SPEC §3.7, §10.1 step 9, §10.2;
//! reference §5.5).

use serde_json::json;

use crate::harness::TestServer;
use crate::support::*;

const PATH: &str = "/api/users/@me/hedgehog_config/";

fn setup() -> (TestServer, String) {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["*"]);
    (srv, key)
}

#[test]
fn get_is_an_empty_object_by_default() {
    let (srv, key) = setup();
    let res = srv.get(PATH, &key);
    assert_eq!(res.status, 200);
    assert_eq!(res.body, b"{}");
    assert_eq!(me(&srv, &key)["hedgehog_config"], json!(null));
}

#[test]
fn patch_replaces_wholesale_and_returns_it() {
    let (srv, key) = setup();
    let first =
        json!({"enabled": true, "color": "green", "accessories": ["beret"], "nested": {"a": 1}});
    assert_eq!(ok_json(&srv.patch(PATH, &key, first.clone())), first);
    assert_eq!(ok_json(&srv.get(PATH, &key)), first);
    assert_eq!(me(&srv, &key)["hedgehog_config"], first);
    let second = json!({"skin": "robohog"});
    assert_eq!(ok_json(&srv.patch(PATH, &key, second.clone())), second);
    assert_eq!(ok_json(&srv.get(PATH, &key)), second);
    assert_eq!(me(&srv, &key)["hedgehog_config"], second);
}

#[test]
fn patch_keeps_key_order() {
    let (srv, key) = setup();
    let res = keyed_raw(
        &srv,
        "PATCH",
        PATH,
        &key,
        &[("Content-Type", "application/json")],
        Some(br#"{"z":1,"a":2,"m":{"y":true,"b":null}}"#),
    );
    assert_eq!(res.body, br#"{"z":1,"a":2,"m":{"y":true,"b":null}}"#);
    assert_eq!(
        srv.get(PATH, &key).body,
        br#"{"z":1,"a":2,"m":{"y":true,"b":null}}"#
    );
}

#[test]
fn an_empty_patch_stores_an_empty_object() {
    let (srv, key) = setup();
    srv.patch(PATH, &key, json!({"a": 1}));
    let res = keyed_raw(&srv, "PATCH", PATH, &key, &[], None);
    assert_eq!(res.status, 200);
    assert_eq!(res.body, b"{}");
    assert_eq!(srv.get(PATH, &key).body, b"{}");
}

#[test]
fn a_list_body_is_400_with_a_null_attr() {
    let (srv, key) = setup();
    let res = srv.patch(PATH, &key, json!([1, 2]));
    res.assert_error(
        400,
        "validation_error",
        "invalid_input",
        "Invalid data. Expected a dictionary, but got list.",
        None,
    );
    let res = srv.patch(PATH, &key, json!("x"));
    res.assert_error(
        400,
        "validation_error",
        "invalid_input",
        "Invalid data. Expected a dictionary, but got str.",
        None,
    );
    assert_eq!(srv.get(PATH, &key).body, b"{}");
}

#[test]
fn a_null_body_is_400_may_not_be_null() {
    let (srv, key) = setup();
    let res = srv.patch(PATH, &key, json!(null));
    res.assert_error(
        400,
        "validation_error",
        "null",
        "This field may not be null.",
        None,
    );
}

#[test]
fn over_64_kib_is_400_max_length_on_hedgehog_config() {
    let (srv, key) = setup();
    // `{"a":"…"}` is 8 bytes plus the string.
    let at_limit = json!({"a": "x".repeat(65_536 - 8)});
    assert_eq!(at_limit.to_string().len(), 65_536);
    assert_eq!(srv.patch(PATH, &key, at_limit.clone()).status, 200);
    assert_eq!(ok_json(&srv.get(PATH, &key)), at_limit);
    let over = json!({"a": "x".repeat(65_536 - 7)});
    let res = srv.patch(PATH, &key, over);
    assert_field_error(
        &res,
        "hedgehog_config",
        "max_length",
        "Ensure this field has no more than 65536 bytes.",
    );
    assert_eq!(ok_json(&srv.get(PATH, &key)), at_limit);
}

#[test]
fn read_key_gets_it_but_cannot_patch_it() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["user:read"]);
    assert_eq!(srv.get(PATH, &key).status, 200);
    assert_missing_scope(&srv.patch(PATH, &key, json!({"a": 1})), "user:write");
    assert_eq!(srv.get(PATH, &key).body, b"{}");
}

#[test]
fn the_main_patch_and_the_action_share_the_value() {
    let (srv, key) = setup();
    srv.patch(
        "/api/users/@me/",
        &key,
        json!({"hedgehog_config": {"from": "main"}}),
    );
    assert_eq!(ok_json(&srv.get(PATH, &key)), json!({"from": "main"}));
    srv.patch(PATH, &key, json!({"from": "action"}));
    assert_eq!(me(&srv, &key)["hedgehog_config"], json!({"from": "action"}));
}

#[test]
fn staff_reads_and_writes_another_users_hedgehog() {
    let srv = TestServer::start();
    let staff = srv.user("admin@example.com", true);
    let other = srv.user("bob@example.com", false);
    let key = srv.key(&staff, &["*"]);
    let other_key = srv.key(&other, &["user:read"]);
    let path = format!("/api/users/{}/hedgehog_config/", other.uuid);
    assert_eq!(
        ok_json(&srv.patch(&path, &key, json!({"color": "red"}))),
        json!({"color": "red"})
    );
    assert_eq!(ok_json(&srv.get(PATH, &other_key)), json!({"color": "red"}));
    assert_eq!(srv.get(PATH, &key).body, b"{}");
}
