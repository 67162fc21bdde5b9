//! The whole API on one screen: which paths exist, which methods each takes, and the access
//! rule of every (route, method) pair. Paths match with or without a trailing slash and are
//! percent-decoded first.

use hyper::Method;

/// A known path. `String` fields are the `{uuid|@me}` (or key id) path segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/api/users/`
    Users,
    /// `/api/users/{uuid|@me}/`
    User(String),
    /// `/api/users/{uuid|@me}/hedgehog_config/`
    HedgehogConfig(String),
    /// `/api/users/{uuid|@me}/scene_personalisation/`
    ScenePersonalisation(String),
    /// `/api/users/{x}/two_factor_start_setup/` and `…/start_2fa_setup/` (`{x}` ignored)
    TwoFactorStartSetup,
    /// `/api/users/{x}/two_factor_validate/` and `…/validate_2fa/` (`{x}` ignored)
    TwoFactorValidate,
    /// `/api/users/{uuid|@me}/two_factor_status/`
    TwoFactorStatus(String),
    /// `/api/users/{uuid|@me}/two_factor_backup_codes/`
    TwoFactorBackupCodes(String),
    /// `/api/users/{uuid|@me}/two_factor_disable/`
    TwoFactorDisable(String),
    /// `/api/users/request_email_verification/`
    RequestEmailVerification,
    /// `/api/users/verify_email/`
    VerifyEmail,
    /// `/api/users/cancel_email_change_request/`
    CancelEmailChange,
    /// `/api/login/`
    Login,
    /// `/api/login/token/`
    LoginToken,
    /// `/api/logout/`
    Logout,
    /// `/api/reset/`
    PasswordReset,
    /// `/api/reset/{uuid}/`
    PasswordResetComplete(String),
    /// `/api/personal_api_keys/`
    Keys,
    /// `/api/personal_api_keys/@current/`
    CurrentKey,
    /// `/api/personal_api_keys/{id}/`
    Key(String),
    /// `/api/personal_api_keys/{id}/roll/`
    KeyRoll(String),
    /// `/_health`
    Health,
    /// `/metrics` (Prometheus text format)
    Metrics,
    /// `/api/schema/` (OpenAPI 3.1)
    Schema,
}

/// What a (route, method) requires of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials needed (a bad key is still refused).
    Public,
    /// Session, or a key with this scope.
    Scope(&'static str),
    /// Sessions only: a key gets 403 "This action does not support personal API key access".
    SessionOnly,
    /// Sessions only, and `Authorization` is not even read: a key gets 401 (DELETE, as upstream).
    SessionOnlyIgnoringKeys,
    /// Session or any valid key; the handler decides what a key may see.
    Any,
}

/// Names under `/api/users/` that are actions, never a uuid.
const COLLECTION_ACTIONS: [&str; 3] = [
    "request_email_verification",
    "verify_email",
    "cancel_email_change_request",
];

impl Route {
    /// Matches a percent-decoded path.
    pub fn parse(path: &str) -> Option<Route> {
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        let parts: Vec<&str> = trimmed.split('/').collect();
        let id = |s: &str| s.to_owned();
        let route = match parts.as_slice() {
            ["", "_health"] => Route::Health,
            ["", "metrics"] => Route::Metrics,
            ["", "api", "schema"] => Route::Schema,
            ["", "api", "users"] => Route::Users,
            ["", "api", "users", "request_email_verification"] => Route::RequestEmailVerification,
            ["", "api", "users", "verify_email"] => Route::VerifyEmail,
            ["", "api", "users", "cancel_email_change_request"] => Route::CancelEmailChange,
            ["", "api", "users", x] if is_lookup(x) => Route::User(id(x)),
            ["", "api", "users", x, action] if is_lookup(x) && !COLLECTION_ACTIONS.contains(x) => {
                match *action {
                    "hedgehog_config" => Route::HedgehogConfig(id(x)),
                    "scene_personalisation" => Route::ScenePersonalisation(id(x)),
                    "two_factor_start_setup" | "start_2fa_setup" => Route::TwoFactorStartSetup,
                    "two_factor_validate" | "validate_2fa" => Route::TwoFactorValidate,
                    "two_factor_status" => Route::TwoFactorStatus(id(x)),
                    "two_factor_backup_codes" => Route::TwoFactorBackupCodes(id(x)),
                    "two_factor_disable" => Route::TwoFactorDisable(id(x)),
                    _ => return None,
                }
            }
            ["", "api", "login"] => Route::Login,
            ["", "api", "login", "token"] => Route::LoginToken,
            ["", "api", "logout"] => Route::Logout,
            ["", "api", "reset"] => Route::PasswordReset,
            ["", "api", "reset", x] if is_lookup(x) => Route::PasswordResetComplete(id(x)),
            ["", "api", "personal_api_keys"] => Route::Keys,
            ["", "api", "personal_api_keys", "@current"] => Route::CurrentKey,
            ["", "api", "personal_api_keys", x] if is_lookup(x) => Route::Key(id(x)),
            ["", "api", "personal_api_keys", x, "roll"] if is_lookup(x) => Route::KeyRoll(id(x)),
            _ => return None,
        };
        Some(route)
    }

    /// Methods routed here, in the order of the `Allow` header (HEAD wherever GET is).
    pub fn methods(&self) -> &'static [Method] {
        use Method as M;
        const READ: &[Method] = &[Method::GET, Method::HEAD];
        const POST: &[Method] = &[Method::POST];
        match self {
            Route::Users
            | Route::Health
            | Route::Metrics
            | Route::Schema
            | Route::TwoFactorStartSetup
            | Route::TwoFactorStatus(_)
            | Route::CurrentKey => READ,
            Route::User(_) => &[M::GET, M::HEAD, M::PUT, M::PATCH, M::DELETE],
            Route::HedgehogConfig(_) => &[M::GET, M::HEAD, M::PATCH],
            Route::CancelEmailChange => &[M::PATCH],
            Route::Keys => &[M::GET, M::HEAD, M::POST],
            Route::Key(_) => &[M::GET, M::HEAD, M::PATCH, M::DELETE],
            Route::ScenePersonalisation(_)
            | Route::TwoFactorValidate
            | Route::TwoFactorBackupCodes(_)
            | Route::TwoFactorDisable(_)
            | Route::RequestEmailVerification
            | Route::VerifyEmail
            | Route::Login
            | Route::LoginToken
            | Route::Logout
            | Route::PasswordReset
            | Route::PasswordResetComplete(_)
            | Route::KeyRoll(_) => POST,
        }
    }

    /// The access rule for a routed method.
    pub fn access(&self, method: &Method) -> Access {
        let read = matches!(*method, Method::GET | Method::HEAD);
        let scope = if read { "user:read" } else { "user:write" };
        match self {
            Route::Health
            | Route::Metrics
            | Route::Schema
            | Route::RequestEmailVerification
            | Route::VerifyEmail
            | Route::Login
            | Route::LoginToken
            | Route::Logout
            | Route::PasswordReset
            | Route::PasswordResetComplete(_) => Access::Public,
            Route::User(_) if *method == Method::DELETE => Access::SessionOnlyIgnoringKeys,
            Route::Users | Route::User(_) | Route::HedgehogConfig(_) => Access::Scope(scope),
            Route::CurrentKey => Access::Any,
            Route::Key(_) if read => Access::Any,
            Route::ScenePersonalisation(_)
            | Route::TwoFactorStartSetup
            | Route::TwoFactorValidate
            | Route::TwoFactorStatus(_)
            | Route::TwoFactorBackupCodes(_)
            | Route::TwoFactorDisable(_)
            | Route::CancelEmailChange
            | Route::Keys
            | Route::Key(_)
            | Route::KeyRoll(_) => Access::SessionOnly,
        }
    }

    /// Is this an unsafe action that a session older than `--reauth-after` may not perform
    /// (upstream's time-sensitive rule)? `hedgehog_config` and `scene_personalisation` are
    /// exempt; a user update is decided by its body (see `api::users`).
    pub fn is_sensitive(&self, method: &Method) -> bool {
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return false;
        }
        matches!(
            self,
            Route::User(_)
                | Route::TwoFactorValidate
                | Route::TwoFactorBackupCodes(_)
                | Route::TwoFactorDisable(_)
                | Route::CancelEmailChange
                | Route::Keys
                | Route::Key(_)
                | Route::KeyRoll(_)
        )
    }

    /// Does CSRF apply to unsafe requests on a session here? Not for the routes that create
    /// sessions (SPEC §10.5).
    pub fn needs_csrf(&self) -> bool {
        !matches!(self, Route::Login | Route::LoginToken | Route::VerifyEmail)
    }

    /// The `{uuid|@me}` segment of routes that act on one user.
    pub fn user_segment(&self) -> Option<&str> {
        match self {
            Route::User(x)
            | Route::HedgehogConfig(x)
            | Route::ScenePersonalisation(x)
            | Route::TwoFactorStatus(x)
            | Route::TwoFactorBackupCodes(x)
            | Route::TwoFactorDisable(x) => Some(x),
            _ => None,
        }
    }

    /// The route template, for logs and metrics (never the raw path).
    pub fn template(&self) -> &'static str {
        match self {
            Route::Users => "/api/users/",
            Route::User(_) => "/api/users/{id}/",
            Route::HedgehogConfig(_) => "/api/users/{id}/hedgehog_config/",
            Route::ScenePersonalisation(_) => "/api/users/{id}/scene_personalisation/",
            Route::TwoFactorStartSetup => "/api/users/{id}/two_factor_start_setup/",
            Route::TwoFactorValidate => "/api/users/{id}/two_factor_validate/",
            Route::TwoFactorStatus(_) => "/api/users/{id}/two_factor_status/",
            Route::TwoFactorBackupCodes(_) => "/api/users/{id}/two_factor_backup_codes/",
            Route::TwoFactorDisable(_) => "/api/users/{id}/two_factor_disable/",
            Route::RequestEmailVerification => "/api/users/request_email_verification/",
            Route::VerifyEmail => "/api/users/verify_email/",
            Route::CancelEmailChange => "/api/users/cancel_email_change_request/",
            Route::Login => "/api/login/",
            Route::LoginToken => "/api/login/token/",
            Route::Logout => "/api/logout/",
            Route::PasswordReset => "/api/reset/",
            Route::PasswordResetComplete(_) => "/api/reset/{uuid}/",
            Route::Keys => "/api/personal_api_keys/",
            Route::CurrentKey => "/api/personal_api_keys/@current/",
            Route::Key(_) => "/api/personal_api_keys/{id}/",
            Route::KeyRoll(_) => "/api/personal_api_keys/{id}/roll/",
            Route::Health => "/_health",
            Route::Metrics => "/metrics",
            Route::Schema => "/api/schema/",
        }
    }
}

/// DRF's lookup pattern `[^/.]+`: any non-empty segment without a dot.
fn is_lookup(segment: &str) -> bool {
    !segment.is_empty() && !segment.contains('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_slash_is_optional() {
        assert_eq!(Route::parse("/api/users"), Some(Route::Users));
        assert_eq!(Route::parse("/api/users/"), Some(Route::Users));
        assert_eq!(
            Route::parse("/api/users/@me"),
            Some(Route::User("@me".into()))
        );
        assert_eq!(
            Route::parse("/api/users/@me/hedgehog_config"),
            Some(Route::HedgehogConfig("@me".into()))
        );
        assert_eq!(Route::parse("/api/login/token"), Some(Route::LoginToken));
    }

    #[test]
    fn actions_are_not_uuids() {
        assert_eq!(
            Route::parse("/api/users/verify_email/"),
            Some(Route::VerifyEmail)
        );
        assert_eq!(
            Route::parse("/api/users/verify_email/hedgehog_config/"),
            None
        );
        assert_eq!(
            Route::parse("/api/users/anything/start_2fa_setup/"),
            Some(Route::TwoFactorStartSetup)
        );
    }

    #[test]
    fn unknown_paths_do_not_route() {
        assert_eq!(Route::parse("/api/users//"), None);
        assert_eq!(Route::parse("/api/users/a.b/"), None);
        assert_eq!(Route::parse("/api/userz/"), None);
        assert_eq!(Route::parse("/api/users/@me/nope/"), None);
        assert_eq!(Route::parse(""), None);
    }
}
