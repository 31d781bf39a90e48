//! The spawner's threads: commands started, and the spawner's end.

use std::os::unix::process::CommandExt;
use std::time::Duration;

use super::*;

/// The tests look at every spawner thread of this process: one at a
/// time, so that none sees another's thread in the middle of a start.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn no_output() -> ChildFds {
    let null = || OwnedFd::from(std::fs::File::create("/dev/null").expect("/dev/null"));
    ChildFds::Pipes {
        stdin: None,
        stdout: null(),
        stderr: null(),
    }
}

/// Waits for the spawner's socket to say a start finished.
fn wait_readable(s: &Spawner, limit: Duration) -> bool {
    let fd = s.fd().expect("socket");
    let mut pfd = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let ts = rustix::fs::Timespec {
        tv_sec: limit.as_secs() as i64,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut pfd, Some(&ts)).is_ok_and(|n| n > 0)
}

/// A start that takes long (here a child held before `exec` until the
/// test lets it go) keeps a spawner thread busy, not the caller, which
/// is woken when it is done.
#[test]
fn a_slow_start_does_not_hold_up_the_caller() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // The gate exists before the threads, so that theirs tables have it.
    let (gate_rx, gate_tx) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe");
    let spawner = Spawner::new(1, &[]).expect("threads");
    let mut cmd = Command::new("true");
    let gate = gate_rx.as_raw_fd();
    // SAFETY: read(2) is async-signal-safe; the closure only borrows the
    // gate's number, open in the child until its exec.
    unsafe {
        cmd.pre_exec(move || {
            let mut byte = [0u8; 1];
            let _ = rustix::io::read(BorrowedFd::borrow_raw(gate), &mut byte);
            Ok(())
        });
    }
    let launch = Launch {
        proc: ProcId(1),
        cmd,
        fds: no_output(),
    };
    // Were submit to wait for the start, it would wait for ever: the
    // gate opens only below. (A bug shows as a hang, bounded by the
    // watchdog.)
    let released = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let released = released.clone();
        let tx = gate_tx.try_clone().expect("dup");
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(60));
            released.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = rustix::io::write(&tx, &[1]);
        })
    };
    assert!(
        spawner.submit(launch, false).is_none(),
        "started on the caller"
    );
    assert!(
        !released.load(std::sync::atomic::Ordering::SeqCst),
        "submit waited for the start"
    );
    assert!(
        spawner.take_done().is_none(),
        "done before the child could exec"
    );
    rustix::io::write(&gate_tx, &[1]).expect("open the gate");
    assert!(
        wait_readable(&spawner, Duration::from_secs(10)),
        "not woken"
    );
    let done = spawner.take_done().expect("a finished start");
    assert_eq!(done.proc, ProcId(1));
    let mut child = done.result.expect("started");
    assert!(child.wait().expect("wait").success());
    drop(watchdog); // detached: it only ever opens the gate late
}

/// A spawner ends when dropped even while one started after it lives:
/// the later one's threads hold a copy of the earlier one's end of its
/// socket (their tables are copies of the process's), so closing that
/// end used to end nothing, and the drop waited for ever.
#[test]
fn a_spawner_ends_while_a_later_one_holds_a_copy_of_its_socket() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let first = Spawner::new(1, &[]).expect("threads");
    let later = Spawner::new(1, &[]).expect("threads");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        drop(first);
        let _ = tx.send(());
    });
    // (A hang is the failure; the bound only turns it into one.)
    let ended = rx.recv_timeout(Duration::from_secs(60));
    drop(later);
    assert!(ended.is_ok(), "the first spawner's drop never returned");
}

/// A spawner thread's descriptor table does not grow with the rest of
/// the process's: a child copies the table of the thread that starts it.
#[test]
fn spawner_threads_have_small_tables() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let _spawner = Spawner::new(2, &[]).expect("threads");
    let held: Vec<std::fs::File> = (0..50)
        .map(|_| std::fs::File::open("/dev/null").expect("open"))
        .collect();
    let tasks = std::fs::read_dir("/proc/thread-self/..").expect("tasks");
    let mut seen = 0;
    for t in tasks.filter_map(Result::ok) {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("spawner-") {
            continue;
        }
        seen += 1;
        let fds: Vec<String> = std::fs::read_dir(t.path().join("fd"))
            .expect("fd")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        // 0, 1, 2, its socket, and what the test harness had open
        // close-on-exec before: not the 50 opened after.
        assert!(fds.len() < 40, "{comm}: {fds:?}");
    }
    assert!(seen >= 2, "no spawner threads found");
    drop(held);
}
