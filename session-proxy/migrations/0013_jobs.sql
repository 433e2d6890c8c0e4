-- Jobs: one command, task or script on many hosts. Each host of a job is
-- one exec-only session (`sessions.job_id`) with one run, so a job host is
-- recorded, audited and canceled like any run.

CREATE TABLE jobs (
    id          uuid PRIMARY KEY,
    created_by  uuid REFERENCES users (id) ON DELETE SET NULL,
    kind        text NOT NULL CHECK (kind IN ('command', 'task', 'script', 'service')),
    label       text NOT NULL,
    -- Exactly what was asked (targets, what to run, strategy, params) and
    -- what it resolved to (run kind and steps): a rerun repeats it.
    spec        jsonb NOT NULL,
    strategy    text NOT NULL CHECK (strategy IN ('parallel', 'rolling')),
    concurrency integer NOT NULL CHECK (concurrency BETWEEN 1 AND 100),
    batch       text,
    max_failures text,
    keep_going  boolean NOT NULL,
    status      text NOT NULL CHECK (status IN ('queued', 'running', 'done', 'canceled')),
    rerun_of    uuid REFERENCES jobs (id) ON DELETE SET NULL,
    -- The proxy driving it, and when it last said it was (a job whose
    -- driver went silent is taken over).
    driver      text,
    driven_at   timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    ended_at    timestamptz
);
CREATE INDEX jobs_created ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_owner ON jobs (created_by, created_at DESC);

CREATE TABLE job_hosts (
    job_id      uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    host_id     uuid NOT NULL,
    host_name   text NOT NULL,
    account     text NOT NULL,
    position    integer NOT NULL,
    session_id  uuid,
    run_id      uuid,
    status      text NOT NULL CHECK (status IN
                    ('queued', 'running', 'ok', 'failed', 'unreachable', 'canceled', 'skipped')),
    exit_code   integer,
    exit_signal text,
    failed_step integer,
    error       text,
    cancel_requested boolean NOT NULL DEFAULT false,
    started_at  timestamptz,
    ended_at    timestamptz,
    duration_ms bigint,
    PRIMARY KEY (job_id, host_id)
);
CREATE INDEX job_hosts_order ON job_hosts (job_id, position);
CREATE INDEX job_hosts_session ON job_hosts (session_id) WHERE session_id IS NOT NULL;

-- A job host's session: not an interactive session (hidden from the
-- session lists), still recorded.
ALTER TABLE sessions ADD COLUMN job_id uuid;
CREATE INDEX sessions_job ON sessions (job_id) WHERE job_id IS NOT NULL;

-- Task parameters: [{"name": "unit", "pattern": "[a-z0-9@._-]+",
-- "description": ""}]; `{{name}}` in the command becomes the value,
-- shell-quoted, once it matches the (anchored) pattern.
ALTER TABLE tasks ADD COLUMN params jsonb NOT NULL DEFAULT '[]';

-- Saved host groups jobs can target by name: explicit hosts and/or a
-- label selector, resolved (and filtered by the caller's grants) when a
-- job starts.
CREATE TABLE host_groups (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
    host_ids   uuid[] NOT NULL DEFAULT '{}',
    labels     jsonb,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
