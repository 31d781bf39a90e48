//! Shutdown (SIGINT, SIGTERM or `ServerHandle::shutdown`): stop accepting,
//! stop every command, tell the clients, flush, and return from `run`.

use std::time::Duration;

use rexec_proto::ErrorKind;

use super::Server;
use crate::process;
use crate::registry::ConnId;
use crate::timer::Timer;

/// How long shutdown waits for queued output to be flushed.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(3);

impl Server {
    pub(super) fn begin_shutdown(&mut self) {
        if self.stop.begun {
            return;
        }
        self.stop.begun = true;
        if let Some(mut l) = self.door.listener.take() {
            let _ = self.registry.mio().deregister(&mut l);
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
