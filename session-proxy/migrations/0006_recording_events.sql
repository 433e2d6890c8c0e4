-- What a recording holds beside the output: terminal resizes and markers
-- (a run started or ended, storing stopped at the size cap), each placed
-- after the output message `seq` it follows (0: before any output). The
-- asciicast export merges them with `output_chunks` in (seq, id) order.
-- No foreign key, like output_chunks: the recorder never waits on a
-- session row.
CREATE TABLE recording_events (
    id         bigserial PRIMARY KEY,
    session_id uuid NOT NULL,
    seq        bigint NOT NULL,
    -- Makes a redelivered message change nothing: `resize:<n>`,
    -- `run-start:<run>`, `run-end:<run>`, `truncated`.
    key        text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('resize', 'marker')),
    cols       integer,
    rows       integer,
    label      text,
    at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (session_id, key)
);
CREATE INDEX recording_events_order ON recording_events (session_id, seq, id);

-- The size cap (SHELLWAY_RECORDING_MAX_BYTES): output bytes offered for
-- the session so far, counted only while a cap is set.
ALTER TABLE sessions ADD COLUMN recorded_bytes bigint NOT NULL DEFAULT 0;
-- The retention policy (SHELLWAY_RECORDING_RETENTION_DAYS) deleted the
-- recording at this time; the session and its runs stay in the logs.
ALTER TABLE sessions ADD COLUMN recording_deleted_at timestamptz;
CREATE INDEX sessions_ended ON sessions (ended_at) WHERE recording_deleted_at IS NULL;
