//! The registry's durable store: the [`Store`] interface every store implements and its error, [`StoreError`].
//! [`sqlite`] (an embedded SQLite file, the default) and [`postgres`] (a PostgreSQL database that several replicas
//! share) implement it, writing the same rows (`rows`).
//!
//! The interface is deliberately narrow: [`Store::load`] (everything, at start and after a failed commit),
//! [`Store::begin`] and [`Txn::commit`] (one [`Batch`], all or nothing, durable when it returns), and for replicas
//! sharing a store, [`Store::catch_up`] and [`Store::follow`]. The registry keeps the working state in memory and
//! decides every change; a store only makes each batch durable, and, when replicas share it, serialises their
//! batches and hands each replica what the others committed. Registry changes, the assignment changes they cause and
//! the generation bumps always travel in the same batch, so a crash can never leave a generation that does not match
//! its assignment, and a replica never sees one without the other. Opening is each store's own (it takes what that
//! store needs: a directory, a database URL), and so is making the epoch: once, with the schema, by whoever creates
//! it. Nothing in the interface is specific to one database: it speaks [`Loaded`] and [`Batch`] (`crate::records`),
//! and a failure is a [`StoreError`].
//!
//! The registry holds its store as a `Box<dyn Store>`: which store runs is chosen when the server starts (by its
//! configuration), and the registry stays one concrete type whichever it is. The price is one boxed future per
//! call: one per batch, beside the fsync the batch waits for.

#[cfg(test)]
mod conformance;
pub(crate) mod postgres;
mod rows;
pub(crate) mod sqlite;

use std::{
    error::Error,
    fmt::{self, Display},
    future::Future,
    path::PathBuf,
    pin::Pin,
};

use crate::records::{Batch, Loaded, ReplicaId};

/// What a [`Store`] call returns: a future that the registry actor awaits.
pub(crate) type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A durable home for the registry's records, for one server or for replicas sharing it.
///
/// Every change goes through [`Store::begin`] and [`Txn::commit`]: `begin` takes the store's write lock and hands
/// back what other replicas committed since this one last looked ([`CatchUp`]), so the registry decides every batch
/// on the store's latest state, and the decisions of replicas are serialised whichever replica a call reaches. A store
/// with one server has no one else to catch up with and no lock to take.
pub(crate) trait Store: Send + Sync {
    /// Reads everything the store holds.
    ///
    /// # Errors
    /// When a read fails or a stored record does not parse ([`StoreError::Corrupt`]).
    fn load(&self) -> StoreFuture<'_, Result<Loaded, StoreError>>;

    /// Starts a write by `replica`, which has seen the store up to revision `seen`: takes the store's write lock
    /// (held until the [`Txn`] commits or is dropped) and returns what was committed since. On a `tick` (the
    /// registry's periodic work) the replica also says it is alive, and learns whether it leads ([`Begun::lead`]).
    ///
    /// # Errors
    /// When the store cannot be reached or read; nothing is changed then.
    fn begin(&self, replica: ReplicaId, seen: u64, tick: bool) -> StoreFuture<'_, Result<Begun, StoreError>>;

    /// What was committed since revision `seen`, without taking the write lock: how a replica follows the changes
    /// others make. `None` when nothing was. Durable when it returns, so it may be served at once.
    ///
    /// # Errors
    /// When the store cannot be reached or read.
    fn catch_up(&self, seen: u64) -> StoreFuture<'_, Result<Option<CatchUp>, StoreError>>;

    /// For a store that replicas share, the revisions the others announce as they commit (through the store's own
    /// notifications, so a change reaches every replica within milliseconds); 0 when the announcements were
    /// interrupted and some may be lost, so that the replica catches up at once. `None` for a store of one server,
    /// which has no one else to follow.
    fn follow(&self) -> Option<tokio::sync::watch::Receiver<u64>>;

    /// Closes the store cleanly for `replica`, which leaves; no call follows. A store shared by replicas takes it out
    /// of the replicas alive and hands its lead on at once, so that a rolling restart costs no wait for its lease to
    /// lapse.
    fn close(&self, replica: ReplicaId) -> StoreFuture<'_, ()>;
}

/// A write in progress, from [`Store::begin`]: the store's write lock is held until it commits or is dropped (which
/// writes nothing).
pub(crate) trait Txn: Send {
    /// Writes one batch, all of it or (on error) none of it, and commits. Returns once the batch is durable, so an
    /// answer sent after it survives a crash, with the store's revision after it. An empty batch writes no record.
    ///
    /// # Errors
    /// When any write or the commit fails (disk full, read-only directory, lost connection); nothing is changed
    /// then.
    fn commit<'a>(self: Box<Self>, batch: &'a Batch) -> StoreFuture<'a, Result<u64, StoreError>>;
}

/// What [`Store::begin`] hands back.
pub(crate) struct Begun {
    /// The write, holding the store's write lock.
    pub txn: Box<dyn Txn>,
    /// What other replicas committed since the revision given to `begin`, if anything. It is known durable only
    /// once this write's [`Txn::commit`] returned (another replica may have committed it without waiting for its
    /// flush, the PostgreSQL store's way of not holding the write lock across one): decide on it at once, serve it
    /// only after the commit.
    pub catch_up: Option<CatchUp>,
    /// On a tick, set when this replica leads: then, and only within this write, it applies the rules of time
    /// (leases, grace periods, settling) for every replica. Leadership is a lease with a term held in the store, and
    /// the store checks it under the write lock, so a replica that was deposed while it stalled cannot act on it.
    pub lead: Option<Lead>,
    /// On a tick, set when the other replicas took this one for dead (it could not say it was alive in time) and
    /// closed its collectors' streams for it: its own streams must end, so that their collectors come back.
    pub evicted: bool,
}

/// What a replica that leads learns at a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lead {
    /// The replicas alive now, this one included: streams held by any other are closed.
    pub alive: Vec<ReplicaId>,
    /// Set when this replica has just taken the lead from none: how long no replica led, in ms. That time was
    /// served by no one, so it counts for no lease or grace period (L3).
    pub leaderless_ms: Option<u64>,
}

/// What was committed since a revision a replica had seen.
#[derive(Debug)]
pub(crate) enum CatchUp {
    /// The changes, as one batch of records to write into the state, and the revision they bring it to.
    Changes {
        /// The store's revision after them.
        revision: u64,
        /// What changed.
        changes: Batch,
    },
    /// Everything, read again: the replica was further behind than the store keeps changes for.
    Everything(Loaded),
}

/// A store failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory of a store kept in files could not be created.
    #[error("cannot create data directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The data directory of a store kept in files exists but cannot be written (read-only filesystem,
    /// permissions, full disk).
    #[error(
        "data directory {path} is not writable; the store must write there: make it writable, free space, or point --data-dir elsewhere"
    )]
    NotWritable {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another process holds the lock of a store kept in files: another roster-server on the same data directory.
    #[error(
        "the store in {dir} is in use by another roster-server ({holder}): two servers on one SQLite file would \
         overwrite each other's rows; stop the other one or give this one another --data-dir (several servers share \
         one store only on PostgreSQL: --store postgres://...)"
    )]
    InUse {
        /// The data directory.
        dir: PathBuf,
        /// What the lock file says of its holder.
        holder: String,
    },
    /// A database operation failed.
    #[error("{context} ({store})")]
    Db {
        /// What was being done.
        context: &'static str,
        /// Which store: a database file's path, say.
        store: String,
        /// Why.
        source: DatabaseError,
    },
    /// The schema could not be brought up to date.
    #[error("cannot migrate {store}")]
    Migrate {
        /// Which store.
        store: String,
        /// Why.
        source: DatabaseError,
    },
    /// The database's schema is newer than this binary knows: a newer roster-server migrated it.
    #[error(
        "{store} has schema version {found}, newer than this roster-server knows (up to {known}): a newer \
         roster-server migrated it; upgrade this replica to the version the others run"
    )]
    SchemaTooNew {
        /// Which store.
        store: String,
        /// The first applied version this binary does not know.
        found: i64,
        /// The newest version this binary knows.
        known: i64,
    },
    /// A stored row does not parse: the store was edited or damaged.
    #[error(
        "{store} holds a bad row in {table}: {problem}; restore the file from a backup, or move it away to start an empty store (a new epoch)"
    )]
    Corrupt {
        /// Which store.
        store: String,
        /// The table.
        table: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// The database library's error behind a [`StoreError`]. sqlx writes each error's source into its own message
/// (`error returned from database: {0}`), against roster's rule (`roster::error_chain`): shown whole and ending
/// the chain, every cause is printed once.
#[derive(Debug)]
pub struct DatabaseError(Box<dyn Error + Send + Sync>);

impl DatabaseError {
    /// Wraps a database library's error.
    pub(crate) fn new(error: impl Error + Send + Sync + 'static) -> Self {
        Self(Box::new(error))
    }
}

impl Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Error for DatabaseError {}
