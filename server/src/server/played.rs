//! The router's unit tests' way in: clients played in memory
//! (connection/stream/played.rs) are admitted as accept.rs admits a
//! socket's, and the loop's steps are taken one at a time, at a time the
//! test sets: no socket, no sleep, no real time.

use std::net::SocketAddr;
use std::time::Duration;

use super::Server;
use crate::connection::{Played, Ready, Stream};
use crate::registry::ConnId;

impl Server {
    /// Admits a client from `peer` that the test plays: its handle, and its
    /// connection's id if it was let in.
    pub(super) fn admit_played(&mut self, peer: SocketAddr) -> (Played, Option<ConnId>) {
        let client = Played::default();
        let id = ConnId(self.ids.conn);
        self.admit(Stream::Played(client.clone()), peer);
        (client, self.conns.contains_key(&id).then_some(id))
    }

    /// What the loop does when the poll says `id` is readable (or writable)
    /// and the connection is still there afterwards.
    pub(super) fn poll_says(&mut self, id: ConnId, ready: Ready) {
        self.on_conn_event(id, ready);
        self.run_backlog();
    }

    /// The server's clock moves on by `by`, and the timers due fire.
    pub(super) fn later(&mut self, by: Duration) {
        self.now += by;
        self.fire_timers();
    }
}

#[cfg(test)]
mod tests;
