-- Shellway's schema: people, credentials of people, hosts, sessions, runs,
-- recordings and the audit trail.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    is_admin      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Only the SHA-256 of a token is stored: a database leak grants nothing.
CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash   bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz
);

CREATE TABLE web_sessions (
    token_hash bytea PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

CREATE TABLE hosts (
    id              uuid PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    hostname        text NOT NULL,
    port            integer NOT NULL,
    username        text NOT NULL,
    auth_method     text NOT NULL,
    key_path        text,
    host_key_policy text NOT NULL,
    host_keys       text[] NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    id         uuid PRIMARY KEY,
    host_id    uuid REFERENCES hosts (id) ON DELETE SET NULL,
    owner_id   uuid NOT NULL REFERENCES users (id),
    status     text NOT NULL,
    runner     text,
    cols       integer NOT NULL,
    rows       integer NOT NULL,
    shell      boolean NOT NULL DEFAULT true,
    error_kind text,
    error      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    ended_at   timestamptz
);
CREATE INDEX sessions_live ON sessions (runner) WHERE status IN ('pending', 'connecting', 'open');
CREATE INDEX sessions_owner ON sessions (owner_id, created_at DESC);

CREATE TABLE runs (
    id          uuid PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    kind        text NOT NULL,
    command     text NOT NULL,
    status      text NOT NULL,
    exit_code   integer,
    exit_signal text,
    failed_step integer,
    started_at  timestamptz,
    ended_at    timestamptz,
    duration_ms bigint,
    output_tail text,
    created_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX runs_session ON runs (session_id, created_at);

-- The recording. No foreign key: the recorder must never stall on a chunk
-- whose session row it cannot see.
CREATE TABLE output_chunks (
    session_id uuid NOT NULL,
    seq        bigint NOT NULL,
    run_id     uuid,
    stream     text NOT NULL,
    data       bytea NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, seq)
);
CREATE INDEX output_chunks_run ON output_chunks (run_id, seq) WHERE run_id IS NOT NULL;

CREATE TABLE audit (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    user_id   uuid,
    username  text,
    action    text NOT NULL,
    target    text,
    detail    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_at ON audit (at);
