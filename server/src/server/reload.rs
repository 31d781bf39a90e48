//! SIGHUP: read the settings again (`systemctl reload`). The reading (the
//! configuration file, token, keys, certificate, accounts) is done on a
//! thread of its own, since files and user lookups may be slow; the loop
//! is woken with the result and swaps it in whole, or keeps the old
//! settings and logs why.
//!
//! What a reload changes is what is decided from then on: new connections
//! are admitted, authenticated and encrypted under the new settings, and
//! limits apply to what starts after it. An established connection keeps
//! its TLS session and the identity it logged in with, and running
//! commands go on. The listening sockets stay as they are, and what was
//! built from `--protocol`, `--login` and `--permit-root-login` at start
//! (the login thread) cannot change: those take a restart.

use std::sync::Arc;
use std::sync::mpsc;

use super::Server;
use crate::config::Config;

/// Reads the settings again: in rexecd, the same command line and
/// configuration file as at start (main.rs).
pub type Loader = Arc<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// The reload in progress, and one more asked for meanwhile.
pub(super) struct Reloads {
    load: Option<Loader>,
    tx: mpsc::Sender<Result<Config, String>>,
    rx: mpsc::Receiver<Result<Config, String>>,
    running: bool,
    again: bool,
}

impl Reloads {
    pub(super) fn new() -> Reloads {
        let (tx, rx) = mpsc::channel();
        Reloads {
            load: None,
            tx,
            rx,
            running: false,
            again: false,
        }
    }
}

impl Server {
    /// How SIGHUP reads the settings again. Without it, SIGHUP is logged
    /// and ignored.
    pub fn set_reload(&mut self, load: Loader) {
        self.reloads.load = Some(load);
    }

    /// SIGHUP: start reading the settings on a thread, or, if a reading is
    /// under way, read again once it is done (so the file last written is
    /// the one used).
    pub(super) fn begin_reload(&mut self) {
        let Some(load) = self.reloads.load.clone() else {
            log::warn!("SIGHUP: there are no settings to read again (no loader); ignored");
            return;
        };
        if self.reloads.running {
            self.reloads.again = true;
            return;
        }
        log::info!("SIGHUP: reading the settings again");
        crate::notify::reloading();
        self.reloads.running = true;
        let tx = self.reloads.tx.clone();
        let waker = self.stop.handle.waker.clone();
        let spawned = std::thread::Builder::new()
            .name("reload".into())
            .spawn(move || {
                let _ = tx.send(load());
                if let Err(e) = waker.wake() {
                    log::error!("cannot wake the server for a reload: {e}");
                }
            });
        if let Err(e) = spawned {
            self.reloads.running = false;
            log::error!("reload failed, the old settings stay: no thread to read them: {e}");
            crate::notify::ready("reload failed: no thread to read the settings");
        }
    }

    /// The loop was woken: a reading that finished is swapped in.
    pub(super) fn take_reloaded(&mut self) {
        while let Ok(read) = self.reloads.rx.try_recv() {
            self.reloads.running = false;
            match read.and_then(|new| self.swap_settings(new)) {
                Ok(notes) => {
                    notes.iter().for_each(|n| log::warn!("reload: {n}"));
                    log::info!(
                        "reloaded the settings: new connections get them; {} connections and \
                         {} commands go on",
                        self.conns.len(),
                        self.procs.len()
                    );
                    crate::notify::ready("serving; the settings were read again");
                }
                Err(why) => {
                    log::error!("reload failed, the old settings stay: {why}");
                    crate::notify::ready(&format!("serving; a reload failed: {why}"));
                }
            }
            if std::mem::take(&mut self.reloads.again) {
                self.begin_reload();
            }
        }
    }

    /// Puts `new` in place of the settings, keeping what cannot change
    /// while serving; the notes say what was kept.
    fn swap_settings(&mut self, mut new: Config) -> Result<Vec<String>, String> {
        let old = &self.cfg;
        if new.protocol != old.protocol {
            return Err("--protocol changes only with a restart".into());
        }
        if (new.login, new.permit_root_login) != (old.login, old.permit_root_login) {
            return Err("--login and --permit-root-login change only with a restart".into());
        }
        let mut notes = Vec::new();
        if !new.addresses().eq(old.addresses()) {
            let kept: Vec<String> = self
                .door
                .local_addrs
                .iter()
                .map(|a| a.to_string())
                .collect();
            notes.push(format!(
                "the listening sockets stay as they are ({}): a new --listen takes a restart",
                kept.join(", ")
            ));
        }
        new.listen = old.listen;
        new.also_listen = old.also_listen.clone();
        new.handle_signals = old.handle_signals;
        self.cfg = new;
        Ok(notes)
    }
}

#[cfg(test)]
mod tests;
