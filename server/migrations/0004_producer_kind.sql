-- roster-server store, schema 4: producer kinds (issue 13).
-- producers.kind is 'grpc' or 'prometheus'; every row from before is 'grpc'. The Prometheus target's columns are
-- NULL for a gRPC producer: scheme 'http' or 'https', metrics_path a path starting with '/', scrape_timeout_ms
-- NULL when the collector's default applies.
ALTER TABLE producers ADD COLUMN kind TEXT NOT NULL DEFAULT 'grpc';
ALTER TABLE producers ADD COLUMN scheme TEXT;
ALTER TABLE producers ADD COLUMN metrics_path TEXT;
ALTER TABLE producers ADD COLUMN scrape_timeout_ms INTEGER;
-- The producer kinds a collector's last Watch listed, comma-separated ('grpc', 'grpc,prometheus'): kept so that
-- after a restart a collector in grace keeps the producers of every kind it had. Every row from before is 'grpc'.
ALTER TABLE collectors ADD COLUMN supported_kinds TEXT NOT NULL DEFAULT 'grpc';
