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
    pub(crate) fn admit_played(&mut self, peer: SocketAddr) -> (Played, Option<ConnId>) {
        let client = Played::default();
        let id = ConnId(self.ids.conn);
        self.admit(Stream::Played(client.clone()), peer);
        (client, self.conns.contains_key(&id).then_some(id))
    }

    /// What the loop does when the poll says `id` is ready: the event, then
    /// the input it deferred to the end of the turn.
    pub(crate) fn poll_says(&mut self, id: ConnId, ready: Ready) {
        self.on_conn_event(id, ready);
        self.run_backlog();
    }

    /// The server's clock moves on by `by`, and the timers due fire.
    pub(crate) fn later(&mut self, by: Duration) {
        self.now += by;
        self.fire_timers();
    }

    /// One turn of the loop as `run` takes it: the clock moves on by `by`
    /// (as the poll returns), the poll's `events` are handled in order,
    /// then the input deferred in the turn, the timers due, the budget.
    pub(crate) fn turn(&mut self, by: Duration, events: &[(ConnId, Ready)]) {
        self.now += by;
        for (id, ready) in events {
            self.on_conn_event(*id, *ready);
        }
        self.run_backlog();
        self.fire_timers();
        self.check_budget(self.now);
    }

    /// A turn for what is not played: waits (up to `most` of real time) for
    /// the poll's next events, a start finished by a spawner thread, a
    /// pipe, a child's exit, and handles them as `run` does. The server's
    /// clock stays where the test put it.
    pub(crate) fn process_turn(&mut self, most: Duration) -> std::io::Result<()> {
        let mut events = mio::Events::with_capacity(64);
        match self.registry.poll(&mut events, Some(most)) {
            // A signal (another test's child): as the loop, look again.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(()),
            other => other?,
        }
        for ev in events.iter() {
            self.on_event(ev);
        }
        self.run_backlog();
        self.take_spawned();
        self.fire_timers();
        Ok(())
    }

    /// How long until the next timer is due, as the loop's poll would wait.
    pub(crate) fn next_timer(&self) -> Option<Duration> {
        self.timers.timeout(self.now)
    }

    /// The server's clock.
    pub(crate) fn clock(&self) -> std::time::Instant {
        self.now
    }

    /// Bytes queued for connection `id`, while it is open.
    pub(crate) fn queued_for(&self, id: ConnId) -> Option<usize> {
        self.conns.get(&id).map(|c| c.queued())
    }

    /// Open connections.
    pub(crate) fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Forwarded channels open, all connections together.
    pub(crate) fn channels(&self) -> usize {
        self.forwards.chans.len()
    }
}

#[cfg(test)]
mod tests;
