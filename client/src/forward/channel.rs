//! One forwarded connection at the client's end: its local socket and two
//! threads, one reading it towards the server (within the window the
//! server left us), one writing what the server sent (and acknowledging
//! it once written). The session's reader only hands data over
//! ([`Chan::deliver`]): it never waits on a channel, so a local program
//! that stops reading stalls its own channel and nothing else.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use rexec_proto::{CHANNEL_CHUNK, CHANNEL_WINDOW, ClientMsg};

use crate::session::Writer;

/// A channel's stack: its threads only copy between a socket and a queue.
const STACK: usize = 128 * 1024;

/// A pipe for splicing a channel's local bytes on (read end, write end),
/// as large as a chunk where the system allows; `None` if none can be made
/// (then the bytes are copied).
fn via_pipe() -> Option<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).ok()?;
    let _ = rustix::pipe::fcntl_setpipe_size(&r, CHANNEL_CHUNK);
    Some((r, w))
}

#[derive(Debug, Default)]
struct State {
    /// Bytes the server may still be sent.
    credit: u32,
    /// What the server sent, not yet written to the local socket.
    queue: VecDeque<Vec<u8>>,
    queued: usize,
    /// The server's end sends nothing more.
    eof_in: bool,
    /// Everything stops (closed by either side, or broken).
    closed: bool,
    /// A `ChannelClose` we still owe the server, with its reason.
    owe_close: Option<Option<String>>,
    /// The server's answer to our `Open`: the address it reached, or why
    /// not.
    opened: Option<Result<String, String>>,
    /// Threads finished (the channel is forgotten after both).
    done: u8,
}

/// One channel.
#[derive(Debug)]
pub struct Chan {
    /// The channel's number on the connection.
    pub id: u32,
    /// What the user asked for (`-L 8888:localhost:8888`), for messages.
    pub label: String,
    /// Its failure is reported by whoever opened it, not on stderr here.
    pub quiet: bool,
    writer: Arc<Writer>,
    sock: TcpStream,
    state: Mutex<State>,
    changed: Condvar,
}

impl Chan {
    /// Channel `id` between the local socket `sock` and the server
    /// (through `writer`).
    pub fn new(id: u32, label: String, writer: Arc<Writer>, sock: TcpStream) -> Chan {
        Chan {
            id,
            label,
            quiet: false,
            writer,
            sock,
            state: Mutex::new(State {
                credit: CHANNEL_WINDOW,
                ..State::default()
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the two threads; `gone` runs once both have ended.
    pub fn start(self: &Arc<Self>, gone: impl Fn(u32) + Send + Sync + 'static) -> io::Result<()> {
        let gone = Arc::new(gone);
        let (up, down) = (self.clone(), self.clone());
        let (g1, g2) = (gone.clone(), gone);
        let reader = up.sock.try_clone()?;
        let writer = down.sock.try_clone()?;
        std::thread::Builder::new()
            .name(format!("channel-{}-up", self.id))
            .stack_size(STACK)
            .spawn(move || {
                up.pump_up(reader);
                up.thread_done(&*g1);
            })?;
        std::thread::Builder::new()
            .name(format!("channel-{}-down", self.id))
            .stack_size(STACK)
            .spawn(move || {
                down.pump_down(writer);
                down.thread_done(&*g2);
            })?;
        Ok(())
    }

    fn thread_done(&self, gone: &(dyn Fn(u32) + Send + Sync)) {
        let both = {
            let mut s = self.lock();
            s.done += 1;
            s.done == 2
        };
        if both {
            gone(self.id);
        }
    }

    /// Local bytes to the server, no more than its window allows: spliced
    /// from the local socket into a pipe of the channel's own and on into
    /// the server's socket behind the frame's header, where the session is
    /// plain TCP (no copy through this process); read and written
    /// otherwise.
    fn pump_up(&self, mut sock: TcpStream) {
        let mut via = self.writer.can_splice().then(via_pipe).flatten();
        let mut buf = Vec::new();
        loop {
            let room = {
                let mut s = self.lock();
                while s.credit == 0 && !s.closed {
                    s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
                }
                if s.closed {
                    return;
                }
                (s.credit as usize).min(CHANNEL_CHUNK)
            };
            if let Some((r, w)) = &via {
                let flags = rustix::pipe::SpliceFlags::MOVE;
                match rustix::pipe::splice(&sock, None, w, None, room, flags) {
                    Ok(n) if n > 0 => {
                        self.lock().credit -= n as u32;
                        if self
                            .writer
                            .send_channel_data_from_pipe(self.id, r.as_fd(), n)
                            .is_err()
                        {
                            return self.close(None);
                        }
                        continue;
                    }
                    // Not necessarily the end (an urgent mark stops a
                    // splice too): a read below tells.
                    Ok(_) => {}
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(_) => via = None,
                }
            }
            if buf.is_empty() {
                buf = vec![0u8; CHANNEL_CHUNK];
            }
            match sock.read(&mut buf[..room]) {
                Ok(0) => {
                    if !self.lock().closed {
                        let _ = self.writer.send(&ClientMsg::ChannelEof { id: self.id });
                    }
                    return;
                }
                Ok(n) => {
                    self.lock().credit -= n as u32;
                    if self.writer.send_channel_data(self.id, &buf[..n]).is_err() {
                        return self.close(None);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.close(Some(Some(e.to_string()))),
            }
        }
    }

    /// The server's bytes to the local socket, acknowledged once written:
    /// every quarter window (the server, with three quarters of its window
    /// left, never waits for a smaller one).
    fn pump_down(&self, mut sock: TcpStream) {
        let mut written = 0u32;
        loop {
            let next = {
                let mut s = self.lock();
                while s.queue.is_empty() && !s.eof_in && !s.closed {
                    s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
                }
                if s.closed {
                    let owed = s.owe_close.take();
                    drop(s);
                    if let Some(error) = owed {
                        let _ = self
                            .writer
                            .send(&ClientMsg::ChannelClose { id: self.id, error });
                    }
                    return;
                }
                let chunk = s.queue.pop_front();
                if let Some(c) = &chunk {
                    s.queued -= c.len();
                }
                chunk
            };
            let Some(chunk) = next else {
                // The server's end finished: so does ours, one way.
                let _ = sock.shutdown(Shutdown::Write);
                return;
            };
            if let Err(e) = sock.write_all(&chunk) {
                // The local program went away: the far end goes too.
                self.close(Some(Some(e.to_string())));
                continue;
            }
            written += chunk.len() as u32;
            if written < CHANNEL_WINDOW / 4 {
                continue;
            }
            let ack = ClientMsg::ChannelAck {
                id: self.id,
                bytes: std::mem::take(&mut written),
            };
            if self.writer.send(&ack).is_err() {
                return self.close(None);
            }
        }
    }

    /// Ends the channel here: both threads stop; with `tell`, the server
    /// hears `ChannelClose` (sent by the writing thread).
    pub fn close(&self, tell: Option<Option<String>>) {
        let mut s = self.lock();
        if !s.closed {
            s.closed = true;
            s.owe_close = tell;
        }
        drop(s);
        let _ = self.sock.shutdown(Shutdown::Both);
        self.changed.notify_all();
    }

    /// Data from the server; past the window it lied, and the channel is
    /// closed (the others go on).
    pub fn deliver(&self, data: Vec<u8>) -> Result<(), String> {
        let mut s = self.lock();
        if s.closed {
            return Ok(());
        }
        if s.eof_in || s.queued + data.len() > CHANNEL_WINDOW as usize {
            drop(s);
            let why = format!("the server sent past the window of channel {}", self.id);
            self.close(Some(Some(why.clone())));
            return Err(why);
        }
        s.queued += data.len();
        s.queue.push_back(data);
        drop(s);
        self.changed.notify_all();
        Ok(())
    }

    /// The server took `bytes` more (never more than the window).
    pub fn acked(&self, bytes: u32) {
        let mut s = self.lock();
        s.credit = s.credit.saturating_add(bytes).min(CHANNEL_WINDOW);
        drop(s);
        self.changed.notify_all();
    }

    /// The server's end sends nothing more.
    pub fn ended(&self) {
        self.lock().eof_in = true;
        self.changed.notify_all();
    }

    /// The server's word on our `Open`.
    pub fn set_opened(&self, result: Result<String, String>) {
        let mut s = self.lock();
        if s.opened.is_none() {
            s.opened = Some(result);
        }
        drop(s);
        self.changed.notify_all();
    }

    /// Waits for the server's word on our `Open`.
    pub fn wait_opened(&self, limit: std::time::Duration) -> Result<String, String> {
        let s = self.lock();
        let (mut s, _) = self
            .changed
            .wait_timeout_while(s, limit, |s| s.opened.is_none() && !s.closed)
            .unwrap_or_else(|p| p.into_inner());
        match s.opened.take() {
            Some(r) => r,
            None if s.closed => Err("the channel closed".into()),
            None => Err(format!("no answer in {} s", limit.as_secs())),
        }
    }
}
