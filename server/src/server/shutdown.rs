//! Shutdown (SIGINT, SIGTERM or `ServerHandle::shutdown`): stop accepting,
//! give running commands `--stop-grace` to finish (no new ones start),
//! then stop them, tell the clients, flush, and return from `run`.
//!
//! Detached jobs are not rexecd's children to stop: each runs under its
//! own helper, in its own session, and outlives a restart (with the unit's
//! `KillMode=process`, systemd leaves them too).

use std::time::Duration;

use signal_hook::consts::{SIGCHLD, SIGHUP};

use rexec_proto::ErrorKind;

use super::Server;
use crate::process;
use crate::registry::ConnId;
use crate::timer::Timer;

/// How long shutdown waits for queued output to be flushed.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(3);

impl Server {
    /// SIGCHLD reaps, SIGHUP reloads, SIGINT and SIGTERM shut down.
    pub(super) fn on_signals(&mut self) {
        let Some(signals) = self.stop.signals.as_mut() else {
            return;
        };
        let pending: Vec<i32> = signals.pending().collect();
        for sig in pending {
            match sig {
                SIGCHLD => self.sweep_children(),
                SIGHUP => self.begin_reload(),
                _ => {
                    log::info!("signal {sig}: shutting down");
                    self.begin_shutdown();
                }
            }
        }
    }

    /// Stop accepting, and start the grace. Asked again (a second
    /// SIGTERM, or Ctrl-C twice), the grace ends at once.
    pub(super) fn begin_shutdown(&mut self) {
        if self.stop.begun {
            return self.stop_commands();
        }
        self.stop.begun = true;
        for mut l in std::mem::take(&mut self.door.listeners) {
            let _ = self.registry.mio().deregister(&mut l);
        }
        let grace = self.cfg.stop_grace;
        crate::notify::stopping(&format!("stopping: {} commands running", self.procs.len()));
        if grace.is_zero() || self.procs.is_empty() {
            return self.stop_commands();
        }
        log::info!(
            "shutting down: {} commands have {}s to finish (--stop-grace); no new ones start",
            self.procs.len(),
            grace.as_secs_f64()
        );
        self.timers.after(self.now, grace, Timer::StopGrace);
    }

    /// The grace is over (or there is none): stop every command, and give
    /// them and the flush a deadline.
    pub(super) fn stop_commands(&mut self) {
        if std::mem::replace(&mut self.stop.stopping, true) {
            return;
        }
        if !self.procs.is_empty() {
            log::info!("stopping {} commands", self.procs.len());
        }
        for p in self.procs.values_mut() {
            p.stop(&mut self.timers, self.now, self.cfg.kill_grace);
        }
        self.timers.after(
            self.now,
            self.cfg.kill_grace + SHUTDOWN_FLUSH,
            Timer::ShutdownDeadline,
        );
    }

    /// During shutdown: once every command has finished, tell the clients and
    /// close their connections when their output is flushed.
    pub(super) fn shutdown_done(&mut self) -> bool {
        if self.stop.deadline.is_some() {
            if !self.procs.is_empty() || !self.conns.is_empty() {
                log::warn!(
                    "shutdown deadline passed with {} commands and {} connections left",
                    self.procs.len(),
                    self.conns.len()
                );
                // Commands still being started are waited for (a start
                // takes milliseconds), so none is left behind.
                while self.procs.values().any(|p| !p.is_spawned()) {
                    match self.spawner.wait_done(Duration::from_secs(1)) {
                        Some(done) => self.on_spawned(done),
                        None => break,
                    }
                }
                for p in self.procs.values() {
                    process::kill_group(p.pgid(), crate::process::Signal::KILL);
                }
                for p in self.procs.values_mut() {
                    p.wait_killed();
                }
            }
            return true;
        }
        if !self.procs.is_empty() {
            return false;
        }
        // Every command ended within the grace: the flush gets its
        // deadline now.
        self.stop_commands();
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.fail(ErrorKind::Shutdown, "closing the connection".into());
                conn.flush();
            }
            self.check_close(id);
        }
        self.conns.is_empty()
    }
}
