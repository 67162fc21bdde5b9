//! The authorization matrix (SPEC §3.1–§3.3, §10.1 steps 3–8; reference §3.2–§3.4, §5.2):
//! every core route against every kind of credential.

use serde_json::{Value, json};

use crate::harness::{Resp, TestServer};
use crate::support::*;

/// One (method, path, body) of the core routes.
struct Call {
    method: &'static str,
    path: String,
    body: Option<Value>,
}

impl Call {
    fn new(method: &'static str, path: impl Into<String>, body: Option<Value>) -> Call {
        Call {
            method,
            path: path.into(),
            body,
        }
    }

    fn is_write(&self) -> bool {
        self.method != "GET"
    }

    fn scope(&self) -> &'static str {
        if self.is_write() {
            "user:write"
        } else {
            "user:read"
        }
    }

    fn what(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    fn send(&self, srv: &TestServer, authorization: Option<&str>) -> Resp {
        with_authorization(
            srv,
            self.method,
            &self.path,
            authorization,
            self.body.as_ref(),
        )
    }

    fn send_key(&self, srv: &TestServer, key: &str) -> Resp {
        self.send(srv, Some(&format!("Bearer {key}")))
    }
}

/// The routes of the matrix: GET list, GET @me, GET uuid, PATCH @me, PUT @me, GET/PATCH
/// hedgehog_config (`uuid` is some other user's).
fn routes(uuid: &str) -> Vec<Call> {
    vec![
        Call::new("GET", "/api/users/", None),
        Call::new("GET", "/api/users/@me/", None),
        Call::new("GET", format!("/api/users/{uuid}/"), None),
        Call::new("PATCH", "/api/users/@me/", Some(json!({"first_name": "x"}))),
        Call::new("PUT", "/api/users/@me/", Some(json!({"first_name": "x"}))),
        Call::new("GET", "/api/users/@me/hedgehog_config/", None),
        Call::new(
            "PATCH",
            "/api/users/@me/hedgehog_config/",
            Some(json!({"a": 1})),
        ),
    ]
}

/// Every route that addresses a user by uuid.
fn uuid_routes(uuid: &str) -> Vec<Call> {
    vec![
        Call::new("GET", format!("/api/users/{uuid}/"), None),
        Call::new(
            "PATCH",
            format!("/api/users/{uuid}/"),
            Some(json!({"first_name": "x"})),
        ),
        Call::new(
            "PUT",
            format!("/api/users/{uuid}/"),
            Some(json!({"first_name": "x"})),
        ),
        Call::new("GET", format!("/api/users/{uuid}/hedgehog_config/"), None),
        Call::new(
            "PATCH",
            format!("/api/users/{uuid}/hedgehog_config/"),
            Some(json!({"a": 1})),
        ),
    ]
}

/// Asserts the response a caller who passed authentication, scope and object checks gets.
/// A PUT with a key can never succeed (it needs `password`, which keys may not send); with
/// a body lacking `email` it fails as `required` on `email` — past every access check.
#[track_caller]
fn assert_allowed(call: &Call, res: &Resp) {
    if call.method == "PUT" {
        assert_eq!(
            res.status,
            400,
            "{}: {}",
            call.what(),
            String::from_utf8_lossy(&res.body)
        );
        assert_field_error(res, "email", "required", "This field is required.");
    } else {
        assert_eq!(
            res.status,
            200,
            "{}: {}",
            call.what(),
            String::from_utf8_lossy(&res.body)
        );
    }
}

struct World {
    srv: TestServer,
    other_uuid: String,
}

fn world() -> World {
    let srv = TestServer::start();
    let other = srv.user("other@example.com", false);
    World {
        other_uuid: other.uuid,
        srv,
    }
}

#[test]
fn no_authorization_header_is_401_on_every_route() {
    let w = world();
    for call in routes(&w.other_uuid) {
        assert_not_authenticated(&call.send(&w.srv, None));
    }
}

#[test]
fn malformed_authorization_headers_are_401_not_authenticated_on_every_route() {
    let w = world();
    let user = w.srv.user("alice@example.com", true);
    let key = w.srv.key(&user, &["*"]);
    let headers = [
        "Basic abc".to_owned(),
        "Basic YWxpY2U6c2VjcmV0".to_owned(),
        "Bearer".to_owned(),
        format!("bearer {key}"),
        format!("BEARER {key}"),
        format!("Bearer{key}"),
        format!("Token {key}"),
        key.clone(),
    ];
    for call in routes(&w.other_uuid) {
        for h in &headers {
            let res = call.send(&w.srv, Some(h));
            assert_eq!(res.status, 401, "{} with {h:?}", call.what());
            assert_not_authenticated(&res);
        }
    }
}

#[test]
fn unknown_key_is_401_authentication_failed_on_every_route() {
    let w = world();
    for call in routes(&w.other_uuid) {
        assert_bad_key(&call.send_key(&w.srv, &unknown_key()));
        assert_bad_key(&call.send_key(&w.srv, "phx_short"));
    }
}

#[test]
fn revoked_key_is_401_authentication_failed_on_every_route() {
    let w = world();
    let user = w.srv.user("alice@example.com", true);
    let (id, key) = w.srv.key_with_id(&user, &["*"]);
    w.srv.revoke(&id);
    for call in routes(&w.other_uuid) {
        assert_bad_key(&call.send_key(&w.srv, &key));
    }
}

#[test]
fn key_of_a_deactivated_user_is_401_authentication_failed_on_every_route() {
    let w = world();
    let user = w.srv.user("alice@example.com", true);
    let key = w.srv.key(&user, &["*"]);
    w.srv.set_active(&user, false);
    for call in routes(&w.other_uuid) {
        assert_bad_key(&call.send_key(&w.srv, &key));
    }
}

#[test]
fn key_without_a_user_scope_is_403_missing_scope_on_every_route() {
    let w = world();
    let user = w.srv.user("alice@example.com", true);
    let key = w.srv.key(&user, &["feature_flag:read", "insight:write"]);
    for call in routes(&w.other_uuid) {
        assert_missing_scope(&call.send_key(&w.srv, &key), call.scope());
    }
}

#[test]
fn key_with_empty_scopes_is_refused_with_missing_scope_on_every_route() {
    let w = world();
    let user = w.srv.user("alice@example.com", true);
    let key = w.srv.key(&user, &[]);
    for call in routes(&w.other_uuid) {
        assert_missing_scope(&call.send_key(&w.srv, &key), call.scope());
    }
}

#[test]
fn read_key_reads_but_gets_403_missing_user_write_on_writes() {
    let w = world();
    let user = w.srv.user("alice@example.com", true);
    let key = w.srv.key(&user, &["user:read"]);
    for call in routes(&w.other_uuid) {
        let res = call.send_key(&w.srv, &key);
        if call.is_write() {
            assert_missing_scope(&res, "user:write");
        } else {
            assert_allowed(&call, &res);
        }
    }
}

#[test]
fn write_key_implies_read_on_every_route() {
    let w = world();
    let user = w.srv.user("alice@example.com", true);
    let key = w.srv.key(&user, &["user:write"]);
    for call in routes(&w.other_uuid) {
        assert_allowed(&call, &call.send_key(&w.srv, &key));
    }
}

#[test]
fn star_key_works_on_every_route() {
    let w = world();
    let user = w.srv.user("alice@example.com", true);
    let key = w.srv.key(&user, &["*"]);
    for call in routes(&w.other_uuid) {
        assert_allowed(&call, &call.send_key(&w.srv, &key));
    }
}

#[test]
fn read_and_write_scopes_together_work_on_every_route() {
    let w = world();
    let user = w.srv.user("alice@example.com", true);
    let key = w.srv.key(&user, &["user:read", "user:write"]);
    for call in routes(&w.other_uuid) {
        assert_allowed(&call, &call.send_key(&w.srv, &key));
    }
}

#[test]
fn non_staff_key_on_another_users_uuid_is_403() {
    let w = world();
    let user = w.srv.user("alice@example.com", false);
    let key = w.srv.key(&user, &["*"]);
    for call in uuid_routes(&w.other_uuid) {
        assert_non_staff(&call.send_key(&w.srv, &key));
    }
}

#[test]
fn non_staff_key_on_its_own_uuid_is_403() {
    let w = world();
    let user = w.srv.user("alice@example.com", false);
    let key = w.srv.key(&user, &["*"]);
    for call in uuid_routes(&user.uuid) {
        assert_non_staff(&call.send_key(&w.srv, &key));
    }
    // Nothing was written through the refused PATCHes.
    assert_eq!(me(&w.srv, &key)["first_name"], json!(""));
    assert_eq!(me(&w.srv, &key)["hedgehog_config"], json!(null));
}

#[test]
fn non_staff_key_on_unknown_or_malformed_uuids_is_403_before_any_lookup() {
    let w = world();
    let user = w.srv.user("alice@example.com", false);
    let key = w.srv.key(&user, &["*"]);
    for segment in [
        "018f0000-0000-7000-8000-000000000000",
        "not-a-uuid",
        "me",
        "12",
    ] {
        for call in uuid_routes(segment) {
            assert_non_staff(&call.send_key(&w.srv, &key));
        }
    }
}

#[test]
fn staff_key_on_another_uuid_is_allowed() {
    let w = world();
    let staff = w.srv.user("admin@example.com", true);
    let key = w.srv.key(&staff, &["*"]);
    for call in uuid_routes(&w.other_uuid) {
        assert_allowed(&call, &call.send_key(&w.srv, &key));
    }
    let got = ok_json(&w.srv.get(&format!("/api/users/{}/", w.other_uuid), &key));
    assert_eq!(got["email"], json!("other@example.com"));
    assert_eq!(got["first_name"], json!("x"));
    let hog = ok_json(&w.srv.get(
        &format!("/api/users/{}/hedgehog_config/", w.other_uuid),
        &key,
    ));
    assert_eq!(hog, json!({"a": 1}));
    // The staff user itself was not touched.
    assert_eq!(me(&w.srv, &key)["first_name"], json!(""));
}

#[test]
fn staff_key_on_its_own_uuid_is_allowed() {
    let w = world();
    let staff = w.srv.user("admin@example.com", true);
    let key = w.srv.key(&staff, &["*"]);
    for call in uuid_routes(&staff.uuid) {
        assert_allowed(&call, &call.send_key(&w.srv, &key));
    }
}

#[test]
fn staff_key_on_an_unknown_uuid_is_404() {
    let w = world();
    let staff = w.srv.user("admin@example.com", true);
    let key = w.srv.key(&staff, &["*"]);
    for segment in ["018f0000-0000-7000-8000-000000000000", "not-a-uuid"] {
        for call in uuid_routes(segment) {
            assert_not_found(&call.send_key(&w.srv, &key));
        }
    }
}

#[test]
fn staff_read_key_on_a_uuid_write_is_403_scope_not_404() {
    let w = world();
    let staff = w.srv.user("admin@example.com", true);
    let key = w.srv.key(&staff, &["user:read"]);
    for call in uuid_routes("018f0000-0000-7000-8000-000000000000") {
        let res = call.send_key(&w.srv, &key);
        if call.is_write() {
            assert_missing_scope(&res, "user:write");
        } else {
            assert_not_found(&res);
        }
    }
}

#[test]
fn bearer_with_surrounding_whitespace_works() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["user:read"]);
    let res = with_authorization(
        &srv,
        "GET",
        "/api/users/@me/",
        Some(&format!("Bearer    {key}   ")),
        None,
    );
    assert_eq!(ok_json(&res)["email"], json!("alice@example.com"));
}

#[test]
fn revocation_takes_effect_on_the_very_next_request() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let (id, key) = srv.key_with_id(&user, &["*"]);
    let (_, other_key) = srv.key_with_id(&user, &["*"]);
    assert_eq!(srv.get("/api/users/@me/", &key).status, 200);
    assert_eq!(
        srv.patch("/api/users/@me/", &key, json!({"first_name": "A"}))
            .status,
        200
    );
    srv.revoke(&id);
    assert_bad_key(&srv.get("/api/users/@me/", &key));
    assert_bad_key(&srv.patch("/api/users/@me/", &key, json!({"first_name": "B"})));
    // Another key of the same user keeps working, and nothing was written by the refused PATCH.
    assert_eq!(me(&srv, &other_key)["first_name"], json!("A"));
}

#[test]
fn revocation_by_another_process_takes_effect_on_the_very_next_request() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let (id, key) = srv.key_with_id(&user, &["*"]);
    assert_eq!(srv.get("/api/users/@me/", &key).status, 200);
    let out = srv.cli(&["keys", "revoke", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_bad_key(&srv.get("/api/users/@me/", &key));
}

#[test]
fn deactivation_takes_effect_on_the_very_next_request() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["*"]);
    assert_eq!(srv.get("/api/users/@me/", &key).status, 200);
    srv.set_active(&user, false);
    assert_bad_key(&srv.get("/api/users/@me/", &key));
    assert_bad_key(&srv.get("/api/users/", &key));
    assert_bad_key(&srv.patch("/api/users/@me/hedgehog_config/", &key, json!({})));
}

#[test]
fn reactivation_makes_the_key_work_again() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["*"]);
    assert_eq!(srv.get("/api/users/@me/", &key).status, 200);
    srv.set_active(&user, false);
    assert_bad_key(&srv.get("/api/users/@me/", &key));
    srv.set_active(&user, true);
    assert_eq!(me(&srv, &key)["email"], json!("alice@example.com"));
}

#[test]
fn deactivating_a_staff_callers_target_hides_it_immediately() {
    let srv = TestServer::start();
    let staff = srv.user("admin@example.com", true);
    let other = srv.user("bob@example.com", false);
    let key = srv.key(&staff, &["*"]);
    let path = format!("/api/users/{}/", other.uuid);
    assert_eq!(srv.get(&path, &key).status, 200);
    srv.set_active(&other, false);
    assert_not_found(&srv.get(&path, &key));
    srv.set_active(&other, true);
    assert_eq!(srv.get(&path, &key).status, 200);
}

#[test]
fn a_key_is_bound_to_its_own_user() {
    let srv = TestServer::start();
    let alice = srv.user("alice@example.com", false);
    let bob = srv.user("bob@example.com", false);
    let alice_key = srv.key(&alice, &["*"]);
    let bob_key = srv.key(&bob, &["*"]);
    assert_eq!(me(&srv, &alice_key)["email"], json!("alice@example.com"));
    assert_eq!(me(&srv, &bob_key)["email"], json!("bob@example.com"));
    srv.patch(
        "/api/users/@me/",
        &alice_key,
        json!({"first_name": "Alice"}),
    );
    assert_eq!(me(&srv, &bob_key)["first_name"], json!(""));
}
