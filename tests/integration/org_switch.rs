//! `set_current_organization` / `set_current_team` (reference §5.3.4, SPEC §10.1 steps 12–13,
//! §10.3): existence and membership checks, the mismatch rule, and what becomes current.

use serde_json::json;

use crate::harness::TestServer;
use crate::support::*;
use usersvc::model::{OrgRow, TeamBasic, UserRow};

struct World {
    srv: TestServer,
    user: UserRow,
    key: String,
    a: OrgRow,
    a1: TeamBasic,
    a2: TeamBasic,
    b: OrgRow,
    b1: TeamBasic,
    empty: OrgRow,
    foreign: OrgRow,
    foreign_team: TeamBasic,
}

/// alice belongs to A (teams a1, a2; current), B (team b1) and Empty (no team); Foreign (with
/// a team) is somebody else's.
fn world() -> World {
    let srv = TestServer::start();
    let a = srv.org("Alpha");
    let a1 = srv.team(&a, "A1");
    let a2 = srv.team(&a, "A2");
    let b = srv.org("Beta");
    let b1 = srv.team(&b, "B1");
    let empty = srv.org("Empty");
    let foreign = srv.org("Foreign");
    let foreign_team = srv.team(&foreign, "F1");
    let user = srv.user("alice@example.com", false);
    srv.member(&user, &a, 1);
    srv.member(&user, &b, 8);
    srv.member(&user, &empty, 1);
    let stranger = srv.user("stranger@example.com", false);
    srv.member(&stranger, &foreign, 15);
    let key = srv.key(&user, &["*"]);
    World {
        srv,
        user,
        key,
        a,
        a1,
        a2,
        b,
        b1,
        empty,
        foreign,
        foreign_team,
    }
}

fn patch(w: &World, body: serde_json::Value) -> crate::harness::Resp {
    w.srv.patch("/api/users/@me/", &w.key, body)
}

#[track_caller]
fn assert_current(w: &World, org: &OrgRow, team: Option<&TeamBasic>) {
    let body = me(&w.srv, &w.key);
    assert_eq!(body["organization"]["id"], json!(org.uuid));
    assert_eq!(
        body["team"]["id"],
        team.map_or(json!(null), |t| json!(t.id))
    );
}

#[test]
fn initial_current_org_is_the_first_membership() {
    let w = world();
    assert_current(&w, &w.a, Some(&w.a1));
}

#[test]
fn non_member_org_is_400_does_not_exist() {
    let w = world();
    let res = patch(&w, json!({"set_current_organization": w.foreign.uuid}));
    assert_field_error(
        &res,
        "set_current_organization",
        "does_not_exist",
        &format!("Object with id={} does not exist.", w.foreign.uuid),
    );
    assert_current(&w, &w.a, Some(&w.a1));
}

#[test]
fn unknown_org_uuid_is_400_does_not_exist() {
    let w = world();
    let unknown = "018f0000-0000-7000-8000-000000000000";
    let res = patch(&w, json!({"set_current_organization": unknown}));
    assert_field_error(
        &res,
        "set_current_organization",
        "does_not_exist",
        &format!("Object with id={unknown} does not exist."),
    );
}

#[test]
fn non_uuid_org_is_400_not_a_valid_uuid_with_curly_quotes() {
    let w = world();
    let res = patch(&w, json!({"set_current_organization": "abc"}));
    assert_field_error(
        &res,
        "set_current_organization",
        "invalid_input",
        "“abc” is not a valid UUID.",
    );
    let res = patch(&w, json!({"set_current_organization": "alpha"}));
    assert_field_error(
        &res,
        "set_current_organization",
        "invalid_input",
        "“alpha” is not a valid UUID.",
    );
}

#[test]
fn non_numeric_team_is_400_does_not_exist() {
    let w = world();
    let res = patch(&w, json!({"set_current_team": "abc"}));
    assert_field_error(
        &res,
        "set_current_team",
        "does_not_exist",
        "Object with id=abc does not exist.",
    );
}

#[test]
fn unknown_team_is_400_does_not_exist() {
    let w = world();
    let res = patch(&w, json!({"set_current_team": 3_983_838}));
    assert_field_error(
        &res,
        "set_current_team",
        "does_not_exist",
        "Object with id=3983838 does not exist.",
    );
    let res = patch(&w, json!({"set_current_team": "3983838"}));
    assert_field_error(
        &res,
        "set_current_team",
        "does_not_exist",
        "Object with id=3983838 does not exist.",
    );
}

#[test]
fn another_orgs_team_is_400_does_not_exist() {
    let w = world();
    let res = patch(&w, json!({"set_current_team": w.foreign_team.id}));
    assert_field_error(
        &res,
        "set_current_team",
        "does_not_exist",
        &format!("Object with id={} does not exist.", w.foreign_team.id),
    );
    assert_current(&w, &w.a, Some(&w.a1));
}

#[test]
fn mismatched_org_and_team_is_400_on_set_current_team_and_changes_nothing() {
    let w = world();
    let res = patch(
        &w,
        json!({"set_current_organization": w.b.uuid, "set_current_team": w.a2.id, "first_name": "X"}),
    );
    assert_field_error(
        &res,
        "set_current_team",
        "invalid_input",
        "Team must belong to the same organization in set_current_organization.",
    );
    assert_current(&w, &w.a, Some(&w.a1));
    assert_eq!(me(&w.srv, &w.key)["first_name"], json!(""));
}

#[test]
fn org_existence_errors_come_before_the_mismatch_rule() {
    let w = world();
    let res = patch(
        &w,
        json!({"set_current_organization": w.foreign.uuid, "set_current_team": w.a1.id}),
    );
    assert_field_error(
        &res,
        "set_current_organization",
        "does_not_exist",
        &format!("Object with id={} does not exist.", w.foreign.uuid),
    );
    let res = patch(
        &w,
        json!({"set_current_organization": w.b.uuid, "set_current_team": w.foreign_team.id}),
    );
    assert_field_error(
        &res,
        "set_current_team",
        "does_not_exist",
        &format!("Object with id={} does not exist.", w.foreign_team.id),
    );
}

#[test]
fn both_valid_switches_org_and_team() {
    let w = world();
    let got = ok_json(&patch(
        &w,
        json!({"set_current_organization": w.b.uuid, "set_current_team": w.b1.id}),
    ));
    assert_eq!(got["organization"]["id"], json!(w.b.uuid));
    assert_eq!(got["organization"]["membership_level"], json!(8));
    assert_eq!(got["team"]["id"], json!(w.b1.id));
    assert_current(&w, &w.b, Some(&w.b1));
    assert_eq!(
        stored_current(&w.srv, w.user.id),
        (Some(w.b.id), Some(w.b1.id))
    );
    assert!(got.get("set_current_organization").is_none());
    assert!(got.get("set_current_team").is_none());
}

#[test]
fn team_id_may_be_sent_as_a_string() {
    let w = world();
    let got = ok_json(&patch(
        &w,
        json!({"set_current_organization": w.a.uuid, "set_current_team": w.a2.id.to_string()}),
    ));
    assert_eq!(got["team"]["id"], json!(w.a2.id));
}

#[test]
fn org_only_makes_its_first_team_current() {
    let w = world();
    let got = ok_json(&patch(&w, json!({"set_current_organization": w.b.uuid})));
    assert_eq!(got["organization"]["id"], json!(w.b.uuid));
    assert_eq!(got["team"]["id"], json!(w.b1.id));
    // Back to A: its lowest-id team, not the one used before.
    ok_json(&patch(&w, json!({"set_current_team": w.a2.id})));
    let got = ok_json(&patch(&w, json!({"set_current_organization": w.b.uuid})));
    assert_eq!(got["team"]["id"], json!(w.b1.id));
    let got = ok_json(&patch(&w, json!({"set_current_organization": w.a.uuid})));
    assert_eq!(got["team"]["id"], json!(w.a1.id));
}

#[test]
fn org_only_without_teams_makes_the_team_null() {
    let w = world();
    let got = ok_json(&patch(
        &w,
        json!({"set_current_organization": w.empty.uuid}),
    ));
    assert_eq!(got["organization"]["id"], json!(w.empty.uuid));
    assert_eq!(got["team"], json!(null));
    assert_eq!(stored_current(&w.srv, w.user.id), (Some(w.empty.id), None));
    assert_current(&w, &w.empty, None);
}

#[test]
fn org_uuid_is_matched_case_insensitively() {
    let w = world();
    let upper = w.b.uuid.to_uppercase();
    let got = ok_json(&patch(&w, json!({"set_current_organization": upper})));
    assert_eq!(got["organization"]["id"], json!(w.b.uuid));
}

#[test]
fn team_only_makes_its_organization_current() {
    let w = world();
    let got = ok_json(&patch(&w, json!({"set_current_team": w.b1.id})));
    assert_eq!(got["organization"]["id"], json!(w.b.uuid));
    assert_eq!(got["team"]["id"], json!(w.b1.id));
    assert_eq!(
        stored_current(&w.srv, w.user.id),
        (Some(w.b.id), Some(w.b1.id))
    );
    let got = ok_json(&patch(&w, json!({"set_current_team": w.a2.id})));
    assert_eq!(got["organization"]["id"], json!(w.a.uuid));
    assert_eq!(got["team"]["id"], json!(w.a2.id));
}

#[test]
fn staff_switching_for_another_user_checks_that_users_memberships() {
    let w = world();
    let staff = w.srv.user("admin@example.com", true);
    w.srv.member(&staff, &w.foreign, 1);
    let staff_key = w.srv.key(&staff, &["*"]);
    let path = format!("/api/users/{}/", w.user.uuid);
    // The staff user belongs to Foreign, alice does not.
    let res = w.srv.patch(
        &path,
        &staff_key,
        json!({"set_current_organization": w.foreign.uuid}),
    );
    assert_field_error(
        &res,
        "set_current_organization",
        "does_not_exist",
        &format!("Object with id={} does not exist.", w.foreign.uuid),
    );
    // Alice belongs to Beta, the staff user does not.
    let got = ok_json(&w.srv.patch(
        &path,
        &staff_key,
        json!({"set_current_organization": w.b.uuid}),
    ));
    assert_eq!(got["organization"]["id"], json!(w.b.uuid));
    assert_eq!(got["team"]["id"], json!(w.b1.id));
    let got = ok_json(
        &w.srv
            .patch(&path, &staff_key, json!({"set_current_team": w.a2.id})),
    );
    assert_eq!(got["team"]["id"], json!(w.a2.id));
    assert_current(&w, &w.a, Some(&w.a2));
}

#[test]
fn wrong_types_for_the_switch_fields_are_not_valid_strings() {
    let w = world();
    let res = patch(&w, json!({"set_current_organization": true}));
    assert_field_error(
        &res,
        "set_current_organization",
        "invalid_input",
        "Not a valid string.",
    );
    let res = patch(&w, json!({"set_current_team": [1]}));
    assert_field_error(
        &res,
        "set_current_team",
        "invalid_input",
        "Not a valid string.",
    );
}
