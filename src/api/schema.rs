//! `GET /api/schema/`: the OpenAPI 3.1 description of this API.
//!
//! The document is the hand-written `openapi.json` next to this file, embedded at compile time.
//! It reuses the shapes of upstream's own drf-spectacular output where they agree with the
//! behaviour reference, in 3.1 spelling (`type: [T, "null"]` instead of `nullable`), and lists
//! for every operation each error status it can answer with the envelope schema.
//!
//! Two things are filled in when the document is first served, so they cannot drift: `info.version`
//! (the crate's version) and a HEAD operation beside every GET (the router routes HEAD wherever
//! it routes GET): the same parameters, security and statuses, with the response bodies left out.
//! The result is rendered once and served compact.

use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::http::body::Body;

/// The document as written.
pub const SOURCE: &str = include_str!("openapi.json");

/// `GET /api/schema/`: 200 with the rendered document.
pub fn document() -> Result<Response<Body>> {
    static RENDERED: OnceLock<std::result::Result<Bytes, String>> = OnceLock::new();
    let bytes = RENDERED
        .get_or_init(|| {
            let doc = render(SOURCE)?;
            serde_json::to_vec(&doc)
                .map(Bytes::from)
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|cause| Error::internal(format!("OpenAPI document: {cause}")))?;
    let mut res = Response::new(Full::new(bytes.clone()));
    *res.status_mut() = StatusCode::OK;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(res)
}

/// The served document: `source` with the version and the HEAD operations filled in.
pub fn render(source: &str) -> std::result::Result<Value, String> {
    let mut doc: Value = serde_json::from_str(source).map_err(|e| e.to_string())?;
    let info = doc
        .get_mut("info")
        .and_then(Value::as_object_mut)
        .ok_or("no info object")?;
    info.insert("version".into(), env!("CARGO_PKG_VERSION").into());

    let responses = doc
        .pointer("/components/responses")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let paths = doc
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .ok_or("no paths object")?;
    for item in paths.values_mut() {
        let Some(methods) = item.as_object_mut() else {
            return Err("a path item is not an object".into());
        };
        let Some(get) = methods.get("get") else {
            continue;
        };
        let head = head_operation(get, &responses)?;
        // Rebuilt so that `head` follows `get` (the map keeps insertion order).
        let mut rebuilt = Map::new();
        for (method, operation) in std::mem::take(methods) {
            let after_get = method == "get";
            rebuilt.insert(method, operation);
            if after_get {
                rebuilt.insert("head".into(), head.clone());
            }
        }
        *methods = rebuilt;
    }
    Ok(doc)
}

/// A GET operation as HEAD: same everything, `_head` appended to the id, no response bodies.
fn head_operation(
    get: &Value,
    responses: &Map<String, Value>,
) -> std::result::Result<Value, String> {
    let mut head = get.clone();
    let op = head
        .as_object_mut()
        .ok_or("an operation is not an object")?;
    if let Some(Value::String(id)) = op.get_mut("operationId") {
        id.push_str("_head");
    }
    if let Some(Value::String(summary)) = op.get_mut("summary") {
        summary.push_str(" (headers only)");
    }
    let Some(Value::Object(statuses)) = op.get_mut("responses") else {
        return Err("an operation has no responses".into());
    };
    for response in statuses.values_mut() {
        // A `$ref` to a shared response is inlined, since only its body must go.
        if let Some(target) = response.get("$ref").and_then(Value::as_str) {
            let name = target
                .strip_prefix("#/components/responses/")
                .ok_or_else(|| format!("unexpected response reference {target}"))?;
            *response = responses
                .get(name)
                .cloned()
                .ok_or_else(|| format!("unknown response {name}"))?;
        }
        if let Some(fields) = response.as_object_mut() {
            fields.remove("content");
        }
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::http::router::Route;

    fn doc() -> Value {
        render(SOURCE).expect("the document renders")
    }

    /// One value of every `Route` variant. The `match` has no wildcard, so a new variant does
    /// not compile until it is added here (and then to the document).
    fn every_route() -> Vec<Route> {
        let x = || "@me".to_owned();
        let all = vec![
            Route::Users,
            Route::User(x()),
            Route::HedgehogConfig(x()),
            Route::ScenePersonalisation(x()),
            Route::TwoFactorStartSetup,
            Route::TwoFactorValidate,
            Route::TwoFactorStatus(x()),
            Route::TwoFactorBackupCodes(x()),
            Route::TwoFactorDisable(x()),
            Route::RequestEmailVerification,
            Route::VerifyEmail,
            Route::CancelEmailChange,
            Route::Login,
            Route::LoginToken,
            Route::Logout,
            Route::PasswordReset,
            Route::PasswordResetComplete(x()),
            Route::Keys,
            Route::CurrentKey,
            Route::Key(x()),
            Route::KeyRoll(x()),
            Route::Health,
            Route::Metrics,
            Route::Schema,
        ];
        for route in &all {
            match route {
                Route::Users
                | Route::User(_)
                | Route::HedgehogConfig(_)
                | Route::ScenePersonalisation(_)
                | Route::TwoFactorStartSetup
                | Route::TwoFactorValidate
                | Route::TwoFactorStatus(_)
                | Route::TwoFactorBackupCodes(_)
                | Route::TwoFactorDisable(_)
                | Route::RequestEmailVerification
                | Route::VerifyEmail
                | Route::CancelEmailChange
                | Route::Login
                | Route::LoginToken
                | Route::Logout
                | Route::PasswordReset
                | Route::PasswordResetComplete(_)
                | Route::Keys
                | Route::CurrentKey
                | Route::Key(_)
                | Route::KeyRoll(_)
                | Route::Health
                | Route::Metrics
                | Route::Schema => {}
            }
        }
        all
    }

    /// `/api/users/{uuid}/` → `/api/users/{}/`, so the router's `{id}` matches too.
    fn shape(path: &str) -> String {
        let mut out = String::new();
        let mut in_param = false;
        for c in path.chars() {
            match c {
                '{' => {
                    in_param = true;
                    out.push('{');
                }
                '}' => {
                    in_param = false;
                    out.push('}');
                }
                _ if in_param => {}
                _ => out.push(c),
            }
        }
        out
    }

    fn methods_of(item: &Value) -> BTreeSet<String> {
        item.as_object()
            .expect("path item")
            .keys()
            .filter(|k| !matches!(k.as_str(), "parameters" | "summary" | "description"))
            .cloned()
            .collect()
    }

    fn route_methods(route: &Route) -> BTreeSet<String> {
        route
            .methods()
            .iter()
            .map(|m| m.as_str().to_ascii_lowercase())
            .collect()
    }

    #[test]
    fn source_is_json_and_openapi_3_1() {
        let raw: Value = serde_json::from_str(SOURCE).expect("openapi.json parses");
        assert!(
            raw["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1.")),
            "{}",
            raw["openapi"]
        );
        assert_eq!(doc()["info"]["version"], env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn every_route_and_method_is_described() {
        let doc = doc();
        let paths = doc["paths"].as_object().expect("paths");
        let shapes: Vec<(String, &Value)> = paths.iter().map(|(p, v)| (shape(p), v)).collect();
        for route in every_route() {
            let template = shape(route.template());
            let (_, item) = shapes
                .iter()
                .find(|(s, _)| *s == template)
                .unwrap_or_else(|| panic!("{template} is not in the document"));
            assert_eq!(methods_of(item), route_methods(&route), "{template}");
        }
    }

    #[test]
    fn every_documented_path_routes_with_the_same_methods() {
        let doc = doc();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            let concrete = path.replace("{uuid}", "@me").replace("{id}", "abc");
            let route = Route::parse(&concrete).unwrap_or_else(|| panic!("{path} does not route"));
            assert_eq!(methods_of(item), route_methods(&route), "{path}");
        }
    }

    #[test]
    fn operations_are_complete() {
        let doc = doc();
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("item") {
                let id = op["operationId"].as_str().expect("operationId");
                assert!(ids.insert(id.to_owned()), "duplicate operationId {id}");
                assert!(op["security"].is_array(), "{method} {path}: security");
                let responses = op["responses"].as_object().expect("responses");
                assert!(responses.contains_key("500"), "{method} {path}: 500");
                assert!(
                    responses.keys().any(|s| s.starts_with('2')),
                    "{method} {path}: no success"
                );
                // Every declared path parameter appears in the path, and the reverse.
                let declared: BTreeSet<String> = op["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .filter(|p| p["in"] == "path")
                            .map(|p| format!("{{{}}}", p["name"].as_str().expect("name")))
                            .collect()
                    })
                    .unwrap_or_default();
                let in_path: BTreeSet<String> = path
                    .split('/')
                    .filter(|s| s.starts_with('{'))
                    .map(str::to_owned)
                    .collect();
                assert_eq!(declared, in_path, "{method} {path}");
                // Routes that read a body (every POST, PUT and PATCH) declare its errors.
                if matches!(method.as_str(), "post" | "put" | "patch") {
                    for status in ["400", "413", "415"] {
                        assert!(responses.contains_key(status), "{method} {path}: {status}");
                    }
                }
            }
        }
    }

    #[test]
    fn head_mirrors_get_without_bodies() {
        let doc = doc();
        let item = &doc["paths"]["/api/users/{uuid}/"];
        let get = item["get"]["responses"].as_object().expect("get");
        let head = item["head"]["responses"].as_object().expect("head");
        assert_eq!(
            get.keys().collect::<Vec<_>>(),
            head.keys().collect::<Vec<_>>()
        );
        assert!(head.values().all(|r| r.get("content").is_none()));
        assert_eq!(item["head"]["operationId"], "users_retrieve_head");
        assert!(head["405"]["headers"]["Allow"].is_object());
    }

    #[test]
    fn every_reference_resolves() {
        fn walk(doc: &Value, v: &Value) {
            match v {
                Value::Object(map) => {
                    if let Some(Value::String(target)) = map.get("$ref") {
                        let pointer = target.strip_prefix('#').expect("a local reference");
                        assert!(doc.pointer(pointer).is_some(), "{target} does not resolve");
                    }
                    map.values().for_each(|v| walk(doc, v));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(doc, v)),
                _ => {}
            }
        }
        let doc = doc();
        walk(&doc, &doc);
    }

    #[test]
    fn spec_10_7_types() {
        let doc = doc();
        let s = &doc["components"]["schemas"];
        let nullable_ref = |v: &Value| {
            v["anyOf"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["type"] == "null"))
        };
        assert!(nullable_ref(&s["User"]["properties"]["team"]));
        assert!(nullable_ref(&s["User"]["properties"]["organization"]));
        assert!(nullable_ref(
            &s["User"]["properties"]["role_at_organization"]
        ));
        assert_eq!(
            s["Organization"]["properties"]["member_count"]["type"],
            "integer"
        );
        assert_eq!(
            s["Organization"]["properties"]["metadata"]["type"],
            "object"
        );
        // 3.1: no `nullable` keyword anywhere.
        assert!(!SOURCE.contains("\"nullable\""));
    }

    #[test]
    fn served_compact_with_json_type() {
        let res = document().expect("document");
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
    }
}
