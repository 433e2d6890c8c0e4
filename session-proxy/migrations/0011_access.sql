-- The access model: roles, groups, host labels and accounts, grants.

-- A role per user. `is_admin` stays, kept equal to `role = 'admin'` by
-- every write, for readers of the old column.
ALTER TABLE users
    ADD COLUMN role text NOT NULL DEFAULT 'user' CHECK (role IN ('admin', 'auditor', 'user'));
UPDATE users SET role = 'admin' WHERE is_admin;

CREATE TABLE groups (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE group_members (
    group_id uuid NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);

-- Labels select hosts in grants: {"env": "prod", "team": "web"}.
ALTER TABLE hosts ADD COLUMN labels jsonb NOT NULL DEFAULT '{}';

-- The logins a host offers, each with how a runner authenticates as it.
-- `credential_id` names a stored credential (stored_key, password); its
-- foreign key comes with the credential vault.
CREATE TABLE host_accounts (
    id            uuid PRIMARY KEY,
    host_id       uuid NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    login         text NOT NULL,
    auth_method   text NOT NULL CHECK (auth_method IN ('stored_key', 'password', 'key_path', 'agent')),
    credential_id uuid,
    key_path      text,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (host_id, login)
);

-- Every existing host's login becomes its first account.
INSERT INTO host_accounts (id, host_id, login, auth_method, key_path, created_at)
SELECT gen_random_uuid(), id, username, auth_method, key_path, created_at FROM hosts;

-- Who may do what on which host, as which account.
CREATE TABLE grants (
    id         uuid PRIMARY KEY,
    user_id    uuid REFERENCES users (id) ON DELETE CASCADE,
    group_id   uuid REFERENCES groups (id) ON DELETE CASCADE,
    host_id    uuid REFERENCES hosts (id) ON DELETE CASCADE,
    labels     jsonb,
    account    text NOT NULL,
    actions    text[] NOT NULL,
    not_before timestamptz,
    not_after  timestamptz,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((user_id IS NULL) <> (group_id IS NULL)),
    CHECK ((host_id IS NULL) <> (labels IS NULL)),
    CHECK (not_before IS NULL OR not_after IS NULL OR not_after > not_before)
);
CREATE INDEX grants_user ON grants (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX grants_group ON grants (group_id) WHERE group_id IS NOT NULL;

-- The account a session logs in as, and when it was ended because its
-- owner's access ended (set once, by the one proxy that ends it).
ALTER TABLE sessions
    ADD COLUMN account           text,
    ADD COLUMN access_revoked_at timestamptz;
UPDATE sessions s SET account = h.username FROM hosts h WHERE h.id = s.host_id;
