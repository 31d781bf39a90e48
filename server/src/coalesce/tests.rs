use super::*;

#[test]
fn only_a_command_that_sent_a_lot_lately_streams() {
    let t0 = Instant::now();
    let mut r = Rate::new(t0);
    assert!(!r.hot(t0, 0));
    // A few KiB now and then (a terminal, a log line): never.
    let mut out = 0;
    for i in 1..100u32 {
        out += 4096;
        assert!(!r.hot(t0 + WINDOW * i, out), "{i}");
    }
    // Hundreds of KiB within a window: from then on, for a while.
    let t1 = t0 + WINDOW * 200;
    assert!(!r.hot(t1, out));
    out += HOT_BYTES;
    assert!(r.hot(t1 + Duration::from_millis(1), out));
    assert!(r.hot(t1 + STAYS_HOT / 2, out));
    assert!(!r.hot(t1 + STAYS_HOT * 3, out));
}

#[test]
fn held_pipes_come_back_when_the_timer_fires() {
    let mut c = Coalesce::new().unwrap();
    c.hold(ProcId(1), OutputStream::Stdout).unwrap();
    c.hold(ProcId(2), OutputStream::Stderr).unwrap();
    let mut fds = [rustix::event::PollFd::new(
        &c.timer,
        rustix::event::PollFlags::IN,
    )];
    let n = rustix::event::poll(
        &mut fds,
        Some(&Timespec {
            tv_sec: 5,
            tv_nsec: 0,
        }),
    )
    .unwrap();
    assert_eq!(n, 1, "the timer fires");
    assert_eq!(
        c.release(),
        [
            (ProcId(1), OutputStream::Stdout),
            (ProcId(2), OutputStream::Stderr)
        ]
    );
    assert!(c.release().is_empty());
}
