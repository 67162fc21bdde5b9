//! Every error envelope of the core routes (SPEC §2, §10.1; reference §2), checked for status
//! and the exact `{"type","code","detail","attr"}` body.

use serde_json::json;

use crate::harness::TestServer;
use crate::support::*;

#[test]
fn no_credentials_is_401_not_authenticated() {
    let srv = TestServer::start();
    let res = srv.request("GET", "/api/users/@me/", None, None);
    assert_not_authenticated(&res);
}

#[test]
fn unknown_key_is_401_authentication_failed() {
    let srv = TestServer::start();
    srv.user("alice@example.com", false);
    assert_bad_key(&srv.get("/api/users/@me/", &unknown_key()));
    // Any string after `Bearer ` is a key candidate, prefixed or not.
    assert_bad_key(&srv.get("/api/users/@me/", "not-a-real-key"));
}

#[test]
fn key_without_the_write_scope_is_403_missing_scope() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["user:read"]);
    let res = srv.patch("/api/users/@me/", &key, json!({"first_name": "x"}));
    assert_missing_scope(&res, "user:write");
}

#[test]
fn non_staff_on_a_uuid_is_403() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let other = srv.user("bob@example.com", false);
    let key = srv.key(&user, &["*"]);
    assert_non_staff(&srv.get(&format!("/api/users/{}/", other.uuid), &key));
}

#[test]
fn staff_on_an_unknown_uuid_is_404_not_found() {
    let srv = TestServer::start();
    let staff = srv.user("admin@example.com", true);
    let key = srv.key(&staff, &["*"]);
    let unknown = "018f0000-0000-7000-8000-000000000000";
    assert_not_found(&srv.get(&format!("/api/users/{unknown}/"), &key));
    assert_not_found(&srv.patch(&format!("/api/users/{unknown}/"), &key, json!({})));
    assert_not_found(&srv.get(&format!("/api/users/{unknown}/hedgehog_config/"), &key));
}

#[test]
fn staff_on_a_malformed_uuid_is_404_not_found() {
    let srv = TestServer::start();
    let staff = srv.user("admin@example.com", true);
    let key = srv.key(&staff, &["*"]);
    assert_not_found(&srv.get("/api/users/not-a-uuid/", &key));
    assert_not_found(&srv.get("/api/users/12345/", &key));
    assert_not_found(&srv.patch("/api/users/not-a-uuid/", &key, json!({})));
}

#[test]
fn staff_on_a_deactivated_user_is_404_not_found() {
    let srv = TestServer::start();
    let staff = srv.user("admin@example.com", true);
    let other = srv.user("bob@example.com", false);
    let key = srv.key(&staff, &["*"]);
    assert_eq!(
        srv.get(&format!("/api/users/{}/", other.uuid), &key).status,
        200
    );
    srv.set_active(&other, false);
    assert_not_found(&srv.get(&format!("/api/users/{}/", other.uuid), &key));
    assert_not_found(&srv.patch(
        &format!("/api/users/{}/", other.uuid),
        &key,
        json!({"first_name": "x"}),
    ));
}

#[test]
fn unknown_paths_are_404_endpoint_not_found() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["*"]);
    for path in [
        "/api/userz/",
        "/api/users/@me/unknown/",
        "/api/users/@me/hedgehog_config/extra/",
        "/api/users/a.b/",
        "/api/",
        "/api",
        "/",
        "/foo",
        "/static/app.js",
        "/API/USERS/",
    ] {
        assert_endpoint_not_found(&srv.get(path, &key));
        assert_endpoint_not_found(&srv.request("GET", path, None, None));
        assert_endpoint_not_found(&srv.request("POST", path, None, Some(&json!({}))));
    }
}

#[test]
fn unknown_paths_are_404_before_authentication() {
    let srv = TestServer::start();
    assert_endpoint_not_found(&srv.get("/api/nothing/", &unknown_key()));
    assert_endpoint_not_found(&with_authorization(
        &srv,
        "GET",
        "/nothing",
        Some("Basic abc"),
        None,
    ));
}

#[test]
fn post_on_the_collection_is_405_with_allow() {
    let srv = TestServer::start();
    let res = srv.request(
        "POST",
        "/api/users/",
        None,
        Some(&json!({"email": "x@example.com"})),
    );
    assert_method_not_allowed(&res, "POST", "GET, HEAD");
}

#[test]
fn wrong_methods_on_the_user_route_are_405_with_allow() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["*"]);
    let res = srv.request("POST", "/api/users/@me/", Some(&key), Some(&json!({})));
    assert_method_not_allowed(&res, "POST", "GET, HEAD, PUT, PATCH, DELETE");
    let res = srv.request("POST", &format!("/api/users/{}/", user.uuid), None, None);
    assert_method_not_allowed(&res, "POST", "GET, HEAD, PUT, PATCH, DELETE");
}

#[test]
fn wrong_methods_on_hedgehog_config_are_405_with_allow() {
    let srv = TestServer::start();
    let res = srv.request(
        "POST",
        "/api/users/@me/hedgehog_config/",
        None,
        Some(&json!({})),
    );
    assert_method_not_allowed(&res, "POST", "GET, HEAD, PATCH");
    let res = srv.request(
        "PUT",
        "/api/users/@me/hedgehog_config/",
        None,
        Some(&json!({})),
    );
    assert_method_not_allowed(&res, "PUT", "GET, HEAD, PATCH");
    let res = srv.request("DELETE", "/api/users/@me/hedgehog_config/", None, None);
    assert_method_not_allowed(&res, "DELETE", "GET, HEAD, PATCH");
}

#[test]
fn post_put_patch_delete_on_the_collection_are_405_and_create_nothing() {
    let srv = TestServer::start();
    let staff = srv.user("admin@example.com", true);
    let key = srv.key(&staff, &["*"]);
    let before = user_count(&srv);
    let body = json!({"email": "new@example.com", "password": "a very long passphrase 123"});
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let res = srv.request(method, "/api/users/", Some(&key), Some(&body));
        assert_method_not_allowed(&res, method, "GET, HEAD");
        let res = srv.request(method, "/api/users", None, Some(&body));
        assert_method_not_allowed(&res, method, "GET, HEAD");
    }
    assert_eq!(user_count(&srv), before);
}

#[test]
fn method_not_allowed_comes_before_authentication() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["user:read"]);
    // No credentials, a bad key, a key without the scope: all 405, never 401/403.
    let res = srv.request("POST", "/api/users/", None, None);
    assert_method_not_allowed(&res, "POST", "GET, HEAD");
    let res = srv.request("POST", "/api/users/", Some(&unknown_key()), None);
    assert_method_not_allowed(&res, "POST", "GET, HEAD");
    let res = srv.request(
        "DELETE",
        "/api/users/@me/hedgehog_config/",
        Some(&key),
        None,
    );
    assert_method_not_allowed(&res, "DELETE", "GET, HEAD, PATCH");
    let other = srv.user("bob@example.com", false);
    let res = srv.request(
        "POST",
        &format!("/api/users/{}/", other.uuid),
        Some(&key),
        None,
    );
    assert_method_not_allowed(&res, "POST", "GET, HEAD, PUT, PATCH, DELETE");
}

#[test]
fn text_plain_body_is_415() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["*"]);
    let res = keyed_raw(
        &srv,
        "PATCH",
        "/api/users/@me/",
        &key,
        &[("Content-Type", "text/plain")],
        Some(b"{\"first_name\":\"x\"}"),
    );
    res.assert_error(
        415,
        "invalid_request",
        "unsupported_media_type",
        "Unsupported media type \"text/plain\" in request.",
        None,
    );
    assert_eq!(me(&srv, &key)["first_name"], json!(""));
    let res = keyed_raw(
        &srv,
        "PATCH",
        "/api/users/@me/hedgehog_config/",
        &key,
        &[("Content-Type", "text/plain")],
        Some(b"{}"),
    );
    assert_eq!(res.status, 415);
}

#[test]
fn json_with_a_charset_parameter_is_accepted() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["*"]);
    let res = keyed_raw(
        &srv,
        "PATCH",
        "/api/users/@me/",
        &key,
        &[("Content-Type", "application/json; charset=utf-8")],
        Some(b"{\"first_name\":\"Alice\"}"),
    );
    assert_eq!(ok_json(&res)["first_name"], json!("Alice"));
}

#[test]
fn an_empty_body_is_an_empty_object_whatever_its_type() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["*"]);
    let res = keyed_raw(
        &srv,
        "PATCH",
        "/api/users/@me/",
        &key,
        &[("Content-Type", "text/plain")],
        None,
    );
    assert_eq!(ok_json(&res)["email"], json!("alice@example.com"));
}

#[test]
fn malformed_json_is_400_parse_error() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["*"]);
    for (path, body) in [
        ("/api/users/@me/", &b"{\"first_name\":"[..]),
        ("/api/users/@me/", &b"{first_name: 1}"[..]),
        ("/api/users/@me/hedgehog_config/", &b"{\"a\":1,}"[..]),
    ] {
        let res = keyed_raw(
            &srv,
            "PATCH",
            path,
            &key,
            &[("Content-Type", "application/json")],
            Some(body),
        );
        assert_eq!(res.status, 400, "{}", String::from_utf8_lossy(&res.body));
        let v = res.json();
        assert_keys(&v, &["type", "code", "detail", "attr"]);
        assert_eq!(v["type"], json!("invalid_request"));
        assert_eq!(v["code"], json!("parse_error"));
        assert_eq!(v["attr"], json!(null));
        let detail = v["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("JSON parse error - "),
            "detail: {detail}"
        );
        assert!(
            detail.len() > "JSON parse error - ".len(),
            "detail: {detail}"
        );
    }
}

#[test]
fn a_list_body_is_400_expected_a_dictionary() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["*"]);
    let res = srv.request(
        "PATCH",
        "/api/users/@me/",
        Some(&key),
        Some(&json!([{"first_name": "x"}])),
    );
    res.assert_error(
        400,
        "validation_error",
        "invalid_input",
        "Invalid data. Expected a dictionary, but got list.",
        None,
    );
}

#[test]
fn scalar_bodies_name_their_python_type() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["*"]);
    for (body, name) in [
        (json!("x"), "str"),
        (json!(1), "int"),
        (json!(1.5), "float"),
        (json!(true), "bool"),
    ] {
        let res = srv.request("PATCH", "/api/users/@me/", Some(&key), Some(&body));
        res.assert_error(
            400,
            "validation_error",
            "invalid_input",
            &format!("Invalid data. Expected a dictionary, but got {name}."),
            None,
        );
    }
}

#[test]
fn a_null_body_is_400_may_not_be_null() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["*"]);
    for path in ["/api/users/@me/", "/api/users/@me/hedgehog_config/"] {
        let res = srv.request("PATCH", path, Some(&key), Some(&json!(null)));
        res.assert_error(
            400,
            "validation_error",
            "null",
            "This field may not be null.",
            None,
        );
    }
}

#[test]
fn declared_content_length_over_one_mib_is_413() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["*"]);
    let request = format!(
        "PATCH /api/users/@me/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: 1048577\r\n\r\n",
        srv.addr
    );
    let res = srv.raw(request.as_bytes());
    res.assert_error(
        413,
        "invalid_request",
        "request_too_large",
        "Request body exceeds 1048576 bytes.",
        None,
    );
}

#[test]
fn body_size_is_checked_before_routing_and_authentication() {
    let srv = TestServer::start();
    for path in ["/api/users/@me/", "/nowhere", "/api/users/"] {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer nope\r\n\
             Content-Type: application/json\r\nContent-Length: 5000000\r\n\r\n",
            srv.addr
        );
        let res = srv.raw(request.as_bytes());
        res.assert_error(
            413,
            "invalid_request",
            "request_too_large",
            "Request body exceeds 1048576 bytes.",
            None,
        );
    }
}

#[test]
fn empty_patch_body_is_200_with_the_user() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let key = srv.key(&user, &["*"]);
    let res = keyed_raw(&srv, "PATCH", "/api/users/@me/", &key, &[], None);
    let body = ok_json(&res);
    assert_eq!(body["email"], json!("alice@example.com"));
    assert_keys(&body, &readable_user_fields());
    let res = srv.patch("/api/users/@me/", &key, json!({}));
    assert_eq!(ok_json(&res)["email"], json!("alice@example.com"));
}

#[test]
fn authentication_comes_before_the_body() {
    let srv = TestServer::start();
    let res = srv.request_raw_body(
        "PATCH",
        "/api/users/@me/",
        &[("Content-Type", "text/plain")],
        Some(b"hello"),
    );
    assert_not_authenticated(&res);
    let res = srv.request_raw_body(
        "PATCH",
        "/api/users/@me/",
        &[("Content-Type", "application/json")],
        Some(b"{oops"),
    );
    assert_not_authenticated(&res);
}

#[test]
fn the_object_check_comes_before_the_body() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let other = srv.user("bob@example.com", false);
    let key = srv.key(&user, &["*"]);
    let res = keyed_raw(
        &srv,
        "PATCH",
        &format!("/api/users/{}/", other.uuid),
        &key,
        &[("Content-Type", "text/plain")],
        Some(b"hello"),
    );
    assert_non_staff(&res);
    let staff = srv.user("admin@example.com", true);
    let staff_key = srv.key(&staff, &["*"]);
    let res = keyed_raw(
        &srv,
        "PATCH",
        "/api/users/018f0000-0000-7000-8000-000000000000/",
        &staff_key,
        &[("Content-Type", "application/json")],
        Some(b"{oops"),
    );
    assert_not_found(&res);
}

#[test]
fn the_scope_check_comes_before_the_object_check() {
    let srv = TestServer::start();
    let user = srv.user("alice@example.com", false);
    let other = srv.user("bob@example.com", false);
    let key = srv.key(&user, &["user:read"]);
    let res = srv.patch(&format!("/api/users/{}/", other.uuid), &key, json!({}));
    assert_missing_scope(&res, "user:write");
}
