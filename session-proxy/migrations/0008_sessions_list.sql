-- The Logs list pages through sessions newest first (keyset on
-- created_at, id), for admins across all owners.
CREATE INDEX sessions_created ON sessions (created_at DESC, id DESC);
