//! Zero-copy input under a simulated kernel: the real `move_chunk` and
//! `socket_to_pipe` (splice_in.rs), driven as server/stdin_splice.rs drives
//! them, against a socket and a pipe whose every answer comes from the
//! seed.
//!
//! The world: a client sends one large `Stdin` chunk in pieces of any size,
//! sometimes with a TCP urgent mark between two pieces (splice stops there;
//! a read steps over it), and may shut its side down after the chunk or
//! vanish in the middle of it; the command reads its stdin in pieces of any
//! size, or closes it; signals interrupt any system call (`EINTR`, in
//! storms). The loop is edge-triggered, as rexecd's is: once it waits for
//! the socket or the pipe, only a new arrival or a drained pipe wakes it.
//!
//! After every step: the bytes the command has, then those in its pipe,
//! then those queued for it are exactly the chunk's first bytes, in order;
//! an error never closes the connection for what is not one; "the socket
//! is empty" is never said while it holds readable bytes, nor "the pipe is
//! full" while it has room (either would wait for an edge that never
//! comes); "the client ended" only when it did. At the end every byte is
//! the command's, or the client went away first.

use std::collections::VecDeque;

use rustix::event::PollFlags;
use rustix::io::Errno;

use super::world::{Broken, Rng, run};
use crate::splice_in::{Inbound, Kernel, Moved, move_chunk};

/// The simulated descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fd {
    Socket,
    Pipe,
}

/// The kernel's side: the socket's receive queue and the command's pipe.
struct SimKernel {
    rng: Rng,
    /// Every byte of the chunk, in order.
    data: Vec<u8>,
    /// How many have arrived, and how many the server has taken.
    arrived: usize,
    taken: usize,
    /// Urgent marks ahead, as stream offsets: splice stops at one.
    marks: VecDeque<usize>,
    /// The client shut down its side after `arrived` bytes.
    ended: bool,
    pipe: VecDeque<u8>,
    cap: usize,
    reader_closed: bool,
    /// What the command has read from its pipe.
    got: Vec<u8>,
    /// One call in this many is interrupted by a signal.
    eintr: u64,
    /// Bytes taken but queued for the command, not yet in its pipe (the
    /// loop's, told to the kernel so it can see a splice overtake them).
    queued: usize,
    /// The first thing seen out of order.
    disorder: Option<String>,
}

impl SimKernel {
    fn interrupted(&mut self) -> bool {
        self.rng.one_in(self.eintr)
    }

    fn readable(&self) -> usize {
        self.arrived - self.taken
    }

    /// Bytes that have entered the command's pipe so far.
    fn piped(&self) -> usize {
        self.got.len() + self.pipe.len()
    }
}

impl Kernel<Fd> for SimKernel {
    fn splice(&mut self, from: Fd, to: Fd, len: usize) -> Result<usize, Errno> {
        assert_eq!(
            (from, to),
            (Fd::Socket, Fd::Pipe),
            "splice from the socket into the pipe"
        );
        if self.interrupted() {
            return Err(Errno::INTR);
        }
        if self.reader_closed {
            return Err(Errno::PIPE);
        }
        // tcp_splice_read moves nothing at an urgent mark, nor from an
        // empty queue: EAGAIN while the stream lives, 0 once it ended.
        if self.readable() == 0 || self.marks.front() == Some(&self.taken) {
            return if self.ended { Ok(0) } else { Err(Errno::AGAIN) };
        }
        let room = self.cap - self.pipe.len();
        if room == 0 {
            return Err(Errno::AGAIN);
        }
        let before_mark = self.marks.front().map_or(usize::MAX, |m| m - self.taken);
        let most = len.min(self.readable()).min(room).min(before_mark);
        let n = self.rng.between(1, most);
        if self.piped() != self.taken && self.disorder.is_none() {
            self.disorder = Some(format!(
                "spliced bytes {}.. into the pipe ahead of {} bytes read before them and still queued",
                self.taken, self.queued
            ));
        }
        self.pipe.extend(&self.data[self.taken..self.taken + n]);
        self.taken += n;
        Ok(n)
    }

    fn read(&mut self, fd: Fd, buf: &mut [u8]) -> Result<usize, Errno> {
        assert_eq!(fd, Fd::Socket, "reads are of the socket");
        if self.interrupted() {
            return Err(Errno::INTR);
        }
        if self.readable() == 0 {
            return if self.ended { Ok(0) } else { Err(Errno::AGAIN) };
        }
        let n = self.rng.between(1, buf.len().min(self.readable()));
        buf[..n].copy_from_slice(&self.data[self.taken..self.taken + n]);
        // A read steps over the marks it crosses.
        let (from, to) = (self.taken, self.taken + n);
        self.marks.retain(|&m| !(from <= m && m < to));
        self.taken = to;
        Ok(n)
    }

    fn poll_out(&mut self, fd: Fd) -> Result<PollFlags, Errno> {
        assert_eq!(fd, Fd::Pipe, "only the pipe is polled");
        if self.interrupted() {
            return Err(Errno::INTR);
        }
        Ok(match () {
            _ if self.reader_closed => PollFlags::OUT | PollFlags::ERR,
            _ if self.pipe.len() < self.cap => PollFlags::OUT,
            _ => PollFlags::empty(),
        })
    }
}

/// What the loop waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Nothing,
    Socket,
    Pipe,
    Done,
    Gone,
}

/// Most steps a schedule takes; past half of them the world stops being
/// difficult (everything is sent, the command reads), so a correct loop
/// always finishes.
const STEPS: usize = 20_000;

/// One schedule.
fn schedule(seed: u64) -> Result<(), Broken> {
    let mut rng = Rng::new(seed);
    let total = rng.between(16 << 10, 512 << 10);
    let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    let mut k = SimKernel {
        rng: Rng::new(seed ^ 0x5eed),
        data,
        arrived: 0,
        taken: 0,
        marks: VecDeque::new(),
        ended: false,
        pipe: VecDeque::new(),
        cap: rng.between(1 << 10, 64 << 10),
        reader_closed: false,
        got: Vec::new(),
        eintr: 50,
        queued: 0,
        disorder: None,
    };
    let end_after = rng.one_in(3);
    let mut chunk = Inbound {
        id: 1,
        remaining: total,
    };
    // Bytes read instead of spliced, for the command before the rest.
    let mut queued: Vec<u8> = Vec::new();
    let mut stdin_closed = false;
    let mut scratch = vec![0u8; 64 << 10];
    let mut wait = Wait::Nothing;
    for step in 0..STEPS {
        let calm = step > STEPS / 2;
        let broken = |what: String| Broken { step, what };
        move_world(&mut rng, &mut k, &mut wait, total, end_after, calm);
        if wait == Wait::Nothing {
            wait = turn(
                &mut k,
                &mut chunk,
                &mut queued,
                &mut stdin_closed,
                &mut scratch,
            )
            .map_err(broken)?;
            if let Some(what) = wrong_wait(&k, wait, total) {
                return Err(broken(what));
            }
        }
        k.queued = queued.len();
        if let Some(what) = k.disorder.take() {
            return Err(broken(what));
        }
        if !k.reader_closed && k.piped() + queued.len() != k.taken {
            return Err(broken(format!(
                "{} bytes taken, but {} reached the command's pipe and {} are queued",
                k.taken,
                k.piped(),
                queued.len()
            )));
        }
        match wait {
            Wait::Done if k.reader_closed || (k.taken == total && queued.is_empty()) => {
                return Ok(());
            }
            Wait::Done => {
                return Err(broken(format!(
                    "done with {} of {total} bytes taken",
                    k.taken
                )));
            }
            Wait::Gone => return Ok(()),
            _ => {}
        }
    }
    Err(Broken {
        step: STEPS,
        what: format!(
            "stalled waiting for {wait:?}: {} of {total} bytes arrived, {} taken, {} in the pipe, {} queued",
            k.arrived,
            k.taken,
            k.pipe.len(),
            queued.len()
        ),
    })
}

/// The world's move in one step: the client sends (with an urgent mark,
/// perhaps), the command reads or closes its stdin, signals come in
/// storms, the client vanishes; in the calm second half, everything left
/// arrives and is read. What it does may wake the loop.
fn move_world(
    rng: &mut Rng,
    k: &mut SimKernel,
    wait: &mut Wait,
    total: usize,
    end_after: bool,
    calm: bool,
) {
    // The world moves; what it does may wake the loop.
    match rng.below(9) {
        0 | 1 if k.arrived < total && !k.ended => {
            let n = rng.between(1, 64 << 10).min(total - k.arrived);
            k.arrived += n;
            if k.arrived < total && rng.one_in(5) {
                k.marks.push_back(k.arrived);
            }
            if k.arrived == total && end_after {
                k.ended = true;
            }
            if *wait == Wait::Socket {
                *wait = Wait::Nothing;
            }
        }
        2 | 3 if !k.pipe.is_empty() => {
            let n = rng.between(1, k.pipe.len());
            let drained: Vec<u8> = k.pipe.drain(..n).collect();
            k.got.extend(drained);
            if *wait == Wait::Pipe {
                *wait = Wait::Nothing;
            }
        }
        4 if !calm => k.eintr = if rng.one_in(2) { 2 } else { 50 },
        5 if !calm && !k.ended && rng.one_in(60) => {
            // The client goes away in the middle of the chunk.
            k.ended = true;
            if *wait == Wait::Socket {
                *wait = Wait::Nothing;
            }
        }
        6 if !calm && !k.reader_closed && rng.one_in(80) => {
            // The command closes its stdin: a pipe without a reader
            // polls writable, which wakes a loop waiting on it.
            k.reader_closed = true;
            if *wait == Wait::Pipe {
                *wait = Wait::Nothing;
            }
        }
        _ if calm => {
            // Everything else comes in the end.
            k.eintr = 50;
            if k.arrived < total && !k.ended {
                k.arrived = total;
                if *wait == Wait::Socket {
                    *wait = Wait::Nothing;
                }
            }
            let drained: Vec<u8> = k.pipe.drain(..).collect();
            k.got.extend(drained);
            if *wait == Wait::Pipe {
                *wait = Wait::Nothing;
            }
        }
        _ => {}
    }
}

/// One turn of the loop for the connection, as server/stdin_splice.rs
/// takes it: what is queued for the command goes first, then the chunk
/// moves until something stops it. What the loop waits for next, or why
/// the connection was closed.
fn turn(
    k: &mut SimKernel,
    chunk: &mut Inbound,
    queued: &mut Vec<u8>,
    stdin_closed: &mut bool,
    scratch: &mut [u8],
) -> Result<Wait, String> {
    loop {
        if k.reader_closed {
            // Nobody reads it: what was queued is dropped with the pipe.
            *stdin_closed = true;
            queued.clear();
        }
        if !queued.is_empty() {
            let n = queued.len().min(k.cap - k.pipe.len());
            let at = k.piped();
            if queued[..n] != k.data[at..at + n] {
                return Err(format!(
                    "the queued bytes written at {at} are not the chunk's"
                ));
            }
            k.pipe.extend(queued.drain(..n));
            if !queued.is_empty() {
                return Ok(Wait::Pipe);
            }
        }
        k.queued = queued.len();
        let pipe = (!*stdin_closed).then_some(Fd::Pipe);
        let (moved, _heard) = move_chunk(k, chunk, Fd::Socket, pipe, scratch)
            .map_err(|e| format!("the connection was closed for an error: {e}"))?;
        match moved {
            Moved::Done => return Ok(Wait::Done),
            Moved::SocketEmpty => return Ok(Wait::Socket),
            Moved::PipeFull => return Ok(Wait::Pipe),
            Moved::PipeClosed => *stdin_closed = true,
            Moved::Read(n) if !*stdin_closed => {
                if scratch[..n] != k.data[k.taken - n..k.taken] {
                    return Err(format!("the {n} bytes read are not the chunk's next ones"));
                }
                queued.extend_from_slice(&scratch[..n]);
                k.queued = queued.len();
            }
            Moved::Read(_) => {}
            Moved::Ended => return Ok(Wait::Gone),
        }
    }
}

/// Whether the loop now waits for something that will not wake it, or
/// says the client ended when it did not.
fn wrong_wait(k: &SimKernel, wait: Wait, total: usize) -> Option<String> {
    match wait {
        Wait::Socket if k.readable() > 0 => Some(format!(
            "waits for the socket with {} bytes readable in it (marks at {:?}): no edge will come",
            k.readable(),
            k.marks
        )),
        Wait::Pipe if k.pipe.len() < k.cap && !k.reader_closed => Some(format!(
            "waits for the pipe with {} bytes of room: no edge will come",
            k.cap - k.pipe.len()
        )),
        Wait::Gone if !k.ended || k.readable() > 0 => Some(format!(
            "took the stream for ended with {} of {total} bytes taken and {} readable",
            k.taken,
            k.readable()
        )),
        _ => None,
    }
}

#[test]
fn sim_inbound() {
    let n = run("inbound", schedule);
    assert!(n > 0);
}
