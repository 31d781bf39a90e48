//! Child processes: spawning them in their own process group with
//! non-blocking pipes (or on a pty, see pty.rs), a pidfd to learn of their
//! exit without blocking, and stopping them with everything they started.
//! What may run, and how, is decided before, in exec_policy.rs.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};

use mio::event::Source;
use mio::unix::SourceFd;
use mio::unix::pipe::{Receiver, Sender};
use mio::{Interest, Registry, Token};
use rexec_proto::{ErrorKind, ExitStatus};

use crate::out_queue::OutQueue;
use crate::registry::ConnId;
use crate::text::echo;
use crate::timer::{Timer, Timers};

/// Why a command could not be started; becomes an `Error` for its id.
#[derive(Debug)]
pub struct CommandError {
    pub kind: ErrorKind,
    pub message: String,
}

impl CommandError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CommandError {
            kind,
            message: message.into(),
        }
    }
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }
    pub fn os(what: &str, e: io::Error) -> Self {
        CommandError {
            kind: ErrorKind::Spawn,
            message: format!("{what}: {e}"),
        }
    }
}

/// A freshly started child and its non-blocking pipe ends.
#[derive(Debug)]
pub struct Spawned {
    pub child: Child,
    pub stdout: Receiver,
    /// `None` on a pty, where stderr is the terminal too.
    pub stderr: Option<Receiver>,
    pub stdin: Option<Sender>,
    /// Where the kernel has them (Linux 5.3+); otherwise the server sweeps
    /// with `try_wait`.
    pub pidfd: Option<Pidfd>,
    /// The pty's master side, kept for resizing.
    pub pty: Option<OwnedFd>,
}

/// A descriptor that becomes readable when the child exits.
#[derive(Debug)]
pub struct Pidfd(OwnedFd);

impl Source for Pidfd {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        SourceFd(&self.0.as_raw_fd()).register(r, t, i)
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        SourceFd(&self.0.as_raw_fd()).reregister(r, t, i)
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        SourceFd(&self.0.as_raw_fd()).deregister(r)
    }
}

/// Starts `cmd` in a new process group with piped stdout and stderr, and a
/// piped stdin when `stdin` is true (otherwise `/dev/null`).
/// A spawn error names the program that failed to start (not `/bin/sh`
/// when there is no shell).
pub fn spawn(mut cmd: Command, stdin: bool) -> Result<Spawned, CommandError> {
    cmd.process_group(0)
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| CommandError::os(&echo(&cmd.get_program().to_string_lossy()), e))?;
    let pipes = (|| -> io::Result<_> {
        let out = nonblocking_receiver(child.stdout.take())?;
        let err = nonblocking_receiver(child.stderr.take())?;
        let inp = match child.stdin.take() {
            Some(s) => {
                let s = Sender::from(s);
                s.set_nonblocking(true)?;
                Some(s)
            }
            None => None,
        };
        Ok((out, err, inp))
    })();
    let (stdout, stderr, stdin) = match pipes {
        Ok(p) => p,
        Err(e) => {
            // Do not leave it running or unreaped.
            kill_group(child.id() as i32, libc::SIGKILL);
            let _ = child.wait();
            return Err(CommandError::os("setting up pipes", e));
        }
    };
    let pidfd = pidfd_open(child.id());
    Ok(Spawned {
        child,
        stdout,
        stderr: Some(stderr),
        stdin,
        pidfd,
        pty: None,
    })
}

fn nonblocking_receiver<T>(pipe: Option<T>) -> io::Result<Receiver>
where
    Receiver: From<T>,
{
    let pipe = pipe.ok_or_else(|| io::Error::other("child pipe missing"))?;
    // mio's pipe types take the descriptor as it is: blocking, until told.
    let r = Receiver::from(pipe);
    r.set_nonblocking(true)?;
    Ok(r)
}

pub fn pidfd_open(pid: u32) -> Option<Pidfd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; it touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just gave us this descriptor and nobody else owns it.
    Some(Pidfd(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
}

/// Sends `sig` to every process in group `pgid`. Errors (the group is gone)
/// are ignored.
pub fn kill_group(pgid: i32, sig: libc::c_int) {
    if pgid <= 1 {
        return; // never signal "every process" or init's group
    }
    // SAFETY: kill(2) with a negative pid signals a process group; no memory
    // is shared.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// Whether process group `pgid` still has a member.
pub fn group_alive(pgid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks; no memory is shared.
    pgid > 1 && unsafe { libc::kill(-pgid, 0) } == 0
}

/// Converts std's exit status into the protocol's.
pub fn exit_status(status: std::process::ExitStatus) -> ExitStatus {
    match (status.code(), status.signal()) {
        (Some(c), _) => ExitStatus::Code(c),
        (None, Some(s)) => ExitStatus::Signal(s),
        (None, None) => ExitStatus::Code(-1),
    }
}

/// A command the server is running, and everything it owns.
#[derive(Debug)]
pub struct Proc {
    /// The connection it runs for; `None` once that connection went away.
    pub conn: Option<ConnId>,
    /// The client's id for it.
    pub id: u32,
    /// For the audit log.
    pub command: String,
    pub peer: std::net::SocketAddr,
    pub child: Child,
    pub pgid: i32,
    /// Each pipe with its poll registration; `None` once closed.
    pub stdout: Option<(Receiver, Token)>,
    pub stderr: Option<(Receiver, Token)>,
    pub stdin: Option<(Sender, Token)>,
    /// Bytes from the client not yet written to the child's stdin.
    pub stdin_queue: OutQueue,
    /// The client closed stdin: close the pipe once the queue is written.
    pub stdin_eof: bool,
    pub pidfd: Option<(Pidfd, Token)>,
    /// The pty's master side, when the command runs on one.
    pub pty: Option<OwnedFd>,
    /// Set once the child has been reaped.
    pub status: Option<ExitStatus>,
    pub started: std::time::Instant,
    /// When its time limit runs out, if it has one.
    pub deadline: Option<std::time::Instant>,
    pub bytes_out: u64,
    pub timed_out: bool,
    pub truncated: bool,
    /// SIGTERM was sent to its group.
    pub stopping: bool,
    /// The pipe grace timer is armed.
    pub grace_armed: bool,
    /// Which output pipes were grown for a fast writer (stdout, stderr);
    /// counted in `Server::big_pipes` until closed.
    pub grown: [bool; 2],
    /// Whole stdout and stderr, for the tutorial protocols only.
    pub tutorial_out: Vec<u8>,
    pub tutorial_err: Vec<u8>,
}

impl Proc {
    /// Sends SIGTERM to the whole process group and schedules SIGKILL.
    pub fn stop(&mut self, timers: &mut Timers, grace: std::time::Duration) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        kill_group(self.pgid, libc::SIGTERM);
        timers.after(grace, Timer::KillGroup(self.pgid));
    }

    /// Both output pipes have been closed.
    pub fn output_done(&self) -> bool {
        self.stdout.is_none() && self.stderr.is_none()
    }
}
