//! The one place that talks to SQLite: opening the file, migrations, the single writer thread
//! with group commit, and the pool of read-only connections. The table modules below hold plain
//! synchronous functions over a `rusqlite::Connection`.
//!
//! Why one writer: SQLite allows one writer at a time anyway; funnelling every write through one
//! thread means the server never meets `SQLITE_BUSY` from itself, and lets that thread commit
//! many requests' writes with one fsync (group commit) while `synchronous=FULL` keeps each
//! acknowledged write durable.

pub mod email_tokens;
pub mod keys;
pub mod orgs;
pub mod sessions;
pub mod two_factor;
pub mod users;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::error::{Error, Result};

refinery::embed_migrations!("migrations");

/// How long a connection waits for another process's lock before giving up. Generous, so a
/// CLI write racing the server waits instead of failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);
/// At most this many queued writes share one transaction.
const MAX_BATCH: usize = 512;

/// A write job: runs inside its own savepoint and says whether it succeeded; the returned
/// completion is called once the batch's commit is known.
type Job = Box<dyn FnOnce(&Connection) -> (bool, Completion) + Send>;
type Completion = Box<dyn FnOnce(Result<()>) + Send>;

/// Cheap-to-clone handle to the database.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    readers: Mutex<Vec<Reader>>,
    jobs: Mutex<mpsc::Sender<Job>>,
    queue_depth: AtomicUsize,
    /// One permit per core for reads on the blocking pool: more would only add reader
    /// connections (each with its page cache and `ReadCache`) competing for the same cores.
    blocking_reads: tokio::sync::Semaphore,
}

impl Db {
    /// Opens (creating if needed) the database at `path`, runs pending migrations and starts
    /// the writer thread.
    pub fn open(path: &Path) -> Result<Db> {
        migrate(path)?;
        let writer = open_connection(path)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let db = Db {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                readers: Mutex::new(Vec::new()),
                jobs: Mutex::new(tx),
                queue_depth: AtomicUsize::new(0),
                blocking_reads: tokio::sync::Semaphore::new(
                    std::thread::available_parallelism().map_or(1, |n| n.get()),
                ),
            }),
        };
        let weak = Arc::downgrade(&db.inner);
        std::thread::Builder::new()
            .name("usersvc-writer".into())
            .spawn(move || writer_loop(writer, rx, weak))
            .map_err(Error::internal)?;
        Ok(db)
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Writes queued but not yet committed.
    pub fn queue_depth(&self) -> usize {
        self.inner.queue_depth.load(Ordering::Relaxed)
    }

    /// Runs `f` in a write transaction and resolves once it is durably committed (or failed).
    /// An `Err` from `f` rolls back only `f`'s own changes.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let rx = self.submit(f)?;
        rx.await.map_err(|_| not_written())?
    }

    /// `write` for synchronous callers (the CLI).
    pub fn write_blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let rx = self.submit(f)?;
        rx.blocking_recv().map_err(|_| not_written())?
    }

    /// Queues a write whose outcome nobody waits for (e.g. persisting a lazily chosen team).
    pub fn write_detached<F>(&self, f: F)
    where
        F: FnOnce(&Connection) -> Result<()> + Send + 'static,
    {
        if let Ok(rx) = self.submit(f) {
            drop(rx);
        }
    }

    fn submit<T, F>(&self, f: F) -> Result<oneshot::Receiver<Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let outcome = f(conn);
            let ok = outcome.is_ok();
            let done: Completion = Box::new(move |commit| {
                let result = match (outcome, commit) {
                    (Ok(v), Ok(())) => Ok(v),
                    (Err(e), _) | (Ok(_), Err(e)) => Err(e),
                };
                let _ = tx.send(result);
            });
            (ok, done)
        });
        let sender = self
            .inner
            .jobs
            .lock()
            .map_err(|_| Error::internal("writer queue poisoned"))?
            .clone();
        self.inner.queue_depth.fetch_add(1, Ordering::Relaxed);
        sender.send(job).map_err(|_| {
            self.inner.queue_depth.fetch_sub(1, Ordering::Relaxed);
            Error::internal("writer thread stopped")
        })?;
        Ok(rx)
    }

    /// Runs a short read inline on the calling thread with a pooled read-only connection.
    /// Meant for indexed point reads that take microseconds; longer scans use `read_blocking`.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.read_cached(|conn, _| f(conn))
    }

    /// `read`, with the connection's `ReadCache`: what was read through this connection since
    /// the database last changed. `PRAGMA data_version` moves with every commit by any other
    /// connection (the writer, or a CLI in another process), and the cache is emptied then, so
    /// a cached answer is never older than the last commit.
    pub fn read_cached<T>(
        &self,
        f: impl FnOnce(&Connection, &mut ReadCache) -> Result<T>,
    ) -> Result<T> {
        let pooled = self
            .inner
            .readers
            .lock()
            .map_err(|_| Error::internal("reader pool poisoned"))?
            .pop();
        let mut reader = match pooled {
            Some(r) => r,
            None => Reader {
                conn: open_reader(&self.inner.path)?,
                cache: ReadCache::default(),
            },
        };
        let version: i64 = reader
            .conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        if reader.cache.version != Some(version) {
            reader.cache = ReadCache {
                version: Some(version),
                ..ReadCache::default()
            };
        }
        let out = f(&reader.conn, &mut reader.cache);
        if let Ok(mut pool) = self.inner.readers.lock() {
            pool.push(reader);
        }
        out
    }

    /// Runs a read on the blocking pool, for scans that must not hold up the async workers.
    pub async fn read_blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut ReadCache) -> Result<T> + Send + 'static,
    {
        let _permit = self
            .inner
            .blocking_reads
            .acquire()
            .await
            .map_err(Error::internal)?;
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.read_cached(f))
            .await
            .map_err(Error::internal)?
    }
}

/// A pooled read-only connection and its cache.
struct Reader {
    conn: Connection,
    cache: ReadCache,
}

/// What one reader connection has read since the database last changed (see `read_cached`).
#[derive(Default)]
pub struct ReadCache {
    version: Option<i64>,
    /// Organizations and teams for user objects.
    pub objects: users::ObjectBuilder,
    /// Key digest → the key and its user, for keys that authenticated.
    pub keys: HashMap<String, (keys::KeyRow, crate::model::UserRow)>,
    /// Ids of all active users in order: the count and any page offset of the staff listing.
    pub active_ids: Option<Vec<i64>>,
}

/// Past this many cached keys the key cache starts over, to bound memory.
const MAX_CACHED_KEYS: usize = 10_000;

impl ReadCache {
    /// The key with this digest and its active user (see `keys::authenticate`), cached.
    pub fn key(
        &mut self,
        conn: &Connection,
        digest: &str,
    ) -> Result<Option<(keys::KeyRow, crate::model::UserRow)>> {
        if let Some(hit) = self.keys.get(digest) {
            return Ok(Some(hit.clone()));
        }
        let found = keys::authenticate(conn, digest)?;
        if let Some(hit) = &found {
            if self.keys.len() >= MAX_CACHED_KEYS {
                self.keys.clear();
            }
            self.keys.insert(digest.to_owned(), hit.clone());
        }
        Ok(found)
    }

    /// Ids of every active user, ascending.
    pub fn active_ids(&mut self, conn: &Connection) -> Result<&[i64]> {
        if self.active_ids.is_none() {
            let mut stmt =
                conn.prepare_cached("SELECT id FROM users WHERE is_active = 1 ORDER BY id")?;
            let ids = stmt
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<i64>>>()?;
            self.active_ids = Some(ids);
        }
        Ok(self.active_ids.as_deref().unwrap_or_default())
    }
}

/// The answer for a job that never ran (its batch could not start, or the writer is gone).
fn not_written() -> Error {
    Error::internal("the write could not be run; nothing was written")
}

/// The writer thread: takes every queued job, runs each in a savepoint inside one
/// `BEGIN IMMEDIATE` transaction, commits once, then answers all of them.
fn writer_loop(conn: Connection, rx: mpsc::Receiver<Job>, inner: std::sync::Weak<Inner>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let n = batch.len();
        run_batch(&conn, batch);
        if let Some(inner) = inner.upgrade() {
            inner.queue_depth.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

fn run_batch(conn: &Connection, batch: Vec<Job>) {
    // A job dropped without running drops its reply channel: its caller sees an error and
    // nothing of it was written.
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        tracing::error!("begin: {e}");
        return;
    }
    let mut completions = Vec::with_capacity(batch.len());
    let mut failure: Option<String> = None;
    for job in batch {
        if let Err(e) = conn.execute_batch("SAVEPOINT job") {
            failure = Some(format!("savepoint: {e}"));
            break;
        }
        let (ok, done) = match catch_unwind(AssertUnwindSafe(|| job(conn))) {
            Ok(r) => r,
            Err(_) => {
                tracing::error!("a write job panicked; its changes are rolled back");
                (false, Box::new(|_| {}) as Completion)
            }
        };
        completions.push(done);
        let end = if ok {
            conn.execute_batch("RELEASE job")
        } else {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")
        };
        if let Err(e) = end {
            failure = Some(format!("savepoint end: {e}"));
            break;
        }
        // Some errors (disk full, I/O) make SQLite roll back the whole transaction: then
        // nothing of this batch is written, and no further job may run outside it.
        if conn.is_autocommit() {
            failure = Some("SQLite rolled the transaction back".into());
            break;
        }
    }
    let outcome = match failure {
        Some(cause) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(cause)
        }
        None => conn.execute_batch("COMMIT").map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            format!("commit: {e}")
        }),
    };
    if let Err(cause) = &outcome {
        tracing::error!("write batch failed, nothing of it was written: {cause}");
    }
    for done in completions {
        done(outcome.clone().map_err(Error::Internal));
    }
}

/// Opens a read-write connection with the pragmas every connection needs. Creates the file
/// (mode 0600, directory 0700) if it does not exist.
pub fn open_connection(path: &Path) -> Result<Connection> {
    create_private(path)?;
    let conn = Connection::open(path)?;
    configure(&conn)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    Ok(conn)
}

fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&conn)?;
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(conn)
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

fn create_private(path: &Path) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e.into()),
    }
}

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

/// Applied and pending migrations, for `migrate --status`.
pub struct MigrationStatus {
    pub applied: Vec<(i64, String)>,
    pub pending: Vec<(i64, String)>,
}

fn known_migrations() -> Vec<(i64, String)> {
    let mut all: Vec<(i64, String)> = migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| (i64::from(m.version()), m.name().to_owned()))
        .collect();
    all.sort();
    all
}

fn applied_versions(conn: &Connection) -> Result<Vec<i64>> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type='table' AND name='refinery_schema_history')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare("SELECT version FROM refinery_schema_history ORDER BY version")?;
    let rows = stmt.query_map([], |r| r.get::<_, i64>(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Reads which migrations are applied without changing anything.
pub fn migration_status(path: &Path) -> Result<MigrationStatus> {
    let applied = if path.exists() {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        applied_versions(&conn)?
    } else {
        Vec::new()
    };
    let known = known_migrations();
    // A file migrated by a newer usersvc is an error here too, not a status that silently
    // leaves out the versions this binary does not know.
    let newest_known = known.last().map_or(0, |(v, _)| *v);
    if let Some(&newest) = applied.iter().max().filter(|&&v| v > newest_known) {
        return Err(Error::SchemaTooNew(newest));
    }
    let (applied, pending) = known.into_iter().partition(|(v, _)| applied.contains(v));
    Ok(MigrationStatus { applied, pending })
}

/// Applies pending migrations. Concurrent starters (50 CLI processes at once) take an
/// exclusive lock on the file first, so they wait for each other instead of failing.
pub fn migrate(path: &Path) -> Result<()> {
    let mut conn = open_connection(path)?;
    let known = known_migrations();
    let newest_known = known.last().map(|(v, _)| *v).unwrap_or(0);
    let check = |conn: &Connection| -> Result<bool> {
        let applied = applied_versions(conn)?;
        if let Some(&newest) = applied.iter().max().filter(|&&v| v > newest_known) {
            return Err(Error::SchemaTooNew(newest));
        }
        Ok(known.iter().all(|(v, _)| applied.contains(v)))
    };
    if check(&conn)? {
        return Ok(());
    }
    let lock = OpenOptions::new().read(true).open(path)?;
    lock.lock()?;
    let result = (|| {
        if check(&conn)? {
            return Ok(());
        }
        migrations::runner()
            .run(&mut conn)
            .map(|_| ())
            .map_err(|e| Error::internal(format!("migration failed: {e}")))
    })();
    let _ = lock.unlock();
    result
}
