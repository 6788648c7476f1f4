//! The server's errors, and the one mapping from them to gRPC statuses: every status the server sends is made
//! here, from an [`Error`] (`From<Error> for Status`), and nowhere else.
//!
//! Retry semantics follow from the codes (R2): bad input is `INVALID_ARGUMENT` (never retried); a caller without
//! valid credentials is `UNAUTHENTICATED`, one whose role may not do what it asks `PERMISSION_DENIED` (neither
//! retried at once; both made by [`roster::auth::AuthError`]'s mapping, which the auth layer uses too); a store fault and
//! shutdown are `UNAVAILABLE` (retried: nothing was changed); asking to forget a collector that is not gone is
//! `FAILED_PRECONDITION` (not retried: the state must change first), and so is a second process with a
//! collector's id (not retried at once: a feed follower retries it with its capped backoff). A status's message
//! is the error's chain ([`roster::error_chain::chain`]), so it names the cause too.

use std::sync::Arc;

use roster::{
    auth::AuthError,
    domain::{CollectorId, FieldError, ProducerId},
    error_chain::chain,
};
use tonic::{Status, metadata::MetadataMap};

use crate::{records::Liveness, store::StoreError};

/// Why a request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum Error {
    /// A request field is invalid.
    #[error(transparent)]
    Field(FieldError),
    /// The caller may not act on what the request names (another collector's id, a producer outside its binding,
    /// a pin), or carries no principal at all.
    #[error(transparent)]
    Auth(AuthError),
    /// The store could not make the change durable; nothing was changed.
    #[error("the store could not write this change, so nothing was changed; retry when the fault is fixed")]
    Store(#[source] Arc<StoreError>),
    /// A report from, or a listing of, a collector this server does not know.
    #[error("collector_id: {0} is not known to this server (it never opened its feed, or was forgotten)")]
    UnknownCollector(CollectorId),
    /// An observe-only `Watch` of a collector this server does not know.
    #[error(
        "collector_id: {0} is not known to this server (never seen, or forgotten); observing a feed does not create a collector: pass the id of one that `roster collectors list` shows"
    )]
    ObserveUnknown(CollectorId),
    /// `ForgetCollector` of a collector that is live or in grace.
    #[error("collector_id: {id} is {why}; only a departed collector can be forgotten")]
    NotDeparted {
        /// The collector.
        id: CollectorId,
        /// Its state, and what to do.
        why: String,
    },
    /// A call about a producer that is not registered.
    #[error("producer_id: {0} is not registered (register it first; a lapsed lease or a deregistration removes it)")]
    UnknownProducer(ProducerId),
    /// The server is shutting down.
    #[error("roster-server is shutting down; retry against this or another server")]
    ShuttingDown,
    /// A feed stream ended by the server's shutdown (S6), with when its collector should come back: sent in
    /// gRPC's own retry pushback header too, so the fleet reconnects spread out rather than all at once.
    #[error(
        "roster-server is shutting down; reconnect in {pushback_ms} ms (grpc-retry-pushback-ms) to this or another \
         server"
    )]
    Reconnect {
        /// How long to wait before reconnecting.
        pushback_ms: u64,
    },
    /// A response could not be encoded.
    #[error("cannot encode a response")]
    Encode(#[source] prost::EncodeError),
    /// Another running process already follows this collector's feed (a copied data directory).
    #[error(
        "collector_id: {collector} is in use by another running collector process (instance {running}), so this \
         one (instance {refused}) is refused: both would collect every producer and write every sample twice. If \
         this process's data directory was copied from another collector's, stop it, delete the collector-id file in \
         its data directory (or start it with --id and a new UUID) and start it again; until then it keeps \
         collecting its last known set and retries"
    )]
    DuplicateInstance {
        /// The collector id both use.
        collector: CollectorId,
        /// The instance holding the feed.
        running: uuid::Uuid,
        /// The instance refused.
        refused: uuid::Uuid,
    },
}

impl Error {
    /// The refusal to forget collector `id`, which is `liveness` at `now_ms`: why, and what to do.
    pub(crate) fn not_departed(id: CollectorId, liveness: Liveness, now_ms: u64) -> Self {
        let why = match liveness {
            Liveness::Live { streams } => {
                format!("live ({streams} feed stream(s) open): stop it, and forget it once its grace period has ended")
            }
            Liveness::Grace { until_ms } => format!(
                "in grace for another {:.1} s (its feed stream closed; it keeps its producers in case it comes back): \
                 forget it once the grace period has ended",
                until_ms.saturating_sub(now_ms) as f64 / 1000.0
            ),
            Liveness::Departed { .. } => "departed".to_owned(),
        };
        Self::NotDeparted { id, why }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let message = chain(&e).to_string();
        match e {
            // The library maps a bad field for every roster service alike (the collector's status API too).
            Error::Field(field) => Status::from(field),
            // The auth layer refuses with the same mapping, so a refusal reads alike wherever it is made.
            Error::Auth(auth) => Status::from(auth),
            Error::UnknownCollector(_) | Error::UnknownProducer(_) | Error::ObserveUnknown(_) => {
                Status::not_found(message)
            }
            Error::NotDeparted { .. } | Error::DuplicateInstance { .. } => Status::failed_precondition(message),
            Error::Store(_) | Error::ShuttingDown => Status::unavailable(message),
            Error::Reconnect { pushback_ms } => {
                let mut metadata = MetadataMap::new();
                metadata.insert("grpc-retry-pushback-ms", pushback_ms.into());
                Status::with_metadata(tonic::Code::Unavailable, message, metadata)
            }
            Error::Encode(_) => Status::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DatabaseError;

    #[test]
    fn a_store_fault_is_unavailable_and_its_message_names_every_cause_once() {
        let fault = StoreError::Db {
            context: "cannot commit",
            store: "/data/roster.db".to_owned(),
            source: DatabaseError::new(std::io::Error::other("database or disk is full")),
        };
        let status = Status::from(Error::Store(Arc::new(fault)));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(
            status.message(),
            "the store could not write this change, so nothing was changed; retry when the fault is fixed: cannot \
             commit (/data/roster.db): database or disk is full"
        );
    }

    #[test]
    fn a_stream_ended_by_the_shutdown_says_when_to_reconnect_in_the_retry_pushback_header() {
        let status = Status::from(Error::Reconnect { pushback_ms: 1234 });
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.metadata().get("grpc-retry-pushback-ms").and_then(|v| v.to_str().ok()), Some("1234"));
        assert!(status.message().contains("reconnect in 1234 ms"), "{}", status.message());
    }
}
