-- roster-server store, schema 3: when a collector departed (the end of its grace period), so that departed
-- collectors are forgotten --forget-after that time, across restarts. NULL when it was live or in grace when the
-- row was last written: it then counts as departed from the next start of the server, unless it comes back.
ALTER TABLE collectors ADD COLUMN departed_at_ms INTEGER;
