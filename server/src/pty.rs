//! Pseudo-terminals for commands that ask for one (`Exec.pty`), as sshd
//! gives `ssh -t`: the command runs in a new session with the pty's slave
//! side as its controlling terminal and its stdin, stdout and stderr; the
//! server keeps the master side, non-blocking on the same event loop,
//! reading it as the command's output and writing stdin into it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use mio::unix::pipe::{Receiver, Sender};
use nix::pty::{OpenptyResult, Winsize, openpty};
use rexec_proto::PtyRequest;

use crate::process::{CommandError, Spawned, pidfd_open};

fn winsize(rows: u16, cols: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// Starts `cmd` on a new pty of the requested size, with `TERM` set. With
/// `owner`, the slave side is given to that uid (a command run as another
/// user must be able to open its own terminal by name, as `tty` does).
pub fn spawn(
    mut cmd: Command,
    req: &PtyRequest,
    owner: Option<u32>,
) -> Result<Spawned, CommandError> {
    let OpenptyResult { master, slave } = openpty(Some(&winsize(req.rows, req.cols)), None)
        .map_err(|e| CommandError::os("opening a pty", e.into()))?;
    if let Some(uid) = owner {
        std::os::unix::fs::fchown(&slave, Some(uid), None)
            .map_err(|e| CommandError::os("giving the pty to the user", e))?;
    }
    let stdio = || {
        slave
            .try_clone()
            .map(Stdio::from)
            .map_err(|e| CommandError::os("opening a pty", e))
    };
    cmd.stdin(stdio()?).stdout(stdio()?).stderr(stdio()?);
    if !req.term.is_empty() {
        cmd.env("TERM", &req.term);
    }
    // SAFETY: setsid and ioctl(TIOCSCTTY) are async-signal-safe system
    // calls on the child's own descriptors; nothing is allocated.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()?;
            if nix::libc::ioctl(0, nix::libc::TIOCSCTTY as _, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| {
        CommandError::os(&crate::text::echo(&cmd.get_program().to_string_lossy()), e)
    })?;
    drop(cmd); // our copies of the slave: the master sees the end when the command's are gone
    drop(slave);
    let ends = (|| -> io::Result<(Receiver, Sender)> {
        let r = Receiver::from(master.try_clone()?);
        r.set_nonblocking(true)?;
        let w = Sender::from(master.try_clone()?);
        w.set_nonblocking(true)?;
        Ok((r, w))
    })();
    let (stdout, stdin) = match ends {
        Ok(e) => e,
        Err(e) => {
            crate::process::kill_group(child.id() as i32, nix::libc::SIGKILL);
            return Err(CommandError::os("setting up the pty", e));
        }
    };
    let pidfd = pidfd_open(child.id());
    Ok(Spawned {
        child,
        stdout,
        stderr: None,
        stdin: Some(stdin),
        pidfd,
        pty: Some(master),
    })
}

/// Tells the pty (and so the command, with SIGWINCH) its new size.
pub fn resize(master: &OwnedFd, rows: u16, cols: u16) -> io::Result<()> {
    let ws = winsize(rows, cols);
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer we pass.
    if unsafe { nix::libc::ioctl(master.as_raw_fd(), nix::libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
