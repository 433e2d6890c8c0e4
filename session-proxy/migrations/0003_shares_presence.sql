-- Share links, who watches a session, and who typed what.

-- Only the SHA-256 of a link's token is stored: a database leak opens no
-- session.
CREATE TABLE shares (
    id          uuid PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL UNIQUE,
    mode        text NOT NULL CHECK (mode IN ('view', 'control')),
    created_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    revoked_by  uuid REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX shares_session ON shares (session_id, created_at DESC);

-- The runner's merged presence list, as last reported.
ALTER TABLE sessions ADD COLUMN viewers jsonb NOT NULL DEFAULT '[]';

-- Every input that was sent to a session's PTY, with who typed it. Written
-- in batches by the proxy that received it.
CREATE TABLE session_input (
    id         bigserial PRIMARY KEY,
    session_id uuid NOT NULL,
    user_id    uuid,
    username   text NOT NULL,
    share_id   uuid,
    data       bytea NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX session_input_session ON session_input (session_id, id);
