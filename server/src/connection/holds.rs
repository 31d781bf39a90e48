//! Why a connection's input is not read for now: a set of holds, any one
//! of which stops reading until it is released.

use super::Connection;

/// A reason the socket's input is not read for now. Any one holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// A command's stdin queue is full (the child is not reading).
    StdinFull,
    /// Our replies are not being read (`out` over the reply limit): TCP
    /// pushes back on the sender.
    RepliesUnread,
    /// The server-wide memory budget: its pipes are not read either.
    Memory,
}

/// The holds on a connection's input, as a set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holds(u8);

impl Holds {
    fn bit(h: Hold) -> u8 {
        1 << h as u8
    }
    /// Adds `h`; false if it was already there.
    pub fn add(&mut self, h: Hold) -> bool {
        let had = self.has(h);
        self.0 |= Self::bit(h);
        !had
    }
    /// Removes `h`; false if it was not there.
    pub fn remove(&mut self, h: Hold) -> bool {
        let had = self.has(h);
        self.0 &= !Self::bit(h);
        had
    }
    pub fn has(self, h: Hold) -> bool {
        self.0 & Self::bit(h) != 0
    }
    pub fn any(self) -> bool {
        self.0 != 0
    }
}

impl Connection {
    pub fn hold(&mut self, h: Hold) -> bool {
        self.holds.add(h)
    }

    /// Ends hold `h` at `now`; true if it was held.
    pub fn release(&mut self, h: Hold, now: std::time::Instant) -> bool {
        let released = self.holds.remove(h);
        if released && matches!(h, Hold::StdinFull | Hold::Memory) && self.partial_since.is_some() {
            // A frame we stopped reading: its time held was not the
            // client's (deadlines.rs).
            self.partial_since = Some(now);
        }
        released
    }

    pub fn is_held(&self, h: Hold) -> bool {
        self.holds.has(h)
    }

    /// Whether input may be read and acted on now.
    pub fn may_read(&self) -> bool {
        self.is_open() && !self.holds.any()
    }
}
