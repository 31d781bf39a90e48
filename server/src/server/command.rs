//! Commands: an `Exec` becomes a child process with its pipes watched;
//! stdin from the client is queued to the child; cancel and time limits
//! stop its process group.

use std::time::Duration;

use mio::event::Source;
use mio::{Interest, Token};
use rexec_proto::{ErrorKind, ErrorMsg, Exec, OutputStream, ServerMsg};

use super::Server;
use crate::connection::Hold;
use crate::process::{self, CommandError, Pipes, Proc, StdinStep};
use crate::registry::{ConnId, ProcId, Registry, Slot};
use crate::spawner::{Done, Launch};
use crate::timer::Timer;
use rexec_proto::text::echo;

/// Up to this many connections (and so a small descriptor table to copy),
/// a command that is the only one may be started on the loop thread (see
/// Spawner::submit).
const INLINE_START_CONNS: usize = 64;

/// How often to look for exited children when there is no pidfd.
pub(super) const REAP_SWEEP: Duration = Duration::from_millis(100);

/// Watches a pipe (or the pidfd) of a new command; `None` (and the
/// descriptor closed) if it cannot.
fn watch<S: Source>(
    registry: &mut Registry,
    mut src: S,
    interest: Interest,
    slot: Slot,
) -> Option<(S, Token)> {
    match registry.add(&mut src, interest, slot) {
        Ok(t) => Some((src, t)),
        Err(e) => {
            log::error!("cannot watch a descriptor of a new command: {e}");
            None
        }
    }
}

impl Server {
    /// A client asked to run a command.
    pub(super) fn exec(&mut self, conn_id: ConnId, exec: Exec) {
        let id = exec.id;
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        if self.stop.begun {
            return self.command_error(
                conn_id,
                id,
                ErrorKind::Shutdown,
                "no new commands are started".into(),
            );
        }
        if conn.command(id).is_some() {
            return self.command_error(
                conn_id,
                id,
                ErrorKind::BadRequest,
                format!("command id {id} is already running on this connection"),
            );
        }
        if let Err(e) = self.run_exec(conn_id, exec) {
            self.command_error(conn_id, id, e.kind, e.message);
        }
    }

    /// Sends an `Error` about one command; the connection stays usable.
    pub(super) fn command_error(
        &mut self,
        conn_id: ConnId,
        id: u32,
        kind: ErrorKind,
        message: String,
    ) {
        if self.log_error_quota(conn_id)
            && let Some(conn) = self.conns.get(&conn_id)
        {
            log::info!("{}: command {id}: {kind}: {message}", conn.peer());
        }
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        conn.queue(&ServerMsg::Error(ErrorMsg {
            id: Some(id),
            kind,
            message,
        }));
        conn.flush();
    }

    /// Runs an `Exec` for connection `conn_id`: builds its command under the
    /// policy (exec_policy.rs) and launches it.
    pub(super) fn run_exec(&mut self, conn_id: ConnId, exec: Exec) -> Result<(), CommandError> {
        self.room_for_a_command()?;
        if self.cfg.exec.contain.is_some() {
            // Everything the running commands started counts too: it all
            // stays below their supervisors. (One scan of /proc per Exec,
            // only with --contain.)
            let roots: Vec<i32> = self
                .procs
                .values()
                .map(Proc::pgid)
                .filter(|&g| g > 1)
                .collect();
            let running = self.procs.len() + crate::helpers::family::descendants(&roots).len();
            if running >= self.cfg.max_procs {
                return Err(CommandError::new(
                    ErrorKind::Limit,
                    format!(
                        "{running} processes running, counting what commands started \
                         (--max-procs {}); try again later",
                        self.cfg.max_procs
                    ),
                ));
            }
        }
        let (peer, grant) = self
            .conns
            .get(&conn_id)
            .map(|c| (c.peer(), c.grant()))
            .ok_or_else(|| CommandError::new(ErrorKind::Protocol, "connection gone"))?;
        let cmd =
            crate::exec_policy::command_for(&exec, &self.cfg.exec, &grant).inspect_err(|e| {
                if e.kind == ErrorKind::Forbidden {
                    log::warn!("{peer}: refused \"{}\": {}", echo(&exec.command), e.message);
                }
            })?;
        self.launch(conn_id, exec, cmd, true)
    }

    /// `--max-procs`: whether another command (or helper) may start.
    pub(super) fn room_for_a_command(&self) -> Result<(), CommandError> {
        if self.procs.len() >= self.cfg.max_procs {
            return Err(CommandError::new(
                ErrorKind::Limit,
                format!(
                    "{} commands running at once; try again later",
                    self.cfg.max_procs
                ),
            ));
        }
        Ok(())
    }

    /// Prepares `cmd` (built for `exec`): its pipes (or pty) are made and
    /// watched and its `Proc` exists from now on, so stdin, cancel and a
    /// closing connection find it; a spawner thread starts the process and
    /// [`Server::on_spawned`] takes it from there.
    ///
    /// `timed`: the time limits (the server's, the client's) apply; a job
    /// verb's helper has none (an attach lasts as long as the job).
    pub(super) fn launch(
        &mut self,
        conn_id: ConnId,
        exec: Exec,
        mut cmd: std::process::Command,
        timed: bool,
    ) -> Result<(), CommandError> {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return Err(CommandError::new(ErrorKind::Protocol, "connection gone"));
        };
        let grant = conn.grant();
        let prepared = match &exec.pty {
            Some(req) => {
                let owner = self.cfg.exec.account(&grant).map(|u| u.uid);
                crate::pty::prepare(&mut cmd, req, owner)
                    .map_err(|e| CommandError::os("opening a pty", e))?
            }
            None => process::prepare(&mut cmd, exec.stdin)
                .map_err(|e| CommandError::os("setting up pipes", e))?,
        };
        // As sshd: a home that is missing is said, and the command starts
        // in / (exec_policy.rs).
        let notice = match (exec.cwd.is_none(), self.cfg.exec.home(&grant)) {
            (true, Some(h)) if !h.is_dir() => Some(format!(
                "rexecd: could not chdir to home directory {}: No such file or directory\n",
                rexec_proto::text::echo(&h.to_string_lossy())
            )),
            _ => None,
        };
        let proc = ProcId(self.ids.proc);
        self.ids.proc += 1;
        let r = &mut self.registry;
        let stdout = watch(
            r,
            prepared.stdout,
            Interest::READABLE,
            Slot::Pipe(proc, OutputStream::Stdout),
        );
        let stderr = prepared.stderr.and_then(|e| {
            watch(
                r,
                e,
                Interest::READABLE,
                Slot::Pipe(proc, OutputStream::Stderr),
            )
        });
        let stdin = prepared
            .stdin
            .and_then(|s| watch(r, s, Interest::WRITABLE, Slot::Stdin(proc)));
        let now = self.now;
        let limit = match (self.cfg.timeout, exec.timeout_ms.map(Duration::from_millis)) {
            _ if !timed => None,
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(limit) = limit {
            self.timers.at(now + limit, Timer::ProcTimeout(proc));
        }
        conn.add_command(exec.id, proc);
        let pipes = Pipes {
            stdout,
            stderr,
            stdin,
            pty: prepared.pty,
        };
        let mut p = Proc::new(conn_id, exec.id, exec.command, conn.peer(), pipes, now);
        p.set_up(limit.map(|l| now + l), notice, conn.who());
        self.procs.insert(proc, p);
        let launch = Launch {
            proc,
            cmd,
            fds: prepared.child,
        };
        // With a small descriptor table to copy, the loop starts it itself
        // when it is alone (no other command running or starting: nobody
        // waits behind it, and a handover would only add two wake-ups), or
        // when the loop has input deferred to its next turn (a client
        // floods it: the cores are busy, and a spawner thread would wait
        // for one).
        let here = (self.procs.len() == 1 || !self.backlog.is_empty())
            && self.conns.len() <= INLINE_START_CONNS;
        if let Some(done) = self.spawner.submit(launch, here) {
            self.on_spawned(done);
        }
        Ok(())
    }

    /// Takes every start the spawner threads finished.
    pub(super) fn take_spawned(&mut self) {
        while let Some(done) = self.spawner.take_done() {
            self.on_spawned(done);
        }
    }

    /// A spawner thread started a command (or could not): `Started` goes
    /// out, then what it has written so far; a stop asked for meanwhile
    /// (cancel, time limit, the client gone) reaches it now.
    pub(super) fn on_spawned(&mut self, done: Done) {
        let Done { proc, result } = done;
        let Some(p) = self.procs.get_mut(&proc) else {
            // Cannot happen (a Proc is removed only once reaped); do not
            // leave the child running or unreaped.
            if let Ok(mut child) = result {
                process::kill_group(child.id() as i32, crate::process::Signal::KILL);
                let _ = child.wait();
            }
            return;
        };
        let child = match result {
            Ok(child) => child,
            Err(e) => return self.not_spawned(proc, e),
        };
        let pid = child.id();
        let pidfd = process::pidfd_open(pid).and_then(|fd| {
            watch(
                &mut self.registry,
                fd,
                Interest::READABLE,
                Slot::Pidfd(proc),
            )
        });
        if pidfd.is_none() {
            self.timers.after(self.now, REAP_SWEEP, Timer::ReapSweep);
        }
        let notice = p.spawned(child, pidfd);
        if p.is_stopping() {
            // Asked to stop while it was being started.
            p.stop(&mut self.timers, self.now, self.cfg.kill_grace);
        }
        let id = p.id();
        log::debug!("{}: command {id} started as pid {pid}", p.peer());
        if let Some(conn) = p.conn().and_then(|c| self.conns.get_mut(&c))
            && conn.is_native()
        {
            conn.queue(&ServerMsg::Started { id, pid });
            if let Some(text) = notice {
                conn.queue(&ServerMsg::Stderr {
                    id,
                    data: text.into_bytes(),
                });
            }
            conn.flush();
        }
        self.pump(proc, OutputStream::Stdout);
        self.pump(proc, OutputStream::Stderr);
    }

    /// A prepared command could not be started: it never existed, as far
    /// as the client is told (an `Error` instead of `Started`).
    fn not_spawned(&mut self, proc: ProcId, e: CommandError) {
        self.close_output(proc);
        self.close_stdin(proc);
        let Some(p) = self.procs.remove(&proc) else {
            return;
        };
        let Some(conn_id) = p.conn() else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        conn.remove_command(p.id(), proc);
        if conn.is_native() {
            self.command_error(conn_id, p.id(), e.kind, e.message);
        } else {
            self.tutorial_error(conn_id, &e);
            // The tutorial server reads its next command only now (input.rs,
            // from the backlog, this turn).
            self.backlog.push(conn_id);
        }
        self.check_close(conn_id);
    }

    /// Stdin for command `id` (or its end): queued, and written as the child
    /// takes it.
    pub(super) fn stdin(&mut self, conn_id: ConnId, id: u32, data: &[u8], eof: bool) {
        self.queue_stdin(conn_id, id, data, eof, false);
    }

    /// Queues bytes for a command's stdin: the client's (`as_is` false:
    /// for a transfer helper they become data frames), or rexecd's own
    /// frames for a helper (`as_is`).
    pub(super) fn queue_stdin(
        &mut self,
        conn_id: ConnId,
        id: u32,
        data: &[u8],
        eof: bool,
        as_is: bool,
    ) {
        let Some(proc) = self.conns.get(&conn_id).and_then(|c| c.command(id)) else {
            return; // finished already, or never started: drop the bytes
        };
        let Some(p) = self.procs.get_mut(&proc) else {
            return;
        };
        let Some(added) = p.queue_stdin(data, eof, as_is) else {
            return; // not asked for, or the child closed it: drop the bytes
        };
        self.budget.held += added;
        self.write_stdin(proc);
        if let (Some(p), Some(conn)) = (self.procs.get(&proc), self.conns.get_mut(&conn_id))
            && p.stdin_queued() > self.cfg.queue_limit
        {
            // Stop reading the socket: TCP flow control pushes back on
            // the client until the child reads.
            conn.hold(Hold::StdinFull);
        }
    }

    /// Writes queued stdin to the child, closing the pipe after EOF.
    pub(super) fn write_stdin(&mut self, proc: ProcId) {
        let Some(p) = self.procs.get_mut(&proc) else {
            return;
        };
        if p.write_stdin() == StdinStep::Close {
            self.close_stdin(proc);
        }
        // Resume reading the client once every stdin queue has room again.
        let Some(conn_id) = self.procs.get(&proc).and_then(Proc::conn) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        if conn.is_held(Hold::StdinFull)
            && conn.procs().all(|k| {
                self.procs
                    .get(&k)
                    .is_none_or(|p| p.stdin_queued() <= self.cfg.queue_limit)
            })
        {
            conn.release(Hold::StdinFull, self.now);
            // Its input is read again this turn (input.rs, from the
            // backlog).
            self.backlog.push(conn_id);
            self.check_close(conn_id);
        }
    }

    /// The client cancelled command `id`: stop its process group.
    pub(super) fn cancel(&mut self, conn_id: ConnId, id: u32) {
        let Some(proc) = self.conns.get(&conn_id).and_then(|c| c.command(id)) else {
            return;
        };
        if let Some(p) = self.procs.get_mut(&proc) {
            log::debug!("{}: cancel {id}", p.peer());
            p.stop(&mut self.timers, self.now, self.cfg.kill_grace);
        }
    }

    /// The client's terminal changed size: so does the command's pty.
    pub(super) fn resize(&mut self, conn_id: ConnId, id: u32, rows: u16, cols: u16) {
        let Some(proc) = self.conns.get(&conn_id).and_then(|c| c.command(id)) else {
            return;
        };
        if let Some(master) = self.procs.get(&proc).and_then(Proc::pty)
            && let Err(e) = crate::pty::resize(master, rows, cols)
        {
            log::debug!("resizing the pty of command {id}: {e}");
        }
    }

    /// A command's time limit passed.
    pub(super) fn time_out(&mut self, proc: ProcId) {
        if let Some(p) = self.procs.get_mut(&proc) {
            p.time_out(&mut self.timers, self.now, self.cfg.kill_grace);
        }
    }
}
