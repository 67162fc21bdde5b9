//! The CLI and the server writing one file at the same time (SPEC §5: "database is locked" must
//! never reach a client or a CLI user, also when the CLI writes while the server is under
//! load): `usersvc serve` runs as its own process under HTTP PATCH load while 50
//! `usersvc users create` and 10 `usersvc keys create` processes start at once. Every process
//! must exit 0, every HTTP request must be answered 200, no output (the server's log included)
//! may mention a lock, and afterwards the server must see every new user and accept every new
//! key on its very next request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod blackbox;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::Value;

use blackbox::{Client, Outcome, Server, Workdir, cli, cli_command, lock_error_lines};

const CREATES: usize = 50;
const KEY_CREATES: usize = 10;
const SEEDED: usize = 20;
const HTTP_THREADS: usize = 4;
/// Users added by one concurrent `usersvc seed` (a long write transaction).
const SEED_LOAD: usize = 20_000;

/// What the HTTP load saw: requests sent, and a description of every one that was not 200.
struct Load {
    requests: usize,
    problems: Vec<String>,
}

/// Thread `t` PATCHes its own seeded users (and lists users every tenth request) until `stop`.
fn http_load(
    addr: std::net::SocketAddr,
    key: &str,
    uuids: &[String],
    stop: &Arc<AtomicBool>,
) -> Vec<thread::JoinHandle<Load>> {
    (0..HTTP_THREADS)
        .map(|t| {
            let key = key.to_owned();
            let mine: Vec<String> = uuids
                .iter()
                .skip(t)
                .step_by(HTTP_THREADS)
                .cloned()
                .collect();
            let stop = stop.clone();
            thread::spawn(move || {
                let mut client = Client::new(addr);
                let mut load = Load {
                    requests: 0,
                    problems: Vec::new(),
                };
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let uuid = &mine[n % mine.len()];
                    let value = format!("t{t}n{n}");
                    let (method, path, body) = if n % 10 == 9 {
                        ("GET", "/api/users/?limit=100".to_owned(), None)
                    } else {
                        (
                            "PATCH",
                            format!("/api/users/{uuid}/"),
                            Some(format!(r#"{{"first_name":"{value}"}}"#)),
                        )
                    };
                    let outcome = client.request(method, &path, Some(&key), body.as_deref());
                    load.requests += 1;
                    match outcome {
                        Outcome::Response { status: 200, body } => {
                            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                            if method == "PATCH" && v["first_name"] != value.as_str() {
                                load.problems.push(format!(
                                    "{method} {path}: 200 with first_name {}, expected {value}",
                                    v["first_name"]
                                ));
                            }
                        }
                        other => load.problems.push(format!("{method} {path}: {other:?}")),
                    }
                    n += 1;
                }
                load
            })
        })
        .collect()
}

#[test]
fn fifty_cli_writers_and_http_load_share_the_file() {
    let started = Instant::now();
    let work = Workdir::new();
    let db = work.db.as_path();
    cli(db, &["seed", "--users", &SEEDED.to_string(), "--json"]).json();
    let key = blackbox::staff_key(db);
    let uuids: Vec<String> = blackbox::seeded_users(db, SEEDED)
        .into_iter()
        .map(|(_, uuid)| uuid)
        .collect();

    let mut server = Server::start(db, &work.log);
    let stop = Arc::new(AtomicBool::new(false));
    let load = http_load(server.addr, &key, &uuids, &stop);
    // Let the load get going before the CLI processes arrive.
    thread::sleep(Duration::from_millis(300));

    // One long write too: a seed that holds the write lock for about a second (debug build).
    let mut children = vec![(
        format!("seed --users {SEED_LOAD}"),
        cli_command(
            db,
            &[
                "seed",
                "--users",
                &SEED_LOAD.to_string(),
                "--org",
                "Load Org",
                "--json",
            ],
        )
        .spawn()
        .expect("spawn seed"),
    )];
    for i in 0..CREATES {
        let email = format!("u{i}@example.com");
        let child = cli_command(db, &["users", "create", "--email", &email, "--json"])
            .spawn()
            .expect("spawn users create");
        children.push((format!("users create {email}"), child));
    }
    for i in 0..KEY_CREATES {
        let user = format!("user{}@example.com", i + 1);
        let label = format!("conc-{i}");
        let child = cli_command(
            db,
            &[
                "keys",
                "create",
                "--user",
                &user,
                "--label",
                &label,
                "--scopes",
                "user:read",
                "--json",
            ],
        )
        .spawn()
        .expect("spawn keys create");
        children.push((format!("keys create {label}"), child));
    }
    let spawned = Instant::now();

    let mut failures = Vec::new();
    let mut created_emails = Vec::new();
    let mut new_keys = Vec::new();
    let mut seeded_more = false;
    for (what, child) in children {
        let out = child.wait_with_output().expect("wait for the CLI");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // stderr only: stdout is JSON full of random ids that could spell "busy".
        for line in lock_error_lines(&stderr) {
            failures.push(format!("{what}: {line}"));
        }
        if !out.status.success() {
            failures.push(format!("{what}: exit {:?}: {stderr}", out.status.code()));
            continue;
        }
        match serde_json::from_str::<Value>(&stdout) {
            Ok(v) if v["email"].is_string() => {
                created_emails.push(v["email"].as_str().unwrap().to_owned());
            }
            Ok(v) if v["value"].is_string() => {
                new_keys.push(v["value"].as_str().unwrap().to_owned())
            }
            Ok(v) if v["created"] == SEED_LOAD - SEEDED => seeded_more = true,
            _ => failures.push(format!("{what}: unexpected output {stdout:?}")),
        }
    }
    let cli_time = spawned.elapsed();
    if created_emails.len() != CREATES || new_keys.len() != KEY_CREATES || !seeded_more {
        failures.push(format!(
            "{} users and {} keys created, expected {CREATES} and {KEY_CREATES}; seed done: \
             {seeded_more}",
            created_emails.len(),
            new_keys.len()
        ));
    }
    stop.store(true, Ordering::Relaxed);
    let mut requests = 0;
    for handle in load {
        let load = handle.join().expect("load thread");
        requests += load.requests;
        failures.extend(load.problems);
    }

    // The running server sees every new user and accepts every new key right away.
    let mut client = Client::new(server.addr);
    for i in 0..CREATES {
        let path = format!("/api/users/?email=u{i}@example.com");
        match client.request("GET", &path, Some(&key), None) {
            Outcome::Response { status: 200, body } => {
                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                if v["count"] != 1 {
                    failures.push(format!("GET {path}: {v}"));
                }
            }
            other => failures.push(format!("GET {path}: {other:?}")),
        }
    }
    for new_key in &new_keys {
        match client.request("GET", "/api/users/@me/", Some(new_key), None) {
            Outcome::Response { status: 200, .. } => {}
            other => failures.push(format!("GET @me with a new key: {other:?}")),
        }
    }
    if let Some(status) = server.exited() {
        failures.push(format!("the server exited: {status}"));
    }
    server.kill();

    let log = work.server_log();
    for line in lock_error_lines(&log) {
        failures.push(format!("server log: {line}"));
    }
    for line in log
        .lines()
        .filter(|l| l.contains(" ERROR ") || l.contains(" WARN ") || l.contains("panicked"))
    {
        failures.push(format!("server log: {line}"));
    }

    let conn = Connection::open(db).expect("open the database");
    let users: i64 = conn
        .query_row(
            "SELECT count(*) FROM users WHERE email LIKE 'u%@example.com' AND email NOT LIKE 'user%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if users != CREATES as i64 {
        failures.push(format!(
            "{users} users created by the CLI are in the file, expected {CREATES}"
        ));
    }
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    if integrity != "ok" {
        failures.push(format!("integrity_check: {integrity}"));
    }

    println!(
        "concurrency: {} CLI processes finished in {} ms alongside {requests} HTTP requests; \
         {} failures ({:.1} s)",
        CREATES + KEY_CREATES,
        cli_time.as_millis(),
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures
            .iter()
            .take(50)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
