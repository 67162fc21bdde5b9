//! `GET /api/schema/` (SPEC §10.7): a valid OpenAPI 3.1 document that lists every route, served
//! to anyone, whose response shapes name exactly the fields the server sends, in order.

use serde_json::Value;

use crate::harness::TestServer;

/// Every path of the API, as the document spells it.
const PATHS: [&str; 26] = [
    "/api/users/",
    "/api/users/{uuid}/",
    "/api/users/{uuid}/hedgehog_config/",
    "/api/users/{uuid}/scene_personalisation/",
    "/api/users/{uuid}/two_factor_start_setup/",
    "/api/users/{uuid}/start_2fa_setup/",
    "/api/users/{uuid}/two_factor_validate/",
    "/api/users/{uuid}/validate_2fa/",
    "/api/users/{uuid}/two_factor_status/",
    "/api/users/{uuid}/two_factor_backup_codes/",
    "/api/users/{uuid}/two_factor_disable/",
    "/api/users/request_email_verification/",
    "/api/users/verify_email/",
    "/api/users/cancel_email_change_request/",
    "/api/login/",
    "/api/login/token/",
    "/api/logout/",
    "/api/reset/",
    "/api/reset/{uuid}/",
    "/api/personal_api_keys/",
    "/api/personal_api_keys/@current/",
    "/api/personal_api_keys/{id}/",
    "/api/personal_api_keys/{id}/roll/",
    "/_health",
    "/metrics",
    "/api/schema/",
];

fn schema(srv: &TestServer) -> Value {
    let res = srv.request("GET", "/api/schema/", None, None);
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.header("content-type"), Some("application/json"));
    res.json()
}

/// The property names of a component schema, in document order.
fn properties(doc: &Value, name: &str) -> Vec<String> {
    doc["components"]["schemas"][name]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no schema {name}"))
        .keys()
        .cloned()
        .collect()
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object().expect("an object").keys().cloned().collect()
}

#[test]
fn schema_is_openapi_3_1_listing_every_path() {
    let srv = TestServer::start();
    let doc = schema(&srv);
    let version = doc["openapi"].as_str().expect("openapi");
    assert!(version.starts_with("3.1."), "{version}");
    assert!(doc["info"]["title"].is_string());
    let paths = doc["paths"].as_object().expect("paths");
    for path in PATHS {
        assert!(paths.contains_key(path), "{path} is missing");
    }
    assert_eq!(paths.len(), PATHS.len(), "{:?}", paths.keys());
    // The error envelope every error response uses.
    assert_eq!(
        doc["components"]["schemas"]["Error"]["required"],
        serde_json::json!(["type", "code", "detail", "attr"])
    );
}

#[test]
fn schema_ignores_credentials_and_answers_head() {
    let srv = TestServer::start();
    let res = srv.request("GET", "/api/schema", Some("phx_not_a_real_key"), None);
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let head = srv.request("HEAD", "/api/schema/", None, None);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let post = srv.request("POST", "/api/schema/", None, None);
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}

#[test]
fn documented_shapes_match_what_the_server_sends() {
    let srv = TestServer::start();
    let doc = schema(&srv);
    let user = srv.user("alice@example.com", false);
    let org = srv.org("Acme");
    srv.team(&org, "Default project");
    srv.member(&user, &org, 8);
    let key = srv.key(&user, &["*"]);

    let me = srv.get("/api/users/@me/", &key);
    assert_eq!(me.status, 200);
    let me = me.json();
    assert_eq!(keys(&me), properties(&doc, "User"));
    assert_eq!(keys(&me["team"]), properties(&doc, "TeamBasic"));
    assert_eq!(keys(&me["organization"]), properties(&doc, "Organization"));
    assert_eq!(
        keys(&me["organization"]["projects"][0]),
        properties(&doc, "Project")
    );
    assert_eq!(
        keys(&me["organizations"][0]),
        properties(&doc, "OrganizationBasic")
    );

    let list = srv.get("/api/users/", &key).json();
    assert_eq!(keys(&list), properties(&doc, "PaginatedUserList"));

    let current = srv.get("/api/personal_api_keys/@current/", &key).json();
    assert_eq!(keys(&current), properties(&doc, "PersonalAPIKey"));

    let health = srv.request("GET", "/_health", None, None).json();
    assert_eq!(keys(&health), properties(&doc, "Health"));

    let error = srv.get("/api/users/nope/", &key).json();
    assert_eq!(keys(&error), properties(&doc, "Error"));
}
