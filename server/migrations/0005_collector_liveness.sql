-- roster-server store, schema 5: a collector's liveness as replicas sharing a store keep it (issue 18), in the
-- same rows as the PostgreSQL store's (server/src/store/rows.rs). grace_until_ms: the end of its grace period, NULL
-- unless in grace. holders: its open feed streams per replica, 'replica-uuid=streams' pairs comma-separated, empty
-- for none. A server on this file holds every stream itself: it writes them as replicas do, and decides liveness
-- again at each start (its streams ended with it).
ALTER TABLE collectors ADD COLUMN grace_until_ms INTEGER;
ALTER TABLE collectors ADD COLUMN holders TEXT NOT NULL DEFAULT '';
