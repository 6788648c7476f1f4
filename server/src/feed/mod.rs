//! The assignment feed's server side: [`snapshot`] builds what a collector is sent (pure: the registry builds one
//! per generation), and `stream` is the task that serves one `Watch` stream from the registry's snapshots.
//!
//! The split keeps the dependencies one way: the registry uses [`snapshot`], and `stream` uses the registry.

pub mod snapshot;
pub(crate) mod stream;
