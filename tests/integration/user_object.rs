//! The user object (SPEC §3.4, §10.2, §10.3; reference §4.1, §4.3, §4.4): fields and their
//! order, defaults of a fresh user, nested team/organization shapes, and the lazily chosen
//! current team.

use serde_json::{Value, json};

use crate::harness::TestServer;
use crate::support::*;

#[test]
fn user_object_has_the_reference_fields_in_order() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["user:read"]);
    let body = me(&srv, &key);
    // §4.1 lists 38 fields; the four write-only ones are never returned.
    let expected = readable_user_fields();
    assert_eq!(expected.len(), 34);
    assert_keys(&body, &expected);
    for wo in [
        "set_current_organization",
        "set_current_team",
        "password",
        "current_password",
    ] {
        assert!(body.get(wo).is_none(), "{wo} must not be returned");
    }
}

#[test]
fn fresh_user_has_the_documented_defaults() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["user:read"]);
    let body = me(&srv, &key);
    let expected = json!({
        "date_joined": body["date_joined"],
        "uuid": user.uuid,
        "distinct_id": body["distinct_id"],
        "first_name": "",
        "last_name": "",
        "email": "alice@example.com",
        "pending_email": null,
        "is_email_verified": null,
        "notification_settings": notification_defaults(),
        "anonymize_data": false,
        "allow_impersonation": true,
        "toolbar_mode": "toolbar",
        "has_password": false,
        "id": user.id,
        "is_staff": false,
        "is_impersonated": false,
        "is_impersonated_until": null,
        "is_impersonated_read_only": null,
        "sensitive_session_expires_at": null,
        "team": null,
        "organization": null,
        "organizations": [],
        "events_column_config": {"active": "DEFAULT"},
        "is_2fa_enabled": false,
        "has_social_auth": false,
        "has_sso_enforcement": false,
        "has_seen_product_intro_for": null,
        "scene_personalisation": [],
        "theme_mode": null,
        "hedgehog_config": null,
        "allow_sidebar_suggestions": false,
        "shortcut_position": "above",
        "role_at_organization": null,
        "passkeys_enabled_for_2fa": false
    });
    assert_eq!(body, expected);
    assert_eq!(keys_of(&body), keys_of(&expected));
    assert_eq!(
        keys_of(&body["notification_settings"]),
        keys_of(&notification_defaults())
    );
}

#[test]
fn date_joined_has_six_fraction_digits_and_z() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["user:read"]);
    let body = me(&srv, &key);
    let dj = body["date_joined"].as_str().unwrap();
    assert!(is_iso_micros(dj), "{dj}");
    assert_eq!(dj, usersvc::clock::iso(user.date_joined));
}

#[test]
fn identifiers_have_their_documented_shapes() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["user:read"]);
    let body = me(&srv, &key);
    let uuid = body["uuid"].as_str().unwrap();
    assert!(is_uuid_v7(uuid), "{uuid}");
    assert!(body["id"].is_i64());
    let distinct = body["distinct_id"].as_str().unwrap();
    assert!(!distinct.is_empty() && distinct.len() <= 200, "{distinct}");
    assert!(
        distinct
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
        "{distinct}"
    );
    let other = srv.user("bob@example.com", false);
    assert_ne!(other.distinct_id, user.distinct_id);
}

#[test]
fn has_password_is_true_for_a_user_with_a_password() {
    let srv = TestServer::start();
    let user = srv.user_with_password(
        "alice@example.com",
        false,
        Some("correct horse battery staple"),
    );
    let key = srv.key(&user, &["user:read"]);
    assert_eq!(me(&srv, &key)["has_password"], json!(true));
}

#[test]
fn is_staff_reflects_the_user() {
    let srv = TestServer::start();
    let user = srv.user("admin@example.com", true);
    let key = srv.key(&user, &["user:read"]);
    assert_eq!(me(&srv, &key)["is_staff"], json!(true));
}

fn team_json(team: &usersvc::model::TeamBasic, org_uuid: &str) -> Value {
    json!({
        "id": team.id,
        "uuid": team.uuid,
        "organization": org_uuid,
        "project_id": team.id,
        "api_token": team.api_token,
        "name": team.name,
        "completed_snippet_onboarding": false,
        "has_completed_onboarding_for": null,
        "ingested_event": false,
        "is_demo": false,
        "timezone": "UTC",
        "access_control": false
    })
}

#[test]
fn nested_team_has_the_team_basic_shape() {
    let srv = TestServer::start();
    let org = srv.org("Acme Corp");
    let t1 = srv.team(&org, "Web");
    srv.team(&org, "Mobile");
    let user = srv.user("alice@example.com", false);
    srv.member(&user, &org, 8);
    let key = srv.key(&user, &["user:read"]);
    let body = me(&srv, &key);
    let team = &body["team"];
    assert_keys(team, &TEAM_BASIC_FIELDS);
    assert_eq!(*team, team_json(&t1, &org.uuid));
    assert!(is_uuid_v7(team["uuid"].as_str().unwrap()));
    assert!(is_prefixed_base62(
        team["api_token"].as_str().unwrap(),
        "phc_",
        43
    ));
}

#[test]
fn nested_organization_has_the_full_organization_shape() {
    let srv = TestServer::start();
    let org = srv.org("Acme Corp");
    let t1 = srv.team(&org, "Web");
    let t2 = srv.team(&org, "Mobile");
    let user = srv.user("alice@example.com", false);
    srv.member(&user, &org, 8);
    let colleague = srv.user("bob@example.com", false);
    srv.member(&colleague, &org, 1);
    let key = srv.key(&user, &["user:read"]);
    let body = me(&srv, &key);
    let o = &body["organization"];
    assert_keys(o, &ORGANIZATION_FIELDS);
    let created = o["created_at"].as_str().unwrap();
    assert!(is_iso_micros(created), "{created}");
    assert!(is_iso_micros(o["updated_at"].as_str().unwrap()));
    let expected = json!({
        "id": org.uuid,
        "name": "Acme Corp",
        "slug": "acme-corp",
        "logo_media_id": null,
        "created_at": usersvc::clock::iso(org.created_at),
        "updated_at": usersvc::clock::iso(org.updated_at),
        "membership_level": 8,
        "plugins_access_level": 0,
        "teams": [team_json(&t1, &org.uuid), team_json(&t2, &org.uuid)],
        "projects": [
            {"id": t1.id, "organization_id": org.uuid, "name": "Web"},
            {"id": t2.id, "organization_id": org.uuid, "name": "Mobile"}
        ],
        "available_product_features": [],
        "is_member_join_email_enabled": true,
        "metadata": {},
        "customer_id": null,
        "enforce_2fa": null,
        "members_can_invite": true,
        "members_can_use_personal_api_keys": true,
        "allow_publicly_shared_resources": true,
        "member_count": 2,
        "is_ai_data_processing_approved": null,
        "default_experiment_stats_method": "bayesian",
        "default_anonymize_ips": false,
        "default_role_id": null,
        "is_active": true,
        "is_not_active_reason": null
    });
    assert_eq!(*o, expected);
    for team in o["teams"].as_array().unwrap() {
        assert_keys(team, &TEAM_BASIC_FIELDS);
    }
    for project in o["projects"].as_array().unwrap() {
        assert_keys(project, &["id", "organization_id", "name"]);
    }
}

#[test]
fn organizations_have_the_organization_basic_shape_in_membership_order() {
    let srv = TestServer::start();
    let first_created = srv.org("Alpha");
    let second_created = srv.org("Beta");
    srv.team(&first_created, "A1");
    srv.team(&second_created, "B1");
    let user = srv.user("alice@example.com", false);
    // Joined Beta first, then Alpha (as owner).
    srv.member(&user, &second_created, 1);
    srv.member(&user, &first_created, 15);
    let key = srv.key(&user, &["user:read"]);
    let body = me(&srv, &key);
    let orgs = body["organizations"].as_array().unwrap();
    assert_eq!(orgs.len(), 2);
    for o in orgs {
        assert_keys(o, &ORGANIZATION_BASIC_FIELDS);
    }
    assert_eq!(
        body["organizations"],
        json!([
            {
                "id": second_created.uuid, "name": "Beta", "slug": "beta", "logo_media_id": null,
                "membership_level": 1, "members_can_use_personal_api_keys": true, "is_active": true,
                "is_not_active_reason": null, "is_pending_deletion": false
            },
            {
                "id": first_created.uuid, "name": "Alpha", "slug": "alpha", "logo_media_id": null,
                "membership_level": 15, "members_can_use_personal_api_keys": true, "is_active": true,
                "is_not_active_reason": null, "is_pending_deletion": false
            }
        ])
    );
    // The first membership became current when it was created.
    assert_eq!(body["organization"]["id"], json!(second_created.uuid));
}

#[test]
fn membership_level_is_that_of_the_serialized_user() {
    let srv = TestServer::start();
    let org = srv.org("Acme");
    srv.team(&org, "Web");
    let staff = srv.user("admin@example.com", true);
    srv.member(&staff, &org, 1);
    let owner = srv.user("owner@example.com", false);
    srv.member(&owner, &org, 15);
    let key = srv.key(&staff, &["user:read"]);
    let body = ok_json(&srv.get(&format!("/api/users/{}/", owner.uuid), &key));
    assert_eq!(body["organization"]["membership_level"], json!(15));
    assert_eq!(body["organizations"][0]["membership_level"], json!(15));
    assert_eq!(me(&srv, &key)["organization"]["membership_level"], json!(1));
    // In the listing too.
    let page = ok_json(&srv.get("/api/users/?email=owner@example.com", &key));
    assert_eq!(
        page["results"][0]["organization"]["membership_level"],
        json!(15)
    );
}

#[test]
fn staff_reading_a_user_of_an_org_it_is_not_in_sees_that_users_level() {
    let srv = TestServer::start();
    let org = srv.org("Acme");
    let staff = srv.user("admin@example.com", true);
    let admin = srv.user("member@example.com", false);
    srv.member(&admin, &org, 8);
    let key = srv.key(&staff, &["user:read"]);
    let body = ok_json(&srv.get(&format!("/api/users/{}/", admin.uuid), &key));
    assert_eq!(body["organization"]["membership_level"], json!(8));
    assert_eq!(body["organizations"][0]["membership_level"], json!(8));
}

#[test]
fn an_org_without_teams_gives_a_null_team() {
    let srv = TestServer::start();
    let org = srv.org("Empty");
    let user = srv.user("alice@example.com", false);
    srv.member(&user, &org, 1);
    let key = srv.key(&user, &["user:read"]);
    let body = me(&srv, &key);
    assert_eq!(body["team"], json!(null));
    assert_eq!(body["organization"]["id"], json!(org.uuid));
    assert_eq!(body["organization"]["teams"], json!([]));
    assert_eq!(body["organization"]["projects"], json!([]));
    assert_eq!(body["organization"]["member_count"], json!(1));
}

#[test]
fn lazy_current_team_is_the_orgs_lowest_id_team_and_is_persisted() {
    let srv = TestServer::start();
    let org = srv.org("Acme");
    let user = srv.user("alice@example.com", false);
    // The membership exists before the org has any team: current team stays NULL.
    srv.member(&user, &org, 1);
    assert_eq!(stored_current(&srv, user.id), (Some(org.id), None));
    let t1 = srv.team(&org, "First");
    let t2 = srv.team(&org, "Second");
    assert!(t1.id < t2.id);
    let key = srv.key(&user, &["user:read"]);
    let body = me(&srv, &key);
    assert_eq!(body["team"]["id"], json!(t1.id));
    assert_eq!(body["organization"]["id"], json!(org.uuid));
    let persisted = poll(|| {
        let (o, t) = stored_current(&srv, user.id);
        (t == Some(t1.id)).then_some(o)
    });
    assert_eq!(
        persisted,
        Some(Some(org.id)),
        "current team was not persisted within 2 s"
    );
    // Reads keep returning the same team.
    assert_eq!(me(&srv, &key)["team"]["id"], json!(t1.id));
}

#[test]
fn lazy_current_team_without_a_current_org_uses_the_earliest_membership() {
    let srv = TestServer::start();
    let a = srv.org("Alpha");
    let b = srv.org("Beta");
    let b1 = srv.team(&b, "B1");
    let a1 = srv.team(&a, "A1");
    srv.team(&a, "A2");
    let user = srv.user("alice@example.com", false);
    srv.member(&user, &a, 1);
    srv.member(&user, &b, 1);
    db(&srv)
        .execute(
            "UPDATE users SET current_organization_id = NULL, current_team_id = NULL WHERE id = ?1",
            [user.id],
        )
        .unwrap();
    let key = srv.key(&user, &["user:read"]);
    let body = me(&srv, &key);
    assert_eq!(body["organization"]["id"], json!(a.uuid));
    assert_eq!(body["team"]["id"], json!(a1.id));
    let persisted = poll(|| {
        let cur = stored_current(&srv, user.id);
        (cur == (Some(a.id), Some(a1.id))).then_some(())
    });
    assert!(
        persisted.is_some(),
        "lazy choice was not persisted: {:?}",
        stored_current(&srv, user.id)
    );

    // With a current org but no current team, that org's lowest team is chosen.
    db(&srv)
        .execute(
            "UPDATE users SET current_organization_id = ?2, current_team_id = NULL WHERE id = ?1",
            [user.id, b.id],
        )
        .unwrap();
    let body = me(&srv, &key);
    assert_eq!(body["organization"]["id"], json!(b.uuid));
    assert_eq!(body["team"]["id"], json!(b1.id));
    let persisted =
        poll(|| (stored_current(&srv, user.id) == (Some(b.id), Some(b1.id))).then_some(()));
    assert!(
        persisted.is_some(),
        "lazy choice was not persisted: {:?}",
        stored_current(&srv, user.id)
    );
}

#[test]
fn user_without_memberships_has_no_team_or_organization() {
    let srv = TestServer::start();
    srv.org("Acme");
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["user:read"]);
    let body = me(&srv, &key);
    assert_eq!(body["team"], json!(null));
    assert_eq!(body["organization"], json!(null));
    assert_eq!(body["organizations"], json!([]));
    assert_eq!(stored_current(&srv, user.id), (None, None));
}

#[test]
fn member_count_counts_the_orgs_members() {
    let srv = TestServer::start();
    let org = srv.org("Acme");
    let other_org = srv.org("Other");
    let user = srv.user("alice@example.com", false);
    srv.member(&user, &org, 1);
    for i in 0..3 {
        let u = srv.user(&format!("m{i}@example.com"), false);
        srv.member(&u, &org, 1);
    }
    let outsider = srv.user("out@example.com", false);
    srv.member(&outsider, &other_org, 1);
    let key = srv.key(&user, &["user:read"]);
    assert_eq!(me(&srv, &key)["organization"]["member_count"], json!(4));
}

/// The count is kept by triggers: joining, leaving, deactivation, reactivation and deletion
/// (the CLI, another process) all show on the very next request.
#[test]
fn member_count_follows_every_change_of_membership_and_activity() {
    let srv = TestServer::start();
    let org = srv.org("Acme");
    let user = srv.user("alice@example.com", false);
    srv.member(&user, &org, 1);
    let key = srv.key(&user, &["user:read"]);
    let count = || me(&srv, &key)["organization"]["member_count"].clone();
    let bob = srv.user("bob@example.com", false);
    let carol = srv.user("carol@example.com", false);
    srv.member(&bob, &org, 1);
    srv.member(&carol, &org, 8);
    assert_eq!(count(), json!(3));
    srv.member(&carol, &org, 15); // a level change is no new member
    assert_eq!(count(), json!(3));
    srv.set_active(&bob, false);
    assert_eq!(count(), json!(2));
    srv.member(&bob, &org, 1); // an inactive member does not count
    assert_eq!(count(), json!(2));
    srv.set_active(&bob, true);
    assert_eq!(count(), json!(3));
    assert!(
        srv.cli(&[
            "members",
            "remove",
            "--org",
            &org.slug,
            "--email",
            "carol@example.com"
        ])
        .status
        .success()
    );
    assert_eq!(count(), json!(2));
    assert!(
        srv.cli(&["users", "delete", "bob@example.com"])
            .status
            .success()
    );
    assert_eq!(count(), json!(1));
}
