-- The initial schema, MySQL/MariaDB flavour. Keep it in step with sqlite/00001_init.sql: same
-- tables, columns, index names and foreign keys (the store tests compare the two).
--
-- utf8mb4_bin makes comparisons, uniqueness and ORDER BY byte-wise and case-sensitive, as they
-- are in SQLite: with a *_ci collation "WP-1" and "wp-1" would collide here and not there.
-- Times are DATETIME(6), not TIMESTAMP: the store writes UTC itself, so the session time_zone
-- never shifts a value, and DATETIME has no 2038 limit.
-- Every foreign key has its own named index so that InnoDB does not add one under a name of
-- its choosing.

-- +goose Up
CREATE TABLE users (
    id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    name          VARCHAR(64)     NOT NULL,
    role          VARCHAR(16)     NOT NULL,
    password_hash VARCHAR(255)    NOT NULL DEFAULT '',
    unix_uid      BIGINT          NULL,
    created_at    DATETIME(6)     NOT NULL,
    updated_at    DATETIME(6)     NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY users_name_uq (name),
    UNIQUE KEY users_unix_uid_uq (unix_uid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE sessions (
    id           VARCHAR(64)     NOT NULL,
    user_id      BIGINT UNSIGNED NOT NULL,
    created_at   DATETIME(6)     NOT NULL,
    expires_at   DATETIME(6)     NOT NULL,
    last_seen_at DATETIME(6)     NOT NULL,
    PRIMARY KEY (id),
    KEY sessions_user_id_idx (user_id),
    CONSTRAINT sessions_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE api_tokens (
    id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    user_id      BIGINT UNSIGNED NOT NULL,
    name         VARCHAR(64)     NOT NULL,
    token_hash   VARCHAR(64)     NOT NULL,
    created_at   DATETIME(6)     NOT NULL,
    last_used_at DATETIME(6)     NULL,
    expires_at   DATETIME(6)     NULL,
    PRIMARY KEY (id),
    UNIQUE KEY api_tokens_token_hash_uq (token_hash),
    KEY api_tokens_user_id_idx (user_id),
    CONSTRAINT api_tokens_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE instances (
    id            VARCHAR(32)     NOT NULL,
    owner_id      BIGINT UNSIGNED NULL,
    cms           VARCHAR(16)     NOT NULL,
    php_version   VARCHAR(8)      NOT NULL,
    spec          TEXT            NOT NULL,
    desired_state VARCHAR(16)     NOT NULL,
    phase         VARCHAR(16)     NOT NULL,
    generation    BIGINT          NOT NULL DEFAULT 0,
    last_error    TEXT            NOT NULL,
    created_at    DATETIME(6)     NOT NULL,
    updated_at    DATETIME(6)     NOT NULL,
    PRIMARY KEY (id),
    KEY instances_owner_id_idx (owner_id),
    CONSTRAINT instances_owner_fk FOREIGN KEY (owner_id) REFERENCES users (id) ON DELETE SET NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- No foreign keys here: the audit log outlives the instances and users it names.
CREATE TABLE audit_events (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    at          DATETIME(6)     NOT NULL,
    actor       VARCHAR(64)     NOT NULL,
    actor_id    BIGINT UNSIGNED NULL,
    action      VARCHAR(32)     NOT NULL,
    instance_id VARCHAR(32)     NOT NULL DEFAULT '',
    result      VARCHAR(16)     NOT NULL,
    detail      TEXT            NOT NULL,
    PRIMARY KEY (id),
    KEY audit_events_instance_id_idx (instance_id, id),
    KEY audit_events_at_idx (at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- +goose Down
DROP TABLE audit_events;
DROP TABLE instances;
DROP TABLE api_tokens;
DROP TABLE sessions;
DROP TABLE users;
