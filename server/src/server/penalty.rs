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
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));

    #[test]
    fn parallel_attempts_are_spaced_like_sequential_ones() {
        let mut f = AuthFailures::default();
        let t = Instant::now();
        assert_eq!(f.hello_delay(A, t), HelloDelay::Now);
        f.failed(A, t);
        // Three connections at once: 250 ms, then 500 ms, then 750 ms.
        let waits: Vec<_> = (0..3).map(|_| f.hello_delay(A, t)).collect();
        assert_eq!(
            waits,
            [250, 500, 750].map(|ms| HelloDelay::After(Duration::from_millis(ms)))
        );
        // Another address is not affected.
        assert_eq!(f.hello_delay(B, t), HelloDelay::Now);
        // The penalty stops growing at MAX, and the queue is bounded.
        for _ in 0..10 {
            f.failed(A, t);
        }
        let mut refused = false;
        for _ in 0..10 {
            match f.hello_delay(A, t) {
                HelloDelay::After(d) => assert!(d <= QUEUE_MAX),
                HelloDelay::Refuse(_) => refused = true,
                HelloDelay::Now => panic!("penalised address got no delay"),
            }
        }
        assert!(refused, "the queue of waiting attempts is bounded");
        f.succeeded(A);
        assert_eq!(f.hello_delay(A, t), HelloDelay::Now);
    }

    #[test]
    fn a_token_holder_among_four_guessers_waits_briefly_and_gets_in() {
        // Four guessers from the holder's own address, each reconnecting as
        // soon as its wrong answer is refused, for ten minutes; the holder
        // logs in again 300 ms after each login. (With a 2 s step the holder
        // was refused: 0 logins in 30.)
        let mut f = AuthFailures::default();
        let t0 = Instant::now();
        let mut hello_at: Vec<Instant> = (0..4).map(|_| t0).collect();
        let (mut guesses, mut logins, mut worst) = (0, 0, Duration::ZERO);
        let mut guess_until =
            |f: &mut AuthFailures, until: Instant, hello_at: &mut Vec<Instant>| {
                while let Some(i) = (0..4)
                    .filter(|&i| hello_at[i] <= until)
                    .min_by_key(|&i| hello_at[i])
                {
                    let now = hello_at[i];
                    f.failed(A, now);
                    guesses += 1;
                    hello_at[i] = match f.hello_delay(A, now) {
                        HelloDelay::Now => now,
                        HelloDelay::After(d) | HelloDelay::Refuse(d) => now + d,
                    };
                }
            };
        let mut holder = t0 + Duration::from_millis(10);
        while holder < t0 + Duration::from_secs(600) {
            guess_until(&mut f, holder, &mut hello_at);
            let wait = match f.hello_delay(A, holder) {
                HelloDelay::Now => Duration::ZERO,
                HelloDelay::After(d) => d,
                HelloDelay::Refuse(d) => panic!("the holder was refused ({d:?})"),
            };
            worst = worst.max(wait);
            guess_until(&mut f, holder + wait, &mut hello_at);
            f.succeeded(A);
            logins += 1;
            holder += wait + Duration::from_millis(300);
        }
        assert!(
            worst <= Duration::from_millis(2500),
            "the holder waited {worst:?}"
        );
        // Guessing stays slow: a few tries a second, not thousands.
        let per_sec = guesses as f64 / 600.0;
        assert!(
            per_sec < 8.0,
            "{per_sec} guesses a second ({logins} logins)"
        );
    }

    #[test]
    fn failures_are_forgotten_after_a_while() {
        let mut f = AuthFailures::default();
        let t = Instant::now();
        f.failed(A, t);
        assert_eq!(f.hello_delay(A, t + MEMORY), HelloDelay::Now);
    }
}
