//! # roster
//!
//! The shared core of the roster control plane: the gRPC contract (generated in [`pb`]; Prometheus remote-write's
//! messages in [`remote_write_pb`]), the domain types that client-supplied fields are converted into once, at the edge
//! ([`domain`]), the one parser of the service URLs it dials ([`endpoint`]), the snapshot digest both ends of the
//! assignment feed compute ([`snapshot`]), the one way every roster server serves gRPC and every client makes its
//! channel ([`transport`]), the tower layer that gives every RPC a request id and a tracing span ([`rpc_trace`]),
//! who a caller is and what its role may do ([`auth`]: tokens, client certificates, the method table, the auth
//! layer and the clients' credentials),
//! the clients (the retrying unary client, [`client`] and [`retry`]; the feed follower, [`follower`]), the one HTTP
//! server of roster's own Prometheus metrics ([`metrics_http`]), and what every binary does alike ([`process`],
//! [`error_chain`]).
//!
//! The rules these pieces implement (S*, C*, R*, L*) are stated in `docs/DESIGN.md` and cited by number in the
//! code and the proto files.

pub mod auth;
pub mod backoff;
pub mod client;
pub mod domain;
pub mod endpoint;
pub mod error_chain;
pub mod follower;
pub mod message_limit;
pub mod metrics_http;
pub mod process;
pub mod producer;
pub mod retry;
pub mod rpc_trace;
pub mod snapshot;
pub mod transport;

/// Generated protobuf messages and tonic clients and servers for `roster.v1`.
///
/// Kept apart from the domain types: wire types are converted into [`domain`] types at the edge.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("roster.v1");

    /// The encoded `FileDescriptorSet` of every `roster.v1` proto file, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("roster_descriptor");
}

/// Generated messages of Prometheus remote-write 1.0 (`proto/prometheus`, package `prometheus`): what
/// roster-collector's remote-write sink sends, and what tests and the benchmark's receiver decode. Not part of the
/// `roster.v1` contract, nor of its reflection descriptor set.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod remote_write_pb {
    tonic::include_proto!("prometheus");
}
