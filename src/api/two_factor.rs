//! 2FA with TOTP (SPEC §4.1, §10.5; reference §5.7, §6): setup on the caller's session,
//! confirmation, status, backup codes, disabling, and the second-factor check of a login.
//!
//! Every check that must not race (consuming the pending setup secret, accepting a TOTP step,
//! using a backup code) happens inside one write on the single writer, so of two concurrent
//! requests with the same code exactly one succeeds. Argon2 work for backup codes runs before
//! or between writes, never inside one, so it cannot stall the writer.

use hyper::{Response, StatusCode};
use serde_json::{Map, Value, json};

use super::{Caller, Target};
use crate::app::App;
use crate::auth::{password, totp};
use crate::db::{sessions, two_factor};
use crate::error::{Error, Result};
use crate::http::body::{self, Body};
use crate::http::micros;
use crate::mail::messages;
use crate::metrics::TwoFactorOutcome;

/// Backup codes per batch (as upstream).
const BACKUP_CODE_COUNT: usize = 10;
/// Random bytes per backup code: 5 bytes are exactly 8 base32 characters.
const BACKUP_CODE_BYTES: usize = 5;
const BACKUP_CODE_LEN: usize = 8;

/// Which second factor completed a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    Totp,
    BackupCode,
}

/// True while the user has a confirmed TOTP device.
pub fn is_enabled(conn: &rusqlite::Connection, user_id: i64) -> Result<bool> {
    two_factor::has_device(conn, user_id)
}

fn setup_expired() -> Error {
    Error::non_field(
        "setup_expired",
        "2FA setup session expired. Please start setup again.",
    )
}

fn token_invalid() -> Error {
    Error::non_field("token_invalid", "Token is not valid")
}

/// The id of the caller's session; these routes are session-only, so a missing session means
/// the router let something through it should not have.
fn session_id(caller: &Caller) -> Result<i64> {
    caller
        .session_row()
        .map(|s| s.id)
        .ok_or_else(|| Error::internal("2FA route reached without a session"))
}

fn decode_secret(secret_hex: &str) -> Result<Vec<u8>> {
    hex::decode(secret_hex).map_err(Error::internal)
}

/// `GET /api/users/{x}/two_factor_start_setup/`: a new pending secret on the caller's session,
/// replacing any earlier one.
pub async fn start_setup(app: &App, caller: &Caller) -> Result<Response<Body>> {
    let session = session_id(caller)?;
    let secret = totp::new_secret();
    let secret_hex = hex::encode(secret);
    let expires_at = app.clock.now() + micros(app.config.totp_setup_ttl);
    app.db
        .write(move |conn| sessions::set_totp_setup(conn, session, &secret_hex, expires_at))
        .await?;
    let secret_base32 = totp::base32(&secret);
    let otpauth_url = totp::otpauth_url(&caller.user.email, &secret_base32);
    body::json(
        StatusCode::OK,
        &json!({"success": true, "secret": secret_base32, "otpauth_url": otpauth_url}),
    )
}

/// `POST /api/users/{x}/two_factor_validate/ {token}`: confirms the pending secret and makes it
/// the user's device.
pub async fn validate(
    app: &App,
    caller: &Caller,
    body: Map<String, Value>,
) -> Result<Response<Body>> {
    let session = session_id(caller)?;
    let user_id = caller.user.id;
    let token = body.get("token").and_then(totp::parse_token);
    let now = app.clock.now();
    // Reading, checking and consuming the secret in one write: a request that loses a race
    // finds the secret already gone and gets `setup_expired`. A wrong code returns before
    // anything changes, so the user can try again.
    app.db
        .write(move |conn| {
            let secret_hex = sessions::totp_setup(conn, session, now)?.ok_or_else(setup_expired)?;
            let token = token.ok_or_else(token_invalid)?;
            let secret = decode_secret(&secret_hex)?;
            let step = totp::matching_step(&secret, token, now, -1).ok_or_else(token_invalid)?;
            sessions::clear_totp_setup(conn, session)?;
            // Recording the step makes the same code useless at the next login.
            two_factor::put_device(conn, user_id, &secret_hex, step, now)?;
            // Whoever else held a session for this account did not pass the new second factor.
            sessions::delete_for_user(conn, user_id, Some(session))
        })
        .await
        .inspect_err(|_| app.metrics.two_factor(TwoFactorOutcome::SetupFailed))?;
    app.metrics.two_factor(TwoFactorOutcome::Enabled);
    app.mailer
        .send(vec![messages::two_factor_enabled(&caller.user.email)], now)
        .await;
    body::json(StatusCode::OK, &json!({"success": true}))
}

/// `GET /api/users/{uuid|@me}/two_factor_status/`: the count of backup codes, never the codes.
pub async fn status(app: &App, target: Target) -> Result<Response<Body>> {
    let user_id = target.user().id;
    let (has_totp, remaining) = app.db.read(|conn| {
        let has_totp = two_factor::has_device(conn, user_id)?;
        let remaining = if has_totp {
            two_factor::count_codes(conn, user_id)?
        } else {
            0
        };
        Ok((has_totp, remaining))
    })?;
    body::json(
        StatusCode::OK,
        &json!({
            "is_enabled": has_totp,
            "backup_codes_remaining": remaining,
            "method": if has_totp { Some("TOTP") } else { None },
            "has_passkeys": false,
            "has_totp": has_totp,
            "passkeys_enabled_for_2fa": false,
        }),
    )
}

fn not_enabled() -> Error {
    Error::non_field("2fa_not_enabled", "2FA must be enabled first")
}

/// One backup code: 5 random bytes in base32, lowercased, so 8 characters from `[a-z2-7]`.
fn new_backup_code() -> String {
    let bytes: [u8; BACKUP_CODE_BYTES] = rand::random();
    totp::base32(&bytes).to_ascii_lowercase()
}

/// `POST /api/users/{uuid|@me}/two_factor_backup_codes/`: replaces all backup codes with a new
/// batch and shows it once.
pub async fn backup_codes(app: &App, target: Target) -> Result<Response<Body>> {
    let user_id = target.user().id;
    // Checked before hashing so a user without 2FA costs no argon2 work.
    if !app.db.read(|conn| two_factor::has_device(conn, user_id))? {
        return Err(not_enabled());
    }
    let mut codes: Vec<String> = Vec::with_capacity(BACKUP_CODE_COUNT);
    while codes.len() < BACKUP_CODE_COUNT {
        // Distinct codes, so using one can never delete another's row.
        let code = new_backup_code();
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    let to_hash = codes.clone();
    let hashes = app
        .hash_work(move || {
            let salt = password::new_salt()?;
            to_hash
                .iter()
                .map(|code| password::hash_with_salt(code, &salt))
                .collect::<Result<Vec<_>>>()
        })
        .await?;
    let now = app.clock.now();
    app.db
        .write(move |conn| {
            // 2FA may have been disabled while the codes were being hashed.
            if !two_factor::has_device(conn, user_id)? {
                return Err(not_enabled());
            }
            two_factor::replace_codes(conn, user_id, &hashes, now)
        })
        .await?;
    app.metrics
        .two_factor(TwoFactorOutcome::BackupCodesGenerated);
    body::json(StatusCode::OK, &json!({"backup_codes": codes}))
}

/// `POST /api/users/{uuid|@me}/two_factor_disable/`: removes the device and all backup codes.
pub async fn disable(app: &App, target: Target) -> Result<Response<Body>> {
    let user = target.user();
    let user_id = user.id;
    let now = app.clock.now();
    app.db
        .write(move |conn| two_factor::delete_all(conn, user_id))
        .await?;
    app.metrics.two_factor(TwoFactorOutcome::Disabled);
    app.mailer
        .send(vec![messages::two_factor_disabled(&user.email)], now)
        .await;
    body::json(StatusCode::OK, &json!({"success": true}))
}

/// The second factor of a login: a TOTP code (1–6 digits) or an unused backup code. `None`
/// when neither matches. Accepting a code consumes it, atomically with the check.
pub async fn verify_login_code(app: &App, user_id: i64, code: &str) -> Result<Option<Factor>> {
    if let Some(token) = totp::parse_token(&Value::String(code.to_owned())) {
        // Digits only can never be a backup code (8 characters), so this is the only check.
        return Ok(verify_totp(app, user_id, token)
            .await?
            .then_some(Factor::Totp));
    }
    Ok(verify_backup_code(app, user_id, code)
        .await?
        .then_some(Factor::BackupCode))
}

async fn verify_totp(app: &App, user_id: i64, token: u32) -> Result<bool> {
    let now = app.clock.now();
    // Matching and recording the step in one write: of two logins racing with the same code,
    // the second sees the step already used.
    app.db
        .write(move |conn| {
            let Some(device) = two_factor::device(conn, user_id)? else {
                return Ok(false);
            };
            let secret = decode_secret(&device.secret_hex)?;
            match totp::matching_step(&secret, token, now, device.last_step) {
                Some(step) => two_factor::accept_step(conn, user_id, step),
                None => Ok(false),
            }
        })
        .await
}

async fn verify_backup_code(app: &App, user_id: i64, code: &str) -> Result<bool> {
    let code = code.trim().to_ascii_lowercase();
    let well_formed = code.len() == BACKUP_CODE_LEN
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
    if !well_formed {
        return Ok(false);
    }
    let Some(sample) = app
        .db
        .read(|conn| two_factor::any_code_hash(conn, user_id))?
    else {
        return Ok(false);
    };
    // All codes of a batch share salt and parameters, so one hash finds the matching row.
    let hash = app
        .hash_work(move || password::hash_like(&code, &sample))
        .await?;
    app.db
        .write(move |conn| two_factor::consume_code(conn, user_id, &hash))
        .await
}
