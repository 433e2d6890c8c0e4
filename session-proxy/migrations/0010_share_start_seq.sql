-- Where a share link's viewers start: the last output recorded when the
-- link was made. They are shown the screen as it is, never the output
-- (exec runs included) from before the link existed.
ALTER TABLE shares ADD COLUMN start_seq bigint NOT NULL DEFAULT 0;
