//! Pseudo-terminals for commands that ask for one (`Exec.pty`), as sshd
//! gives `ssh -t`: the command runs in a new session with the pty's slave
//! side as its controlling terminal and its stdin, stdout and stderr; the
//! server keeps the master side, non-blocking on the same event loop,
//! reading it as the command's output and writing stdin into it.

use std::io;
use std::os::fd::OwnedFd;
use std::process::Command;

use mio::unix::pipe::{Receiver, Sender};
use rexec_proto::PtyRequest;
use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;

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
    // Both sides are opened close-on-exec: otherwise every command started
    // later (by another spawner thread, even before this one) would get
    // this session's master and slave. The child's own copies become its
    // 0, 1 and 2, which exec keeps.
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::termios::tcsetwinsize(&master, winsize(req.rows, req.cols))?;
    if let Some(uid) = owner {
        std::os::unix::fs::fchown(&slave, Some(uid), None)?;
    }
    if !req.term.is_empty() {
        cmd.env("TERM", &req.term);
    }
    // Its own session, the terminal its controlling one.
    crate::sys::in_child(cmd, crate::sys::InChild::TerminalSession);
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
    Ok(rustix::termios::tcsetwinsize(master, winsize(rows, cols))?)
}
