//! `App`: the cheap-to-clone handle every request works with.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::clock::{Clock, Micros};
use crate::config::ServeConfig;
use crate::db::Db;
use crate::error::{Error, Result};

#[derive(Clone)]
pub struct App {
    pub db: Db,
    pub clock: Clock,
    pub config: Arc<ServeConfig>,
    /// The address the server is bound to (the last fallback for absolute URLs).
    pub bound: SocketAddr,
    /// One permit per core: at most that many password hashes run at once (SPEC §4.2).
    hash_permits: Arc<Semaphore>,
    pub throttles: Arc<Throttles>,
}

impl App {
    pub fn new(db: Db, clock: Clock, config: ServeConfig, bound: SocketAddr) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        App {
            db,
            clock,
            config: Arc::new(config),
            bound,
            hash_permits: Arc::new(Semaphore::new(cores)),
            throttles: Arc::new(Throttles::default()),
        }
    }

    /// Runs a password hash or verification on the blocking pool, one per core at a time, so a
    /// login flood cannot starve ordinary requests.
    pub async fn hash_work<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let _permit = self.hash_permits.acquire().await.map_err(Error::internal)?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(Error::internal)?
    }
}

/// Sliding-window throttles kept in memory, keyed by (kind, subject).
#[derive(Default)]
pub struct Throttles {
    windows: Mutex<HashMap<(&'static str, String), Vec<Micros>>>,
}

impl Throttles {
    /// Counts one event for `key` unless `limit` events already fall in the window; then
    /// returns the seconds until the oldest counted one leaves it (at least 1). A refused
    /// event is not counted (SPEC §10.5).
    pub fn hit(
        &self,
        kind: &'static str,
        key: &str,
        limit: usize,
        window_secs: i64,
        now: Micros,
    ) -> Result<()> {
        let window = window_secs * 1_000_000;
        let mut map = self
            .windows
            .lock()
            .map_err(|_| Error::internal("throttle lock poisoned"))?;
        let events = map.entry((kind, key.to_owned())).or_default();
        events.retain(|&t| t > now - window);
        if events.len() >= limit {
            let oldest = events.iter().copied().min().unwrap_or(now);
            let wait = (oldest + window - now + 999_999) / 1_000_000;
            return Err(Error::Throttled(wait.max(1) as u64));
        }
        events.push(now);
        Ok(())
    }
}
