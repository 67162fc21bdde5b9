//! Resolved settings for `usersvc serve`, and where the database lives by default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// Everything `serve` needs, after flags and `USERSVC_*` variables are resolved.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub db: PathBuf,
    pub listen: SocketAddr,
    /// Base of absolute URLs (pagination, mail links), without a trailing `/`.
    pub site_url: Option<String>,
    pub no_bootstrap: bool,
    pub max_body_bytes: u64,
    /// hyper's one timer: reading a request head, and idle keep-alive connections.
    pub header_timeout: Duration,
    /// How long in-flight requests may take to finish after SIGINT/SIGTERM.
    pub shutdown_timeout: Duration,
    /// Print `{"listening": …}` instead of the `listening on` line.
    pub json: bool,
    /// Where outgoing mail goes; `None` means email is not configured.
    pub mail: Option<MailTransport>,
    /// The `From:` address (default `usersvc@<site-url host>`).
    pub mail_from: Option<String>,
    /// Sessions end after this long without a request.
    pub session_idle_timeout: Duration,
    /// Sessions older than this need a fresh login for sensitive actions.
    pub reauth_after: Duration,
    /// How long a login waits for its second factor.
    pub pending_login_ttl: Duration,
    /// How long a started 2FA setup can be confirmed.
    pub totp_setup_ttl: Duration,
    /// Lifetime of emailed verification and reset tokens.
    pub token_ttl: Duration,
    /// Browser origins (`scheme://host[:port]`) allowed to call the API with credentials.
    pub cors_origins: Vec<String>,
    /// Per-key request limits (`--key-rate-limit`); `None` means off.
    pub key_rate_limit: Option<Vec<RateWindow>>,
}

/// At most `limit` requests in any sliding window of `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateWindow {
    pub limit: usize,
    pub window: Duration,
}

/// Outgoing mail: files in a directory (development, tests) or an SMTP server.
#[derive(Debug, Clone)]
pub enum MailTransport {
    Dir(PathBuf),
    /// `smtp[s]://user@host:port`; the password comes from the environment or a file.
    Smtp {
        url: String,
        password: Option<String>,
    },
}

impl ServeConfig {
    /// Defaults for a server on a free loopback port; for tests.
    pub fn for_test(db: PathBuf) -> Self {
        ServeConfig {
            db,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            site_url: None,
            no_bootstrap: true,
            max_body_bytes: 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
            json: false,
            mail: None,
            mail_from: None,
            session_idle_timeout: Duration::from_secs(14 * 86_400),
            reauth_after: Duration::from_secs(2 * 3600),
            pending_login_ttl: Duration::from_secs(600),
            totp_setup_ttl: Duration::from_secs(600),
            token_ttl: Duration::from_secs(86_400),
            cors_origins: Vec::new(),
            key_rate_limit: None,
        }
    }
}

/// `usersvc.sqlite3` in the platform data directory (`~/.local/share/usersvc/` on Linux).
pub fn default_db_path() -> Result<PathBuf> {
    directories::ProjectDirs::from("", "", "usersvc")
        .map(|d| d.data_dir().join("usersvc.sqlite3"))
        .ok_or(Error::NoDataDir)
}
