-- Service panels: a systemd unit on hosts (by id and/or labels), the
-- actions people may take on it, and the last status seen on each host.

CREATE TABLE services (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
    unit       text NOT NULL CHECK (length(unit) BETWEEN 1 AND 256 AND unit ~ '^[A-Za-z0-9:_.\\@-]+$'),
    host_ids   uuid[] NOT NULL DEFAULT '{}',
    labels     jsonb NOT NULL DEFAULT '{}',
    account    text,
    actions    text[] NOT NULL CHECK (
        cardinality(actions) > 0
        AND actions <@ ARRAY['status', 'start', 'stop', 'restart', 'reload', 'enable', 'disable', 'logs']
    ),
    use_sudo   boolean NOT NULL DEFAULT false,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The last poll of each unit on each host: what the panel shows between
-- refreshes, and when the next scheduled poll of that host is due.
CREATE TABLE service_status (
    service_id      uuid NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    host_id         uuid NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    state           text NOT NULL,
    active_state    text,
    sub_state       text,
    unit_file_state text,
    main_pid        integer,
    since           text,
    error           text,
    checked_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service_id, host_id)
);
