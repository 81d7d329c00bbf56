-- The initial schema, SQLite flavour. Keep it in step with mysql/00001_init.sql: same tables,
-- columns, index names and foreign keys (the store tests compare the two).
--
-- Times are DATETIME so that the driver hands them back as time.Time; the store always writes
-- them in UTC with microsecond precision, which keeps their text form sortable.
-- Ids use AUTOINCREMENT so that a deleted row's id is never handed out again (audit records and
-- sessions keep naming old ids).

-- +goose Up
CREATE TABLE users (
    id            INTEGER      PRIMARY KEY AUTOINCREMENT,
    name          VARCHAR(64)  NOT NULL,
    role          VARCHAR(16)  NOT NULL,
    password_hash VARCHAR(255) NOT NULL DEFAULT '',
    unix_uid      BIGINT       NULL,
    created_at    DATETIME     NOT NULL,
    updated_at    DATETIME     NOT NULL
);
CREATE UNIQUE INDEX users_name_uq ON users (name);
CREATE UNIQUE INDEX users_unix_uid_uq ON users (unix_uid);

CREATE TABLE sessions (
    id           VARCHAR(64) NOT NULL PRIMARY KEY,
    user_id      BIGINT      NOT NULL,
    created_at   DATETIME    NOT NULL,
    expires_at   DATETIME    NOT NULL,
    last_seen_at DATETIME    NOT NULL,
    CONSTRAINT sessions_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

CREATE TABLE api_tokens (
    id           INTEGER     PRIMARY KEY AUTOINCREMENT,
    user_id      BIGINT      NOT NULL,
    name         VARCHAR(64) NOT NULL,
    token_hash   VARCHAR(64) NOT NULL,
    created_at   DATETIME    NOT NULL,
    last_used_at DATETIME    NULL,
    expires_at   DATETIME    NULL,
    CONSTRAINT api_tokens_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX api_tokens_token_hash_uq ON api_tokens (token_hash);
CREATE INDEX api_tokens_user_id_idx ON api_tokens (user_id);

CREATE TABLE instances (
    id            VARCHAR(32) NOT NULL PRIMARY KEY,
    owner_id      BIGINT      NULL,
    cms           VARCHAR(16) NOT NULL,
    php_version   VARCHAR(8)  NOT NULL,
    spec          TEXT        NOT NULL,
    desired_state VARCHAR(16) NOT NULL,
    phase         VARCHAR(16) NOT NULL,
    generation    BIGINT      NOT NULL DEFAULT 0,
    last_error    TEXT        NOT NULL,
    created_at    DATETIME    NOT NULL,
    updated_at    DATETIME    NOT NULL,
    CONSTRAINT instances_owner_fk FOREIGN KEY (owner_id) REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX instances_owner_id_idx ON instances (owner_id);

-- No foreign keys here: the audit log outlives the instances and users it names.
CREATE TABLE audit_events (
    id          INTEGER     PRIMARY KEY AUTOINCREMENT,
    at          DATETIME    NOT NULL,
    actor       VARCHAR(64) NOT NULL,
    actor_id    BIGINT      NULL,
    action      VARCHAR(32) NOT NULL,
    instance_id VARCHAR(32) NOT NULL DEFAULT '',
    result      VARCHAR(16) NOT NULL,
    detail      TEXT        NOT NULL
);
CREATE INDEX audit_events_instance_id_idx ON audit_events (instance_id, id);
CREATE INDEX audit_events_at_idx ON audit_events (at);

-- +goose Down
DROP TABLE audit_events;
DROP TABLE instances;
DROP TABLE api_tokens;
DROP TABLE sessions;
DROP TABLE users;
