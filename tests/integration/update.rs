//! `PATCH`/`PUT /api/users/{uuid|@me}/` (SPEC §3.6, §10.1 steps 7–13, §10.2; reference §5.3):
//! writable fields, validation envelopes, first-error order, atomicity, ignored keys,
//! `is_staff`, the key email/password rule and PUT.

use serde_json::{Value, json};

use crate::harness::TestServer;
use crate::support::*;

fn setup() -> (TestServer, String) {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["user:write"]);
    (srv, key)
}

/// PATCHes `body`, asserts 200, and checks `field` is `expected` in the response and in a
/// fresh GET.
#[track_caller]
fn round_trip(srv: &TestServer, key: &str, body: Value, field: &str, expected: Value) {
    let res = srv.patch("/api/users/@me/", key, body.clone());
    let got = ok_json(&res);
    assert_eq!(got[field], expected, "response to {body}");
    assert_keys(&got, &readable_user_fields());
    assert_eq!(me(srv, key)[field], expected, "GET after {body}");
}

#[test]
fn first_and_last_name_round_trip() {
    let (srv, key) = setup();
    round_trip(
        &srv,
        &key,
        json!({"first_name": "Alice"}),
        "first_name",
        json!("Alice"),
    );
    round_trip(
        &srv,
        &key,
        json!({"last_name": "Liddell"}),
        "last_name",
        json!("Liddell"),
    );
    round_trip(
        &srv,
        &key,
        json!({"first_name": ""}),
        "first_name",
        json!(""),
    );
    assert_eq!(me(&srv, &key)["last_name"], json!("Liddell"));
}

#[test]
fn names_are_trimmed_and_numbers_become_strings() {
    let (srv, key) = setup();
    round_trip(
        &srv,
        &key,
        json!({"first_name": "  Alice \t"}),
        "first_name",
        json!("Alice"),
    );
    round_trip(
        &srv,
        &key,
        json!({"last_name": 42}),
        "last_name",
        json!("42"),
    );
}

#[test]
fn name_max_length_counts_code_points() {
    let (srv, key) = setup();
    let ok = "é".repeat(150);
    round_trip(
        &srv,
        &key,
        json!({"first_name": ok}),
        "first_name",
        json!(ok),
    );
    let long = "a".repeat(151);
    let res = srv.patch("/api/users/@me/", &key, json!({"first_name": long}));
    assert_field_error(
        &res,
        "first_name",
        "max_length",
        "Ensure this field has no more than 150 characters.",
    );
    let res = srv.patch(
        "/api/users/@me/",
        &key,
        json!({"last_name": "é".repeat(151)}),
    );
    assert_field_error(
        &res,
        "last_name",
        "max_length",
        "Ensure this field has no more than 150 characters.",
    );
}

#[test]
fn name_of_a_wrong_type_is_not_a_valid_string() {
    let (srv, key) = setup();
    for bad in [json!(true), json!([]), json!({"a": 1})] {
        let res = srv.patch("/api/users/@me/", &key, json!({"first_name": bad}));
        assert_field_error(&res, "first_name", "invalid_input", "Not a valid string.");
    }
}

#[test]
fn null_name_may_not_be_null() {
    let (srv, key) = setup();
    let res = srv.patch("/api/users/@me/", &key, json!({"first_name": null}));
    assert_field_error(&res, "first_name", "null", "This field may not be null.");
    let res = srv.patch("/api/users/@me/", &key, json!({"last_name": null}));
    assert_field_error(&res, "last_name", "null", "This field may not be null.");
}

#[test]
fn anonymize_data_accepts_drf_booleans_and_null() {
    let (srv, key) = setup();
    for (input, expected) in [
        (json!(true), json!(true)),
        (json!(false), json!(false)),
        (json!("yes"), json!(true)),
        (json!("no"), json!(false)),
        (json!(1), json!(true)),
        (json!(0), json!(false)),
        (json!("true"), json!(true)),
        (json!("1"), json!(true)),
        (json!("on"), json!(true)),
        (json!("off"), json!(false)),
        (json!(null), json!(null)),
    ] {
        round_trip(
            &srv,
            &key,
            json!({"anonymize_data": input}),
            "anonymize_data",
            expected,
        );
    }
}

#[test]
fn anonymize_data_maybe_is_not_a_valid_boolean() {
    let (srv, key) = setup();
    for bad in [json!("maybe"), json!(2), json!([]), json!({"a": true})] {
        let res = srv.patch("/api/users/@me/", &key, json!({"anonymize_data": bad}));
        assert_field_error(
            &res,
            "anonymize_data",
            "invalid_input",
            "Must be a valid boolean.",
        );
    }
}

#[test]
fn allow_impersonation_and_sidebar_suggestions_round_trip() {
    let (srv, key) = setup();
    round_trip(
        &srv,
        &key,
        json!({"allow_impersonation": false}),
        "allow_impersonation",
        json!(false),
    );
    round_trip(
        &srv,
        &key,
        json!({"allow_impersonation": null}),
        "allow_impersonation",
        json!(null),
    );
    round_trip(
        &srv,
        &key,
        json!({"allow_sidebar_suggestions": true}),
        "allow_sidebar_suggestions",
        json!(true),
    );
    let res = srv.patch(
        "/api/users/@me/",
        &key,
        json!({"allow_sidebar_suggestions": "x"}),
    );
    assert_field_error(
        &res,
        "allow_sidebar_suggestions",
        "invalid_input",
        "Must be a valid boolean.",
    );
}

#[test]
fn toolbar_mode_round_trips_its_choices() {
    let (srv, key) = setup();
    for v in [json!("disabled"), json!("toolbar"), json!(""), json!(null)] {
        round_trip(&srv, &key, json!({"toolbar_mode": v}), "toolbar_mode", v);
    }
    let res = srv.patch("/api/users/@me/", &key, json!({"toolbar_mode": "x"}));
    assert_field_error(
        &res,
        "toolbar_mode",
        "invalid_choice",
        "\"x\" is not a valid choice.",
    );
}

#[test]
fn events_column_config_is_replaced_wholesale() {
    let (srv, key) = setup();
    round_trip(
        &srv,
        &key,
        json!({"events_column_config": {"active": ["event", "person"], "extra": 1}}),
        "events_column_config",
        json!({"active": ["event", "person"], "extra": 1}),
    );
    round_trip(
        &srv,
        &key,
        json!({"events_column_config": {"active": ["timestamp"]}}),
        "events_column_config",
        json!({"active": ["timestamp"]}),
    );
    let res = srv.patch(
        "/api/users/@me/",
        &key,
        json!({"events_column_config": null}),
    );
    assert_field_error(
        &res,
        "events_column_config",
        "null",
        "This field may not be null.",
    );
}

#[test]
fn has_seen_product_intro_for_is_replaced_wholesale() {
    let (srv, key) = setup();
    round_trip(
        &srv,
        &key,
        json!({"has_seen_product_intro_for": {"surveys": true}}),
        "has_seen_product_intro_for",
        json!({"surveys": true}),
    );
    round_trip(
        &srv,
        &key,
        json!({"has_seen_product_intro_for": {"experiments": false}}),
        "has_seen_product_intro_for",
        json!({"experiments": false}),
    );
    round_trip(
        &srv,
        &key,
        json!({"has_seen_product_intro_for": null}),
        "has_seen_product_intro_for",
        json!(null),
    );
}

#[test]
fn theme_mode_round_trips_its_choices() {
    let (srv, key) = setup();
    for v in [
        json!("light"),
        json!("dark"),
        json!("system"),
        json!(""),
        json!(null),
    ] {
        round_trip(&srv, &key, json!({"theme_mode": v}), "theme_mode", v);
    }
}

#[test]
fn theme_mode_x_is_an_invalid_choice() {
    let (srv, key) = setup();
    let res = srv.patch("/api/users/@me/", &key, json!({"theme_mode": "x"}));
    assert_field_error(
        &res,
        "theme_mode",
        "invalid_choice",
        "\"x\" is not a valid choice.",
    );
    let res = srv.patch("/api/users/@me/", &key, json!({"theme_mode": "Dark"}));
    assert_field_error(
        &res,
        "theme_mode",
        "invalid_choice",
        "\"Dark\" is not a valid choice.",
    );
}

#[test]
fn hedgehog_config_in_patch_is_replaced_wholesale() {
    let (srv, key) = setup();
    round_trip(
        &srv,
        &key,
        json!({"hedgehog_config": {"enabled": true, "color": "blue"}}),
        "hedgehog_config",
        json!({"enabled": true, "color": "blue"}),
    );
    round_trip(
        &srv,
        &key,
        json!({"hedgehog_config": {"skin": "robohog"}}),
        "hedgehog_config",
        json!({"skin": "robohog"}),
    );
    assert_eq!(
        ok_json(&srv.get("/api/users/@me/hedgehog_config/", &key)),
        json!({"skin": "robohog"})
    );
    round_trip(
        &srv,
        &key,
        json!({"hedgehog_config": null}),
        "hedgehog_config",
        json!(null),
    );
    assert_eq!(
        ok_json(&srv.get("/api/users/@me/hedgehog_config/", &key)),
        json!({})
    );
}

#[test]
fn hedgehog_config_list_in_patch_is_400_on_hedgehog_config() {
    let (srv, key) = setup();
    let res = srv.patch("/api/users/@me/", &key, json!({"hedgehog_config": [1, 2]}));
    assert_field_error(
        &res,
        "hedgehog_config",
        "invalid_input",
        "Invalid data. Expected a dictionary, but got list.",
    );
    let res = srv.patch("/api/users/@me/", &key, json!({"hedgehog_config": "x"}));
    assert_field_error(
        &res,
        "hedgehog_config",
        "invalid_input",
        "Invalid data. Expected a dictionary, but got str.",
    );
}

#[test]
fn hedgehog_config_over_64_kib_in_patch_is_400_max_length() {
    let (srv, key) = setup();
    let res = srv.patch(
        "/api/users/@me/",
        &key,
        json!({"hedgehog_config": {"a": "x".repeat(65_529)}}),
    );
    assert_field_error(
        &res,
        "hedgehog_config",
        "max_length",
        "Ensure this field has no more than 65536 bytes.",
    );
}

#[test]
fn shortcut_position_round_trips_and_null_reads_as_above() {
    let (srv, key) = setup();
    round_trip(
        &srv,
        &key,
        json!({"shortcut_position": "below"}),
        "shortcut_position",
        json!("below"),
    );
    round_trip(
        &srv,
        &key,
        json!({"shortcut_position": "hidden"}),
        "shortcut_position",
        json!("hidden"),
    );
    round_trip(
        &srv,
        &key,
        json!({"shortcut_position": ""}),
        "shortcut_position",
        json!(""),
    );
    round_trip(
        &srv,
        &key,
        json!({"shortcut_position": null}),
        "shortcut_position",
        json!("above"),
    );
    round_trip(
        &srv,
        &key,
        json!({"shortcut_position": "above"}),
        "shortcut_position",
        json!("above"),
    );
    let res = srv.patch(
        "/api/users/@me/",
        &key,
        json!({"shortcut_position": "left"}),
    );
    assert_field_error(
        &res,
        "shortcut_position",
        "invalid_choice",
        "\"left\" is not a valid choice.",
    );
}

#[test]
fn role_at_organization_round_trips_every_choice() {
    let (srv, key) = setup();
    for role in [
        "engineering",
        "data",
        "product",
        "founder",
        "leadership",
        "marketing",
        "sales",
        "other",
    ] {
        round_trip(
            &srv,
            &key,
            json!({"role_at_organization": role}),
            "role_at_organization",
            json!(role),
        );
    }
}

#[test]
fn role_at_organization_refuses_null_empty_and_unknown() {
    let (srv, key) = setup();
    let res = srv.patch(
        "/api/users/@me/",
        &key,
        json!({"role_at_organization": null}),
    );
    assert_field_error(
        &res,
        "role_at_organization",
        "null",
        "This field may not be null.",
    );
    let res = srv.patch("/api/users/@me/", &key, json!({"role_at_organization": ""}));
    assert_field_error(
        &res,
        "role_at_organization",
        "invalid_choice",
        "\"\" is not a valid choice.",
    );
    let res = srv.patch(
        "/api/users/@me/",
        &key,
        json!({"role_at_organization": "ceo"}),
    );
    assert_field_error(
        &res,
        "role_at_organization",
        "invalid_choice",
        "\"ceo\" is not a valid choice.",
    );
}

#[test]
fn passkeys_enabled_for_2fa_true_is_400_no_passkeys() {
    let (srv, key) = setup();
    let res = srv.patch(
        "/api/users/@me/",
        &key,
        json!({"passkeys_enabled_for_2fa": true}),
    );
    assert_field_error(
        &res,
        "passkeys_enabled_for_2fa",
        "no_passkeys",
        "You must have at least one passkey set up before enabling passkeys for 2FA.",
    );
    round_trip(
        &srv,
        &key,
        json!({"passkeys_enabled_for_2fa": false}),
        "passkeys_enabled_for_2fa",
        json!(false),
    );
}

#[test]
fn several_fields_in_one_patch_all_apply() {
    let srv = TestServer::start();
    let org = srv.org("Acme");
    srv.team(&org, "Web");
    let user = srv.user("alice@example.com", false);
    srv.member(&user, &org, 1);
    let key = srv.key(&user, &["*"]);
    let before = me(&srv, &key);
    let body = json!({
        "first_name": "Alice",
        "anonymize_data": true,
        "events_column_config": {"active": ["x"]},
        "notification_settings": {"plugin_disabled": false},
        "has_seen_product_intro_for": {"a": true},
        "role_at_organization": "engineering",
        "uuid": "018f0000-0000-7000-8000-000000000000",
        "id": 999_999,
        "organization": "nope",
        "team": 123
    });
    let got = ok_json(&srv.patch("/api/users/@me/", &key, body));
    assert_eq!(got["first_name"], json!("Alice"));
    assert_eq!(got["anonymize_data"], json!(true));
    assert_eq!(got["events_column_config"], json!({"active": ["x"]}));
    assert_eq!(
        got["notification_settings"]["plugin_disabled"],
        json!(false)
    );
    assert_eq!(got["has_seen_product_intro_for"], json!({"a": true}));
    assert_eq!(got["role_at_organization"], json!("engineering"));
    assert_eq!(got["uuid"], before["uuid"]);
    assert_eq!(got["id"], before["id"]);
    assert_eq!(got["organization"], before["organization"]);
    assert_eq!(got["team"], before["team"]);
}

#[test]
fn read_only_and_unknown_keys_are_ignored() {
    let srv = TestServer::start();
    let org = srv.org("Acme");
    srv.team(&org, "Web");
    let user = srv.user("alice@example.com", false);
    srv.member(&user, &org, 1);
    let key = srv.key(&user, &["*"]);
    let before = me(&srv, &key);
    let body = json!({
        "uuid": "018f0000-0000-7000-8000-000000000000",
        "id": 12345,
        "distinct_id": "hijack",
        "date_joined": "2000-01-01T00:00:00.000000Z",
        "pending_email": "p@example.com",
        "is_email_verified": true,
        "has_password": true,
        "is_impersonated": true,
        "is_2fa_enabled": true,
        "has_social_auth": true,
        "scene_personalisation": [{"scene": "x", "dashboard": 1}],
        "organization": {"id": "x"},
        "organizations": [],
        "team": null,
        "organization_name": "x",
        "completely_unknown": [1, 2, 3]
    });
    for _ in 0..3 {
        let got = ok_json(&srv.patch("/api/users/@me/", &key, body.clone()));
        assert_eq!(got, before);
    }
    assert_eq!(me(&srv, &key), before);
}

#[test]
fn first_error_in_field_order_wins() {
    let (srv, key) = setup();
    // Sent in the opposite order: first_name comes before theme_mode in §4.1.
    let res = srv.patch(
        "/api/users/@me/",
        &key,
        json!({"theme_mode": "x", "first_name": true}),
    );
    assert_field_error(&res, "first_name", "invalid_input", "Not a valid string.");
    let res = srv.patch(
        "/api/users/@me/",
        &key,
        json!({"role_at_organization": "x", "anonymize_data": "maybe", "last_name": "ok"}),
    );
    assert_field_error(
        &res,
        "anonymize_data",
        "invalid_input",
        "Must be a valid boolean.",
    );
    let res = srv.patch(
        "/api/users/@me/",
        &key,
        json!({"passkeys_enabled_for_2fa": true, "shortcut_position": "x", "hedgehog_config": []}),
    );
    assert_field_error(
        &res,
        "hedgehog_config",
        "invalid_input",
        "Invalid data. Expected a dictionary, but got list.",
    );
    let res = srv.patch(
        "/api/users/@me/",
        &key,
        json!({"theme_mode": "x", "notification_settings": {"foo": true}}),
    );
    assert_field_error(
        &res,
        "notification_settings",
        "invalid_input",
        "Key foo is not valid as a key for notification settings",
    );
}

#[test]
fn a_failed_patch_changes_nothing_at_all() {
    let (srv, key) = setup();
    let before = me(&srv, &key);
    let res = srv.patch(
        "/api/users/@me/",
        &key,
        json!({
            "first_name": "Changed",
            "last_name": "Changed",
            "notification_settings": {"plugin_disabled": false},
            "hedgehog_config": {"a": 1},
            "theme_mode": "x"
        }),
    );
    assert_field_error(
        &res,
        "theme_mode",
        "invalid_choice",
        "\"x\" is not a valid choice.",
    );
    assert_eq!(me(&srv, &key), before);
    // A refused set_current_team after valid fields also leaves everything as it was.
    let res = srv.patch(
        "/api/users/@me/",
        &key,
        json!({"first_name": "Changed", "set_current_team": 3_983_838}),
    );
    assert_eq!(res.status, 400);
    assert_eq!(me(&srv, &key), before);
}

#[test]
fn is_staff_from_a_non_staff_key_is_403_even_when_false() {
    let (srv, key) = setup();
    for v in [json!(true), json!(false), json!(null)] {
        let res = srv.patch(
            "/api/users/@me/",
            &key,
            json!({"is_staff": v, "first_name": "Sneaky"}),
        );
        res.assert_error(
            403,
            "authentication_error",
            "permission_denied",
            "You are not a staff user, contact your instance admin.",
            None,
        );
    }
    let after = me(&srv, &key);
    assert_eq!(after["is_staff"], json!(false));
    assert_eq!(after["first_name"], json!(""));
}

#[test]
fn is_staff_check_comes_before_field_validation() {
    let (srv, key) = setup();
    let res = srv.patch(
        "/api/users/@me/",
        &key,
        json!({"first_name": true, "is_staff": false}),
    );
    res.assert_error(
        403,
        "authentication_error",
        "permission_denied",
        "You are not a staff user, contact your instance admin.",
        None,
    );
}

#[test]
fn staff_can_promote_and_demote_another_user() {
    let srv = TestServer::start();
    let staff = srv.user("admin@example.com", true);
    let other = srv.user("bob@example.com", false);
    let key = srv.key(&staff, &["user:write"]);
    let other_key = srv.key(&other, &["user:read"]);
    let path = format!("/api/users/{}/", other.uuid);
    assert_eq!(
        ok_json(&srv.patch(&path, &key, json!({"is_staff": true})))["is_staff"],
        json!(true)
    );
    assert_eq!(me(&srv, &other_key)["is_staff"], json!(true));
    // Now staff, bob sees everybody.
    assert_eq!(
        ok_json(&srv.get("/api/users/", &other_key))["count"],
        json!(2)
    );
    assert_eq!(
        ok_json(&srv.patch(&path, &key, json!({"is_staff": false})))["is_staff"],
        json!(false)
    );
    assert_eq!(me(&srv, &other_key)["is_staff"], json!(false));
    assert_eq!(
        ok_json(&srv.get("/api/users/", &other_key))["count"],
        json!(1)
    );
}

#[test]
fn staff_may_send_is_staff_about_itself() {
    let srv = TestServer::start();
    let staff = srv.user("admin@example.com", true);
    let key = srv.key(&staff, &["*"]);
    assert_eq!(
        ok_json(&srv.patch("/api/users/@me/", &key, json!({"is_staff": true})))["is_staff"],
        json!(true)
    );
    let res = srv.patch("/api/users/@me/", &key, json!({"is_staff": "maybe"}));
    assert_field_error(
        &res,
        "is_staff",
        "invalid_input",
        "Must be a valid boolean.",
    );
}

#[test]
fn staff_edits_another_users_fields_by_uuid() {
    let srv = TestServer::start();
    let staff = srv.user("admin@example.com", true);
    let other = srv.user("bob@example.com", false);
    let key = srv.key(&staff, &["*"]);
    let got = ok_json(&srv.patch(
        &format!("/api/users/{}/", other.uuid),
        &key,
        json!({"first_name": "Bob", "theme_mode": "dark"}),
    ));
    assert_eq!(got["email"], json!("bob@example.com"));
    assert_eq!(got["first_name"], json!("Bob"));
    assert_eq!(got["theme_mode"], json!("dark"));
    assert_eq!(me(&srv, &key)["first_name"], json!(""));
}

const KEY_EMAIL_DETAIL: &str = "You can only change your email or password from a logged-in session, not with an API key or token.";

#[test]
fn changing_email_with_a_key_is_403() {
    let (srv, key) = setup();
    let res = srv.patch("/api/users/@me/", &key, json!({"email": "new@example.com"}));
    res.assert_error(
        403,
        "authentication_error",
        "permission_denied",
        KEY_EMAIL_DETAIL,
        None,
    );
    assert_eq!(me(&srv, &key)["email"], json!("alice@example.com"));
    // Even an invalid address is refused by the key rule first.
    let res = srv.patch("/api/users/@me/", &key, json!({"email": "not an email"}));
    res.assert_error(
        403,
        "authentication_error",
        "permission_denied",
        KEY_EMAIL_DETAIL,
        None,
    );
}

#[test]
fn changing_only_the_email_case_with_a_key_is_written_directly() {
    let (srv, key) = setup();
    let got = ok_json(&srv.patch(
        "/api/users/@me/",
        &key,
        json!({"email": "Alice@Example.COM"}),
    ));
    assert_eq!(got["email"], json!("Alice@Example.COM"));
    assert_eq!(got["pending_email"], json!(null));
    assert_eq!(me(&srv, &key)["email"], json!("Alice@Example.COM"));
    // The same address (any case) is not a change either.
    let got = ok_json(&srv.patch(
        "/api/users/@me/",
        &key,
        json!({"email": "alice@example.com"}),
    ));
    assert_eq!(got["email"], json!("alice@example.com"));
}

#[test]
fn a_password_in_the_body_with_a_key_is_403() {
    let (srv, key) = setup();
    for body in [
        json!({"password": "a much better passphrase 42"}),
        json!({"password": ""}),
        json!({"password": null}),
        json!({"password": "a much better passphrase 42", "current_password": "x"}),
        json!({"first_name": "X", "password": 1}),
    ] {
        let res = srv.patch("/api/users/@me/", &key, body.clone());
        res.assert_error(
            403,
            "authentication_error",
            "permission_denied",
            KEY_EMAIL_DETAIL,
            None,
        );
    }
    assert_eq!(me(&srv, &key)["first_name"], json!(""));
}

#[test]
fn the_key_email_rule_comes_before_is_staff_and_field_errors() {
    let (srv, key) = setup();
    let res = srv.patch(
        "/api/users/@me/",
        &key,
        json!({"is_staff": true, "theme_mode": "x", "email": "new@example.com"}),
    );
    res.assert_error(
        403,
        "authentication_error",
        "permission_denied",
        KEY_EMAIL_DETAIL,
        None,
    );
}

#[test]
fn put_with_a_key_without_email_is_400_required_email() {
    let (srv, key) = setup();
    let res = put(&srv, "/api/users/@me/", &key, json!({"first_name": "X"}));
    assert_field_error(&res, "email", "required", "This field is required.");
    let res = put(&srv, "/api/users/@me/", &key, json!({}));
    assert_field_error(&res, "email", "required", "This field is required.");
    assert_eq!(me(&srv, &key)["first_name"], json!(""));
}

#[test]
fn put_with_a_key_and_the_same_email_is_400_required_password() {
    let (srv, key) = setup();
    let res = put(
        &srv,
        "/api/users/@me/",
        &key,
        json!({"email": "alice@example.com", "first_name": "X"}),
    );
    assert_field_error(&res, "password", "required", "This field is required.");
    assert_eq!(me(&srv, &key)["first_name"], json!(""));
}

#[test]
fn put_with_a_key_including_password_is_403() {
    let (srv, key) = setup();
    let res = put(
        &srv,
        "/api/users/@me/",
        &key,
        json!({"email": "alice@example.com", "password": "a much better passphrase 42"}),
    );
    res.assert_error(
        403,
        "authentication_error",
        "permission_denied",
        KEY_EMAIL_DETAIL,
        None,
    );
    let res = put(
        &srv,
        "/api/users/@me/",
        &key,
        json!({"password": "a much better passphrase 42"}),
    );
    res.assert_error(
        403,
        "authentication_error",
        "permission_denied",
        KEY_EMAIL_DETAIL,
        None,
    );
}

#[test]
fn put_with_a_read_key_is_403_missing_scope() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["user:read"]);
    let res = put(
        &srv,
        "/api/users/@me/",
        &key,
        json!({"email": "alice@example.com"}),
    );
    assert_missing_scope(&res, "user:write");
}
