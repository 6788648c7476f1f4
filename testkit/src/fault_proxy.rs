//! A fault-injecting TCP proxy on 127.0.0.1 in front of one upstream address.
//!
//! The proxy works on bytes, below gRPC and HTTP/2, so what it does to a connection is exactly what a real
//! network or a dying peer does: a client cannot tell it from the real thing. The test switches the [`Mode`] at
//! any time; a new mode applies to bytes relayed from then on, on open connections too.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

/// What the proxy does to connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Forward,
    /// Nothing listens: the port refuses connections, and open ones are reset (a server that is gone).
    Refuse,
    /// Accept and reset at once (a server there but broken).
    Reset,
    /// Forward, but reset a connection once it carried this many bytes from the server.
    CutAfter(u64),
    /// Keep connections open but forward nothing, either way (a half-open peer).
    Silent,
    /// Forward, but at most this many bytes per second from the server (a slow or congested link).
    Trickle(u64),
}

/// A TCP proxy on 127.0.0.1 in front of an upstream address, whose behaviour the test switches.
#[derive(Debug)]
pub struct FaultProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    /// Bumped to reset every open connection.
    generation: watch::Sender<u64>,
    /// Bytes relayed from the upstream to clients so far.
    pub bytes_down: Arc<AtomicU64>,
    accepted_at: Arc<Mutex<Vec<Instant>>>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on an OS-chosen port of 127.0.0.1, forwarding to `upstream`.
    ///
    /// # Panics
    /// If no port can be bound on 127.0.0.1.
    pub async fn start(upstream: SocketAddr) -> Self {
        #[allow(clippy::expect_used)] // Test helper: a panic is the test failing, with its message.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a port on 127.0.0.1");
        #[allow(clippy::expect_used)]
        let addr = listener.local_addr().expect("a bound listener has an address");
        let (mode, mode_rx) = watch::channel(Mode::Forward);
        let (generation, generation_rx) = watch::channel(0u64);
        let bytes_down = Arc::new(AtomicU64::new(0));
        let accepted_at = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            upstream,
            mode: mode_rx,
            generation: generation_rx,
            bytes_down: bytes_down.clone(),
            accepted_at: accepted_at.clone(),
        };
        let task = tokio::spawn(accept_loop(listener, addr, shared));
        Self { addr, mode, generation, bytes_down, accepted_at, task }
    }

    /// The address it listens on, for a client of another protocol (a database URL, say).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, for a gRPC client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches the mode; it applies at once, to open connections too.
    pub fn set(&self, mode: Mode) {
        if mode == Mode::Refuse {
            self.break_all();
        }
        self.mode.send_replace(mode);
    }

    /// Resets every open connection.
    pub fn break_all(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// When each connection was accepted, in order.
    ///
    /// # Panics
    /// If a relay task panicked while holding the list (it never does).
    pub fn accepted_at(&self) -> Vec<Instant> {
        #[allow(clippy::unwrap_used)]
        self.accepted_at.lock().unwrap().clone()
    }
}

/// Counts of `times` in each `width`-wide window from `start`, keyed by the window's number (0 is the first).
/// Times before `start` count in window 0. For connection attempts per second or per 100 ms from
/// [`FaultProxy::accepted_at`].
///
/// # Panics
/// If `width` is under a millisecond.
pub fn per_window(times: &[Instant], start: Instant, width: Duration) -> BTreeMap<u128, usize> {
    assert!(width.as_millis() > 0, "windows must be at least 1 ms wide");
    let mut counts = BTreeMap::new();
    for t in times {
        *counts.entry(t.saturating_duration_since(start).as_millis() / width.as_millis()).or_default() += 1;
    }
    counts
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.break_all();
    }
}

/// What the accept loop and every relay share with the [`FaultProxy`] handle.
#[derive(Clone)]
struct Shared {
    upstream: SocketAddr,
    mode: watch::Receiver<Mode>,
    generation: watch::Receiver<u64>,
    bytes_down: Arc<AtomicU64>,
    accepted_at: Arc<Mutex<Vec<Instant>>>,
}

async fn accept_loop(listener: TcpListener, addr: SocketAddr, mut shared: Shared) {
    let mut listener = Some(listener);
    loop {
        let Some(bound) = listener.as_ref() else {
            // Refusing: nothing listens until the mode changes; then listen on the same port again.
            if shared.mode.changed().await.is_err() {
                return;
            }
            if *shared.mode.borrow() != Mode::Refuse {
                listener = TcpListener::bind(addr).await.ok();
            }
            continue;
        };
        tokio::select! {
            accepted = bound.accept() => {
                let Ok((client, _)) = accepted else { return };
                if let Ok(mut times) = shared.accepted_at.lock() {
                    times.push(Instant::now());
                }
                if *shared.mode.borrow() == Mode::Reset {
                    drop(client);
                    continue;
                }
                tokio::spawn(relay(client, shared.clone()));
            }
            changed = shared.mode.changed() => {
                if changed.is_err() {
                    return;
                }
                if *shared.mode.borrow() == Mode::Refuse {
                    listener = None;
                }
            }
        }
    }
}

async fn relay(client: TcpStream, shared: Shared) {
    let Shared { upstream, mode, mut generation, bytes_down, .. } = shared;
    let Ok(server) = TcpStream::connect(upstream).await else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    generation.borrow_and_update();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if *mode.borrow() == Mode::Silent {
                continue;
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let down = async {
        let mut from_server = 0u64;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let current = *mode.borrow();
            match current {
                Mode::Silent => continue,
                Mode::CutAfter(limit) if from_server + n as u64 >= limit => {
                    let keep = usize::try_from(limit.saturating_sub(from_server)).unwrap_or(n).min(n);
                    let _ = client_write.write_all(&buf[..keep]).await;
                    bytes_down.fetch_add(keep as u64, Ordering::Relaxed);
                    return;
                }
                Mode::Trickle(per_second) => {
                    // Slices of a twentieth of a second's worth, one every 50 ms.
                    let slice = usize::try_from(per_second / 20).unwrap_or(usize::MAX).max(1);
                    for piece in buf[..n].chunks(slice) {
                        if client_write.write_all(piece).await.is_err() {
                            return;
                        }
                        bytes_down.fetch_add(piece.len() as u64, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    from_server += n as u64;
                    continue;
                }
                Mode::Forward | Mode::Reset | Mode::Refuse | Mode::CutAfter(_) => {}
            }
            from_server += n as u64;
            if client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
            bytes_down.fetch_add(n as u64, Ordering::Relaxed);
        }
    };
    tokio::select! {
        () = up => {}
        () = down => {}
        _ = generation.changed() => {}
    }
    // Dropping the halves closes both sockets.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_window_counts_each_time_in_its_window_and_earlier_times_in_the_first() {
        let start = Instant::now() + Duration::from_secs(1);
        let at = |ms: u64| start + Duration::from_millis(ms);
        let times = [start - Duration::from_millis(5), at(0), at(99), at(100), at(250), at(1_999)];
        let counts = per_window(&times, start, Duration::from_millis(100));
        assert_eq!(counts, BTreeMap::from([(0, 3), (1, 1), (2, 1), (19, 1)]));
        assert_eq!(per_window(&times, start, Duration::from_secs(1)), BTreeMap::from([(0, 5), (1, 1)]));
        assert!(per_window(&[], start, Duration::from_secs(1)).is_empty());
    }
}
