//! Starting children off the event loop, from a small descriptor table.
//!
//! Starting a process blocks its caller until the child has called `exec`
//! (`posix_spawn` and `vfork` suspend the parent that long, and with many
//! commands starting at once on a busy machine the child may wait for a CPU
//! first). Done on the loop thread, that stalled every other connection:
//! with 32 clients starting short commands, the loop spent most of its time
//! suspended in `clone3`. So the loop prepares a command (its pipes exist
//! and are watched), hands it to one of these threads, and learns when the
//! child exists.
//!
//! A child also starts with a copy of its parent's descriptor table, and
//! `exec` then closes every close-on-exec descriptor in it one by one: with
//! 20,000 clients connected, that was 20,000 sockets closed for every
//! command, about 6 ms each. So each spawner thread has a table of its own
//! (`unshare(CLONE_FILES)`) holding only stdin, stdout, stderr and its end
//! of a socket pair. The loop sends each command's descriptors over that
//! socket (`SCM_RIGHTS`), where they arrive in the thread's table; the
//! `Command` itself (memory only) goes through a shared map. A thread wakes
//! the loop with a byte on the same socket, which the loop polls.
//!
//! Who fills the queues: `Exec`s, each of which already counts against
//! `--max-procs` (its `Proc` exists while it starts). A start the socket has
//! no room for is started on the loop thread instead, slowly but correctly.

use std::collections::HashMap;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::ManuallyDrop;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::process::{Child, Command};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

use crate::process::{self, ChildFds, CommandError};
use crate::registry::ProcId;

/// A command to start, for the loop's `Proc` `proc`.
#[derive(Debug)]
pub struct Launch {
    pub proc: ProcId,
    pub cmd: Command,
    pub fds: ChildFds,
}

/// A started command (or why it could not start).
#[derive(Debug)]
pub struct Done {
    pub proc: ProcId,
    pub result: Result<Child, CommandError>,
}

/// Commands handed over, by the `Proc` they are for.
type Commands = Arc<Mutex<HashMap<ProcId, Command>>>;

/// The bytes of a start's message: the `Proc` id and which descriptors follow.
const JOB_LEN: usize = 9;

/// The spawner threads, the loop's end of their socket, and their results.
pub struct Spawner {
    /// The loop's end: starts out, wake-up bytes in. Non-blocking.
    sock: Option<OwnedFd>,
    /// The threads' end, kept here only when a thread could not get a
    /// table of its own (then the threads share ours).
    shared_end: Option<OwnedFd>,
    commands: Commands,
    done: Receiver<Done>,
    threads: Vec<JoinHandle<()>>,
    /// Starts handed to the threads and not yet taken back.
    in_flight: std::cell::Cell<usize>,
}

impl std::fmt::Debug for Spawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawner")
            .field("threads", &self.threads.len())
            .finish()
    }
}

impl Spawner {
    /// Starts `threads` spawner threads. Their tables are copies of the
    /// process's table now, less `close` (the listener: a copy would keep
    /// it open after shutdown closes it) and anything inheritable. What
    /// stays are descriptors the process opened close-on-exec before this
    /// call, among them signal-hook's pipe: a signal may be handled on a
    /// spawner thread, and its handler writes to that pipe by number. So
    /// this is called after the signal handlers are set up. (Blocking
    /// signals in these threads instead would block them in every command
    /// too: children inherit the mask of the thread that starts them.)
    pub fn new(threads: usize, close: &[RawFd]) -> io::Result<Spawner> {
        let (ours, theirs) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )?;
        let flags = rustix::fs::fcntl_getfl(&ours)?;
        rustix::fs::fcntl_setfl(&ours, flags | rustix::fs::OFlags::NONBLOCK)?;
        let commands: Commands = Arc::default();
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let (ready_tx, ready_rx) = mpsc::channel::<bool>();
        let keep = theirs.as_raw_fd();
        let drop_fds: Vec<RawFd> = close.iter().copied().chain([ours.as_raw_fd()]).collect();
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let commands = commands.clone();
            let done = done_tx.clone();
            let ready = ready_tx.clone();
            let drop_fds = drop_fds.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("spawner-{i}"))
                    .spawn(move || {
                        let private = private_table(keep, &drop_fds);
                        if ready.send(private).is_err() {
                            return;
                        }
                        run(keep, private, &commands, &done);
                    })?,
            );
        }
        drop(ready_tx);
        let all_private = ready_rx.iter().take(handles.len()).all(|p| p);
        Ok(Spawner {
            sock: Some(ours),
            // With tables of their own, the threads hold their copies; ours
            // must close, so that closing `sock` ends their reads.
            shared_end: (!all_private).then_some(theirs),
            commands,
            done: done_rx,
            threads: handles,
            in_flight: std::cell::Cell::new(0),
        })
    }

    /// The descriptor the loop polls: readable when a start has finished.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.sock.as_ref().map(|s| s.as_fd())
    }

    /// Queues a start, or makes it here and reports it at once: when it
    /// cannot be handed over (the socket full, the threads gone), and when
    /// the caller says `here` (its descriptor table is small and nothing
    /// else is running) and no other start is under way. Then the handover
    /// would cost more than it saves: two wake-ups across CPUs (about 0.1 ms
    /// on a virtual machine) against blocking a caller nobody is waiting on
    /// while one child execs.
    pub fn submit(&self, launch: Launch, here: bool) -> Option<Done> {
        let Launch { proc, cmd, fds } = launch;
        let sock = match &self.sock {
            Some(sock) if !here || self.in_flight.get() > 0 => sock,
            _ => return Some(spawn_on_this_thread(proc, cmd, Ok(fds))),
        };
        let (kind, parts) = fds.into_parts();
        let mut msg = [0u8; JOB_LEN];
        msg[..8].copy_from_slice(&proc.0.to_le_bytes());
        msg[8] = kind;
        // A panic elsewhere while the lock was held leaves the map as it
        // was: poisoning changes nothing here (before, a poisoned lock was
        // taken as "handed over", and the command never started).
        self.commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(proc, cmd);
        let borrowed: Vec<BorrowedFd<'_>> = parts.iter().map(|f| f.as_fd()).collect();
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let sent = control.push(SendAncillaryMessage::ScmRights(&borrowed))
            && rustix::net::sendmsg(
                sock,
                &[IoSlice::new(&msg)],
                &mut control,
                SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
            )
            .is_ok();
        drop(borrowed);
        if sent {
            self.in_flight.set(self.in_flight.get() + 1);
            return None; // our copies of the child's ends close here
        }
        let cmd = self
            .commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&proc)?;
        Some(spawn_on_this_thread(
            proc,
            cmd,
            ChildFds::from_parts(kind, parts),
        ))
    }

    /// A finished start, if there is one (and the wake-up bytes read).
    pub fn take_done(&self) -> Option<Done> {
        if self.in_flight.get() == 0 {
            // Nothing handed over, so nothing to take: no system call (this
            // runs every loop turn, thousands a second when output streams).
            // A wake-up byte left behind is read with the next start's.
            return None;
        }
        if let Some(sock) = &self.sock {
            let mut buf = [0u8; 64];
            while rustix::net::recv(sock, &mut buf, RecvFlags::DONTWAIT).is_ok_and(|(n, _)| n > 0) {
            }
        }
        self.taken(self.done.try_recv().ok())
    }

    /// Waits up to `limit` for a finished start (shutdown only).
    pub fn wait_done(&self, limit: std::time::Duration) -> Option<Done> {
        self.taken(self.done.recv_timeout(limit).ok())
    }

    fn taken(&self, done: Option<Done>) -> Option<Done> {
        if done.is_some() {
            self.in_flight.set(self.in_flight.get().saturating_sub(1));
        }
        done
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        // The threads read the end of the socket and return. Shut down, not
        // only closed: a spawner started later in this process (another
        // `Server` of a program that embeds rexecd, or a test) holds a copy
        // of this end in its threads' tables, and a close alone would leave
        // the socket open there, and this join waiting for ever.
        if let Some(sock) = self.sock.take() {
            let _ = rustix::net::shutdown(&sock, rustix::net::Shutdown::Both);
        }
        self.shared_end = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Starts a command on the calling thread (the fallback).
fn spawn_on_this_thread(proc: ProcId, cmd: Command, fds: io::Result<ChildFds>) -> Done {
    let result = fds
        .map_err(|e| CommandError::os("passing descriptors", e))
        .and_then(|fds| process::spawn_child(cmd, fds));
    Done { proc, result }
}

/// Gives the calling thread a descriptor table of its own: a copy of the
/// process's, less `close` and every inheritable descriptor but 0, 1, 2 and
/// `keep` (what rexecd itself inherited must not reach commands). `false`
/// (and nothing closed) if the kernel refuses.
fn private_table(keep: RawFd, close: &[RawFd]) -> bool {
    // SAFETY: this thread uses no descriptor of the shared table after this
    // point except 0, 1, 2 and `keep`, which it keeps (see run()), and the
    // signal pipe a signal handler may write to, also kept; every other
    // descriptor it will use arrives over `keep` or is opened here.
    if unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FILES) }.is_err() {
        return false;
    }
    let open: Vec<RawFd> = match std::fs::read_dir("/proc/thread-self/fd") {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => return true, // a private table, with copies we cannot list
    };
    for fd in open {
        // The listing's own descriptor is in the list and already closed:
        // only what is still open is closed.
        if fd <= 2 || fd == keep {
            continue;
        }
        // SAFETY: a number of this thread's private table, which nothing
        // else in this thread refers to. Owned here only to close it: it is
        // let go (not closed) when it is to stay open or is not open at all
        // (the listing's own descriptor).
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        match rustix::io::fcntl_getfd(&owned) {
            Ok(flags) if !flags.contains(rustix::io::FdFlags::CLOEXEC) || close.contains(&fd) => {
                drop(owned)
            }
            _ => {
                let _ = owned.into_raw_fd();
            }
        }
    }
    true
}

fn run(
    sock: RawFd,
    private: bool,
    commands: &Mutex<HashMap<ProcId, Command>>,
    done: &Sender<Done>,
) {
    // SAFETY: `sock` stays open for this thread: in its own table, closed
    // below when it returns (the only owner of that copy); in the shared
    // one, owned by the Spawner, which joins this thread before closing it
    // (so it is never closed here).
    let owned = ManuallyDrop::new(unsafe { OwnedFd::from_raw_fd(sock) });
    let sock = owned.as_fd();
    loop {
        let Some((proc, fds)) = receive(sock) else {
            break;
        };
        let cmd = commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&proc);
        let Some(cmd) = cmd else {
            continue; // cannot happen: the command is put there first
        };
        let d = spawn_on_this_thread(proc, cmd, fds);
        if done.send(d).is_err() {
            break;
        }
        // Wake the loop; if the socket is full of wake-ups it will wake.
        let _ = rustix::net::send(sock, &[1], SendFlags::DONTWAIT | SendFlags::NOSIGNAL);
    }
    if private {
        drop(ManuallyDrop::into_inner(owned));
    }
}

/// Reads the next start: its `Proc` and its descriptors. `None` at the end.
fn receive(sock: BorrowedFd<'_>) -> Option<(ProcId, io::Result<ChildFds>)> {
    loop {
        let mut msg = [0u8; JOB_LEN];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = match rustix::net::recvmsg(
            sock,
            &mut [IoSliceMut::new(&mut msg)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(got) => got,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return None,
        };
        if got.bytes == 0 {
            return None;
        }
        let mut fds = Vec::new();
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = m {
                fds.extend(rights);
            }
        }
        if got.bytes != JOB_LEN {
            continue; // not a start of ours; its descriptors close here
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&msg[..8]);
        return Some((
            ProcId(u64::from_le_bytes(id)),
            ChildFds::from_parts(msg[8], fds),
        ));
    }
}

#[cfg(test)]
mod tests;
