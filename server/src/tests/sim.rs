//! Deterministic simulation: rexecd's real decision code run against a
//! simulated world (a kernel, clients, commands, time) whose every choice
//! comes from one seed, so any failure replays exactly, as FoundationDB and
//! TigerBeetle test theirs.
//!
//! Each scenario runs many seeded schedules and checks its invariants after
//! every step; a failure names the seed and the step. The number of
//! schedules and the first seed come from the environment:
//!
//! ```text
//! REXEC_SIM_SCHEDULES=2000 cargo test --release -p rexec-server sim
//! REXEC_SIM_SEED=1234 cargo test -p rexec-server sim   # replay one schedule
//! ```
//!
//! - inbound.rs: zero-copy input (splice_in.rs) against a kernel whose
//!   socket and pipe answer with partial moves, `EAGAIN`, `EINTR`, urgent
//!   marks, a closed reader, a vanishing client;
//! - output.rs: a command's output (process/pump.rs) from a real pipe into
//!   a connection whose socket takes any part or nothing, edge-triggered,
//!   with an output limit and a peer that may vanish;
//! - router.rs: whole connections through the real router, with clients
//!   played in memory that come, speak, stall, break the protocol, finish
//!   or vanish, and a clock that jumps;
//! - channels.rs: port forwarding's channels (server/forward.rs) between
//!   a played client and real loopback targets that send, stall,
//!   acknowledge late and half-close;
//! - grace.rs: the pipe grace of an exited command (process.rs's
//!   `PipeGrace`) against a slow client, a silent grandchild holding the
//!   pipe, and time that jumps.

mod channels;
mod grace;
mod inbound;
mod output;
mod router;
mod world;
