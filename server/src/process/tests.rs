use super::*;

const GRACE: Duration = Duration::from_millis(500);

fn unstarted() -> Proc {
    let pipes = Pipes {
        stdout: None,
        stderr: None,
        stdin: None,
        pty: None,
    };
    let peer = "127.0.0.1:1".parse().unwrap();
    Proc::new(ConnId(1), 7, "sleep 30".into(), peer, pipes, Instant::now())
}

#[test]
fn a_stop_before_the_start_is_kept_for_the_start_and_signals_nobody() {
    let mut timers = Timers::default();
    let mut p = unstarted();
    p.stop(&mut timers, Instant::now(), GRACE);
    assert_eq!(p.stopping, Stopping::Asked);
    assert!(p.is_stopping());
    assert_eq!(timers.len(), 0, "no SIGKILL scheduled for group 0");
}

#[test]
fn a_started_command_gets_sigterm_once_and_sigkill_scheduled() {
    let mut timers = Timers::default();
    let mut p = unstarted();
    p.stop(&mut timers, Instant::now(), GRACE);
    let mut child = Command::new("sleep")
        .arg("30")
        .process_group(0)
        .spawn()
        .expect("sleep");
    p.pgid = child.id() as i32;
    // What `on_spawned` does for a command asked to stop meanwhile.
    p.stop(&mut timers, Instant::now(), GRACE);
    assert_eq!(p.stopping, Stopping::Signalled);
    p.stop(&mut timers, Instant::now(), GRACE);
    assert_eq!(timers.len(), 1, "one SIGKILL scheduled");
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(15), "{status:?}");
}

/// Bytes wait in a pipe for a slow reader.
const WAITING: Waiting = Waiting {
    paused: true,
    in_pipes: true,
};

#[test]
fn quiet_empty_pipes_are_cut_after_the_grace() {
    let t0 = Instant::now();
    let mut g = PipeGrace::begin(t0, 100);
    assert_eq!(
        g.check(t0 + GRACE / 2, 100, Waiting::default(), GRACE),
        GraceVerdict::Wait(GRACE / 2)
    );
    assert_eq!(
        g.check(t0 + GRACE, 100, Waiting::default(), GRACE),
        GraceVerdict::Cut
    );
}

#[test]
fn output_waiting_for_a_slow_reader_never_lets_the_grace_run_out() {
    let t0 = Instant::now();
    let mut g = PipeGrace::begin(t0, 100);
    // An hour of a full pipe that the client does not read: always wait.
    for s in 1..3600 {
        let now = t0 + Duration::from_secs(s);
        assert_eq!(g.check(now, 100, WAITING, GRACE), GraceVerdict::Wait(GRACE));
    }
    // Then the client reads and the pipe is drained (100 more bytes
    // sent): a whole grace period from there.
    let drained = t0 + Duration::from_secs(3600);
    assert_eq!(
        g.check(drained, 200, Waiting::default(), GRACE),
        GraceVerdict::Wait(GRACE)
    );
    assert_eq!(
        g.check(drained + GRACE, 200, Waiting::default(), GRACE),
        GraceVerdict::Cut
    );
}

#[test]
fn bytes_that_arrived_restart_the_grace() {
    let t0 = Instant::now();
    let mut g = PipeGrace::begin(t0, 100);
    // Nothing waits at the check, but 5 bytes were read since.
    assert_eq!(
        g.check(t0 + GRACE, 105, Waiting::default(), GRACE),
        GraceVerdict::Wait(GRACE)
    );
    assert_eq!(
        g.check(t0 + GRACE + GRACE / 5, 105, Waiting::default(), GRACE),
        GraceVerdict::Wait(GRACE - GRACE / 5)
    );
    assert_eq!(
        g.check(t0 + 2 * GRACE, 105, Waiting::default(), GRACE),
        GraceVerdict::Cut
    );
}

#[test]
fn a_transfers_stdin_pipe_is_grown_within_the_big_pipe_budget_and_counted_back() {
    let with_stdin = || {
        let (tx, _rx) = mio::unix::pipe::new().unwrap();
        let pipes = Pipes {
            stdout: None,
            stderr: None,
            stdin: Some((tx, mio::Token(9))),
            pty: None,
        };
        let peer = "127.0.0.1:1".parse().unwrap();
        Proc::new(ConnId(1), 7, "put".into(), peer, pipes, Instant::now())
    };
    let mut big = 0;
    let mut p = with_stdin();
    p.mark_transfer(&mut big);
    assert_eq!(big, 1);
    let fd = std::os::fd::AsFd::as_fd(&p.stdin.as_ref().unwrap().0).try_clone_to_owned();
    assert_eq!(
        rustix::pipe::fcntl_getpipe_size(fd.unwrap()).unwrap(),
        crate::splice::BIG_PIPE
    );
    let (pipe, grown) = p.take_stdin();
    assert!(pipe.is_some() && grown);
    // Over the budget: left as it is, and not counted.
    let mut full = pump::MAX_BIG_PIPES;
    let mut q = with_stdin();
    q.mark_transfer(&mut full);
    assert_eq!(full, pump::MAX_BIG_PIPES);
    assert!(!q.take_stdin().1);
}
