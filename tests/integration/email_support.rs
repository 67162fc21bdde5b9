//! Helpers for the email verification and password reset tests: a server that writes its mail
//! into a directory, reading those `.eml` files back, pulling the link tokens out of them, and
//! fixtures the HTTP API has no route for (2FA on, a user with a password).

pub use super::two_factor_support::session_from;
use std::path::Path;

use serde_json::{Value, json};
use usersvc::config::MailTransport;
use usersvc::model::UserRow;

use crate::harness::{Resp, Session, TestServer};

pub const PASSWORD: &str = "a sturdy Passphrase 42";
pub const NEW_PASSWORD: &str = "another Sturdy passphrase 77";
pub const SITE_URL: &str = "http://app.example.test";

/// A server with `--mail-dir` and `--site-url`, and the directory its mail lands in. The
/// directory is declared after the server so it outlives it.
pub struct MailServer {
    pub srv: TestServer,
    pub outbox: Outbox,
}

pub fn start() -> MailServer {
    let dir = tempfile::tempdir().expect("mail dir");
    let path = dir.path().to_path_buf();
    let srv = TestServer::start_with(|c| {
        c.mail = Some(MailTransport::Dir(path));
        c.site_url = Some(SITE_URL.to_owned());
    });
    MailServer {
        srv,
        outbox: Outbox { dir },
    }
}

pub struct Outbox {
    dir: tempfile::TempDir,
}

/// One `.eml` file.
#[derive(Debug, Clone)]
pub struct Eml {
    pub name: String,
    pub raw: String,
}

impl Outbox {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Every message, oldest first (names start with the send time in ms).
    pub fn all(&self) -> Vec<Eml> {
        let mut mails: Vec<Eml> = std::fs::read_dir(self.dir.path())
            .expect("read mail dir")
            .map(|e| e.expect("dir entry"))
            .map(|e| Eml {
                name: e.file_name().to_string_lossy().into_owned(),
                raw: std::fs::read_to_string(e.path()).expect("read eml"),
            })
            .collect();
        mails.sort_by(|a, b| a.name.cmp(&b.name));
        mails
    }

    pub fn count(&self) -> usize {
        self.all().len()
    }

    /// Messages to `to` with `subject`.
    pub fn find(&self, to: &str, subject: &str) -> Vec<Eml> {
        self.all()
            .into_iter()
            .filter(|m| m.header("To") == Some(to) && m.header("Subject") == Some(subject))
            .collect()
    }

    /// The only message to `to` with `subject`; panics unless there is exactly one.
    #[track_caller]
    pub fn one(&self, to: &str, subject: &str) -> Eml {
        let found = self.find(to, subject);
        assert_eq!(
            found.len(),
            1,
            "messages to {to} with subject {subject:?}; all: {:#?}",
            self.all()
        );
        found.into_iter().next().expect("one message")
    }
}

impl Eml {
    pub fn head(&self) -> &str {
        self.raw.split_once("\r\n\r\n").map_or("", |(h, _)| h)
    }

    pub fn body(&self) -> &str {
        self.raw.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head().split("\r\n").find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The `(uuid, token)` of the link `<SITE_URL>/<kind>/<uuid>/<token>` in the body.
    #[track_caller]
    pub fn link(&self, kind: &str) -> (String, String) {
        let prefix = format!("{SITE_URL}/{kind}/");
        let start = self
            .body()
            .find(&prefix)
            .unwrap_or_else(|| panic!("no {prefix} link in {}", self.raw))
            + prefix.len();
        let rest = &self.body()[start..];
        let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
        let (uuid, token) = rest[..end].split_once('/').expect("uuid/token");
        (uuid.to_owned(), token.to_owned())
    }
}

/// The token of the only verification link mailed to `to`.
#[track_caller]
pub fn verification_token(outbox: &Outbox, to: &str) -> String {
    outbox
        .one(to, "Verify your email address")
        .link("verify_email")
        .1
}

/// A JSON POST without credentials.
pub fn post(srv: &TestServer, path: &str, body: Value) -> Resp {
    srv.request("POST", path, None, Some(&body))
}

pub fn verify(srv: &TestServer, uuid: &str, token: &str) -> Resp {
    post(
        srv,
        "/api/users/verify_email/",
        json!({"uuid": uuid, "token": token}),
    )
}

pub fn request_verification(srv: &TestServer, uuid: &str) -> Resp {
    post(
        srv,
        "/api/users/request_email_verification/",
        json!({"uuid": uuid}),
    )
}

/// The value a response sets for cookie `name`, if any.
pub fn set_cookie(resp: &Resp, name: &str) -> Option<String> {
    resp.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .find_map(|(_, v)| {
            let first = v.split(';').next()?;
            let (k, val) = first.split_once('=')?;
            (k.trim() == name).then(|| val.trim().to_owned())
        })
}

/// `GET /api/users/@me/` on a session.
pub fn me(srv: &TestServer, session: &Session) -> Resp {
    srv.session_request("GET", "/api/users/@me/", session, None)
}

/// `GET /api/users/@me/` with only a session cookie (e.g. a pending login's).
pub fn me_with_cookie(srv: &TestServer, sessionid: &str) -> Resp {
    let cookie = format!("sessionid={sessionid}");
    srv.request_raw_body("GET", "/api/users/@me/", &[("Cookie", &cookie)], None)
}

/// A user as the database holds it now.
pub fn reload(srv: &TestServer, user: &UserRow) -> UserRow {
    let conn = usersvc::db::open_connection(&srv.db_path).expect("open db");
    usersvc::db::users::get(&conn, user.id)
        .expect("get user")
        .expect("user exists")
}

/// The secret of the TOTP device [`enable_2fa`] creates.
pub const TOTP_SECRET: [u8; 20] = *b"12345678901234567890";

/// Gives the user a confirmed TOTP device, as `two_factor_validate` would.
pub fn enable_2fa(srv: &TestServer, user: &UserRow) {
    let conn = usersvc::db::open_connection(&srv.db_path).expect("open db");
    let now = srv.clock.now();
    // A last accepted step well in the past, so the current code is still accepted.
    let last_step = usersvc::auth::totp::step_at(now) - 10;
    usersvc::db::two_factor::put_device(&conn, user.id, &hex(&TOTP_SECRET), last_step, now)
        .expect("put device");
}

/// The TOTP code for [`TOTP_SECRET`] now.
pub fn totp_now(srv: &TestServer) -> String {
    let step = usersvc::auth::totp::step_at(srv.clock.now());
    format!("{:06}", usersvc::auth::totp::code(&TOTP_SECRET, step))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The database file and its WAL, as bytes, for "no secret at rest" checks.
pub fn database_bytes(srv: &TestServer) -> Vec<u8> {
    let mut bytes = std::fs::read(&srv.db_path).expect("read db");
    let wal = format!("{}-wal", srv.db_path.display());
    if let Ok(more) = std::fs::read(wal) {
        bytes.extend(more);
    }
    bytes
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}
