//! Crash test (SPEC §5: an acknowledged write survives; "database is locked" never reaches a
//! client or a CLI user). Ignored by default; CI runs it against the release binary:
//!
//! ```sh
//! cargo test --release --test crash -- --ignored --nocapture            # 10 kills
//! KILLS=50 cargo test --release --test crash -- --ignored --nocapture   # 50 kills
//! ```
//!
//! `CRASH_SEED=<n>` replays the kill timings of an earlier run; `CRASH_KEEP=1` keeps the
//! database and the server log of a failed run.
//!
//! One database lives through every round: start `usersvc serve`; 16 threads
//! (`CRASH_WRITERS=<n>` for more) PATCH the `first_name` of 200 seeded users (each user belongs
//! to one thread, so its writes are sequential, and every value is unique to (user, sequence
//! number)) while another thread runs `usersvc keys create` and `usersvc users create` by turns;
//! after a random 100–600 ms the server gets SIGKILL. Then, for every user, the stored value
//! must be the last acknowledged one or a later one whose request got no response (it was in
//! flight at the kill) — never an older value, never one that was answered with an error or
//! never sent; every key and user the CLI printed must exist and none whose creation failed may
//! (the CLI must not fail at all); `integrity_check` and `foreign_key_check` are clean; and the
//! restarted server answers `/_health` and a GET of a user with the stored value. Odd rounds
//! check the file before the restart (SQLite's WAL recovery runs in the checker), even rounds
//! after it (recovery runs in the server).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod blackbox;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

use blackbox::{Client, Outcome, Server, Workdir, cli, cli_command, health, lock_error_lines};

const USERS: usize = 200;
/// PATCH client threads (`CRASH_WRITERS` overrides).
const WRITER_THREADS: usize = 16;
const KEYS_PER_USER: usize = 10;
/// Failure lines printed per round.
const SHOWN: usize = 10;

/// What became of one PATCH (or what we learned about it later).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// 200 with the value echoed back.
    Acked,
    /// No complete response; seen stored after a crash, so it is durable from then on.
    Observed,
    /// No complete response; whether it was applied is unknown until the next check.
    InFlight,
    /// Answered with an error status, refused at connect, or in flight and found missing: it
    /// must never be stored.
    Absent,
}

/// The PATCH history of one user: `fates[seq]` for the value `value_of(user, seq)`.
#[derive(Default)]
struct History {
    fates: Vec<Fate>,
    /// The first sequence number written in the current round.
    round_start: usize,
}

impl History {
    fn last_durable(&self) -> Option<usize> {
        self.fates
            .iter()
            .rposition(|f| matches!(f, Fate::Acked | Fate::Observed))
    }
}

#[derive(Default)]
struct RoundStats {
    acked: usize,
    no_response: usize,
    not_sent: usize,
    errors: usize,
    keys_acked: usize,
    users_acked: usize,
    cli_failed: usize,
    cli_slowest: Duration,
}

/// One write attempt: user index, sequence number, outcome.
type Attempt = (usize, usize, Outcome);

/// One CLI write: `keys create` (a unique label) or `users create` (a unique email), and
/// whether it exited 0 with the expected JSON (the key id, or the email).
struct CliAttempt {
    key: bool,
    name: String,
    result: Result<String, String>,
    elapsed: Duration,
}

/// The CLI writes so far: acknowledged keys (id → label) and users (emails), and the labels
/// and emails of failed attempts.
#[derive(Default)]
struct CliLedger {
    keys_acked: HashMap<String, String>,
    keys_failed: Vec<String>,
    users_acked: Vec<String>,
    users_failed: Vec<String>,
    next: usize,
}

fn writer_threads() -> usize {
    std::env::var("CRASH_WRITERS")
        .ok()
        .map(|n| n.parse().expect("CRASH_WRITERS is a number"))
        .unwrap_or(WRITER_THREADS)
}

/// The value of write `seq` to `user<user+1>@example.com`.
fn value_of(user: usize, seq: usize) -> String {
    format!("u{}.{seq}", user + 1)
}

/// The PATCH writers: thread `t` of `n` owns users `t, t+n, …` and writes to them round-robin, one
/// request at a time, until the server stops answering.
fn run_writers(
    addr: std::net::SocketAddr,
    key: &str,
    uuids: &[String],
    next_seq: &[usize],
    stop: &Arc<AtomicBool>,
) -> Vec<thread::JoinHandle<Vec<Attempt>>> {
    let threads = writer_threads();
    (0..threads)
        .map(|t| {
            let key = key.to_owned();
            let mine: Vec<(usize, String, usize)> = (t..uuids.len())
                .step_by(threads)
                .map(|u| (u, uuids[u].clone(), next_seq[u]))
                .collect();
            let stop = stop.clone();
            thread::spawn(move || {
                let mut client = Client::new(addr);
                let mut attempts = Vec::new();
                let mut mine = mine;
                'outer: while !stop.load(Ordering::Relaxed) {
                    for (user, uuid, seq) in &mut mine {
                        let value = value_of(*user, *seq);
                        let body = format!(r#"{{"first_name":"{value}"}}"#);
                        let path = format!("/api/users/{uuid}/");
                        let outcome = client.request("PATCH", &path, Some(&key), Some(&body));
                        let done = !matches!(outcome, Outcome::Response { .. });
                        attempts.push((*user, *seq, outcome));
                        *seq += 1;
                        // Never write a user again after an unanswered request: a later write
                        // could otherwise overtake it.
                        if done || stop.load(Ordering::Relaxed) {
                            break 'outer;
                        }
                    }
                }
                attempts
            })
        })
        .collect()
}

/// The CLI writer: alternately `usersvc keys create` (spread over the seeded users, 10 keys
/// each at most) and `usersvc users create`, one process at a time, until `stop`.
fn run_cli_writer(
    db: &Path,
    first: usize,
    stop: &Arc<AtomicBool>,
) -> thread::JoinHandle<Vec<CliAttempt>> {
    let db = db.to_owned();
    let stop = stop.clone();
    thread::spawn(move || {
        let mut attempts = Vec::new();
        let mut k = first;
        while !stop.load(Ordering::Relaxed) {
            let key = k.is_multiple_of(2) && k / 2 < USERS * KEYS_PER_USER;
            let (name, args) = if key {
                let label = format!("crash-{k}");
                let user = format!("user{}@example.com", k / 2 % USERS + 1);
                let args = [
                    "keys",
                    "create",
                    "--user",
                    &user,
                    "--label",
                    &label,
                    "--scopes",
                    "user:read",
                    "--json",
                ]
                .map(str::to_owned);
                (label, args.to_vec())
            } else {
                let email = format!("cli{k}@example.com");
                let args = ["users", "create", "--email", &email, "--json"].map(str::to_owned);
                (email, args.to_vec())
            };
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let t0 = Instant::now();
            let out = cli_command(&db, &args).output().expect("run the CLI");
            let elapsed = t0.elapsed();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let parsed: Option<Value> = serde_json::from_str(&stdout).ok();
            let (field, answer) = if key {
                ("label", "id")
            } else {
                ("email", "email")
            };
            let result = match parsed {
                Some(v) if out.status.success() && v[field] == name.as_str() => v[answer]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("no {answer} in {v}")),
                _ => Err(format!(
                    "exit {:?}: stdout {stdout:?} stderr {:?}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr)
                )),
            };
            attempts.push(CliAttempt {
                key,
                name,
                result,
                elapsed,
            });
            k += 1;
        }
        attempts
    })
}

/// Checks the file (the server may be dead or idle). Returns the failures and the stored
/// `first_name` of every user, and turns in-flight writes into `Observed` or `Absent`.
fn verify(db: &Path, histories: &mut [History], cli: &CliLedger) -> (Vec<String>, Vec<String>) {
    let mut failures = Vec::new();
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .expect("open the database");
    conn.busy_timeout(Duration::from_secs(30)).unwrap();

    let integrity: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    if integrity != ["ok"] {
        failures.push(format!("integrity_check: {integrity:?}"));
    }
    let fk: Vec<String> = conn
        .prepare("PRAGMA foreign_key_check")
        .unwrap()
        .query_map([], |r| {
            Ok(format!(
                "{}:{:?}->{}",
                r.get::<_, String>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, String>(2)?
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    if !fk.is_empty() {
        failures.push(format!("foreign_key_check: {fk:?}"));
    }

    let names: HashMap<String, String> = conn
        .prepare("SELECT email, first_name FROM users")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut stored = Vec::with_capacity(histories.len());
    for (user, history) in histories.iter_mut().enumerate() {
        let email = format!("user{}@example.com", user + 1);
        let Some(name) = names.get(&email) else {
            failures.push(format!("{email} is missing"));
            stored.push(String::new());
            continue;
        };
        stored.push(name.clone());
        let last = history.last_durable();
        let seq = name
            .strip_prefix(&format!("u{}.", user + 1))
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&s| s < history.fates.len());
        match (name.is_empty(), seq, last) {
            (true, _, Some(l)) => failures.push(format!(
                "{email}: acknowledged write {} lost (first_name is empty)",
                value_of(user, l)
            )),
            (true, _, None) => {}
            (false, None, _) => {
                failures.push(format!("{email}: first_name {name:?} was never written"));
            }
            (false, Some(s), _) => match history.fates[s] {
                Fate::Absent => failures.push(format!(
                    "{email}: first_name {name:?} comes from a write that failed or was never sent"
                )),
                _ if last.is_some_and(|l| s < l) => failures.push(format!(
                    "{email}: first_name {name:?} is older than the acknowledged {}",
                    value_of(user, last.unwrap_or_default())
                )),
                Fate::Acked | Fate::Observed => {}
                Fate::InFlight => history.fates[s] = Fate::Observed,
            },
        }
        // Whatever else was in flight is now known not to have been applied.
        for (i, fate) in history.fates.iter_mut().enumerate() {
            if *fate == Fate::InFlight && Some(i) != seq {
                *fate = Fate::Absent;
            }
        }
    }

    let labels: HashMap<String, String> = conn
        .prepare("SELECT id, label FROM personal_api_keys")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (id, label) in &cli.keys_acked {
        match labels.get(id) {
            Some(l) if l == label => {}
            Some(l) => failures.push(format!("key {id} has label {l:?}, expected {label:?}")),
            None => failures.push(format!("acknowledged key {id} ({label}) is missing")),
        }
    }
    for label in &cli.keys_failed {
        if labels.values().any(|l| l == label) {
            failures.push(format!("key {label} exists although its creation failed"));
        }
    }
    for email in &cli.users_acked {
        if !names.contains_key(email) {
            failures.push(format!("acknowledged user {email} is missing"));
        }
    }
    for email in &cli.users_failed {
        if names.contains_key(email) {
            failures.push(format!("user {email} exists although its creation failed"));
        }
    }
    (failures, stored)
}

/// The restarted server serves: `/_health` is 200 and a user reads back with its stored name.
fn check_serves(
    server: &Server,
    key: &str,
    uuids: &[String],
    stored: &[String],
    rng: &mut StdRng,
) -> Vec<String> {
    let mut failures = Vec::new();
    match health(server.addr) {
        Outcome::Response { status: 200, .. } => {}
        other => failures.push(format!("/_health after restart: {other:?}")),
    }
    let user = rng.random_range(0..uuids.len());
    let path = format!("/api/users/{}/", uuids[user]);
    match Client::new(server.addr).request("GET", &path, Some(key), None) {
        Outcome::Response { status: 200, body } => {
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            if v["first_name"] != stored[user].as_str() {
                failures.push(format!(
                    "GET {path} after restart: first_name {} but the file has {:?}",
                    v["first_name"], stored[user]
                ));
            }
        }
        other => failures.push(format!("GET {path} after restart: {other:?}")),
    }
    failures
}

#[test]
#[ignore = "slow; CI runs it in release: cargo test --release --test crash -- --ignored --nocapture"]
fn acknowledged_writes_survive_sigkill() {
    let kills: usize = std::env::var("KILLS")
        .ok()
        .map(|k| k.parse().expect("KILLS is a number"))
        .unwrap_or(10);
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .map(|s| s.parse().expect("CRASH_SEED is a number"))
        .unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    println!(
        "crash test: {kills} kills, CRASH_SEED={seed}, binary {}",
        blackbox::BIN
    );

    let work = Workdir::new();
    let db = work.db.as_path();
    let seeded = cli(db, &["seed", "--users", &USERS.to_string(), "--json"]).json();
    assert_eq!(seeded["created"], USERS, "{seeded}");
    let key = blackbox::staff_key(db);
    let uuids: Vec<String> = blackbox::seeded_users(db, USERS)
        .into_iter()
        .map(|(_, uuid)| uuid)
        .collect();

    let mut histories: Vec<History> = (0..USERS).map(|_| History::default()).collect();
    let mut ledger = CliLedger::default();
    let (mut passed, mut failed) = (0, 0);
    let mut all_failures = Vec::new();

    let mut server = Server::start(db, &work.log);
    for round in 1..=kills {
        let round_started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        for h in &mut histories {
            h.round_start = h.fates.len();
        }
        let next_seq: Vec<usize> = histories.iter().map(|h| h.fates.len()).collect();
        let writers = run_writers(server.addr, &key, &uuids, &next_seq, &stop);
        let cli_writer = run_cli_writer(db, ledger.next, &stop);

        let delay = Duration::from_millis(rng.random_range(100..=600));
        thread::sleep(delay);
        let mut anomalies = Vec::new();
        if let Some(status) = server.exited() {
            anomalies.push(format!(
                "the server exited on its own before the kill: {status}"
            ));
        }
        server.kill();
        stop.store(true, Ordering::Relaxed);

        let mut stats = RoundStats::default();
        for w in writers {
            for (user, seq, outcome) in w.join().expect("writer thread") {
                assert_eq!(histories[user].fates.len(), seq, "sequence of user {user}");
                let fate = match outcome {
                    Outcome::Response { status: 200, body } => {
                        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                        if v["first_name"] != value_of(user, seq).as_str() {
                            anomalies.push(format!(
                                "PATCH {} answered 200 with first_name {}",
                                value_of(user, seq),
                                v["first_name"]
                            ));
                        }
                        stats.acked += 1;
                        Fate::Acked
                    }
                    Outcome::Response { status, body } => {
                        stats.errors += 1;
                        anomalies.push(format!(
                            "PATCH {} answered {status}: {}",
                            value_of(user, seq),
                            String::from_utf8_lossy(&body)
                        ));
                        Fate::Absent
                    }
                    Outcome::NotSent(_) => {
                        stats.not_sent += 1;
                        Fate::Absent
                    }
                    Outcome::NoResponse(_) => {
                        stats.no_response += 1;
                        Fate::InFlight
                    }
                };
                histories[user].fates.push(fate);
            }
        }
        for attempt in cli_writer.join().expect("CLI writer thread") {
            ledger.next += 1;
            stats.cli_slowest = stats.cli_slowest.max(attempt.elapsed);
            match (attempt.key, attempt.result) {
                (true, Ok(id)) => {
                    stats.keys_acked += 1;
                    ledger.keys_acked.insert(id, attempt.name);
                }
                (false, Ok(_)) => {
                    stats.users_acked += 1;
                    ledger.users_acked.push(attempt.name);
                }
                (key, Err(e)) => {
                    stats.cli_failed += 1;
                    let what = if key { "keys create" } else { "users create" };
                    anomalies.push(format!("{what} {}: {e}", attempt.name));
                    if key {
                        ledger.keys_failed.push(attempt.name);
                    } else {
                        ledger.users_failed.push(attempt.name);
                    }
                }
            }
        }

        let mut failures = Vec::new();
        let before_restart = round % 2 == 1;
        let stored = if before_restart {
            let (f, stored) = verify(db, &mut histories, &ledger);
            failures.extend(f);
            server = Server::start(db, &work.log);
            stored
        } else {
            server = Server::start(db, &work.log);
            let (f, stored) = verify(db, &mut histories, &ledger);
            failures.extend(f);
            stored
        };
        failures.extend(check_serves(&server, &key, &uuids, &stored, &mut rng));
        // What the clients saw during the load (error answers, wrong echoes, CLI failures)
        // comes after what the file shows.
        failures.extend(anomalies);
        // How many unanswered PATCHes turned out to be committed (evidence that the kill
        // landed mid-write rather than between requests).
        let applied = histories
            .iter()
            .flat_map(|h| h.fates.iter().skip(h.round_start))
            .filter(|f| **f == Fate::Observed)
            .count();

        let verdict = if failures.is_empty() {
            passed += 1;
            "ok"
        } else {
            failed += 1;
            "FAILED"
        };
        println!(
            "round {round}/{kills}: SIGKILL after {} ms; PATCH acked {}, unanswered {} ({applied} \
             applied), refused {}, errors {}; CLI keys {}, users {}, failed {}, slowest {} ms; \
             checked {} restart: {verdict} ({} ms)",
            delay.as_millis(),
            stats.acked,
            stats.no_response,
            stats.not_sent,
            stats.errors,
            stats.keys_acked,
            stats.users_acked,
            stats.cli_failed,
            stats.cli_slowest.as_millis(),
            if before_restart { "before" } else { "after" },
            round_started.elapsed().as_millis(),
        );
        for f in failures.iter().take(SHOWN) {
            println!("    {f}");
        }
        if failures.len() > SHOWN {
            println!("    … and {} more", failures.len() - SHOWN);
        }
        all_failures.extend(failures.into_iter().map(|f| format!("round {round}: {f}")));
    }
    server.kill();

    let check = cli(db, &["check", "--json"]);
    if !check.success() {
        all_failures.push(format!("usersvc check: {} {}", check.stdout, check.stderr));
    }
    let log = work.server_log();
    for line in lock_error_lines(&log).into_iter().chain(
        log.lines()
            .filter(|l| l.contains(" ERROR ") || l.contains("panicked"))
            .map(str::to_owned),
    ) {
        all_failures.push(format!("server log: {line}"));
    }

    let total_acked: usize = histories
        .iter()
        .flat_map(|h| &h.fates)
        .filter(|f| **f == Fate::Acked)
        .count();
    println!(
        "crash test: {passed} passed, {failed} failed ({kills} kills, {total_acked} acknowledged \
         PATCHes, {} CLI keys and {} CLI users, CRASH_SEED={seed}, {:.1} s)",
        ledger.keys_acked.len(),
        ledger.users_acked.len(),
        started.elapsed().as_secs_f64()
    );
    if !all_failures.is_empty() {
        let tail: Vec<&str> = log.lines().rev().take(SHOWN).collect();
        println!("last lines of the server log:");
        for line in tail.iter().rev() {
            println!("    {line}");
        }
        if std::env::var_os("CRASH_KEEP").is_some() {
            println!("kept {}", work.dir.keep().display());
        }
    }
    assert!(
        all_failures.is_empty(),
        "{} failures (CRASH_SEED={seed}; CRASH_KEEP=1 keeps the database):\n{}",
        all_failures.len(),
        all_failures
            .iter()
            .take(SHOWN * 5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
