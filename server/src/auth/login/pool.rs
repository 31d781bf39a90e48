//! The threads that check logins, so that no account waits on another.
//!
//! A check may block for as long as the account's home takes to answer: an
//! NFS server that went away, an LDAP lookup that hangs. One shared thread
//! would make every other account's login wait behind it (issue 40: three
//! logins stuck on one home stopped everyone's). So:
//!
//! - each check runs on a thread of its own (a finished thread takes the
//!   next check that may run rather than exiting);
//! - at most one check per account runs at once: an account's stuck home
//!   holds one thread, and its further logins wait behind that one, never
//!   anyone else's;
//! - at most [`MAX_THREADS`] threads exist: a stuck one is counted until it
//!   comes back, so only that many *different* stuck accounts could make
//!   others wait;
//! - a check nobody waits for any more (the event loop refused the key
//!   after its time limit, or the connection went) is cancelled by the
//!   loop and dropped unrun, so a stuck account cannot fill the queue
//!   either.
//!
//! Nothing here reads the clock: the loop decides when a check is too old.
//!
//! Who fills the queue: connections whose key's signature was good, one
//! check at a time each, and only while authenticating (`--max-startups`).
//! It holds at most [`QUEUE`]; a check it has no room for is refused as a
//! wrong key would be.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Check, Verdict};
use crate::auth::grant::Grant;
use crate::registry::ConnId;

/// Most checks waiting for a thread.
pub const QUEUE: usize = 256;
/// Most checking threads at once.
pub const MAX_THREADS: usize = 16;

/// What decides one check (login.rs's `check`; tests give their own).
pub type Judge = dyn Fn(&Check) -> Result<Grant, String> + Send + Sync;

/// The event loop's end of the checking threads.
pub struct Pool {
    shared: Arc<Shared>,
    verdicts: Receiver<Verdict>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

struct Shared {
    state: Mutex<State>,
    judge: Box<Judge>,
    done: Mutex<Sender<Verdict>>,
    wake: Box<dyn Fn() + Send + Sync>,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Check>,
    /// Accounts with a check running.
    busy: HashMap<String, ()>,
    threads: usize,
}

impl State {
    /// The first waiting check that may run now (its account is not being
    /// checked).
    fn next(&mut self) -> Option<Check> {
        let i = self
            .waiting
            .iter()
            .position(|c| !self.busy.contains_key(&c.user))?;
        let c = self.waiting.remove(i)?;
        self.busy.insert(c.user.clone(), ());
        Some(c)
    }
}

impl Pool {
    /// `judge` decides each check; `wake` is called after each verdict.
    pub fn new(judge: Box<Judge>, wake: Box<dyn Fn() + Send + Sync>) -> Pool {
        let (done, verdicts) = mpsc::channel();
        Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                judge,
                done: Mutex::new(done),
                wake,
            }),
            verdicts,
        }
    }

    /// Queues `check`; false when the queue is full.
    pub fn ask(&self, check: Check) -> bool {
        let mut st = lock(&self.shared.state);
        if st.waiting.len() >= QUEUE {
            return false;
        }
        st.waiting.push_back(check);
        while st.threads < MAX_THREADS {
            let Some(next) = st.next() else { break };
            let shared = self.shared.clone();
            let user = next.user.clone();
            let spawned = std::thread::Builder::new()
                .name("login".into())
                .spawn(move || work(shared, next));
            match spawned {
                Ok(_) => st.threads += 1,
                Err(e) => {
                    // It is lost with the closure; the loop's deadline
                    // refuses the key.
                    log::error!("cannot start a login thread: {e}");
                    st.busy.remove(&user);
                    break;
                }
            }
        }
        true
    }

    /// A verdict a thread has reached, if any.
    pub fn take(&self) -> Option<Verdict> {
        self.verdicts.try_recv().ok()
    }

    /// Nobody waits for `conn`'s check any more: dropped if it has not
    /// begun (one that runs is let finish; its verdict is not taken).
    pub fn cancel(&self, conn: ConnId) {
        lock(&self.shared.state).waiting.retain(|c| c.conn != conn);
    }
}

/// One thread: checks `first`, then whatever may run next, until nothing
/// may.
fn work(shared: Arc<Shared>, first: Check) {
    let mut check = first;
    loop {
        let result = (shared.judge)(&check);
        let verdict = Verdict {
            conn: check.conn,
            seq: check.seq,
            result,
        };
        if lock(&shared.done).send(verdict).is_ok() {
            (shared.wake)();
        }
        let mut st = lock(&shared.state);
        st.busy.remove(&check.user);
        match st.next() {
            Some(next) => check = next,
            None => {
                st.threads -= 1;
                return;
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
