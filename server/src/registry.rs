//! Poll registrations: which [`Token`] stands for which source.
//!
//! Every socket, pipe and pidfd the loop watches is added here with the
//! [`Slot`] it stands for, and removed here, so "deregister, then forget the
//! token" is written once. Tokens are never reused: an event still queued for
//! a source that is gone finds no slot and is ignored.

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use mio::event::Source;
use mio::{Events, Interest, Poll, Token};
use rexec_proto::OutputStream;

/// A client connection, as the server's tables know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// A running command, as the server's tables know it (not the client's id
/// for it, which is only unique on its connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcId(pub u64);

/// A forwarded connection (a channel's far end), as the server's tables
/// know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChanId(pub u64);

/// A port listened on for a client (`rexec -R`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenId(pub u64);

/// What a registered token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Conn(ConnId),
    /// A command's stdout or stderr pipe (readable: output to forward).
    Pipe(ProcId, OutputStream),
    /// A command's stdin pipe (writable: room for queued input).
    Stdin(ProcId),
    /// A command's pidfd (readable: the child exited).
    Pidfd(ProcId),
    /// A channel's socket (connected, readable, writable).
    Channel(ChanId),
    /// A port listened on for a client (a connection to accept).
    Listener(ListenId),
}

/// The loop's [`Poll`] and the meaning of each dynamic token.
#[derive(Debug)]
pub struct Registry {
    poll: Poll,
    next: usize,
    slots: HashMap<Token, Slot>,
}

impl Registry {
    /// `first` is the first token handed out; those below it are the
    /// caller's fixed tokens, registered through [`Registry::mio`].
    pub fn new(first: usize) -> io::Result<Self> {
        Ok(Registry {
            poll: Poll::new()?,
            next: first,
            slots: HashMap::new(),
        })
    }

    /// mio's registry, for the fixed tokens (listener, signals, waker).
    pub fn mio(&self) -> &mio::Registry {
        self.poll.registry()
    }

    /// Waits for events, or until `timeout`.
    pub fn poll(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        self.poll.poll(events, timeout)
    }

    /// Watches `src` for `interest`; its events will name `slot`.
    pub fn add<S: Source + ?Sized>(
        &mut self,
        src: &mut S,
        interest: Interest,
        slot: Slot,
    ) -> io::Result<Token> {
        let token = Token(self.next);
        self.next += 1;
        self.poll.registry().register(src, token, interest)?;
        self.slots.insert(token, slot);
        Ok(token)
    }

    /// Stops watching `src`. A failure to deregister is only logged: the
    /// source is about to be closed, which deregisters it anyway.
    pub fn remove<S: Source + ?Sized>(&mut self, src: &mut S, token: Token) {
        if let Err(e) = self.poll.registry().deregister(src) {
            log::debug!("deregister {token:?}: {e}");
        }
        self.slots.remove(&token);
    }

    /// Stops watching `src` for a while; its token keeps its meaning (see
    /// [`Registry::unmute`]).
    pub fn mute<S: Source + ?Sized>(&mut self, src: &mut S) -> io::Result<()> {
        self.poll.registry().deregister(src)
    }

    /// Watches a muted `src` again, under its old token; an event is
    /// reported at once if it is ready.
    pub fn unmute<S: Source + ?Sized>(
        &mut self,
        src: &mut S,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.poll.registry().register(src, token, interest)
    }

    /// What `token` stands for; `None` once its source was removed.
    pub fn slot(&self, token: Token) -> Option<Slot> {
        self.slots.get(&token).copied()
    }

    /// Registered dynamic sources (for tests and the debug view).
    pub fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::unix::pipe;

    #[test]
    fn tokens_are_never_reused_and_removed_ones_are_forgotten() {
        let mut r = Registry::new(3).unwrap();
        let (_tx, mut rx) = pipe::new().unwrap();
        let (_tx2, mut rx2) = pipe::new().unwrap();
        let a = r
            .add(&mut rx, Interest::READABLE, Slot::Stdin(ProcId(1)))
            .unwrap();
        assert_eq!(a, Token(3));
        assert_eq!(r.slot(a), Some(Slot::Stdin(ProcId(1))));
        r.remove(&mut rx, a);
        assert_eq!(
            r.slot(a),
            None,
            "an event for a removed source finds nothing"
        );
        let b = r
            .add(&mut rx2, Interest::READABLE, Slot::Pidfd(ProcId(2)))
            .unwrap();
        assert_ne!(a, b);
        assert_eq!(r.len(), 1);
    }
}
