//! A command's output on its way to the client, under a simulated world:
//! the real pump (process/pump.rs) reads a real pipe into a simulated
//! connection, as server/output.rs drives it.
//!
//! The world: the command writes chunks of any size when its pipe has
//! room, and in the end closes it; the connection's socket takes any part
//! of what is queued, or nothing (full), and says so only when it becomes
//! writable again after it was full (epoll's edge); the peer may vanish;
//! an output limit may apply. The server pumps when the pipe is readable,
//! stops at `Paused` until the socket has drained below the queue limit
//! and memory is no longer short (as `pipes_to_resume` and budget.rs's
//! `check_budget`), and flushes on writable.
//!
//! After every step: what the client has received decodes as whole
//! `Stdout` frames of the command's id and is exactly the start of what
//! the command wrote, in order; the queue stays within its limit and one
//! read. At the end: all of it arrived (or exactly the limit, with `Cut`
//! said, or the peer was gone); and with a client that reads, the end
//! comes (nothing waits for ever on a flush that nobody will make).

use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;

use rexec_proto::{FrameDecoder, OutputStream, ServerMsg};

use super::world::{Broken, Rng, run};
use crate::process::{PumpIo, Pumped, Sink};
use crate::splice::Sent;

/// Steps of mixed activity, then at most this many with a client that
/// reads everything it is sent, to reach the end.
const STEPS: usize = 600;
const FINISH_STEPS: usize = 1_000;
/// The command's id in its frames.
const ID: u32 = 7;

/// The simulated connection: a queue of frames in front of a socket that
/// takes what the world lets it.
struct Conn {
    rng: Rng,
    frames: Vec<u8>,
    /// What the socket took: the client's side of the byte stream.
    taken: Vec<u8>,
    /// The last flush left bytes queued: the socket will say when it is
    /// writable again, and only then.
    owes_writable: bool,
    /// Whether the socket takes anything at the moment.
    open_for: usize,
    dead: bool,
    queue_limit: usize,
}

impl Sink for Conn {
    fn peer(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1))
    }
    fn is_dead(&self) -> bool {
        self.dead
    }
    fn set_dead(&mut self) {
        self.dead = true;
    }
    fn is_native(&self) -> bool {
        true
    }
    fn queued(&self) -> usize {
        self.frames.len()
    }
    fn frames(&mut self) -> &mut Vec<u8> {
        &mut self.frames
    }
    fn flush(&mut self) {
        if self.dead || self.frames.is_empty() {
            return;
        }
        // The socket takes any part of the queue it has room for.
        let n = self.rng.between(0, self.open_for.min(self.frames.len()));
        self.taken.extend(self.frames.drain(..n));
        self.open_for -= n;
        self.owes_writable = !self.frames.is_empty();
    }
    fn output_blocked(&self, queue_limit: usize, _zero_copy: bool, over_budget: bool) -> bool {
        // As Connection's: over the limit, or anything queued while the
        // server's memory budget is spent.
        self.frames.len() >= queue_limit || (over_budget && !self.frames.is_empty())
    }
    fn memory_held(&self) -> bool {
        false
    }
    fn can_splice(&self) -> bool {
        false
    }
    fn zero_copy(&self) -> bool {
        false
    }
    fn splice_from(
        &mut self,
        _: BorrowedFd<'_>,
        _: OutputStream,
        _: u32,
        _: usize,
    ) -> io::Result<Sent> {
        unreachable!("can_splice is false")
    }
}

/// Most bytes the command writes at once.
const MOST_WRITTEN: usize = 64 << 10;
/// The command's output repeats every `PERIOD` bytes: a prime, so that a
/// lost, doubled or moved chunk of any usual size shows.
const PERIOD: usize = 251;

/// The command's output from byte `at`, `len` bytes of it (`len` up to
/// [`MOST_WRITTEN`]): a slice of one pattern made once, so that writing and
/// checking are a copy and a comparison, quick even in a debug build.
fn output_at(at: usize, len: usize) -> &'static [u8] {
    static PATTERN: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let p = PATTERN.get_or_init(|| {
        (0..PERIOD + MOST_WRITTEN)
            .map(|i| (i % PERIOD) as u8)
            .collect()
    });
    &p[at % PERIOD..at % PERIOD + len]
}

/// Where the schedule stands, as the server and the client see it.
struct Run {
    rng: Rng,
    conn: Conn,
    proc: crate::process::Proc,
    writer: Option<mio::unix::pipe::Sender>,
    written: usize,
    decoder: FrameDecoder,
    received: usize,
    paused: bool,
    /// The pipe became readable (new bytes, or its end) since the pump last
    /// found it empty: epoll's edge, the only thing that wakes the server
    /// for a pipe that is not paused.
    readable: bool,
    out_limit: Option<u64>,
    /// The server's memory budget is spent (budget.rs): pipes with
    /// anything queued wait until it is not.
    over_budget: bool,
    scratch: Vec<u8>,
    end: Option<Pumped>,
}

impl Run {
    fn new(seed: u64) -> io::Result<Run> {
        let mut rng = Rng::new(seed);
        let (tx, rx) = mio::unix::pipe::new()?;
        let child = std::process::Command::new("true").spawn()?;
        let conn = Conn {
            rng: Rng::new(rng.next()),
            frames: Vec::new(),
            taken: Vec::new(),
            owes_writable: false,
            open_for: 0,
            dead: false,
            queue_limit: rng.between(1, 1 << 20),
        };
        let out_limit = rng.one_in(4).then(|| rng.between(0, 400 << 10) as u64);
        let scratch = vec![0u8; rng.between(1, 64 << 10)];
        Ok(Run {
            rng,
            conn,
            proc: crate::process::started_with_stdout(rx, child, std::time::Instant::now()),
            writer: Some(tx),
            written: 0,
            decoder: FrameDecoder::new(),
            received: 0,
            paused: false,
            readable: false,
            out_limit,
            over_budget: false,
            scratch,
            end: None,
        })
    }

    /// The command writes a chunk, as much of it as the pipe takes.
    fn command_writes(&mut self, most: usize) {
        let Some(tx) = self.writer.as_mut() else {
            return;
        };
        let len = self.rng.between(1, most);
        match tx.write(output_at(self.written, len)) {
            Ok(n) => {
                self.written += n;
                self.readable = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("the simulation's own pipe: {e}"),
        }
    }

    /// The server's turn: flush on writable, resume a paused pipe once the
    /// queue drained, pump while there is more.
    fn server_turn(&mut self) -> Result<(), String> {
        if self.conn.dead && self.end.is_none() && self.rng.one_in(2) {
            // The socket's error event comes first: the server closes the
            // connection (and, with it, the command's pipes).
            self.end = Some(Pumped::Dead);
            return Ok(());
        }
        if self.conn.owes_writable && self.conn.open_for > 0 {
            self.conn.owes_writable = false;
            self.conn.flush();
        }
        let mut resumed = false;
        if self.paused && self.conn.frames.len() < self.conn.queue_limit && !self.over_budget {
            self.paused = false;
            resumed = true;
        }
        if self.paused || self.end.is_some() || !(self.readable || resumed) {
            return Ok(());
        }
        let (mut big, mut held) = (0, 0);
        let mut io = PumpIo {
            splice: false,
            queue_limit: self.conn.queue_limit,
            out_limit: self.out_limit,
            over_budget: self.over_budget,
            scratch: &mut self.scratch,
            big_pipes: &mut big,
            held: &mut held,
        };
        for _ in 0..10_000 {
            match self
                .proc
                .pump(OutputStream::Stdout, &mut self.conn, &mut io)
            {
                Pumped::More => continue,
                Pumped::Paused | Pumped::SocketFull => {
                    self.paused = true;
                    return Ok(());
                }
                Pumped::Idle => {
                    self.readable = false;
                    return Ok(());
                }
                end @ (Pumped::Ended | Pumped::Cut | Pumped::Dead) => {
                    self.end = Some(end);
                    // What is queued goes out as the connection closes.
                    return Ok(());
                }
            }
        }
        Err("the pump said More 10,000 times in a row".into())
    }

    /// Nothing keeps the pipe from being read but the pipe itself.
    fn paused_for_nothing(&self) -> bool {
        !self.paused && !self.readable && self.end.is_none()
    }

    /// Waits (up to 10 s of real time, the only real waiting here) for the
    /// pipe's hangup once the simulated command has closed its end: a
    /// copy of that end in a child forked by another test at that moment
    /// delays it.
    fn await_hangup(&mut self) {
        let Some((rx, _)) = self.proc.pipe(OutputStream::Stdout) else {
            return;
        };
        let mut fds = [rustix::event::PollFd::new(
            &*rx,
            rustix::event::PollFlags::IN,
        )];
        let ten_s = rustix::time::Timespec {
            tv_sec: 10,
            tv_nsec: 0,
        };
        if rustix::event::poll(&mut fds, Some(&ten_s)).is_ok_and(|n| n > 0) {
            self.readable = true;
        }
    }

    /// The client reads what the socket took: whole frames of the
    /// command's output, exactly the start of what it wrote.
    fn check_received(&mut self) -> Result<(), String> {
        self.decoder.feed(&std::mem::take(&mut self.conn.taken));
        loop {
            match self.decoder.next_message::<ServerMsg>() {
                Ok(Some(ServerMsg::Stdout { id, data })) if id == ID => {
                    let at = self.received;
                    if at + data.len() > self.written
                        || data.len() > MOST_WRITTEN
                        || data != output_at(at, data.len())
                    {
                        return Err(format!(
                            "{} bytes received at {at} are not the command's (it wrote {})",
                            data.len(),
                            self.written
                        ));
                    }
                    self.received += data.len();
                }
                Ok(Some(other)) => return Err(format!("not this command's output: {other:?}")),
                Ok(None) => return Ok(()),
                Err(e) => return Err(format!("the stream does not decode: {e}")),
            }
        }
    }

    fn check_bounds(&self) -> Result<(), String> {
        // One read (and its frame header) past the limit at most.
        let bound = self.conn.queue_limit + self.scratch.len() + 64;
        if self.conn.frames.len() > bound {
            return Err(format!(
                "{} bytes queued, over the limit {} and one read",
                self.conn.frames.len(),
                self.conn.queue_limit
            ));
        }
        Ok(())
    }

    /// At the end, with everything queued sent: nothing is missing that
    /// the client is not told about.
    fn check_end(&self) -> Result<(), String> {
        match self.end {
            Some(Pumped::Ended) if self.received == self.written => Ok(()),
            Some(Pumped::Ended) => Err(format!(
                "a clean end with {} of {} bytes received",
                self.received, self.written
            )),
            Some(Pumped::Cut) => match self.out_limit {
                Some(l) if self.received as u64 == l => Ok(()),
                l => Err(format!(
                    "cut at {} bytes received, limit {l:?}, {} written",
                    self.received, self.written
                )),
            },
            Some(Pumped::Dead) if self.conn.dead => Ok(()),
            other => Err(format!("ended as {other:?}")),
        }
    }
}

fn schedule(seed: u64) -> Result<(), Broken> {
    let mut w = Run::new(seed).map_err(|e| Broken {
        step: 0,
        what: format!("setting up: {e}"),
    })?;
    let most = w.rng.between(1, MOST_WRITTEN);
    let vanishes = w.rng.one_in(10);
    for step in 0..STEPS + FINISH_STEPS {
        let broken = |what: String| Broken { step, what };
        let finishing = step >= STEPS;
        // The command writes, or is done and closes its end.
        if (finishing || w.rng.one_in(STEPS as u64 / 3)) && w.writer.is_some() {
            w.writer = None;
            w.readable = true;
        } else if w.writer.is_none() && finishing && w.paused_for_nothing() {
            // Another test's child may hold a copy of the writing end for
            // the moment between its fork and its exec: the pipe's hangup
            // comes (a new edge) when that copy closes.
            w.await_hangup();
        } else if w.rng.one_in(2) {
            w.command_writes(most);
        }
        // The socket gets room (or, while finishing, all the room needed).
        w.conn.open_for = if finishing {
            usize::MAX
        } else if w.rng.one_in(3) {
            0
        } else {
            w.rng.between(0, 64 << 10)
        };
        // Memory runs short now and then, never while finishing.
        if finishing {
            w.over_budget = false;
        } else if w.rng.one_in(20) {
            w.over_budget = !w.over_budget;
        }
        if vanishes && !finishing && w.rng.one_in(STEPS as u64) {
            w.conn.dead = true;
        }
        w.server_turn().map_err(broken)?;
        if w.end.is_some() {
            // The connection sends what it holds, then the client reads.
            w.conn.open_for = usize::MAX;
            for _ in 0..10_000 {
                w.conn.flush();
            }
        }
        w.check_received().map_err(broken)?;
        w.check_bounds().map_err(broken)?;
        if w.end.is_some() {
            return w.check_end().map_err(broken);
        }
    }
    Err(Broken {
        step: STEPS + FINISH_STEPS,
        what: format!(
            "no end with a client that reads: {} of {} bytes received, {} queued, paused {}",
            w.received,
            w.written,
            w.conn.frames.len(),
            w.paused
        ),
    })
}

#[test]
fn sim_output() {
    let n = run("output", schedule);
    assert!(n > 0);
}
