-- Accounts, MySQL/MariaDB flavour. Keep it in step with sqlite/00002_accounts.sql (the store
-- tests compare the two schemas).
--
-- users.disabled: a disabled user cannot sign in, and their sessions and API tokens stop
-- working. TINYINT(1) is what BOOLEAN means here; the SQLite file spells it the same way.
-- api_tokens.token_prefix: the first characters of a token after "ikb_", shown to people so
-- they can tell their tokens apart; too short to use or to guess the token from.

-- +goose Up
ALTER TABLE users ADD COLUMN disabled TINYINT(1) NOT NULL DEFAULT 0;
ALTER TABLE api_tokens ADD COLUMN token_prefix VARCHAR(16) NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE api_tokens DROP COLUMN token_prefix;
ALTER TABLE users DROP COLUMN disabled;
