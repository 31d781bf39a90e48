//! Child processes: spawning them in their own process group with
//! non-blocking pipes (or on a pty, see pty.rs), a pidfd to learn of their
//! exit without blocking, and stopping them with everything they started.
//! What may run, and how, is decided before, in exec_policy.rs.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::unix::SourceFd;
use mio::unix::pipe::{Receiver, Sender};
use mio::{Interest, Registry, Token};
use rexec_proto::{ErrorKind, ExitStatus};
pub use rustix::process::Signal;

use crate::out_queue::OutQueue;
use crate::registry::ConnId;
use crate::timer::{Timer, Timers};
use rexec_proto::text::echo;

mod grace;
mod hangup;
mod life;
mod pump;
mod sink;

pub use grace::{GraceVerdict, PipeGrace, Waiting};
pub(crate) use hangup::kill_after_grace;
pub(crate) use life::StdinStep;
pub(crate) use pump::{PumpIo, Pumped};
pub(crate) use sink::Sink;

/// Why a command could not be started; becomes an `Error` for its id.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
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

/// The loop's ends of a command's pipes, made before the command is
/// started: the loop watches them (and may write stdin) at once, while a
/// spawner thread starts the process (spawner.rs).
#[derive(Debug)]
pub struct Prepared {
    pub stdout: Receiver,
    /// `None` on a pty, where stderr is the terminal too.
    pub stderr: Option<Receiver>,
    pub stdin: Option<Sender>,
    /// The pty's master side, kept for resizing (pty.rs).
    pub pty: Option<OwnedFd>,
    /// The child's ends, for whoever starts it.
    pub child: ChildFds,
}

/// The descriptors a command gets as stdin, stdout and stderr.
#[derive(Debug)]
pub enum ChildFds {
    /// Pipes; stdin is `/dev/null` when there is none.
    Pipes {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// A pty's slave side, as all three.
    Pty(OwnedFd),
}

impl ChildFds {
    /// The descriptors, in the order [`ChildFds::from_parts`] takes them.
    pub fn into_parts(self) -> (u8, Vec<OwnedFd>) {
        match self {
            ChildFds::Pipes {
                stdin: None,
                stdout,
                stderr,
            } => (0, vec![stdout, stderr]),
            ChildFds::Pipes {
                stdin: Some(stdin),
                stdout,
                stderr,
            } => (1, vec![stdin, stdout, stderr]),
            ChildFds::Pty(slave) => (2, vec![slave]),
        }
    }

    /// Rebuilds what [`ChildFds::into_parts`] took apart (after the
    /// descriptors crossed to another descriptor table).
    pub fn from_parts(kind: u8, fds: Vec<OwnedFd>) -> io::Result<ChildFds> {
        let mut fds = fds.into_iter();
        let mut next = || {
            fds.next()
                .ok_or_else(|| io::Error::other("descriptors missing"))
        };
        Ok(match kind {
            0 => ChildFds::Pipes {
                stdin: None,
                stdout: next()?,
                stderr: next()?,
            },
            1 => ChildFds::Pipes {
                stdin: Some(next()?),
                stdout: next()?,
                stderr: next()?,
            },
            2 => ChildFds::Pty(next()?),
            _ => return Err(io::Error::other("unknown descriptor set")),
        })
    }

    /// Gives them to `cmd` as its stdin, stdout and stderr.
    pub fn attach(self, cmd: &mut Command) -> io::Result<()> {
        match self {
            ChildFds::Pipes {
                stdin,
                stdout,
                stderr,
            } => {
                cmd.stdin(stdin.map_or_else(Stdio::null, Stdio::from))
                    .stdout(stdout)
                    .stderr(stderr);
            }
            ChildFds::Pty(slave) => {
                cmd.stdin(slave.try_clone()?)
                    .stdout(slave.try_clone()?)
                    .stderr(slave);
            }
        }
        Ok(())
    }
}

/// Gives `cmd` its own process group and makes pipes for stdout and stderr
/// (and stdin when `stdin` is true; otherwise it gets `/dev/null`); returns
/// our ends, non-blocking, and the child's.
pub fn prepare(cmd: &mut Command, stdin: bool) -> io::Result<Prepared> {
    let pipe = || rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC);
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (stdin, child_stdin) = if stdin {
        let (in_r, in_w) = pipe()?;
        let s = Sender::from(in_w);
        s.set_nonblocking(true)?;
        (Some(s), Some(in_r))
    } else {
        (None, None)
    };
    cmd.process_group(0);
    let stdout = Receiver::from(out_r);
    stdout.set_nonblocking(true)?;
    let stderr = Receiver::from(err_r);
    stderr.set_nonblocking(true)?;
    Ok(Prepared {
        stdout,
        stderr: Some(stderr),
        stdin,
        pty: None,
        child: ChildFds::Pipes {
            stdin: child_stdin,
            stdout: out_w,
            stderr: err_w,
        },
    })
}

/// Spawns a command with `fds` as its stdin, stdout and stderr. This blocks
/// until the child has called `exec`: spawner threads do it, and the loop
/// only when nothing waits behind it (`Server::launch`).
/// The command, and with it the child's descriptors, is dropped here.
/// A spawn error names the program that failed to start (not `/bin/sh`
/// when there is no shell).
pub fn spawn_child(mut cmd: Command, fds: ChildFds) -> Result<Child, CommandError> {
    fds.attach(&mut cmd)
        .map_err(|e| CommandError::os("passing descriptors", e))?;
    let child = cmd
        .spawn()
        .map_err(|e| CommandError::os(&echo(&cmd.get_program().to_string_lossy()), e))?;
    drop(cmd);
    Ok(child)
}

/// Marks every descriptor this process inherited (beyond 0, 1 and 2)
/// close-on-exec, so that no command gets one: what started rexecd may have
/// left pipes or sockets open (cargo's jobserver, a supervisor's sockets).
/// Descriptors rexecd opens itself are close-on-exec already.
pub fn keep_inherited_from_commands() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds.into_iter().filter(|&fd| fd > 2) {
        // SAFETY: the number is only borrowed for two fcntl calls that
        // change its close-on-exec flag; one no longer open (the listing's
        // own) makes them fail harmlessly. No other thread runs yet.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Ok(flags) = rustix::io::fcntl_getfd(fd) {
            let _ = rustix::io::fcntl_setfd(fd, flags | rustix::io::FdFlags::CLOEXEC);
        }
    }
}

pub fn pidfd_open(pid: u32) -> Option<Pidfd> {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .ok()
        .map(Pidfd)
}

/// A process group rexecd started (a command's, led by its pid): never
/// "every process" (0 or below) or init's group.
fn group(pgid: i32) -> Option<rustix::process::Pid> {
    rustix::process::Pid::from_raw(pgid).filter(|_| pgid > 1)
}

/// Sends `sig` to every process in group `pgid`. Errors (the group is gone)
/// are ignored.
pub fn kill_group(pgid: i32, sig: Signal) {
    if let Some(g) = group(pgid) {
        let _ = rustix::process::kill_process_group(g, sig);
    }
}

/// Whether process group `pgid` still has a member.
pub fn group_alive(pgid: i32) -> bool {
    group(pgid).is_some_and(|g| rustix::process::test_kill_process_group(g).is_ok())
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
    conn: Option<ConnId>,
    /// The client's id for it.
    id: u32,
    /// For the audit log.
    command: String,
    peer: std::net::SocketAddr,
    /// `None` while a spawner thread is starting it: its pipes exist and
    /// are watched, but nothing is read from them before `Started` is sent.
    child: Option<Child>,
    /// Its process group (its pid); 0 until started, which signals nobody.
    pgid: i32,
    /// Each pipe with its poll registration; `None` once closed.
    stdout: Option<(Receiver, Token)>,
    stderr: Option<(Receiver, Token)>,
    stdin: Option<(Sender, Token)>,
    /// Bytes from the client not yet written to the child's stdin.
    stdin_queue: OutQueue,
    /// The client closed stdin: close the pipe once the queue is written.
    stdin_eof: bool,
    pidfd: Option<(Pidfd, Token)>,
    /// The pty's master side, when the command runs on one.
    pty: Option<OwnedFd>,
    /// Set once the child has been reaped.
    status: Option<ExitStatus>,
    started: std::time::Instant,
    /// When its time limit runs out, if it has one.
    deadline: Option<std::time::Instant>,
    bytes_out: u64,
    timed_out: bool,
    truncated: bool,
    /// Whether it was asked to stop, and SIGTERM sent to its group.
    stopping: Stopping,
    /// Set once the process exited while its pipes were still open.
    grace: Option<PipeGrace>,
    /// A line for the client's stderr once it has started (a home
    /// directory that is missing).
    notice: Option<String>,
    /// Which output pipes were grown for a fast writer (stdout, stderr);
    /// counted in `Server::big_pipes` until closed.
    grown: [bool; 2],
    /// A file-transfer helper: what the client sends for it reaches it as
    /// data frames (files_request.rs).
    transfer: bool,
    /// Who asked for it, and how they authenticated (the audit line).
    who: Option<std::sync::Arc<str>>,
    /// Whole stdout and stderr, for the tutorial protocols only.
    tutorial_out: Vec<u8>,
    tutorial_err: Vec<u8>,
    /// How fast it has been sending (coalesce.rs).
    rate: crate::coalesce::Rate,
    /// Its stdin pipe was grown (a transfer's); counted in
    /// `Server::big_pipes` until closed.
    grown_stdin: bool,
}

/// Where a command is in being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopping {
    No,
    /// Asked before it had started: it is signalled once it has.
    Asked,
    /// SIGTERM was sent to its group, and SIGKILL scheduled.
    Signalled,
}

/// A command's ends of its pipes (or pty), each with its poll
/// registration.
#[derive(Debug)]
pub struct Pipes {
    pub stdout: Option<(Receiver, Token)>,
    pub stderr: Option<(Receiver, Token)>,
    pub stdin: Option<(Sender, Token)>,
    pub pty: Option<OwnedFd>,
}

impl Proc {
    /// A command about to be started for connection `conn` (the client's
    /// `id`), its pipes already watched.
    pub fn new(
        conn: ConnId,
        id: u32,
        command: String,
        peer: std::net::SocketAddr,
        pipes: Pipes,
        now: Instant,
    ) -> Proc {
        Proc {
            conn: Some(conn),
            id,
            command,
            peer,
            child: None,
            pgid: 0,
            stdout: pipes.stdout,
            stderr: pipes.stderr,
            stdin: pipes.stdin,
            stdin_queue: OutQueue::default(),
            stdin_eof: false,
            pidfd: None,
            pty: pipes.pty,
            status: None,
            started: now,
            deadline: None,
            bytes_out: 0,
            timed_out: false,
            truncated: false,
            stopping: Stopping::No,
            grace: None,
            notice: None,
            grown: [false; 2],
            transfer: false,
            who: None,
            tutorial_out: Vec::new(),
            tutorial_err: Vec::new(),
            rate: crate::coalesce::Rate::new(now),
            grown_stdin: false,
        }
    }

    /// Sends SIGTERM to the whole process group and schedules SIGKILL. A
    /// command not started yet is stopped as soon as it is (`on_spawned`).
    pub fn stop(&mut self, timers: &mut Timers, now: Instant, grace: Duration) {
        match self.stopping {
            Stopping::Signalled => {}
            _ if self.pgid == 0 => self.stopping = Stopping::Asked,
            _ => {
                kill_group(self.pgid, Signal::TERM);
                self.stopping = Stopping::Signalled;
                timers.after(now, grace, Timer::KillGroup(self.pgid));
            }
        }
    }

    /// Whether it was asked to stop (whether or not it has started).
    pub fn is_stopping(&self) -> bool {
        self.stopping != Stopping::No
    }

    /// Both output pipes have been closed.
    pub fn output_done(&self) -> bool {
        self.stdout.is_none() && self.stderr.is_none()
    }

    /// Whether an open output pipe still holds bytes (a pty's master
    /// answers the same question for the terminal's output).
    pub fn pipes_hold_output(&self) -> bool {
        [&self.stdout, &self.stderr]
            .into_iter()
            .flatten()
            .any(|(rx, _)| crate::splice::pending(rx.as_fd()).is_ok_and(|n| n > 0))
    }
}

/// A command already started (at `now`) whose output is `stdout` and
/// perhaps `stderr`, and nothing else: the pump's unit tests and the
/// simulation (tests/sim/output.rs).
#[cfg(test)]
pub(crate) fn started_with(
    stdout: Receiver,
    stderr: Option<Receiver>,
    child: Child,
    now: Instant,
) -> Proc {
    let pipes = Pipes {
        stdout: Some((stdout, Token(3))),
        stderr: stderr.map(|rx| (rx, Token(4))),
        stdin: None,
        pty: None,
    };
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    let mut p = Proc::new(ConnId(1), 7, "cat".into(), peer, pipes, now);
    p.child = Some(child);
    p
}

#[cfg(test)]
mod tests;
