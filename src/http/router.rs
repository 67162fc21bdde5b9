//! The whole API on one screen: which paths exist, which methods each takes, and the access
//! rule of every (route, method) pair. Paths match with or without a trailing slash and are
//! percent-decoded first.

use hyper::Method;

/// A known path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/api/users/`
    Users,
    /// `/api/users/{uuid|@me}/`
    User(String),
    /// `/api/users/{uuid|@me}/hedgehog_config/`
    HedgehogConfig(String),
    /// `/_health`
    Health,
}

/// What a (route, method) requires of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials needed (a bad key is still refused).
    Public,
    /// Session or key; a key needs this scope.
    Scope(&'static str),
}

impl Route {
    /// Matches a percent-decoded path.
    pub fn parse(path: &str) -> Option<Route> {
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        let parts: Vec<&str> = trimmed.split('/').collect();
        match parts.as_slice() {
            ["", "_health"] => Some(Route::Health),
            ["", "api", "users"] => Some(Route::Users),
            ["", "api", "users", id] if is_lookup(id) => Some(Route::User((*id).to_owned())),
            ["", "api", "users", id, "hedgehog_config"] if is_lookup(id) => {
                Some(Route::HedgehogConfig((*id).to_owned()))
            }
            _ => None,
        }
    }

    /// Methods routed here, in the order of the `Allow` header (HEAD wherever GET is).
    pub fn methods(&self) -> &'static [Method] {
        match self {
            Route::Users | Route::Health => &[Method::GET, Method::HEAD],
            Route::User(_) => &[Method::GET, Method::HEAD, Method::PUT, Method::PATCH],
            Route::HedgehogConfig(_) => &[Method::GET, Method::HEAD, Method::PATCH],
        }
    }

    /// The access rule for a routed method.
    pub fn access(&self, method: &Method) -> Access {
        let read = matches!(*method, Method::GET | Method::HEAD);
        match self {
            Route::Health => Access::Public,
            Route::Users | Route::User(_) | Route::HedgehogConfig(_) => {
                Access::Scope(if read { "user:read" } else { "user:write" })
            }
        }
    }

    /// The route template, for logs and metrics (never the raw path).
    pub fn template(&self) -> &'static str {
        match self {
            Route::Users => "/api/users/",
            Route::User(_) => "/api/users/{id}/",
            Route::HedgehogConfig(_) => "/api/users/{id}/hedgehog_config/",
            Route::Health => "/_health",
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
    }

    #[test]
    fn unknown_paths_do_not_route() {
        assert_eq!(Route::parse("/api/users//"), None);
        assert_eq!(Route::parse("/api/users/a.b/"), None);
        assert_eq!(Route::parse("/api/userz/"), None);
        assert_eq!(Route::parse(""), None);
    }
}
