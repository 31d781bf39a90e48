//! rexec's client side, as a library: the `rexec` binary only parses
//! arguments and prints; tests and benchmarks drive this directly.
//!
//! ```no_run
//! use rexec_client::{Session, ConnectOptions, run::{run, Sinks}};
//! use rexec_proto::Exec;
//! let mut s = Session::connect("127.0.0.1:7070", &ConnectOptions::default())?;
//! let outcome = run(&mut s, Exec { id: 1, command: "uname -a".into(), ..Exec::default() },
//!                   &mut Sinks::capture(), None)?;
//! println!("exit code {}", outcome.exit_code());
//! # Ok::<(), rexec_client::ClientError>(())
//! ```

// Internal modules are `pub(crate)`, so that the compiler reports what
// nothing uses; what the binary, the tests and the fuzzers need is `pub`.
pub(crate) mod addr;
pub(crate) mod app;
pub(crate) mod argv;
pub(crate) mod cleanup;
pub(crate) mod cli;
pub(crate) mod copy;
#[cfg(feature = "demo")]
pub(crate) mod demo;
#[cfg(feature = "demo")]
pub(crate) mod demo_udp;
pub(crate) mod error;
pub(crate) mod fanout;
pub mod forward;
pub(crate) mod hosts;
pub(crate) mod interactive;
pub(crate) mod jobs;
pub(crate) mod keys;
pub(crate) mod options;
pub mod run;
pub(crate) mod session;
pub(crate) mod splice;
pub(crate) mod terminal;
pub(crate) mod tls;
pub(crate) mod trace;
pub(crate) mod way_in;

pub use app::main_entry;
pub use copy::decode_untrusted;
pub use error::ClientError;
pub use session::{ConnectOptions, Jump, Session};
