//! The admin CLI as a user meets it: the real binary against a temporary database. Output
//! shapes (`--json`), exit codes (0, 1, 2), the `usersvc: ` error line with an empty stdout,
//! passwords on standard input, seeding, backup and check, and the newer-schema refusal.

// Helpers outside #[test] functions are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rusqlite::Connection;
use serde_json::{Value, json};

const STRONG: &str = "correct horse battery staple";

/// One temporary directory with a database path in it (the file appears when a command
/// creates it).
struct Cli {
    dir: tempfile::TempDir,
    db: PathBuf,
}

/// What one run of the binary produced.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    /// Asserts success and returns stdout parsed as one JSON document.
    #[track_caller]
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "stderr: {}", self.stderr);
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", self.stdout))
    }

    #[track_caller]
    fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "stderr: {}", self.stderr);
        &self.stdout
    }

    /// Asserts the exit code, an empty stdout and exactly `usersvc: <message>` on stderr.
    #[track_caller]
    fn fails(&self, code: i32, message: &str) {
        self.fails_with(code);
        assert_eq!(self.stderr, format!("usersvc: {message}\n"));
    }

    /// Asserts the exit code, an empty stdout and a stderr that starts with `usersvc: `.
    #[track_caller]
    fn fails_with(&self, code: i32) {
        assert_eq!(
            self.code, code,
            "stdout: {} stderr: {}",
            self.stdout, self.stderr
        );
        assert_eq!(self.stdout, "", "nothing on stdout on error");
        assert!(
            self.stderr.starts_with("usersvc: "),
            "stderr: {}",
            self.stderr
        );
    }
}

impl Cli {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("users.sqlite3");
        Cli { dir, db }
    }

    /// The binary with a clean environment: no `USERSVC_*` from the caller, and `HOME` inside
    /// the temp dir so a missing `--db` can never touch the real data directory.
    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_usersvc"));
        for (key, _) in std::env::vars() {
            if key.starts_with("USERSVC_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("HOME", self.dir.path())
            .env_remove("XDG_DATA_HOME")
            .env("RUST_LOG", "warn");
        cmd
    }

    /// Runs `usersvc ARGS --db DB`.
    fn run(&self, args: &[&str]) -> Out {
        self.run_with_stdin(args, None)
    }

    fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut cmd = self.command();
        cmd.args(args).arg("--db").arg(&self.db);
        exec(cmd, stdin)
    }

    /// Runs without adding `--db`.
    fn run_bare(&self, args: &[&str]) -> Out {
        let mut cmd = self.command();
        cmd.args(args);
        exec(cmd, None)
    }

    fn sql(&self) -> Connection {
        Connection::open(&self.db).expect("open db")
    }

    fn create_org(&self, name: &str) -> Value {
        self.run(&["orgs", "create", "--name", name, "--json"])
            .json()
    }

    fn create_user(&self, email: &str, extra: &[&str]) -> Value {
        let mut args = vec!["users", "create", "--email", email, "--json"];
        args.extend_from_slice(extra);
        self.run(&args).json()
    }
}

fn exec(mut cmd: Command, stdin: Option<&str>) -> Out {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn usersvc");
    {
        let mut pipe = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            pipe.write_all(text.as_bytes()).expect("write stdin");
        }
    }
    let out = child.wait_with_output().expect("wait");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

fn keys_of(v: &Value) -> Vec<&str> {
    v.as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

fn stored_password(cli: &Cli, email: &str) -> String {
    cli.sql()
        .query_row(
            "SELECT password FROM users WHERE email_key = ?1",
            [email],
            |r| r.get(0),
        )
        .expect("user row")
}

const ORG_KEYS: [&str; 6] = [
    "id",
    "name",
    "slug",
    "logo_media_id",
    "created_at",
    "updated_at",
];
const TEAM_KEYS: [&str; 12] = [
    "id",
    "uuid",
    "organization",
    "project_id",
    "api_token",
    "name",
    "completed_snippet_onboarding",
    "has_completed_onboarding_for",
    "ingested_event",
    "is_demo",
    "timezone",
    "access_control",
];
const KEY_KEYS: [&str; 14] = [
    "id",
    "label",
    "description",
    "value",
    "mask_value",
    "created_at",
    "last_used_at",
    "last_rolled_at",
    "user_id",
    "is_legacy_hashing",
    "scopes",
    "scoped_organizations",
    "scoped_teams",
    "local_dev_value",
];

// ---------------------------------------------------------------------------------------------
// Parsing, exit codes, global flags
// ---------------------------------------------------------------------------------------------

#[test]
fn help_and_version_print_normally_and_exit_zero() {
    let cli = Cli::new();
    let help = cli.run_bare(&["--help"]);
    assert!(help.ok().contains("Usage: usersvc"));
    assert_eq!(help.stderr, "");
    let version = cli.run_bare(&["--version"]);
    assert!(version.ok().starts_with("usersvc "));
    let sub = cli.run_bare(&["users", "create", "--help"]);
    assert!(sub.ok().contains("--password-stdin"));
}

#[test]
fn usage_errors_exit_2_with_the_prefix_and_empty_stdout() {
    let cli = Cli::new();
    cli.run_bare(&[]).fails_with(2);
    cli.run_bare(&["users"]).fails_with(2);
    cli.run(&["frobnicate"]).fails_with(2);
    cli.run(&["users", "create"]).fails_with(2);
    cli.run(&[
        "members", "add", "--org", "o", "--email", "a@b.c", "--level", "boss",
    ])
    .fails_with(2);
    cli.run(&["seed", "--users", "many"]).fails_with(2);
    cli.run(&["users", "set-password", "a@example.com"])
        .fails_with(2);
    cli.run(&[
        "users",
        "create",
        "--email",
        "a@example.com",
        "--level",
        "admin",
    ])
    .fails_with(2);
    cli.run(&["serve", "--listen", "nowhere"]).fails_with(2);
    cli.run(&["serve", "--header-timeout", "3 weeks"])
        .fails_with(2);
    assert!(!cli.db.exists(), "usage errors never open the database");
}

#[test]
fn malformed_input_is_refused_before_the_database_opens() {
    let cli = Cli::new();
    cli.run(&["users", "create", "--email", "not-an-address"])
        .fails(2, "Enter a valid email address.");
    cli.run(&[
        "keys",
        "create",
        "--user",
        "a@example.com",
        "--label",
        "l",
        "--scopes",
        "user:read,team:read",
    ])
    .fails(2, "Invalid scope: team:read");
    cli.run(&[
        "keys",
        "create",
        "--user",
        "a@example.com",
        "--label",
        "l",
        "--scopes",
        " , ",
    ])
    .fails(2, "This list may not be empty.");
    let label = "x".repeat(41);
    cli.run(&[
        "keys",
        "create",
        "--user",
        "a@example.com",
        "--label",
        &label,
        "--scopes",
        "*",
    ])
    .fails(
        2,
        "label: Ensure this field has no more than 40 characters.",
    );
    cli.run(&["orgs", "create", "--name", "Acme", "--slug", "not a slug"])
        .fails_with(2);
    assert!(!cli.db.exists());
}

#[test]
fn db_and_json_work_after_the_subcommand_and_from_the_environment() {
    let cli = Cli::new();
    // Before the subcommand.
    let mut cmd = cli.command();
    cmd.arg("--db")
        .arg(&cli.db)
        .arg("--json")
        .args(["orgs", "create", "--name", "Acme"]);
    let org = exec(cmd, None).json();
    assert_eq!(org["slug"], "acme");

    // From USERSVC_DB.
    let mut cmd = cli.command();
    cmd.env("USERSVC_DB", &cli.db)
        .args(["orgs", "list", "--json"]);
    assert_eq!(exec(cmd, None).json()[0]["id"], org["id"]);

    // The flag beats the environment.
    let other = cli.dir.path().join("other.sqlite3");
    let mut cmd = cli.command();
    cmd.env("USERSVC_DB", &other)
        .args(["orgs", "list", "--json", "--db"])
        .arg(&cli.db);
    assert_eq!(exec(cmd, None).json().as_array().map(Vec::len), Some(1));
    assert!(!other.exists());
}

#[test]
fn human_output_is_not_json() {
    let cli = Cli::new();
    let text = cli
        .run(&["orgs", "create", "--name", "Acme"])
        .ok()
        .to_owned();
    assert!(text.contains("acme"), "{text}");
    assert!(serde_json::from_str::<Value>(&text).is_err());
    let list = cli.run(&["orgs", "list"]).ok().to_owned();
    assert!(list.starts_with("ID"), "{list}");
}

// ---------------------------------------------------------------------------------------------
// Migrations and schema
// ---------------------------------------------------------------------------------------------

#[test]
fn migrate_status_reports_without_changing_anything() {
    let cli = Cli::new();
    let all = json!([
        {"version": 1, "name": "init"},
        {"version": 2, "name": "sessions_2fa_email"},
        {"version": 3, "name": "key_scoping"},
        {"version": 4, "name": "member_counts"},
    ]);
    let status = cli.run(&["migrate", "--status", "--json"]).json();
    assert_eq!(status, json!({"applied": [], "pending": all}));
    assert!(!cli.db.exists(), "--status never creates or migrates");

    let applied = cli.run(&["migrate", "--json"]).json();
    assert_eq!(applied, json!({"applied": all, "pending": []}));
    assert_eq!(cli.run(&["migrate", "--status", "--json"]).json(), applied);
}

#[test]
fn a_newer_schema_is_refused_with_exit_1() {
    let cli = Cli::new();
    cli.run(&["migrate"]).ok();
    cli.sql()
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
             VALUES (999, 'future', '2030-01-01T00:00:00Z', '0')",
            [],
        )
        .expect("insert future migration");
    let message = "database schema V999 is newer than this binary";
    cli.run(&["orgs", "list"]).fails(1, message);
    cli.run(&["migrate"]).fails(1, message);
    cli.run(&["migrate", "--status", "--json"])
        .fails(1, message);
}

// ---------------------------------------------------------------------------------------------
// Organizations, teams, memberships
// ---------------------------------------------------------------------------------------------

#[test]
fn orgs_get_unique_slugs_and_the_summary_shape() {
    let cli = Cli::new();
    let org = cli.create_org("  Acme, Inc.  ");
    assert_eq!(keys_of(&org), ORG_KEYS);
    assert_eq!(org["name"], "Acme, Inc.");
    assert_eq!(org["slug"], "acme-inc");
    assert_eq!(org["logo_media_id"], Value::Null);
    assert_eq!(org["id"].as_str().map(str::len), Some(36));
    assert_eq!(cli.create_org("Acme Inc")["slug"], "acme-inc-2");
    assert_eq!(cli.create_org("ACME inc")["slug"], "acme-inc-3");

    cli.run(&["orgs", "create", "--name", "Other", "--slug", "acme-inc"])
        .fails(
            1,
            "slug: Organization with this slug already exists: \"acme-inc\"",
        );
    let custom = cli
        .run(&[
            "orgs", "create", "--name", "Other", "--slug", "my_org", "--json",
        ])
        .json();
    assert_eq!(custom["slug"], "my_org");

    let list = cli.run(&["orgs", "list", "--json"]).json();
    let slugs: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|o| o["slug"].as_str())
        .collect();
    assert_eq!(slugs, ["acme-inc", "acme-inc-2", "acme-inc-3", "my_org"]);
}

#[test]
fn teams_are_created_in_an_org_by_slug_or_uuid() {
    let cli = Cli::new();
    let acme = cli.create_org("Acme");
    let other = cli.create_org("Other");
    let web = cli
        .run(&[
            "teams", "create", "--org", "acme", "--name", "Web", "--json",
        ])
        .json();
    assert_eq!(keys_of(&web), TEAM_KEYS);
    assert_eq!(web["organization"], acme["id"]);
    assert_eq!(web["project_id"], web["id"]);
    assert_eq!(web["timezone"], "UTC");
    let token = web["api_token"].as_str().expect("token");
    assert!(token.starts_with("phc_") && token.len() == 47, "{token}");

    let other_id = other["id"].as_str().expect("uuid");
    cli.run(&[
        "teams", "create", "--org", other_id, "--name", "App", "--json",
    ])
    .json();

    let all = cli.run(&["teams", "list", "--json"]).json();
    assert_eq!(all.as_array().map(Vec::len), Some(2));
    let acme_only = cli
        .run(&["teams", "list", "--org", "acme", "--json"])
        .json();
    assert_eq!(acme_only, json!([web]));

    cli.run(&["teams", "create", "--org", "nope", "--name", "X"])
        .fails(1, "no organization matches \"nope\"");
    cli.run(&["teams", "list", "--org", "nope"])
        .fails(1, "no organization matches \"nope\"");
}

#[test]
fn members_are_added_changed_and_removed() {
    let cli = Cli::new();
    let org = cli.create_org("Acme");
    let team = cli
        .run(&[
            "teams", "create", "--org", "acme", "--name", "Web", "--json",
        ])
        .json();
    let user = cli.create_user("Alice@Example.com", &[]);

    let m = cli
        .run(&[
            "members",
            "add",
            "--org",
            "acme",
            "--email",
            "alice@example.com",
            "--json",
        ])
        .json();
    assert_eq!(
        keys_of(&m),
        ["organization", "user", "email", "level", "joined_at"]
    );
    assert_eq!(m["organization"], org["id"]);
    assert_eq!(m["user"], user["uuid"]);
    assert_eq!(m["email"], "Alice@Example.com");
    assert_eq!(m["level"], 1);

    let again = cli
        .run(&[
            "members",
            "add",
            "--org",
            "acme",
            "--email",
            "alice@example.com",
            "--level",
            "owner",
            "--json",
        ])
        .json();
    assert_eq!(again["level"], 15);
    assert_eq!(again["joined_at"], m["joined_at"]);

    // Joining made the org and its first team current.
    let shown = cli
        .run(&["users", "show", "alice@example.com", "--json"])
        .json();
    assert_eq!(shown["organization"]["id"], org["id"]);
    assert_eq!(shown["organization"]["membership_level"], 15);
    assert_eq!(shown["team"]["id"], team["id"]);

    let removed = cli
        .run(&[
            "members",
            "remove",
            "--org",
            "acme",
            "--email",
            "alice@example.com",
            "--json",
        ])
        .json();
    assert_eq!(removed["deleted"], true);
    cli.run(&[
        "members",
        "remove",
        "--org",
        "acme",
        "--email",
        "alice@example.com",
    ])
    .fails(1, "Alice@Example.com is not a member of acme");
    cli.run(&[
        "members",
        "add",
        "--org",
        "acme",
        "--email",
        "bob@example.com",
    ])
    .fails(1, "no user matches \"bob@example.com\"");
}

// ---------------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------------

#[test]
fn users_create_prints_the_me_object_with_is_active_last() {
    let cli = Cli::new();
    cli.create_org("Acme");
    cli.run(&["teams", "create", "--org", "acme", "--name", "Web"])
        .ok();
    let user = cli.create_user(
        " Alice@Example.com ",
        &[
            "--first-name",
            "Alice",
            "--last-name",
            "Liddell",
            "--staff",
            "--org",
            "acme",
            "--level",
            "admin",
        ],
    );
    let keys = keys_of(&user);
    assert_eq!(keys.first(), Some(&"date_joined"));
    assert_eq!(keys.last(), Some(&"is_active"));
    for key in [
        "uuid",
        "distinct_id",
        "organization",
        "organizations",
        "team",
        "has_password",
    ] {
        assert!(keys.contains(&key), "missing {key}");
    }
    assert_eq!(user["email"], "Alice@Example.com");
    assert_eq!(user["first_name"], "Alice");
    assert_eq!(user["last_name"], "Liddell");
    assert_eq!(user["is_staff"], true);
    assert_eq!(user["is_active"], true);
    assert_eq!(user["has_password"], false);
    assert_eq!(user["is_email_verified"], Value::Null);
    assert_eq!(user["organization"]["slug"], "acme");
    assert_eq!(user["organization"]["membership_level"], 8);
    assert_eq!(user["team"]["name"], "Web");
    assert_eq!(user["organizations"][0]["slug"], "acme");

    cli.run(&["users", "create", "--email", "ALICE@example.COM"])
        .fails(1, "user with this email address already exists.");
    cli.run(&[
        "users",
        "create",
        "--email",
        "bob@example.com",
        "--org",
        "nope",
    ])
    .fails(1, "no organization matches \"nope\"");
    let count: i64 = cli
        .sql()
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .expect("count");
    assert_eq!(count, 1, "a failed create leaves nothing behind");
}

#[test]
fn passwords_come_from_stdin_and_follow_the_rules() {
    let cli = Cli::new();
    let created = cli.run_with_stdin(
        &[
            "users",
            "create",
            "--email",
            "alice@example.com",
            "--password-stdin",
            "--json",
        ],
        Some(&format!("{STRONG}\r\nignored second line\n")),
    );
    assert_eq!(created.json()["has_password"], true);
    let hash = stored_password(&cli, "alice@example.com");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert_eq!(
        usersvc::auth::password::verify(STRONG, &hash),
        usersvc::auth::password::Verified::Yes,
        "the line ending is not part of the password"
    );

    let create = |password: &str| {
        cli.run_with_stdin(
            &[
                "users",
                "create",
                "--email",
                "bob@example.com",
                "--password-stdin",
            ],
            Some(password),
        )
    };
    create("short1\n").fails(
        1,
        "This password is too short. It must contain at least 8 characters.",
    );
    create("password\n").fails_with(1);
    create("\n").fails(1, "the password on standard input is empty");
    create("").fails(1, "the password on standard input is empty");
    create(&format!("{}\n", "Zq8!".repeat(33)))
        .fails(1, "Ensure this field has no more than 128 characters.");

    // set-password: same rules, then the new hash.
    let set = |password: &str| {
        cli.run_with_stdin(
            &[
                "users",
                "set-password",
                "alice@example.com",
                "--password-stdin",
                "--json",
            ],
            Some(password),
        )
    };
    set("abc\n").fails(
        1,
        "This password is too short. It must contain at least 8 characters.",
    );
    assert_eq!(stored_password(&cli, "alice@example.com"), hash);
    let new_password = "vT9#qL2!mZ8@wR4x";
    assert_eq!(
        set(&format!("{new_password}\n")).json()["has_password"],
        true
    );
    let new_hash = stored_password(&cli, "alice@example.com");
    assert_eq!(
        usersvc::auth::password::verify(new_password, &new_hash),
        usersvc::auth::password::Verified::Yes
    );
    cli.run_with_stdin(
        &[
            "users",
            "set-password",
            "nobody@example.com",
            "--password-stdin",
        ],
        Some(&format!("{new_password}\n")),
    )
    .fails(1, "no user matches \"nobody@example.com\"");
}

#[test]
fn users_list_includes_inactive_users_and_filters() {
    let cli = Cli::new();
    cli.create_user("alice@example.com", &["--staff"]);
    cli.create_user("bob@example.com", &[]);
    cli.run(&["users", "deactivate", "bob@example.com"]).ok();

    let all = cli.run(&["users", "list", "--json"]).json();
    let rows = all.as_array().expect("array");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["email"], "alice@example.com");
    assert_eq!(rows[1]["is_active"], false);

    let staff = cli.run(&["users", "list", "--staff", "--json"]).json();
    assert_eq!(staff.as_array().map(Vec::len), Some(1));
    assert_eq!(staff[0]["email"], "alice@example.com");

    let bob = cli
        .run(&["users", "list", "--email", "BOB@example.com", "--json"])
        .json();
    assert_eq!(bob[0]["email"], "bob@example.com");
    let none = cli
        .run(&["users", "list", "--email", "carol@example.com", "--json"])
        .json();
    assert_eq!(none, json!([]));

    let table = cli.run(&["users", "list"]).ok().to_owned();
    assert_eq!(table.lines().count(), 3, "{table}");
}

#[test]
fn users_list_matches_users_show() {
    let cli = Cli::new();
    cli.create_org("Acme");
    cli.run(&["teams", "create", "--org", "acme", "--name", "Web"])
        .ok();
    cli.create_org("Other");
    cli.create_user("alice@example.com", &["--org", "acme", "--level", "owner"]);
    cli.run(&[
        "members",
        "add",
        "--org",
        "other",
        "--email",
        "alice@example.com",
    ])
    .ok();
    cli.create_user("bob@example.com", &["--org", "other"]);
    cli.create_user("carol@example.com", &[]);
    let list = cli.run(&["users", "list", "--json"]).json();
    for user in list.as_array().expect("array") {
        let email = user["email"].as_str().expect("email");
        let shown = cli.run(&["users", "show", email, "--json"]).json();
        assert_eq!(user, &shown);
    }
}

#[test]
fn users_are_found_by_email_or_uuid_and_managed() {
    let cli = Cli::new();
    let user = cli.create_user("alice@example.com", &[]);
    let uuid = user["uuid"].as_str().expect("uuid");

    let shown = cli
        .run(&["users", "show", &uuid.to_uppercase(), "--json"])
        .json();
    assert_eq!(shown, user);
    assert!(
        cli.run(&["users", "show", "ALICE@example.com"])
            .ok()
            .contains(uuid)
    );

    let off = cli.run(&["users", "deactivate", uuid, "--json"]).json();
    assert_eq!(off["is_active"], false);
    let on = cli
        .run(&["users", "activate", "alice@example.com", "--json"])
        .json();
    assert_eq!(on["is_active"], true);
    let reset = cli
        .run(&["users", "reset-2fa", "alice@example.com", "--json"])
        .json();
    assert_eq!(reset["is_2fa_enabled"], false);
    assert_eq!(reset["uuid"], user["uuid"]);

    let deleted = cli
        .run(&["users", "delete", "alice@example.com", "--json"])
        .json();
    assert_eq!(deleted, json!({"deleted": true, "id": user["id"]}));
    for cmd in ["show", "delete", "activate", "deactivate", "reset-2fa"] {
        cli.run(&["users", cmd, "alice@example.com"])
            .fails(1, "no user matches \"alice@example.com\"");
    }
}

#[test]
fn deactivation_keeps_keys() {
    let cli = Cli::new();
    cli.create_user("alice@example.com", &[]);
    cli.run(&[
        "keys",
        "create",
        "--user",
        "alice@example.com",
        "--label",
        "ci",
        "--scopes",
        "*",
    ])
    .ok();
    cli.run(&["users", "deactivate", "alice@example.com"]).ok();
    let keys = cli.run(&["keys", "list", "--json"]).json();
    assert_eq!(keys.as_array().map(Vec::len), Some(1));
}

// ---------------------------------------------------------------------------------------------
// Personal API keys
// ---------------------------------------------------------------------------------------------

#[test]
fn keys_create_prints_only_the_key_without_json() {
    let cli = Cli::new();
    cli.create_user("alice@example.com", &[]);
    let out = cli.run(&[
        "keys",
        "create",
        "--user",
        "alice@example.com",
        "--label",
        "deploy",
        "--scopes",
        "user:read",
    ]);
    let key = out.ok().strip_suffix('\n').expect("one line");
    assert!(key.starts_with("phx_") && key.len() == 47, "{key}");
    assert!(key[4..].chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(out.stderr.starts_with("usersvc: "), "a note on stderr");

    // Only the digest is stored.
    let digest: String = cli
        .sql()
        .query_row("SELECT secure_value FROM personal_api_keys", [], |r| {
            r.get(0)
        })
        .expect("key row");
    assert_eq!(digest, usersvc::auth::api_key::digest(key));
}

#[test]
fn keys_have_the_documented_shape_and_rules() {
    let cli = Cli::new();
    let user = cli.create_user("alice@example.com", &[]);
    let created = cli
        .run(&[
            "keys",
            "create",
            "--user",
            "alice@example.com",
            "--label",
            " ci ",
            "--scopes",
            "user:read, user:write,user:read",
            "--json",
        ])
        .json();
    assert_eq!(keys_of(&created), KEY_KEYS);
    assert_eq!(created["label"], "ci");
    assert_eq!(created["scopes"], json!(["user:read", "user:write"]));
    assert_eq!(created["user_id"], user["id"]);
    assert_eq!(created["description"], Value::Null);
    let value = created["value"].as_str().expect("value shown on create");
    assert_eq!(
        created["mask_value"],
        format!("phx_...{}", &value[value.len() - 4..])
    );
    assert_eq!(created["id"].as_str().map(str::len), Some(32));

    let listed = cli
        .run(&["keys", "list", "--user", "alice@example.com", "--json"])
        .json();
    let mut expected = created.clone();
    expected["value"] = Value::Null;
    assert_eq!(listed, json!([expected]));
    assert!(!cli.run(&["keys", "list"]).ok().contains(value));

    for i in 2..=10 {
        let label = format!("k{i}");
        cli.run(&[
            "keys",
            "create",
            "--user",
            "alice@example.com",
            "--label",
            &label,
            "--scopes",
            "*",
        ])
        .ok();
    }
    cli.run(&[
        "keys",
        "create",
        "--user",
        "alice@example.com",
        "--label",
        "k11",
        "--scopes",
        "*",
    ])
    .fails(
        1,
        "You can only have 10 personal API keys. Remove an existing key before creating a new one.",
    );
    let all = cli.run(&["keys", "list", "--json"]).json();
    assert_eq!(all.as_array().map(Vec::len), Some(10));
    assert_eq!(all[0]["label"], "k10", "newest first");

    cli.run(&[
        "keys",
        "create",
        "--user",
        "bob@example.com",
        "--label",
        "x",
        "--scopes",
        "*",
    ])
    .fails(1, "no user matches \"bob@example.com\"");
    cli.run(&["keys", "list", "--user", "bob@example.com"])
        .fails(1, "no user matches \"bob@example.com\"");

    let id = created["id"].as_str().expect("id");
    let revoked = cli.run(&["keys", "revoke", id, "--json"]).json();
    assert_eq!(revoked, json!({"deleted": true, "id": id}));
    cli.run(&["keys", "revoke", id])
        .fails(1, &format!("no key matches \"{id}\""));
}

// ---------------------------------------------------------------------------------------------
// Seed, backup, check
// ---------------------------------------------------------------------------------------------

#[test]
fn seed_is_idempotent() {
    let cli = Cli::new();
    let first = cli.run(&["seed", "--users", "50", "--json"]).json();
    assert_eq!(
        keys_of(&first),
        ["organization", "team", "created", "existing"]
    );
    assert_eq!(keys_of(&first["organization"]), ORG_KEYS);
    assert_eq!(keys_of(&first["team"]), TEAM_KEYS);
    assert_eq!(first["organization"]["name"], "Example Organization");
    assert_eq!(first["organization"]["slug"], "example-organization");
    assert_eq!(first["team"]["name"], "Default project");
    assert_eq!(first["created"], 50);
    assert_eq!(first["existing"], 0);

    let second = cli.run(&["seed", "--users", "50", "--json"]).json();
    assert_eq!(second["created"], 0);
    assert_eq!(second["existing"], 50);
    assert_eq!(second["organization"], first["organization"]);
    assert_eq!(second["team"], first["team"]);

    let more = cli.run(&["seed", "--users", "60", "--json"]).json();
    assert_eq!(
        (more["created"].clone(), more["existing"].clone()),
        (json!(10), json!(50))
    );

    let user = cli
        .run(&["users", "show", "user60@example.com", "--json"])
        .json();
    assert_eq!(user["first_name"], "");
    assert_eq!(user["has_password"], false);
    assert_eq!(user["organization"]["id"], first["organization"]["id"]);
    assert_eq!(user["organization"]["member_count"], 60);
    assert_eq!(user["organizations"][0]["membership_level"], 1);
    assert_eq!(user["team"]["id"], first["team"]["id"]);
    cli.run(&["users", "show", "user61@example.com"])
        .fails_with(1);
}

#[test]
fn seed_uses_a_named_org_and_its_first_team_and_one_password() {
    let cli = Cli::new();
    cli.create_org("Demo Co");
    let team = cli
        .run(&[
            "teams", "create", "--org", "demo-co", "--name", "Main", "--json",
        ])
        .json();
    let report = cli
        .run_with_stdin(
            &[
                "seed",
                "--users",
                "3",
                "--org",
                "Demo Co",
                "--password-stdin",
                "--json",
            ],
            Some("pw\n"),
        )
        .json();
    assert_eq!(report["organization"]["slug"], "demo-co");
    assert_eq!(report["team"], team);
    let hash = stored_password(&cli, "user1@example.com");
    assert_eq!(
        hash,
        stored_password(&cli, "user3@example.com"),
        "hashed once"
    );
    assert_eq!(
        usersvc::auth::password::verify("pw", &hash),
        usersvc::auth::password::Verified::Yes
    );
    cli.run_with_stdin(&["seed", "--users", "1", "--password-stdin"], Some("\n"))
        .fails(1, "the password on standard input is empty");
}

#[test]
fn check_reports_a_clean_database() {
    let cli = Cli::new();
    cli.run(&["seed", "--users", "5"]).ok();
    assert_eq!(
        cli.run(&["check", "--json"]).json(),
        json!({"ok": true, "integrity_check": ["ok"], "foreign_key_check": []})
    );
    assert!(cli.run(&["check"]).ok().contains("ok"));

    let missing = Cli::new();
    missing.run(&["check"]).fails_with(1);
    assert!(!missing.db.exists(), "check never creates a database");
}

#[test]
fn check_fails_on_a_broken_foreign_key() {
    let cli = Cli::new();
    cli.run(&["seed", "--users", "2"]).ok();
    {
        let conn = cli.sql();
        conn.pragma_update(None, "foreign_keys", "OFF")
            .expect("pragma");
        conn.execute("DELETE FROM organizations", [])
            .expect("delete");
    }
    let out = cli.run(&["check", "--json"]);
    assert_eq!(out.code, 1);
    let report: Value = serde_json::from_str(&out.stdout).expect("the report is still printed");
    assert_eq!(report["ok"], false);
    assert_eq!(report["integrity_check"], json!(["ok"]));
    assert!(
        report["foreign_key_check"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    );
    assert!(out.stderr.starts_with("usersvc: "));
}

#[test]
fn backup_writes_a_checked_private_copy_and_refuses_to_overwrite() {
    let cli = Cli::new();
    cli.run(&["seed", "--users", "20"]).ok();
    let dest = cli.dir.path().join("backup.sqlite3");
    let dest_text = dest.to_str().expect("utf-8 path");

    let report = cli.run(&["backup", dest_text, "--json"]).json();
    let bytes = std::fs::metadata(&dest).expect("backup exists").len();
    assert_eq!(
        report,
        json!({"path": dest_text, "bytes": bytes, "integrity_check": "ok"})
    );
    let mode = std::fs::metadata(&dest).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let copy = Cli {
        dir: tempfile::tempdir().expect("dir"),
        db: dest.clone(),
    };
    assert_eq!(copy.run(&["check", "--json"]).json()["ok"], true);
    assert_eq!(
        copy.run(&["users", "list", "--json"])
            .json()
            .as_array()
            .map(Vec::len),
        Some(20)
    );

    cli.run(&["backup", dest_text]).fails(
        1,
        &format!("{dest_text} already exists; pass --force to overwrite it"),
    );
    cli.run(&["seed", "--users", "25"]).ok();
    let replaced = cli.run(&["backup", dest_text, "--force", "--json"]).json();
    assert_eq!(replaced["integrity_check"], "ok");
    assert_eq!(
        copy.run(&["users", "list", "--json"])
            .json()
            .as_array()
            .map(Vec::len),
        Some(25)
    );

    let db_text = cli.db.to_str().expect("utf-8 path");
    cli.run(&["backup", db_text, "--force"])
        .fails(1, &format!("{db_text} is the database itself"));

    assert_eq!(leftovers(cli.dir.path()), Vec::<String>::new());
    let missing = Cli::new();
    missing.run(&["backup", dest_text, "--force"]).fails_with(1);
}

/// Temporary files a backup might have left behind.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp-"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Serve and bootstrap
// ---------------------------------------------------------------------------------------------

/// Starts `serve` on a free port, returns its first stdout line and, after SIGTERM, its exit
/// code and stderr.
fn serve_once(cli: &Cli, extra: &[&str], env: &[(&str, &str)]) -> (String, i32, String) {
    let mut cmd = cli.command();
    cmd.envs(env.iter().copied())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .arg("--db")
        .arg(&cli.db)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the listening line");
    // One answered request first: the server then surely has its signal handlers installed.
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split(['"', '\n']).next())
        .expect("an address in the listening line");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .write_all(b"GET /_health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("wait");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (line, status.code().unwrap_or(-1), stderr)
}

#[test]
fn serve_bootstraps_an_empty_database_once() {
    let cli = Cli::new();
    let (line, code, stderr) = serve_once(&cli, &["--json"], &[]);
    let listening: Value = serde_json::from_str(&line).expect("JSON line");
    let url = listening["listening"].as_str().expect("url");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(code, 0, "graceful stop; stderr: {stderr}");
    let prefix = "usersvc: created admin@localhost with API key (shown once): ";
    let key = stderr
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no bootstrap line in {stderr}"));
    assert!(key.starts_with("phx_") && key.len() == 47, "{key}");

    let admin = cli
        .run(&["users", "show", "admin@localhost", "--json"])
        .json();
    assert_eq!(admin["is_staff"], true);
    assert_eq!(admin["has_password"], false);
    let keys = cli.run(&["keys", "list", "--json"]).json();
    assert_eq!(keys[0]["label"], "bootstrap");
    assert_eq!(keys[0]["scopes"], json!(["*"]));
    assert_eq!(keys[0]["user_id"], admin["id"]);
    let digest: String = cli
        .sql()
        .query_row("SELECT secure_value FROM personal_api_keys", [], |r| {
            r.get(0)
        })
        .expect("key row");
    assert_eq!(digest, usersvc::auth::api_key::digest(key));

    let (line, code, stderr) = serve_once(&cli, &[], &[]);
    assert!(line.starts_with("listening on http://127.0.0.1:"), "{line}");
    assert_eq!(code, 0);
    assert!(!stderr.contains(prefix), "no second bootstrap: {stderr}");
}

#[test]
fn serve_without_bootstrap_leaves_the_database_empty() {
    let cli = Cli::new();
    let (_, code, stderr) = serve_once(&cli, &["--no-bootstrap"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(cli.run(&["users", "list", "--json"]).json(), json!([]));

    let (_, code, stderr) = serve_once(&cli, &[], &[("USERSVC_NO_BOOTSTRAP", "true")]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(cli.run(&["users", "list", "--json"]).json(), json!([]));
}
