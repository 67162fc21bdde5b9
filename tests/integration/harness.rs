//! TestServer: the real server in-process on 127.0.0.1:0 with a temp database and a movable
//! clock, a tiny raw HTTP/1.1 client (so tests control every byte), and fixtures written
//! through the same db functions the CLI uses.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use usersvc::clock::Clock;
use usersvc::config::ServeConfig;
use usersvc::model::{OrgRow, TeamBasic, UserRow};

pub struct TestServer {
    pub addr: SocketAddr,
    pub db_path: PathBuf,
    pub clock: Clock,
    _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts status and the exact error envelope.
    #[track_caller]
    pub fn assert_error(
        &self,
        status: u16,
        kind: &str,
        code: &str,
        detail: &str,
        attr: Option<&str>,
    ) {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.json(),
            serde_json::json!({"type": kind, "code": code, "detail": detail, "attr": attr})
        );
    }
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(|_| {})
    }

    /// Starts a server after letting `adjust` change the config.
    pub fn start_with(adjust: impl FnOnce(&mut ServeConfig)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let db_path = dir.path().join("usersvc.sqlite3");
        let mut config = ServeConfig::for_test(db_path.clone());
        adjust(&mut config);
        let clock = Clock::default();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server_clock = clock.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let (listener, app) = usersvc::server::bind(config, server_clock)
                    .await
                    .expect("bind");
                addr_tx.send(app.bound).expect("send addr");
                usersvc::server::run(listener, app, async {
                    let _ = stop_rx.await;
                })
                .await
                .expect("server run");
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server did not start");
        TestServer {
            addr,
            db_path,
            clock,
            _dir: dir,
            shutdown: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Sends raw bytes and reads the whole response (the request should say `Connection: close`).
    pub fn raw(&self, request: &[u8]) -> Resp {
        let mut stream = TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        stream.write_all(request).expect("write");
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).expect("read");
        parse_response(&buf)
    }

    /// A request with optional bearer key and JSON body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Resp {
        let mut headers = Vec::new();
        if let Some(k) = key {
            headers.push(("Authorization".to_owned(), format!("Bearer {k}")));
        }
        let body = body.map(|b| b.to_string());
        if body.is_some() {
            headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
        }
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        self.request_raw_body(method, path, &h, body.as_deref().map(str::as_bytes))
    }

    /// A request with arbitrary headers and body bytes.
    pub fn request_raw_body(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Resp {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = body.unwrap_or(b"");
        if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.raw(&bytes)
    }

    pub fn get(&self, path: &str, key: &str) -> Resp {
        self.request("GET", path, Some(key), None)
    }

    pub fn patch(&self, path: &str, key: &str, body: Value) -> Resp {
        self.request("PATCH", path, Some(key), Some(&body))
    }

    fn conn(&self) -> rusqlite::Connection {
        usersvc::db::open_connection(&self.db_path).expect("open db")
    }

    fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Creates a user with no usable password.
    pub fn user(&self, email: &str, staff: bool) -> UserRow {
        self.user_with_password(email, staff, None)
    }

    pub fn user_with_password(&self, email: &str, staff: bool, password: Option<&str>) -> UserRow {
        let conn = self.conn();
        let hash = match password {
            Some(p) => usersvc::auth::password::hash(p).expect("hash"),
            None => usersvc::auth::password::unusable(),
        };
        let id = usersvc::db::users::insert(
            &conn,
            &usersvc::db::users::NewUser {
                email,
                password_hash: &hash,
                first_name: "",
                last_name: "",
                is_staff: staff,
            },
            self.now(),
        )
        .expect("insert user");
        usersvc::db::users::get(&conn, id)
            .expect("get")
            .expect("user")
    }

    /// Creates a key for the user and returns its secret value.
    pub fn key(&self, user: &UserRow, scopes: &[&str]) -> String {
        self.key_with_id(user, scopes).1
    }

    /// Creates a key; returns (key id, secret value).
    pub fn key_with_id(&self, user: &UserRow, scopes: &[&str]) -> (String, String) {
        let value = usersvc::auth::api_key::generate();
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let scoping = usersvc::db::keys::Scoping::default();
        let key = usersvc::db::keys::insert(
            &self.conn(),
            user.id,
            "test",
            &value,
            &scopes,
            &scoping,
            self.now(),
        )
        .expect("insert key");
        (key.id, value)
    }

    pub fn revoke(&self, key_id: &str) {
        usersvc::db::keys::delete(&self.conn(), key_id).expect("revoke");
    }

    pub fn set_active(&self, user: &UserRow, active: bool) {
        usersvc::db::users::set_active(&self.conn(), user.id, active).expect("set_active");
    }

    pub fn org(&self, name: &str) -> OrgRow {
        let slug = name.to_lowercase().replace(' ', "-");
        usersvc::db::orgs::insert(&self.conn(), name, &slug, self.now()).expect("org")
    }

    pub fn team(&self, org: &OrgRow, name: &str) -> TeamBasic {
        usersvc::db::orgs::insert_team(&self.conn(), org, name, self.now()).expect("team")
    }

    pub fn member(&self, user: &UserRow, org: &OrgRow, level: i64) {
        usersvc::db::orgs::add_member(&self.conn(), user.id, org.id, level, self.now())
            .expect("member");
    }

    /// Runs SQL against the database (for assertions).
    pub fn query_i64(&self, sql: &str) -> i64 {
        self.conn().query_row(sql, [], |r| r.get(0)).expect("query")
    }

    /// Runs the real binary against this server's database.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_usersvc"))
            .arg("--db")
            .arg(&self.db_path)
            .args(args)
            .output()
            .expect("run usersvc")
    }

    /// `POST /api/login/`; panics unless it answers 200. Returns the session's cookies.
    pub fn login(&self, email: &str, password: &str) -> Session {
        let res = self.request(
            "POST",
            "/api/login/",
            None,
            Some(&serde_json::json!({"email": email, "password": password})),
        );
        assert_eq!(
            res.status,
            200,
            "login: {}",
            String::from_utf8_lossy(&res.body)
        );
        Session::from_response(&res).expect("login set no session cookie")
    }

    /// A request on a session: cookies plus the `X-CSRFToken` header.
    pub fn session_request(
        &self,
        method: &str,
        path: &str,
        session: &Session,
        body: Option<&Value>,
    ) -> Resp {
        let cookie = session.cookie_header();
        let mut headers = vec![
            ("Cookie", cookie.as_str()),
            ("X-CSRFToken", session.csrf.as_str()),
        ];
        let body = body.map(|b| b.to_string());
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        self.request_raw_body(method, path, &headers, body.as_deref().map(str::as_bytes))
    }
}

/// The cookies of a session: `sessionid` and `posthog_csrftoken`.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub csrf: String,
}

impl Session {
    /// Reads `Set-Cookie` headers; `None` without a non-empty `sessionid`.
    pub fn from_response(res: &Resp) -> Option<Session> {
        let cookie = |name: &str| {
            res.headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
                .find_map(|(_, v)| {
                    let first = v.split(';').next()?;
                    let (k, val) = first.split_once('=')?;
                    (k.trim() == name).then(|| val.trim().to_owned())
                })
        };
        let token = cookie("sessionid").filter(|t| !t.is_empty())?;
        Some(Session {
            token,
            csrf: cookie("posthog_csrftoken").unwrap_or_default(),
        })
    }

    pub fn cookie_header(&self) -> String {
        format!("sessionid={}; posthog_csrftoken={}", self.token, self.csrf)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn parse_response(buf: &[u8]) -> Resp {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let raw_body = &buf[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(raw_body)
    } else {
        raw_body.to_vec()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..pos]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[pos + 2..pos + 2 + size]);
        data = &data[pos + 2 + size + 2..];
    }
    out
}
