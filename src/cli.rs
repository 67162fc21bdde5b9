//! The command line (SPEC §1, §10.6): clap definitions, one small function per subcommand, and
//! the output rules every command shares.
//!
//! * `--db` and `--json` are global, so they work before or after the subcommand.
//! * With `--json` stdout gets exactly one JSON document; without it, lines for humans.
//! * Every failure, clap's included, is one `usersvc: <message>` on stderr with nothing on
//!   stdout: exit 2 when the input is refused before the database is opened, 1 otherwise.
//!
//! The use cases themselves live in `admin`; this file only parses, validates early, prints.

use std::io::{self, BufRead, BufWriter, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::admin;
use crate::clock::system_now;
use crate::config::{MailTransport, RateWindow, ServeConfig, default_db_path};
use crate::db::Db;
use crate::error::Error;
use crate::model::{ApiKeyOut, OrgSummary, TeamBasic, UserOut};

#[derive(Debug, Parser)]
#[command(
    name = "usersvc",
    version,
    about = "A self-contained users service: PostHog-compatible /api/users/ on one SQLite file"
)]
struct Cli {
    /// The SQLite database file [default: usersvc.sqlite3 in the platform data directory]
    #[arg(long, global = true, env = "USERSVC_DB", value_name = "PATH")]
    db: Option<PathBuf>,

    /// Print exactly one JSON document on stdout
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the `serve` variant costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run migrations, then serve HTTP until SIGINT or SIGTERM
    Serve(ServeArgs),
    /// Apply pending migrations, or list applied and pending ones
    Migrate {
        /// Only report; change nothing
        #[arg(long)]
        status: bool,
    },
    /// Organizations
    #[command(subcommand)]
    Orgs(OrgsCommand),
    /// Teams (projects)
    #[command(subcommand)]
    Teams(TeamsCommand),
    /// Organization memberships
    #[command(subcommand)]
    Members(MembersCommand),
    /// Users (USER is an email address or a uuid)
    #[command(subcommand)]
    Users(UsersCommand),
    /// Personal API keys
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Development data: an org, a team and users user1..userN@example.com
    Seed {
        /// How many users
        #[arg(long, value_name = "N")]
        users: u64,
        /// Organization name [default: Example Organization]
        #[arg(long, value_name = "NAME")]
        org: Option<String>,
        /// Read one password for every new user from standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// Write a consistent copy of the database while the server runs
    Backup {
        /// Where to write the copy
        path: PathBuf,
        /// Replace an existing file
        #[arg(long)]
        force: bool,
    },
    /// Run PRAGMA integrity_check and foreign_key_check
    Check,
    /// Print a shell completion script (for packaging; see packaging/build-deb.sh)
    #[command(hide = true)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page, or write one page per command into DIR (for packaging)
    #[command(hide = true)]
    Man {
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port)
    #[arg(
        long,
        env = "USERSVC_LISTEN",
        default_value = "127.0.0.1:8000",
        value_name = "ADDR",
        value_parser = parse_listen
    )]
    listen: SocketAddr,
    /// Base of absolute URLs, e.g. https://users.example.com
    #[arg(long, env = "USERSVC_SITE_URL", value_name = "URL", value_parser = parse_site_url)]
    site_url: Option<String>,
    /// Do not create admin@localhost on an empty database
    #[arg(long, env = "USERSVC_NO_BOOTSTRAP", value_parser = BoolishValueParser::new())]
    no_bootstrap: bool,
    /// Largest request body accepted
    #[arg(
        long,
        env = "USERSVC_MAX_BODY_BYTES",
        default_value_t = 1_048_576,
        value_name = "BYTES"
    )]
    max_body_bytes: u64,
    /// Time allowed to read a request head, and to keep an idle connection
    #[arg(
        long,
        env = "USERSVC_HEADER_TIMEOUT",
        default_value = "10s",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    header_timeout: Duration,
    /// Time in-flight requests get to finish after SIGINT/SIGTERM
    #[arg(
        long,
        env = "USERSVC_SHUTDOWN_TIMEOUT",
        default_value = "10s",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    shutdown_timeout: Duration,
    /// Write every outgoing message as an .eml file into DIR (turns email on)
    #[arg(
        long,
        env = "USERSVC_MAIL_DIR",
        value_name = "DIR",
        conflicts_with = "smtp_url"
    )]
    mail_dir: Option<PathBuf>,
    /// Send mail through smtp[s]://user@host:port (turns email on). A password in the URL is
    /// accepted only from the USERSVC_SMTP_URL environment variable, never from argv.
    #[arg(long, value_name = "URL")]
    smtp_url: Option<String>,
    /// File holding the SMTP password
    #[arg(long, env = "USERSVC_SMTP_PASSWORD_FILE", value_name = "FILE")]
    smtp_password_file: Option<PathBuf>,
    /// From: address of outgoing mail (default usersvc@<site-url host>)
    #[arg(long, env = "USERSVC_MAIL_FROM", value_name = "ADDRESS")]
    mail_from: Option<String>,
    /// Sessions end after this long without a request
    #[arg(
        long,
        env = "USERSVC_SESSION_IDLE_TIMEOUT",
        default_value = "14d",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    session_idle_timeout: Duration,
    /// Sessions older than this must log in again for sensitive actions
    #[arg(
        long,
        env = "USERSVC_REAUTH_AFTER",
        default_value = "2h",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    reauth_after: Duration,
    /// How long a login waits for its second factor
    #[arg(
        long,
        env = "USERSVC_PENDING_LOGIN_TTL",
        default_value = "10m",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    pending_login_ttl: Duration,
    /// How long a started 2FA setup can be confirmed
    #[arg(
        long,
        env = "USERSVC_TOTP_SETUP_TTL",
        default_value = "10m",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    totp_setup_ttl: Duration,
    /// Lifetime of emailed verification and reset tokens
    #[arg(
        long,
        env = "USERSVC_TOKEN_TTL",
        default_value = "24h",
        value_name = "DURATION",
        value_parser = parse_duration
    )]
    token_ttl: Duration,
    /// Browser origin (scheme://host[:port]) allowed to call the API with credentials;
    /// repeatable
    #[arg(
        long = "cors-origin",
        env = "USERSVC_CORS_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ',',
        value_parser = parse_origin
    )]
    cors_origins: Vec<String>,
    /// Per-key request limits, e.g. 480/min,4800/hour [default: off]
    #[arg(
        long,
        env = "USERSVC_KEY_RATE_LIMIT",
        value_name = "N/UNIT",
        value_delimiter = ',',
        value_parser = parse_rate_window
    )]
    key_rate_limit: Vec<RateWindow>,
}

#[derive(Debug, Subcommand)]
enum OrgsCommand {
    /// Create an organization
    Create {
        #[arg(long)]
        name: String,
        /// Derived from the name when absent
        #[arg(long)]
        slug: Option<String>,
    },
    /// List organizations
    List,
}

#[derive(Debug, Subcommand)]
enum TeamsCommand {
    /// Create a team in ORG (uuid or slug)
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
    },
    /// List teams
    List {
        #[arg(long)]
        org: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum MembersCommand {
    /// Add a member, or change the level of one
    Add {
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
        #[arg(long, value_enum, default_value_t = Level::Member)]
        level: Level,
    },
    /// Remove a member
    Remove {
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
    },
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Create a user
    Create {
        #[arg(long)]
        email: String,
        /// Read the password from standard input (without it the user has no usable password)
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        first_name: Option<String>,
        #[arg(long)]
        last_name: Option<String>,
        #[arg(long)]
        staff: bool,
        /// Organization (uuid or slug) to join; it becomes the user's current one
        #[arg(long)]
        org: Option<String>,
        #[arg(long, value_enum, requires = "org", default_value_t = Level::Member)]
        level: Level,
    },
    /// List users, inactive ones included
    List {
        #[arg(long)]
        email: Option<String>,
        /// Only staff users
        #[arg(long)]
        staff: bool,
    },
    /// Show a user
    Show { user: String },
    /// Set a user's password, read from standard input
    SetPassword {
        user: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Deactivate a user (ends its sessions, keeps its keys)
    Deactivate { user: String },
    /// Activate a user
    Activate { user: String },
    /// Delete a user and everything it owns
    Delete { user: String },
    /// Remove a user's TOTP devices and backup codes
    #[command(name = "reset-2fa")]
    Reset2fa { user: String },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a personal API key; its value is shown only this once
    Create {
        #[arg(long)]
        user: String,
        #[arg(long)]
        label: String,
        /// Comma-separated: user:read, user:write or *
        #[arg(long)]
        scopes: String,
    },
    /// List keys (never their values)
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Delete a key
    Revoke {
        #[arg(value_name = "KEY_ID")]
        id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Level {
    Member,
    Admin,
    Owner,
}

impl Level {
    fn value(self) -> i64 {
        match self {
            Level::Member => admin::LEVEL_MEMBER,
            Level::Admin => admin::LEVEL_ADMIN,
            Level::Owner => admin::LEVEL_OWNER,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Entry point and failures
// ---------------------------------------------------------------------------------------------

/// Why a command stopped: the message for stderr and the exit code.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// Input refused before the database was opened: exit 2.
    fn usage(e: Error) -> Self {
        Failure {
            code: 2,
            message: message_of(&e),
        }
    }

    fn new(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::new(message_of(&e))
    }
}

/// The text a CLI user needs: a validation error's detail, an internal error's cause (this is
/// the operator's own machine, so there is nothing to hide), otherwise the error itself.
fn message_of(e: &Error) -> String {
    match e {
        Error::Validation { detail, .. } => detail.clone(),
        Error::Internal(cause) => cause.clone(),
        other => other.to_string(),
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_failure(&e),
    };
    match run(cli) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("usersvc: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// `--help` and `--version` print normally; every other clap error becomes `usersvc: …`, exit 2.
fn clap_failure(e: &clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprintln!(
                "usersvc: a subcommand is required\n\n{}",
                e.render().to_string().trim_end()
            );
            ExitCode::from(2)
        }
        _ => {
            let text = e.render().to_string();
            let text = text.trim_end();
            eprintln!("usersvc: {}", text.strip_prefix("error: ").unwrap_or(text));
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let (db, json) = (cli.db, cli.json);
    match cli.command {
        Command::Serve(args) => serve(db, json, args),
        Command::Migrate { status } => migrate(db, json, status),
        Command::Orgs(cmd) => orgs(db, json, cmd),
        Command::Teams(cmd) => teams(db, json, cmd),
        Command::Members(cmd) => members(db, json, cmd),
        Command::Users(cmd) => users(db, json, cmd),
        Command::Keys(cmd) => keys(db, json, cmd),
        Command::Seed {
            users,
            org,
            password_stdin,
        } => seed(db, json, users, org, password_stdin),
        Command::Backup { path, force } => backup(db, json, path, force),
        Command::Check => check(db, json),
        Command::Completions { shell } => completions(shell),
        Command::Man { out_dir } => man_pages(out_dir),
    }
}

fn db_path(db: Option<PathBuf>) -> Result<PathBuf, Failure> {
    match db {
        Some(path) => Ok(path),
        None => Ok(default_db_path()?),
    }
}

/// Opens the database, running pending migrations first.
fn open(db: Option<PathBuf>) -> Result<Db, Failure> {
    Ok(Db::open(&db_path(db)?)?)
}

// ---------------------------------------------------------------------------------------------
// Subcommands
// ---------------------------------------------------------------------------------------------

fn serve(db: Option<PathBuf>, json: bool, args: ServeArgs) -> Result<ExitCode, Failure> {
    let config = ServeConfig {
        db: db_path(db)?,
        listen: args.listen,
        site_url: args.site_url,
        no_bootstrap: args.no_bootstrap,
        max_body_bytes: args.max_body_bytes,
        header_timeout: args.header_timeout,
        shutdown_timeout: args.shutdown_timeout,
        json,
        mail: mail_transport(args.mail_dir, args.smtp_url, args.smtp_password_file)?,
        mail_from: args.mail_from,
        session_idle_timeout: args.session_idle_timeout,
        reauth_after: args.reauth_after,
        pending_login_ttl: args.pending_login_ttl,
        totp_setup_ttl: args.totp_setup_ttl,
        token_ttl: args.token_ttl,
        cors_origins: args.cors_origins,
        key_rate_limit: (!args.key_rate_limit.is_empty()).then_some(args.key_rate_limit),
    };
    crate::server::serve(config)?;
    Ok(ExitCode::SUCCESS)
}

/// Email is configured when a mail directory or an SMTP URL is given. The SMTP URL comes from
/// `--smtp-url` (which must carry no password: argv is visible to every user of the machine)
/// or from `USERSVC_SMTP_URL`; the password from that variable's URL or from a file.
fn mail_transport(
    dir: Option<PathBuf>,
    flag_url: Option<String>,
    password_file: Option<PathBuf>,
) -> Result<Option<MailTransport>, Failure> {
    if let Some(dir) = dir {
        return Ok(Some(MailTransport::Dir(dir)));
    }
    if flag_url.as_deref().is_some_and(smtp_url_has_password) {
        return Err(Failure {
            code: 2,
            message: "--smtp-url must not contain a password; use USERSVC_SMTP_URL or --smtp-password-file".into(),
        });
    }
    let Some(url) = flag_url.or_else(|| std::env::var("USERSVC_SMTP_URL").ok()) else {
        return Ok(None);
    };
    let password = match password_file {
        Some(path) => Some(
            std::fs::read_to_string(&path)
                .map_err(|e| Failure::new(format!("cannot read {}: {e}", path.display())))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        ),
        None => None,
    };
    Ok(Some(MailTransport::Smtp { url, password }))
}

/// `smtp://user:secret@host` carries a password in its userinfo part.
fn smtp_url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

fn migrate(db: Option<PathBuf>, json: bool, status_only: bool) -> Result<ExitCode, Failure> {
    let path = db_path(db)?;
    let report = if status_only {
        admin::migration_status(&path)?
    } else {
        admin::migrate(&path)?
    };
    emit(json, &report, |r| {
        let line = |state: &str, list: &[admin::MigrationOut]| {
            if list.is_empty() {
                format!("{state}: none\n")
            } else {
                list.iter()
                    .map(|m| format!("{state}: V{} {}\n", m.version, m.name))
                    .collect()
            }
        };
        line("applied", &r.applied) + &line("pending", &r.pending)
    })
}

fn orgs(db: Option<PathBuf>, json: bool, cmd: OrgsCommand) -> Result<ExitCode, Failure> {
    match cmd {
        OrgsCommand::Create { name, slug } => {
            admin::validate_org(&name, slug.as_deref()).map_err(Failure::usage)?;
            let db = open(db)?;
            let org = admin::create_org(&db, &name, slug.as_deref(), system_now())?;
            emit(json, &OrgSummary::from(&org), |o| {
                format!(
                    "created organization {} (slug {}, id {})\n",
                    o.name, o.slug, o.id
                )
            })
        }
        OrgsCommand::List => {
            let db = open(db)?;
            let list: Vec<OrgSummary> = admin::list_orgs(&db)?
                .iter()
                .map(OrgSummary::from)
                .collect();
            emit(json, &list, |list| {
                let rows = list
                    .iter()
                    .map(|o| vec![o.id.clone(), o.slug.clone(), o.name.clone()])
                    .collect();
                table(&["ID", "SLUG", "NAME"], rows, "no organizations")
            })
        }
    }
}

fn teams(db: Option<PathBuf>, json: bool, cmd: TeamsCommand) -> Result<ExitCode, Failure> {
    match cmd {
        TeamsCommand::Create { org, name } => {
            admin::validate_team_name(&name).map_err(Failure::usage)?;
            let db = open(db)?;
            let team = admin::create_team(&db, &org, &name, system_now())?;
            emit(json, &team, |t| {
                format!(
                    "created team {} (id {}, api_token {})\n",
                    t.name, t.id, t.api_token
                )
            })
        }
        TeamsCommand::List { org } => {
            let db = open(db)?;
            let list = admin::list_teams(&db, org.as_deref())?;
            emit(json, &list, |list| team_table(list))
        }
    }
}

fn team_table(list: &[TeamBasic]) -> String {
    let rows = list
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.name.clone(),
                t.organization.clone(),
                t.api_token.clone(),
            ]
        })
        .collect();
    table(
        &["ID", "NAME", "ORGANIZATION", "API_TOKEN"],
        rows,
        "no teams",
    )
}

fn members(db: Option<PathBuf>, json: bool, cmd: MembersCommand) -> Result<ExitCode, Failure> {
    match cmd {
        MembersCommand::Add { org, email, level } => {
            let db = open(db)?;
            let m = admin::add_member(&db, &org, &email, level.value(), system_now())?;
            emit(json, &m, |m| {
                format!(
                    "{} is {} of {} (joined {})\n",
                    m.email,
                    level_name(m.level),
                    org,
                    m.joined_at
                )
            })
        }
        MembersCommand::Remove { org, email } => {
            let db = open(db)?;
            let removed = admin::remove_member(&db, &org, &email)?;
            emit(json, &removed, |r| {
                format!("removed {} from {}\n", r.email, org)
            })
        }
    }
}

fn users(db: Option<PathBuf>, json: bool, cmd: UsersCommand) -> Result<ExitCode, Failure> {
    match cmd {
        UsersCommand::Create {
            email,
            password_stdin,
            first_name,
            last_name,
            staff,
            org,
            level,
        } => {
            let input = admin::NewUserInput {
                email,
                first_name: first_name.unwrap_or_default(),
                last_name: last_name.unwrap_or_default(),
                is_staff: staff,
                org,
                level: level.value(),
            };
            admin::validate_new_user(&input).map_err(Failure::usage)?;
            let password = if password_stdin {
                let password = read_password()?;
                admin::check_password(&password)?;
                Some(password)
            } else {
                None
            };
            let db = open(db)?;
            let user = admin::create_user(&db, &input, password.as_deref(), system_now())?;
            emit_user(json, "created", &user)
        }
        UsersCommand::List { email, staff } => {
            let db = open(db)?;
            list_users(&db, json, email.as_deref(), staff)
        }
        UsersCommand::Show { user } => {
            let db = open(db)?;
            let user = admin::show_user(&db, &user)?;
            emit(json, &user, describe_user)
        }
        UsersCommand::SetPassword { user, .. } => {
            let password = read_password()?;
            let db = open(db)?;
            let user = admin::set_password(&db, &user, &password)?;
            emit_user(json, "set the password of", &user)
        }
        UsersCommand::Deactivate { user } => {
            let db = open(db)?;
            let user = admin::set_active(&db, &user, false)?;
            emit_user(json, "deactivated", &user)
        }
        UsersCommand::Activate { user } => {
            let db = open(db)?;
            let user = admin::set_active(&db, &user, true)?;
            emit_user(json, "activated", &user)
        }
        UsersCommand::Delete { user } => {
            let db = open(db)?;
            let id = admin::delete_user(&db, &user)?;
            let deleted = serde_json::json!({"deleted": true, "id": id});
            emit(json, &deleted, |_| {
                format!("deleted user {user} (id {id})\n")
            })
        }
        UsersCommand::Reset2fa { user } => {
            let db = open(db)?;
            let user = admin::reset_2fa(&db, &user)?;
            emit_user(json, "reset two-factor authentication of", &user)
        }
    }
}

/// Streams `users list`: the JSON array is written user by user, so a seeded million users do
/// not have to fit in memory as JSON first. The `[` goes out with the first user, so a failure
/// before it leaves stdout empty.
fn list_users(db: &Db, json: bool, email: Option<&str>, staff: bool) -> Result<ExitCode, Failure> {
    if json {
        let mut out = BufWriter::new(io::stdout().lock());
        let mut first = true;
        admin::list_users(db, email, staff, |user| {
            out.write_all(if first { b"[" } else { b"," })?;
            first = false;
            serde_json::to_writer(&mut out, &user).map_err(Error::internal)
        })?;
        let end: &[u8] = if first { b"[]\n" } else { b"]\n" };
        out.write_all(end)
            .and_then(|()| out.flush())
            .map_err(output_failure)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = Vec::new();
    admin::list_users(db, email, staff, |u| {
        rows.push(vec![
            u.id.to_string(),
            u.email.clone(),
            full_name(&u),
            yes_no(u.is_staff).to_owned(),
            yes_no(u.is_active.unwrap_or(true)).to_owned(),
            u.uuid.clone(),
        ]);
        Ok(())
    })?;
    write_stdout(&table(
        &["ID", "EMAIL", "NAME", "STAFF", "ACTIVE", "UUID"],
        rows,
        "no users",
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn keys(db: Option<PathBuf>, json: bool, cmd: KeysCommand) -> Result<ExitCode, Failure> {
    match cmd {
        KeysCommand::Create {
            user,
            label,
            scopes,
        } => {
            let scopes = admin::parse_scopes(&scopes).map_err(Failure::usage)?;
            admin::validate_key_label(&label).map_err(Failure::usage)?;
            let db = open(db)?;
            let key = admin::create_key(&db, &user, &label, scopes, system_now())?;
            if json {
                return emit(true, &key, |_| String::new());
            }
            // Only the key on stdout, so `KEY=$(usersvc keys create …)` works.
            write_stdout(&format!("{}\n", key.value.as_deref().unwrap_or_default()))?;
            eprintln!(
                "usersvc: created key {} ({}, scopes {}) for {user}; its value is shown only this once",
                key.id,
                key.label,
                key.scopes.join(",")
            );
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::List { user } => {
            let db = open(db)?;
            let list = admin::list_keys(&db, user.as_deref())?;
            emit(json, &list, |list| key_table(list))
        }
        KeysCommand::Revoke { id } => {
            let db = open(db)?;
            admin::revoke_key(&db, &id)?;
            let deleted = serde_json::json!({"deleted": true, "id": id});
            emit(json, &deleted, |_| format!("revoked key {id}\n"))
        }
    }
}

fn key_table(list: &[ApiKeyOut]) -> String {
    let rows = list
        .iter()
        .map(|k| {
            vec![
                k.id.clone(),
                k.label.clone(),
                k.scopes.join(","),
                k.mask_value.clone(),
                k.user_id.to_string(),
                k.created_at.clone(),
                k.last_used_at.clone().unwrap_or_else(|| "never".into()),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "LABEL",
            "SCOPES",
            "MASK",
            "USER",
            "CREATED",
            "LAST_USED",
        ],
        rows,
        "no keys",
    )
}

fn seed(
    db: Option<PathBuf>,
    json: bool,
    n: u64,
    org: Option<String>,
    password_stdin: bool,
) -> Result<ExitCode, Failure> {
    if let Some(org) = &org {
        admin::validate_org(org, None).map_err(Failure::usage)?;
    }
    // Development data only needs a non-empty password; the strength rules do not apply.
    let password = if password_stdin {
        Some(read_password()?)
    } else {
        None
    };
    let db = open(db)?;
    let report = admin::seed(&db, n, org.as_deref(), password.as_deref(), system_now())?;
    emit(json, &report, |r| {
        format!(
            "organization {} ({}), team {} (id {}): {} users created, {} already existed\n",
            r.organization.name, r.organization.slug, r.team.name, r.team.id, r.created, r.existing
        )
    })
}

fn backup(
    db: Option<PathBuf>,
    json: bool,
    dest: PathBuf,
    force: bool,
) -> Result<ExitCode, Failure> {
    let report = admin::backup(&db_path(db)?, &dest, force)?;
    emit(json, &report, |r| {
        format!("wrote {} ({} bytes, integrity check ok)\n", r.path, r.bytes)
    })
}

fn check(db: Option<PathBuf>, json: bool) -> Result<ExitCode, Failure> {
    let report = admin::check(&db_path(db)?)?;
    emit(json, &report, |r| {
        let mut text = format!("integrity_check: {}\n", r.integrity_check.join("; "));
        if r.foreign_key_check.is_empty() {
            text.push_str("foreign_key_check: ok\n");
        }
        for p in &r.foreign_key_check {
            text.push_str(&format!(
                "foreign_key_check: {} row {} refers to a missing {} row (constraint {})\n",
                p.table,
                p.rowid.map_or_else(|| "?".to_owned(), |id| id.to_string()),
                p.parent,
                p.fkid
            ));
        }
        text
    })?;
    if report.ok {
        Ok(ExitCode::SUCCESS)
    } else {
        // The report is the output; the exit code tells scripts it is not clean.
        eprintln!("usersvc: the database check found problems");
        Ok(ExitCode::from(1))
    }
}

/// `usersvc completions SHELL` (hidden): the completion script, generated from the clap
/// definitions, on stdout.
fn completions(shell: clap_complete::Shell) -> Result<ExitCode, Failure> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "usersvc", &mut script);
    write_stdout_bytes(&script)?;
    Ok(ExitCode::SUCCESS)
}

/// `usersvc man [--out-dir DIR]` (hidden): usersvc(1) on stdout, or usersvc.1 and a
/// usersvc-<command>.1 page for every command written into DIR.
fn man_pages(out_dir: Option<PathBuf>) -> Result<ExitCode, Failure> {
    // No page for clap's `help` subcommand, so usersvc(1) does not point at a missing one.
    let cmd = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    match out_dir {
        Some(dir) => clap_mangen::generate_to(cmd, &dir).map_err(|e| {
            Failure::new(format!("cannot write man pages to {}: {e}", dir.display()))
        })?,
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .map_err(Error::internal)?;
            write_stdout_bytes(&page)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_stdout_bytes(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(output_failure)
}

// ---------------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------------

/// `--password-stdin`: standard input up to the first `\n`, without it and one `\r` before it.
fn read_password() -> Result<String, Failure> {
    let mut line = Vec::new();
    io::stdin()
        .lock()
        .read_until(b'\n', &mut line)
        .map_err(|e| Failure::new(format!("cannot read the password from standard input: {e}")))?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    let password = String::from_utf8(line)
        .map_err(|_| Failure::new("the password on standard input is not valid UTF-8"))?;
    if password.is_empty() {
        return Err(Failure::new("the password on standard input is empty"));
    }
    Ok(password)
}

/// `HOST:PORT`; a name is resolved (e.g. `localhost:8000`).
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("invalid address \"{text}\": expected HOST:PORT"))
}

/// An `http://` or `https://` URL, kept without its trailing `/`.
fn parse_site_url(text: &str) -> Result<String, String> {
    let url = text.trim().trim_end_matches('/');
    let host = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match host {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => Ok(url.to_owned()),
        _ => Err(format!(
            "invalid URL \"{text}\": expected http://HOST or https://HOST"
        )),
    }
}

/// A whole number with an optional unit: `ms`, `s` (the default), `m`, `h` or `d`, e.g.
/// `10s`, `5m`, `2h`, `14d`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration \"{text}\": expected e.g. 10s, 5m, 2h or 14d");
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    let seconds_per_unit = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(invalid()),
    };
    n.checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(invalid)
}

/// A browser origin as it appears in the `Origin` header: `http[s]://host[:port]`, lowercased,
/// without a path. A trailing `/` is forgiven since people copy origins from the address bar.
fn parse_origin(text: &str) -> Result<String, String> {
    let origin = text.trim().trim_end_matches('/').to_ascii_lowercase();
    let host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match host {
        Some(host)
            if !host.is_empty()
                && !host.contains(|c: char| c.is_whitespace() || "/?#@*".contains(c)) =>
        {
            Ok(origin)
        }
        _ => Err(format!(
            "invalid origin \"{text}\": expected http[s]://HOST[:PORT], e.g. https://app.example.com"
        )),
    }
}

/// One `N/UNIT` window of `--key-rate-limit`: N ≥ 1 requests per `sec`, `min`, `hour` or `day`
/// (also `s`, `m`, `h`, `d`, `second`, `minute`).
fn parse_rate_window(text: &str) -> Result<RateWindow, String> {
    let invalid =
        || format!("invalid rate \"{text}\": expected N/UNIT such as 480/min or 4800/hour");
    let (count, unit) = text.trim().split_once('/').ok_or_else(invalid)?;
    let limit: usize = count.trim().parse().map_err(|_| invalid())?;
    let seconds = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        "d" | "day" => 86_400,
        _ => return Err(invalid()),
    };
    if limit == 0 {
        return Err(invalid());
    }
    Ok(RateWindow {
        limit,
        window: Duration::from_secs(seconds),
    })
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

/// Prints `value` as one JSON document with `--json`, else the text `human` makes of it.
fn emit<T: Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce(&T) -> String,
) -> Result<ExitCode, Failure> {
    let text = if json {
        let mut doc = serde_json::to_string(value).map_err(Error::internal)?;
        doc.push('\n');
        doc
    } else {
        human(value)
    };
    write_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn write_stdout(text: &str) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(output_failure)
}

fn output_failure(e: io::Error) -> Failure {
    Failure::new(format!("cannot write to standard output: {e}"))
}

fn emit_user(json: bool, verb: &str, user: &UserOut) -> Result<ExitCode, Failure> {
    emit(json, user, |u| {
        format!("{verb} {}\n{}", u.email, describe_user(u))
    })
}

/// A user as aligned `key  value` lines.
fn describe_user(u: &UserOut) -> String {
    let organizations: Vec<String> = u
        .organizations
        .iter()
        .map(|o| format!("{} ({})", o.slug, level_name(o.membership_level)))
        .collect();
    let pairs = [
        ("email", u.email.clone()),
        ("uuid", u.uuid.clone()),
        ("id", u.id.to_string()),
        ("name", full_name(u)),
        ("staff", yes_no(u.is_staff).to_owned()),
        ("active", yes_no(u.is_active.unwrap_or(true)).to_owned()),
        (
            "password",
            if u.has_password { "set" } else { "not set" }.to_owned(),
        ),
        (
            "2fa",
            if u.is_2fa_enabled { "on" } else { "off" }.to_owned(),
        ),
        (
            "organization",
            u.organization
                .as_ref()
                .map_or_else(|| "-".to_owned(), |o| format!("{} ({})", o.name, o.slug)),
        ),
        (
            "team",
            u.team
                .as_ref()
                .map_or_else(|| "-".to_owned(), |t| format!("{} (id {})", t.name, t.id)),
        ),
        (
            "organizations",
            if organizations.is_empty() {
                "-".to_owned()
            } else {
                organizations.join(", ")
            },
        ),
        ("joined", u.date_joined.clone()),
    ];
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("  {k:<width$}  {v}\n"))
        .collect()
}

fn full_name(u: &UserOut) -> String {
    let name = format!("{} {}", u.first_name, u.last_name);
    let name = name.trim();
    if name.is_empty() {
        "-".to_owned()
    } else {
        name.to_owned()
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn level_name(level: i64) -> &'static str {
    match level {
        admin::LEVEL_OWNER => "owner",
        admin::LEVEL_ADMIN => "admin",
        _ => "member",
    }
}

/// Rows under a header, columns padded to their widest cell; `empty` when there are no rows.
fn table(header: &[&str], rows: Vec<Vec<String>>, empty: &str) -> String {
    if rows.is_empty() {
        return format!("{empty}\n");
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("14d"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1.5h").is_err());
        assert!(parse_duration("3w").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn rate_windows_parse_and_refuse_garbage() {
        let window = |limit, secs| {
            Ok(RateWindow {
                limit,
                window: Duration::from_secs(secs),
            })
        };
        assert_eq!(parse_rate_window("480/min"), window(480, 60));
        assert_eq!(parse_rate_window(" 4800/hour "), window(4800, 3600));
        assert_eq!(parse_rate_window("2/s"), window(2, 1));
        assert_eq!(parse_rate_window("10/day"), window(10, 86_400));
        for bad in [
            "", "480", "/min", "0/min", "-1/min", "1.5/min", "480/week", "x/min",
        ] {
            assert!(parse_rate_window(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_are_normalised_and_checked() {
        assert_eq!(
            parse_origin("https://App.example.com/"),
            Ok("https://app.example.com".to_owned())
        );
        assert_eq!(
            parse_origin("http://localhost:3000"),
            Ok("http://localhost:3000".to_owned())
        );
        for bad in [
            "*",
            "null",
            "app.example.com",
            "https://",
            "https://a.com/path",
            "ftp://a",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn site_url_loses_trailing_slash() {
        assert_eq!(
            parse_site_url("https://users.example.com/"),
            Ok("https://users.example.com".to_owned())
        );
        assert!(parse_site_url("users.example.com").is_err());
        assert!(parse_site_url("http://").is_err());
    }

    #[test]
    fn tables_align_columns() {
        let text = table(
            &["ID", "NAME"],
            vec![vec!["1".into(), "a".into()], vec!["100".into(), "b".into()]],
            "none",
        );
        assert_eq!(text, "ID   NAME\n1    a\n100  b\n");
        assert_eq!(table(&["ID"], Vec::new(), "none"), "none\n");
    }

    #[test]
    fn clap_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
