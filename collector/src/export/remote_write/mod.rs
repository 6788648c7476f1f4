//! Prometheus remote-write 1.0: the exporter that writes the collector's samples to a time-series database.

pub(crate) mod client;
pub(crate) mod config;
pub(crate) mod shards;
pub(crate) mod stats;
#[cfg(test)]
mod test_receiver;
pub(crate) mod wire;
