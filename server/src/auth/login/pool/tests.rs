use super::*;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

fn check(conn: u64, user: &str) -> Check {
    crate::auth::login::tests::check_for(conn, user)
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
