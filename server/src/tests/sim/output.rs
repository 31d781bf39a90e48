//! A command's output on its way to the client, under a simulated world:
//! the real pump (process/pump.rs) reads the command's two real pipes,
//! stdout and stderr, into one simulated connection, as server/output.rs
//! drives it.
//!
//! The world: the command writes chunks of any size on either stream when
//! its pipe has room, and closes each in its own time; the connection's
//! socket has room for any amount each turn, or none, takes as much of
//! the queue as it has room for, and once a write filled it says so only
//! when it becomes writable again (epoll's edge);
//! a read of a pipe may be interrupted (`EINTR`) or short; the peer may
//! vanish; an output limit may apply. The server pumps a pipe
//! when it is readable (the two in either order), stops it at `Paused`
//! until the socket has drained below the queue limit and memory is no
//! longer short (as `pipes_to_resume` and budget.rs's `check_budget`), and
//! flushes on writable.
//!
//! After every step: what the client has received decodes as whole frames
//! of the command's id, and each stream's is exactly the start of what the
//! command wrote there, in order (a frame cut, interleaved with another or
//! put on the wrong stream shows); the queue stays within its limit and
//! one read. At the end: all of it arrived (or exactly the limit, with
//! `Cut` said, or the peer was gone); and with a client that reads, the end
//! comes (nothing waits for ever on a flush that nobody will make).

use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;

use rexec_proto::{FrameDecoder, OutputStream, ServerMsg};

use rustix::event::PollFlags;
use rustix::io::Errno;

use super::world::{Broken, Rng, run};
use crate::process::{PumpIo, Pumped, Sink};
use crate::splice::Sent;
use crate::splice_in::{Kernel, Os};

/// Steps of mixed activity, then at most this many with a client that
/// reads everything it is sent, to reach the end.
const STEPS: usize = 600;
const FINISH_STEPS: usize = 1_000;
/// The command's id in its frames.
const ID: u32 = 7;

/// The simulated connection: a queue of frames in front of a socket that
/// takes what the world lets it.
struct Conn {
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
        // The socket takes all the queue it has room for (the world decides
        // how much room there is); a write it cannot take all of leaves it
        // full, and only then does it say when it is writable again.
        let n = self.open_for.min(self.frames.len());
        self.taken.extend(self.frames.drain(..n));
        self.open_for -= n;
        if !self.frames.is_empty() {
            self.open_for = 0;
        }
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

/// The kernel the pump reads its pipes through: the real one, except that
/// a read may be interrupted by a signal (`EINTR`, as SIGCHLD does) or
/// return less than the pipe holds.
struct Reads {
    rng: Rng,
}

impl<'a> Kernel<BorrowedFd<'a>> for Reads {
    fn read(&mut self, fd: BorrowedFd<'a>, buf: &mut [u8]) -> Result<usize, Errno> {
        if self.rng.one_in(8) {
            return Err(Errno::INTR);
        }
        let len = if self.rng.one_in(4) {
            self.rng.between(1, buf.len().max(1))
        } else {
            buf.len()
        };
        Os.read(fd, &mut buf[..len])
    }
    fn splice(&mut self, _: BorrowedFd<'a>, _: BorrowedFd<'a>, _: usize) -> Result<usize, Errno> {
        unreachable!("the pump splices through its sink, which cannot here")
    }
    fn poll_out(&mut self, _: BorrowedFd<'a>) -> Result<PollFlags, Errno> {
        unreachable!("the pump never polls")
    }
}

/// Most bytes the command writes at once.
const MOST_WRITTEN: usize = 64 << 10;
/// The command's output repeats every `PERIOD` bytes: a prime, so that a
/// lost, doubled or moved chunk of any usual size shows.
const PERIOD: usize = 251;

/// Where stderr's pattern starts in stdout's: a chunk delivered on the
/// wrong stream shows.
const STDERR_PHASE: usize = 97;

/// The command's output on `stream` from byte `at`, `len` bytes of it
/// (`len` up to [`MOST_WRITTEN`]): a slice of one pattern made once, so
/// that writing and checking are a copy and a comparison, quick even in a
/// debug build.
fn output_at(stream: OutputStream, at: usize, len: usize) -> &'static [u8] {
    let at = match stream {
        OutputStream::Stdout => at,
        OutputStream::Stderr => at + STDERR_PHASE,
    };
    static PATTERN: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let p = PATTERN.get_or_init(|| {
        (0..PERIOD + MOST_WRITTEN)
            .map(|i| (i % PERIOD) as u8)
            .collect()
    });
    &p[at % PERIOD..at % PERIOD + len]
}

/// One of the command's two output pipes, as the world and the server see
/// it.
struct Pipe {
    stream: OutputStream,
    /// The command's end, until it closes it.
    writer: Option<mio::unix::pipe::Sender>,
    written: usize,
    received: usize,
    /// Paused by the pump (backpressure or memory): read again only once
    /// resumed.
    paused: bool,
    /// The pipe became readable (new bytes, or its end) since the pump last
    /// found it empty: epoll's edge, the only thing that wakes the server
    /// for a pipe that is not paused.
    readable: bool,
    /// The pump read its end: the server closed it.
    ended: bool,
}

impl Pipe {
    fn new(stream: OutputStream, writer: mio::unix::pipe::Sender) -> Pipe {
        Pipe {
            stream,
            writer: Some(writer),
            written: 0,
            received: 0,
            paused: false,
            readable: false,
            ended: false,
        }
    }

    /// The command writes a chunk of up to `most` bytes, as much of it as
    /// the pipe takes.
    fn command_writes(&mut self, rng: &mut Rng, most: usize) -> Result<(), String> {
        let Some(tx) = self.writer.as_mut() else {
            return Ok(());
        };
        let len = rng.between(1, most);
        match tx.write(output_at(self.stream, self.written, len)) {
            Ok(n) => {
                self.written += n;
                self.readable = true;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(format!(
                "the server closed the {:?} pipe while the command still writes to it",
                self.stream
            )),
            Err(e) => panic!("the simulation's own pipe: {e}"),
        }
    }

    /// Nothing keeps the pipe from being read but the pipe itself: its
    /// writer gone, yet no edge to say so.
    fn waits_for_its_hangup(&self) -> bool {
        self.writer.is_none() && !self.paused && !self.readable && !self.ended
    }
}

/// Where the schedule stands, as the server and the client see it.
struct Run {
    rng: Rng,
    conn: Conn,
    proc: crate::process::Proc,
    /// Stdout, then stderr: both pumped into the one connection.
    pipes: [Pipe; 2],
    decoder: FrameDecoder,
    out_limit: Option<u64>,
    /// The server's memory budget is spent (budget.rs): pipes with
    /// anything queued wait until it is not; `budget_waiting`: a pipe
    /// paused while it was (budget.rs looks again, and resumes).
    over_budget: bool,
    budget_waiting: bool,
    scratch: Vec<u8>,
    reads: Reads,
    /// How the command's output ended: both pipes `Ended`, or `Cut`, or
    /// `Dead`.
    end: Option<Pumped>,
}

impl Run {
    fn new(seed: u64) -> io::Result<Run> {
        let mut rng = Rng::new(seed);
        let (out_tx, out_rx) = mio::unix::pipe::new()?;
        let (err_tx, err_rx) = mio::unix::pipe::new()?;
        let child = std::process::Command::new("true").spawn()?;
        let conn = Conn {
            frames: Vec::new(),
            taken: Vec::new(),
            owes_writable: false,
            open_for: 0,
            dead: false,
            queue_limit: rng.between(1, 1 << 20),
        };
        let out_limit = rng.one_in(4).then(|| rng.between(0, 400 << 10) as u64);
        let scratch = vec![0u8; rng.between(1, 64 << 10)];
        let reads = Reads {
            rng: Rng::new(rng.next()),
        };
        let now = std::time::Instant::now();
        Ok(Run {
            rng,
            conn,
            proc: crate::process::started_with(out_rx, Some(err_rx), child, now),
            pipes: [
                Pipe::new(OutputStream::Stdout, out_tx),
                Pipe::new(OutputStream::Stderr, err_tx),
            ],
            decoder: FrameDecoder::new(),
            out_limit,
            over_budget: false,
            budget_waiting: false,
            scratch,
            reads,
            end: None,
        })
    }

    /// The server's turn: flush on writable; then, in either order, each
    /// pipe: resumed once the queue drained, pumped while there is more.
    fn server_turn(&mut self) -> Result<(), String> {
        if self.conn.dead && self.end.is_none() && self.rng.one_in(2) {
            // The socket's error event comes first: the server closes the
            // connection (and, with it, the command's pipes).
            self.end = Some(Pumped::Dead);
            return Ok(());
        }
        // What resumes a paused pipe, and nothing else does: the socket's
        // writable event (after it was full), or the budget's look once
        // memory is no longer short (server/output.rs's `resume_pipes`,
        // budget.rs's `check_budget`).
        let writable = self.conn.owes_writable && self.conn.open_for > 0;
        if writable {
            self.conn.owes_writable = false;
            self.conn.flush();
        }
        let budget_look = self.budget_waiting && !self.over_budget;
        self.budget_waiting &= !budget_look;
        let first = self.rng.between(0, 1);
        for k in [first, 1 - first] {
            if self.end.is_none() {
                self.serve_pipe(k, writable || budget_look)?;
            }
        }
        if self.end.is_none() && self.pipes.iter().all(|p| p.ended) {
            self.end = Some(Pumped::Ended);
        }
        Ok(())
    }

    /// Pumps pipe `k` as server/output.rs does, if anything wakes it
    /// (`resume`: what resumes paused pipes happened).
    fn serve_pipe(&mut self, k: usize, resume: bool) -> Result<(), String> {
        let pipe = &mut self.pipes[k];
        let mut resumed = false;
        if pipe.paused && resume && self.conn.frames.len() < self.conn.queue_limit {
            pipe.paused = false;
            resumed = true;
        }
        if pipe.paused || pipe.ended || !(pipe.readable || resumed) {
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
            kernel: &mut self.reads,
        };
        for _ in 0..10_000 {
            match self.proc.pump(pipe.stream, &mut self.conn, &mut io) {
                Pumped::More => continue,
                Pumped::Paused | Pumped::SocketFull => {
                    pipe.paused = true;
                    self.budget_waiting |= self.over_budget;
                    return Ok(());
                }
                Pumped::Idle => {
                    pipe.readable = false;
                    return Ok(());
                }
                Pumped::Ended => {
                    pipe.ended = true;
                    // The server closes the pipe (close_pipe).
                    drop(self.proc.take_pipe(pipe.stream));
                    return Ok(());
                }
                end @ (Pumped::Cut | Pumped::Dead) => {
                    // What is queued goes out as the connection closes.
                    self.end = Some(end);
                    return Ok(());
                }
            }
        }
        Err("the pump said More 10,000 times in a row".into())
    }

    /// Waits (up to 10 s of real time, the only real waiting here) for
    /// pipe `k`'s hangup once the simulated command has closed its end: a
    /// copy of that end in a child forked by another test at that moment
    /// delays it.
    fn await_hangup(&mut self, k: usize) {
        let pipe = &mut self.pipes[k];
        let Some((rx, _)) = self.proc.pipe(pipe.stream) else {
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
            pipe.readable = true;
        }
    }

    /// The client reads what the socket took: whole frames of the
    /// command's output, each stream's exactly the start of what it wrote
    /// there.
    fn check_received(&mut self) -> Result<(), String> {
        self.decoder.feed(&std::mem::take(&mut self.conn.taken));
        loop {
            let (k, data) = match self.decoder.next_message::<ServerMsg>() {
                Ok(Some(ServerMsg::Stdout { id, data })) if id == ID => (0, data),
                Ok(Some(ServerMsg::Stderr { id, data })) if id == ID => (1, data),
                Ok(Some(other)) => return Err(format!("not this command's output: {other:?}")),
                Ok(None) => return Ok(()),
                Err(e) => return Err(format!("the stream does not decode: {e}")),
            };
            let pipe = &mut self.pipes[k];
            let at = pipe.received;
            if at + data.len() > pipe.written
                || data.len() > MOST_WRITTEN
                || data != output_at(pipe.stream, at, data.len())
            {
                return Err(format!(
                    "{} bytes received at {at} of {:?} are not what the command wrote \
                     there ({} bytes)",
                    data.len(),
                    pipe.stream,
                    pipe.written
                ));
            }
            pipe.received += data.len();
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

    fn received(&self) -> usize {
        self.pipes.iter().map(|p| p.received).sum()
    }

    fn written(&self) -> usize {
        self.pipes.iter().map(|p| p.written).sum()
    }

    /// At the end, with everything queued sent: nothing is missing that
    /// the client is not told about.
    fn check_end(&self) -> Result<(), String> {
        let all = self.pipes.iter().all(|p| p.received == p.written);
        match self.end {
            Some(Pumped::Ended) if all => Ok(()),
            Some(Pumped::Cut) if self.out_limit == Some(self.received() as u64) => Ok(()),
            Some(Pumped::Dead) if self.conn.dead => Ok(()),
            end => Err(format!(
                "ended as {end:?} with {} of {} bytes received (limit {:?})",
                self.received(),
                self.written(),
                self.out_limit
            )),
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
        // The command writes on either stream, or closes one.
        for k in 0..2 {
            let pipe = &mut w.pipes[k];
            if (finishing || w.rng.one_in(STEPS as u64 / 3)) && pipe.writer.is_some() {
                pipe.writer = None;
                pipe.readable = true;
            } else if finishing && pipe.waits_for_its_hangup() {
                // Another test's child may hold a copy of the writing end
                // for the moment between its fork and its exec: the pipe's
                // hangup comes (a new edge) when that copy closes.
                w.await_hangup(k);
            } else if w.rng.one_in(3) {
                pipe.command_writes(&mut w.rng, most).map_err(broken)?;
            }
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
            "no end with a client that reads: {} of {} bytes received, {} queued, paused {:?}",
            w.received(),
            w.written(),
            w.conn.frames.len(),
            w.pipes.iter().map(|p| p.paused).collect::<Vec<_>>()
        ),
    })
}

#[test]
fn sim_output() {
    let n = run("output", schedule);
    assert!(n > 0);
}
