//! Slowing down token guessing: per address, every failed authentication
//! holds back the hello of that address's next connections. The delays of
//! connections made at the same time are spaced out one after the other,
//! so guessing in parallel is no faster than guessing in sequence; a wait
//! past a bound is refused with a clear error instead. Silence is not a
//! wrong answer, and a right answer forgets the address.
//!
//! The token's holder may share the guessers' address (a lab's NAT, the
//! same machine), and nothing tells them apart before the answer: so the
//! spacing stays short (at most [`MAX`]) and the queue long enough
//! ([`QUEUE_MAX`]) that a holder arriving among a few guessers waits a
//! couple of seconds and is never refused. Guessing from one address is
//! held to two tries a second, hopeless against a random 32-byte token.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The spacing after the first failure; it doubles with every further one.
const BASE: Duration = Duration::from_millis(250);
/// The most it grows to: with 4 guessers at once, a token holder from their
/// address waits at most about 4 steps (2 s).
pub(super) const MAX: Duration = Duration::from_millis(500);
/// Longest a new connection is made to wait for its hello (8 steps); past
/// it, it is refused.
const QUEUE_MAX: Duration = Duration::from_secs(4);
/// Failures are forgotten this long after the last one.
const MEMORY: Duration = Duration::from_secs(600);
/// Most addresses remembered.
const ENTRIES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
    /// The earliest time the next held-back hello may go out.
    next_slot: Instant,
}

impl Record {
    fn step(&self) -> Duration {
        BASE.saturating_mul(1 << (self.failures.clamp(1, 16) - 1))
            .min(MAX)
    }
}

/// What to do with a new connection's hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HelloDelay {
    Now,
    After(Duration),
    /// Too many attempts waiting from this address: refuse, retry later.
    Refuse(Duration),
}

/// Failed authentications per address.
#[derive(Debug, Default)]
pub(super) struct AuthFailures {
    by_addr: HashMap<IpAddr, Record>,
}

impl AuthFailures {
    /// When the hello for a new connection from `ip` may go out; takes a
    /// slot, so the next connection from `ip` waits one step longer.
    pub(super) fn hello_delay(&mut self, ip: IpAddr, now: Instant) -> HelloDelay {
        let Some(r) = self.by_addr.get_mut(&ip) else {
            return HelloDelay::Now;
        };
        if now.duration_since(r.last) >= MEMORY {
            self.by_addr.remove(&ip);
            return HelloDelay::Now;
        }
        let start = r.next_slot.max(now);
        let wait = start - now;
        if wait > QUEUE_MAX {
            return HelloDelay::Refuse(wait);
        }
        r.next_slot = start + r.step();
        if wait.is_zero() {
            HelloDelay::Now
        } else {
            HelloDelay::After(wait)
        }
    }

    /// A wrong answer (or a request instead of an answer) from `ip`.
    pub(super) fn failed(&mut self, ip: IpAddr, now: Instant) {
        if self.by_addr.len() >= ENTRIES && !self.by_addr.contains_key(&ip) {
            self.by_addr
                .retain(|_, r| now.duration_since(r.last) < MEMORY);
            if self.by_addr.len() >= ENTRIES {
                let oldest = self
                    .by_addr
                    .iter()
                    .min_by_key(|(_, r)| r.last)
                    .map(|(ip, _)| *ip);
                if let Some(oldest) = oldest {
                    self.by_addr.remove(&oldest);
                }
            }
        }
        let r = self.by_addr.entry(ip).or_insert(Record {
            failures: 0,
            last: now,
            next_slot: now,
        });
        r.failures = r.failures.saturating_add(1);
        r.last = now;
        r.next_slot = r.next_slot.max(now + r.step());
    }

    pub(super) fn succeeded(&mut self, ip: IpAddr) {
        self.by_addr.remove(&ip);
    }
}

#[cfg(test)]
mod tests;
