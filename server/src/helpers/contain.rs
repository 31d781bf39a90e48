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

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use rustix::process::{Pid, Signal};

use super::family::{self, Ending};
use crate::sys::Waited;

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
    if let Err(e) = family::adopt_orphans() {
        eprintln!("rexecd {ARG}: cannot become a subreaper: {e}");
        return 127;
    }
    // If rexecd dies (even of SIGKILL), we get SIGTERM and clean up.
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::TERM));
    let waited = match Waited::block(&[Signal::TERM, Signal::INT, Signal::HUP, Signal::CHILD]) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("rexecd {ARG}: cannot block signals: {e}");
            return 127;
        }
    };
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
    let leader = match cmd.spawn().map(|c| Pid::from_raw(c.id() as i32)) {
        Ok(Some(pid)) => pid,
        Ok(None) => return 127,
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
    family::close_stdio();
    let mut ending = None;
    loop {
        ending = family::reap(leader).or(ending);
        if ending.is_some() {
            break;
        }
        match waited.next() {
            Ok(Signal::CHILD) => {}
            _ => break, // told to stop (or cannot wait): clean up now
        }
    }
    // Everything below us goes: politely, then not.
    ending = family::end_all(leader, GRACE).or(ending);
    waited.unblock();
    match ending {
        Some(Ending::Code(code)) => code,
        // Die of the same signal, so rexecd reports it as the program's.
        Some(Ending::Signal(sig)) => crate::sys::die_of(sig),
        None => 128 + Signal::TERM.as_raw(),
    }
}
