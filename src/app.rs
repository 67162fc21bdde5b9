//! `App`: the cheap-to-clone handle every request works with.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::clock::{Clock, Micros};
use crate::config::ServeConfig;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::mail::Mailer;

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
    pub mailer: Mailer,
}

impl App {
    pub fn new(db: Db, clock: Clock, config: ServeConfig, bound: SocketAddr) -> Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let site_url = config
            .site_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"));
        let mailer = Mailer::new(&config, site_url)?;
        Ok(App {
            db,
            clock,
            config: Arc::new(config),
            bound,
            hash_permits: Arc::new(Semaphore::new(cores)),
            throttles: Arc::new(Throttles::default()),
            mailer,
        })
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

impl Throttles {
    /// Failures of `key` within the last `window_secs`.
    pub fn failures(&self, kind: &'static str, key: &str, window_secs: i64, now: Micros) -> usize {
        let window = window_secs * 1_000_000;
        self.windows.lock().map_or(0, |mut map| {
            let Some(events) = map.get_mut(&(kind, key.to_owned())) else {
                return 0;
            };
            events.retain(|&t| t > now - window);
            events.len()
        })
    }

    pub fn record_failure(&self, kind: &'static str, key: &str, now: Micros) {
        if let Ok(mut map) = self.windows.lock() {
            map.entry((kind, key.to_owned())).or_default().push(now);
        }
    }

    /// Forgets `key`'s failures (a success resets the count).
    pub fn clear(&self, kind: &'static str, key: &str) {
        if let Ok(mut map) = self.windows.lock() {
            map.remove(&(kind, key.to_owned()));
        }
    }

    /// True while `key` has `limit` consecutive failures and the `limit`-th is less than
    /// `lock_secs` old; once the lock has passed, the streak starts over.
    pub fn streak_locked(
        &self,
        kind: &'static str,
        key: &str,
        limit: usize,
        lock_secs: i64,
        now: Micros,
    ) -> bool {
        let Ok(mut map) = self.windows.lock() else {
            return true;
        };
        let Some(events) = map.get_mut(&(kind, key.to_owned())) else {
            return false;
        };
        match events.get(limit.saturating_sub(1)) {
            Some(&nth) if now < nth + lock_secs * 1_000_000 => true,
            Some(_) => {
                events.clear();
                false
            }
            None => false,
        }
    }
}
