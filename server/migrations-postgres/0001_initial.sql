-- roster-server's PostgreSQL store, schema 1: the SQLite store's schemas 1 to 4 in one (server/migrations/), in
-- PostgreSQL's types, plus what several replicas over one database need: a global revision and tombstones.
-- Times are Unix milliseconds; ids are hyphenated lowercase UUIDs kept as text, labels a JSON object of strings as
-- text, so that both stores hold the same rows (server/src/store/rows.rs).

-- One row: the epoch (made once, with the schema: see PostgresStore::open), when the store settled, the revision
-- and the leader's lease.
CREATE TABLE meta (
    one              boolean PRIMARY KEY DEFAULT true CHECK (one),
    epoch            text NOT NULL,
    epoch_created_ms bigint NOT NULL,
    -- NULL until the store first settles (C3).
    settled_at_ms    bigint,
    -- The global change counter: every commit that writes anything takes the next one, first thing in its
    -- transaction, so commits are serialised on this row and commit order is revision order.
    revision         bigint NOT NULL DEFAULT 0,
    -- Tombstones at or below this revision were pruned (every replica had seen them): a replica that has seen less
    -- reads everything again.
    pruned_through   bigint NOT NULL DEFAULT 0,
    -- The leader's lease: its term (fencing every write it makes), which replica holds it, until when.
    leader_term      bigint NOT NULL DEFAULT 0,
    leader_replica   text,
    leader_until_ms  bigint
);

CREATE TABLE producers (
    id                 text PRIMARY KEY,
    address            text NOT NULL,
    interval_ms        bigint NOT NULL,
    labels             text NOT NULL,
    -- The registrant's pin; NULL for none.
    pinned_collector   text,
    lease_ms           bigint NOT NULL,
    expires_at_ms      bigint NOT NULL,
    registered_at_ms   bigint NOT NULL,
    assigned_collector text,
    -- The operator pin (SetProducerPin), kept apart from the registrant's; NULL for none.
    operator_pin       text,
    -- 'grpc' or 'prometheus'; the Prometheus target's columns are NULL for a gRPC producer: scheme 'http' or
    -- 'https', metrics_path a path starting with '/', scrape_timeout_ms NULL when the collector's default applies.
    kind               text NOT NULL DEFAULT 'grpc',
    scheme             text,
    metrics_path       text,
    scrape_timeout_ms  bigint,
    -- The revision of the commit that last wrote the row.
    revision           bigint NOT NULL
);
CREATE INDEX producers_revision ON producers (revision);

CREATE TABLE collectors (
    id                  text PRIMARY KEY,
    generation          bigint NOT NULL,
    reported_epoch      text,
    reported_generation bigint,
    -- 1 applied, 2 rejected (with reported_reason).
    reported_outcome    bigint,
    reported_reason     text,
    reported_at_ms      bigint,
    -- When it departed (the end of its grace period); NULL when it was live or in grace when the row was written.
    departed_at_ms      bigint,
    -- The producer kinds its last Watch listed, comma-separated ('grpc', 'grpc,prometheus').
    supported_kinds     text NOT NULL DEFAULT 'grpc',
    -- The end of its grace period; NULL unless in grace.
    grace_until_ms      bigint,
    -- Its open feed streams per replica: 'replica-uuid=streams' pairs, comma-separated; empty for none.
    holders             text NOT NULL DEFAULT '',
    -- The revision of the commit that last wrote the row.
    revision            bigint NOT NULL
);
CREATE INDEX collectors_revision ON collectors (revision);

-- Deleted producers and collectors, with the revision of the commit that deleted them (the latest, when one is
-- deleted again), so that a replica catching up from a revision learns of deletions too.
CREATE TABLE tombstones (
    kind     text NOT NULL CHECK (kind IN ('producer', 'collector')),
    id       text NOT NULL,
    revision bigint NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX tombstones_revision ON tombstones (revision);

-- The replicas alive: each says so at every tick (heartbeat_ms, in the database's clock) with the revision it has
-- seen (so tombstones every replica has seen can be pruned). The leader removes the rows of replicas not heard from
-- within the replica timeout; a replica that finds its row gone was taken for gone.
CREATE TABLE replicas (
    id           text PRIMARY KEY,
    heartbeat_ms bigint NOT NULL,
    seen         bigint NOT NULL,
    started_ms   bigint NOT NULL
);
