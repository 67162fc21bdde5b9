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
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct App {
    pub db: Db,
    pub clock: Clock,
    pub config: Arc<ServeConfig>,
    /// The address the server is bound to (the last fallback for absolute URLs).
    pub bound: SocketAddr,
    /// Password hashes: one per core at a time, a bounded number waiting (SPEC §4.2, §10.7).
    hash_queue: HashQueue,
    pub throttles: Arc<Throttles>,
    pub mailer: Mailer,
    /// This server's Prometheus registry (per `App`, so in-process test servers do not share
    /// counters).
    pub metrics: Metrics,
    /// The last health probe: when, and its outcome (see `api::health`).
    pub health: Arc<Mutex<Option<HealthProbe>>>,
}

pub type HealthProbe = (std::time::Instant, std::result::Result<(), String>);

impl App {
    pub fn new(db: Db, clock: Clock, config: ServeConfig, bound: SocketAddr) -> Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let site_url = config
            .site_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"));
        let mailer = Mailer::new(&config, site_url)?;
        let metrics = Metrics::new();
        Ok(App {
            db,
            clock,
            config: Arc::new(config),
            bound,
            hash_queue: HashQueue::new(cores)?,
            throttles: Arc::new(Throttles::new(metrics.clone())),
            mailer,
            metrics,
            health: Arc::new(Mutex::new(None)),
        })
    }

    /// Runs a password hash or verification on the blocking pool, one per core at a time, so a
    /// login flood cannot starve ordinary requests; beyond 16 waiting per core → 429.
    pub async fn hash_work<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let result = self.hash_queue.run(f).await;
        if matches!(result, Err(Error::Throttled(_))) {
            self.metrics.throttled("hash_queue");
        }
        result
    }
}

/// How many hashes may wait per core before new ones are refused (SPEC §10.7).
const HASH_WAITING_PER_CORE: usize = 16;

/// Admission and concurrency for password hashes. A hash costs tens of milliseconds of CPU,
/// so an unbounded queue would only turn a flood into ever longer response times; refusing
/// early with `Retry-After: 1` tells clients to come back instead.
#[derive(Clone)]
struct HashQueue {
    /// Hashes running or waiting: `cores × (1 + HASH_WAITING_PER_CORE)`.
    admitted: Arc<Semaphore>,
    /// Hashes running: one per core.
    running: Arc<Semaphore>,
    /// The hashing threads' work queue.
    jobs: Arc<Mutex<std::sync::mpsc::Sender<HashJob>>>,
}

type HashJob = Box<dyn FnOnce() + Send>;

impl HashQueue {
    /// Starts one hashing thread per core at the lowest scheduling priority: a login flood
    /// then uses idle CPU only, and ordinary requests keep their latency (the scheduler runs
    /// the async workers first whenever they have work).
    fn new(cores: usize) -> Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<HashJob>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..cores {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("usersvc-hash-{i}"))
                .spawn(move || {
                    if let Err(e) = thread_priority::set_current_thread_priority(
                        thread_priority::ThreadPriority::Min,
                    ) {
                        tracing::debug!("cannot lower the hashing thread's priority: {e:?}");
                    }
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(Error::internal)?;
        }
        Ok(HashQueue {
            admitted: Arc::new(Semaphore::new(cores * (1 + HASH_WAITING_PER_CORE))),
            running: Arc::new(Semaphore::new(cores)),
            jobs: Arc::new(Mutex::new(tx)),
        })
    }

    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let admitted = Arc::clone(&self.admitted)
            .try_acquire_owned()
            .map_err(|_| Error::Throttled(1))?;
        let running = Arc::clone(&self.running)
            .acquire_owned()
            .await
            .map_err(Error::internal)?;
        // The permits move into the job: if the client goes away mid-hash, the hash keeps its
        // core until it finishes, so the bound stays true.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: HashJob = Box::new(move || {
            let _permits = (admitted, running);
            let _ = tx.send(f());
        });
        self.jobs
            .lock()
            .map_err(|_| Error::internal("hash queue poisoned"))?
            .send(job)
            .map_err(|_| Error::internal("hashing threads stopped"))?;
        rx.await
            .map_err(|_| Error::internal("a hash job was lost"))?
    }
}

/// Sliding-window throttles kept in memory, keyed by (kind, subject).
#[derive(Default)]
pub struct Throttles {
    windows: Mutex<HashMap<(&'static str, String), Vec<Micros>>>,
    /// Refusals are counted here, by kind (`usersvc_throttled_total`).
    metrics: Metrics,
}

impl Throttles {
    pub fn new(metrics: Metrics) -> Self {
        Throttles {
            windows: Mutex::default(),
            metrics,
        }
    }

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
        self.hit_windows(kind, key, &[(limit, window_secs)], now)
    }

    /// `hit` with several (limit, window seconds) pairs on one event list, e.g. 480/min and
    /// 4800/hour. The event is counted in all of them or, if any is full, in none; the wait is
    /// the longest among the full ones.
    pub fn hit_windows(
        &self,
        kind: &'static str,
        key: &str,
        windows: &[(usize, i64)],
        now: Micros,
    ) -> Result<()> {
        let micros = |secs: i64| secs.saturating_mul(1_000_000);
        let longest = micros(windows.iter().map(|&(_, secs)| secs).max().unwrap_or(0));
        let mut map = self
            .windows
            .lock()
            .map_err(|_| Error::internal("throttle lock poisoned"))?;
        prune(&mut map, now);
        let events = map.entry((kind, key.to_owned())).or_default();
        events.retain(|&t| t > now - longest);
        // A full window always yields a wait of at least 1 s: its oldest event is inside it.
        let mut wait = 0;
        for &(limit, secs) in windows {
            let window = micros(secs);
            let inside = || events.iter().copied().filter(|&t| t > now - window);
            if inside().count() >= limit {
                let oldest = inside().min().unwrap_or(now);
                let left = oldest.saturating_add(window) - now;
                wait = wait.max(left.saturating_add(999_999) / 1_000_000);
            }
        }
        if wait > 0 {
            self.metrics.throttled(kind);
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
            prune(&mut map, now);
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
            Some(&nth) if now < nth + lock_secs * 1_000_000 => {
                self.metrics.throttled(kind);
                true
            }
            Some(_) => {
                events.clear();
                false
            }
            None => false,
        }
    }
}

/// Above this many tracked keys, keys with no event in the last day (the longest window) are
/// forgotten, so random emails or retired keys cannot grow the map without bound.
const PRUNE_AT: usize = 10_000;
const DAY_MICROS: Micros = 86_400_000_000;

fn prune(map: &mut HashMap<(&'static str, String), Vec<Micros>>, now: Micros) {
    if map.len() > PRUNE_AT {
        map.retain(|_, events| events.last().is_some_and(|&t| t > now - DAY_MICROS));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Micros = 1_000_000;

    #[test]
    fn several_windows_count_together_and_refusals_count_nowhere() {
        let t = Throttles::default();
        let windows = [(2, 60), (3, 3600)];
        let start = 1_000 * SEC;
        t.hit_windows("k", "a", &windows, start).unwrap();
        t.hit_windows("k", "a", &windows, start + SEC).unwrap();
        // The minute is full: wait until the first event is a minute old.
        let err = t.hit_windows("k", "a", &windows, start + 2 * SEC);
        assert!(matches!(err, Err(Error::Throttled(58))), "{err:?}");
        // Another key has its own bucket.
        t.hit_windows("k", "b", &windows, start + 2 * SEC).unwrap();
        // A minute later the minute has room; the hour takes one more.
        t.hit_windows("k", "a", &windows, start + 61 * SEC).unwrap();
        // Now the hour is full too (the refused request above was not counted).
        let err = t.hit_windows("k", "a", &windows, start + 200 * SEC);
        assert!(matches!(err, Err(Error::Throttled(3400))), "{err:?}");
        t.hit_windows("k", "a", &windows, start + 3601 * SEC)
            .unwrap();
    }

    #[tokio::test]
    async fn hash_queue_refuses_beyond_sixteen_waiting_per_core() {
        let queue = HashQueue::new(1).unwrap();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        // One running (blocked until released) and sixteen waiting behind it.
        let mut jobs = Vec::new();
        for _ in 0..=HASH_WAITING_PER_CORE {
            let queue = queue.clone();
            let rx = Arc::clone(&release_rx);
            jobs.push(tokio::spawn(async move {
                queue
                    .run(move || {
                        let _ = rx.lock().map(|rx| rx.recv());
                        Ok(())
                    })
                    .await
            }));
        }
        // Let every job take its place in the queue.
        while queue.admitted.available_permits() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let refused = queue.run(|| Ok(())).await;
        assert!(matches!(refused, Err(Error::Throttled(1))), "{refused:?}");
        for _ in 0..=HASH_WAITING_PER_CORE {
            release_tx.send(()).unwrap();
        }
        for job in jobs {
            job.await.unwrap().unwrap();
        }
        // Room again once the queue drained.
        queue.run(|| Ok(())).await.unwrap();
    }
}
