-- usersvc schema, version 1: organizations, teams, users, memberships, personal API keys.
-- Times are integer microseconds since the Unix epoch (UTC). Booleans are 0/1 (NULL where nullable).

CREATE TABLE organizations (
    id          INTEGER PRIMARY KEY,
    uuid        TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    slug        TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE teams (
    id              INTEGER PRIMARY KEY,
    uuid            TEXT    NOT NULL UNIQUE,
    organization_id INTEGER NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name            TEXT    NOT NULL,
    api_token       TEXT    NOT NULL UNIQUE,
    created_at      INTEGER NOT NULL
);
CREATE INDEX teams_organization ON teams(organization_id, id);

CREATE TABLE users (
    id                         INTEGER PRIMARY KEY,
    uuid                       TEXT    NOT NULL UNIQUE,
    distinct_id                TEXT    NOT NULL UNIQUE,
    email                      TEXT    NOT NULL,
    -- lower(email): uniqueness and lookups are case-insensitive (SPEC §10.2).
    email_key                  TEXT    NOT NULL UNIQUE,
    pending_email              TEXT,
    is_email_verified          INTEGER,
    -- PHC string (argon2id), or '!' + random for an unusable password.
    password                   TEXT    NOT NULL,
    first_name                 TEXT    NOT NULL DEFAULT '',
    last_name                  TEXT    NOT NULL DEFAULT '',
    is_staff                   INTEGER NOT NULL DEFAULT 0,
    is_active                  INTEGER NOT NULL DEFAULT 1,
    date_joined                INTEGER NOT NULL,
    last_login                 INTEGER,
    current_organization_id    INTEGER REFERENCES organizations(id) ON DELETE SET NULL,
    current_team_id            INTEGER REFERENCES teams(id) ON DELETE SET NULL,
    -- JSON object: the full merged map once written (reference §4.3), NULL before.
    notification_settings      TEXT,
    anonymize_data             INTEGER DEFAULT 0,
    allow_impersonation        INTEGER DEFAULT 1,
    toolbar_mode               TEXT DEFAULT 'toolbar',
    events_column_config       TEXT    NOT NULL DEFAULT '{"active":"DEFAULT"}',
    has_seen_product_intro_for TEXT,
    theme_mode                 TEXT,
    hedgehog_config            TEXT,
    allow_sidebar_suggestions  INTEGER DEFAULT 0,
    shortcut_position          TEXT,
    role_at_organization       TEXT,
    passkeys_enabled_for_2fa   INTEGER DEFAULT 0
);
-- Listing walks active users by id; the partial index keeps that walk on active rows only.
CREATE INDEX users_active_id ON users(id) WHERE is_active = 1;

CREATE TABLE memberships (
    id              INTEGER PRIMARY KEY,
    organization_id INTEGER NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    level           INTEGER NOT NULL,
    joined_at       INTEGER NOT NULL,
    UNIQUE (user_id, organization_id)
);
CREATE INDEX memberships_organization ON memberships(organization_id);

CREATE TABLE personal_api_keys (
    id             TEXT    PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    label          TEXT    NOT NULL,
    -- 'sha256$' + hex digest of the key; never the key itself.
    secure_value   TEXT    NOT NULL UNIQUE,
    mask_value     TEXT    NOT NULL,
    scopes         TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    last_used_at   INTEGER,
    last_rolled_at INTEGER
);
CREATE INDEX personal_api_keys_user ON personal_api_keys(user_id, created_at);

CREATE TABLE scene_personalisations (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    team_id    INTEGER REFERENCES teams(id) ON DELETE CASCADE,
    scene      TEXT    NOT NULL,
    dashboard  INTEGER,
    created_at INTEGER NOT NULL,
    UNIQUE (user_id, team_id, scene)
);
