//! The assignment feed's server side: [`snapshot`] holds a collector's assignment and builds what it is sent
//! (pure: the registry publishes each committed generation, the streams build its snapshot), and `stream` is the
//! task that serves one `Watch` stream from the generations the registry publishes.
//!
//! The split keeps the dependencies one way: the registry uses [`snapshot`], and `stream` uses the registry.

pub mod snapshot;
pub(crate) mod stream;
