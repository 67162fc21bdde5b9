use serde_json::json;

use crate::harness::TestServer;

#[test]
fn me_with_a_key_returns_the_user_object() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["user:read"]);
    let res = srv.get("/api/users/@me/", &key);
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    let body = res.json();
    assert_eq!(body["email"], json!("alice@example.com"));
    // Reference §4.1 lists 38 fields; its four write-only ones (set_current_organization,
    // set_current_team, password, current_password) are never returned.
    assert_eq!(body.as_object().unwrap().len(), 34);
}
