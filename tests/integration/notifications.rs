//! `notification_settings` writes (reference §4.3, SPEC §10.2): per-key validation with
//! verbatim messages, merging of dict-valued keys, and the full map stored after a write.

use serde_json::{Value, json};

use crate::harness::TestServer;
use crate::support::*;

fn setup() -> (TestServer, String, i64) {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["user:write"]);
    (srv, key, user.id)
}

fn set(srv: &TestServer, key: &str, settings: Value) -> crate::harness::Resp {
    srv.patch(
        "/api/users/@me/",
        key,
        json!({"notification_settings": settings}),
    )
}

#[track_caller]
fn assert_invalid(srv: &TestServer, key: &str, settings: Value, detail: &str) {
    let res = set(srv, key, settings.clone());
    assert_eq!(
        res.status,
        400,
        "{settings}: {}",
        String::from_utf8_lossy(&res.body)
    );
    assert_field_error(&res, "notification_settings", "invalid_input", detail);
}

fn stored(srv: &TestServer, user_id: i64) -> Option<Value> {
    let text: Option<String> = db(srv)
        .query_row(
            "SELECT notification_settings FROM users WHERE id = ?1",
            [user_id],
            |r| r.get(0),
        )
        .unwrap();
    text.map(|t| serde_json::from_str(&t).unwrap())
}

#[test]
fn a_boolean_setting_round_trips_in_default_order() {
    let (srv, key, _) = setup();
    let got = ok_json(&set(
        &srv,
        &key,
        json!({"plugin_disabled": false, "all_weekly_digest_disabled": true}),
    ));
    let mut expected = notification_defaults();
    expected["plugin_disabled"] = json!(false);
    expected["all_weekly_digest_disabled"] = json!(true);
    assert_eq!(got["notification_settings"], expected);
    assert_eq!(
        keys_of(&got["notification_settings"]),
        keys_of(&notification_defaults())
    );
    assert_eq!(me(&srv, &key)["notification_settings"], expected);
}

#[test]
fn keys_outside_the_request_keep_their_values() {
    let (srv, key, _) = setup();
    set(&srv, &key, json!({"plugin_disabled": false}));
    let got = ok_json(&set(&srv, &key, json!({"discussions_mentioned": false})));
    assert_eq!(
        got["notification_settings"]["plugin_disabled"],
        json!(false)
    );
    assert_eq!(
        got["notification_settings"]["discussions_mentioned"],
        json!(false)
    );
}

#[test]
fn the_stored_map_after_a_write_contains_all_defaults() {
    let (srv, key, id) = setup();
    assert_eq!(stored(&srv, id), None);
    assert_eq!(
        set(&srv, &key, json!({"plugin_disabled": false})).status,
        200
    );
    let map = stored(&srv, id).expect("stored after write");
    let mut expected = notification_defaults();
    expected["plugin_disabled"] = json!(false);
    assert_eq!(map, expected);
    assert_eq!(keys_of(&map), keys_of(&notification_defaults()));
}

#[test]
fn dict_keys_without_defaults_are_appended_after_the_defaults() {
    let (srv, key, _) = setup();
    let got = ok_json(&set(
        &srv,
        &key,
        json!({
            "web_analytics_weekly_digest_project_enabled": {"7": true},
            "error_tracking_weekly_digest_project_enabled": {"3": false}
        }),
    ));
    let ns = &got["notification_settings"];
    let mut expected_keys = keys_of(&notification_defaults());
    expected_keys.push("web_analytics_weekly_digest_project_enabled".into());
    expected_keys.push("error_tracking_weekly_digest_project_enabled".into());
    assert_eq!(keys_of(ns), expected_keys);
    assert_eq!(
        ns["web_analytics_weekly_digest_project_enabled"],
        json!({"7": true})
    );
    assert_eq!(
        ns["error_tracking_weekly_digest_project_enabled"],
        json!({"3": false})
    );
}

#[test]
fn dict_valued_keys_merge_key_by_key() {
    let (srv, key, _) = setup();
    set(
        &srv,
        &key,
        json!({"project_weekly_digest_disabled": {"123": true}}),
    );
    let got = ok_json(&set(
        &srv,
        &key,
        json!({"project_weekly_digest_disabled": {"456": true}}),
    ));
    assert_eq!(
        got["notification_settings"]["project_weekly_digest_disabled"],
        json!({"123": true, "456": true})
    );
    let got = ok_json(&set(
        &srv,
        &key,
        json!({"project_weekly_digest_disabled": {"123": false}}),
    ));
    assert_eq!(
        got["notification_settings"]["project_weekly_digest_disabled"],
        json!({"123": false, "456": true})
    );
    // An empty map removes nothing.
    let got = ok_json(&set(
        &srv,
        &key,
        json!({"project_weekly_digest_disabled": {}}),
    ));
    assert_eq!(
        got["notification_settings"]["project_weekly_digest_disabled"],
        json!({"123": false, "456": true})
    );
    set(
        &srv,
        &key,
        json!({"organization_member_join_email_disabled": {"org-a": true}}),
    );
    let got = ok_json(&set(
        &srv,
        &key,
        json!({"organization_member_join_email_disabled": {"org-b": false}}),
    ));
    assert_eq!(
        got["notification_settings"]["organization_member_join_email_disabled"],
        json!({"org-a": true, "org-b": false})
    );
}

#[test]
fn unknown_key_is_refused() {
    let (srv, key, _) = setup();
    assert_invalid(
        &srv,
        &key,
        json!({"foo": true}),
        "Key foo is not valid as a key for notification settings",
    );
}

#[test]
fn non_bool_value_is_refused_python_style() {
    let (srv, key, _) = setup();
    for (value, printed) in [
        (json!(1), "1"),
        (json!(0), "0"),
        (json!("yes"), "yes"),
        (json!("true"), "true"),
        (json!(null), "None"),
        (json!([1, 2]), "[1, 2]"),
        (json!({"a": 1}), "{'a': 1}"),
        (json!(1.5), "1.5"),
    ] {
        assert_invalid(
            &srv,
            &key,
            json!({"plugin_disabled": value}),
            &format!(
                "{printed} is not a valid type for notification settings, should be <class 'bool'>"
            ),
        );
    }
}

#[test]
fn dict_valued_key_with_a_non_dict_is_refused() {
    let (srv, key, _) = setup();
    for k in [
        "project_weekly_digest_disabled",
        "error_tracking_weekly_digest_project_enabled",
        "web_analytics_weekly_digest_project_enabled",
        "organization_member_join_email_disabled",
    ] {
        for value in [json!(true), json!([1]), json!("x"), json!(null)] {
            assert_invalid(
                &srv,
                &key,
                json!({k: value}),
                &format!("{k} must be a dictionary mapping IDs to boolean values"),
            );
        }
    }
}

#[test]
fn dict_valued_key_with_non_bool_values_is_refused() {
    let (srv, key, _) = setup();
    for (value, ty) in [
        (json!("x"), "str"),
        (json!(1), "int"),
        (json!(1.5), "float"),
        (json!(null), "NoneType"),
        (json!([]), "list"),
        (json!({}), "dict"),
    ] {
        assert_invalid(
            &srv,
            &key,
            json!({"project_weekly_digest_disabled": {"1": true, "2": value}}),
            &format!("Notification setting values must be boolean, got <class '{ty}'> instead"),
        );
    }
}

#[test]
fn threshold_out_of_range_is_refused() {
    let (srv, key, _) = setup();
    for (value, printed) in [(json!(1.5), "1.5"), (json!(-0.1), "-0.1"), (json!(2), "2")] {
        assert_invalid(
            &srv,
            &key,
            json!({"data_pipeline_error_threshold": value}),
            &format!("data_pipeline_error_threshold must be between 0.0 and 1.0, got {printed}"),
        );
    }
}

#[test]
fn threshold_that_is_not_a_number_is_refused() {
    let (srv, key, _) = setup();
    for (value, ty) in [
        (json!("x"), "str"),
        (json!("0.5"), "str"),
        (json!(null), "NoneType"),
        (json!([]), "list"),
    ] {
        assert_invalid(
            &srv,
            &key,
            json!({"data_pipeline_error_threshold": value}),
            &format!("data_pipeline_error_threshold must be a number, got <class '{ty}'> instead"),
        );
    }
}

#[test]
fn threshold_in_range_is_stored_as_a_float() {
    let (srv, key, _) = setup();
    for (value, expected) in [
        (json!(0.5), json!(0.5)),
        (json!(1), json!(1.0)),
        (json!(0), json!(0.0)),
    ] {
        let got = ok_json(&set(
            &srv,
            &key,
            json!({"data_pipeline_error_threshold": value}),
        ));
        let v = &got["notification_settings"]["data_pipeline_error_threshold"];
        assert_eq!(*v, expected);
        assert!(v.is_f64(), "{v} is not a float");
    }
}

#[test]
fn not_a_dict_is_refused_with_not_a_dict() {
    let (srv, key, _) = setup();
    for (value, ty) in [
        (json!("x"), "str"),
        (json!([]), "list"),
        (json!(1), "int"),
        (json!(true), "bool"),
    ] {
        let res = set(&srv, &key, value);
        assert_field_error(
            &res,
            "notification_settings",
            "not_a_dict",
            &format!("Expected a dictionary of items but got type \"{ty}\"."),
        );
    }
}

#[test]
fn keys_are_validated_in_the_order_sent() {
    let (srv, key, _) = setup();
    assert_invalid(
        &srv,
        &key,
        json!({"foo": true, "plugin_disabled": 1}),
        "Key foo is not valid as a key for notification settings",
    );
    assert_invalid(
        &srv,
        &key,
        json!({"plugin_disabled": 1, "foo": true}),
        "1 is not a valid type for notification settings, should be <class 'bool'>",
    );
}

#[test]
fn a_refused_write_changes_nothing() {
    let (srv, key, id) = setup();
    set(
        &srv,
        &key,
        json!({"project_weekly_digest_disabled": {"1": true}}),
    );
    let before = stored(&srv, id);
    assert_invalid(
        &srv,
        &key,
        json!({"plugin_disabled": false, "project_weekly_digest_disabled": {"2": true}, "bar": true}),
        "Key bar is not valid as a key for notification settings",
    );
    assert_eq!(stored(&srv, id), before);
    assert_eq!(
        me(&srv, &key)["notification_settings"]["plugin_disabled"],
        json!(true)
    );
}
