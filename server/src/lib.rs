//! rexecd: a single-threaded mio server that runs commands and streams their
//! output back.
//!
//! One [`mio::Poll`] holds the listening socket, every client connection,
//! every child's stdout, stderr and stdin pipe, and a pidfd per child. Nothing
//! in the loop blocks: sockets and pipes are non-blocking and drained until
//! `WouldBlock` (readiness is edge-triggered), children are reaped when their
//! pidfd says they exited, and every delay is a deadline in [`timer`].
//!
//! Data flows one way: socket bytes → [`rexec_proto::FrameDecoder`] →
//! message → action (spawn, write stdin, stop) → frames → socket.
//!
//! # The life of an `Exec`
//!
//! 1. `server.rs`: `Server::run` polls; `on_event` finds the token's slot in
//!    the [`registry`] (`Slot::Conn`) and calls `on_conn_event`.
//! 2. `server/input.rs`: `service_input` reads the socket into the
//!    connection's decoder (`Connection::read_input` in [`connection`]),
//!    takes out whole frames, and `on_message` runs each through
//!    [`protocol::ConnProtocol::on_message`], which answers `Action::Exec`.
//! 3. `server/command.rs`: `exec` checks the id, `start` builds the command
//!    ([`exec_policy::command_for`], under the [`exec_policy::ExecPolicy`]),
//!    makes its pipes ([`process::prepare`]) and starts it
//!    ([`process::start`], on a [`spawner`] thread or the loop itself),
//!    registers its pipes and pidfd, arms its time limit, and queues
//!    `Started`.
//! 4. `server/output.rs`: each readable pipe event calls `pump`, which reads
//!    up to 64 KiB, frames it (`encode_output_frame`) onto the connection's
//!    [`out_queue::OutQueue`], and flushes in 256 KiB batches; over the
//!    queue limit it pauses the pipe until the socket drains
//!    (`resume_pipes`).
//! 5. `server/reap.rs`: the pidfd event calls `reap`; once both pipes have
//!    ended, `finish` queues `Exited` and writes the audit line.
//!
//! Timers (`timer.rs`) come back through `Server::fire_timers`: a command's
//! deadline to `time_out` (command.rs), the pipe grace to
//! `check_pipe_grace` (reap.rs), and so on.
//!
//! ```no_run
//! use rexec_server::{Config, Server};
//! let server = Server::bind(Config { listen: "127.0.0.1:0".parse().unwrap(), ..Config::default() })?;
//! println!("listening on {}", server.local_addr());
//! server.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```

// Internal rooms: `pub(crate)`, so that the compiler reports what nothing
// uses. What other crates need is re-exported below.
pub(crate) mod cli;
pub(crate) mod config;
pub(crate) mod connection;
pub(crate) mod contain;
pub(crate) mod error;
pub(crate) mod exec_policy;
pub(crate) mod files;
pub(crate) mod files_request;
pub(crate) mod files_tree;
pub(crate) mod out_queue;
pub(crate) mod process;
pub(crate) mod protocol;
pub(crate) mod pty;
pub(crate) mod registry;
pub(crate) mod server;
pub(crate) mod spawner;
pub(crate) mod splice;
pub(crate) mod timer;
pub(crate) mod tls;

pub use cli::Args;
pub use config::{Config, Protocol};
pub use error::{ConfigError, TlsError};
pub use exec_policy::ExecPolicy;
pub use protocol::{Action, ConnProtocol};
pub use server::{Server, ServerHandle};
pub use tls::TlsSetup;

/// Runs one of rexecd's helper modes when `args` (the whole command line)
/// names one, and returns its exit code; `None` for a normal start.
///
/// rexecd runs its own binary as helpers: `__contain` (the `--contain`
/// supervisor) and `__files` (file transfers, files.rs).
pub fn helper_mode(args: &[std::ffi::OsString]) -> Option<i32> {
    let mode = args.get(1)?.to_str()?;
    if mode == contain::ARG {
        return Some(contain::supervise(&args[2..]));
    }
    (mode == files::FILES).then(files::helper)
}
