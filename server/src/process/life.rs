//! A command's life as its `Proc` sees it: set up, spawned, fed stdin,
//! timed out, reaped, waited for, reported. The `Proc` keeps its fields to
//! itself; the server calls these and routes what they answer.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::process::Child;
use std::time::{Duration, Instant};

use mio::Token;
use mio::unix::pipe::{Receiver, Sender};
use rexec_proto::{ExitStatus, Exited, OutputStream};

use super::{GraceVerdict, Pidfd, PipeGrace, Proc, exit_status};
use crate::helpers::files_request::HelperMsg;
use crate::out_queue::OutQueue;
use crate::registry::ConnId;
use crate::timer::Timers;

/// The most characters of a command the audit line shows.
const AUDIT_COMMAND_MAX: usize = 1000;

/// What writing stdin came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StdinStep {
    /// More may come, or the pipe is full for now.
    Open,
    /// All written after the client's EOF, or the child closed its stdin:
    /// close the pipe.
    Close,
}

impl Proc {
    /// The client's id for it.
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// The connection it runs for; `None` once that connection went away.
    pub(crate) fn conn(&self) -> Option<ConnId> {
        self.conn
    }

    /// Its process group (its pid); 0 until spawned.
    pub(crate) fn pgid(&self) -> i32 {
        self.pgid
    }

    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether it has been spawned (a spawner thread may still be at it).
    pub(crate) fn is_spawned(&self) -> bool {
        self.child.is_some()
    }

    /// Whether its process has been reaped.
    pub(crate) fn has_exited(&self) -> bool {
        self.status.is_some()
    }

    /// Whether it is waited for by sweeps, having no pidfd.
    pub(crate) fn needs_sweep(&self) -> bool {
        self.pidfd.is_none() && self.status.is_none()
    }

    /// Its time limit, a line for the client once it has started, and who
    /// asked for it (for the audit line).
    pub(crate) fn set_up(
        &mut self,
        deadline: Option<Instant>,
        notice: Option<String>,
        who: Option<std::sync::Arc<str>>,
    ) {
        self.deadline = deadline;
        self.notice = notice;
        self.who = who;
    }

    /// It is a file-transfer helper: what the client sends becomes data
    /// frames from now on.
    /// Its stdin pipe is grown to `splice::BIG_PIPE` when `big_pipes`
    /// allows (an upload is a fast writer): fewer, larger writes, and an
    /// upload of 1 GiB took a fifth less of rexecd's time.
    pub(crate) fn mark_transfer(&mut self, big_pipes: &mut usize) {
        self.transfer = true;
        if let Some((tx, _)) = &self.stdin
            && *big_pipes < super::pump::MAX_BIG_PIPES
            && crate::splice::grow(std::os::fd::AsFd::as_fd(tx))
        {
            self.grown_stdin = true;
            *big_pipes += 1;
        }
    }

    /// A spawner thread started it: its process and pidfd. Returns the
    /// notice for the client, if there is one.
    pub(crate) fn spawned(
        &mut self,
        child: Child,
        pidfd: Option<(Pidfd, Token)>,
    ) -> Option<String> {
        self.pgid = child.id() as i32;
        self.child = Some(child);
        self.pidfd = pidfd;
        self.notice.take()
    }

    /// Bytes held on its behalf in rexecd's memory (the memory budget).
    pub(crate) fn held_bytes(&self) -> usize {
        self.stdin_queue.len() + self.tutorial_out.len() + self.tutorial_err.len()
    }

    // --- stdin ---

    /// Queues bytes for its stdin: the client's (for a transfer helper they
    /// become data frames), or with `as_is` rexecd's own frames. `None` when
    /// it has no stdin (not asked for, or closed): the bytes are dropped.
    pub(crate) fn queue_stdin(&mut self, data: &[u8], eof: bool, as_is: bool) -> Option<usize> {
        self.stdin.as_ref()?;
        if self.transfer && !as_is {
            // A transfer helper reads frames: the client's bytes are data.
            if !data.is_empty() {
                HelperMsg::encode_data(data, self.stdin_queue.tail());
            }
        } else {
            self.stdin_queue.tail().extend_from_slice(data);
        }
        self.stdin_eof |= eof;
        Some(data.len())
    }

    /// A `Stdin` chunk of `total` bytes begins, of which `first` arrived
    /// with its header; the rest is spliced from the socket straight into
    /// the pipe once the queue is written (splice_in.rs). For a transfer
    /// helper the chunk's data-frame header goes first. `None` when it has
    /// no stdin, as for [`Proc::queue_stdin`], or when its stdin is a
    /// terminal: splice(2) needs a pipe at one end, and a pty's master is
    /// not one (the chunk is read and written as usual).
    pub(crate) fn begin_stdin_splice(&mut self, first: &[u8], total: usize) -> Option<usize> {
        self.stdin.as_ref()?;
        if self.pty.is_some() {
            return None;
        }
        if self.transfer {
            HelperMsg::encode_data_header(total, self.stdin_queue.tail());
        }
        self.stdin_queue.tail().extend_from_slice(first);
        Some(first.len())
    }

    /// Its stdin pipe, to splice into, while it has one.
    pub(crate) fn stdin_pipe(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.stdin
            .as_ref()
            .map(|(tx, _)| std::os::fd::AsFd::as_fd(tx))
    }

    /// Bytes waiting for the child to read them.
    pub(crate) fn stdin_queued(&self) -> usize {
        self.stdin_queue.len()
    }

    /// Writes what is queued, as far as the pipe takes it.
    pub(crate) fn write_stdin(&mut self) -> StdinStep {
        let Some((tx, _)) = self.stdin.as_mut() else {
            return StdinStep::Open;
        };
        match self.stdin_queue.write_to(tx) {
            Ok(()) if self.stdin_queue.is_empty() && self.stdin_eof => StdinStep::Close,
            Ok(()) => StdinStep::Open,
            Err(e) => {
                // EPIPE: the child closed its stdin; the rest is discarded.
                log::debug!("stdin of pid {}: {e}", self.pgid);
                StdinStep::Close
            }
        }
    }

    /// Takes the stdin pipe away (to be deregistered); true as well when it
    /// was grown (one big pipe fewer).
    pub(crate) fn take_stdin(&mut self) -> (Option<(Sender, Token)>, bool) {
        self.stdin_queue = OutQueue::default();
        (self.stdin.take(), std::mem::take(&mut self.grown_stdin))
    }

    // --- output and the terminal ---

    /// Takes an output pipe away (to be deregistered); true as well when it
    /// was grown (one big pipe fewer).
    pub(crate) fn take_pipe(&mut self, stream: OutputStream) -> (Option<(Receiver, Token)>, bool) {
        let pipe = match stream {
            OutputStream::Stdout => self.stdout.take(),
            OutputStream::Stderr => self.stderr.take(),
        };
        (pipe, std::mem::take(&mut self.grown[stream as usize]))
    }

    /// The pty's master side, when it runs on one.
    pub(crate) fn pty(&self) -> Option<&OwnedFd> {
        self.pty.as_ref()
    }

    /// Its client is gone: the terminal is hung up (every master descriptor
    /// closed: the kernel sends SIGHUP to the session, as sshd does) and
    /// nothing more is delivered.
    pub(crate) fn orphan(&mut self) {
        self.pty = None;
        self.conn = None;
    }

    // --- ends ---

    /// Its time limit passed: stopped, unless it has ended or is stopping.
    /// True when it was.
    pub(crate) fn time_out(&mut self, timers: &mut Timers, now: Instant, grace: Duration) -> bool {
        if self.status.is_some() || self.is_stopping() {
            return false;
        }
        log::info!("{}: command {} timed out", self.peer, self.id);
        self.timed_out = true;
        self.stop(timers, now, grace);
        true
    }

    /// Reaps its process if it has exited: true when it was just reaped.
    pub(crate) fn try_reap(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false; // still being started
        };
        self.status = match child.try_wait() {
            Ok(Some(st)) => Some(exit_status(st)),
            Ok(None) => return false,
            Err(e) => {
                log::error!("waiting for pid {}: {e}", self.pgid);
                Some(ExitStatus::Code(-1))
            }
        };
        true
    }

    /// Waits for its killed process (shutdown, after SIGKILL).
    pub(crate) fn wait_killed(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _: io::Result<_> = child.wait(); // SIGKILLed: returns at once
        }
    }

    /// Takes its pidfd away (to be deregistered).
    pub(crate) fn take_pidfd(&mut self) -> Option<(Pidfd, Token)> {
        self.pidfd.take()
    }

    /// Its process has exited with its pipes still open: the grace period
    /// begins now, unless it already has. True when it began.
    pub(crate) fn begin_grace(&mut self, now: Instant) -> bool {
        if self.grace.is_some() {
            return false;
        }
        self.grace = Some(PipeGrace::begin(now, self.bytes_out));
        true
    }

    /// The grace period's verdict at `now` (see [`PipeGrace::check`]);
    /// `waiting` includes pipes paused for a slow client.
    pub(crate) fn check_grace(
        &mut self,
        now: Instant,
        paused: bool,
        grace: Duration,
    ) -> Option<GraceVerdict> {
        let waiting = super::Waiting {
            paused,
            in_pipes: self.pipes_hold_output(),
        };
        let bytes_out = self.bytes_out;
        Some(self.grace.as_mut()?.check(now, bytes_out, waiting, grace))
    }

    /// When its time limit runs out, if it has one (its leftovers end then).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The `Exited` its client gets.
    pub(crate) fn exited(&self, now: Instant) -> Exited {
        Exited {
            id: self.id,
            status: self.status.unwrap_or(ExitStatus::Code(-1)),
            timed_out: self.timed_out,
            truncated: self.truncated,
            duration_ms: self.ran_for(now).as_millis().try_into().unwrap_or(u64::MAX),
            bytes_out: self.bytes_out,
        }
    }

    /// A tutorial protocol's whole reply: stdout, stderr.
    pub(crate) fn tutorial_reply(&self) -> (&[u8], &[u8]) {
        (&self.tutorial_out, &self.tutorial_err)
    }

    fn ran_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    /// The audit line: who ran what, how it ended, how long, how much output.
    pub(crate) fn audit(&self, now: Instant) {
        let flags = match (self.timed_out, self.truncated, self.conn.is_none()) {
            (true, _, _) => ", timed out",
            (_, true, _) => ", truncated",
            (_, _, true) => ", client gone",
            _ => "",
        };
        let who = self
            .who
            .as_deref()
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        let command = rexec_proto::text::clean(&self.command, AUDIT_COMMAND_MAX);
        let status = match self.status.unwrap_or(ExitStatus::Code(-1)) {
            ExitStatus::Code(c) => format!("exit {c}"),
            ExitStatus::Signal(s) => format!("signal {s}"),
        };
        let ms = u64::try_from(self.ran_for(now).as_millis()).unwrap_or(u64::MAX);
        // The same facts as fields, for --log-format json (logging.rs).
        log::info!(
            event = "command",
            peer:% = self.peer,
            account = self.who.as_deref().unwrap_or_default(),
            command = command.as_str(),
            status = status.as_str(),
            ms = ms,
            bytes_out = self.bytes_out,
            ended = flags.trim_start_matches(", ");
            "{}{who} ran \"{command}\": {status} in {ms} ms, {} bytes out{flags}",
            self.peer,
            self.bytes_out,
        );
    }
}
