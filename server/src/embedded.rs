//! A rexecd inside the calling process, for tests: started on a free
//! loopback port by a builder, serving on a thread of its own, stopped
//! when dropped.
//!
//! ```
//! // First thing in main: the server runs its file transfers by starting
//! // this program again, as rexecd does itself.
//! rexec_server::run_helper_if_asked();
//! let server = rexec_server::EmbeddedServer::builder().token("s3cret").start()?;
//! assert!(server.addr().ip().is_loopback());
//! std::net::TcpStream::connect(server.addr())?; // it serves
//! server.stop()?; // (or when dropped)
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! rexec_client's `Client` is how a test talks to it.
//!
//! Commands run as the calling process's user, from its home directory.
//! File transfers need a helper program: by default this very program,
//! which must then call [`run_helper_if_asked`] first in `main`; a test
//! harness's `main` cannot, so tests that copy files name a built
//! `rexecd` with [`Builder::helper`]. Detached jobs are off: they would
//! outlive the server and the test (a real `rexecd` has them).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use rexec_proto::auth::Token;

use crate::config::Config;
use crate::server::{Server, ServerHandle};

/// Options for an [`EmbeddedServer`]; [`EmbeddedServer::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    cfg: Config,
    tls: bool,
    helper: Option<PathBuf>,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            cfg: Config {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                // The calling program's signals are its own.
                handle_signals: false,
                ..Config::default()
            },
            tls: false,
            helper: None,
        }
    }
}

impl Builder {
    /// Clients must prove they hold this secret.
    pub fn token(mut self, secret: &str) -> Builder {
        self.cfg.token = Token::new(secret).ok();
        self
    }

    /// Speak TLS with a self-signed certificate made for this server (in
    /// a private directory removed when it stops); its fingerprint is
    /// [`EmbeddedServer::fingerprint`].
    pub fn tls(mut self) -> Builder {
        self.tls = true;
        self
    }

    /// Stop commands that run longer than this.
    pub fn timeout(mut self, limit: Duration) -> Builder {
        self.cfg.timeout = Some(limit);
        self
    }

    /// Listen on this loopback address instead of `127.0.0.1:0`.
    pub fn listen(mut self, addr: SocketAddr) -> Builder {
        self.cfg.listen = addr;
        self
    }

    /// The program that runs file transfers and jobs: a built `rexecd`
    /// (by default, this program: see the module's documentation).
    pub fn helper(mut self, rexecd: impl Into<PathBuf>) -> Builder {
        self.helper = Some(rexecd.into());
        self
    }

    /// Any other setting, on the server's whole [`Config`].
    pub fn configure(mut self, change: impl FnOnce(&mut Config)) -> Builder {
        change(&mut self.cfg);
        self
    }

    /// Binds, checks the settings as rexecd does, and starts serving on a
    /// thread.
    pub fn start(self) -> io::Result<EmbeddedServer> {
        let mut cfg = self.cfg;
        let helper = match self.helper {
            Some(h) => h,
            None => std::env::current_exe()?,
        };
        cfg.exec.files_helper = Some(helper);
        let state = match self.tls {
            true => {
                let dir = tempdir()?;
                cfg.tls = Some(crate::tls::self_signed(&dir).map_err(io::Error::other)?);
                Some(dir)
            }
            false => None,
        };
        cfg.check().map_err(io::Error::other)?;
        let fingerprint = cfg.tls.as_ref().map(|t| t.fingerprint.clone());
        let server = Server::bind(cfg)?;
        let addr = server.local_addr();
        let handle = server.handle();
        let thread = std::thread::Builder::new()
            .name("rexecd".into())
            .spawn(move || server.run())?;
        Ok(EmbeddedServer {
            addr,
            fingerprint,
            handle,
            thread: Some(thread),
            state,
        })
    }
}

/// A server running in this process; it stops (its commands stopped,
/// its clients told) when dropped.
#[derive(Debug)]
pub struct EmbeddedServer {
    addr: SocketAddr,
    fingerprint: Option<String>,
    handle: ServerHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
    /// The TLS identity's directory, removed at the end.
    state: Option<PathBuf>,
}

impl EmbeddedServer {
    /// Options, then [`Builder::start`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Where it listens, with the port it was given.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its TLS certificate's fingerprint (`SHA256:...`), with TLS.
    pub fn fingerprint(&self) -> Option<&str> {
        self.fingerprint.as_deref()
    }

    /// Stops it and waits until it has: what was running is stopped and
    /// the clients are told.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_now()
    }

    fn stop_now(&mut self) -> io::Result<()> {
        self.handle.shutdown();
        let result = match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the server's thread panicked"))),
            None => Ok(()),
        };
        if let Some(dir) = self.state.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        result
    }
}

impl Drop for EmbeddedServer {
    fn drop(&mut self) {
        if let Err(e) = self.stop_now() {
            log::error!("embedded rexecd: {e}");
        }
    }
}

/// A new private directory for the TLS identity.
fn tempdir() -> io::Result<PathBuf> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("rexecd-embedded-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// When this program was started as one of rexecd's helpers (by an
/// [`EmbeddedServer`] of its own, for a file transfer), runs
/// that helper and exits; otherwise returns at once. Call it first in
/// `main`.
pub fn run_helper_if_asked() {
    crate::sys::adopt_ignored_signals();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = crate::helper_mode(&args) {
        std::process::exit(code);
    }
}
