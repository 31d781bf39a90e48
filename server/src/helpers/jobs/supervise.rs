//! The job supervisor: `rexecd __job run DIR TIMEOUT CAP [--arg0 NAME] --
//! PROGRAM ARGS...`, started by the start helper in a session of its own
//! (so rexecd's signals to a command's group never reach it, and it
//! outlives rexecd).
//!
//! It makes itself a child subreaper (what the job starts stays below it,
//! double forks and `setsid` included), runs the program with its output
//! into pipes, and appends that output to the spool from a reader thread.
//! When the program exits, what it left behind gets a short grace to
//! finish writing, then SIGTERM and SIGKILL, as with `--contain`; so do
//! the program and everything below it when the supervisor is told to
//! stop (`rexec kill`: SIGTERM to it) or the time limit passes. Last, it
//! writes `status.json`.
//!
//! Signals are taken with sigwait (blocked in every thread), as in
//! contain.rs. A line on stdout tells the start helper the program runs
//! (`ok`) or why not; then stdout is /dev/null like the rest.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rustix::process::{Pid, Signal};

use super::record::{self, Ended, STATUS};
use super::spool::{self, Spool};
use crate::helpers::family::{self, Ending};
use crate::sys::Waited;

/// How long output may still come after the program exited (from what it
/// left in the background) before that is ended.
const LINGER: Duration = Duration::from_secs(2);
/// Between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(1);

/// What `run` is told.
struct Plan {
    dir: PathBuf,
    timeout: Option<Duration>,
    cap: u64,
    arg0: Option<OsString>,
    program: OsString,
    args: Vec<OsString>,
}

fn plan(args: &[OsString]) -> Option<Plan> {
    let mut it = args.iter();
    let dir = PathBuf::from(it.next()?);
    let secs: u64 = it.next()?.to_str()?.parse().ok()?;
    let cap: u64 = it.next()?.to_str()?.parse().ok()?;
    let mut arg0 = None;
    let mut next = it.next()?;
    if next == "--arg0" {
        arg0 = Some(it.next()?.clone());
        next = it.next()?;
    }
    if next != "--" {
        return None;
    }
    let program = it.next()?.clone();
    Some(Plan {
        dir,
        timeout: (secs > 0).then(|| Duration::from_secs(secs)),
        cap,
        arg0,
        program,
        args: it.cloned().collect(),
    })
}

/// Runs the job; the process's exit code.
pub fn run(args: &[OsString]) -> i32 {
    let Some(plan) = plan(args) else {
        println!("rexecd __job run: bad arguments");
        return 2;
    };
    let _ = family::adopt_orphans();
    let waited = match Waited::block(&[
        Signal::TERM,
        Signal::INT,
        Signal::HUP,
        Signal::CHILD,
        Signal::ALARM,
    ]) {
        Ok(w) => w,
        Err(e) => {
            println!("cannot block signals: {e}");
            return 2;
        }
    };
    let spool = match Spool::create(&plan.dir, plan.cap) {
        Ok(s) => s,
        Err(e) => {
            println!(
                "cannot write the job's output in {}: {e}",
                plan.dir.display()
            );
            return 2;
        }
    };
    let mut cmd = Command::new(&plan.program);
    cmd.args(&plan.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(a) = &plan.arg0 {
        cmd.arg0(a);
    }
    // The signals blocked here for sigwait must not stay blocked in the
    // job: a job was seen with them blocked (a shell in `wait` that never
    // ended on SIGTERM), so they are cleared here, whatever std does.
    crate::sys::in_child(&mut cmd, crate::sys::InChild::NoSignalBlocked);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            println!("cannot start {}: {e}", plan.program.to_string_lossy());
            return 127;
        }
    };
    let Some(leader) = Pid::from_raw(child.id() as i32) else {
        println!("cannot start {}: no pid", plan.program.to_string_lossy());
        return 127;
    };
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let (done_tx, done) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let spool = pump(spool, out, err);
        let _ = done_tx.send(());
        spool
    });
    // The start helper may go: the job runs.
    println!("ok");
    let _ = std::io::stdout().flush();
    // The start helper has its answer.
    family::close_stdio();
    if let Some(t) = plan.timeout {
        alarm_after(t);
    }
    let end = watch(leader, &waited, &done);
    let spool = reader.join().ok().flatten();
    let ended = Ended {
        ended_ms: record::now_ms(),
        code: end.code,
        signal: end.signal,
        timed_out: end.timed_out,
        killed: end.killed,
        output: spool.as_ref().map_or(0, |s| s.total),
        dropped: spool.as_ref().map_or(0, |s| s.dropped),
    };
    let json = serde_json::to_vec(&ended).unwrap_or_default();
    match record::write_atomic(&plan.dir.join(STATUS), &json) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// How the program ended.
#[derive(Default)]
struct End {
    code: Option<i32>,
    signal: Option<i32>,
    timed_out: bool,
    killed: bool,
}

/// Waits for the program's end (or a stop), then for what it left
/// behind; returns once nothing is left below us.
fn watch(leader: Pid, waited: &Waited, done: &mpsc::Receiver<()>) -> End {
    let mut end = End::default();
    let mut exited = false;
    while !exited {
        match waited.next() {
            Ok(Signal::CHILD) => {
                if let Some(ending) = family::reap(leader) {
                    end.note(ending);
                    exited = true;
                }
            }
            Ok(Signal::ALARM) => {
                end.timed_out = true;
                break;
            }
            Ok(_) => {
                end.killed = true;
                break;
            }
            Err(_) => break,
        }
    }
    // Output may still come from what it left running; not for long.
    if exited && done.recv_timeout(LINGER).is_ok() {
        return end;
    }
    // Everything below us goes: politely, then not.
    if let Some(ending) = family::end_all(leader, GRACE) {
        end.note(ending);
    }
    let _ = done.recv_timeout(GRACE);
    end
}

impl End {
    fn note(&mut self, ending: Ending) {
        match ending {
            Ending::Code(c) => self.code = Some(c),
            Ending::Signal(s) => self.signal = Some(s),
        }
    }
}

/// Reads the program's stdout and stderr as they come, into the spool,
/// until both end. Gives the spool back (its counts), or `None` if it
/// could not be written.
fn pump(
    mut spool: Spool,
    out: Option<std::process::ChildStdout>,
    err: Option<std::process::ChildStderr>,
) -> Option<Spool> {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut out = out.map(|o| Box::new(o) as Box<dyn ReadFd>);
    let mut err = err.map(|e| Box::new(e) as Box<dyn ReadFd>);
    let mut buf = vec![0u8; 64 << 10];
    let mut ok = true;
    while out.is_some() || err.is_some() {
        let mut fds = Vec::new();
        for p in [&out, &err].into_iter().flatten() {
            fds.push(PollFd::from_borrowed_fd(p.fd(), PollFlags::IN));
        }
        if poll(&mut fds, None).is_err() {
            continue;
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        let mut r = ready.into_iter();
        for (stream, pipe) in [(spool::STDOUT, &mut out), (spool::STDERR, &mut err)] {
            if pipe.is_none() || !r.next().unwrap_or(false) {
                continue;
            }
            let Some(p) = pipe.as_mut() else { continue };
            match p.read(&mut buf) {
                Ok(0) | Err(_) => *pipe = None,
                Ok(n) => ok &= spool.append(stream, &buf[..n]).is_ok(),
            }
        }
    }
    ok.then_some(spool)
}

/// A pipe end that can be polled.
trait ReadFd: Read + Send {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_>;
}

impl ReadFd for std::process::ChildStdout {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.as_fd()
    }
}

impl ReadFd for std::process::ChildStderr {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.as_fd()
    }
}

/// SIGALRM to this process after `t` (taken by `watch`'s sigwait).
fn alarm_after(t: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(t);
        let _ = rustix::process::kill_process(rustix::process::getpid(), Signal::ALARM);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_arguments_are_read_or_refused() {
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let p = plan(&os(&[
            "/j/3", "60", "1000", "--arg0", "ls", "--", "/bin/ls", "-l",
        ]))
        .unwrap();
        assert_eq!(p.timeout, Some(Duration::from_secs(60)));
        assert_eq!((p.cap, p.arg0.as_deref()), (1000, Some("ls".as_ref())));
        assert_eq!(p.program, "/bin/ls");
        assert_eq!(p.args, os(&["-l"]));
        let p = plan(&os(&["/j/3", "0", "1000", "--", "sh"])).unwrap();
        assert_eq!((p.timeout, p.args.len()), (None, 0));
        assert!(plan(&os(&["/j/3", "x", "1000", "--", "sh"])).is_none());
        assert!(plan(&os(&["/j/3", "0", "1000", "sh"])).is_none());
    }
}
