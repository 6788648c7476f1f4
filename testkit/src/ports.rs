//! Loopback ports for the peers a test must tell their port: PostgreSQL, Prometheus, node_exporter (each binds the
//! port it is given, and with port 0 does not say which one it got), and the addresses a test needs free.
//!
//! [`free_port`] hands out ports from outside the kernel's ephemeral range (`ip_local_port_range`): below it, or
//! above it where it starts too low to leave room; never the same one twice in a process, each free when handed
//! out. The OS's pick for port 0 would come from the ephemeral range, where
//! every outgoing connection also takes its local port, and roster's tests open hundreds (replicas to PostgreSQL,
//! collectors to servers, scrapes): such a port, released for the peer to bind, could be taken by one of them before
//! the peer binds it, or while a peer the test stopped is down ("Address already in use", which failed CI of stop
//! 27). Outside the range, only another explicit bind can take it; the harnesses of PostgreSQL, node_exporter and
//! the tests' Prometheus start their peer again on another port if one did (the benchmark's peers do not).

use std::{
    collections::BTreeSet,
    hash::{BuildHasher as _, RandomState},
    net::{Ipv4Addr, TcpListener},
    sync::{Mutex, PoisonError},
};

/// The lowest port handed out: above the well-known ports and those most services register.
const LOWEST: u16 = 10_000;
/// The fewest ports a range below or above the ephemeral range must offer to be used.
const ENOUGH: u16 = 1_000;
/// Linux's default ephemeral range, when `/proc/sys/net/ipv4/ip_local_port_range` cannot be read.
const DEFAULT_EPHEMERAL: (u16, u16) = (32_768, 60_999);

/// The ports this process handed out: a stopped peer starts again on its port, so none is handed out twice.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port of 127.0.0.1, free now, outside the ephemeral range, that this process has not handed out before; see
/// the module doc. The search starts at a random point, so test binaries run one after another do not all start
/// from the same port.
///
/// # Panics
/// When the ephemeral range leaves fewer than a thousand ports on either side, or none of them is free.
pub fn free_port() -> u16 {
    let (low, high) = outside_ephemeral();
    let span = u32::from(high) - u32::from(low);
    let start = u32::try_from(RandomState::new().hash_one(std::process::id()) % u64::from(span))
        .expect("below the span, which is at most 65 536");
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let port = (0..span)
        .filter_map(|i| u16::try_from(u32::from(low) + (start + i) % span).ok())
        .find(|&port| !handed_out.contains(&port) && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok())
        .unwrap_or_else(|| panic!("no free port of 127.0.0.1 in {low}..{high}"));
    handed_out.insert(port);
    port
}

/// The ports handed out, `low..high`: below the ephemeral range from 10 000, or above it when it starts too low.
pub fn outside_ephemeral() -> (u16, u16) {
    let (first, last) = ephemeral();
    if first >= LOWEST.saturating_add(ENOUGH) {
        (LOWEST, first)
    } else if last <= u16::MAX - ENOUGH {
        (last + 1, u16::MAX)
    } else {
        panic!(
            "the ephemeral port range ({first}-{last}, net.ipv4.ip_local_port_range) leaves no room for the ports \
             test peers are told: narrow it, for example to 32768-60999"
        )
    }
}

/// The kernel's ephemeral range, first and last port.
fn ephemeral() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| {
            let mut ports = range.split_whitespace().map(str::parse);
            Some((ports.next()?.ok()?, ports.next()?.ok()?))
        })
        .unwrap_or(DEFAULT_EPHEMERAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_below_the_ephemeral_range_and_never_handed_out_twice() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        let (low, high) = outside_ephemeral();
        assert!(ports.iter().all(|&p| (low..high).contains(&p)), "{ports:?}");
        for &port in &ports {
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap_or_else(|e| panic!("{port} is free: {e}"));
        }
        // An outgoing connection takes its local port from the ephemeral range: never one handed out.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let outgoing = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (first, last) = ephemeral();
        assert!((first..=last).contains(&outgoing.local_addr().unwrap().port()));
    }
}
