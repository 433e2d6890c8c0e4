-- Accounts that can be disabled and deleted, API tokens that expire and
-- can be listed and revoked, and the sign-in throttle shared by every proxy.

-- A disabled user cannot sign in; their cookies and tokens stop working.
-- A deleted user is kept (sessions, recordings and the audit trail name
-- them) but can do nothing at all, and their name may be given again.
ALTER TABLE users
    ADD COLUMN disabled_at timestamptz,
    ADD COLUMN deleted_at  timestamptz;
ALTER TABLE users DROP CONSTRAINT users_username_key;
CREATE UNIQUE INDEX users_username_live ON users (username) WHERE deleted_at IS NULL;

-- Tokens minted before expiry existed get the default lifetime from now.
ALTER TABLE api_tokens
    ADD COLUMN name       text NOT NULL DEFAULT '',
    ADD COLUMN scopes     text[] NOT NULL DEFAULT '{}',
    ADD COLUMN expires_at timestamptz;
UPDATE api_tokens SET expires_at = now() + interval '90 days';
ALTER TABLE api_tokens ALTER COLUMN expires_at SET NOT NULL;
CREATE INDEX api_tokens_user ON api_tokens (user_id, created_at DESC);
CREATE INDEX web_sessions_user ON web_sessions (user_id);

-- Failed sign-ins per username and per client address (see throttle.rs).
CREATE TABLE login_throttles (
    kind            text NOT NULL CHECK (kind IN ('username', 'address')),
    key             text NOT NULL CHECK (length(key) <= 64),
    failures        integer NOT NULL,
    last_failure_at timestamptz NOT NULL,
    blocked_until   timestamptz,
    PRIMARY KEY (kind, key)
);
CREATE INDEX login_throttles_recent ON login_throttles (last_failure_at);
