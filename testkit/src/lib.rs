//! Test-only helpers shared by roster's test suites (never shipped: `publish = false`, used only as a
//! dev-dependency).
//!
//! It holds what several suites (and `roster-bench`) would otherwise each write again:
//! - [`FaultProxy`]: a TCP proxy on loopback that a test switches between forwarding and the network faults roster
//!   must survive (refused, reset, cut mid-stream, half-open silence, slow trickle). It also records when each
//!   connection was accepted, so a test can count connection attempts per second ([`per_window`]).
//! - [`ports`]: loopback ports for peers that must be told theirs ([`free_port`]), safe from outgoing connections.
//! - [`postgres`]: a real PostgreSQL server of the test's own ([`TestPostgres`]), stopped, killed and started again
//!   by the test.
//! - [`registry`]: registering producers in bulk.
//! - [`server`]: a roster-server in the test's own process ([`TestServer`]).
//! - [`tls`]: test certificates made with rcgen, written as PEM files ([`TlsSetup`]).
//! - [`wait`]: bounded waiting on a condition ([`wait_for`] and its siblings, all bounded by [`WAIT`]).

pub mod fault_proxy;
pub mod ports;
pub mod postgres;
pub mod registry;
pub mod server;
pub mod tls;
pub mod wait;

pub use fault_proxy::{FaultProxy, Mode, per_window};
pub use ports::free_port;
pub use postgres::TestPostgres;
pub use registry::{
    largest_labels, longest_address, never_due, register_all, register_many, register_many_like, register_spread,
    registration,
};
pub use server::TestServer;
pub use tls::{TestCa, TestCert, TlsSetup, Usage};
pub use wait::{WAIT, wait_for, wait_for_some, wait_until};
