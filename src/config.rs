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
        }
    }
}

/// `usersvc.sqlite3` in the platform data directory (`~/.local/share/usersvc/` on Linux).
pub fn default_db_path() -> Result<PathBuf> {
    directories::ProjectDirs::from("", "", "usersvc")
        .map(|d| d.data_dir().join("usersvc.sqlite3"))
        .ok_or(Error::NoDataDir)
}
