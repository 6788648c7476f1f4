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
//! - **Revisions**: every write locks the one-row `meta` first, and a commit that writes anything takes the next
//!   value of its `revision` counter. The row lock is held until the commit ends, so writers are serialised on it and
//!   commit order is revision order: a replica that has seen revision R has seen every commit up to R, which a sequence
//!   (allocated before commit, visible out of order) would not give. Every row the commit writes carries its
//!   revision, every deletion leaves a tombstone with it, and `pg_notify('roster', revision)` wakes the listening
//!   replicas when (and only if) the transaction commits.
//! - **Replicas** (`replicas`): a write takes the `meta` row's lock first ([`Store::begin`]), reads what was
//!   committed since the replica's revision, and says whether the replica leads; the registry decides its batch
//!   under that lock and commits it with the next revision ([`Txn::commit`]). A listener brings the revisions other
//!   replicas commit ([`Store::follow`]).
//! - **Retries**: a serialization failure (SQLSTATE 40001) or a deadlock (40P01) is retried, a bounded number of
//!   times in all ([`RETRY_ATTEMPTS`]). At the start of a write (the lock and the reads under it) nothing has been
//!   decided yet, so it simply runs again. At the commit, the batch was decided on the revision read under the lock:
//!   it is written again under the lock taken anew if no commit came in between, and fails otherwise. With every
//!   roster writer taking the lock first, only a writer outside roster (an operator's transaction) can cause one.
//!   Anything else fails ([`StoreError::Db`]); the registry answers `UNAVAILABLE` and reloads its state.
//!
//! - **The lock is held for three round trips and no disk flush**: the transaction's start, the lock and the catch-up
//!   reads go as one message (`replicas::read_since`), the batch as one statement ([`write`]), then the commit, which
//!   does not wait for the WAL flush ([`BEGIN_WRITE`]), with the wait for durability in the same message
//!   ([`InWrite`]). Every writer waits on the lock, so its hold bounds the writes of all replicas together; a flush
//!   (milliseconds on a slow disk) would be most of it, and so would a read that scans a table: the catch-up reads
//!   go through the indexes on `revision` (`replicas::reads_since`).
//!
//! Durability is PostgreSQL's, waited for outside the lock: a write returns, and a catch-up or a load hands back
//! what it read, only once a synchronous commit after it was flushed ([`durable`]). So nothing is answered or served
//! that a crash of the database could take back. That needs `synchronous_commit` on (the default) for roster's
//! role: the operator's to keep.

mod replicas;

use std::{
    fmt,
    str::FromStr as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sqlx::{
    AssertSqlSafe, Connection as _, FromRow as _, PgConnection, PgExecutor, PgPool, Postgres, QueryBuilder, Row as _,
    migrate::{MigrateError, Migrator},
    pool::PoolConnection,
    postgres::{PgConnectOptions, PgPoolOptions, PgRow},
};
use tokio::sync::watch;
use tokio_stream::StreamExt as _;
use uuid::Uuid;

use self::replicas::{ReadError, Reading};
use super::{
    Begun, CatchUp, DatabaseError, Store, StoreError, StoreFuture, Txn,
    rows::{
        COLLECTOR_COLUMNS, COLLECTOR_UPDATES, CollectorRow, PRODUCER_COLUMNS, PRODUCER_UPDATES, ProducerRow,
        ROWS_PER_STATEMENT, push_collector, push_producer, to_i64,
    },
};
use roster::domain::CollectorId;

use crate::records::{Batch, CollectorRecord, Loaded, ProducerRecord, ReplicaId};

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

/// Longest a write or a catch-up waits on PostgreSQL before it counts as unreachable. A database cut off without
/// its connections being closed (a network partition: a half-open connection) would otherwise hold the registry
/// until TCP gives up, minutes later, and with it the replica's every call and tick. Well above any commit roster
/// makes (a batch of 512 calls; a sweep lapsing many leases at once), and far below TCP's own timeouts. When it
/// strikes during a commit, the commit may or may not have happened: the registry reloads its state, the callers
/// get `UNAVAILABLE` and retry (every call is idempotent, R1).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How a write's transaction begins: its commit does not wait for its WAL to be flushed, so that the write lock (held
/// until the commit ends) is not held across a disk flush, which on a slow disk takes milliseconds and would bound
/// every replica's writes together. Durability is then waited for after the lock is released ([`durable`]), before
/// anything is answered or served.
const BEGIN_WRITE: &str = "BEGIN; SET LOCAL synchronous_commit TO OFF";

/// [`FENCE`]'s text, for the constants made of it.
macro_rules! fence {
    () => {
        "SELECT pg_logical_emit_message(true, 'roster', 'durable')"
    };
}

/// A write that commits synchronously, to wait on: a transactional logical-decoding message (no table, any role may
/// emit one) whose commit returns only once the WAL is flushed up to it, and so past every commit before it.
const FENCE: &str = fence!();

/// A write's commit followed, in the same message, by [`FENCE`] in a transaction of its own (PostgreSQL runs the
/// statements after a `COMMIT` in a message as one implicit transaction, under the session's `synchronous_commit`,
/// not the write's): the lock is released by the `COMMIT`, and the message is answered once the write is durable.
const COMMIT_DURABLY: &str = concat!("COMMIT; ", fence!());

/// What a failed [`durable`] was doing.
const FENCE_FAILED: &str = "cannot wait for the commit to be durable";

/// Returns once everything committed before it was called is durable: PostgreSQL flushes its WAL in order, and
/// [`FENCE`]'s commit waits for the flush of its own record, which comes after theirs. Replicas share the flushes
/// (group commit): a fence waiting while another flush runs is served by the next one. So a write is acknowledged
/// only once durable (its commit waits for no flush, see [`BEGIN_WRITE`]), and what a replica catches up on (which
/// another replica may have committed without its flush yet) is served only once durable: a crash of the database
/// cannot take back anything a replica answered or a collector was sent.
async fn durable<'c>(on: impl PgExecutor<'c>) -> sqlx::Result<()> {
    sqlx::query(FENCE).execute(on).await.map(drop)
}

/// `call`, or a timeout error naming `context` once [`CALL_TIMEOUT`] passed.
async fn within<T>(
    context: &'static str,
    store: &str,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(CALL_TIMEOUT, call).await.unwrap_or_else(|_| {
        Err(StoreError::Db {
            context,
            store: store.to_owned(),
            source: DatabaseError::new(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from PostgreSQL within {} s", CALL_TIMEOUT.as_secs()),
            ))),
        })
    })
}

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
    name: Arc<str>,
    /// How long a replica may go unheard, and the leader's lease (`crate::config::DEFAULT_REPLICA_TIMEOUT`).
    replica_timeout: Duration,
    /// Set once this replica's heartbeat row was committed: from then on, a missing row means it was taken for gone.
    registered: Arc<AtomicBool>,
    /// The revisions other replicas announce (`replicas::listen`).
    announced: watch::Receiver<u64>,
}

/// Whether a failed statement is worth running again: a serialization failure or a deadlock, which PostgreSQL
/// resolves by failing one transaction that would succeed on its own.
fn retryable(error: &sqlx::Error) -> bool {
    error.as_database_error().and_then(|e| e.code()).is_some_and(|code| code == "40001" || code == "40P01")
}

impl PostgresStore {
    /// Connects to the database at `url`, brings its schema up to date (once, whichever replica comes first) and
    /// makes its epoch if it has none. `now_ms` is recorded as the epoch's creation time. `replica_timeout` is how
    /// long a replica may go unheard, and the leader's lease.
    ///
    /// # Errors
    /// When the database cannot be reached, its schema is newer than this binary's ([`StoreError::SchemaTooNew`])
    /// or cannot be migrated, or the epoch cannot be written.
    pub(crate) async fn open(url: &PostgresUrl, now_ms: u64, replica_timeout: Duration) -> Result<Self, StoreError> {
        let name = url.to_string();
        let db = |context: &'static str| {
            let name = &name;
            move |source| StoreError::Db { context, store: name.clone(), source: DatabaseError::new(source) }
        };
        let pool = match PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with((*url.options).clone())
            .await
        {
            Ok(pool) => pool,
            // The pool retries until its time limit and then says only that it timed out; one connection of our
            // own says why (refused, unknown host, authentication failed, no such database).
            Err(sqlx::Error::PoolTimedOut) => {
                let why = PgConnection::connect_with(&url.options).await.err().unwrap_or(sqlx::Error::PoolTimedOut);
                return Err(db("cannot connect to the database")(why));
            }
            Err(e) => return Err(db("cannot connect to the database")(e)),
        };
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
        let announced = replicas::listen(pool.clone());
        Ok(Self { pool, name: name.into(), replica_timeout, registered: Arc::new(AtomicBool::new(false)), announced })
    }

    /// What a failed `context` becomes.
    fn db(&self, context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
        move |source| StoreError::Db { context, store: self.name.to_string(), source: DatabaseError::new(source) }
    }

    /// What a failed read becomes.
    fn read_failed(&self, error: ReadError) -> StoreError {
        error.into_store_error(&self.name)
    }

    /// [`Store::load`]: in one read-only snapshot, so that a load racing other replicas' commits still reads one
    /// consistent state.
    async fn read(&self) -> Result<Loaded, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(self.db("cannot begin a read"))?;
        let loaded = read_snapshot(&mut conn).await.map_err(|e| self.read_failed(e))?;
        // A load may take seconds (everything, at start); the wait for durability after it is bounded as a call is.
        within(FENCE_FAILED, &self.name, async { durable(&mut *conn).await.map_err(self.db(FENCE_FAILED)) }).await?;
        Ok(loaded)
    }

    /// [`Store::catch_up`]: one message without the write lock, which reads in one snapshot and waits until what it
    /// read is durable (`replicas::Reading::Durable`).
    async fn changes(&self, seen: u64) -> Result<Option<CatchUp>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(self.db("cannot begin a read"))?;
        let (_, caught) =
            replicas::read_since(&mut conn, seen, Reading::Durable).await.map_err(|e| self.read_failed(e))?;
        Ok(caught)
    }

    /// [`Store::begin`]: [`PostgresStore::try_begin`], again after a serialization failure or a deadlock, at most
    /// [`RETRY_ATTEMPTS`] times in all.
    async fn start_write(&self, replica: ReplicaId, seen: u64, tick: bool) -> Result<Begun, StoreError> {
        let mut attempt = 1;
        loop {
            match self.try_begin(replica, seen, tick).await {
                Ok(begun) => return Ok(begun),
                Err(ReadError::Db(_, source)) if attempt < RETRY_ATTEMPTS && retryable(&source) => {
                    let ceiling = (Duration::from_millis(1) * 2_u32.pow(attempt)).min(RETRY_BACKOFF_MAX);
                    tokio::time::sleep(ceiling.mul_f64(rand::random::<f64>())).await;
                    attempt += 1;
                }
                Err(e) => return Err(self.read_failed(e)),
            }
        }
    }

    /// One attempt at starting a write: the write lock, what was committed since `seen`, and on a tick, this
    /// replica's heartbeat and lead.
    async fn try_begin(&self, replica: ReplicaId, seen: u64, tick: bool) -> Result<Begun, ReadError> {
        let fail = |context: &'static str| move |e| ReadError::Db(context, e);
        let mut tx = InWrite::acquire(&self.pool).await.map_err(fail("cannot begin a write"))?;
        // The transaction, the lock and the reads go as one message when another replica announced a commit this one
        // has not seen (or the listener asks for a catch-up: 0); otherwise the transaction and the lock alone, and the
        // reads only if a commit is found that was not announced yet.
        let announced = *self.announced.borrow();
        let (meta, catch_up) = if announced > seen || announced == 0 {
            replicas::read_since(&mut tx, seen, Reading::BeginWrite).await?
        } else {
            let meta = replicas::begin_write(&mut tx).await.map_err(fail("cannot take the write lock"))?;
            if meta.revision > seen {
                replicas::read_since(&mut tx, seen, Reading::Locked).await?
            } else {
                (meta, None)
            }
        };
        let (lead, evicted) = if tick {
            let registered = self.registered.load(Ordering::SeqCst);
            let ticked = replicas::tick(&mut tx, &meta, replica, seen, registered, self.replica_timeout)
                .await
                .map_err(fail("cannot say this replica is alive"))?;
            (ticked.lead, ticked.evicted)
        } else {
            (None, false)
        };
        let txn = PgTxn {
            tx,
            pool: self.pool.clone(),
            revision: meta.revision,
            read_or_wrote: tick || catch_up.is_some(),
            name: self.name.clone(),
            registers: tick.then(|| self.registered.clone()),
        };
        Ok(Begun { txn: Box::new(txn), catch_up, lead, evicted })
    }
}

/// Everything the store holds, read on `conn` in a read-only snapshot of its own (REPEATABLE READ), so that a read
/// racing other replicas' commits still reads one consistent state. Not waited on until durable: see [`durable`].
async fn read_snapshot(conn: &mut PgConnection) -> Result<Loaded, ReadError> {
    let mut tx = conn
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|e| ReadError::Db("cannot begin a read", e))?;
    let loaded = read_all(&mut tx).await?;
    tx.commit().await.map_err(|e| ReadError::Db("cannot end a read", e))?;
    Ok(loaded)
}

/// [`read_snapshot`], handed back once durable.
async fn read_durably(conn: &mut PgConnection) -> Result<Loaded, ReadError> {
    let loaded = read_snapshot(conn).await?;
    durable(conn).await.map_err(|e| ReadError::Db(FENCE_FAILED, e))?;
    Ok(loaded)
}

/// Everything the store holds, read on `conn` inside a transaction that sees one state. Each row becomes a record as
/// it arrives, as in the SQLite store: nothing but the records is held. Statements built from constants only
/// (`super::rows`): nothing of a request reaches the SQL text.
async fn read_all(conn: &mut PgConnection) -> Result<Loaded, ReadError> {
    let meta = sqlx::query("SELECT epoch, settled_at_ms, revision FROM meta")
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| ReadError::Db("cannot read meta", e))?
        .ok_or_else(|| ReadError::Corrupt("meta", "no row (no epoch)".into()))?;
    let epoch = Uuid::parse_str(meta.get("epoch"))
        .map_err(|e| ReadError::Corrupt("meta", format!("epoch {:?}: {e}", meta.get::<&str, _>("epoch"))))?;
    let settled_at_ms = meta.get::<Option<i64>, _>("settled_at_ms").map(|v| u64::try_from(v).unwrap_or(0));
    let revision = u64::try_from(meta.get::<i64, _>("revision")).unwrap_or(0);

    let sql = AssertSqlSafe(format!("SELECT {PRODUCER_COLUMNS} FROM producers ORDER BY id"));
    let mut rows = sqlx::query(sql).fetch(&mut *conn);
    let mut producers = Vec::new();
    while let Some(row) = rows.next().await {
        producers.push(producer(&row.map_err(|e| ReadError::Db("cannot read producers", e))?)?);
    }
    drop(rows);
    let sql = AssertSqlSafe(format!("SELECT {COLLECTOR_COLUMNS} FROM collectors ORDER BY id"));
    let rows = sqlx::query(sql).fetch_all(&mut *conn).await.map_err(|e| ReadError::Db("cannot read collectors", e))?;
    let collectors = rows.iter().map(collector).collect::<Result<Vec<_>, _>>()?;
    Ok(Loaded { epoch, revision, settled_at_ms, producers, collectors })
}

/// A producers row as its record.
fn producer(row: &PgRow) -> Result<ProducerRecord, ReadError> {
    ProducerRow::from_row(row)
        .map_err(|e| ReadError::Db("cannot read producers", e))?
        .record()
        .map_err(|problem| ReadError::Corrupt("producers", problem))
}

/// A collectors row as its record.
fn collector(row: &PgRow) -> Result<(CollectorId, CollectorRecord), ReadError> {
    CollectorRow::from_row(row)
        .map_err(|e| ReadError::Db("cannot read collectors", e))?
        .record()
        .map_err(|problem| ReadError::Corrupt("collectors", problem))
}

/// A pool connection in a write's transaction, which roster begins and ends with statements of its own rather than
/// with sqlx's transactions, so that `BEGIN` goes in one message with the write lock and the reads, and `COMMIT` in
/// one with the wait for durability ([`InWrite::commit`]): two round trips fewer than `BEGIN`, `COMMIT` and a fence
/// on a connection of its own. Dropped before its commit (a failure, a timeout), it is closed rather than returned to
/// the pool: PostgreSQL rolls its transaction back and releases the lock at once, and no later user of the pool
/// finds itself inside it.
struct InWrite {
    conn: PoolConnection<Postgres>,
    /// Whether its transaction may still be open: from the moment `BEGIN` may have been sent until `COMMIT` answered.
    open: bool,
}

impl InWrite {
    /// A connection of `pool`, about to begin a write.
    async fn acquire(pool: &PgPool) -> sqlx::Result<Self> {
        Ok(Self { conn: pool.acquire().await?, open: true })
    }

    /// Commits the write's transaction; with `durably`, in the same message, [`FENCE`] after it, so that this returns
    /// only once the commit is durable (see [`durable`]).
    async fn commit(&mut self, durably: bool) -> Result<(), (&'static str, sqlx::Error)> {
        let sql = if durably { COMMIT_DURABLY } else { "COMMIT" };
        let mut committed = false;
        let mut results = sqlx::raw_sql(sql).fetch_many(&mut *self.conn);
        while let Some(result) = results.next().await {
            match result {
                Ok(sqlx::Either::Left(_done)) => committed = true,
                Ok(sqlx::Either::Right(_fenced)) => {}
                Err(e) => return Err((if committed { FENCE_FAILED } else { "cannot commit" }, e)),
            }
        }
        drop(results);
        self.open = false;
        Ok(())
    }
}

impl std::ops::Deref for InWrite {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for InWrite {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

impl Drop for InWrite {
    fn drop(&mut self) {
        if self.open {
            self.conn.close_on_drop();
        }
    }
}

/// A write under the store's write lock ([`Store::begin`]).
struct PgTxn {
    tx: InWrite,
    pool: PgPool,
    /// The store's revision when the lock was taken: what the batch was decided on.
    revision: u64,
    /// Whether this write brought anything other replicas committed, or wrote a tick: then, even with an empty
    /// batch, its commit waits until that is durable (see [`durable`]).
    read_or_wrote: bool,
    name: Arc<str>,
    /// On a tick: set once the heartbeat row it wrote is committed.
    registers: Option<Arc<AtomicBool>>,
}

impl PgTxn {
    /// Commits `batch`; a serialization failure or a deadlock (with a writer outside roster, which takes no lock
    /// first) is retried, at most [`RETRY_ATTEMPTS`] times in all, by taking the write lock again and writing the same
    /// batch, as long as no commit came in between (the batch was decided on that revision); the failed attempt's
    /// connection is closed, which rolls it back. A tick is not retried: its heartbeat and lead were written in the
    /// transaction that failed, and the next tick writes them again.
    async fn commit_retrying(self, batch: &Batch) -> Result<u64, (&'static str, sqlx::Error)> {
        let PgTxn { mut tx, pool, revision, read_or_wrote, registers, .. } = self;
        let durably = read_or_wrote || !batch.is_empty();
        let mut attempt = 1;
        loop {
            let committed = async {
                let written = if batch.is_empty() { revision } else { write(&mut tx, batch).await? };
                tx.commit(durably).await?;
                Ok(written)
            }
            .await;
            match committed {
                Ok(written) => {
                    if let Some(registered) = &registers {
                        registered.store(true, Ordering::SeqCst);
                    }
                    return Ok(written);
                }
                Err((context, source))
                    if context != FENCE_FAILED
                        && attempt < RETRY_ATTEMPTS
                        && registers.is_none()
                        && retryable(&source) =>
                {
                    let ceiling = (Duration::from_millis(1) * 2_u32.pow(attempt)).min(RETRY_BACKOFF_MAX);
                    tokio::time::sleep(ceiling.mul_f64(rand::random::<f64>())).await;
                    attempt += 1;
                    tx = InWrite::acquire(&pool).await.map_err(|e| ("cannot begin a write", e))?;
                    let meta = replicas::begin_write(&mut tx).await.map_err(|e| ("cannot take the write lock", e))?;
                    if meta.revision != revision {
                        // Another replica committed in between: the batch was decided on a state that is gone.
                        return Err(("another replica committed while this write was retried", source));
                    }
                }
                Err(failed) => return Err(failed),
            }
        }
    }
}

impl Txn for PgTxn {
    fn commit<'a>(self: Box<Self>, batch: &'a Batch) -> StoreFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let name = self.name.clone();
            let committed = async {
                self.commit_retrying(batch).await.map_err(|(context, source)| StoreError::Db {
                    context,
                    store: name.to_string(),
                    source: DatabaseError::new(source),
                })
            };
            within("cannot commit", &name, committed).await
        })
    }
}

/// Writes `batch` (not empty) in `tx`, which holds the write lock, with the next revision; returns it, or the
/// failure. Every round trip here is made holding the lock, so the batch is one statement: the next revision, the
/// settling (recorded once: the first stands) and the notification of the other replicas (which PostgreSQL delivers
/// when, and only if, the transaction commits), up to [`ROWS_PER_STATEMENT`] producers and as many collectors, and
/// the deletions with their tombstones. That is every batch of registrations, renewals or reports but the largest;
/// rows beyond go in further statements of the same shape, at the same revision.
async fn write(tx: &mut PgConnection, batch: &Batch) -> Result<u64, (&'static str, sqlx::Error)> {
    let mut producers = batch.upsert_producers.chunks(ROWS_PER_STATEMENT);
    let mut collectors = batch.upsert_collectors.chunks(ROWS_PER_STATEMENT);
    let mut revision: Option<i64> = None;
    loop {
        let (producers, collectors) = (producers.next(), collectors.next());
        if revision.is_some() && producers.is_none() && collectors.is_none() {
            break;
        }
        let mut statement = QueryBuilder::<Postgres>::new("WITH m AS (");
        match revision {
            None => {
                statement.push("UPDATE meta SET revision = revision + 1, settled_at_ms = COALESCE(settled_at_ms, ");
                statement.push_bind(batch.settled_at_ms.map(to_i64));
                statement.push(") RETURNING revision, pg_notify(");
                statement.push_bind(NOTIFY_CHANNEL);
                statement.push(", revision::text)::text)");
            }
            Some(revision) => {
                statement.push("SELECT ");
                statement.push_bind(revision);
                statement.push("::bigint AS revision)");
            }
        }
        if let Some(rows) = producers {
            statement.push(format!(
                ", upserted_producers AS (INSERT INTO producers ({PRODUCER_COLUMNS}, revision) \
                 SELECT v.*, m.revision FROM m, ("
            ));
            statement.push_values(rows, |mut row, p| push_producer(&mut row, p));
            statement.push(format!(
                ") AS v ({PRODUCER_COLUMNS}) ON CONFLICT (id) DO UPDATE SET {PRODUCER_UPDATES}, \
                 revision = excluded.revision)"
            ));
        }
        if let Some(rows) = collectors {
            statement.push(format!(
                ", upserted_collectors AS (INSERT INTO collectors ({COLLECTOR_COLUMNS}, revision) \
                 SELECT v.*, m.revision FROM m, ("
            ));
            statement.push_values(rows, |mut row, (id, c)| push_collector(&mut row, *id, c));
            statement.push(format!(
                ") AS v ({COLLECTOR_COLUMNS}) ON CONFLICT (id) DO UPDATE SET {COLLECTOR_UPDATES}, \
                 revision = excluded.revision)"
            ));
        }
        if revision.is_none() {
            push_deletions(&mut statement, "producers", "producer", &batch.delete_producers);
            push_deletions(&mut statement, "collectors", "collector", &batch.delete_collectors);
        }
        statement.push(" SELECT revision FROM m");
        let written: i64 =
            statement.build_query_scalar().fetch_one(&mut *tx).await.map_err(|e| ("cannot write the batch", e))?;
        revision = Some(written);
    }
    Ok(revision.map_or(0, |r| u64::try_from(r).unwrap_or(0)))
}

/// Adds to a [`write`] statement the deletion of the rows of `ids` from `table`, leaving a tombstone of `kind` at the
/// statement's revision for each row that was there.
fn push_deletions<T: ToString>(statement: &mut QueryBuilder<Postgres>, table: &str, kind: &str, ids: &[T]) {
    if ids.is_empty() {
        return;
    }
    statement.push(format!(", deleted_{table} AS (DELETE FROM {table} WHERE id = ANY("));
    statement.push_bind(ids.iter().map(ToString::to_string).collect::<Vec<_>>());
    statement.push(format!(
        ") RETURNING id), tombstoned_{table} AS (INSERT INTO tombstones (kind, id, revision) \
         SELECT '{kind}', d.id, m.revision FROM deleted_{table} d, m \
         ON CONFLICT (kind, id) DO UPDATE SET revision = excluded.revision)"
    ));
}

impl Store for PostgresStore {
    fn load(&self) -> StoreFuture<'_, Result<Loaded, StoreError>> {
        Box::pin(self.read())
    }

    fn begin(&self, replica: ReplicaId, seen: u64, tick: bool) -> StoreFuture<'_, Result<Begun, StoreError>> {
        Box::pin(within("cannot begin a write", &self.name, self.start_write(replica, seen, tick)))
    }

    fn catch_up(&self, seen: u64) -> StoreFuture<'_, Result<Option<CatchUp>, StoreError>> {
        Box::pin(within("cannot read what other replicas committed", &self.name, self.changes(seen)))
    }

    fn follow(&self) -> Option<watch::Receiver<u64>> {
        Some(self.announced.clone())
    }

    /// Leaves the replicas (its heartbeat row, and its lead if it holds it) and closes the pool: every connection
    /// ends cleanly. Leaving is best effort: a replica that cannot reach the store is taken for gone by the others
    /// after the replica timeout, as if it had died.
    fn close(&self, replica: ReplicaId) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let left = within("cannot leave the replicas", &self.name, async {
                replicas::leave(&self.pool, replica).await.map_err(self.db("cannot leave the replicas"))
            });
            if let Err(e) = left.await {
                tracing::warn!(error = %roster::error_chain::chain(&e), "could not leave the replicas; the others will take this one for gone");
            }
            self.pool.close().await;
        })
    }
}

#[cfg(test)]
mod tests {
    use roster_testkit::{TestPostgres, WAIT, wait_for_some};
    use sqlx::{Connection as _, PgConnection, postgres::PgListener};

    use std::collections::BTreeSet;

    use super::*;
    use crate::{
        config::DEFAULT_REPLICA_TIMEOUT,
        records::ProducerRecord,
        store::{Lead, conformance},
    };

    async fn open(pg: &TestPostgres) -> PostgresStore {
        PostgresStore::open(&PostgresUrl::parse(&pg.url()).unwrap(), 1, DEFAULT_REPLICA_TIMEOUT).await.unwrap()
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
        conformance::commit(&store, &batch).await.unwrap();
        assert_eq!(revision(&mut conn).await, 1);
        conformance::commit(&store, &Batch::default()).await.unwrap();
        assert_eq!(revision(&mut conn).await, 1, "an empty batch takes no revision");

        let renewed = ProducerRecord { expires_at_ms: 99_000, ..producers[1].clone() };
        let batch = Batch {
            upsert_producers: vec![renewed],
            delete_producers: vec![producers[0].spec.id],
            delete_collectors: vec![collectors[1].0],
            ..Batch::default()
        };
        conformance::commit(&store, &batch).await.unwrap();
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
            conformance::commit(&store, &batch).await.unwrap();
            let heard = tokio::time::timeout(WAIT, listener.recv()).await.expect("a notification in time").unwrap();
            assert_eq!((heard.channel(), heard.payload()), (NOTIFY_CHANNEL, want));
        }
    }

    /// A write dropped before its commit (a failure, a timeout) releases the write lock at once, and leaves no
    /// connection of the pool inside its transaction: another replica's write and the next write of the same replica
    /// both take the lock, and the dropped write's rows are not there.
    #[tokio::test]
    async fn postgres_store_releases_the_lock_of_a_write_dropped_before_its_commit() {
        let pg = TestPostgres::start().await;
        let (first, second) = (open(&pg).await, open(&pg).await);
        let collectors = conformance::collectors(1);
        // A batch written under the lock, by a write that goes no further.
        let mut tx = InWrite::acquire(&first.pool).await.unwrap();
        replicas::begin_write(&mut tx).await.unwrap();
        write(&mut tx, &Batch { upsert_collectors: collectors, ..Batch::default() }).await.unwrap();
        drop(tx);
        for store in [&second, &first] {
            let begun = tokio::time::timeout(WAIT, store.begin(ReplicaId::new_v4(), 0, false))
                .await
                .expect("the write lock was released")
                .unwrap();
            assert_eq!(begun.txn.commit(&Batch::default()).await.unwrap(), 0, "the dropped write committed");
        }
        assert!(first.load().await.unwrap().collectors.is_empty());
    }

    /// A catch-up reads through the indexes on `revision` even before the planner has statistics: tables of 20 000
    /// rows written since an old revision, never analyzed (a store that grew from nothing faster than autovacuum
    /// came by), and each of its reads planned without a sequential scan.
    #[tokio::test]
    async fn postgres_store_catch_up_reads_through_the_revision_indexes_before_any_analyze() {
        let pg = TestPostgres::start().await;
        drop(open(&pg).await);
        let mut conn = connect(&pg).await;
        for table in ["producers", "collectors", "tombstones"] {
            let sql = format!("ALTER TABLE {table} SET (autovacuum_enabled = false)");
            sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
        }
        sqlx::raw_sql(
            "INSERT INTO producers (id, address, interval_ms, labels, lease_ms, expires_at_ms, registered_at_ms, \
             revision) SELECT gen_random_uuid()::text, 'a:1', 1000, '{}', 60000, 0, 0, n FROM generate_series(1, 20000) n; \
             INSERT INTO collectors (id, generation, revision) \
             SELECT gen_random_uuid()::text, 1, n FROM generate_series(1, 20000) n; \
             INSERT INTO tombstones (kind, id, revision) \
             SELECT 'producer', gen_random_uuid()::text, n FROM generate_series(1, 20000) n; \
             UPDATE meta SET revision = 20001",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        let analyzed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_user_tables WHERE relname IN ('producers', 'collectors', 'tombstones') \
             AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(analyzed, 0, "the tables must not have been analyzed for this test to mean anything");
        for read in replicas::reads_since(19_990) {
            let plan: Vec<String> = sqlx::raw_sql(AssertSqlSafe(format!("EXPLAIN {read}")))
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<String, _>(0))
                .collect();
            let plan = plan.join("\n");
            assert!(!plan.contains("Seq Scan on producers") && !plan.contains("Seq Scan on collectors"), "{plan}");
            assert!(!plan.contains("Seq Scan on tombstones") && !plan.contains("Gather"), "{plan}");
        }
    }

    /// A catch-up's message reads one state (`replicas::ONE_SNAPSHOT`): a commit made while the message is between
    /// two of its reads (held there on an advisory lock) is not seen by the second.
    #[tokio::test]
    async fn postgres_store_catch_up_reads_one_state_in_its_message() {
        let pg = TestPostgres::start().await;
        drop(open(&pg).await);
        let (mut holder, mut reader) = (connect(&pg).await, connect(&pg).await);
        let observer = PgPool::connect(&pg.url()).await.unwrap();
        sqlx::query("SELECT pg_advisory_lock(42)").execute(&mut holder).await.unwrap();
        let sql = format!(
            "{}SELECT revision FROM meta; SELECT pg_advisory_lock(42); SELECT revision FROM meta",
            replicas::ONE_SNAPSHOT
        );
        let reading = tokio::spawn(async move {
            let rows = sqlx::raw_sql(AssertSqlSafe(sql)).fetch_all(&mut reader).await.unwrap();
            rows.iter().filter_map(|row| row.try_get::<i64, _>("revision").ok()).collect::<Vec<_>>()
        });
        wait_for_some("the message to wait between its reads", || {
            let observer = observer.clone();
            async move {
                let waiting: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
                        .fetch_one(&observer)
                        .await
                        .unwrap();
                (waiting == 1).then_some(())
            }
        })
        .await;
        sqlx::query("UPDATE meta SET revision = revision + 1").execute(&mut holder).await.unwrap();
        sqlx::query("SELECT pg_advisory_unlock(42)").execute(&mut holder).await.unwrap();
        assert_eq!(reading.await.unwrap(), vec![0, 0], "the second read saw a commit the first did not");
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
        conformance::commit(&store, &Batch { upsert_producers: vec![producer.clone()], ..Batch::default() })
            .await
            .unwrap();

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
                         AND query LIKE 'WITH m AS (UPDATE meta%'",
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
        let (committed, ()) = tokio::join!(conformance::commit(&store, &batch), drive);
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

    /// Backends waiting for a synchronous commit to be confirmed (`SyncRep`).
    async fn waiting_for_durability(observer: &PgPool) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")
            .fetch_one(observer)
            .await
            .unwrap()
    }

    /// A write returns only once it is durable, and holds no lock while it waits: with PostgreSQL made to hold every
    /// synchronous commit (waiting for a standby that does not exist), a commit does not return, while another
    /// replica's write takes the lock meanwhile and reads it; that replica's catch-up of it does not return either, nor
    /// a third's load. All return once the standby is no longer required.
    #[tokio::test]
    async fn postgres_store_hands_back_only_what_is_durable_and_waits_for_it_without_the_lock() {
        let pg = TestPostgres::start().await;
        let (first, second, third) = (open(&pg).await, open(&pg).await, open(&pg).await);
        let observer = PgPool::connect(&pg.url()).await.unwrap();
        let setting = |value: &'static str| {
            let observer = observer.clone();
            async move {
                let sql = format!("ALTER SYSTEM SET synchronous_standby_names = '{value}'");
                sqlx::query(AssertSqlSafe(sql)).execute(&observer).await.unwrap();
                sqlx::query("SELECT pg_reload_conf()").execute(&observer).await.unwrap();
            }
        };
        setting("absent").await;
        // A synchronous commit on a new connection waits once the setting is in force: by then every backend was
        // told to reload, and reads it before its next statement.
        let mut probe = connect(&pg).await;
        let probing = tokio::spawn(async move { sqlx::query(FENCE).execute(&mut probe).await.map(drop) });
        wait_for_some("a synchronous commit to wait for the absent standby", || {
            let observer = observer.clone();
            async move { (waiting_for_durability(&observer).await == 1).then_some(()) }
        })
        .await;

        let collectors = conformance::collectors(1);
        let producer = conformance::producers(1, &collectors).remove(0);
        let batch = Batch { upsert_producers: vec![producer.clone()], ..Batch::default() };
        let committing = tokio::spawn(async move { conformance::commit(&first, &batch).await });
        wait_for_some("the commit to wait until it is durable", || {
            let observer = observer.clone();
            async move { (waiting_for_durability(&observer).await == 2).then_some(()) }
        })
        .await;
        assert!(!committing.is_finished(), "a commit returned before it was durable");

        // The lock is free: another replica's write takes it and reads the commit, to decide on it.
        let begun = second.begin(ReplicaId::new_v4(), 0, false).await.unwrap();
        let Some(CatchUp::Changes { revision: 1, changes }) = begun.catch_up else {
            panic!("no catch-up of revision 1")
        };
        assert_eq!(changes.upsert_producers, vec![producer.clone()]);
        drop(begun.txn);
        // Following it, that replica reads it and waits until it is durable before handing it back.
        let following = tokio::spawn(async move { second.catch_up(0).await });
        wait_for_some("the catch-up to wait until what it read is durable", || {
            let observer = observer.clone();
            async move { (waiting_for_durability(&observer).await == 3).then_some(()) }
        })
        .await;
        let loading = tokio::spawn(async move { third.load().await });
        wait_for_some("the load to wait until what it read is durable", || {
            let observer = observer.clone();
            async move { (waiting_for_durability(&observer).await == 4).then_some(()) }
        })
        .await;
        assert!(
            !committing.is_finished() && !following.is_finished() && !loading.is_finished(),
            "handed back before it was durable"
        );

        setting("").await;
        assert_eq!(committing.await.unwrap().unwrap(), 1);
        let Some(CatchUp::Changes { revision: 1, changes }) = following.await.unwrap().unwrap() else {
            panic!("no catch-up of revision 1")
        };
        assert_eq!(changes.upsert_producers, vec![producer.clone()]);
        assert_eq!(loading.await.unwrap().unwrap().producers, vec![producer]);
        probing.await.unwrap().unwrap();
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
        let e =
            PostgresStore::open(&PostgresUrl::parse(&pg.url()).unwrap(), 1, DEFAULT_REPLICA_TIMEOUT).await.unwrap_err();
        assert!(matches!(e, StoreError::SchemaTooNew { found: 9, known: 1, .. }), "{e:?}");
        let message = e.to_string();
        assert!(message.contains("schema version 9") && message.contains("(up to 1)"), "{message}");
        assert!(message.contains("upgrade this replica"), "{message}");
    }

    /// A tick of `replica` that has seen `seen`, committed with an empty batch: what it learned.
    async fn tick(store: &PostgresStore, replica: ReplicaId, seen: u64) -> (Option<Lead>, bool) {
        let begun = store.begin(replica, seen, true).await.unwrap();
        let learned = (begun.lead.clone(), begun.evicted);
        begun.txn.commit(&Batch::default()).await.unwrap();
        learned
    }

    /// The lead (H2): the first replica to tick takes it (term 1) and keeps it while it ticks; another replica does
    /// not lead meanwhile. Once its lease lapsed, the next replica to tick takes it with the next term and is told how
    /// long no one led; the deposed replica, ticking late, finds it no longer leads (the fencing).
    #[tokio::test]
    async fn postgres_store_one_replica_leads_and_a_lapsed_lead_passes_on_with_the_time_none_led() {
        let pg = TestPostgres::start().await;
        let store = open(&pg).await;
        let mut conn = connect(&pg).await;
        let (a, b) = (ReplicaId::new_v4(), ReplicaId::new_v4());
        let (lead, evicted) = tick(&store, a, 0).await;
        assert_eq!(lead.map(|l| l.leaderless_ms), Some(None), "the first lead follows no one");
        assert!(!evicted);
        assert_eq!(tick(&store, b, 0).await.0, None, "b does not lead while a does");
        let lead = tick(&store, a, 0).await.0.expect("a keeps leading");
        assert_eq!(lead.leaderless_ms, None);
        assert_eq!(lead.alive.iter().copied().collect::<BTreeSet<_>>(), BTreeSet::from([a, b]));

        // a stops renewing: its lease lapsed a minute ago.
        sqlx::query("UPDATE meta SET leader_until_ms = leader_until_ms - 60000").execute(&mut conn).await.unwrap();
        let lead = tick(&store, b, 0).await.0.expect("b takes the lapsed lead");
        let none_led = lead.leaderless_ms.expect("b is told how long no one led");
        assert!((60_000..70_000).contains(&none_led), "{none_led} ms");
        let term: i64 = sqlx::query_scalar("SELECT leader_term FROM meta").fetch_one(&mut conn).await.unwrap();
        assert_eq!(term, 2);
        assert_eq!(tick(&store, a, 0).await.0, None, "a, deposed, no longer leads");
    }

    /// Liveness of replicas (H4): a replica not heard from for the timeout while the leader was present is removed
    /// by the leader and left out of `alive`; ticking again, it learns it was taken for gone, and is counted again.
    /// Silence while the leader itself was away (an outage of the database) removes no one.
    #[tokio::test]
    async fn postgres_store_a_silent_replica_is_taken_for_gone_only_while_the_leader_was_present() {
        let pg = TestPostgres::start().await;
        let store = open(&pg).await;
        let other = open(&pg).await;
        let mut conn = connect(&pg).await;
        let (leader, silent) = (ReplicaId::new_v4(), ReplicaId::new_v4());
        tick(&store, leader, 0).await;
        tick(&other, silent, 0).await;
        let age = |replica: ReplicaId, ms: i64| {
            sqlx::query("UPDATE replicas SET heartbeat_ms = heartbeat_ms - $2 WHERE id = $1")
                .bind(replica.to_string())
                .bind(ms)
        };

        // Both silent for a minute (the database was away): the leader's return removes no one.
        age(leader, 60_000).execute(&mut conn).await.unwrap();
        age(silent, 60_000).execute(&mut conn).await.unwrap();
        let lead = tick(&store, leader, 0).await.0.expect("still the leader");
        assert!(lead.alive.contains(&silent), "{lead:?}");

        // Only the other one silent, for longer than the timeout: it is gone.
        age(silent, 10_000).execute(&mut conn).await.unwrap();
        let lead = tick(&store, leader, 0).await.0.expect("still the leader");
        assert_eq!(lead.alive, vec![leader]);
        let (lead, evicted) = tick(&other, silent, 0).await;
        assert!(evicted && lead.is_none(), "the silent replica learns it was taken for gone");
        let lead = tick(&store, leader, 0).await.0.expect("still the leader");
        assert_eq!(lead.alive.len(), 2, "and counts again once it says it is alive: {lead:?}");
    }

    /// A write catches up with what another replica committed since its revision: rows by revision, deletions by
    /// tombstone, not a tombstone of a producer written again since; and a replica behind the pruned tombstones
    /// reads everything.
    #[tokio::test]
    async fn postgres_store_a_write_catches_up_with_what_others_committed() {
        let pg = TestPostgres::start().await;
        let (store, other) = (open(&pg).await, open(&pg).await);
        let collectors = conformance::collectors(1);
        let producers = conformance::producers(3, &collectors);
        let first = Batch { upsert_producers: producers.clone(), upsert_collectors: collectors, ..Batch::default() };
        let seen = conformance::commit(&other, &first).await.unwrap();
        let gone = Batch { delete_producers: vec![producers[0].spec.id, producers[1].spec.id], ..Batch::default() };
        conformance::commit(&other, &gone).await.unwrap();
        let back = Batch { upsert_producers: vec![producers[1].clone()], ..Batch::default() };
        let last = conformance::commit(&other, &back).await.unwrap();

        let begun = store.begin(ReplicaId::new_v4(), seen, false).await.unwrap();
        let Some(CatchUp::Changes { revision, changes }) = begun.catch_up else { panic!("changes to catch up with") };
        assert_eq!(revision, last);
        assert_eq!(changes.delete_producers, vec![producers[0].spec.id], "the producer written again is no deletion");
        assert_eq!(changes.upsert_producers, vec![producers[1].clone()]);
        begun.txn.commit(&Batch::default()).await.unwrap();
        assert!(store.catch_up(last).await.unwrap().is_none(), "nothing since the last revision");

        sqlx::query("UPDATE meta SET pruned_through = $1")
            .bind(to_i64(last))
            .execute(&mut connect(&pg).await)
            .await
            .unwrap();
        let Some(CatchUp::Everything(loaded)) = store.catch_up(seen).await.unwrap() else {
            panic!("a replica behind the pruned tombstones reads everything")
        };
        assert_eq!(loaded.producers.len(), 2);
        assert_eq!(loaded.revision, last);
    }

    /// Three replicas opening one empty database at once migrate it once and agree on one epoch.
    #[tokio::test]
    async fn postgres_store_concurrent_first_opens_agree_on_one_epoch() {
        let pg = TestPostgres::start().await;
        let url = PostgresUrl::parse(&pg.url()).unwrap();
        let (a, b, c) = tokio::join!(
            PostgresStore::open(&url, 1, DEFAULT_REPLICA_TIMEOUT),
            PostgresStore::open(&url, 2, DEFAULT_REPLICA_TIMEOUT),
            PostgresStore::open(&url, 3, DEFAULT_REPLICA_TIMEOUT)
        );
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
