//! The processes below a supervisor (`--contain`'s, a detached job's): it
//! is their child subreaper, so whatever its program starts stays below
//! it, double forks and `setsid` included. Reaping them, noting how the
//! program ended, and ending them all.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitOptions};

/// How the program ended: its exit code, or the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Code(i32),
    Signal(i32),
}

/// Makes this process the subreaper of what it starts.
pub fn adopt_orphans() -> std::io::Result<()> {
    Ok(rustix::process::set_child_subreaper(Some(
        rustix::process::getpid(),
    ))?)
}

/// Reaps every child that has exited; how `leader` ended, if it is among
/// them.
pub fn reap(leader: Pid) -> Option<Ending> {
    let mut ending = None;
    loop {
        match rustix::process::wait(WaitOptions::NOHANG) {
            Ok(Some((pid, status))) => {
                if pid == leader {
                    ending = status
                        .exit_status()
                        .map(Ending::Code)
                        .or_else(|| status.terminating_signal().map(Ending::Signal));
                }
            }
            Err(Errno::INTR) => {}
            // None still running has changed, or there are none.
            Ok(None) | Err(_) => return ending,
        }
    }
}

/// Ends everything below this process: SIGTERM, then SIGKILL to what is
/// left after `grace`; reaps them all. How `leader` ended, if it was still
/// among them.
pub fn end_all(leader: Pid, grace: Duration) -> Option<Ending> {
    kill_descendants(Signal::TERM);
    let deadline = Instant::now() + grace;
    let mut ending = None;
    loop {
        match rustix::process::wait(WaitOptions::NOHANG) {
            Ok(None) => {
                if Instant::now() >= deadline {
                    kill_descendants(Signal::KILL);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(Some((pid, status))) if pid == leader => {
                ending = status
                    .exit_status()
                    .map(Ending::Code)
                    .or_else(|| status.terminating_signal().map(Ending::Signal));
            }
            Ok(Some(_)) | Err(Errno::INTR) => {}
            Err(_) => return ending, // ECHILD: nothing left
        }
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
        if let Some(pid) = Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, sig);
        }
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
