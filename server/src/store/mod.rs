//! The registry's durable store: the [`Store`] interface every store implements and its error, [`StoreError`].
//! [`sqlite`] (an embedded SQLite file, the default) and [`postgres`] (a PostgreSQL database that several replicas
//! share) implement it, writing the same rows (`rows`).
//!
//! The interface is deliberately narrow: [`Store::load`] (everything, at start and after a failed commit),
//! [`Store::commit`] (one [`Batch`], all or nothing, durable when it returns) and [`Store::close`]. The registry
//! keeps the working state in memory and decides every change; a store only makes each batch durable. Registry
//! changes, the assignment changes they cause and the generation bumps always travel in the same batch, so a crash
//! can never leave a generation that does not match its assignment. Opening is each store's own (it takes what
//! that store needs: a directory, a database URL), and so is making the epoch: once, with the schema, by whoever
//! creates it. Nothing in the interface is specific to one database: it speaks [`Loaded`] and [`Batch`]
//! (`crate::records`), and a failure is a [`StoreError`].
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

use crate::records::{Batch, Loaded};

/// What a [`Store`] call returns: a future that the registry actor awaits.
pub(crate) type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A durable home for the registry's records.
pub(crate) trait Store: Send + Sync {
    /// Reads everything the store holds.
    ///
    /// # Errors
    /// When a read fails or a stored record does not parse ([`StoreError::Corrupt`]).
    fn load(&self) -> StoreFuture<'_, Result<Loaded, StoreError>>;

    /// Writes one batch in one transaction: all of it, or (on error) none of it. Returns once the batch is durable,
    /// so an answer sent after it survives a crash. An empty batch writes nothing.
    ///
    /// # Errors
    /// When any write or the commit fails (disk full, read-only directory, lost connection); nothing is changed
    /// then.
    fn commit<'a>(&'a self, batch: &'a Batch) -> StoreFuture<'a, Result<(), StoreError>>;

    /// Closes the store cleanly; no call follows.
    fn close(&self) -> StoreFuture<'_, ()>;
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
