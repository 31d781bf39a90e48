//! A loopback TCP proxy that tests put between `rexec` and `rexecd` to
//! play a bad network: it passes traffic, passes it slowly, stalls it, or
//! cuts it with a reset.
//!
//! The proxy's socket towards the server has a small receive buffer (set
//! before connecting), so while the proxy stalls or trickles, the server's
//! writes back up within a few kilobytes of the proxy, as they would behind
//! a slow link, instead of disappearing into megabytes of kernel buffers.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How the proxy treats traffic; applies to every connection, at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything as fast as both sides allow.
    Pass,
    /// Forward at most `bytes` every millisecond, server to client only
    /// (the client's requests pass at full speed).
    Trickle { bytes: usize },
    /// Forward nothing either way (a partition); the sockets stay open.
    Stall,
    /// Cut every connection with a reset, both ways, at the next bytes (a
    /// crashed middlebox): mid-frame, when traffic was trickling.
    Reset,
}

#[derive(Debug)]
struct Control {
    mode: Mutex<Mode>,
    changed: Condvar,
    /// Bytes forwarded client to server, all connections together.
    up: std::sync::atomic::AtomicU64,
}

impl Control {
    /// Waits while the proxy is stalled; returns the mode to forward in.
    fn wait_unstalled(&self) -> Mode {
        let mut m = self.mode.lock().unwrap();
        while *m == Mode::Stall {
            m = self.changed.wait(m).unwrap();
        }
        *m
    }
}

/// A running proxy; its threads end when either side closes.
#[derive(Debug)]
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    ctl: Arc<Control>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards each connection to
    /// `upstream`, in `mode`.
    pub fn start(upstream: SocketAddr, mode: Mode) -> Proxy {
        Self::start_on("127.0.0.1:0", upstream, mode)
    }

    /// The same, listening on `listen` (`127.0.0.2:0`: a relay on another
    /// address than the server's).
    pub fn start_on(listen: &str, upstream: SocketAddr, mode: Mode) -> Proxy {
        let listener = TcpListener::bind(listen).expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let ctl = Arc::new(Control {
            mode: Mutex::new(mode),
            changed: Condvar::new(),
            up: std::sync::atomic::AtomicU64::new(0),
        });
        let c = ctl.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = crate::connect_small_window(upstream) else {
                    continue;
                };
                for (from, to, down) in [
                    (server.try_clone(), client.try_clone(), true),
                    (client.try_clone(), server.try_clone(), false),
                ] {
                    let (Ok(from), Ok(to)) = (from, to) else {
                        continue;
                    };
                    let c = c.clone();
                    std::thread::spawn(move || forward(from, to, down, &c));
                }
            }
        });
        Proxy { addr, ctl }
    }

    /// `ADDRESS:PORT`, for the client's command line.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Bytes forwarded from clients to the server so far.
    pub fn bytes_up(&self) -> u64 {
        self.ctl.up.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Changes how traffic is treated, for every connection at once.
    pub fn set(&self, mode: Mode) {
        *self.ctl.mode.lock().unwrap() = mode;
        self.ctl.changed.notify_all();
    }
}

/// Copies `from` to `to` until either ends; `down` is server to client.
fn forward(mut from: TcpStream, mut to: TcpStream, down: bool, ctl: &Control) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let len = match ctl.wait_unstalled() {
            Mode::Trickle { bytes } if down => bytes.clamp(1, buf.len()),
            _ => buf.len(),
        };
        let n = match from.read(&mut buf[..len]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // A stall that began during the read holds these bytes too.
        let mode = ctl.wait_unstalled();
        if mode == Mode::Reset {
            // SO_LINGER 0: the last close sends RST instead of FIN. Reading
            // is shut so that the other direction's thread wakes and lets
            // go of its copies too.
            for s in [&to, &from] {
                let _ = rustix::net::sockopt::set_socket_linger(s, Some(Duration::ZERO));
                let _ = s.shutdown(Shutdown::Read);
            }
            return;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if !down {
            ctl.up
                .fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
        }
        if matches!(mode, Mode::Trickle { .. }) && down {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    if *ctl.mode.lock().unwrap() == Mode::Reset {
        return; // no FIN: the reset is all the peers get
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
