#![warn(missing_docs)]
//! rexecd: one mio event loop that runs commands and streams their output
//! back, with two spawner threads that only start processes.
//!
//! One [`mio::Poll`] holds the listening socket, every client connection,
//! every child's stdout, stderr and stdin pipe, and a pidfd per child. The
//! loop never waits on a peer: sockets and pipes are non-blocking and
//! drained until `WouldBlock` (readiness is edge-triggered), children are
//! reaped when their pidfd says they exited, every delay is a deadline in
//! `timer`, and `fork`/`exec` happen on the spawner threads. It does make
//! a few local lookups on its way to starting a command: the user database
//! for a login shell's path, and a `stat` of the starting directory. A slow
//! NSS or NFS server stalls it there; moving command building onto the
//! spawner threads would end that, and is not done yet.
//!
//! Data flows one way: socket bytes → [`rexec_proto::FrameDecoder`] →
//! message → action (spawn, write stdin, stop) → frames → socket.
//!
//! # Who owns what
//!
//! A `connection::Connection` owns its socket, decoder, output queue,
//! holds and deadlines; a `process::Proc` owns its pipes, its counts and
//! its stop. Each answers what happened (`Deadline`, `Lingered`,
//! `Pumped`), and the [`Server`] owns the tables (connections, commands,
//! registrations, timers) and routes: it never reaches into a field.
//!
//! # The life of an `Exec`
//!
//! 1. `server.rs`: `Server::run` polls; `on_event` finds the token's slot in
//!    the `registry` and calls `on_conn_event`.
//! 2. `server/input.rs`: `service_input` has the connection read its socket
//!    and hand out whole messages (`Connection::next_message`); each goes
//!    through [`ConnProtocol::on_message`], which answers
//!    `Action::Exec`.
//! 3. `server/command.rs`: `run_exec` builds the command under the policy
//!    (`exec_policy::command_for`); `launch` makes and watches its pipes,
//!    creates its `Proc` and hands it to a `spawner` thread
//!    (`process::spawn_child`); `on_spawned` queues `Started`.
//! 4. `server/output.rs`: each readable pipe event calls `pump`, which asks
//!    the `Proc` to move one chunk at a time (`Proc::pump`: spliced, or read
//!    and framed onto the connection's queue) and routes its answer:
//!    `Paused` keeps the pipe for `resume_pipes`, `Ended` closes it, `Cut`
//!    stops the command.
//! 5. `server/reap.rs`: the pidfd event calls `reap`; once both pipes have
//!    ended, `finish` queues `Exited` and writes the audit line.
//!
//! Timers come back through `Server::fire_timers`, with the time passed in:
//! a command's deadline to `time_out`, the pipe grace to
//! `check_pipe_grace`, a connection's idle, frame and handshake deadlines
//! to its own `*_deadline` methods.
//!
//! # `unsafe`
//!
//! Eleven blocks outside tests, each with its SAFETY comment, where no safe
//! call exists: seven in `sys.rs`, behind safe functions (what a child does
//! between fork and exec, from a fixed set of async-signal-safe steps;
//! turning inherited ignored signals into caught ones; a supervisor dying
//! of its program's signal; `mktime`; scrubbing the token from
//! `environ`; the filesystem ids a forwarded socket is made under, set and
//! put back), and four about descriptors: borrowing numbers from `/proc`
//! listings (marking inherited ones close-on-exec, closing a spawner
//! thread's copies), `unshare(CLONE_FILES)` for the spawner threads, and a
//! spawner thread's end of its socket.
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
pub(crate) mod activation;
pub(crate) mod auth;
pub(crate) mod cli;
pub(crate) mod coalesce;
pub(crate) mod config;
pub mod config_file;
pub(crate) mod connection;
pub mod embedded;
pub(crate) mod error;
pub(crate) mod exec_policy;
pub(crate) mod forward;
pub(crate) mod helpers;
pub(crate) mod job_command;
pub mod logging;
pub mod notify;
pub(crate) mod out_queue;
pub(crate) mod proc_stat;
pub(crate) mod process;
pub(crate) mod protocol;
pub(crate) mod pty;
pub(crate) mod registry;
pub(crate) mod regular_file;
pub(crate) mod server;
pub mod settings;
pub(crate) mod spawner;
pub(crate) mod splice;
pub(crate) mod splice_in;
pub(crate) mod sys;
#[cfg(test)]
mod tests;
pub(crate) mod timer;
pub(crate) mod tls;

pub use activation::inherited_listeners;
pub use cli::Args;
pub use config::{Config, Protocol};
pub use embedded::{EmbeddedServer, run_helper_if_asked};
pub use error::{ConfigError, TlsError};
pub use exec_policy::ExecPolicy;
// The connection's state machine and a batch put's writer, public for the
// fuzz targets only.
#[doc(hidden)]
pub use helpers::files_batch::decode_untrusted as decode_untrusted_batch;
#[doc(hidden)]
pub use protocol::{Action, ConnProtocol};
pub use server::{Loader, Server, ServerHandle};
pub use sys::{adopt_ignored_signals, scrub_environ};
pub use tls::TlsSetup;

/// Runs one of rexecd's helper modes when `args` (the whole command line)
/// names one, and returns its exit code; `None` for a normal start.
///
/// rexecd runs its own binary as helpers: `__contain` (the `--contain`
/// supervisor), `__files` (file transfers, files.rs) and `__job` (detached
/// jobs, jobs.rs).
pub fn helper_mode(args: &[std::ffi::OsString]) -> Option<i32> {
    let mode = args.get(1)?.to_str()?;
    if mode == helpers::contain::ARG {
        return Some(helpers::contain::supervise(&args[2..]));
    }
    if mode == helpers::jobs::ARG {
        return Some(helpers::jobs::main(&args[2..]));
    }
    (mode == helpers::files::FILES).then(helpers::files::helper)
}
