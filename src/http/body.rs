//! Request bodies (size-limited JSON, SPEC §10.1 step 9) and JSON responses.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::api::fields::python_type_name;
use crate::error::{Error, Result};

pub type Body = Full<Bytes>;

/// Reads the whole body, refusing more than `max` bytes with 413.
pub async fn read(body: Incoming, max: u64) -> Result<Bytes> {
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Error::TooLarge(max)),
        Err(e) => Err(Error::Parse(format!("could not read the body: {e}"))),
    }
}

/// Parses a JSON object body. An empty body is `{}` whatever its type; any other body must
/// be `application/json` (415) and well-formed (400 `parse_error`) and an object.
pub fn json_object(headers: &HeaderMap, bytes: &[u8]) -> Result<Map<String, Value>> {
    if bytes.is_empty() {
        return Ok(Map::new());
    }
    let media_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = media_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(Error::UnsupportedMediaType(media_type.to_owned()));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| Error::Parse(e.to_string()))?;
    match value {
        Value::Object(map) => Ok(map),
        Value::Null => Err(Error::non_field("null", "This field may not be null.")),
        other => Err(Error::non_field(
            "invalid_input",
            format!(
                "Invalid data. Expected a dictionary, but got {}.",
                python_type_name(&other)
            ),
        )),
    }
}

/// A compact JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Result<Response<Body>> {
    let bytes = serde_json::to_vec(value).map_err(Error::internal)?;
    Ok(json_bytes(status, bytes))
}

/// A response of already serialized JSON.
pub fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from(bytes)));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// The error envelope for `err`, with `Allow` / `Retry-After` where they belong.
pub fn error(err: &Error) -> Response<Body> {
    let bytes = serde_json::to_vec(&err.envelope()).unwrap_or_default();
    let mut res = Response::new(Full::new(Bytes::from(bytes)));
    *res.status_mut() = err.status();
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    match err {
        Error::MethodNotAllowed { allow, .. } => {
            if let Ok(v) = HeaderValue::from_str(allow) {
                headers.insert(hyper::header::ALLOW, v);
            }
        }
        Error::Throttled(secs) => {
            headers.insert(hyper::header::RETRY_AFTER, HeaderValue::from(*secs));
        }
        // The rest of the body is never read, so the connection cannot carry another request;
        // saying so lets the client know before it tries.
        Error::TooLarge(_) => {
            headers.insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        }
        Error::NotAuthenticated | Error::BadApiKey => {
            headers.insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
        }
        _ => {}
    }
    res
}
