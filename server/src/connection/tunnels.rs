//! What a connection knows of port forwarding (server/forward.rs owns the
//! channels): how many of its channels and ports are open (they keep it
//! from idling out, as a running command does), and the `ChannelData` at
//! the front of its decoder, which the router writes on from where it is.

use std::time::Instant;

use super::Connection;

impl Connection {
    /// A channel or a listening port was opened for this connection.
    pub fn tunnel_opened(&mut self) {
        self.tunnels += 1;
    }

    /// One closed.
    pub fn tunnel_closed(&mut self) {
        self.tunnels = self.tunnels.saturating_sub(1);
    }

    /// The data of the `ChannelData` that [`Incoming::ChannelData`](super::Incoming::ChannelData) said
    /// is next, where it is.
    pub fn front_channel_data(&self) -> &[u8] {
        self.decoder.front_channel_data().map_or(&[], |(_, d)| d)
    }

    /// That `ChannelData` was passed on: it is dropped, and counts as the
    /// client's activity (as a message taken out does).
    pub fn skip_channel_data(&mut self, now: Instant) {
        self.decoder.skip_frame();
        self.last_activity = now;
        self.last_heard = now;
    }

    /// That `ChannelData` taken out as a message after all (a channel that
    /// cannot take it in place).
    pub fn take_message(&mut self, now: Instant) -> Option<rexec_proto::ClientMsg> {
        self.last_heard = now;
        self.next_message(now).ok().flatten()
    }
}
