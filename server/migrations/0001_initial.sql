-- roster-server store, schema 1.
-- Times are Unix milliseconds; ids are hyphenated lowercase UUIDs; labels are a JSON object of strings.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE producers (
    id                 TEXT PRIMARY KEY NOT NULL,
    address            TEXT NOT NULL,
    interval_ms        INTEGER NOT NULL,
    labels             TEXT NOT NULL,
    pinned_collector   TEXT,
    lease_ms           INTEGER NOT NULL,
    expires_at_ms      INTEGER NOT NULL,
    registered_at_ms   INTEGER NOT NULL,
    assigned_collector TEXT
);

CREATE TABLE collectors (
    id                  TEXT PRIMARY KEY NOT NULL,
    generation          INTEGER NOT NULL,
    reported_epoch      TEXT,
    reported_generation INTEGER,
    reported_outcome    INTEGER,
    reported_reason     TEXT,
    reported_at_ms      INTEGER
);
