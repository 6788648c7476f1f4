//! Loopback ports for the peers a test must tell their port: PostgreSQL, Prometheus, node_exporter (each binds the
//! port it is given, and with port 0 does not say which one it got), and the addresses a test needs free.
//!
//! [`free_port`] hands out ports from below the kernel's ephemeral range (`ip_local_port_range`), never the same one
//! twice in a process, each free when handed out. The OS's pick for port 0 would come from the ephemeral range, where
//! every outgoing connection also takes its local port, and roster's tests open hundreds (replicas to PostgreSQL,
//! collectors to servers, scrapes): such a port, released for the peer to bind, could be taken by one of them before
//! the peer binds it, or while a peer the test stopped is down ("Address already in use", which failed CI of stop
//! 27). Below the range, only another explicit bind can take it; a peer that meets one anyway is started again on
//! another port by its harness.

use std::{
    collections::BTreeSet,
    hash::{BuildHasher as _, RandomState},
    net::{Ipv4Addr, TcpListener},
    sync::{Mutex, PoisonError},
};

/// The lowest port handed out: above the well-known ports and those most services register.
const LOWEST: u16 = 10_000;
/// Linux's default start of the ephemeral range, when `/proc/sys/net/ipv4/ip_local_port_range` cannot be read.
const DEFAULT_EPHEMERAL_LOW: u16 = 32_768;

/// The ports this process handed out: a stopped peer starts again on its port, so none is handed out twice.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port of 127.0.0.1, free now, below the ephemeral range, that this process has not handed out before; see the
/// module doc. The search starts at a random point, so test binaries run one after another do not all start from
/// the same port.
///
/// # Panics
/// When no port below the ephemeral range is free.
pub fn free_port() -> u16 {
    let high = ephemeral_low().max(LOWEST + 1);
    let span = high - LOWEST;
    let start = u16::try_from(RandomState::new().hash_one(std::process::id()) % u64::from(span))
        .expect("below the span, which is a u16");
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let port = (0..span)
        .map(|i| LOWEST + (start + i) % span)
        .find(|&port| !handed_out.contains(&port) && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok())
        .unwrap_or_else(|| panic!("no free port of 127.0.0.1 in {LOWEST}..{high}"));
    handed_out.insert(port);
    port
}

/// The first port of the kernel's ephemeral range.
pub fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_LOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_below_the_ephemeral_range_and_never_handed_out_twice() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        assert!(ports.iter().all(|&p| (LOWEST..ephemeral_low()).contains(&p)), "{ports:?}");
        for &port in &ports {
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap_or_else(|e| panic!("{port} is free: {e}"));
        }
        // An outgoing connection takes its local port from the ephemeral range: never one handed out.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let outgoing = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert!(outgoing.local_addr().unwrap().port() >= ephemeral_low());
    }
}
