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

pub mod addr;
pub mod app;
pub mod argv;
pub mod cleanup;
pub mod cli;
pub mod copy;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod fanout;
pub mod hosts;
pub mod interactive;
pub mod options;
pub mod run;
pub mod session;
pub mod splice;
pub mod terminal;
pub mod tls;
pub mod trace;

pub use error::ClientError;
pub use session::{ConnectOptions, Session};
