//! The PostgreSQL store: the registry's records in a PostgreSQL database (`--store postgres://…`) that several
//! replicas share, reached through sqlx; the same [`Store`] semantics as the SQLite store (`super::sqlite`), the
//! same rows (`super::rows`), in a schema of its own (`server/migrations-postgres/`).
//!
//! What several replicas add:
//! - **Migrations run once** when replicas start together: sqlx's Postgres migrator holds `pg_advisory_lock` on a
//!   key derived from the database's name while it checks and applies migrations (sqlx-postgres 0.9
//!   `src/migrate.rs`, `lock`), so a second replica waits, then finds them applied. The epoch is then inserted
//!   unless its row exists, so whoever comes first makes it and every replica reads the same one.
//! - **A replica older than the schema refuses to start** ([`StoreError::SchemaTooNew`]): it would misread rows a
//!   newer roster-server writes.
//! - **Revisions**: every commit's first statement takes the next value of the one-row `meta.revision` counter
//!   (`UPDATE … RETURNING`). Its row lock is held until the commit ends, so writers are serialised on it and commit
//!   order is revision order: a replica that has seen revision R has seen every commit up to R, which a sequence
//!   (allocated before commit, visible out of order) would not give. Every row the commit writes carries its
//!   revision, every deletion leaves a tombstone with it, and `pg_notify('roster', revision)` wakes the listening
//!   replicas when (and only if) the transaction commits.
//! - **Retries**: a commit that fails with a serialization failure (SQLSTATE 40001) or a deadlock (40P01) is run
//!   again, a bounded number of times ([`RETRY_ATTEMPTS`]); anything else fails the commit ([`StoreError::Db`]),
//!   which the registry answers with `UNAVAILABLE`.
//!
//! Durability is PostgreSQL's: a commit returns once its WAL record is flushed (`synchronous_commit = on`, the
//! default; the operator's to keep).

use std::{fmt, str::FromStr as _, time::Duration};

use sqlx::{
    AssertSqlSafe, FromRow as _, PgPool, Postgres, QueryBuilder, Row as _,
    migrate::{MigrateError, Migrator},
    postgres::{PgConnectOptions, PgPoolOptions},
};
use tokio_stream::StreamExt as _;
use uuid::Uuid;

use super::{
    DatabaseError, Store, StoreError, StoreFuture,
    rows::{
        COLLECTOR_COLUMNS, COLLECTOR_UPDATES, CollectorRow, PRODUCER_COLUMNS, PRODUCER_UPDATES, ProducerRow,
        ROWS_PER_STATEMENT, push_collector, push_producer, to_i64,
    },
};
use crate::records::{Batch, Loaded};

/// The schema's migrations, built into the binary.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations-postgres");

/// The channel every commit notifies, with its revision (decimal) as the payload.
pub(crate) const NOTIFY_CHANNEL: &str = "roster";

/// Connections of a replica's pool: the registry commits one batch at a time, so one writes while another loads or
/// serves a read; a few more absorb a connection being re-established.
const MAX_CONNECTIONS: u32 = 4;

/// How long a call waits for a connection: short, so that while PostgreSQL is unreachable a write answers
/// `UNAVAILABLE` within seconds instead of hanging on a connection that will not come (sqlx's default is 30 s).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// Attempts of a commit that fails with a serialization failure or a deadlock, the first included: bounded as
/// omicron's transaction retries are, so that a conflict that keeps coming back fails the write rather than hangs
/// it. With the revision row serialising writers, a conflict needs a writer outside roster's commits.
const RETRY_ATTEMPTS: u32 = 10;

/// The longest pause before a retry; each pause is random below it (jitter), so that conflicting writers do not
/// retry in lockstep, and doubles from 1 ms up to it with each attempt.
const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(50);

/// A PostgreSQL URL (`postgres://…` or `postgresql://…`), checked when parsed. Shown without its password (and
/// without any option but the address, the user and the database), so that it can be logged.
#[derive(Clone)]
pub struct PostgresUrl {
    url: String,
    /// Boxed: it is large (360 bytes), and a [`crate::StoreLocation`] is mostly a directory.
    options: Box<PgConnectOptions>,
}

impl PostgresUrl {
    /// Checks `url` as libpq would take it.
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn parse(url: &str) -> Result<Self, String> {
        let options = PgConnectOptions::from_str(url).map_err(|e| e.to_string())?;
        Ok(Self { url: url.to_owned(), options: Box::new(options) })
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        match o.get_socket() {
            Some(socket) => write!(f, "postgres://{}@{}", o.get_username(), socket.display())?,
            None => write!(f, "postgres://{}@{}:{}", o.get_username(), o.get_host(), o.get_port())?,
        }
        write!(f, "/{}", o.get_database().unwrap_or(o.get_username()))
    }
}

impl fmt::Debug for PostgresUrl {
    /// As [`fmt::Display`]: never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

impl PartialEq for PostgresUrl {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url
    }
}

impl Eq for PostgresUrl {}

/// The PostgreSQL store.
#[derive(Debug)]
pub(crate) struct PostgresStore {
    pool: PgPool,
    /// The database, as errors name it ([`PostgresUrl`]'s display).
    name: String,
}

/// Whether a failed statement is worth running again: a serialization failure or a deadlock, which PostgreSQL
/// resolves by failing one transaction that would succeed on its own.
fn retryable(error: &sqlx::Error) -> bool {
    error.as_database_error().and_then(|e| e.code()).is_some_and(|code| code == "40001" || code == "40P01")
}

impl PostgresStore {
    /// Connects to the database at `url`, brings its schema up to date (once, whichever replica comes first) and
    /// makes its epoch if it has none. `now_ms` is recorded as the epoch's creation time.
    ///
    /// # Errors
    /// When the database cannot be reached, its schema is newer than this binary's ([`StoreError::SchemaTooNew`])
    /// or cannot be migrated, or the epoch cannot be written.
    pub(crate) async fn open(url: &PostgresUrl, now_ms: u64) -> Result<Self, StoreError> {
        let name = url.to_string();
        let db = |context: &'static str| {
            let name = &name;
            move |source| StoreError::Db { context, store: name.clone(), source: DatabaseError::new(source) }
        };
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with((*url.options).clone())
            .await
            .map_err(db("cannot connect to the database"))?;
        MIGRATOR.run(&pool).await.map_err(|source| match source {
            MigrateError::VersionMissing(found) => StoreError::SchemaTooNew {
                store: name.clone(),
                found,
                known: MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0),
            },
            source => StoreError::Migrate { store: name.clone(), source: DatabaseError::new(source) },
        })?;
        sqlx::query("INSERT INTO meta (epoch, epoch_created_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(Uuid::new_v4().to_string())
            .bind(to_i64(now_ms))
            .execute(&pool)
            .await
            .map_err(db("cannot write the epoch"))?;
        Ok(Self { pool, name })
    }

    /// What a failed `context` becomes.
    fn db(&self, context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
        move |source| StoreError::Db { context, store: self.name.clone(), source: DatabaseError::new(source) }
    }

    fn corrupt(&self, table: &'static str, problem: String) -> StoreError {
        StoreError::Corrupt { store: self.name.clone(), table, problem }
    }

    /// [`Store::load`]: in one read-only snapshot, so that a load racing other replicas' commits still reads one
    /// consistent state.
    async fn read(&self) -> Result<Loaded, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(self.db("cannot begin a read"))?;
        let meta = sqlx::query("SELECT epoch, epoch_created_ms, settled_at_ms FROM meta")
            .fetch_optional(&mut *tx)
            .await
            .map_err(self.db("cannot read meta"))?
            .ok_or_else(|| self.corrupt("meta", "no row (no epoch)".into()))?;
        let epoch = Uuid::parse_str(meta.get("epoch"))
            .map_err(|e| self.corrupt("meta", format!("epoch {:?}: {e}", meta.get::<&str, _>("epoch"))))?;
        let settled_at_ms = meta.get::<Option<i64>, _>("settled_at_ms").map(|v| u64::try_from(v).unwrap_or(0));

        // Each row becomes a record as it arrives, as in the SQLite store: nothing but the records is held.
        // Statements built from constants only (`super::rows`): nothing of a request reaches the SQL text.
        let sql = AssertSqlSafe(format!("SELECT {PRODUCER_COLUMNS} FROM producers ORDER BY id"));
        let mut rows = sqlx::query(sql).fetch(&mut *tx);
        let mut producers = Vec::new();
        while let Some(row) = rows.next().await {
            let row = row.map_err(self.db("cannot read producers"))?;
            let columns = ProducerRow::from_row(&row).map_err(self.db("cannot read producers"))?;
            producers.push(columns.record().map_err(|problem| self.corrupt("producers", problem))?);
        }
        drop(rows);

        let rows = sqlx::query(AssertSqlSafe(format!("SELECT {COLLECTOR_COLUMNS} FROM collectors ORDER BY id")))
            .fetch_all(&mut *tx)
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
        tx.commit().await.map_err(self.db("cannot end a read"))?;
        Ok(Loaded { epoch, settled_at_ms, producers, collectors })
    }

    /// [`Store::commit`]: [`PostgresStore::try_write`], again after a serialization failure or a deadlock, at most
    /// [`RETRY_ATTEMPTS`] times in all.
    async fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut attempt = 1;
        loop {
            match self.try_write(batch).await {
                Ok(()) => return Ok(()),
                Err((_, source)) if attempt < RETRY_ATTEMPTS && retryable(&source) => {
                    let ceiling = (Duration::from_millis(1) * 2_u32.pow(attempt)).min(RETRY_BACKOFF_MAX);
                    tokio::time::sleep(ceiling.mul_f64(rand::random::<f64>())).await;
                    attempt += 1;
                }
                Err((context, source)) => return Err(self.db(context)(source)),
            }
        }
    }

    /// One attempt at committing `batch` (not empty) in one transaction; on failure, what was being done and why.
    async fn try_write(&self, batch: &Batch) -> Result<(), (&'static str, sqlx::Error)> {
        let fail = |context: &'static str| move |e| (context, e);
        let mut tx = self.pool.begin().await.map_err(fail("cannot begin transaction"))?;
        // First: the row lock that serialises writers (see the module doc).
        let revision: i64 = sqlx::query_scalar("UPDATE meta SET revision = revision + 1 RETURNING revision")
            .fetch_one(&mut *tx)
            .await
            .map_err(fail("cannot take the next revision"))?;
        for rows in batch.upsert_producers.chunks(ROWS_PER_STATEMENT) {
            let mut insert =
                QueryBuilder::<Postgres>::new(format!("INSERT INTO producers ({PRODUCER_COLUMNS}, revision) "));
            insert.push_values(rows, |mut row, p| {
                push_producer(&mut row, p);
                row.push_bind(revision);
            });
            insert.push(format!(" ON CONFLICT (id) DO UPDATE SET {PRODUCER_UPDATES}, revision = excluded.revision"));
            insert.build().execute(&mut *tx).await.map_err(fail("cannot write a producer"))?;
        }
        if !batch.delete_producers.is_empty() {
            let ids: Vec<String> = batch.delete_producers.iter().map(ToString::to_string).collect();
            delete_with_tombstones(&mut tx, "producers", "producer", &ids, revision)
                .await
                .map_err(fail("cannot delete a producer"))?;
        }
        for rows in batch.upsert_collectors.chunks(ROWS_PER_STATEMENT) {
            let mut insert =
                QueryBuilder::<Postgres>::new(format!("INSERT INTO collectors ({COLLECTOR_COLUMNS}, revision) "));
            insert.push_values(rows, |mut row, (id, c)| {
                push_collector(&mut row, *id, c);
                row.push_bind(revision);
            });
            insert.push(format!(" ON CONFLICT (id) DO UPDATE SET {COLLECTOR_UPDATES}, revision = excluded.revision"));
            insert.build().execute(&mut *tx).await.map_err(fail("cannot write a collector"))?;
        }
        if let Some(at) = batch.settled_at_ms {
            // Recorded once, as in the SQLite store: the first settling stands.
            sqlx::query("UPDATE meta SET settled_at_ms = COALESCE(settled_at_ms, $1)")
                .bind(to_i64(at))
                .execute(&mut *tx)
                .await
                .map_err(fail("cannot record that the store settled"))?;
        }
        if !batch.delete_collectors.is_empty() {
            let ids: Vec<String> = batch.delete_collectors.iter().map(ToString::to_string).collect();
            delete_with_tombstones(&mut tx, "collectors", "collector", &ids, revision)
                .await
                .map_err(fail("cannot delete a collector"))?;
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(NOTIFY_CHANNEL)
            .bind(revision.to_string())
            .execute(&mut *tx)
            .await
            .map_err(fail("cannot notify the other replicas"))?;
        tx.commit().await.map_err(fail("cannot commit"))
    }
}

/// Deletes the rows of `ids` from `table` and leaves a tombstone of `kind` at `revision` for each row that was
/// there, in one statement.
async fn delete_with_tombstones(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    table: &'static str,
    kind: &'static str,
    ids: &[String],
    revision: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(AssertSqlSafe(format!(
        "WITH gone AS (DELETE FROM {table} WHERE id = ANY($1) RETURNING id) \
         INSERT INTO tombstones (kind, id, revision) SELECT $2, id, $3 FROM gone \
         ON CONFLICT (kind, id) DO UPDATE SET revision = excluded.revision"
    )))
    .bind(ids)
    .bind(kind)
    .bind(revision)
    .execute(&mut **tx)
    .await
    .map(drop)
}

impl Store for PostgresStore {
    fn load(&self) -> StoreFuture<'_, Result<Loaded, StoreError>> {
        Box::pin(self.read())
    }

    fn commit<'a>(&'a self, batch: &'a Batch) -> StoreFuture<'a, Result<(), StoreError>> {
        Box::pin(self.write(batch))
    }

    /// Closes the pool: every connection ends cleanly.
    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.pool.close())
    }
}

#[cfg(test)]
mod tests {
    use roster_testkit::{TestPostgres, WAIT, wait_for_some};
    use sqlx::{Connection as _, PgConnection, postgres::PgListener};

    use super::*;
    use crate::{records::ProducerRecord, store::conformance};

    async fn open(pg: &TestPostgres) -> PostgresStore {
        PostgresStore::open(&PostgresUrl::parse(&pg.url()).unwrap(), 1).await.unwrap()
    }

    async fn connect(pg: &TestPostgres) -> PgConnection {
        PgConnection::connect(&pg.url()).await.unwrap()
    }

    async fn revision(conn: &mut PgConnection) -> i64 {
        sqlx::query_scalar("SELECT revision FROM meta").fetch_one(conn).await.unwrap()
    }

    #[tokio::test]
    async fn postgres_store_reads_back_many_rows_row_for_row() {
        let pg = TestPostgres::start().await;
        conformance::many_rows_read_back_row_for_row(&open(&pg).await).await;
    }

    #[tokio::test]
    async fn postgres_store_deletes_and_settles_once() {
        let pg = TestPostgres::start().await;
        conformance::deletes_and_settling_read_back(&open(&pg).await).await;
    }

    #[tokio::test]
    async fn postgres_store_keeps_its_epoch_and_writes_nothing_for_an_empty_batch() {
        let pg = TestPostgres::start().await;
        conformance::an_empty_batch_writes_nothing(&open(&pg).await).await;
        let epoch = open(&pg).await.read().await.unwrap().epoch;
        assert_eq!(open(&pg).await.read().await.unwrap().epoch, epoch);
    }

    /// Every commit that writes takes the next revision, an empty one none; each row written carries its commit's
    /// revision, and each deletion leaves a tombstone with it.
    #[tokio::test]
    async fn postgres_store_revision_counts_commits_and_deletions_leave_tombstones() {
        let pg = TestPostgres::start().await;
        let store = open(&pg).await;
        let mut conn = connect(&pg).await;
        assert_eq!(revision(&mut conn).await, 0);
        let collectors = conformance::collectors(2);
        let producers = conformance::producers(3, &collectors);
        let batch =
            Batch { upsert_producers: producers.clone(), upsert_collectors: collectors.clone(), ..Batch::default() };
        store.commit(&batch).await.unwrap();
        assert_eq!(revision(&mut conn).await, 1);
        store.commit(&Batch::default()).await.unwrap();
        assert_eq!(revision(&mut conn).await, 1, "an empty batch takes no revision");

        let renewed = ProducerRecord { expires_at_ms: 99_000, ..producers[1].clone() };
        let batch = Batch {
            upsert_producers: vec![renewed],
            delete_producers: vec![producers[0].spec.id],
            delete_collectors: vec![collectors[1].0],
            ..Batch::default()
        };
        store.commit(&batch).await.unwrap();
        assert_eq!(revision(&mut conn).await, 2);
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT id, revision FROM producers ORDER BY revision, id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert_eq!(rows, vec![(producers[2].spec.id.to_string(), 1), (producers[1].spec.id.to_string(), 2)]);
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT id, revision FROM collectors").fetch_all(&mut conn).await.unwrap();
        assert_eq!(rows, vec![(collectors[0].0.to_string(), 1)]);
        let mut tombstones: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT kind, id, revision FROM tombstones").fetch_all(&mut conn).await.unwrap();
        tombstones.sort();
        assert_eq!(
            tombstones,
            vec![
                ("collector".to_owned(), collectors[1].0.to_string(), 2),
                ("producer".to_owned(), producers[0].spec.id.to_string(), 2),
            ]
        );
    }

    /// A replica listening on the channel hears each commit's revision.
    #[tokio::test]
    async fn postgres_store_notifies_each_commit_with_its_revision() {
        let pg = TestPostgres::start().await;
        let store = open(&pg).await;
        let mut listener = PgListener::connect(&pg.url()).await.unwrap();
        listener.listen(NOTIFY_CHANNEL).await.unwrap();
        let collectors = conformance::collectors(1);
        for want in ["1", "2"] {
            let batch = Batch { upsert_collectors: collectors.clone(), ..Batch::default() };
            store.commit(&batch).await.unwrap();
            let heard = tokio::time::timeout(WAIT, listener.recv()).await.expect("a notification in time").unwrap();
            assert_eq!((heard.channel(), heard.payload()), (NOTIFY_CHANNEL, want));
        }
    }

    /// Only a serialization failure and a deadlock are retried: classified on PostgreSQL's own errors.
    #[tokio::test]
    async fn postgres_store_retries_only_serialization_failures_and_deadlocks() {
        let pg = TestPostgres::start().await;
        drop(open(&pg).await);
        let (mut first, mut second) = (connect(&pg).await, connect(&pg).await);
        sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT revision FROM meta")
            .execute(&mut first)
            .await
            .unwrap();
        sqlx::query("UPDATE meta SET revision = revision + 1").execute(&mut second).await.unwrap();
        let conflict = sqlx::query("UPDATE meta SET revision = revision + 1").execute(&mut first).await.unwrap_err();
        assert_eq!(conflict.as_database_error().and_then(|e| e.code()).as_deref(), Some("40001"), "{conflict}");
        assert!(retryable(&conflict));
        let syntax = sqlx::query("SELEKT 1").execute(&mut second).await.unwrap_err();
        assert!(!retryable(&syntax), "{syntax}");
    }

    /// A commit that deadlocks with another transaction (which PostgreSQL resolves by failing the commit, 40P01) is
    /// run again and succeeds once the other transaction ends; failed attempts leave no trace.
    #[tokio::test]
    async fn postgres_store_commits_after_losing_a_deadlock() {
        let pg = TestPostgres::start().await;
        let store = open(&pg).await;
        let collectors = conformance::collectors(1);
        let producer = conformance::producers(1, &collectors).remove(0);
        store.commit(&Batch { upsert_producers: vec![producer.clone()], ..Batch::default() }).await.unwrap();

        // Another transaction holds the producer's row; the commit takes the revision row, then waits for it.
        let mut other = connect(&pg).await;
        // Its own deadlock check comes late, so that the commit's (after PostgreSQL's default 1 s) finds the cycle.
        sqlx::raw_sql("SET deadlock_timeout = '30s'; BEGIN").execute(&mut other).await.unwrap();
        sqlx::query("UPDATE producers SET expires_at_ms = 0 WHERE id = $1")
            .bind(producer.spec.id.to_string())
            .execute(&mut other)
            .await
            .unwrap();
        let renewed = ProducerRecord { expires_at_ms: 77_000, ..producer };
        let batch = Batch { upsert_producers: vec![renewed.clone()], ..Batch::default() };
        let observer = PgPool::connect(&pg.url()).await.unwrap();
        let drive = async {
            wait_for_some("the commit to wait for the producer's row", || {
                let observer = observer.clone();
                async move {
                    sqlx::query_scalar::<_, i64>(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                         AND query LIKE 'INSERT INTO producers%'",
                    )
                    .fetch_one(&observer)
                    .await
                    .unwrap()
                    .eq(&1)
                    .then_some(())
                }
            })
            .await;
            // Now it waits for the commit's revision row: a cycle, which fails the commit's first attempt.
            sqlx::query("UPDATE meta SET revision = revision").execute(&mut other).await.unwrap();
            sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();
        };
        let (committed, ()) = tokio::join!(store.commit(&batch), drive);
        committed.unwrap();
        // The first attempt deadlocked (a retry may deadlock again, when it takes the revision row before the other
        // transaction wakes up to it). Statistics reach pg_stat_database when a backend flushes them: wait for them.
        wait_for_some("PostgreSQL to count the deadlock", || {
            let observer = observer.clone();
            async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
                )
                .fetch_one(&observer)
                .await
                .unwrap()
                .ge(&1)
                .then_some(())
            }
        })
        .await;
        assert_eq!(revision(&mut connect(&pg).await).await, 2, "the failed attempts' revisions were rolled back");
        assert_eq!(store.read().await.unwrap().producers, vec![renewed]);
    }

    /// A database migrated by a newer roster-server (a schema version this binary does not know) is refused, naming
    /// both versions and the fix.
    #[tokio::test]
    async fn postgres_store_refuses_a_schema_newer_than_it_knows() {
        let pg = TestPostgres::start().await;
        drop(open(&pg).await);
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9, 'from a newer roster-server', true, '\\x00', 0)",
        )
        .execute(&mut connect(&pg).await)
        .await
        .unwrap();
        let e = PostgresStore::open(&PostgresUrl::parse(&pg.url()).unwrap(), 1).await.unwrap_err();
        assert!(matches!(e, StoreError::SchemaTooNew { found: 9, known: 1, .. }), "{e:?}");
        let message = e.to_string();
        assert!(message.contains("schema version 9") && message.contains("(up to 1)"), "{message}");
        assert!(message.contains("upgrade this replica"), "{message}");
    }

    /// Three replicas opening one empty database at once migrate it once and agree on one epoch.
    #[tokio::test]
    async fn postgres_store_concurrent_first_opens_agree_on_one_epoch() {
        let pg = TestPostgres::start().await;
        let url = PostgresUrl::parse(&pg.url()).unwrap();
        let (a, b, c) =
            tokio::join!(PostgresStore::open(&url, 1), PostgresStore::open(&url, 2), PostgresStore::open(&url, 3));
        let mut epochs = Vec::new();
        for store in [a, b, c] {
            epochs.push(store.unwrap().read().await.unwrap().epoch);
        }
        assert!(epochs.iter().all(|e| *e == epochs[0]), "{epochs:?}");
        let migrations: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
            .fetch_one(&mut connect(&pg).await)
            .await
            .unwrap();
        assert_eq!(migrations, 1);
    }
}
