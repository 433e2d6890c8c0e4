-- The digest of each ended job host's whole stdout and stderr, computed
-- once (grouping identical outcomes) instead of on every read of the job.
ALTER TABLE job_hosts ADD COLUMN stdout_digest text, ADD COLUMN stderr_digest text;
