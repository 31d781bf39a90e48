//! Commands: an `Exec` becomes a child process with its pipes watched;
//! stdin from the client is queued to the child; cancel and time limits
//! stop its process group.

use std::time::{Duration, Instant};

use mio::event::Source;
use mio::{Interest, Token};
use rexec_proto::{ErrorKind, ErrorMsg, Exec, OutputStream, ServerMsg};

use super::Server;
use crate::out_queue::OutQueue;
use crate::process::{self, CommandError, Proc};
use crate::registry::{ConnId, ProcId, Registry, Slot};
use crate::text::echo;
use crate::timer::Timer;

/// How often to look for exited children when there is no pidfd.
pub(super) const REAP_SWEEP: Duration = Duration::from_millis(100);

/// Watches a pipe of a new child; `None` (and the pipe closed) if it cannot.
fn watch<S: Source>(
    registry: &mut Registry,
    mut src: S,
    interest: Interest,
    slot: Slot,
    pid: u32,
) -> Option<(S, Token)> {
    match registry.add(&mut src, interest, slot) {
        Ok(t) => Some((src, t)),
        Err(e) => {
            log::error!("cannot watch a pipe of pid {pid}: {e}");
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
        if self.shutting_down {
            return self.command_error(
                conn_id,
                id,
                ErrorKind::Shutdown,
                "no new commands are started".into(),
            );
        }
        if conn.commands.contains_key(&id) {
            return self.command_error(
                conn_id,
                id,
                ErrorKind::BadRequest,
                format!("command id {id} is already running on this connection"),
            );
        }
        if let Err(e) = self.start(conn_id, exec) {
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
        if self.log_error_quota(conn_id) {
            if let Some(conn) = self.conns.get(&conn_id) {
                log::info!("{}: command {id}: {kind}: {message}", conn.peer);
            }
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

    /// Spawns a command for connection `conn_id` and watches its pipes.
    pub(super) fn start(&mut self, conn_id: ConnId, exec: Exec) -> Result<(), CommandError> {
        if self.procs.len() >= self.cfg.max_procs {
            return Err(CommandError::new(
                ErrorKind::Limit,
                format!(
                    "{} commands running at once; try again later",
                    self.cfg.max_procs
                ),
            ));
        }
        if self.cfg.exec.contain.is_some() {
            // Everything the running commands started counts too: it all
            // stays below their supervisors. (One scan of /proc per Exec,
            // only with --contain.)
            let roots: Vec<i32> = self.procs.values().map(|p| p.pgid).collect();
            let running = roots.len() + crate::contain::descendants(&roots).len();
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
        let peer = self
            .conns
            .get(&conn_id)
            .map(|c| c.peer)
            .ok_or_else(|| CommandError::new(ErrorKind::Protocol, "connection gone"))?;
        let cmd = crate::exec_policy::command_for(&exec, &self.cfg.exec).inspect_err(|e| {
            if e.kind == ErrorKind::Forbidden {
                log::warn!("{peer}: refused \"{}\": {}", echo(&exec.command), e.message);
            }
        })?;
        self.launch(conn_id, exec, cmd)
    }

    /// Spawns `cmd` (built for `exec`) and watches its pipes.
    fn launch(
        &mut self,
        conn_id: ConnId,
        exec: Exec,
        cmd: std::process::Command,
    ) -> Result<(), CommandError> {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return Err(CommandError::new(ErrorKind::Protocol, "connection gone"));
        };
        let spawned = match &exec.pty {
            Some(req) => {
                let owner = self.cfg.exec.run_as.as_ref().map(|u| u.uid);
                crate::pty::spawn(cmd, req, owner)?
            }
            None => process::spawn(cmd, exec.stdin)?,
        };

        let proc = ProcId(self.next_proc);
        self.next_proc += 1;
        let pid = spawned.child.id();
        let r = &mut self.registry;
        let stdout = watch(
            r,
            spawned.stdout,
            Interest::READABLE,
            Slot::Pipe(proc, OutputStream::Stdout),
            pid,
        );
        let stderr = spawned.stderr.and_then(|e| {
            watch(
                r,
                e,
                Interest::READABLE,
                Slot::Pipe(proc, OutputStream::Stderr),
                pid,
            )
        });
        let stdin = spawned
            .stdin
            .and_then(|s| watch(r, s, Interest::WRITABLE, Slot::Stdin(proc), pid));
        let pidfd = spawned
            .pidfd
            .and_then(|fd| watch(r, fd, Interest::READABLE, Slot::Pidfd(proc), pid));
        if pidfd.is_none() {
            self.timers.after(REAP_SWEEP, Timer::ReapSweep);
        }
        let now = Instant::now();
        let limit = match (self.cfg.timeout, exec.timeout_ms.map(Duration::from_millis)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(limit) = limit {
            self.timers.at(now + limit, Timer::ProcTimeout(proc));
        }
        conn.commands.insert(exec.id, proc);
        if conn.is_native() {
            conn.queue(&ServerMsg::Started { id: exec.id, pid });
            conn.flush();
        }
        self.procs.insert(
            proc,
            Proc {
                conn: Some(conn_id),
                id: exec.id,
                command: exec.command,
                peer: conn.peer,
                child: spawned.child,
                pgid: pid as i32,
                stdout,
                stderr,
                stdin,
                stdin_queue: OutQueue::default(),
                stdin_eof: false,
                pidfd,
                pty: spawned.pty,
                status: None,
                started: now,
                deadline: limit.map(|l| now + l),
                bytes_out: 0,
                timed_out: false,
                truncated: false,
                stopping: false,
                grace_armed: false,
                grown: [false; 2],
                tutorial_out: Vec::new(),
                tutorial_err: Vec::new(),
            },
        );
        Ok(())
    }

    /// Stdin for command `id` (or its end): queued, and written as the child
    /// takes it.
    pub(super) fn stdin(&mut self, conn_id: ConnId, id: u32, data: &[u8], eof: bool) {
        let Some(&proc) = self.conns.get(&conn_id).and_then(|c| c.commands.get(&id)) else {
            return; // finished already, or never started: drop the bytes
        };
        let Some(p) = self.procs.get_mut(&proc) else {
            return;
        };
        if p.stdin.is_none() {
            return; // not asked for, or the child closed it: drop the bytes
        }
        p.stdin_queue.tail().extend_from_slice(data);
        self.held += data.len();
        p.stdin_eof |= eof;
        self.write_stdin(proc);
        if let (Some(p), Some(conn)) = (self.procs.get(&proc), self.conns.get_mut(&conn_id)) {
            if p.stdin_queue.len() > self.cfg.queue_limit {
                // Stop reading the socket: TCP flow control pushes back on
                // the client until the child reads.
                conn.input_paused = true;
            }
        }
    }

    /// Writes queued stdin to the child, closing the pipe after EOF.
    pub(super) fn write_stdin(&mut self, proc: ProcId) {
        let Some(p) = self.procs.get_mut(&proc) else {
            return;
        };
        let Some((tx, _)) = p.stdin.as_mut() else {
            return;
        };
        match p.stdin_queue.write_to(tx) {
            Ok(()) => {
                if p.stdin_queue.is_empty() && p.stdin_eof {
                    self.close_stdin(proc);
                }
            }
            Err(e) => {
                // EPIPE: the child closed its stdin; the rest is discarded.
                log::debug!("stdin of pid {}: {e}", p.pgid);
                self.close_stdin(proc);
            }
        }
        // Resume reading the client once every stdin queue has room again.
        let Some(conn_id) = self.procs.get(&proc).and_then(|p| p.conn) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        if conn.input_paused
            && conn.commands.values().all(|k| {
                self.procs
                    .get(k)
                    .is_none_or(|p| p.stdin_queue.len() <= self.cfg.queue_limit)
            })
        {
            conn.input_paused = false;
            self.service_input(conn_id);
            self.check_close(conn_id);
        }
    }

    pub(super) fn close_stdin(&mut self, proc: ProcId) {
        let Some(p) = self.procs.get_mut(&proc) else {
            return;
        };
        if let Some((mut tx, t)) = p.stdin.take() {
            self.registry.remove(&mut tx, t);
        }
        p.stdin_queue = OutQueue::default();
    }

    /// The client cancelled command `id`: stop its process group.
    pub(super) fn cancel(&mut self, conn_id: ConnId, id: u32) {
        let Some(&proc) = self.conns.get(&conn_id).and_then(|c| c.commands.get(&id)) else {
            return;
        };
        if let Some(p) = self.procs.get_mut(&proc) {
            log::debug!("{}: cancel {id}", p.peer);
            p.stop(&mut self.timers, self.cfg.kill_grace);
        }
    }

    /// A client sends a file: a `rexecd __put` helper receives it, fed
    /// through stdin like any command.
    pub(super) fn put(&mut self, conn_id: ConnId, put: rexec_proto::Put) {
        let args = [
            put.dest.clone(),
            put.name.clone(),
            put.size.to_string(),
            if put.mkdirs { "1" } else { "0" }.to_string(),
            put.mode.map_or("-".into(), |m| m.to_string()),
            put.mtime.map_or("-".into(), |t| t.to_string()),
        ];
        let exec = Exec {
            id: put.id,
            command: format!("put {} ({} bytes)", put.dest, put.size),
            stdin: true,
            ..Exec::default()
        };
        self.transfer(conn_id, exec, crate::files::PUT, &args);
    }

    /// The end of a put: its checksum goes after the data, then EOF.
    pub(super) fn put_end(&mut self, conn_id: ConnId, id: u32, sha256: &[u8]) {
        self.stdin(conn_id, id, sha256, true);
    }

    /// A client fetches a file: a `rexecd __get` helper sends it as output.
    pub(super) fn get(&mut self, conn_id: ConnId, id: u32, path: String) {
        let exec = Exec {
            id,
            command: format!("get {path}"),
            ..Exec::default()
        };
        self.transfer(conn_id, exec, crate::files::GET, &[path]);
    }

    fn transfer(&mut self, conn_id: ConnId, exec: Exec, mode: &str, args: &[String]) {
        let id = exec.id;
        if self
            .conns
            .get(&conn_id)
            .is_some_and(|c| c.commands.contains_key(&id))
        {
            return self.command_error(
                conn_id,
                id,
                ErrorKind::BadRequest,
                format!("command id {id} is already running on this connection"),
            );
        }
        let started = if self.procs.len() >= self.cfg.max_procs {
            Err(CommandError::new(
                ErrorKind::Limit,
                format!(
                    "{} commands running at once; try again later",
                    self.cfg.max_procs
                ),
            ))
        } else {
            crate::exec_policy::transfer_command(&self.cfg.exec, mode, args)
                .and_then(|cmd| self.launch(conn_id, exec, cmd))
        };
        if let Err(e) = started {
            self.command_error(conn_id, id, e.kind, e.message);
        }
    }

    /// The client's terminal changed size: so does the command's pty.
    pub(super) fn resize(&mut self, conn_id: ConnId, id: u32, rows: u16, cols: u16) {
        let Some(&proc) = self.conns.get(&conn_id).and_then(|c| c.commands.get(&id)) else {
            return;
        };
        if let Some(master) = self.procs.get(&proc).and_then(|p| p.pty.as_ref()) {
            if let Err(e) = crate::pty::resize(master, rows, cols) {
                log::debug!("resizing the pty of command {id}: {e}");
            }
        }
    }

    /// A command's time limit passed.
    pub(super) fn time_out(&mut self, proc: ProcId) {
        if let Some(p) = self.procs.get_mut(&proc) {
            if p.status.is_none() && !p.stopping {
                log::info!("{}: command {} timed out", p.peer, p.id);
                p.timed_out = true;
                p.stop(&mut self.timers, self.cfg.kill_grace);
            }
        }
    }
}
