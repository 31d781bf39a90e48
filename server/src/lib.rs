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
//! ```no_run
//! use rexec_server::{Config, Server};
//! let server = Server::bind(Config { listen: "127.0.0.1:0".parse().unwrap(), ..Config::default() })?;
//! println!("listening on {}", server.local_addr());
//! server.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod config;
pub mod connection;
pub mod out_queue;
pub mod process;
pub mod protocol;
pub mod registry;
pub mod server;
pub mod timer;
pub mod tls;

pub use config::{Args, Config, Protocol};
pub use server::{Server, ServerHandle};
