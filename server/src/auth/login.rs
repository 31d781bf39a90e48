//! `rexecd --login`: a client names an account, and its key must be in
//! that account's `~/.ssh/authorized_keys`.
//!
//! Looking an account up (the user database may be LDAP) and reading a
//! file in its home (which may be NFS) can block, and the event loop never
//! does; so threads do it (pool.rs: one account's stuck home never delays
//! another's login). The loop hands over a [`Check`] and goes on; the
//! [`Verdict`] comes back over a channel and wakes the loop. The loop also
//! gives up on a check that takes too long (the key is refused), so a
//! client never waits on a stuck home for longer than that.
//!
//! An unknown account, root without `--permit-root-login`, a file that
//! fails the StrictModes checks or is not a regular file, a key not in it:
//! all get the same answer as a wrong key, at the same time (keys.rs), and
//! the reason goes to the log only.

mod pool;

use std::io::Read;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use ssh_key::PublicKey;

use crate::auth::authorized::{self, MAX_FILE};
use crate::auth::grant::Grant;
use crate::auth::run_as::RunAs;
use crate::registry::ConnId;

/// Longest account name looked up (Linux allows 32 bytes).
const MAX_NAME: usize = 256;

/// A key whose signature was good, for the account the client named.
#[derive(Debug)]
pub struct Check {
    pub conn: ConnId,
    /// Which of the connection's keys this is (a late verdict for an
    /// earlier one is not taken for this one's).
    pub seq: u64,
    pub user: String,
    pub key: PublicKey,
    pub peer: IpAddr,
    /// The wall-clock time the key arrived (for `expiry-time=`).
    pub wall: SystemTime,
}

/// What the check found: the connection's rights, or why not (for the
/// log; the client is told only that the key was refused).
#[derive(Debug)]
pub struct Verdict {
    pub conn: ConnId,
    pub seq: u64,
    pub result: Result<Grant, String>,
}

/// The loop's end of the login threads.
#[derive(Debug)]
pub struct Logins {
    pool: pool::Pool,
}

impl Logins {
    /// Starts checking; `wake` is called after each verdict.
    pub fn start(permit_root: bool, wake: impl Fn() + Send + Sync + 'static) -> Logins {
        let judge = move |c: &Check| check(c, permit_root, c.wall);
        Logins {
            pool: pool::Pool::new(Box::new(judge), Box::new(wake)),
        }
    }

    /// Hands `check` over; false when too many are waiting.
    pub fn ask(&self, check: Check) -> bool {
        self.pool.ask(check)
    }

    /// Nobody waits for `conn`'s check any more.
    pub fn cancel(&self, conn: ConnId) {
        self.pool.cancel(conn);
    }

    /// A verdict reached, if any.
    pub fn take(&self) -> Option<Verdict> {
        self.pool.take()
    }
}

/// Whether `c.key` may log in as `c.user` from `c.peer` at `now`.
fn check(c: &Check, permit_root: bool, now: SystemTime) -> Result<Grant, String> {
    // No user database holds such a name; no need to ask one.
    if c.user.is_empty() || c.user.len() > MAX_NAME || c.user.contains(['/', '\0']) {
        return Err("not an account name".into());
    }
    let user = RunAs::lookup(&c.user).map_err(|e| e.to_string())?;
    if user.uid == 0 && !permit_root {
        return Err("root may not log in (rexecd has no --permit-root-login)".into());
    }
    let file = user.home.join(".ssh/authorized_keys");
    let text = read_strict(&file, user.uid, &user.home)?;
    let lines = authorized::parse(&text, &file.display().to_string());
    let line = authorized::find(&lines, &c.key)
        .ok_or_else(|| format!("the key is not in {}", file.display()))?;
    line.options.admits(c.peer, now)?;
    Ok(Grant {
        account: Some(Arc::new(user)),
        forced: line.options.command.clone(),
        no_pty: line.options.no_pty,
        forwarding: line.options.forwarding.clone(),
    })
}

/// Reads an account's authorized_keys as sshd's StrictModes allows: the
/// file and every directory above it up to the home directory (or `/`)
/// owned by the account or root and writable by nobody else. Otherwise
/// anyone who can write one of them can let themselves in as the account.
pub fn read_strict(file: &Path, uid: u32, home: &Path) -> Result<String, String> {
    let shown = file.display();
    let real = std::fs::canonicalize(file).map_err(|e| format!("{shown}: {e}"))?;
    let home = std::fs::canonicalize(home).unwrap_or_else(|_| PathBuf::from("/"));
    let f = crate::regular_file::open_regular(&real).map_err(|e| format!("{shown}: {e}"))?;
    let meta = f.metadata().map_err(|e| format!("{shown}: {e}"))?;
    owned_safely(&real, &meta, uid)?;
    for dir in real.ancestors().skip(1) {
        let m = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        owned_safely(dir, &m, uid)?;
        if dir == home {
            break;
        }
    }
    if meta.len() > MAX_FILE {
        return Err(format!("{shown} is larger than {MAX_FILE} bytes"));
    }
    let mut text = String::new();
    f.take(MAX_FILE)
        .read_to_string(&mut text)
        .map_err(|e| format!("{shown}: {e}"))?;
    Ok(text)
}

/// StrictModes for one path: owned by `uid` or root, not writable by
/// group or others.
fn owned_safely(path: &Path, meta: &std::fs::Metadata, uid: u32) -> Result<(), String> {
    if meta.uid() != uid && meta.uid() != 0 {
        return Err(format!(
            "bad ownership of {} (uid {}, not the account's or root's); refused as sshd's StrictModes does",
            path.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "bad modes for {} ({:03o}: group or others may write it); refused as sshd's \
             StrictModes does; run: chmod go-w {}",
            path.display(),
            meta.mode() & 0o777,
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
