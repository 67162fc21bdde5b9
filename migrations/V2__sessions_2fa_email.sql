-- usersvc schema, version 2: sessions, TOTP devices, backup codes, emailed tokens.
-- Secrets are stored only as hashes: session and email tokens as 'sha256$<hex>', backup codes
-- as argon2id PHC strings. TOTP secrets must stay reversible (SPEC §10.5).

CREATE TABLE sessions (
    id                      INTEGER PRIMARY KEY,
    token_hash              TEXT    NOT NULL UNIQUE,
    user_id                 INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- 1 while a login waits for its second factor: such a row authenticates nothing.
    pending                 INTEGER NOT NULL DEFAULT 0,
    -- Login time: the recent-authentication rules count from here.
    created_at              INTEGER NOT NULL,
    -- Idle expiry; written at most hourly so reads stay reads.
    last_seen_at            INTEGER NOT NULL,
    -- A 2FA setup in progress (hex key) and when it lapses; bound to this session.
    totp_setup_secret       TEXT,
    totp_setup_expires_at   INTEGER
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE totp_devices (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
    -- Hex key (20 bytes).
    secret     TEXT    NOT NULL,
    -- The highest time step accepted: a step is never accepted twice (RFC 6238 §5.2).
    last_step  INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE backup_codes (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash  TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX backup_codes_user ON backup_codes(user_id);

CREATE TABLE email_tokens (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- 'verify_email' or 'reset_password'.
    purpose    TEXT    NOT NULL,
    token_hash TEXT    NOT NULL UNIQUE,
    expires_at INTEGER NOT NULL
);
CREATE INDEX email_tokens_user ON email_tokens(user_id, purpose);
