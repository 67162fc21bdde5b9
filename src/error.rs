//! The one error type, and the one place that maps it to the PostHog error envelope
//! `{"type","code","detail","attr"}` (reference §2).

use std::borrow::Cow;

use hyper::StatusCode;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every way a request can fail. `Internal` carries the real cause for the log; clients only ever
/// see the generic server error for it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400 `validation_error`: a field or non-field (`attr: None`) validation failure.
    #[error("validation error {code} on {attr:?}: {detail}")]
    Validation {
        code: Cow<'static, str>,
        detail: String,
        attr: Option<String>,
    },
    /// 400 `invalid_request` `parse_error`: malformed JSON.
    #[error("JSON parse error - {0}")]
    Parse(String),
    /// 401 `not_authenticated`.
    #[error("authentication credentials were not provided")]
    NotAuthenticated,
    /// 401 `2fa_required`: the password was right, the login now waits for a second factor.
    #[error("2FA is required")]
    SecondFactorRequired,
    /// 401 `authentication_failed` for a bad personal API key.
    #[error("personal API key is invalid")]
    BadApiKey,
    /// 403 `authentication_error` with a code (usually `permission_denied`).
    #[error("forbidden ({code}): {detail}")]
    Forbidden {
        code: &'static str,
        detail: Cow<'static, str>,
    },
    /// 404 `Not found.` for a missing object.
    #[error("not found")]
    NotFound,
    /// 404 `Endpoint not found.` for an unknown path.
    #[error("endpoint not found")]
    EndpointNotFound,
    /// 405 with the `Allow` header.
    #[error("method {method} not allowed")]
    MethodNotAllowed { method: String, allow: String },
    /// 409 `conflict` (typed `server_error`, as upstream).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// 413 for a body over the limit.
    #[error("request body exceeds {0} bytes")]
    TooLarge(u64),
    /// 415 for a body that is not JSON.
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    /// 429 `throttled` with `Retry-After`.
    #[error("throttled for {0} s")]
    Throttled(u64),
    /// 503 when the database does not answer (health check).
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The file was migrated by a newer usersvc.
    #[error("database schema V{0} is newer than this binary")]
    SchemaTooNew(i64),
    /// No `--db` and no platform data directory (CLI only).
    #[error("cannot determine data directory; pass --db")]
    NoDataDir,
    /// 500: the cause is logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A 400 `validation_error` on a field.
    pub fn field(attr: &str, code: &'static str, detail: impl Into<String>) -> Self {
        Error::Validation {
            code: Cow::Borrowed(code),
            detail: detail.into(),
            attr: Some(attr.to_owned()),
        }
    }

    /// A 400 `validation_error` that belongs to no field (`attr: null`).
    pub fn non_field(code: &'static str, detail: impl Into<String>) -> Self {
        Error::Validation {
            code: Cow::Borrowed(code),
            detail: detail.into(),
            attr: None,
        }
    }

    /// A 403 `permission_denied`.
    pub fn permission_denied(detail: impl Into<Cow<'static, str>>) -> Self {
        Error::Forbidden {
            code: "permission_denied",
            detail: detail.into(),
        }
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Error::Internal(cause.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::Validation { .. } | Error::Parse(_) => StatusCode::BAD_REQUEST,
            Error::NotAuthenticated | Error::BadApiKey | Error::SecondFactorRequired => {
                StatusCode::UNAUTHORIZED
            }
            Error::Forbidden { .. } => StatusCode::FORBIDDEN,
            Error::NotFound | Error::EndpointNotFound => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::SchemaTooNew(_) | Error::NoDataDir | Error::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The envelope's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Validation { .. } => "validation_error",
            Error::NotAuthenticated
            | Error::BadApiKey
            | Error::SecondFactorRequired
            | Error::Forbidden { .. } => "authentication_error",
            Error::Parse(_)
            | Error::NotFound
            | Error::EndpointNotFound
            | Error::MethodNotAllowed { .. }
            | Error::TooLarge(_)
            | Error::UnsupportedMediaType(_) => "invalid_request",
            Error::Throttled(_) => "throttled_error",
            Error::Conflict(_)
            | Error::Unavailable(_)
            | Error::SchemaTooNew(_)
            | Error::NoDataDir
            | Error::Internal(_) => "server_error",
        }
    }

    /// The envelope's `code`.
    pub fn code(&self) -> &str {
        match self {
            Error::Validation { code, .. } => code,
            Error::Parse(_) => "parse_error",
            Error::NotAuthenticated => "not_authenticated",
            Error::BadApiKey => "authentication_failed",
            Error::SecondFactorRequired => "2fa_required",
            Error::Forbidden { code, .. } => code,
            Error::NotFound | Error::EndpointNotFound => "not_found",
            Error::MethodNotAllowed { .. } => "method_not_allowed",
            Error::Conflict(_) => "conflict",
            Error::TooLarge(_) => "request_too_large",
            Error::UnsupportedMediaType(_) => "unsupported_media_type",
            Error::Throttled(_) => "throttled",
            Error::Unavailable(_) => "service_unavailable",
            Error::SchemaTooNew(_) | Error::NoDataDir | Error::Internal(_) => "error",
        }
    }

    /// The envelope's `detail`: never internal text.
    pub fn detail(&self) -> String {
        match self {
            Error::Validation { detail, .. } => detail.clone(),
            Error::Parse(msg) => format!("JSON parse error - {msg}"),
            Error::NotAuthenticated => "Authentication credentials were not provided.".into(),
            Error::BadApiKey => {
                "Personal API key found in request Authorization header is invalid.".into()
            }
            Error::SecondFactorRequired => "2FA is required.".into(),
            Error::Forbidden { detail, .. } => detail.to_string(),
            Error::NotFound => "Not found.".into(),
            Error::EndpointNotFound => "Endpoint not found.".into(),
            Error::MethodNotAllowed { method, .. } => format!("Method \"{method}\" not allowed."),
            Error::Conflict(msg) => (*msg).into(),
            Error::TooLarge(max) => format!("Request body exceeds {max} bytes."),
            Error::UnsupportedMediaType(t) => format!("Unsupported media type \"{t}\" in request."),
            Error::Throttled(secs) => format!(
                "Request was throttled. Expected available in {secs} second{}.",
                if *secs == 1 { "" } else { "s" }
            ),
            Error::Unavailable(_) => "The database is not available.".into(),
            Error::SchemaTooNew(_) | Error::NoDataDir | Error::Internal(_) => {
                "A server error occurred.".into()
            }
        }
    }

    pub fn attr(&self) -> Option<&str> {
        match self {
            Error::Validation { attr, .. } => attr.as_deref(),
            _ => None,
        }
    }

    /// The JSON envelope, compact.
    pub fn envelope(&self) -> serde_json::Value {
        serde_json::json!({
            "type": self.kind(),
            "code": self.code(),
            "detail": self.detail(),
            "attr": self.attr(),
        })
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Internal(format!("sqlite: {e}"))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Internal(format!("io: {e}"))
    }
}
