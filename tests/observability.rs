//! Observability as an operator meets it (SPEC §7, §10.7), against the real binary: the one log
//! line per request and the secrets that must never reach it, `/metrics` in the Prometheus
//! text format with the SPEC's names and labels, and `/_health` including its 503.

// Helpers outside #[test] functions are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const PASSWORD: &str = "Obs3rvable-first-passphrase-4417";
const NEW_PASSWORD: &str = "Obs3rvable-second-passphrase-9902";
const WRONG_PASSWORD: &str = "Obs3rvable-wrong-passphrase-1234";
const EMAIL: &str = "olivia@example.com";

/// A temp directory with a database, and the binary with a clean environment.
struct Env {
    dir: tempfile::TempDir,
    db: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("users.sqlite3");
        Env { dir, db }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_usersvc"));
        for (key, _) in std::env::vars() {
            if key.starts_with("USERSVC_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("HOME", self.dir.path()).env_remove("XDG_DATA_HOME");
        cmd
    }

    /// Runs an admin command; returns stdout.
    fn cli(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut child = self
            .command()
            .env("RUST_LOG", "warn")
            .args(args)
            .arg("--db")
            .arg(&self.db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            let mut pipe = child.stdin.take().unwrap();
            if let Some(text) = stdin {
                pipe.write_all(text.as_bytes()).unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A user with a password, and a `*` key for it; returns (user JSON, key value).
    fn user_with_key(&self, email: &str, password: &str) -> (Value, String) {
        let user = self.cli(
            &[
                "users",
                "create",
                "--email",
                email,
                "--password-stdin",
                "--json",
            ],
            Some(&format!("{password}\n")),
        );
        let key = self.cli(
            &[
                "keys", "create", "--user", email, "--label", "obs", "--scopes", "*",
            ],
            None,
        );
        (serde_json::from_str(&user).unwrap(), key.trim().to_owned())
    }

    /// `usersvc serve` on a free port, stderr into a file.
    fn serve(&self, rust_log: &str) -> Server {
        let stderr_path = self.dir.path().join(format!("stderr-{rust_log}.log"));
        let stderr = File::create(&stderr_path).unwrap();
        let mut child = self
            .command()
            .env("RUST_LOG", rust_log)
            .args(["serve", "--listen", "127.0.0.1:0", "--no-bootstrap", "--db"])
            .arg(&self.db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("no listening line: {line:?}"))
            .to_owned();
        Server {
            child: Some(child),
            addr,
            stderr_path,
            next_id: 0,
            sent: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of the `Set-Cookie` named `name`.
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .find_map(|(_, v)| {
                let pair = v.split(';').next()?;
                let (k, v) = pair.split_once('=')?;
                (k.trim() == name).then(|| v.to_owned())
            })
    }
}

/// How a request authenticates.
enum Auth<'a> {
    None,
    Key(&'a str),
    /// A full session: `sessionid` and CSRF cookies, and the CSRF header.
    Session(&'a Session),
    /// Only a `sessionid` cookie (a pending login).
    Cookie(&'a str),
}

struct Session {
    token: String,
    csrf: String,
}

/// What the test sent, to find each request's log line.
struct Sent {
    request_id: String,
    method: String,
    route: &'static str,
    status: u16,
    auth: &'static str,
}

struct Server {
    child: Option<Child>,
    addr: String,
    stderr_path: PathBuf,
    next_id: usize,
    sent: Vec<Sent>,
}

impl Server {
    /// Sends one request with a unique `X-Request-Id`; `route` is the template expected in
    /// the log line and `auth_kind` the expected auth field.
    fn send(
        &mut self,
        method: &str,
        path: &str,
        route: &'static str,
        auth: Auth,
        body: Option<Value>,
    ) -> Resp {
        self.next_id += 1;
        let request_id = format!("obs-{}", self.next_id);
        let mut headers = vec![("X-Request-Id".to_owned(), request_id.clone())];
        let auth_kind = match auth {
            Auth::None => "none",
            Auth::Key(k) => {
                headers.push(("Authorization".into(), format!("Bearer {k}")));
                "key"
            }
            Auth::Session(s) => {
                headers.push((
                    "Cookie".into(),
                    format!("sessionid={}; posthog_csrftoken={}", s.token, s.csrf),
                ));
                headers.push(("X-CSRFToken".into(), s.csrf.clone()));
                "session"
            }
            // A pending login is not a session: the request is unauthenticated.
            Auth::Cookie(t) => {
                headers.push(("Cookie".into(), format!("sessionid={t}")));
                "none"
            }
        };
        let res = raw_request(&self.addr, method, path, &headers, body.as_ref());
        self.sent.push(Sent {
            request_id,
            method: method.to_owned(),
            route,
            status: res.status,
            auth: auth_kind,
        });
        res
    }

    /// SIGTERM, wait, and return everything the server wrote to stderr.
    fn stop(mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let killed = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(killed.success());
            let status = child.wait().unwrap();
            assert!(status.success(), "graceful stop: {status}");
        }
        std::fs::read_to_string(&self.stderr_path).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One HTTP/1.1 request on its own connection (`Connection: close`).
fn raw_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<&Value>,
) -> Resp {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end: {}", String::from_utf8_lossy(&buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Resp {
        status,
        headers,
        body: buf[split + 4..].to_vec(),
    }
}

fn login(server: &mut Server, password: &str) -> Resp {
    server.send(
        "POST",
        "/api/login/",
        "/api/login/",
        Auth::None,
        Some(json!({"email": EMAIL, "password": password})),
    )
}

fn session_of(res: &Resp) -> Session {
    Session {
        token: res.cookie("sessionid").expect("sessionid cookie"),
        csrf: res.cookie("posthog_csrftoken").expect("csrf cookie"),
    }
}

fn now_micros() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_micros()).unwrap()
}

/// `name=value` or `name="value"` in a log line.
fn log_field(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    let rest = &line[start..];
    Some(match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next()?.to_owned(),
        None => rest.split_whitespace().next()?.to_owned(),
    })
}

/// A log line without its leading timestamp (whose microseconds could equal a 6-digit code).
fn without_timestamp(line: &str) -> &str {
    match line.split_once(' ') {
        Some((first, rest)) if first.starts_with(|c: char| c.is_ascii_digit()) => rest,
        _ => line,
    }
}

#[test]
fn logs_of_a_full_session_name_every_request_and_no_secret() {
    let env = Env::new();
    let (user, key) = env.user_with_key(EMAIL, PASSWORD);
    let uuid = user["uuid"].as_str().unwrap().to_owned();
    let mut server = env.serve("trace");
    // Every secret that crosses the wire in this session, to look for in the logs.
    let mut secrets: Vec<(String, String)> = vec![
        ("API key".into(), key.clone()),
        ("API key body".into(), key["phx_".len()..].to_owned()),
        ("password".into(), PASSWORD.into()),
        ("new password".into(), NEW_PASSWORD.into()),
        ("wrong password".into(), WRONG_PASSWORD.into()),
    ];
    let mut codes: Vec<String> = Vec::new();

    let res = login(&mut server, PASSWORD);
    assert_eq!(res.status, 200, "{}", res.text());
    let first = session_of(&res);
    secrets.push(("session token".into(), first.token.clone()));
    secrets.push(("csrf token".into(), first.csrf.clone()));

    let me = "/api/users/@me/";
    let user_route = "/api/users/{id}/";
    let res = server.send("GET", me, user_route, Auth::Session(&first), None);
    assert_eq!(res.status, 200, "{}", res.text());
    let res = server.send("GET", me, user_route, Auth::Key(&key), None);
    assert_eq!(res.status, 200, "{}", res.text());
    // The uuid in the path must become the template too.
    let res = server.send(
        "GET",
        &format!("/api/users/{uuid}/"),
        user_route,
        Auth::Key(&key),
        None,
    );
    assert_eq!(res.status, 403, "non-staff and a uuid: {}", res.text());
    // A bad key is refused, and is a secret too.
    let bad_key = format!("phx_{}", "Q".repeat(43));
    secrets.push(("bad key".into(), bad_key.clone()));
    let res = server.send("GET", me, user_route, Auth::Key(&bad_key), None);
    assert_eq!(res.status, 401, "{}", res.text());
    // A refused key authenticated nobody.
    server.sent.last_mut().unwrap().auth = "none";

    let res = server.send(
        "PATCH",
        me,
        user_route,
        Auth::Session(&first),
        Some(json!({"password": NEW_PASSWORD, "current_password": PASSWORD})),
    );
    assert_eq!(res.status, 200, "password change: {}", res.text());

    let res = server.send(
        "GET",
        "/api/users/@me/two_factor_start_setup/",
        "/api/users/{id}/two_factor_start_setup/",
        Auth::Session(&first),
        None,
    );
    assert_eq!(res.status, 200, "{}", res.text());
    let secret_base32 = res.json()["secret"].as_str().unwrap().to_owned();
    let secret = totp_rs::Secret::try_from_base32(&secret_base32)
        .unwrap()
        .as_bytes()
        .to_vec();
    secrets.push(("TOTP secret (base32)".into(), secret_base32.clone()));
    secrets.push((
        "TOTP secret (base32, lowercase)".into(),
        secret_base32.to_ascii_lowercase(),
    ));
    secrets.push(("TOTP secret (hex)".into(), hex::encode(&secret)));
    let step = usersvc::auth::totp::step_at(now_micros());
    let code = format!("{:06}", usersvc::auth::totp::code(&secret, step));
    codes.push(code.clone());
    let res = server.send(
        "POST",
        "/api/users/@me/two_factor_validate/",
        "/api/users/{id}/two_factor_validate/",
        Auth::Session(&first),
        Some(json!({"token": code})),
    );
    assert_eq!(res.status, 200, "2FA validate: {}", res.text());

    let res = server.send(
        "POST",
        "/api/users/@me/two_factor_backup_codes/",
        "/api/users/{id}/two_factor_backup_codes/",
        Auth::Session(&first),
        None,
    );
    assert_eq!(res.status, 200, "{}", res.text());
    let backup: Vec<String> = res.json()["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(backup.len(), 10);
    for c in &backup {
        secrets.push(("backup code".into(), c.clone()));
    }

    let res = server.send(
        "POST",
        "/api/logout/",
        "/api/logout/",
        Auth::Session(&first),
        None,
    );
    assert_eq!(res.status, 204, "{}", res.text());

    // Login with 2FA: the password, then a backup code on the pending login.
    let res = login(&mut server, NEW_PASSWORD);
    assert_eq!(res.json()["code"], "2fa_required", "{}", res.text());
    let pending = res.cookie("sessionid").expect("pending cookie");
    secrets.push(("pending login token".into(), pending.clone()));
    let res = server.send(
        "POST",
        "/api/login/token/",
        "/api/login/token/",
        Auth::Cookie(&pending),
        Some(json!({"token": backup[0]})),
    );
    assert_eq!(res.status, 200, "backup code login: {}", res.text());
    let second = session_of(&res);
    secrets.push(("second session token".into(), second.token.clone()));
    secrets.push(("second csrf token".into(), second.csrf.clone()));
    let res = server.send("GET", me, user_route, Auth::Session(&second), None);
    assert_eq!(res.status, 200, "{}", res.text());

    let res = login(&mut server, WRONG_PASSWORD);
    assert_eq!(res.status, 400, "{}", res.text());
    assert_eq!(res.json()["code"], "invalid_credentials");

    // The session's outcomes show in /metrics too.
    let res = server.send("GET", "/metrics", "/metrics", Auth::None, None);
    assert_eq!(res.status, 200);
    let metrics = parse_metrics(&res.text());
    for (series, want) in [
        (r#"usersvc_logins_total{outcome="success"}"#, 1.0),
        (
            r#"usersvc_logins_total{outcome="two_factor_required"}"#,
            1.0,
        ),
        (
            r#"usersvc_logins_total{outcome="invalid_credentials"}"#,
            1.0,
        ),
        (r#"usersvc_two_factor_total{outcome="enabled"}"#, 1.0),
        (
            r#"usersvc_two_factor_total{outcome="backup_codes_generated"}"#,
            1.0,
        ),
        (
            r#"usersvc_two_factor_total{outcome="login_backup_code"}"#,
            1.0,
        ),
        (r#"usersvc_two_factor_total{outcome="login_invalid"}"#, 0.0),
    ] {
        assert_eq!(metrics.get(series), Some(&want), "{series}");
    }

    let sent = std::mem::take(&mut server.sent);
    let log = server.stop();

    // No secret anywhere, at trace level.
    for (what, value) in &secrets {
        assert!(!value.is_empty());
        assert!(
            !log.contains(value.as_str()),
            "{what} {value} in the log:\n{log}"
        );
    }
    for code in &codes {
        for line in log.lines() {
            assert!(
                !without_timestamp(line).contains(code.as_str()),
                "TOTP code {code} in: {line}"
            );
        }
    }

    // Exactly one line per request, with method, route template, status, latency, request id
    // and auth kind.
    let request_lines: Vec<&str> = log
        .lines()
        .filter(|l| log_field(l, "request_id").is_some() && l.contains(" request "))
        .collect();
    assert_eq!(request_lines.len(), sent.len(), "{log}");
    for s in &sent {
        let lines: Vec<&&str> = request_lines
            .iter()
            .filter(|l| log_field(l, "request_id").as_deref() == Some(s.request_id.as_str()))
            .collect();
        assert_eq!(lines.len(), 1, "one line for {}:\n{log}", s.request_id);
        let line = lines[0];
        assert_eq!(
            log_field(line, "method").as_deref(),
            Some(s.method.as_str())
        );
        assert_eq!(log_field(line, "route").as_deref(), Some(s.route), "{line}");
        assert_eq!(
            log_field(line, "status").as_deref(),
            Some(s.status.to_string().as_str()),
            "{line}"
        );
        assert_eq!(log_field(line, "auth").as_deref(), Some(s.auth), "{line}");
        let latency = log_field(line, "latency_us").expect("latency_us");
        assert!(latency.parse::<u64>().is_ok(), "{line}");
        assert!(line.contains(" INFO "), "{line}");
    }
    // And never the raw path of a uuid request.
    assert!(!log.contains(&format!("/api/users/{uuid}")), "{log}");
}

/// `series → value` of a Prometheus text document (comments skipped).
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

fn requests_series(method: &str, route: &str, status: u16) -> String {
    format!(r#"usersvc_http_requests_total{{method="{method}",route="{route}",status="{status}"}}"#)
}

fn duration_count(method: &str, route: &str, status: u16) -> String {
    format!(
        r#"usersvc_http_request_duration_seconds_count{{method="{method}",route="{route}",status="{status}"}}"#
    )
}

#[test]
fn metrics_count_requests_logins_and_throttles_by_template() {
    let env = Env::new();
    let (user, key) = env.user_with_key(EMAIL, PASSWORD);
    let uuid = user["uuid"].as_str().unwrap().to_owned();
    let mut server = env.serve("warn");
    let scrape = |server: &mut Server| {
        let res = server.send("GET", "/metrics", "/metrics", Auth::None, None);
        assert_eq!(res.status, 200, "{}", res.text());
        assert_eq!(
            res.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let text = res.text();
        for name in [
            "usersvc_http_requests_total",
            "usersvc_http_request_duration_seconds",
            "usersvc_logins_total",
            "usersvc_two_factor_total",
            "usersvc_throttled_total",
            "usersvc_db_write_queue_depth",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}:\n{text}");
        }
        assert!(
            text.contains("# TYPE usersvc_http_request_duration_seconds histogram"),
            "{text}"
        );
        assert!(!text.contains(&uuid), "raw path in metrics:\n{text}");
        (text.clone(), parse_metrics(&text))
    };

    let user_route = "/api/users/{id}/";
    for _ in 0..2 {
        let res = server.send("GET", "/api/users/@me/", user_route, Auth::Key(&key), None);
        assert_eq!(res.status, 200);
    }
    let res = server.send(
        "GET",
        &format!("/api/users/{uuid}/"),
        user_route,
        Auth::Key(&key),
        None,
    );
    assert_eq!(res.status, 403);
    let res = server.send("GET", "/no/such/path", "-", Auth::None, None);
    assert_eq!(res.status, 404);
    // Ten failures lock the email; the eleventh attempt is a lockout (a throttle hit).
    for _ in 0..10 {
        let res = login(&mut server, WRONG_PASSWORD);
        assert_eq!(res.status, 400, "{}", res.text());
    }
    let res = login(&mut server, WRONG_PASSWORD);
    assert_eq!(res.status, 403, "{}", res.text());
    assert_eq!(res.json()["code"], "too_many_failed_attempts");

    let (text, m) = scrape(&mut server);
    let get = |m: &HashMap<String, f64>, s: &str| {
        *m.get(s)
            .unwrap_or_else(|| panic!("no series {s} in:\n{text}"))
    };
    assert_eq!(get(&m, &requests_series("GET", user_route, 200)), 2.0);
    assert_eq!(get(&m, &requests_series("GET", user_route, 403)), 1.0);
    assert_eq!(get(&m, &requests_series("GET", "-", 404)), 1.0);
    assert_eq!(get(&m, &requests_series("POST", "/api/login/", 400)), 10.0);
    assert_eq!(get(&m, &requests_series("POST", "/api/login/", 403)), 1.0);
    assert_eq!(get(&m, &duration_count("GET", user_route, 200)), 2.0);
    assert_eq!(
        get(
            &m,
            &format!(
                r#"usersvc_http_request_duration_seconds_bucket{{method="GET",route="{user_route}",status="200",le="+Inf"}}"#
            )
        ),
        2.0
    );
    assert!(
        get(
            &m,
            &format!(
                r#"usersvc_http_request_duration_seconds_sum{{method="GET",route="{user_route}",status="200"}}"#
            )
        ) > 0.0
    );
    assert_eq!(
        get(&m, r#"usersvc_logins_total{outcome="invalid_credentials"}"#),
        10.0
    );
    assert_eq!(get(&m, r#"usersvc_logins_total{outcome="locked"}"#), 1.0);
    assert_eq!(get(&m, r#"usersvc_logins_total{outcome="success"}"#), 0.0);
    assert_eq!(get(&m, r#"usersvc_throttled_total{kind="login"}"#), 1.0);
    assert_eq!(
        get(&m, r#"usersvc_two_factor_total{outcome="login_invalid"}"#),
        0.0
    );
    assert_eq!(get(&m, "usersvc_db_write_queue_depth"), 0.0);

    // Counts go up: the first scrape is counted by the second, and a login succeeds.
    let res = server.send("GET", "/api/users/@me/", user_route, Auth::Key(&key), None);
    assert_eq!(res.status, 200);
    let res = server.send(
        "POST",
        "/api/login/",
        "/api/login/",
        Auth::None,
        Some(json!({"email": "someone-else@example.com", "password": WRONG_PASSWORD})),
    );
    assert_eq!(res.status, 400);
    let (text2, m2) = scrape(&mut server);
    let get2 = |s: &str| {
        *m2.get(s)
            .unwrap_or_else(|| panic!("no series {s} in:\n{text2}"))
    };
    assert_eq!(get2(&requests_series("GET", user_route, 200)), 3.0);
    assert_eq!(get2(&requests_series("GET", "/metrics", 200)), 1.0);
    assert_eq!(
        get2(r#"usersvc_logins_total{outcome="invalid_credentials"}"#),
        11.0
    );
    assert_eq!(get2(&duration_count("GET", user_route, 200)), 3.0);
    server.stop();
}

#[test]
fn health_answers_while_the_database_does_and_ignores_credentials() {
    let env = Env::new();
    env.user_with_key(EMAIL, PASSWORD);
    let mut server = env.serve("warn");
    let bad_key = format!("phx_{}", "Z".repeat(43));

    let res = server.send("GET", "/_health", "/_health", Auth::None, None);
    assert_eq!((res.status, res.json()), (200, json!({"status": "ok"})));
    // A bad key or a stale cookie never fails the probes or the schema (SPEC §10.7).
    for path in ["/_health", "/metrics", "/api/schema/"] {
        let headers = [
            ("Authorization".to_owned(), format!("Bearer {bad_key}")),
            ("Cookie".to_owned(), "sessionid=stale".to_owned()),
        ];
        let res = raw_request(&server.addr, "GET", path, &headers, None);
        assert_ne!(res.status, 401, "{path}: {}", res.text());
        if path != "/api/schema/" {
            assert_eq!(res.status, 200, "{path}: {}", res.text());
        }
    }

    let unavailable = |res: &Resp| {
        assert_eq!(res.status, 503, "{}", res.text());
        assert_eq!(
            res.json(),
            json!({
                "type": "server_error",
                "code": "service_unavailable",
                "detail": "The database is not available.",
                "attr": null,
            })
        );
    };

    // 1. The file vanishes (a lost volume): the server's open connections still work, but the
    //    database at its path does not answer.
    let moved = env.dir.path().join("moved-away.sqlite3");
    std::fs::rename(&env.db, &moved).unwrap();
    outlive_health_cache();
    unavailable(&server.send("GET", "/_health", "/_health", Auth::None, None));
    std::fs::rename(&moved, &env.db).unwrap();
    outlive_health_cache();
    let res = server.send("GET", "/_health", "/_health", Auth::None, None);
    assert_eq!(res.status, 200, "back: {}", res.text());

    // 2. The file is overwritten with garbage in place (same inode, so root's disregard for
    //    permissions does not matter). The WAL is checkpointed into the file first, so no
    //    page can be served from it instead.
    {
        let conn = rusqlite::Connection::open(&env.db).unwrap();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    let original = corrupt_header(&env.db);
    outlive_health_cache();
    unavailable(&server.send("GET", "/_health", "/_health", Auth::None, None));
    restore_header(&env.db, &original);
    outlive_health_cache();
    let res = server.send("GET", "/_health", "/_health", Auth::None, None);
    assert_eq!(res.status, 200, "restored: {}", res.text());
    server.stop();
}

/// A health answer is reused for `HEALTH_CACHE`; wait it out after changing the database.
fn outlive_health_cache() {
    std::thread::sleep(usersvc::api::HEALTH_CACHE + std::time::Duration::from_millis(100));
}

/// Overwrites the first 4 KiB (the header and the first page) with garbage; returns them.
fn corrupt_header(path: &Path) -> Vec<u8> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut original = vec![0; 4096];
    file.read_exact(&mut original).unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.write_all(&[0x5a; 4096]).unwrap();
    file.sync_all().unwrap();
    original
}

fn restore_header(path: &Path, original: &[u8]) {
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all(original).unwrap();
    file.sync_all().unwrap();
}
