//! rexec as a library: connect once, then run commands (many at once, from
//! any thread), copy files and manage detached jobs, blocking, with no
//! async runtime. This is the API for Rust programs and tests; the rest of
//! the crate is the `rexec` program's.
//!
//! ```
//! use rexec_client::Client;
//! // A server for the example (a test's own, on a free loopback port).
//! let server = rexec_server::EmbeddedServer::builder().token("s3cret").start()?;
//! let client = Client::builder()
//!     .token("s3cret")
//!     .connect(&server.addr().to_string())?;
//! let out = client.command("uname -s").output()?;
//! assert!(out.status.success());
//! assert_eq!(out.stdout, b"Linux\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What each call costs:
//! - [`Builder::connect`]: a TCP connection, the TLS handshake if asked,
//!   the hello and the login (two or three round trips: the last makes
//!   sure the server let us in), and one thread that reads for every
//!   command of the client.
//! - [`Command::spawn`]: one frame out; no round trip. [`Command::output`]
//!   and [`Client::run`]: the command's run time plus one round trip, and
//!   a thread for its stderr while it runs.
//! - [`Client::upload`], [`Client::download`]: a connection of their own
//!   each (connect as above), then the file's bytes and one round trip
//!   per file.
//! - Jobs: one round trip each ([`Client::attach`]: until the job ends).

mod child;
mod demux;
mod files;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rexec_proto::ExecMode;
use rexec_proto::auth::Token;

use crate::error::ClientError;
use crate::session::{ConnectOptions, Session, Writer};
use crate::tls::{TlsOptions, Trust};

pub use child::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Output};
pub use files::CopyOptions;

/// A connection to one rexecd. Cheap to clone: clones share the
/// connection, and it closes when the last one is dropped. `Send` and
/// `Sync`: commands may be started from many threads at once.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Where it connected, and how (copies connect again the same way).
    addr: String,
    opts: ConnectOptions,
    writer: Arc<Writer>,
    routes: Arc<demux::Routes>,
    next: AtomicU32,
    /// The server's protocol version (what it can do).
    protocol: u16,
    /// The socket, to end the reader thread when the client goes.
    socket: std::net::TcpStream,
}

impl Inner {
    fn next_id(&self) -> u32 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The reader thread sees the end and stops; the server stops what
        // still runs, as when a `rexec` goes away.
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

/// How to connect: [`Client::builder`], options, then
/// [`Builder::connect`]. Without options: plain TCP, no token, and the
/// keys of ssh-agent and `~/.ssh` offered where the server takes keys.
#[derive(Debug, Clone, Default)]
pub struct Builder {
    opts: ConnectOptions,
    error: Option<String>,
}

impl Builder {
    /// The server's shared secret (`rexecd --token-file`).
    pub fn token(mut self, secret: &str) -> Builder {
        match Token::new(secret) {
            Ok(t) => self.opts.token = Some(t),
            Err(_) => self.error = Some("an empty token".into()),
        }
        self
    }

    /// The shared secret from a file (which must be `chmod 600`).
    pub fn token_file(mut self, path: impl Into<PathBuf>) -> Builder {
        match Token::from_file(&path.into()) {
            Ok(t) => self.opts.token = Some(t),
            Err(e) => self.error = Some(e.to_string()),
        }
        self
    }

    /// A private key file to log in with (as `ssh -i`), offered after
    /// ssh-agent's keys.
    pub fn identity(mut self, path: impl Into<PathBuf>) -> Builder {
        self.opts.identities.push(path.into());
        self
    }

    /// The account to log in as (a server with `--login`).
    pub fn user(mut self, name: impl Into<String>) -> Builder {
        self.opts.user = Some(name.into());
        self
    }

    /// Speak TLS, and trust only a certificate with this fingerprint
    /// (`SHA256:...`, the second line `rexecd --tls` prints).
    pub fn tls_fingerprint(mut self, fingerprint: impl Into<String>) -> Builder {
        self.opts.tls = Some(TlsOptions {
            trust: Trust::Fingerprint(fingerprint.into()),
            known_hosts: PathBuf::new(),
        });
        self
    }

    /// Speak TLS, trusting as the known-hosts `file` says: a server met
    /// before must show the certificate recorded then; a new one is
    /// recorded (trust on first use, as `rexec --accept-new`). Nothing is
    /// ever asked on a terminal.
    pub fn tls_known_hosts(mut self, file: impl Into<PathBuf>) -> Builder {
        self.opts.tls = Some(TlsOptions {
            trust: Trust::KnownHosts { accept_new: true },
            known_hosts: file.into(),
        });
        self
    }

    /// Speak TLS, trusting a certificate that chains to a CA in this PEM
    /// file and names the host.
    pub fn tls_ca(mut self, pem: impl Into<PathBuf>) -> Builder {
        self.opts.tls = Some(TlsOptions {
            trust: Trust::Ca(pem.into()),
            known_hosts: PathBuf::new(),
        });
        self
    }

    /// Give up connecting (and on the server's hello) after this long.
    pub fn connect_timeout(mut self, limit: Duration) -> Builder {
        self.opts.connect_timeout = Some(limit);
        self
    }

    /// Probe a server silent for this long; the connection is lost after
    /// three times as long without a byte from it.
    pub fn keepalive(mut self, every: Duration) -> Builder {
        self.opts.keepalive = Some(every);
        self
    }

    /// Connects to `addr` (`HOST`, `HOST:PORT`, `[::1]:PORT`; the port is
    /// 7070 by default) and logs in.
    pub fn connect(self, addr: &str) -> Result<Client, Error> {
        if let Some(why) = self.error {
            return Err(Error::Usage(why));
        }
        let mut session =
            Session::connect(addr, &self.opts).map_err(|e| Error::from_client(addr, e))?;
        // A wrong token shows only once the server reads past the hello:
        // make sure now, so that a bad login is connect's error.
        let limit = self.opts.connect_timeout.unwrap_or(Duration::from_secs(10));
        session
            .confirm(limit)
            .map_err(|e| Error::from_client(addr, e))?;
        let socket = session
            .socket()
            .map_err(|e| Error::from_client(addr, ClientError::Io(e)))?;
        let writer = session.writer();
        let protocol = session.server.protocol;
        let routes = Arc::new(demux::Routes::default());
        demux::start(session, routes.clone())
            .map_err(|e| Error::from_client(addr, ClientError::Io(e)))?;
        Ok(Client {
            inner: Arc::new(Inner {
                addr: addr.to_string(),
                opts: self.opts,
                writer,
                routes,
                next: AtomicU32::new(1),
                protocol,
                socket,
            }),
        })
    }
}

impl Client {
    /// Options for a connection.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Connects to `addr` with the default options (see [`Builder`]).
    pub fn connect(addr: &str) -> Result<Client, Error> {
        Builder::default().connect(addr)
    }

    /// A command for `/bin/sh -c` on the server (pipes, globs and
    /// variables work, as with ssh).
    pub fn command(&self, command: impl Into<String>) -> Command {
        Command::new(self, command.into(), ExecMode::Shell)
    }

    /// A program and, with [`Command::arg`], its arguments, run without a
    /// shell (what a `--no-shell` server runs).
    pub fn program(&self, program: impl AsRef<str>) -> Command {
        let mut c = Command::new(self, String::new(), ExecMode::Argv);
        c.arg(program);
        c
    }

    /// Runs `command` through the shell to its end:
    /// `client.command(command).output()`.
    ///
    /// ```
    /// # let server = rexec_server::EmbeddedServer::builder().start()?;
    /// let client = rexec_client::Client::connect(&server.addr().to_string())?;
    /// let out = client.run("echo out; echo err >&2; exit 2")?;
    /// assert_eq!((out.stdout, out.stderr), (b"out\n".to_vec(), b"err\n".to_vec()));
    /// assert_eq!(out.status.code(), Some(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run(&self, command: &str) -> Result<Output, Error> {
        self.command(command).output()
    }
}

/// How a remote command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    code: Option<i32>,
    signal: Option<i32>,
    timed_out: bool,
    pub(crate) truncated: bool,
}

impl ExitStatus {
    fn from_exited(x: &rexec_proto::Exited) -> ExitStatus {
        let (code, signal) = match x.status {
            rexec_proto::ExitStatus::Code(c) => (Some(c), None),
            rexec_proto::ExitStatus::Signal(s) => (None, Some(s)),
        };
        ExitStatus {
            code,
            signal,
            timed_out: x.timed_out,
            truncated: x.truncated,
        }
    }

    /// It exited with code 0, on time and with all its output.
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out && !self.truncated
    }

    /// Its exit code, if it exited.
    pub fn code(&self) -> Option<i32> {
        self.code
    }

    /// The signal that killed it, if one did.
    pub fn signal(&self) -> Option<i32> {
        self.signal
    }

    /// The server stopped it at its time limit.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// Its output was cut at a limit (the server's, or
    /// [`Command::output_limit`]) and it was stopped.
    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit status: {c}")?,
            (_, Some(s)) => write!(f, "signal: {s}")?,
            _ => write!(f, "unknown status")?,
        }
        if self.timed_out {
            write!(f, " (timed out)")?;
        }
        if self.truncated {
            write!(f, " (output cut)")?;
        }
        Ok(())
    }
}

/// What went wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server could not be reached or did not answer.
    #[error("cannot connect to {addr}: {message}")]
    Connect {
        /// Where.
        addr: String,
        /// Why.
        message: String,
    },
    /// The server's certificate is not the one trusted.
    #[error("{addr}: {message}")]
    Trust {
        /// Where.
        addr: String,
        /// What it showed, and what was trusted.
        message: String,
    },
    /// The server turned the login away.
    #[error("{addr}: {message}")]
    Auth {
        /// Where.
        addr: String,
        /// What the server said.
        message: String,
    },
    /// The server spoke something other than the rexec protocol.
    #[error("{addr}: protocol error: {message}")]
    Protocol {
        /// Where.
        addr: String,
        /// What was wrong.
        message: String,
    },
    /// The connection ended (the server went away, or the network).
    #[error("the connection was lost: {0}")]
    Disconnected(String),
    /// The server refused or could not start the command (a limit, a
    /// program not allowed or not found...).
    #[error("the server refused: {0}")]
    Refused(String),
    /// A copy failed: which file, and why.
    #[error("copy failed: {0}")]
    Copy(String),
    /// The call itself is wrong (an empty token, a server too old for it).
    #[error("{0}")]
    Usage(String),
}

impl Error {
    fn from_client(addr: &str, e: ClientError) -> Error {
        let addr = addr.to_string();
        let message = e.to_string();
        match e {
            ClientError::Resolve(_)
            | ClientError::Refused(_)
            | ClientError::Unreachable(..)
            | ClientError::Timeout(_) => Error::Connect { addr, message },
            ClientError::Trust(_) => Error::Trust { addr, message },
            ClientError::Server(m) if m.kind == rexec_proto::ErrorKind::Auth => {
                Error::Auth { addr, message }
            }
            ClientError::Protocol(_) => Error::Protocol { addr, message },
            ClientError::Usage(m) => Error::Usage(m),
            ClientError::Server(_) | ClientError::Io(_) | ClientError::NoAnswer(..) => {
                Error::Disconnected(message)
            }
        }
    }

    fn from_refusal(e: rexec_proto::ErrorMsg) -> Error {
        Error::Refused(rexec_proto::text::clean(&e.message, 500))
    }

    fn disconnected(why: String) -> Error {
        Error::Disconnected(why)
    }
}
