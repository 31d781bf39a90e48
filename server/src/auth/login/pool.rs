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
mod tests {
    use super::*;
    use std::net::IpAddr;
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::{Duration, Instant, SystemTime};

    fn check(conn: u64, user: &str) -> Check {
        let key = ssh_key::PrivateKey::new(
            ssh_key::private::KeypairData::Ed25519(ssh_key::private::Ed25519Keypair::from_seed(
                &[1; 32],
            )),
            "",
        )
        .unwrap()
        .public_key()
        .clone();
        Check {
            conn: ConnId(conn),
            seq: conn,
            user: user.into(),
            key,
            peer: IpAddr::from([127, 0, 0, 1]),
            wall: SystemTime::now(),
        }
    }

    /// A pool whose checks of `stuck` block until the test lets them go.
    fn pool() -> (Pool, Sender<()>, Receiver<u64>) {
        let (release, released) = mpsc::channel::<()>();
        let released = Mutex::new(released);
        let (wake_tx, woken) = mpsc::channel::<u64>();
        let wake_tx = Mutex::new(wake_tx);
        let judge = move |c: &Check| {
            if c.user == "stuck" {
                let _ = lock(&released).recv();
            }
            Err(format!("{} checked", c.user))
        };
        let wake = move || {
            let _ = lock(&wake_tx).send(0);
        };
        (Pool::new(Box::new(judge), Box::new(wake)), release, woken)
    }

    fn verdict(p: &Pool, woken: &Receiver<u64>) -> Verdict {
        loop {
            if let Some(v) = p.take() {
                return v;
            }
            match woken.recv_timeout(Duration::from_secs(30)) {
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("no verdict within 30 s"),
                Err(RecvTimeoutError::Disconnected) => panic!("the pool is gone"),
            }
        }
    }

    #[test]
    fn a_stuck_account_delays_no_other_account() {
        let (p, release, woken) = pool();
        // Three logins of the stuck account: one runs (and hangs), two wait
        // behind it; none of them holds up alice or bob.
        for conn in 1..=3 {
            assert!(p.ask(check(conn, "stuck")));
        }
        assert!(p.ask(check(4, "alice")));
        assert!(p.ask(check(5, "bob")));
        let mut got: Vec<u64> = (0..2).map(|_| verdict(&p, &woken).conn.0).collect();
        got.sort();
        assert_eq!(got, [4, 5]);
        // The others' threads end just after their verdicts: only the
        // stuck one is left.
        let threads = || lock(&p.shared.state).threads;
        let deadline = Instant::now() + Duration::from_secs(30);
        while threads() != 1 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(threads(), 1, "only the stuck one is left");
        // Once its home answers, its other logins are checked in turn.
        for _ in 0..3 {
            release.send(()).unwrap();
        }
        let mut got: Vec<u64> = (0..3).map(|_| verdict(&p, &woken).conn.0).collect();
        got.sort();
        assert_eq!(got, [1, 2, 3]);
    }

    #[test]
    fn cancelled_checks_are_dropped_and_the_queue_is_bounded() {
        let (p, release, woken) = pool();
        assert!(p.ask(check(1, "stuck")));
        // A full queue of the stuck account's logins refuses the next...
        for conn in 0..QUEUE as u64 {
            assert!(p.ask(check(100 + conn, "stuck")));
        }
        assert!(!p.ask(check(2, "alice")), "the queue is full");
        // ...until the loop gives up on them: dropped unrun, room again.
        for conn in 0..QUEUE as u64 {
            p.cancel(ConnId(100 + conn));
        }
        assert!(p.ask(check(3, "alice")));
        assert_eq!(verdict(&p, &woken).conn.0, 3);
        assert_eq!(lock(&p.shared.state).waiting.len(), 0);
        release.send(()).unwrap();
        assert_eq!(verdict(&p, &woken).conn.0, 1);
    }
}
