//! The server's errors, and the one mapping from them to gRPC statuses.
//!
//! Retry semantics follow from the codes (R2): bad input is `INVALID_ARGUMENT` (never retried); a store fault and
//! shutdown are `UNAVAILABLE` (retried: nothing was changed).

use std::sync::Arc;

use roster::domain::{CollectorId, FieldError, ProducerId};
use tonic::Status;

use crate::store::StoreError;

/// Why a request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A request field is invalid.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The store could not make the change durable; nothing was changed.
    #[error("the store could not write this change, so nothing was changed ({0}); retry when the fault is fixed")]
    Store(Arc<StoreError>),
    /// A report came from a collector this server has never seen.
    #[error("collector_id: {0} is not known to this server (open its Watch stream first)")]
    UnknownCollector(CollectorId),
    /// A call about a producer that is not registered.
    #[error("producer_id: {0} is not registered (register it first; a lapsed lease or a deregistration removes it)")]
    UnknownProducer(ProducerId),
    /// The server is shutting down.
    #[error("roster-server is shutting down; retry against this or another server")]
    ShuttingDown,
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::Field(_) => Status::invalid_argument(message),
            Error::UnknownCollector(_) | Error::UnknownProducer(_) => Status::not_found(message),
            Error::Store(_) | Error::ShuttingDown => Status::unavailable(message),
        }
    }
}
