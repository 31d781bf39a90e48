#![warn(missing_docs)]
//! rexec's client side. For Rust programs and tests, [`Client`] (the
//! [`api`] module) is the library: connect, run commands, stream them,
//! copy files, manage jobs. The rest ([`Session`], [`run`], [`forward`])
//! is the `rexec` program's own machinery, public for its tests, benches
//! and fuzzers.
//!
//! ```
//! # let server = rexec_server::EmbeddedServer::builder().start()?;
//! # let addr = server.addr().to_string();
//! let client = rexec_client::Client::connect(&addr)?;
//! assert_eq!(client.run("echo hi")?.stdout, b"hi\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// Internal modules are `pub(crate)`, so that the compiler reports what
// nothing uses; what the binary, the tests and the fuzzers need is `pub`.
pub(crate) mod addr;
pub mod api;
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

pub use api::{
    Builder, Child, ChildStderr, ChildStdin, ChildStdout, Client, Command, CopyOptions, Error,
    ExitStatus, Output,
};
pub use app::main_entry;
pub use copy::decode_untrusted;
pub use error::ClientError;
pub use session::{ConnectOptions, Jump, Session};
