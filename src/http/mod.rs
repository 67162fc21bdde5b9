//! Request handling in the evaluation order of SPEC §10.1: size → route → method →
//! authenticate → access rule → object → body → handler, and every error turned into the
//! envelope in one place.

pub mod body;
pub mod router;

use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_LENGTH, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use percent_encoding::percent_decode_str;

use crate::api::{self, Caller, Target};
use crate::app::App;
use crate::auth::api_key;
use crate::db::{keys, users};
use crate::error::{Error, Result};
use body::Body;
use router::{Access, Route};

const X_REQUEST_ID: &str = "x-request-id";

/// Everything a handler may know about the request, besides its body.
pub struct RequestInfo {
    pub method: Method,
    /// The path as received (still percent-encoded), for pagination links.
    pub raw_path: String,
    pub query: Option<String>,
    pub host: Option<String>,
}

/// Serves one request; never fails (errors become envelopes).
pub async fn handle(
    app: App,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| valid_request_id(id))
        .map(str::to_owned)
        .unwrap_or_else(crate::auth::new_uuid);
    let method = req.method().clone();
    let (result, route) = dispatch(&app, req).await;
    let mut res = match result {
        Ok(res) => res,
        Err(err) => {
            if let Error::Internal(cause) = &err {
                tracing::error!(request_id = %request_id, "internal error: {cause}");
            }
            body::error(&err)
        }
    };
    let headers = res.headers_mut();
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(X_REQUEST_ID, v);
    }
    tracing::info!(
        method = %method,
        route = route.map_or("-", |r| r.template()),
        status = res.status().as_u16(),
        latency_us = started.elapsed().as_micros() as u64,
        request_id = %request_id,
        "request"
    );
    Ok(res)
}

/// `^[A-Za-z0-9._:-]{1,128}$` (SPEC §10.2).
fn valid_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

async fn dispatch(app: &App, req: Request<Incoming>) -> (Result<Response<Body>>, Option<Route>) {
    // 1. Declared body length over the limit.
    let max = app.config.max_body_bytes;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return (Err(Error::TooLarge(max)), None);
    }

    // 2. Route, then method.
    let decoded = percent_decode_str(req.uri().path()).decode_utf8_lossy();
    let Some(route) = Route::parse(&decoded) else {
        return (Err(Error::EndpointNotFound), None);
    };
    if !route.methods().contains(req.method()) {
        let allow = route
            .methods()
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let err = Error::MethodNotAllowed {
            method: req.method().to_string(),
            allow,
        };
        return (Err(err), Some(route));
    }
    let result = serve_route(app, &route, req).await;
    (result, Some(route))
}

async fn serve_route(app: &App, route: &Route, req: Request<Incoming>) -> Result<Response<Body>> {
    // 3–5. Authenticate, then the route's access rule.
    let caller = authenticate(app, &req)?;
    match route.access(req.method()) {
        Access::Public => {}
        Access::Scope(scope) => match &caller {
            None => return Err(Error::NotAuthenticated),
            Some(c) => {
                if c.key_scopes().is_some_and(|s| !api_key::grants(s, scope)) {
                    return Err(Error::permission_denied(format!(
                        "API key missing required scope '{scope}'"
                    )));
                }
            }
        },
    }

    // 8. The object, before the body.
    let target = match (route, &caller) {
        (Route::User(id) | Route::HedgehogConfig(id), Some(c)) => Some(resolve_target(app, c, id)?),
        _ => None,
    };

    let (parts, incoming) = req.into_parts();
    let info = RequestInfo {
        method: parts.method.clone(),
        raw_path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        host: parts
            .headers
            .get(hyper::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let reads_body = matches!(parts.method, Method::POST | Method::PUT | Method::PATCH);
    let body = if reads_body {
        let bytes = body::read(incoming, app.config.max_body_bytes).await?;
        Some(body::json_object(&parts.headers, &bytes)?)
    } else {
        None
    };

    match (route, parts.method, caller, target) {
        (Route::Health, _, _, _) => api::health(app).await,
        (Route::Users, _, Some(caller), _) => api::users::list(app, &caller, &info).await,
        (Route::User(_), Method::GET | Method::HEAD, Some(caller), Some(target)) => {
            api::users::retrieve(app, &caller, target).await
        }
        (Route::User(_), method, Some(caller), Some(target)) => {
            let put = method == Method::PUT;
            api::users::update(app, &caller, target, body.unwrap_or_default(), put).await
        }
        (Route::HedgehogConfig(_), Method::GET | Method::HEAD, Some(_), Some(target)) => {
            api::users::hedgehog_config(target)
        }
        (Route::HedgehogConfig(_), _, Some(_), Some(target)) => {
            api::users::set_hedgehog_config(app, target, body.unwrap_or_default()).await
        }
        _ => Err(Error::internal(format!("unhandled route {route:?}"))),
    }
}

/// Steps 3–4: a valid `Authorization: Bearer` key, or nobody. A present but invalid key is 401.
fn authenticate(app: &App, req: &Request<Incoming>) -> Result<Option<Caller>> {
    let Some(token) = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
    else {
        return Ok(None);
    };
    let digest = api_key::digest(token);
    let Some((key, user)) = app.db.read(|conn| keys::authenticate(conn, &digest))? else {
        return Err(Error::BadApiKey);
    };
    let now = app.clock.now();
    if key.last_used_at.is_none_or(|t| now - t >= HOUR) {
        let id = key.id.clone();
        app.db
            .write_detached(move |conn| keys::touch(conn, &id, now));
    }
    Ok(Some(Caller::key(user, key)))
}

const HOUR: i64 = 3_600_000_000;

/// `^Bearer\s+(\S.+)$`, case-sensitive scheme, surrounding whitespace trimmed. OAuth tokens
/// (`pha_`) are not personal API keys and are ignored.
fn bearer_token(header: &str) -> Option<&str> {
    let rest = header.strip_prefix("Bearer")?;
    if !rest.starts_with(|c: char| c.is_whitespace()) {
        return None;
    }
    let token = rest.trim();
    if token.len() < 2 || token.starts_with("pha_") {
        return None;
    }
    Some(token)
}

/// Step 8: `@me` is the caller; anything else needs staff, and an active user with that uuid.
fn resolve_target(app: &App, caller: &Caller, id: &str) -> Result<Target> {
    if id == "@me" {
        return Ok(Target::Me(Box::new(caller.user.clone())));
    }
    if !caller.user.is_staff {
        return Err(Error::permission_denied(
            "As a non-staff user you're only allowed to access the `@me` user instance.",
        ));
    }
    let uuid = uuid::Uuid::parse_str(id).map_err(|_| Error::NotFound)?;
    let user = app
        .db
        .read(|conn| users::get_active_by_uuid(conn, &uuid.hyphenated().to_string()))?
        .ok_or(Error::NotFound)?;
    Ok(Target::Other(Box::new(user)))
}

/// A bare status response with no body (204).
pub fn no_content() -> Response<Body> {
    let mut res = Response::new(Body::default());
    *res.status_mut() = StatusCode::NO_CONTENT;
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing_follows_upstream() {
        assert_eq!(bearer_token("Bearer phx_abc"), Some("phx_abc"));
        assert_eq!(bearer_token("Bearer   phx_abc  "), Some("phx_abc"));
        assert_eq!(bearer_token("bearer phx_abc"), None);
        assert_eq!(bearer_token("Bearerphx_abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer pha_oauth"), None);
    }

    #[test]
    fn request_ids_are_validated() {
        assert!(valid_request_id("abc-123:x.y_z"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("has space"));
        assert!(!valid_request_id(&"a".repeat(129)));
    }
}
