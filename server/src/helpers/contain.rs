//! `--contain`: a supervisor between rexecd and each command, so that a
//! command's end is the end of everything it started.
//!
//! rexecd runs `rexecd __contain PROGRAM ARGS...` instead of the program.
//! The supervisor makes itself a *child subreaper* (processes orphaned below
//! it are re-parented to it, not to init, so `setsid`, double forks and
//! `nohup ... &` stay within reach), asks for SIGTERM if rexecd dies, and
//! runs the program. When the program exits, or the supervisor is told to
//! stop (rexecd's cancel, timeout or disconnect signal the process group),
//! it sends SIGTERM to every process below it, SIGKILL to what is left after
//! a grace period, reaps them all, and exits as the program did.
//!
//! This runs in its own process and may block; nothing here runs inside
//! rexecd's event loop.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{self, SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// The first argument that selects the supervisor in `rexecd`'s `main`.
pub const ARG: &str = "__contain";

/// Time between SIGTERM and SIGKILL for what a command left behind; shorter
/// than rexecd's own grace (1 s by default), after which rexecd kills us.
const GRACE: Duration = Duration::from_millis(500);

/// Runs `program args...` under supervision; returns the exit code to exit
/// with (or dies of the program's signal).
pub fn supervise(args: &[OsString]) -> i32 {
    let Some((program, rest)) = args.split_first() else {
        eprintln!("rexecd {ARG}: no program");
        return 127;
    };
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        eprintln!("rexecd {ARG}: cannot become a subreaper: {e}");
        return 127;
    }
    // If rexecd dies (even of SIGKILL), we get SIGTERM and clean up.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
    // Signals are taken with sigwait, never by a handler: no race between
    // checking for a stop and going to sleep.
    let mut waited = SigSet::empty();
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ] {
        waited.add(sig);
    }
    if let Err(e) = waited.thread_block() {
        eprintln!("rexecd {ARG}: cannot block signals: {e}");
        return 127;
    }
    // The program gets its own process group, so that rexecd's signals to
    // the command's group reach only us, and we decide (std resets the
    // signal mask in the child); on a pty it shares ours.
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest);
    // On a pty the program must stay in the terminal's foreground group
    // (ours), or reading the terminal would stop it.
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        cmd.process_group(0);
    }
    let leader = match cmd.spawn() {
        Ok(c) => Pid::from_raw(c.id() as i32),
        Err(e) => {
            eprintln!("rexecd: cannot start {}: {e}", program.to_string_lossy());
            return if e.kind() == std::io::ErrorKind::PermissionDenied {
                126
            } else {
                127
            };
        }
    };
    // Our copies of the pipes must not keep them open: their end is the end
    // of the command's output.
    close_stdio();
    let mut status = None;
    loop {
        reap(leader, &mut status);
        if status.is_some() {
            break;
        }
        match waited.wait() {
            Ok(Signal::SIGCHLD) => {}
            _ => break, // told to stop (or cannot wait): clean up now
        }
    }
    // Everything below us goes: politely, then not.
    kill_descendants(Signal::SIGTERM);
    let deadline = Instant::now() + GRACE;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                if Instant::now() >= deadline {
                    kill_descendants(Signal::SIGKILL);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(st) => note(leader, st, &mut status),
            Err(Errno::EINTR) => {}
            Err(_) => break, // ECHILD: nothing left
        }
    }
    let _ = waited.thread_unblock();
    match status {
        Some(Ok(code)) => code,
        // Die of the same signal, so rexecd reports it as the program's.
        Some(Err(sig)) => crate::sys::die_of(sig),
        None => 128 + Signal::SIGTERM as i32,
    }
}

/// Reaps every child that has exited, noting the program's status.
fn reap(leader: Pid, status: &mut Option<Result<i32, Signal>>) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(st) => note(leader, st, status),
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

fn note(leader: Pid, st: WaitStatus, status: &mut Option<Result<i32, Signal>>) {
    match st {
        WaitStatus::Exited(pid, code) if pid == leader => *status = Some(Ok(code)),
        WaitStatus::Signaled(pid, sig, _) if pid == leader => *status = Some(Err(sig)),
        _ => {}
    }
}

/// Points fds 0, 1 and 2 at /dev/null.
pub(crate) fn close_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = rustix::stdio::dup2_stdin(&null);
        let _ = rustix::stdio::dup2_stdout(&null);
        let _ = rustix::stdio::dup2_stderr(&null);
    }
}

/// Sends `sig` to every process below this one. Orphans are our children
/// (we are their subreaper); the rest hang below them.
pub(crate) fn kill_descendants(sig: Signal) {
    for pid in descendants(&[std::process::id() as i32]) {
        let _ = signal::kill(Pid::from_raw(pid), sig);
    }
}

/// Every process below the given ones (not themselves), from one scan of
/// /proc. Under --contain a command's processes all stay below its
/// supervisor, so rexecd counts them with this against --max-procs.
pub fn descendants(roots: &[i32]) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (pid, stat) in crate::proc_stat::all() {
        children.entry(stat.ppid).or_default().push(pid);
    }
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    let mut todo = roots.to_vec();
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            if seen.insert(c) {
                found.push(c);
                todo.push(c);
            }
        }
    }
    found
}
