//! The SQLite store: an embedded file under the data directory, reached through sqlx; the first [`Store`].
//!
//! The SQL is plain and portable on purpose, so that a PostgreSQL store can write the same rows with sqlx's
//! Postgres driver.
//!
//! Durability: WAL journal with `synchronous = FULL`, so a commit that returned is on disk (an acknowledged
//! registration survives `kill -9` and power loss).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use roster::domain::{
    ApplyOutcome, Collection, CollectorId, Labels, MetricsPath, ProducerAddress, ProducerId, ProducerSpec,
    PrometheusTarget, Scheme, SupportedKinds,
};
use sqlx::{
    QueryBuilder, Row as _, Sqlite, SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous},
};
use tokio_stream::StreamExt as _;
use uuid::Uuid;

use super::{Begun, CatchUp, DatabaseError, Lead, Store, StoreError, StoreFuture, Txn};
use crate::{
    clock::ms,
    records::{Batch, CollectorRecord, Loaded, ProducerRecord, ReplicaId, StoredReport},
};

/// Name of the database file inside the data directory.
const DB_FILE: &str = "roster.db";

/// Rows (producers, collectors) written by one statement of a commit: a statement per row cost a round trip to
/// sqlx's SQLite thread each (a channel send and a thread wake-up), the most of a commit of renewals, and of one
/// of registrations under watch (each applied snapshot's report updates its collector's row). 128 rows of 14
/// columns are 1 792 parameters, well within SQLite's limit of 32 766.
const ROWS_PER_STATEMENT: usize = 128;

/// The SQLite store. A clone shares the connection.
#[derive(Debug, Clone)]
pub(crate) struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`, brings its schema up to date and makes its epoch if
    /// it has none. `now_ms` is recorded as the epoch's creation time.
    ///
    /// # Errors
    /// When the directory cannot be created, the file cannot be opened or migrated, or the epoch cannot be
    /// written.
    pub(crate) async fn open(data_dir: &Path, now_ms: u64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| StoreError::CreateDir { path: data_dir.to_owned(), source })?;
        // SQLite would only say "unable to open database file"; find out first, and say why.
        let probe = data_dir.join(".write-probe");
        std::fs::write(&probe, b"roster")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|source| StoreError::NotWritable { path: data_dir.to_owned(), source })?;
        let path = data_dir.join(DB_FILE);
        let db = |context: &'static str| {
            let path = &path;
            move |source| StoreError::Db {
                context,
                store: path.display().to_string(),
                source: DatabaseError::new(source),
            }
        };
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        // One connection: the registry is the only writer and serialises its batches anyway.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(db("cannot open database"))?;
        sqlx::migrate!("./migrations").run(&pool).await.map_err(|source| StoreError::Migrate {
            store: path.display().to_string(),
            source: DatabaseError::new(source),
        })?;
        let mut tx = pool.begin().await.map_err(db("cannot begin transaction"))?;
        for (key, value) in [("epoch", Uuid::new_v4().to_string()), ("epoch_created_ms", now_ms.to_string())] {
            sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING")
                .bind(key)
                .bind(value)
                .execute(&mut *tx)
                .await
                .map_err(db("cannot write the epoch"))?;
        }
        tx.commit().await.map_err(db("cannot write the epoch"))?;
        Ok(Self { pool, path })
    }

    /// What a failed `context` becomes.
    fn db(&self, context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
        move |source| StoreError::Db {
            context,
            store: self.path.display().to_string(),
            source: DatabaseError::new(source),
        }
    }

    fn corrupt(&self, table: &'static str, problem: String) -> StoreError {
        StoreError::Corrupt { store: self.path.display().to_string(), table, problem }
    }

    /// [`Store::load`].
    async fn read(&self) -> Result<Loaded, StoreError> {
        let meta: BTreeMap<String, String> = sqlx::query("SELECT key, value FROM meta")
            .fetch_all(&self.pool)
            .await
            .map_err(self.db("cannot read meta"))?
            .into_iter()
            .map(|row| (row.get::<String, _>(0), row.get::<String, _>(1)))
            .collect();
        let epoch = meta
            .get("epoch")
            .and_then(|e| Uuid::parse_str(e).ok())
            .ok_or_else(|| self.corrupt("meta", "no valid epoch".into()))?;
        // Written with the epoch, so a meta without it was damaged; the registry does not need it.
        if meta.get("epoch_created_ms").and_then(|v| v.parse::<u64>().ok()).is_none() {
            return Err(self.corrupt("meta", "no valid epoch_created_ms".into()));
        }
        // Absent until the store first settles (and in stores written before it was recorded, which then settle
        // once more: harmless, since only a collector coming from another epoch treats a settling store apart).
        let settled_at_ms = match meta.get("settled_at_ms") {
            Some(v) => {
                Some(v.parse().map_err(|_| self.corrupt("meta", format!("settled_at_ms {v:?} is not a number")))?)
            }
            None => None,
        };

        // Each row becomes a record as it arrives: fetching every row first held all their SQLite values beside the
        // records, 1.8 GB more at the peak for a million producers, and zeroing those pages was a third of the start.
        let mut rows = sqlx::query(
            "SELECT id, address, interval_ms, labels, pinned_collector, lease_ms, expires_at_ms, registered_at_ms, \
             assigned_collector, operator_pin, kind, scheme, metrics_path, scrape_timeout_ms FROM producers ORDER BY id",
        )
        .fetch(&self.pool);
        let mut producers = Vec::new();
        while let Some(row) = rows.next().await {
            producers.push(self.producer_from_row(&row.map_err(self.db("cannot read producers"))?)?);
        }
        drop(rows);

        let rows = sqlx::query(
            "SELECT id, generation, reported_epoch, reported_generation, reported_outcome, reported_reason, \
             reported_at_ms, departed_at_ms, supported_kinds FROM collectors ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.db("cannot read collectors"))?;
        let collectors = rows.iter().map(|row| self.collector_from_row(row)).collect::<Result<Vec<_>, _>>()?;
        Ok(Loaded { epoch, revision: 0, settled_at_ms, producers, collectors })
    }

    fn producer_from_row(&self, row: &SqliteRow) -> Result<ProducerRecord, StoreError> {
        let bad = |problem: String| self.corrupt("producers", problem);
        let id: String = row.get("id");
        let parse_collector = |column: &str| -> Result<Option<CollectorId>, StoreError> {
            row.get::<Option<String>, _>(column)
                .map(|s| CollectorId::parse_accepted(column, &s).map_err(|e| bad(format!("{id}: {e}"))))
                .transpose()
        };
        let labels: BTreeMap<String, String> =
            serde_json::from_str(row.get::<&str, _>("labels")).map_err(|e| bad(format!("{id}: labels: {e}")))?;
        let collection = match row.get::<&str, _>("kind") {
            "grpc" => Collection::Grpc,
            "prometheus" => Collection::Prometheus(PrometheusTarget {
                scheme: Scheme::parse_field("scheme", row.get::<Option<&str>, _>("scheme").unwrap_or_default())
                    .map_err(|e| bad(format!("{id}: {e}")))?,
                metrics_path: MetricsPath::parse_field(
                    "metrics_path",
                    row.get::<Option<&str>, _>("metrics_path").unwrap_or_default(),
                )
                .map_err(|e| bad(format!("{id}: {e}")))?,
                scrape_timeout: row
                    .get::<Option<i64>, _>("scrape_timeout_ms")
                    .map(|t| Duration::from_millis(to_u64(t))),
            }),
            other => return Err(bad(format!("{id}: kind {other:?} is neither grpc nor prometheus"))),
        };
        Ok(ProducerRecord {
            spec: ProducerSpec {
                // Rows were accepted when written, perhaps under looser rules than today's: read them as such.
                id: ProducerId::parse_accepted("id", &id).map_err(|e| bad(format!("{id}: {e}")))?,
                address: ProducerAddress::parse_accepted("address", row.get::<String, _>("address"))
                    .map_err(|e| bad(format!("{id}: {e}")))?,
                interval: Duration::from_millis(to_u64(row.get("interval_ms"))),
                labels: Labels::parse_field("labels", labels).map_err(|e| bad(format!("{id}: {e}")))?,
                pinned: parse_collector("pinned_collector")?,
                collection,
            },
            lease: Duration::from_millis(to_u64(row.get("lease_ms"))),
            expires_at_ms: to_u64(row.get("expires_at_ms")),
            registered_at_ms: to_u64(row.get("registered_at_ms")),
            assigned: parse_collector("assigned_collector")?,
            operator_pin: parse_collector("operator_pin")?,
        })
    }

    fn collector_from_row(&self, row: &SqliteRow) -> Result<(CollectorId, CollectorRecord), StoreError> {
        let id: String = row.get("id");
        let bad = |problem: String| self.corrupt("collectors", format!("{id}: {problem}"));
        let collector = CollectorId::parse_accepted("id", &id).map_err(|e| bad(e.to_string()))?;
        let report = match row.get::<Option<String>, _>("reported_epoch") {
            None => None,
            Some(epoch) => Some(StoredReport {
                epoch: Uuid::parse_str(&epoch).map_err(|e| bad(format!("reported_epoch: {e}")))?,
                generation: to_u64(row.get::<Option<i64>, _>("reported_generation").unwrap_or(0)),
                outcome: match row.get::<Option<i64>, _>("reported_outcome") {
                    Some(1) => ApplyOutcome::Applied,
                    Some(2) => {
                        ApplyOutcome::Rejected(row.get::<Option<String>, _>("reported_reason").unwrap_or_default())
                    }
                    other => return Err(bad(format!("reported_outcome {other:?}"))),
                },
                at_ms: to_u64(row.get::<Option<i64>, _>("reported_at_ms").unwrap_or(0)),
            }),
        };
        let generation = to_u64(row.get("generation"));
        let departed_at_ms = row.get::<Option<i64>, _>("departed_at_ms").map(to_u64);
        let supported_kinds = SupportedKinds::from_names(row.get::<&str, _>("supported_kinds"))
            .map_err(|e| bad(format!("supported_kinds: {e}")))?;
        Ok((collector, CollectorRecord::restored(generation, report, departed_at_ms, supported_kinds)))
    }

    /// [`Store::commit`].
    async fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(self.db("cannot begin transaction"))?;
        for rows in batch.upsert_producers.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO producers (id, address, interval_ms, labels, pinned_collector, lease_ms, expires_at_ms, \
                 registered_at_ms, assigned_collector, operator_pin, kind, scheme, metrics_path, scrape_timeout_ms) ",
            );
            insert.push_values(rows, |mut row, p| {
                let labels = serde_json::to_string(&p.spec.labels.iter().collect::<BTreeMap<_, _>>())
                    .expect("a map of strings always serialises");
                let prometheus = match &p.spec.collection {
                    Collection::Grpc => None,
                    Collection::Prometheus(target) => Some(target),
                };
                row.push_bind(p.spec.id.to_string())
                    .push_bind(p.spec.address.as_str().to_owned())
                    .push_bind(to_i64(ms(p.spec.interval)))
                    .push_bind(labels)
                    .push_bind(p.spec.pinned.map(|c| c.to_string()))
                    .push_bind(to_i64(ms(p.lease)))
                    .push_bind(to_i64(p.expires_at_ms))
                    .push_bind(to_i64(p.registered_at_ms))
                    .push_bind(p.assigned.map(|c| c.to_string()))
                    .push_bind(p.operator_pin.map(|c| c.to_string()))
                    .push_bind(p.spec.collection.kind().as_str())
                    .push_bind(prometheus.map(|t| t.scheme.as_str()))
                    .push_bind(prometheus.map(|t| t.metrics_path.as_str().to_owned()))
                    .push_bind(prometheus.and_then(|t| t.scrape_timeout).map(|t| to_i64(ms(t))));
            });
            insert.push(
                " ON CONFLICT (id) DO UPDATE SET address = excluded.address, interval_ms = excluded.interval_ms, \
                 labels = excluded.labels, pinned_collector = excluded.pinned_collector, lease_ms = excluded.lease_ms, \
                 expires_at_ms = excluded.expires_at_ms, registered_at_ms = excluded.registered_at_ms, \
                 assigned_collector = excluded.assigned_collector, operator_pin = excluded.operator_pin, \
                 kind = excluded.kind, scheme = excluded.scheme, metrics_path = excluded.metrics_path, \
                 scrape_timeout_ms = excluded.scrape_timeout_ms",
            );
            insert.build().execute(&mut *tx).await.map_err(self.db("cannot write a producer"))?;
        }
        for id in &batch.delete_producers {
            sqlx::query("DELETE FROM producers WHERE id = ?")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(self.db("cannot delete a producer"))?;
        }
        for rows in batch.upsert_collectors.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO collectors (id, generation, reported_epoch, reported_generation, reported_outcome, \
                 reported_reason, reported_at_ms, departed_at_ms, supported_kinds) ",
            );
            insert.push_values(rows, |mut row, (id, c)| {
                let report = c.report.as_ref();
                row.push_bind(id.to_string())
                    .push_bind(to_i64(c.generation))
                    .push_bind(report.map(|r| r.epoch.to_string()))
                    .push_bind(report.map(|r| to_i64(r.generation)))
                    .push_bind(report.map(|r| match r.outcome {
                        ApplyOutcome::Applied => 1_i64,
                        ApplyOutcome::Rejected(_) => 2,
                    }))
                    .push_bind(report.and_then(|r| match &r.outcome {
                        ApplyOutcome::Applied => None,
                        ApplyOutcome::Rejected(reason) => Some(reason.clone()),
                    }))
                    .push_bind(report.map(|r| to_i64(r.at_ms)))
                    .push_bind(c.departed_at_ms().map(to_i64))
                    .push_bind(c.supported_kinds.names());
            });
            insert.push(
                " ON CONFLICT (id) DO UPDATE SET generation = excluded.generation, \
                 reported_epoch = excluded.reported_epoch, reported_generation = excluded.reported_generation, \
                 reported_outcome = excluded.reported_outcome, reported_reason = excluded.reported_reason, \
                 reported_at_ms = excluded.reported_at_ms, departed_at_ms = excluded.departed_at_ms, \
                 supported_kinds = excluded.supported_kinds",
            );
            insert.build().execute(&mut *tx).await.map_err(self.db("cannot write a collector"))?;
        }
        if let Some(at) = batch.settled_at_ms {
            sqlx::query("INSERT INTO meta (key, value) VALUES ('settled_at_ms', ?) ON CONFLICT (key) DO NOTHING")
                .bind(at.to_string())
                .execute(&mut *tx)
                .await
                .map_err(self.db("cannot record that the store settled"))?;
        }
        for id in &batch.delete_collectors {
            sqlx::query("DELETE FROM collectors WHERE id = ?")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(self.db("cannot delete a collector"))?;
        }
        tx.commit().await.map_err(self.db("cannot commit"))?;
        Ok(())
    }
}

impl Store for SqliteStore {
    fn load(&self) -> StoreFuture<'_, Result<Loaded, StoreError>> {
        Box::pin(self.read())
    }

    /// The file has one server: nothing to catch up with, and it always leads.
    fn begin(&self, replica: ReplicaId, _seen: u64, _tick: bool) -> StoreFuture<'_, Result<Begun, StoreError>> {
        let lead = Some(Lead { alive: vec![replica], leaderless_ms: None });
        Box::pin(std::future::ready(Ok(Begun {
            txn: Box::new(SqliteTxn(self.clone())),
            catch_up: None,
            lead,
            evicted: false,
        })))
    }

    fn catch_up(&self, _seen: u64) -> StoreFuture<'_, Result<Option<CatchUp>, StoreError>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    fn follow(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Closes the pool, which checkpoints the WAL into the database file.
    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.pool.close())
    }
}

/// A write to the file. The registry actor is the file's one writer, so it needs no lock until it commits.
struct SqliteTxn(SqliteStore);

impl Txn for SqliteTxn {
    fn commit<'a>(self: Box<Self>, batch: &'a Batch) -> StoreFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move { self.0.write(batch).await.map(|()| 0) })
    }
}

#[cfg(test)]
mod tests {
    use roster::domain::{MetricsPath, ProducerKind};

    use super::*;

    /// A store written by a server from before producer kinds (schema 3) opens, takes migration 0004, and reads its
    /// rows as gRPC producers and collectors of gRPC producers only; then a Prometheus producer, with every field of
    /// its target, and a collector's kinds come back as written.
    #[tokio::test]
    async fn a_store_from_before_kinds_reads_as_grpc_and_kinds_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let schema3 = dir.path().join("schema3");
        std::fs::create_dir(&schema3).unwrap();
        for file in ["0001_initial.sql", "0002_operator_pin.sql", "0003_collector_departed_at.sql"] {
            let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(file);
            std::fs::copy(from, schema3.join(file)).unwrap();
        }
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let options = SqliteConnectOptions::new().filename(data.join(DB_FILE)).create_if_missing(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        sqlx::migrate::Migrator::new(schema3.as_path()).await.unwrap().run(&pool).await.unwrap();
        let (producer, collector) = (ProducerId::new_random(), CollectorId::new_random());
        sqlx::query(
            "INSERT INTO producers (id, address, interval_ms, labels, lease_ms, expires_at_ms, registered_at_ms, \
             assigned_collector) VALUES (?, '127.0.0.1:9100', 1000, '{}', 60000, 1, 1, ?)",
        )
        .bind(producer.to_string())
        .bind(collector.to_string())
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO collectors (id, generation) VALUES (?, 3)")
            .bind(collector.to_string())
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;

        let store = SqliteStore::open(&data, 1).await.unwrap();
        let loaded = store.read().await.unwrap();
        assert_eq!(loaded.producers.len(), 1);
        assert_eq!(loaded.producers[0].spec.collection, Collection::Grpc);
        assert_eq!(loaded.collectors[0].1.supported_kinds, SupportedKinds::GRPC_ONLY);

        let mut record = loaded.producers[0].clone();
        record.spec.collection = Collection::Prometheus(PrometheusTarget {
            scheme: Scheme::Https,
            metrics_path: MetricsPath::parse_field("metrics_path", "/probe/metrics").unwrap(),
            scrape_timeout: Some(Duration::from_millis(750)),
        });
        let (id, mut kept) = loaded.collectors[0].clone();
        kept.supported_kinds = SupportedKinds::GRPC_ONLY.with(ProducerKind::Prometheus);
        let batch = Batch {
            upsert_producers: vec![record.clone()],
            upsert_collectors: vec![(id, kept.clone())],
            ..Batch::default()
        };
        store.write(&batch).await.unwrap();
        store.close().await;
        let loaded = SqliteStore::open(&data, 2).await.unwrap().read().await.unwrap();
        assert_eq!(loaded.producers, vec![record]);
        assert_eq!(loaded.collectors, vec![(id, kept)]);
    }

    /// Rows are written several to a statement: a commit of more than one statement's worth of producers and of
    /// collectors, each row different, reads back row for row, and so does a second commit updating some of them.
    #[tokio::test]
    async fn a_commit_of_many_rows_reads_back_row_for_row() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), 1).await.unwrap();
        let rows = 2 * ROWS_PER_STATEMENT + 3;
        let collectors: Vec<(CollectorId, CollectorRecord)> = (0..rows)
            .map(|i| {
                let report = (i % 3 != 0).then(|| StoredReport {
                    epoch: Uuid::new_v4(),
                    generation: i as u64,
                    outcome: if i % 3 == 1 { ApplyOutcome::Applied } else { ApplyOutcome::Rejected(format!("r{i}")) },
                    at_ms: 1_000 + i as u64,
                });
                let departed = (i % 2 == 0).then_some(2_000 + i as u64);
                (
                    CollectorId::new_random(),
                    CollectorRecord::restored(i as u64 + 1, report, departed, SupportedKinds::GRPC_ONLY),
                )
            })
            .collect();
        let producers: Vec<ProducerRecord> = (0..rows)
            .map(|i| {
                let registration = roster::domain::Registration::try_from(roster::pb::RegisterProducerRequest {
                    producer_id: ProducerId::new_random().to_string(),
                    address: format!("10.0.{}.{}:9100", i / 250, i % 250),
                    interval_ms: 1_000 + i as u32,
                    labels: [("i".to_owned(), i.to_string())].into(),
                    ..Default::default()
                })
                .unwrap();
                ProducerRecord {
                    spec: registration.spec,
                    lease: Duration::from_secs(60),
                    expires_at_ms: 5_000 + i as u64,
                    registered_at_ms: i as u64,
                    assigned: Some(collectors[i].0),
                    operator_pin: (i % 5 == 0).then_some(collectors[0].0),
                }
            })
            .collect();
        let sorted = |mut loaded: Loaded| {
            loaded.producers.sort_by_key(|p| p.spec.id);
            loaded.collectors.sort_by_key(|(id, _)| *id);
            (loaded.producers, loaded.collectors)
        };
        let mut want = (producers.clone(), collectors.clone());
        want.0.sort_by_key(|p| p.spec.id);
        want.1.sort_by_key(|(id, _)| *id);
        store
            .write(&Batch { upsert_producers: producers, upsert_collectors: collectors, ..Batch::default() })
            .await
            .unwrap();
        assert_eq!(sorted(store.read().await.unwrap()), want);

        let renewed: Vec<ProducerRecord> = want
            .0
            .iter()
            .step_by(2)
            .map(|p| ProducerRecord { expires_at_ms: p.expires_at_ms + 60_000, ..p.clone() })
            .collect();
        let bumped: Vec<_> = want
            .1
            .iter()
            .step_by(2)
            .map(|(id, c)| (*id, CollectorRecord { generation: c.generation + 1, ..c.clone() }))
            .collect();
        for p in &renewed {
            *want.0.iter_mut().find(|w| w.spec.id == p.spec.id).unwrap() = p.clone();
        }
        for (id, c) in &bumped {
            want.1.iter_mut().find(|(w, _)| w == id).unwrap().1 = c.clone();
        }
        store.write(&Batch { upsert_producers: renewed, upsert_collectors: bumped, ..Batch::default() }).await.unwrap();
        assert_eq!(sorted(store.read().await.unwrap()), want);
    }
}
