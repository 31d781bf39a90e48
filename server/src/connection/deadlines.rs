//! A connection's clocks, decided at a `now` passed in: the handshake, a
//! partly received frame, idleness, and keepalive.

use std::time::{Duration, Instant};

use super::{Connection, Hold, State, Wire};

/// What a connection's deadline check decided at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// Nothing to watch (any more).
    None,
    /// Look again at this instant.
    At(Instant),
    /// It ran out: close the connection.
    Expired,
}

/// What the keepalive check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keepalive {
    /// Not for this connection (a tutorial protocol, a version-3 client,
    /// or one that is closing).
    Off,
    /// Heard from lately: look again then.
    Later(Instant),
    /// Silent for a period: send probe `seq`, look again at `next`.
    Probe { seq: u32, next: Instant },
    /// Silent for three periods: the client is gone.
    Gone(Duration),
}

impl Connection {
    // --- startup (--max-startups) ---

    /// Counts it among the connections waiting to authenticate, with its
    /// handshake due at `due`.
    pub fn begin_startup(&mut self, due: Instant) {
        self.startup = Some(due);
    }

    /// Whether it is counted among the connections waiting to authenticate.
    pub fn in_startup(&self) -> bool {
        self.startup.is_some()
    }

    /// Moves the handshake deadline (the hello was held back) if it is still
    /// counted; returns the new one.
    pub fn extend_startup(&mut self, due: Instant) -> Option<Instant> {
        let s = self.startup.as_mut()?;
        *s = due;
        Some(due)
    }

    /// Stops counting it; true if it was counted.
    pub fn leave_startup(&mut self) -> bool {
        self.startup.take().is_some()
    }

    /// The handshake timer fired at `now`.
    pub fn handshake_deadline(&self, now: Instant) -> Deadline {
        match self.startup {
            _ if !self.in_handshake() => Deadline::None,
            Some(due) if now < due => Deadline::At(due),
            // Moved past the startup count (no token) yet not running: the
            // deadline stands as it was.
            _ => Deadline::Expired,
        }
    }

    /// Keeps the clock of a partly received frame: started when one begins,
    /// restarted when a message completed and another began. True when a
    /// frame began just now (a deadline is to be armed).
    pub fn track_partial_frame(&mut self, decoded: bool, now: Instant) -> bool {
        if self.decoder.buffered() == 0 && self.inbound.is_none() {
            self.partial_since = None;
            return false;
        }
        let began = self.partial_since.is_none();
        if decoded || began {
            self.partial_since = Some(now);
        }
        began
    }

    /// The frame timer fired at `now`: a frame incomplete for `timeout`
    /// ends the connection.
    pub fn frame_deadline(&self, now: Instant, timeout: Duration) -> Deadline {
        let Some(since) = self.partial_since.filter(|_| self.is_open()) else {
            return Deadline::None;
        };
        if self.holds.has(Hold::StdinFull) || self.holds.has(Hold::Memory) {
            // We are not reading (a command's stdin is full, its disk slow
            // perhaps, or memory is short): the frame's slowness is ours.
            // Its clock restarts when the hold ends.
            return Deadline::At(now + timeout);
        }
        let due = since + timeout;
        if now < due {
            Deadline::At(due)
        } else {
            Deadline::Expired
        }
    }

    /// The keepalive timer fired at `now`, with probes every `every` of
    /// silence.
    pub fn keepalive(&mut self, now: Instant, every: Duration) -> Keepalive {
        let speaks_it = match &self.wire {
            Wire::Native(p) => p.phase() != crate::protocol::Phase::Running || p.has_keepalive(),
            Wire::Seed | Wire::Raw => false,
        };
        if !speaks_it || !matches!(self.state, State::New | State::Open | State::InputClosed) {
            return Keepalive::Off;
        }
        if self.holds.any() {
            // We are not reading what it sends (its command's stdin is
            // full, its replies unread, memory short): its silence is ours,
            // and its probes wait unread. A probe from us tells it we are
            // still here, unless what we sent before still waits for it
            // to read: another would only grow the queue, one probe a
            // period for as long as the client does not read.
            self.last_heard = now;
            if !self.out.is_empty() || self.spliced.is_some() {
                return Keepalive::Later(now + every);
            }
            self.probes = self.probes.wrapping_add(1);
            return Keepalive::Probe {
                seq: self.probes,
                next: now + every,
            };
        }
        let silent = now.saturating_duration_since(self.last_heard);
        if silent >= 3 * every {
            return Keepalive::Gone(silent);
        }
        let in_handshake =
            matches!(&self.wire, Wire::Native(p) if p.phase() != crate::protocol::Phase::Running);
        if silent < every || in_handshake {
            // (A handshake has its own deadline; probes start once running.)
            return Keepalive::Later((self.last_heard + every).max(now + Duration::from_millis(1)));
        }
        self.probes = self.probes.wrapping_add(1);
        Keepalive::Probe {
            seq: self.probes,
            next: now + every,
        }
    }

    /// The idle timer fired at `now`: with no command running and no
    /// message for `idle`, the connection is idle; otherwise the next look.
    pub fn idle_deadline(&self, now: Instant, idle: Duration) -> Deadline {
        let quiet = now.saturating_duration_since(self.last_activity);
        let busy = !self.commands.is_empty() || self.tunnels > 0;
        if !busy && quiet >= idle {
            Deadline::Expired
        } else if !busy {
            Deadline::At(now + (idle - quiet))
        } else {
            Deadline::At(now + idle)
        }
    }
}
