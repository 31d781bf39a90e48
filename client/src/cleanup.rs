//! Temporary files of downloads in progress, removed on every way out:
//! an error or a dropped connection (the copy's own error path), and
//! Ctrl-C, SIGTERM or SIGHUP (a signal thread that removes what is
//! registered here, then exits as the signal would have: 128 + N).

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Temporary files being written: (key, their directory, their name).
static PENDING: Mutex<Vec<(u64, OwnedFd, OsString)>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(1);

/// A registered temporary file; dropping it forgets it (the file itself
/// is renamed into place or removed by the copy).
#[derive(Debug)]
pub struct Pending(u64);

impl Drop for Pending {
    fn drop(&mut self) {
        lock().retain(|(k, _, _)| *k != self.0);
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<(u64, OwnedFd, OsString)>> {
    PENDING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Remembers the temporary file `name` in `dir` until the guard drops.
pub fn register(dir: &OwnedFd, name: &OsStr) -> Pending {
    let key = NEXT.fetch_add(1, Ordering::Relaxed);
    if let Ok(fd) = dir.as_fd().try_clone_to_owned() {
        lock().push((key, fd, name.to_os_string()));
    }
    Pending(key)
}

/// Removes every registered temporary file.
fn remove_all() {
    for (_, dir, name) in lock().drain(..) {
        let _ = rustix::fs::unlinkat(&dir, &name, rustix::fs::AtFlags::empty());
    }
}

/// On SIGINT, SIGTERM or SIGHUP: remove the temporary files, then exit
/// 128 + the signal's number.
pub fn on_signals() -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("cp-cleanup".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                remove_all();
                std::process::exit(128 + sig);
            }
        })?;
    Ok(())
}
