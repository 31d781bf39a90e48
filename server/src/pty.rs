//! Pseudo-terminals for commands that ask for one (`Exec.pty`), as sshd
//! gives `ssh -t`: the command runs in a new session with the pty's slave
//! side as its controlling terminal and its stdin, stdout and stderr; the
//! server keeps the master side, non-blocking on the same event loop,
//! reading it as the command's output and writing stdin into it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use mio::unix::pipe::{Receiver, Sender};
use nix::pty::{OpenptyResult, Winsize, openpty};
use rexec_proto::PtyRequest;

use crate::process::{ChildFds, Prepared};

fn winsize(rows: u16, cols: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// Sets `cmd` up to run on a new pty of the requested size, with `TERM`
/// set, and returns our side (the master, as output and as stdin). With
/// `owner`, the slave side is given to that uid (a command run as another
/// user must be able to open its own terminal by name, as `tty` does). The
/// slave goes to whoever starts the command and is closed there, so the
/// master sees the end of output once the command's copies are gone.
pub fn prepare(cmd: &mut Command, req: &PtyRequest, owner: Option<u32>) -> io::Result<Prepared> {
    let OpenptyResult { master, slave } = openpty(Some(&winsize(req.rows, req.cols)), None)?;
    // openpty leaves both sides inheritable: every command started later
    // (by another spawner thread, even before this one) would get this
    // session's master and slave. The child's own copies become its 0, 1
    // and 2, which exec keeps.
    for fd in [&master, &slave] {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
    }
    if let Some(uid) = owner {
        std::os::unix::fs::fchown(&slave, Some(uid), None)?;
    }
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
    let stdout = Receiver::from(master.try_clone()?);
    stdout.set_nonblocking(true)?;
    let stdin = Sender::from(master.try_clone()?);
    stdin.set_nonblocking(true)?;
    Ok(Prepared {
        stdout,
        stderr: None,
        stdin: Some(stdin),
        pty: Some(master),
        child: ChildFds::Pty(slave),
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
