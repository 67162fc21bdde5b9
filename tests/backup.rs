//! `usersvc backup` while the server is under write load, and a restore of its copy (SPEC §1,
//! §10.6).
//!
//! `usersvc serve` runs as its own process on a seeded database while HTTP threads PATCH the
//! `first_name` of their own users (each user belongs to one thread, so its writes are
//! sequential, and every value names its sequence number). Meanwhile `usersvc backup PATH
//! --json` runs several times. Each run must answer `{"path","bytes","integrity_check":"ok"}`,
//! leave a mode-0600 file and no temporary one, and pass `usersvc check`. Each copy must be a
//! consistent snapshot: for every user it holds a value no older than the last write
//! acknowledged before that backup started, and none sent after it finished. An existing PATH
//! is refused without `--force` and replaced with it. Finally the server stops, one copy is
//! restored to a new path, and a server started on it serves exactly what the copy holds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod blackbox;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

use blackbox::{BIN, Client, Outcome, Server, Workdir, cli};

/// Seeded users: enough that a copy takes a moment, so writes land while it runs.
const SEEDED: usize = 3000;
/// The first `WRITTEN` seeded users get PATCHed.
const WRITTEN: usize = 40;
const HTTP_THREADS: usize = 4;
const BACKUPS: usize = 4;

/// One PATCH: which user (index into the written users), its sequence number, when it was
/// sent and when (if ever) it was answered 200.
struct Write {
    user: usize,
    n: u64,
    sent: Instant,
    acked: Option<Instant>,
}

/// What the HTTP load saw.
struct Load {
    writes: Vec<Write>,
    problems: Vec<String>,
}

/// `first_name` of write `n`: the sequence number is global to the test, so a value names
/// exactly one write.
fn value_of(n: u64) -> String {
    format!("w{n}")
}

fn seq_of(value: &str) -> Option<u64> {
    value.strip_prefix('w')?.parse().ok()
}

fn http_load(
    addr: std::net::SocketAddr,
    key: &str,
    uuids: &[String],
    stop: &Arc<AtomicBool>,
) -> Vec<thread::JoinHandle<Load>> {
    (0..HTTP_THREADS)
        .map(|t| {
            let key = key.to_owned();
            let mine: Vec<(usize, String)> = uuids
                .iter()
                .cloned()
                .enumerate()
                .skip(t)
                .step_by(HTTP_THREADS)
                .collect();
            let stop = stop.clone();
            thread::spawn(move || {
                let mut client = Client::new(addr);
                let mut load = Load {
                    writes: Vec::new(),
                    problems: Vec::new(),
                };
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let (user, uuid) = &mine[i % mine.len()];
                    // Disjoint per thread: thread t uses t, t + THREADS, t + 2·THREADS, …
                    let n = (i * HTTP_THREADS + t) as u64;
                    let value = value_of(n);
                    let body = format!(r#"{{"first_name":"{value}"}}"#);
                    let sent = Instant::now();
                    let outcome = client.request(
                        "PATCH",
                        &format!("/api/users/{uuid}/"),
                        Some(&key),
                        Some(&body),
                    );
                    let mut write = Write {
                        user: *user,
                        n,
                        sent,
                        acked: None,
                    };
                    match outcome {
                        Outcome::Response { status: 200, body } => {
                            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                            if v["first_name"] == value.as_str() {
                                write.acked = Some(Instant::now());
                            } else {
                                load.problems
                                    .push(format!("PATCH {uuid}: 200 with {}", v["first_name"]));
                            }
                        }
                        other => load.problems.push(format!("PATCH {uuid}: {other:?}")),
                    }
                    load.writes.push(write);
                    i += 1;
                }
                load
            })
        })
        .collect()
}

/// One finished `usersvc backup` run.
struct Copy {
    path: std::path::PathBuf,
    started: Instant,
    finished: Instant,
}

/// `first_name` by uuid for the given users, read straight from a database file.
fn first_names(db: &Path, uuids: &[String]) -> HashMap<String, String> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut stmt = conn
        .prepare("SELECT first_name FROM users WHERE uuid = ?1")
        .unwrap();
    uuids
        .iter()
        .map(|u| {
            let name: String = stmt.query_row([u], |r| r.get(0)).unwrap();
            (u.clone(), name)
        })
        .collect()
}

/// Checks that `names` (user uuid → stored first_name) is a snapshot taken between `started`
/// and `finished`: per user, no older than the last write acknowledged before `started`, and
/// not one sent after `finished`.
fn check_snapshot(
    what: &str,
    names: &HashMap<String, String>,
    uuids: &[String],
    writes: &[Write],
    started: Instant,
    finished: Instant,
) {
    let mut lost = Vec::new();
    for (i, uuid) in uuids.iter().enumerate() {
        let mine = writes.iter().filter(|w| w.user == i);
        let floor = mine
            .clone()
            .filter(|w| w.acked.is_some_and(|a| a < started))
            .map(|w| w.n)
            .max();
        let ceiling = mine.filter(|w| w.sent < finished).map(|w| w.n).max();
        let stored = &names[uuid];
        let ok = match (seq_of(stored), floor) {
            // Still the seeded empty name: fine only if no write was acknowledged before.
            (None, None) => stored.is_empty(),
            (None, Some(_)) => false,
            (Some(n), floor) => {
                floor.is_none_or(|f| n >= f)
                    && ceiling.is_some_and(|c| n <= c)
                    && writes.iter().any(|w| w.n == n && w.user == i)
            }
        };
        if !ok {
            lost.push(format!(
                "user {uuid}: stored {stored:?}, last acknowledged before the backup {floor:?}, \
                 last sent before it finished {ceiling:?}"
            ));
        }
    }
    assert!(lost.is_empty(), "{what}:\n{}", lost.join("\n"));
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// SIGTERM, then wait (bounded) for a clean exit.
fn stop(server: &mut Server) {
    let status = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM failed");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = server.exited() {
            assert!(status.success(), "server exited with {status:?}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "server did not stop after SIGTERM"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn hot_backups_under_write_load_restore_and_serve() {
    let started = Instant::now();
    let work = Workdir::new();
    let db = work.db.as_path();
    cli(db, &["seed", "--users", &SEEDED.to_string(), "--json"]).json();
    let key = blackbox::staff_key(db);
    let uuids: Vec<String> = blackbox::seeded_users(db, SEEDED)
        .into_iter()
        .take(WRITTEN)
        .map(|(_, uuid)| uuid)
        .collect();
    let backups = work.dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();

    let mut server = Server::start(db, &work.log);
    let stop_load = Arc::new(AtomicBool::new(false));
    let load = http_load(server.addr, &key, &uuids, &stop_load);
    thread::sleep(Duration::from_millis(200));

    let mut copies = Vec::new();
    for i in 0..BACKUPS {
        let path = backups.join(format!("usersvc-{i}.sqlite3"));
        let path_text = path.to_str().unwrap();
        let begun = Instant::now();
        let out = cli(db, &["backup", path_text, "--json"]);
        let finished = Instant::now();
        let report = out.json();
        assert_eq!(report["path"], path_text, "{report}");
        assert_eq!(report["integrity_check"], "ok", "{report}");
        assert_eq!(
            report["bytes"].as_u64(),
            Some(std::fs::metadata(&path).unwrap().len()),
            "{report}"
        );
        let keys: Vec<&String> = report.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["path", "bytes", "integrity_check"], "{report}");
        assert_eq!(mode(&path), 0o600, "mode of {}", path.display());
        copies.push(Copy {
            path,
            started: begun,
            finished,
        });
        thread::sleep(Duration::from_millis(150));
    }

    // An existing PATH is refused without --force and left alone; --force replaces it.
    let first = copies[0].path.clone();
    let before = std::fs::read(&first).unwrap();
    let refused = cli(db, &["backup", first.to_str().unwrap(), "--json"]);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stdout.is_empty(), "{refused:?}");
    assert!(
        refused.stderr.starts_with("usersvc: ") && refused.stderr.contains("--force"),
        "{refused:?}"
    );
    assert_eq!(
        std::fs::read(&first).unwrap(),
        before,
        "refused backup changed the file"
    );
    let forced_begun = Instant::now();
    let forced = cli(
        db,
        &["backup", first.to_str().unwrap(), "--force", "--json"],
    )
    .json();
    copies[0].started = forced_begun;
    copies[0].finished = Instant::now();
    assert_eq!(forced["integrity_check"], "ok", "{forced}");
    assert_eq!(mode(&first), 0o600);
    // Never over the live database, not even with --force.
    let onto_db = cli(db, &["backup", db.to_str().unwrap(), "--force"]);
    assert_eq!(onto_db.code, Some(1), "{onto_db:?}");

    stop_load.store(true, Ordering::Relaxed);
    let mut writes = Vec::new();
    let mut problems = Vec::new();
    for handle in load {
        let load = handle.join().unwrap();
        writes.extend(load.writes);
        problems.extend(load.problems);
    }
    assert!(problems.is_empty(), "HTTP load:\n{}", problems.join("\n"));
    let acked = writes.iter().filter(|w| w.acked.is_some()).count();
    assert!(acked > 50, "only {acked} writes acknowledged");

    // The copies really were taken under load: writes were acknowledged while they ran.
    let during: usize = copies
        .iter()
        .map(|c| {
            writes
                .iter()
                .filter(|w| w.acked.is_some_and(|a| a > c.started && a < c.finished))
                .count()
        })
        .sum();
    assert!(during > 0, "no write was acknowledged while a backup ran");

    // No temporary file is left behind.
    let leftovers: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // Every copy checks clean and is a snapshot taken while its command ran.
    for copy in &copies {
        let check = cli(&copy.path, &["check", "--json"]);
        let report = check.json();
        assert_eq!(
            report["ok"],
            true,
            "check {}: {report}",
            copy.path.display()
        );
        let names = first_names(&copy.path, &uuids);
        check_snapshot(
            &copy.path.display().to_string(),
            &names,
            &uuids,
            &writes,
            copy.started,
            copy.finished,
        );
    }

    // Restore: stop the server, copy the last backup to a new database path, serve it.
    stop(&mut server);
    let chosen = &copies[BACKUPS - 1].path;
    let expected = first_names(chosen, &uuids);
    let restored_dir = work.dir.path().join("restored");
    std::fs::create_dir(&restored_dir).unwrap();
    let restored = restored_dir.join("usersvc.sqlite3");
    std::fs::copy(chosen, &restored).unwrap();
    let restored_log = work.dir.path().join("restored.log");
    let server = Server::start(&restored, &restored_log);
    let mut client = Client::new(server.addr);
    let Outcome::Response { status: 200, body } =
        client.request("GET", "/api/users/?limit=1", Some(&key), None)
    else {
        panic!("list users on the restored server failed");
    };
    let list: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(list["count"].as_u64(), Some(SEEDED as u64 + 1), "{list}");
    for uuid in &uuids {
        let outcome = client.request("GET", &format!("/api/users/{uuid}/"), Some(&key), None);
        let Outcome::Response { status: 200, body } = outcome else {
            panic!("GET {uuid} on the restored server: {outcome:?}");
        };
        let user: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            user["first_name"].as_str(),
            Some(expected[uuid].as_str()),
            "restored user {uuid}"
        );
    }
    // And it takes writes.
    let outcome = client.request(
        "PATCH",
        &format!("/api/users/{}/", uuids[0]),
        Some(&key),
        Some(r#"{"first_name":"restored"}"#),
    );
    assert!(
        matches!(outcome, Outcome::Response { status: 200, .. }),
        "PATCH on the restored server: {outcome:?}"
    );
    drop(server);

    eprintln!(
        "{BACKUPS} backups under load ({acked} of {} writes acknowledged, {during} while a \
         backup ran), restored and served in {:?} ({BIN})",
        writes.len(),
        started.elapsed()
    );
}
