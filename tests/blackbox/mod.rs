//! Shared by the black-box reliability tests (`tests/crash.rs`, `tests/concurrency.rs`): the
//! real `usersvc` binary run as a separate process (the CLI and `usersvc serve`), and a tiny
//! HTTP/1.1 client over `std::net::TcpStream` that tells a refused connection ("the request was
//! never sent") apart from a lost response ("it may or may not have been applied").

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The binary under test: under `cargo test --release` this is the release build.
pub const BIN: &str = env!("CARGO_BIN_EXE_usersvc");

/// Strings that must never appear in stderr or the server log: SQLite's lock errors reaching a
/// user. (Not for stdout, whose random ids and keys could spell "busy".)
pub const LOCK_ERRORS: &[&str] = &["database is locked", "database table is locked", "busy"];

/// Lines of `text` that mention a lock error (case-insensitive).
pub fn lock_error_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            LOCK_ERRORS.iter().any(|e| l.contains(e))
        })
        .map(str::to_owned)
        .collect()
}

/// What one CLI run produced.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Asserts exit 0 and returns stdout parsed as one JSON document.
    #[track_caller]
    pub fn json(&self) -> Value {
        assert!(
            self.success(),
            "exit {:?}, stderr: {}",
            self.code,
            self.stderr
        );
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", self.stdout))
    }
}

/// A CLI command against `db`, ready to spawn (stdin closed, stdout and stderr piped).
pub fn cli_command(db: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--db")
        .arg(db)
        .args(args)
        .env_remove("USERSVC_DB")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs one CLI command to completion.
pub fn cli(db: &Path, args: &[&str]) -> Out {
    let out = cli_command(db, args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"));
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Creates `staff@example.com` (staff) and returns a `*` key for it.
pub fn staff_key(db: &Path) -> String {
    let user = cli(
        db,
        &[
            "users",
            "create",
            "--email",
            "staff@example.com",
            "--staff",
            "--json",
        ],
    )
    .json();
    assert_eq!(user["is_staff"], true, "{user}");
    let key = cli(
        db,
        &[
            "keys",
            "create",
            "--user",
            "staff@example.com",
            "--label",
            "staff",
            "--scopes",
            "*",
            "--json",
        ],
    )
    .json();
    key["value"].as_str().expect("key value").to_owned()
}

/// `(email, uuid)` of the seeded users `user1@example.com` … `userN@example.com`, in order.
pub fn seeded_users(db: &Path, n: usize) -> Vec<(String, String)> {
    let list = cli(db, &["users", "list", "--json"]).json();
    let mut found: Vec<(usize, String, String)> = list
        .as_array()
        .expect("users list is an array")
        .iter()
        .filter_map(|u| {
            let email = u["email"].as_str()?;
            let i: usize = email
                .strip_prefix("user")?
                .strip_suffix("@example.com")?
                .parse()
                .ok()?;
            Some((i, email.to_owned(), u["uuid"].as_str()?.to_owned()))
        })
        .collect();
    found.sort();
    assert_eq!(found.len(), n, "seeded users");
    found.into_iter().map(|(_, e, u)| (e, u)).collect()
}

/// `usersvc serve` on a free port, its stderr appended to a log file.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    // Kept open so the server never writes stdout into a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    /// Starts the server and waits for its `listening on http://HOST:PORT` line.
    pub fn start(db: &Path, log: &Path) -> Server {
        let log_file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .expect("open server log");
        let mut child = Command::new(BIN)
            .arg("--db")
            .arg(db)
            .args(["serve", "--listen", "127.0.0.1:0", "--no-bootstrap"])
            .env_remove("USERSVC_DB")
            .env_remove("USERSVC_LISTEN")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN} serve: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let status = child.wait();
            panic!(
                "server did not start (read {read:?}, line {line:?}, status {status:?}); log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        };
        Server {
            child,
            addr,
            _stdout: stdout,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reap the process.
    pub fn kill(&mut self) -> ExitStatus {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server")
    }

    /// Has the process exited on its own?
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How one HTTP request ended.
#[derive(Debug)]
pub enum Outcome {
    /// A complete response arrived.
    Response { status: u16, body: Vec<u8> },
    /// The connection was refused: the server never saw the request.
    NotSent(String),
    /// The request may have reached the server, but no complete response came back.
    NoResponse(String),
}

/// One keep-alive connection, reopened after the server closes it. A request is never retried:
/// a failure on a reused connection is reported as `NoResponse`, since the server may have
/// received it.
pub struct Client {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    timeout: Duration,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            conn: None,
            timeout: Duration::from_secs(20),
        }
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> Outcome {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => match self.connect() {
                Ok(c) => c,
                Err(e) => return Outcome::NotSent(e.to_string()),
            },
        };
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n",
            self.addr
        );
        if let Some(key) = key {
            head.push_str(&format!("Authorization: Bearer {key}\r\n"));
        }
        let body = body.unwrap_or("");
        if !body.is_empty() || method != "GET" {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        head.push_str(body);
        if let Err(e) = conn.get_mut().write_all(head.as_bytes()) {
            return Outcome::NoResponse(format!("write: {e}"));
        }
        match read_response(&mut conn) {
            Ok((status, body, keep_alive)) => {
                if keep_alive {
                    self.conn = Some(conn);
                }
                Outcome::Response { status, body }
            }
            Err(e) => Outcome::NoResponse(e),
        }
    }

    fn connect(&self) -> std::io::Result<BufReader<TcpStream>> {
        let stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        Ok(BufReader::new(stream))
    }
}

/// Reads one response: `(status, body, keep_alive)`.
fn read_response(conn: &mut BufReader<TcpStream>) -> Result<(u16, Vec<u8>, bool), String> {
    let mut line = String::new();
    let n = conn
        .read_line(&mut line)
        .map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("connection closed before a response".into());
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let mut length: Option<usize> = None;
    let mut keep_alive = true;
    loop {
        let mut h = String::new();
        let n = conn.read_line(&mut h).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed inside the response head".into());
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((name, value)) = h.split_once(':') else {
            return Err(format!("bad header {h:?}"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse().map_err(|_| format!("bad length {value:?}"))?);
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            keep_alive = false;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!("unexpected transfer-encoding {value:?}"));
        }
    }
    let mut body = Vec::new();
    match length {
        Some(len) => {
            body.resize(len, 0);
            conn.read_exact(&mut body)
                .map_err(|e| format!("body: {e}"))?;
        }
        None => {
            conn.read_to_end(&mut body)
                .map_err(|e| format!("body: {e}"))?;
            keep_alive = false;
        }
    }
    Ok((status, body, keep_alive))
}

/// `GET /_health` on a fresh connection.
pub fn health(addr: SocketAddr) -> Outcome {
    Client::new(addr).request("GET", "/_health", None, None)
}

/// A temporary directory holding the database and the server log.
pub struct Workdir {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub log: PathBuf,
}

impl Workdir {
    pub fn new() -> Workdir {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("usersvc.sqlite3");
        let log = dir.path().join("server.log");
        Workdir { dir, db, log }
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
