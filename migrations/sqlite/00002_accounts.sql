-- Accounts, SQLite flavour. Keep it in step with mysql/00002_accounts.sql (the store tests
-- compare the two schemas).
--
-- users.disabled: a disabled user cannot sign in, and their sessions and API tokens stop
-- working. It is declared TINYINT(1), not BOOLEAN, so that SQLite reports the same type as
-- MariaDB does for its BOOLEAN (an alias of TINYINT(1)); SQLite stores 0 or 1 either way.
-- api_tokens.token_prefix: the first characters of a token after "ikb_", shown to people so
-- they can tell their tokens apart; too short to use or to guess the token from.

-- +goose Up
ALTER TABLE users ADD COLUMN disabled TINYINT(1) NOT NULL DEFAULT 0;
ALTER TABLE api_tokens ADD COLUMN token_prefix VARCHAR(16) NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE api_tokens DROP COLUMN token_prefix;
ALTER TABLE users DROP COLUMN disabled;
