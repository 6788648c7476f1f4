//! What replicas sharing the PostgreSQL store need beyond the store of one server: the write lock and the catch-up
//! that make each replica decide its batches on the store's latest state, the lead (a lease with a term, in the
//! `meta` row), each replica's heartbeat (the `replicas` table: liveness of the replicas, and so of the streams they
//! hold), and the listener that brings other replicas' changes within milliseconds.
//!
//! - **The write lock** is the `meta` row, locked (`SELECT … FOR UPDATE`) first thing in every write. Every writer
//!   takes it, so writes are serialised, and a write's reads (in PostgreSQL's default READ COMMITTED, each
//!   statement sees what was committed before it) see every earlier commit: the catch-up read under the lock is
//!   complete, and the decisions that follow are made on the latest state.
//! - **Catching up** reads the rows whose `revision` is above the one the replica has seen, and the tombstones above
//!   it (of ids not written again since). The leader prunes tombstones every replica has seen (`replicas.seen`); a
//!   replica behind the pruning (`meta.pruned_through`, one that was taken for gone, say) reads everything instead.
//! - **The lead** is `meta.leader_replica` until `meta.leader_until_ms`, with a term (`leader_term`) bumped by each
//!   new leader, all in the database's clock (no skew between replicas counts). A replica's tick renews it if it
//!   holds it, takes it if it lapsed, and reports the time when no one held it (L3). Since the lead is read under
//!   the write lock in the very transaction that acts on it, a leader that stalled past its lease and woke up finds
//!   it lost, and does nothing a leader does: that is the fencing.
//! - **Heartbeats**: each tick writes the replica's `heartbeat_ms` and the revision it has seen. The leader removes
//!   the rows of replicas not heard from within the replica timeout; the registry then closes their streams, and
//!   a replica that finds its own row gone was taken for gone (evicted) and ends its streams.

use std::{collections::HashSet, time::Duration};

use roster::domain::{CollectorId, ProducerId};
use sqlx::{
    AssertSqlSafe, Either, PgConnection, PgPool, Row as _,
    postgres::{PgListener, PgRow},
};
use tokio::sync::watch;
use tokio_stream::StreamExt as _;
use tracing::{info, warn};
use uuid::Uuid;

use super::{
    super::{
        CatchUp, DatabaseError, Lead, StoreError,
        rows::{COLLECTOR_COLUMNS, PRODUCER_COLUMNS, to_i64},
    },
    BEGIN_WRITE, FENCE, FENCE_FAILED, NOTIFY_CHANNEL, collector, producer, read_all, read_durably,
};
use crate::records::{Batch, ReplicaId};

/// How long the listener waits before connecting again after a failed attempt: the tick catches up meanwhile.
const LISTENER_RETRY: Duration = Duration::from_secs(1);

/// The `meta` row as a transaction finds it (under the write lock, for a write).
#[derive(Debug)]
pub(super) struct Meta {
    /// The store's revision.
    pub revision: u64,
    /// Tombstones at or below this revision are gone: a replica that has seen less must read everything.
    pub pruned_through: u64,
    /// When the store settled, if it has.
    pub settled_at_ms: Option<u64>,
    /// The lead: term, holder, until when.
    leader_term: i64,
    leader_replica: Option<String>,
    leader_until_ms: Option<i64>,
    /// The database's clock, in Unix ms.
    now_ms: i64,
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The `meta` row as [`Meta::from_row`] reads it, with the database's clock.
const META_SELECT: &str = "SELECT revision, pruned_through, settled_at_ms, leader_term, leader_replica, \
                           leader_until_ms, (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now_ms FROM meta";

impl Meta {
    fn from_row(row: &PgRow) -> sqlx::Result<Self> {
        Ok(Self {
            revision: to_u64(row.try_get("revision")?),
            pruned_through: to_u64(row.try_get("pruned_through")?),
            settled_at_ms: row.try_get::<Option<i64>, _>("settled_at_ms")?.map(to_u64),
            leader_term: row.try_get("leader_term")?,
            leader_replica: row.try_get("leader_replica")?,
            leader_until_ms: row.try_get("leader_until_ms")?,
            now_ms: row.try_get("now_ms")?,
        })
    }
}

/// Reads the `meta` row; with `lock`, takes the write lock on it, first thing in a write's transaction.
pub(super) async fn meta(conn: &mut PgConnection, lock: bool) -> sqlx::Result<Meta> {
    let row = if lock {
        sqlx::query(AssertSqlSafe(format!("{META_SELECT} FOR UPDATE"))).fetch_one(conn).await?
    } else {
        sqlx::query(META_SELECT).fetch_one(conn).await?
    };
    Meta::from_row(&row)
}

/// What a tick found: whether this replica leads (and what it must know then), and whether it had been evicted.
#[derive(Debug)]
pub(super) struct Ticked {
    pub lead: Option<Lead>,
    pub evicted: bool,
}

/// Begins a write's transaction on `conn` and takes the write lock, in one message: the `meta` row, locked.
pub(super) async fn begin_write(conn: &mut PgConnection) -> sqlx::Result<Meta> {
    let sql = format!("{BEGIN_WRITE}; {META_SELECT} FOR UPDATE");
    let mut meta = None;
    let mut results = sqlx::raw_sql(AssertSqlSafe(sql)).fetch_many(&mut *conn);
    while let Some(result) = results.next().await {
        if let Either::Right(row) = result? {
            meta = Some(Meta::from_row(&row)?);
        }
    }
    meta.ok_or(sqlx::Error::RowNotFound)
}

/// A replica's tick, under the write lock: says it is alive (and what it has seen), renews or takes the lead, and
/// if it leads, removes the replicas not heard from within `timeout` (of its own presence) and prunes the tombstones
/// every replica has seen. `registered` says whether this replica's row was written before (so a missing row means it was evicted).
pub(super) async fn tick(
    conn: &mut PgConnection,
    locked: &Meta,
    replica: ReplicaId,
    seen: u64,
    registered: bool,
    timeout: Duration,
) -> sqlx::Result<Ticked> {
    let me = replica.to_string();
    let now = locked.now_ms;
    let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
    let previous: Option<i64> = sqlx::query_scalar(
        "UPDATE replicas r SET heartbeat_ms = $2, seen = $3 FROM (SELECT heartbeat_ms FROM replicas WHERE id = $1) \
         AS before WHERE r.id = $1 RETURNING before.heartbeat_ms",
    )
    .bind(&me)
    .bind(now)
    .bind(to_i64(seen))
    .fetch_optional(&mut *conn)
    .await?;
    let evicted = registered && previous.is_none();
    if previous.is_none() {
        sqlx::query("INSERT INTO replicas (id, heartbeat_ms, seen, started_ms) VALUES ($1, $2, $3, $2)")
            .bind(&me)
            .bind(now)
            .bind(to_i64(seen))
            .execute(&mut *conn)
            .await?;
    }

    let holds = locked.leader_replica.as_deref() == Some(me.as_str());
    let lapsed = locked.leader_until_ms.is_none_or(|until| until <= now);
    let leaderless_ms = if holds && !lapsed {
        sqlx::query("UPDATE meta SET leader_until_ms = $1")
            .bind(now.saturating_add(timeout_ms))
            .execute(&mut *conn)
            .await?;
        None
    } else if lapsed {
        let term: i64 = sqlx::query_scalar(
            "UPDATE meta SET leader_term = leader_term + 1, leader_replica = $1, leader_until_ms = $2 \
             RETURNING leader_term",
        )
        .bind(&me)
        .bind(now.saturating_add(timeout_ms))
        .fetch_one(&mut *conn)
        .await?;
        // The previous leader last renewed a lease length before it lapsed; nobody led since.
        let leaderless = locked.leader_until_ms.map(|until| to_u64(now - (until - timeout_ms)));
        info!(term, previous_term = locked.leader_term, leaderless_ms = leaderless, "this replica leads now");
        Some(leaderless)
    } else {
        return Ok(Ticked { lead: None, evicted });
    };

    // A replica is gone when it was not heard from for the timeout while this one was: silence measured up to this
    // replica's previous tick, not to now, so that after an outage of the database (when no replica could say it
    // was alive) no replica is taken for gone. A replica with no previous tick removes no one.
    let cutoff = previous.map_or(i64::MIN, |previous| previous.saturating_sub(timeout_ms));
    let gone: Vec<String> = sqlx::query_scalar("DELETE FROM replicas WHERE heartbeat_ms < $1 RETURNING id")
        .bind(cutoff)
        .fetch_all(&mut *conn)
        .await?;
    for id in &gone {
        warn!(replica = %id, timeout_ms, "a replica was not heard from within the replica timeout; its streams close");
    }
    let alive: Vec<String> = sqlx::query_scalar("SELECT id FROM replicas").fetch_all(&mut *conn).await?;
    let alive = alive.iter().filter_map(|id| ReplicaId::parse_str(id).ok()).collect();
    // Every replica alive has seen at least this much: tombstones up to it are needed by no one.
    let prune: Option<i64> = sqlx::query_scalar("SELECT min(seen) FROM replicas").fetch_one(&mut *conn).await?;
    if let Some(prune) = prune.filter(|p| to_u64(*p) > locked.pruned_through) {
        sqlx::query("DELETE FROM tombstones WHERE revision <= $1").bind(prune).execute(&mut *conn).await?;
        sqlx::query("UPDATE meta SET pruned_through = $1").bind(prune).execute(&mut *conn).await?;
    }
    Ok(Ticked { lead: Some(Lead { alive, leaderless_ms: leaderless_ms.flatten() }), evicted })
}

/// A replica leaving (shutting down): its heartbeat row goes, and its lead, if it holds it, lapses now, so that
/// another replica leads at its next tick. The lead is made to lapse now rather than a lease ago, so the next leader
/// forgives at most a lease length more than the time no one led (L3 errs towards keeping leases).
pub(super) async fn leave(pool: &PgPool, replica: ReplicaId) -> sqlx::Result<()> {
    let me = replica.to_string();
    let mut tx = pool.begin().await?;
    meta(&mut tx, true).await?;
    sqlx::query("DELETE FROM replicas WHERE id = $1").bind(&me).execute(&mut *tx).await?;
    let handed = sqlx::query(
        "UPDATE meta SET leader_until_ms = (extract(epoch FROM clock_timestamp()) * 1000)::bigint \
         WHERE leader_replica = $1",
    )
    .bind(&me)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if handed.rows_affected() > 0 {
        info!("this replica leaves and hands its lead on");
    }
    Ok(())
}

/// Why a read failed: the database's error (with what was being done), or a row that does not parse (table and
/// problem).
#[derive(Debug)]
pub(super) enum ReadError {
    Db(&'static str, sqlx::Error),
    Corrupt(&'static str, String),
}

impl ReadError {
    /// The store's error, naming the store.
    pub(super) fn into_store_error(self, store: &str) -> StoreError {
        match self {
            Self::Db(context, source) => {
                StoreError::Db { context, store: store.to_owned(), source: DatabaseError::new(source) }
            }
            Self::Corrupt(table, problem) => StoreError::Corrupt { store: store.to_owned(), table, problem },
        }
    }
}

/// What makes the statements of one message read one state: PostgreSQL runs a message of several statements as one
/// (implicit) transaction, and this, first in it, makes that transaction REPEATABLE READ, so that every statement
/// sees the commits the first one saw (in the default READ COMMITTED, each would see those made before it began).
pub(super) const ONE_SNAPSHOT: &str = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; ";

/// How [`read_since`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reading {
    /// Beginning a write's transaction (`BEGIN_WRITE`) and taking the write lock first, in the same message.
    BeginWrite,
    /// Inside a write's transaction that holds the lock already.
    Locked,
    /// On its own, without the lock: a transaction of its own in the same message, REPEATABLE READ (so that the
    /// reads see one state), which, when anything was committed since `seen`, ends by committing synchronously
    /// [`FENCE`]'s logical-decoding message: its commit returns only once the WAL is flushed past every
    /// commit the reads saw, so what they read is durable when the message is answered. A catch-up is then one round
    /// trip, where a transaction begun, read, ended and followed by a fence of its own took four.
    Durable,
}

/// The `meta` row and what was committed since `seen`, read on `conn` in one round trip, as [`Reading`] says. The
/// statements go to PostgreSQL as one message (the simple query protocol), so a write holds the lock for one round
/// trip of reads, not four; each statement sees every commit made before it began (or, [`Reading::Durable`], before
/// the first), so the reads after the lock see everything committed before the lock was granted. `seen` is a number
/// formatted into the SQL: it carries nothing but digits.
///
/// The changes are `None` when nothing was committed since `seen`. When the tombstones `seen` would need were pruned
/// (`meta.pruned_through`), they are everything, read again (in a snapshot of its own and waited on until durable,
/// [`Reading::Durable`]: the message's transaction ended with it).
pub(super) async fn read_since(
    conn: &mut PgConnection,
    seen: u64,
    reading: Reading,
) -> Result<(Meta, Option<CatchUp>), ReadError> {
    let since = to_i64(seen);
    // What answers before the reads, with no row: `BEGIN` and `SET`, or `SET TRANSACTION`.
    let (begin, skipped, lock, end) = match reading {
        Reading::BeginWrite => (format!("{BEGIN_WRITE}; "), 2, " FOR UPDATE", String::new()),
        Reading::Locked => (String::new(), 0, "", String::new()),
        Reading::Durable => (ONE_SNAPSHOT.to_owned(), 1, "", format!("; {FENCE} FROM meta WHERE revision > {since}")),
    };
    let [producers, collectors, deletions] = reads_since(since);
    let sql = format!("{begin}{META_SELECT}{lock}; {producers}; {collectors}; {deletions}{end}");
    let (mut meta, mut changes) = (None, Batch::default());
    let mut results = sqlx::raw_sql(AssertSqlSafe(sql)).fetch_many(&mut *conn);
    let mut answered: usize = 0;
    while let Some(result) = results.next().await {
        let statement = answered.saturating_sub(skipped);
        let row = match result {
            Ok(Either::Left(_done)) => {
                answered += 1;
                continue;
            }
            Ok(Either::Right(row)) => row,
            // Past the reads, only the fence ([`Reading::Durable`]) can fail.
            Err(e) => return Err(ReadError::Db(READS.get(statement).copied().unwrap_or(FENCE_FAILED), e)),
        };
        match statement {
            0 => meta = Some(Meta::from_row(&row).map_err(|e| ReadError::Db(READS[0], e))?),
            1 => changes.upsert_producers.push(producer(&row)?),
            2 => changes.upsert_collectors.push(collector(&row)?),
            3 => {
                let (kind, id): (&str, &str) = (row.get("kind"), row.get("id"));
                let id =
                    Uuid::parse_str(id).map_err(|e| ReadError::Corrupt("tombstones", format!("id {id:?}: {e}")))?;
                match kind {
                    "producer" => changes.delete_producers.push(ProducerId(id)),
                    _ => changes.delete_collectors.push(CollectorId(id)),
                }
            }
            // The fence's row ([`Reading::Durable`]): it answers once the reads are durable.
            _ => {}
        }
    }
    drop(results);
    if !changes.delete_producers.is_empty() {
        let written: HashSet<ProducerId> = changes.upsert_producers.iter().map(|p| p.spec.id).collect();
        changes.delete_producers.retain(|id| !written.contains(id));
    }
    if !changes.delete_collectors.is_empty() {
        let written: HashSet<CollectorId> = changes.upsert_collectors.iter().map(|(id, _)| *id).collect();
        changes.delete_collectors.retain(|id| !written.contains(id));
    }
    let meta = meta.ok_or_else(|| ReadError::Corrupt("meta", "no row (no epoch)".into()))?;
    if seen < meta.pruned_through {
        let everything = match reading {
            Reading::Durable => read_durably(conn).await?,
            Reading::BeginWrite | Reading::Locked => read_all(conn).await?,
        };
        return Ok((meta, Some(CatchUp::Everything(everything))));
    }
    if meta.revision <= seen {
        return Ok((meta, None));
    }
    changes.settled_at_ms = meta.settled_at_ms;
    let revision = meta.revision;
    Ok((meta, Some(CatchUp::Changes { revision, changes })))
}

/// The reads of a catch-up since revision `since`: the producers and the collectors written since, and the tombstones
/// since. A tombstone of an id that is written since too (a producer that registered again) is not a deletion any
/// more; [`read_since`] drops it from what it read, rather than the read from every table it joins (which the planner
/// may do by hashing the whole tables): a row that exists now and was deleted since was written again since, after
/// its deletion, so it is among the rows read.
///
/// Each is bounded above by the store's revision as well as below by `since`, which changes nothing it reads (no row
/// is newer than the store) but what PostgreSQL's planner expects of it: until a table was first analyzed, which
/// autovacuum may not have done yet when it grew from nothing (a new store, a fleet registering at once), the planner
/// guesses that `revision > since` keeps a third of the rows and scans them all, in parallel (launching workers
/// each time), where a range closed on both sides is guessed at half a percent and read through the index on
/// `revision`. Every write of every replica reads these under the write lock whenever another replica committed.
pub(super) fn reads_since(since: i64) -> [String; 3] {
    let range = format!("revision > {since} AND revision <= (SELECT revision FROM meta)");
    [
        format!("SELECT {PRODUCER_COLUMNS} FROM producers WHERE {range} ORDER BY id"),
        format!("SELECT {COLLECTOR_COLUMNS} FROM collectors WHERE {range} ORDER BY id"),
        format!("SELECT kind, id FROM tombstones WHERE {range}"),
    ]
}

/// What each statement of [`read_since`] reads, for its errors.
const READS: [&str; 4] =
    ["cannot read meta", "cannot read producers", "cannot read collectors", "cannot read the deletions"];

/// Listens for the revisions other replicas' commits announce, on a connection of its own, for as long as the
/// returned receiver lives. After the connection was lost (and made again), it sends 0: notifications may have
/// been lost meanwhile, and the registry catches up at once.
pub(super) fn listen(pool: PgPool) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0);
    tokio::spawn(async move {
        let mut listener = None;
        loop {
            let Some(current) = listener.as_mut() else {
                let connected = async {
                    let mut l = PgListener::connect_with(&pool).await?;
                    l.listen(NOTIFY_CHANNEL).await?;
                    Ok::<_, sqlx::Error>(l)
                };
                tokio::select! {
                    () = tx.closed() => return,
                    connected = connected => match connected {
                        Ok(l) => {
                            listener = Some(l);
                            // Whatever was announced before listening began is caught up with now.
                            tx.send_replace(0);
                        }
                        Err(e) => {
                            warn!(error = %e, "cannot listen for other replicas' changes; catching up at each tick meanwhile");
                            tokio::select! {
                                () = tx.closed() => return,
                                () = tokio::time::sleep(LISTENER_RETRY) => {}
                            }
                        }
                    },
                }
                continue;
            };
            tokio::select! {
                () = tx.closed() => return,
                received = current.try_recv() => match received {
                    Ok(Some(notification)) => match notification.payload().parse::<u64>() {
                        Ok(revision) => { tx.send_replace(revision); }
                        Err(_) => warn!(payload = notification.payload(), "a notification on roster's channel that is not a revision; ignored"),
                    },
                    Ok(None) => {
                        info!("the connection listening for other replicas' changes was lost and is made again; catching up");
                        tx.send_replace(0);
                    }
                    Err(e) => {
                        warn!(error = %e, "listening for other replicas' changes failed; connecting again");
                        listener = None;
                    }
                },
            }
        }
    });
    rx
}
