//! Request handling in the evaluation order of SPEC §10.1: size → route → method →
//! authenticate → access rule → object → body → handler, and every error turned into the
//! envelope in one place.

pub mod body;
pub mod cors;
pub mod router;

use std::cell::Cell;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_LENGTH, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use percent_encoding::percent_decode_str;

use crate::api::{self, Caller, Target};
use crate::app::App;
use crate::auth::{api_key, session};
use crate::db::{keys, sessions, users};
use crate::error::{Error, Result};
use body::Body;
use router::{Access, Route};

const X_REQUEST_ID: &str = "x-request-id";

tokio::task_local! {
    /// How the request being served authenticated: `session`, `key` or `none`. Set where
    /// authentication happens and read by `handle` for the log line, so the functions in
    /// between keep their signatures.
    static AUTH_KIND: Cell<&'static str>;
}

/// Records the caller's kind for the request's log line (a no-op outside `handle`).
fn note_auth_kind(caller: Option<&Caller>) {
    let kind = match caller {
        Some(c) if c.is_key() => "key",
        Some(_) => "session",
        None => "none",
    };
    let _ = AUTH_KIND.try_with(|k| k.set(kind));
}

/// Everything a handler may know about the request, besides its body.
pub struct RequestInfo {
    pub method: Method,
    /// The path as received (still percent-encoded), for pagination links.
    pub raw_path: String,
    pub query: Option<String>,
    pub host: Option<String>,
    /// The `sessionid` cookie, for routes that work with pending logins.
    pub session_token: Option<String>,
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
    let cors_origin = cors::listed_origin(req.headers(), &app.config.cors_origins);
    let ((result, route), auth) = AUTH_KIND
        .scope(Cell::new("none"), async {
            let out = dispatch(&app, req).await;
            (out, AUTH_KIND.with(Cell::get))
        })
        .await;
    let mut res = match result {
        Ok(res) => res,
        Err(err) => {
            if let Error::Internal(cause) = &err {
                tracing::error!(request_id = %request_id, "internal error: {cause}");
            }
            body::error(&err)
        }
    };
    common_headers(res.headers_mut(), &request_id, cors_origin);
    // The one line per request (SPEC §7). Only fixed-vocabulary values and the validated
    // request id: never the raw path, headers, cookies or body, where secrets travel.
    let elapsed = started.elapsed();
    let route = route.map_or(crate::metrics::NO_ROUTE, |r| r.template());
    let status = res.status().as_u16();
    app.metrics.request(&method, route, status, elapsed);
    tracing::info!(
        method = %method,
        route,
        status,
        latency_us = elapsed.as_micros() as u64,
        request_id = %request_id,
        auth,
        "request"
    );
    Ok(res)
}

/// The headers every response carries, errors included (SPEC §2, §10.7).
fn common_headers(headers: &mut HeaderMap, request_id: &str, cors_origin: Option<HeaderValue>) {
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(X_REQUEST_ID, v);
    }
    if let Some(origin) = cors_origin {
        cors::allow(headers, origin);
    }
}

/// `^[A-Za-z0-9._:-]{1,128}$` (SPEC §10.2).
pub fn valid_request_id(id: &str) -> bool {
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
    // A CORS preflight from a listed origin; any other OPTIONS is an unrouted method (405).
    if cors::is_preflight(req.method(), req.headers())
        && cors::listed_origin(req.headers(), &app.config.cors_origins).is_some()
    {
        return (Ok(cors::preflight(route.methods())), Some(route));
    }
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
    let method = req.method().clone();
    let access = route.access(&method);
    // 3–4. Authenticate (CSRF for unsafe session requests), then the route's access rule.
    let credentials = Credentials::read(req.headers(), access);
    // SPEC §10.7: probes and the schema ignore credentials, so a bad key cannot fail them.
    let caller = if matches!(route, Route::Health | Route::Metrics | Route::Schema) {
        None
    } else {
        authenticate(app, &credentials)?
    };
    note_auth_kind(caller.as_ref());
    if caller.as_ref().is_some_and(|c| !c.is_key()) && is_unsafe(&method) && route.needs_csrf() {
        session::check_csrf(
            credentials.csrf_cookie.as_deref(),
            credentials.csrf_header.as_deref(),
        )?;
    }
    // 5. Keys on session-only routes, and scopes.
    match (access, &caller) {
        (Access::Public, _) => {}
        (_, None) => return Err(Error::NotAuthenticated),
        (Access::Scope(scope), Some(c)) => {
            if c.key_scopes().is_some_and(|s| !api_key::grants(s, scope)) {
                return Err(Error::permission_denied(format!(
                    "API key missing required scope '{scope}'"
                )));
            }
        }
        (Access::SessionOnly | Access::SessionOnlyIgnoringKeys, Some(c)) if c.is_key() => {
            return Err(Error::permission_denied(
                "This action does not support personal API key access",
            ));
        }
        (_, Some(_)) => {}
    }
    // 6. Recent authentication, where the body does not decide it (a user update's does).
    let body_decides =
        matches!(route, Route::User(_)) && matches!(method, Method::PATCH | Method::PUT);
    if let Some(c) = caller
        .as_ref()
        .filter(|_| route.is_sensitive(&method) && !body_decides)
    {
        c.require_recent_login(app)?;
    }

    // 7. The per-key rate limit; the other throttles depend on the body and come later.
    key_rate_limit(app, caller.as_ref())?;

    // 8. The object, before the body.
    let target = match (route.user_segment(), &caller) {
        (Some(segment), Some(c)) => Some(resolve_target(app, c, segment)?),
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
        session_token: credentials.session_token,
    };
    // 9. The body, for routes that read one.
    let body = if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
        let bytes = body::read(incoming, app.config.max_body_bytes).await?;
        body::json_object(&parts.headers, &bytes)?
    } else {
        serde_json::Map::new()
    };

    dispatch_handler(app, route, &info, caller, target, body).await
}

/// One `match` from (route, method) to handler. Access rules are already enforced, so a
/// handler that needs a caller or a target always has one here.
async fn dispatch_handler(
    app: &App,
    route: &Route,
    info: &RequestInfo,
    caller: Option<Caller>,
    target: Option<Target>,
    body: serde_json::Map<String, serde_json::Value>,
) -> Result<Response<Body>> {
    use api::{email, keys as key_api, sessions as session_api, two_factor, users as user_api};
    let m = &info.method;
    let read = matches!(*m, Method::GET | Method::HEAD);
    match (route, caller, target) {
        (Route::Health, _, _) => api::health(app).await,
        (Route::Metrics, _, _) => crate::metrics::render(app),
        (Route::Schema, _, _) => api::schema::document(),
        (Route::Login, _, _) => session_api::login(app, body).await,
        (Route::LoginToken, _, _) => session_api::login_token(app, info, body).await,
        (Route::Logout, caller, _) => session_api::logout(app, caller).await,
        (Route::RequestEmailVerification, caller, _) => {
            email::request_verification(app, caller.as_ref(), body).await
        }
        (Route::VerifyEmail, _, _) => email::verify(app, body).await,
        (Route::PasswordReset, _, _) => email::request_reset(app, body).await,
        (Route::PasswordResetComplete(uuid), _, _) => email::complete_reset(app, uuid, body).await,
        (Route::Users, Some(c), _) => user_api::list(app, &c, info).await,
        (Route::User(_), Some(c), Some(t)) if read => user_api::retrieve(app, &c, t).await,
        (Route::User(_), Some(c), Some(t)) if *m == Method::DELETE => {
            user_api::delete(app, &c, t).await
        }
        (Route::User(_), Some(c), Some(t)) => {
            user_api::update(app, &c, t, body, *m == Method::PUT).await
        }
        (Route::HedgehogConfig(_), Some(_), Some(t)) if read => user_api::hedgehog_config(t),
        (Route::HedgehogConfig(_), Some(_), Some(t)) => {
            user_api::set_hedgehog_config(app, t, body).await
        }
        (Route::ScenePersonalisation(_), Some(c), Some(t)) => {
            user_api::scene_personalisation(app, &c, t, body).await
        }
        (Route::CancelEmailChange, Some(c), _) => user_api::cancel_email_change(app, &c).await,
        (Route::TwoFactorStartSetup, Some(c), _) => two_factor::start_setup(app, &c).await,
        (Route::TwoFactorValidate, Some(c), _) => two_factor::validate(app, &c, body).await,
        (Route::TwoFactorStatus(_), Some(_), Some(t)) => two_factor::status(app, t).await,
        (Route::TwoFactorBackupCodes(_), Some(_), Some(t)) => {
            two_factor::backup_codes(app, t).await
        }
        (Route::TwoFactorDisable(_), Some(_), Some(t)) => two_factor::disable(app, t).await,
        (Route::Keys, Some(c), _) if read => key_api::list(app, &c).await,
        (Route::Keys, Some(c), _) => key_api::create(app, &c, body).await,
        (Route::CurrentKey, Some(c), _) => key_api::current(&c).await,
        (Route::Key(id), Some(c), _) if read => key_api::retrieve(app, &c, id).await,
        (Route::Key(id), Some(c), _) if *m == Method::DELETE => key_api::delete(app, &c, id).await,
        (Route::Key(id), Some(c), _) => key_api::update(app, &c, id, body).await,
        (Route::KeyRoll(id), Some(c), _) => key_api::roll(app, &c, id).await,
        _ => Err(Error::internal(format!("unhandled route {route:?} {m}"))),
    }
}

fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The credentials a request carries.
struct Credentials {
    session_token: Option<String>,
    csrf_cookie: Option<String>,
    csrf_header: Option<String>,
    bearer: Option<String>,
}

impl Credentials {
    fn read(headers: &hyper::HeaderMap, access: Access) -> Self {
        let cookies: Vec<&str> = headers
            .get_all(hyper::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let cookie = |name| {
            cookies
                .iter()
                .find_map(|h| session::cookie(h, name))
                .map(str::to_owned)
        };
        // DELETE on a user does not even read `Authorization` (upstream: session only → 401).
        let bearer = if access == Access::SessionOnlyIgnoringKeys {
            None
        } else {
            headers
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(bearer_token)
                .map(str::to_owned)
        };
        Credentials {
            session_token: cookie(session::SESSION_COOKIE).filter(|t| !t.is_empty()),
            csrf_cookie: cookie(session::CSRF_COOKIE),
            csrf_header: headers
                .get("x-csrftoken")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            bearer,
        }
    }
}

/// Step 3: a live session cookie wins; otherwise a valid `Authorization: Bearer` key; otherwise
/// nobody. An unknown or expired session cookie is ignored; a present but invalid key is 401.
fn authenticate(app: &App, credentials: &Credentials) -> Result<Option<Caller>> {
    let now = app.clock.now();
    if let Some(token) = &credentials.session_token {
        let digest = crate::auth::token_digest(token);
        let idle = micros(app.config.session_idle_timeout);
        let found = app
            .db
            .read(|conn| sessions::find(conn, &digest, false, now - idle))?;
        if let Some((s, user)) = found {
            if now - s.last_seen_at >= HOUR {
                let id = s.id;
                app.db
                    .write_detached(move |conn| sessions::touch(conn, id, now));
            }
            return Ok(Some(Caller::session(user, s)));
        }
    }
    let Some(token) = &credentials.bearer else {
        return Ok(None);
    };
    let digest = api_key::digest(token);
    let Some((key, user)) = app.db.read_cached(|conn, cache| cache.key(conn, &digest))? else {
        return Err(Error::BadApiKey);
    };
    if key.last_used_at.is_none_or(|t| now - t >= HOUR) {
        let id = key.id.clone();
        app.db
            .write_detached(move |conn| keys::touch(conn, &id, now));
    }
    Ok(Some(Caller::key(user, key)))
}

/// `--key-rate-limit`: every request authenticated with a key counts in that key's own bucket.
fn key_rate_limit(app: &App, caller: Option<&Caller>) -> Result<()> {
    let (Some(windows), Some(api::AuthKind::Key(key))) =
        (&app.config.key_rate_limit, caller.map(|c| &c.auth))
    else {
        return Ok(());
    };
    let windows: Vec<(usize, i64)> = windows
        .iter()
        .map(|w| {
            (
                w.limit,
                i64::try_from(w.window.as_secs()).unwrap_or(i64::MAX),
            )
        })
        .collect();
    app.throttles
        .hit_windows("personal_api_key", &key.id, &windows, app.clock.now())
}

/// A duration in microseconds, for comparisons with stored times.
pub fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

const HOUR: i64 = 3_600_000_000;

/// `^Bearer\s+(\S.+)$`, case-sensitive scheme, surrounding whitespace trimmed. OAuth tokens
/// (`pha_`) are not personal API keys and are ignored.
pub fn bearer_token(header: &str) -> Option<&str> {
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

    #[tokio::test]
    async fn a_server_error_gets_the_common_headers_and_hides_its_cause() {
        use http_body_util::BodyExt;
        let mut res = body::error(&Error::internal("disk on fire"));
        let origin = HeaderValue::from_static("https://app.example.com");
        common_headers(res.headers_mut(), "req-1", Some(origin));
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let h = res.headers();
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h[CACHE_CONTROL], "no-store");
        assert_eq!(h[X_REQUEST_ID], "req-1");
        assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            &bytes[..],
            br#"{"type":"server_error","code":"error","detail":"A server error occurred.","attr":null}"#
        );
    }

    #[test]
    fn request_ids_are_validated() {
        assert!(valid_request_id("abc-123:x.y_z"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("has space"));
        assert!(!valid_request_id(&"a".repeat(129)));
    }
}
