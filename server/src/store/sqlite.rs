//! The SQLite store: an embedded file under the data directory, reached through sqlx; the first [`Store`].
//!
//! The SQL is plain and portable on purpose: the PostgreSQL store (`super::postgres`) writes the same rows
//! (`super::rows`) with sqlx's Postgres driver.
//!
//! Durability: WAL journal with `synchronous = FULL`, so a commit that returned is on disk (an acknowledged
//! registration survives `kill -9` and power loss).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use sqlx::{
    AssertSqlSafe, FromRow as _, QueryBuilder, Row as _, Sqlite, SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use tokio_stream::StreamExt as _;
use uuid::Uuid;

use super::{
    Begun, CatchUp, DatabaseError, Lead, Store, StoreError, StoreFuture, Txn,
    rows::{
        COLLECTOR_COLUMNS, COLLECTOR_UPDATES, CollectorRow, PRODUCER_COLUMNS, PRODUCER_UPDATES, ProducerRow,
        ROWS_PER_STATEMENT, push_collector, push_producer,
    },
};
use crate::records::{Batch, Loaded, ReplicaId};

/// Name of the database file inside the data directory.
const DB_FILE: &str = "roster.db";

/// Name of the lock file inside the data directory. The server that has the store open holds an exclusive lock on
/// it (`flock`), and writes its process id there, so that a second server started on the same directory refuses to
/// start instead of writing rows the first one overwrites (each would show the other's collectors in grace, bump
/// their generations on its own, and report the fleet converged on sets nobody collects). SQLite's own locks do
/// not prevent that: they serialise the two servers' transactions, which each decide on its own memory.
const LOCK_FILE: &str = "roster-server.lock";

/// The SQLite store. A clone shares the connection and the data directory's lock.
#[derive(Debug, Clone)]
pub(crate) struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
    /// Held open, and so locked, as long as the store is.
    _lock: std::sync::Arc<std::fs::File>,
}

/// Takes the data directory's lock ([`LOCK_FILE`]) for this process.
fn lock(data_dir: &Path) -> Result<std::fs::File, StoreError> {
    use std::io::Write as _;
    let path = data_dir.join(LOCK_FILE);
    let not_writable = |source| StoreError::NotWritable { path: data_dir.to_owned(), source };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(not_writable)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let said = std::fs::read_to_string(&path).unwrap_or_default();
            let holder =
                if said.trim().is_empty() { "it has not said which".to_owned() } else { said.trim().to_owned() };
            return Err(StoreError::InUse { dir: data_dir.to_owned(), holder });
        }
        Err(std::fs::TryLockError::Error(source)) => return Err(not_writable(source)),
    }
    file.set_len(0)
        .and_then(|()| writeln!(file, "process {} holds {}", std::process::id(), path.display()))
        .map_err(not_writable)?;
    Ok(file)
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
        roster::process::check_writable(data_dir)
            .map_err(|source| StoreError::NotWritable { path: data_dir.to_owned(), source })?;
        let lock = std::sync::Arc::new(lock(data_dir)?);
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
        Ok(Self { pool, path, _lock: lock })
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
        // Statements built from constants only (`super::rows`): nothing of a request reaches the SQL text.
        let sql = AssertSqlSafe(format!("SELECT {PRODUCER_COLUMNS} FROM producers ORDER BY id"));
        let mut rows = sqlx::query(sql).fetch(&self.pool);
        let mut producers = Vec::new();
        while let Some(row) = rows.next().await {
            let row = row.map_err(self.db("cannot read producers"))?;
            let columns = ProducerRow::from_row(&row).map_err(self.db("cannot read producers"))?;
            producers.push(columns.record().map_err(|problem| self.corrupt("producers", problem))?);
        }
        drop(rows);

        let rows = sqlx::query(AssertSqlSafe(format!("SELECT {COLLECTOR_COLUMNS} FROM collectors ORDER BY id")))
            .fetch_all(&self.pool)
            .await
            .map_err(self.db("cannot read collectors"))?;
        let collectors = rows
            .iter()
            .map(|row| {
                CollectorRow::from_row(row)
                    .map_err(self.db("cannot read collectors"))?
                    .record()
                    .map_err(|problem| self.corrupt("collectors", problem))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Loaded { epoch, revision: 0, settled_at_ms, producers, collectors })
    }

    /// [`Store::commit`].
    async fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(self.db("cannot begin transaction"))?;
        for rows in batch.upsert_producers.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(format!("INSERT INTO producers ({PRODUCER_COLUMNS}) "));
            insert.push_values(rows, |mut row, p| push_producer(&mut row, p));
            insert.push(format!(" ON CONFLICT (id) DO UPDATE SET {PRODUCER_UPDATES}"));
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
            let mut insert = QueryBuilder::<Sqlite>::new(format!("INSERT INTO collectors ({COLLECTOR_COLUMNS}) "));
            insert.push_values(rows, |mut row, (id, c)| push_collector(&mut row, *id, c));
            insert.push(format!(" ON CONFLICT (id) DO UPDATE SET {COLLECTOR_UPDATES}"));
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
    fn close(&self, _replica: ReplicaId) -> StoreFuture<'_, ()> {
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
    use roster::domain::{
        Collection, CollectorId, MetricsPath, ProducerId, ProducerKind, PrometheusTarget, Scheme, SupportedKinds,
    };

    use super::*;
    use crate::store::conformance;

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
        store.close(ReplicaId::new_v4()).await;
        drop(store);
        let loaded = SqliteStore::open(&data, 2).await.unwrap().read().await.unwrap();
        assert_eq!(loaded.producers, vec![record]);
        assert_eq!(loaded.collectors, vec![(id, kept)]);
    }

    #[tokio::test]
    async fn a_second_store_on_the_same_data_directory_is_refused_until_the_first_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let first = SqliteStore::open(dir.path(), 1).await.unwrap();
        let refused = SqliteStore::open(dir.path(), 2).await.unwrap_err();
        let message = refused.to_string();
        assert!(matches!(refused, StoreError::InUse { .. }), "{refused:?}");
        assert!(message.contains(&format!("process {} holds", std::process::id())), "names the holder: {message}");
        assert!(message.contains("--data-dir"), "names the fix: {message}");
        drop(first);
        SqliteStore::open(dir.path(), 2).await.unwrap();
    }

    #[tokio::test]
    async fn sqlite_store_reads_back_many_rows_row_for_row() {
        let dir = tempfile::tempdir().unwrap();
        conformance::many_rows_read_back_row_for_row(&SqliteStore::open(dir.path(), 1).await.unwrap()).await;
    }

    #[tokio::test]
    async fn sqlite_store_deletes_and_settles_once() {
        let dir = tempfile::tempdir().unwrap();
        conformance::deletes_and_settling_read_back(&SqliteStore::open(dir.path(), 1).await.unwrap()).await;
    }

    #[tokio::test]
    async fn sqlite_store_keeps_its_epoch_and_writes_nothing_for_an_empty_batch() {
        let dir = tempfile::tempdir().unwrap();
        conformance::an_empty_batch_writes_nothing(&SqliteStore::open(dir.path(), 1).await.unwrap()).await;
        let epoch = SqliteStore::open(dir.path(), 1).await.unwrap().read().await.unwrap().epoch;
        assert_eq!(SqliteStore::open(dir.path(), 2).await.unwrap().read().await.unwrap().epoch, epoch);
    }
}
