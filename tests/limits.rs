//! Limits (SPEC §6, §10.7) against the real binary over raw TCP, so every byte and every
//! timing is the client's to choose: bodies over the limit (declared and chunked), the
//! request-head timeout for silent and trickling clients, the idle keep-alive timeout,
//! oversized heads, 415, deeply nested JSON, the common headers on every kind of error
//! (500 included), and a graceful shutdown that stays bounded with connections open.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// `usersvc serve` on a free port with a fresh database, and the bootstrap admin's key.
struct Server {
    child: Child,
    addr: SocketAddr,
    db: PathBuf,
    key: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(flags: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("usersvc.sqlite3");
        let mut child = usersvc(&db)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The bootstrap line comes on stderr before `listening` on stdout. stderr is drained
        // for the server's whole life so its log can never fill the pipe and block it.
        let (key_tx, key_rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(key) = line.split("(shown once): ").nth(1) {
                    let _ = key_tx.send(key.to_owned());
                }
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        let key = key_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Server {
            child,
            addr,
            db,
            key,
            _dir: dir,
        }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
    }

    /// Sends `head` (with `Host` and `Connection: close` added) and `body`; reads the answer.
    fn send(&self, head: &str, body: &[u8]) -> Resp {
        let mut stream = self.connect();
        let (request_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        let request = format!(
            "{request_line}\r\nHost: {}\r\nConnection: close\r\n{headers}\r\n",
            self.addr
        );
        stream.write_all(request.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        read_to_close(&mut stream)
    }

    fn get(&self, path: &str, key: Option<&str>) -> Resp {
        let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
        self.send(&format!("GET {path} HTTP/1.1\r\n{auth}"), b"")
    }

    /// A JSON PATCH of the admin's own user with the bootstrap key.
    fn patch_me(&self, content_type: &str, body: &[u8]) -> Resp {
        self.send(
            &format!(
                "PATCH /api/users/@me/ HTTP/1.1\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                self.key,
                body.len()
            ),
            body,
        )
    }

    fn assert_alive(&self) {
        assert_eq!(
            self.get("/_health", None).status,
            200,
            "server still serves"
        );
    }

    /// SIGTERM, then the exit status and how long the exit took.
    fn terminate(&mut self) -> (ExitStatus, Duration) {
        let started = Instant::now();
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "server did not exit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary with no `USERSVC_*` from the caller's environment.
fn usersvc(db: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_usersvc"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("USERSVC_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("RUST_LOG", "warn").arg("--db").arg(db);
    cmd
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    #[track_caller]
    fn assert_error(&self, status: u16, kind: &str, code: &str, detail: &str) {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.json(),
            json!({"type": kind, "code": code, "detail": detail, "attr": null})
        );
    }

    /// nosniff, no-store and a request id (SPEC §2).
    #[track_caller]
    fn assert_common_headers(&self, what: &str) {
        assert_eq!(
            self.header("x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(self.header("cache-control"), Some("no-store"), "{what}");
        assert!(self.header("x-request-id").is_some(), "{what}");
    }
}

/// Reads until the server closes the connection.
fn read_to_close(stream: &mut TcpStream) -> Resp {
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).unwrap();
    parse(&buf).unwrap_or_else(|| panic!("no response in {:?}", String::from_utf8_lossy(&buf)))
}

/// Reads one response with a `Content-Length` body, leaving the connection open.
fn read_one(stream: &mut TcpStream) -> Resp {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed mid-response");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(res) = parse(&buf) {
            let len: usize = res
                .header("content-length")
                .map_or(0, |v| v.parse().unwrap());
            if res.body.len() >= len {
                return res;
            }
        }
    }
}

fn parse(buf: &[u8]) -> Option<Resp> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(Resp {
        status,
        headers,
        body: buf[end + 4..].to_vec(),
    })
}

/// Waits for the server to close `stream`, failing on any response bytes; returns how long
/// it took. `poke` runs every 100 ms (to trickle bytes); a failed write also means closed.
fn wait_for_close(
    stream: &mut TcpStream,
    mut poke: impl FnMut(&mut TcpStream) -> bool,
) -> Duration {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 1024];
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "connection still open"
        );
        if !poke(stream) {
            return started.elapsed();
        }
        match stream.read(&mut buf) {
            Ok(0) => return started.elapsed(),
            Ok(n) => panic!(
                "unexpected response: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return started.elapsed(),
        }
    }
}

const TOO_LARGE: &str = "Request body exceeds 1000 bytes.";

#[test]
fn a_declared_body_over_the_limit_is_413_before_any_of_it_is_sent() {
    let srv = Server::start(&["--max-body-bytes", "1000"]);
    let mut stream = srv.connect();
    let head = format!(
        "PATCH /api/users/@me/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1001\r\n\r\n",
        srv.key
    );
    // Only the head: the answer must not wait for the body, and the connection (whose body
    // bytes were never read) must close rather than wait for another request.
    stream.write_all(head.as_bytes()).unwrap();
    let res = read_to_close(&mut stream);
    res.assert_error(413, "invalid_request", "request_too_large", TOO_LARGE);
    res.assert_common_headers("413");
    assert_eq!(res.header("connection"), Some("close"));
}

#[test]
fn a_chunked_body_over_the_limit_is_413_without_reading_the_rest() {
    let srv = Server::start(&["--max-body-bytes", "1000"]);
    let mut stream = srv.connect();
    let head = format!(
        "PATCH /api/users/@me/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        srv.key
    );
    stream.write_all(head.as_bytes()).unwrap();
    // A chunk announced as 1 MiB of which only 1001 bytes ever come: the 413 cannot depend
    // on the rest.
    stream.write_all(b"100000\r\n").unwrap();
    stream.write_all(&[b' '; 1001]).unwrap();
    let res = read_to_close(&mut stream);
    res.assert_error(413, "invalid_request", "request_too_large", TOO_LARGE);
    res.assert_common_headers("chunked 413");
    assert_eq!(res.header("connection"), Some("close"));
    srv.assert_alive();
}

#[test]
fn a_body_at_the_limit_is_accepted() {
    let srv = Server::start(&["--max-body-bytes", "1000"]);
    let mut body = br#"{"first_name":"Ada"}"#.to_vec();
    body.resize(1000, b' ');
    let res = srv.patch_me("application/json", &body);
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["first_name"], json!("Ada"));
}

#[test]
fn a_client_that_never_sends_its_head_is_disconnected() {
    let srv = Server::start(&["--header-timeout", "1s"]);
    let mut stream = srv.connect();
    let took = wait_for_close(&mut stream, |_| true);
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn a_client_that_trickles_its_head_is_disconnected() {
    let srv = Server::start(&["--header-timeout", "1s"]);
    let mut stream = srv.connect();
    stream.write_all(b"GET /_health HTTP/1.1\r\n").unwrap();
    // A header line every 100 ms keeps bytes coming, but the head never completes: the
    // timeout is for the whole head, not between bytes.
    let mut n = 0;
    let took = wait_for_close(&mut stream, |s| {
        n += 1;
        s.write_all(format!("X-Slow-{n}: x\r\n").as_bytes()).is_ok()
    });
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(5),
        "{took:?}"
    );
    srv.assert_alive();
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let srv = Server::start(&["--header-timeout", "1s"]);
    let mut stream = srv.connect();
    let request = b"GET /_health HTTP/1.1\r\nHost: x\r\n\r\n";
    stream.write_all(request).unwrap();
    assert_eq!(read_one(&mut stream).status, 200);
    // Keep-alive works: a second request well within the timeout is served on it.
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(request).unwrap();
    assert_eq!(read_one(&mut stream).status, 200);
    // Then silence: the same timer closes the idle connection.
    let took = wait_for_close(&mut stream, |_| true);
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn too_many_or_too_large_headers_get_431_and_the_server_lives_on() {
    let srv = Server::start(&[]);
    // More than hyper's 100 headers.
    let mut stream = srv.connect();
    let mut head = String::from("GET /_health HTTP/1.1\r\nHost: x\r\n");
    for i in 0..150 {
        head.push_str(&format!("X-Many-{i}: x\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    assert_eq!(read_to_close(&mut stream).status, 431);
    srv.assert_alive();

    // A head that reaches 64 KiB without ending. Exactly that much is sent, so the server has
    // read every byte when it answers and closes (no reset can swallow the answer).
    let mut stream = srv.connect();
    let mut head = b"GET /_health HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    head.resize(64 * 1024, b'a');
    stream.write_all(&head).unwrap();
    assert_eq!(read_to_close(&mut stream).status, 431);
    srv.assert_alive();

    // Just under the limit is fine.
    let big = "a".repeat(60 * 1024);
    let res = srv.send(&format!("GET /_health HTTP/1.1\r\nX-Big: {big}\r\n"), b"");
    assert_eq!(res.status, 200);
}

#[test]
fn a_body_that_is_not_json_is_415() {
    let srv = Server::start(&[]);
    let res = srv.patch_me("text/plain", br#"{"first_name":"x"}"#);
    res.assert_error(
        415,
        "invalid_request",
        "unsupported_media_type",
        "Unsupported media type \"text/plain\" in request.",
    );
    res.assert_common_headers("415");
}

#[test]
fn json_nested_ten_thousand_deep_is_400_not_a_stack_overflow() {
    let srv = Server::start(&[]);
    let arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let objects = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    let inside = format!(r#"{{"hedgehog_config":{arrays}}}"#);
    for body in [arrays, objects, inside] {
        let res = srv.patch_me("application/json", body.as_bytes());
        assert_eq!(res.status, 400, "{}", String::from_utf8_lossy(&res.body));
        let err = res.json();
        assert_eq!(err["code"], json!("parse_error"));
        let detail = err["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("JSON parse error - recursion limit exceeded"),
            "{detail}"
        );
    }
    srv.assert_alive();
}

#[test]
fn every_kind_of_error_carries_the_common_headers() {
    let origin = "https://app.example.com";
    let srv = Server::start(&[
        "--max-body-bytes",
        "1000",
        "--key-rate-limit",
        "2/min",
        "--cors-origin",
        origin,
    ]);
    let extra = format!("X-Request-Id: req-42\r\nOrigin: {origin}\r\n");
    let req = |line: &str, more: &str| srv.send(&format!("{line}\r\n{extra}{more}"), b"");
    let auth = format!("Authorization: Bearer {}\r\n", srv.key);
    let mut seen = vec![
        ("401", req("GET /api/users/@me/ HTTP/1.1", "")),
        ("404", req("GET /nope HTTP/1.1", "")),
        ("405", req("POST /api/users/ HTTP/1.1", "")),
        (
            "413",
            req("POST /api/login/ HTTP/1.1", "Content-Length: 5000\r\n"),
        ),
    ];
    // The limit is 2 a minute: the third request with the key is throttled.
    for _ in 0..2 {
        assert_eq!(req("GET /api/users/@me/ HTTP/1.1", &auth).status, 200);
    }
    let throttled = req("GET /api/users/@me/ HTTP/1.1", &auth);
    let retry: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    seen.push(("429", throttled));
    // A database the server cannot read: the key lookup fails, and that is a 500.
    rusqlite::Connection::open(&srv.db)
        .unwrap()
        .execute_batch("ALTER TABLE personal_api_keys RENAME TO personal_api_keys_gone")
        .unwrap();
    let broken = req("GET /api/users/@me/ HTTP/1.1", &auth);
    broken.assert_error(500, "server_error", "error", "A server error occurred.");
    seen.push(("500", broken));

    for (status, res) in &seen {
        assert_eq!(res.status.to_string(), *status);
        res.assert_common_headers(status);
        assert_eq!(res.header("x-request-id"), Some("req-42"), "{status}");
        assert_eq!(res.header("content-type"), Some("application/json"));
        assert_eq!(
            res.header("access-control-allow-origin"),
            Some(origin),
            "{status}"
        );
        assert_eq!(res.header("access-control-allow-credentials"), Some("true"));
    }
}

#[test]
fn graceful_shutdown_closes_idle_connections_at_once() {
    let mut srv = Server::start(&["--header-timeout", "60s", "--shutdown-timeout", "30s"]);
    // Idle keep-alive connections that have served a request, and connections that never
    // sent a byte: neither is in flight, so neither may hold the shutdown up.
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut stream = srv.connect();
        stream
            .write_all(b"GET /_health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(read_one(&mut stream).status, 200);
        open.push(stream);
        open.push(srv.connect());
    }
    std::thread::sleep(Duration::from_millis(200));
    let (status, took) = srv.terminate();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    for mut stream in open {
        let mut buf = [0u8; 64];
        assert!(matches!(stream.read(&mut buf), Ok(0) | Err(_)));
    }
}

#[test]
fn graceful_shutdown_is_bounded_by_the_shutdown_timeout() {
    let mut srv = Server::start(&["--header-timeout", "60s", "--shutdown-timeout", "1s"]);
    // A half-sent head counts as a request in progress: only the shutdown timeout ends it.
    let mut stuck = srv.connect();
    stuck
        .write_all(b"GET /_health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut idle = srv.connect();
    idle.write_all(b"GET /_health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_one(&mut idle).status, 200);
    std::thread::sleep(Duration::from_millis(200));
    let (status, took) = srv.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn bad_limit_flags_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("usersvc.sqlite3");
    for (flag, value) in [
        ("--key-rate-limit", "480"),
        ("--key-rate-limit", "480/min,lots/hour"),
        ("--key-rate-limit", "0/min"),
        ("--cors-origin", "app.example.com"),
        ("--cors-origin", "https://app.example.com/path"),
        ("--header-timeout", "soon"),
    ] {
        let out = usersvc(&db)
            .args(["serve", "--listen", "127.0.0.1:0", flag, value])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(out.stdout.is_empty());
        assert!(
            stderr.starts_with("usersvc: invalid value") && stderr.contains(flag),
            "{stderr}"
        );
        assert!(!db.exists(), "refused before the database is opened");
    }
}
