//! The pump against a stand-in [`Sink`]: a real pipe on one side, a
//! recorded queue and a switchboard of answers on the other, no socket.

use std::io::Write;
use std::os::fd::BorrowedFd;

use rexec_proto::{FrameDecoder, OutputStream, ServerMsg};

use super::super::Proc;
use super::*;

/// A sink that records what it is given and answers as told.
#[derive(Default)]
struct Fake {
    frames: Vec<u8>,
    sent: Vec<u8>,
    flushes: usize,
    dead: bool,
    blocked: bool,
    /// Blocked while it holds anything (a queue over its limit).
    blocked_while_holding: bool,
    tutorial: bool,
    memory_held: bool,
}

impl Sink for Fake {
    fn peer(&self) -> std::net::SocketAddr {
        "127.0.0.1:1".parse().expect("an address")
    }
    fn is_dead(&self) -> bool {
        self.dead
    }
    fn set_dead(&mut self) {
        self.dead = true;
    }
    fn is_native(&self) -> bool {
        !self.tutorial
    }
    fn queued(&self) -> usize {
        self.frames.len()
    }
    fn frames(&mut self) -> &mut Vec<u8> {
        &mut self.frames
    }
    fn flush(&mut self) {
        self.flushes += 1;
        self.sent.append(&mut self.frames);
    }
    fn output_blocked(&self, _: usize, _: bool, _: bool) -> bool {
        self.blocked || (self.blocked_while_holding && !self.frames.is_empty())
    }
    fn memory_held(&self) -> bool {
        self.memory_held
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

/// A started command (its child `true`, already gone) whose stdout is a
/// pipe the test writes into.
fn started() -> (Proc, mio::unix::pipe::Sender) {
    let (tx, rx) = mio::unix::pipe::new().expect("a pipe");
    let child = std::process::Command::new("true").spawn().expect("true");
    let now = std::time::Instant::now();
    (super::super::started_with(rx, None, child, now), tx)
}

/// What a `PumpIo` borrows, owned by the test.
struct Parts {
    scratch: Vec<u8>,
    big: usize,
    held: usize,
    os: crate::splice_in::Os,
}

impl Default for Parts {
    fn default() -> Parts {
        Parts {
            scratch: vec![0u8; 4096],
            big: 0,
            held: 0,
            os: crate::splice_in::Os,
        }
    }
}

impl Parts {
    /// A pump's view of the server: a 1 MiB queue limit, memory to spare.
    fn io(&mut self, out_limit: Option<u64>) -> PumpIo<'_> {
        PumpIo {
            splice: false,
            queue_limit: 1 << 20,
            out_limit,
            over_budget: false,
            scratch: &mut self.scratch,
            big_pipes: &mut self.big,
            held: &mut self.held,
            kernel: &mut self.os,
        }
    }
}

/// Pumps stdout until it says something other than `More`.
fn pump_until_not_more(p: &mut Proc, sink: &mut Fake, out_limit: Option<u64>) -> Pumped {
    let mut parts = Parts::default();
    let mut io = parts.io(out_limit);
    loop {
        match p.pump(OutputStream::Stdout, sink, &mut io) {
            Pumped::More => continue,
            other => return other,
        }
    }
}

/// The `Stdout` frames in `bytes`, as (id, data) pairs.
fn stdout_frames(bytes: &[u8]) -> Vec<(u32, Vec<u8>)> {
    let mut dec = FrameDecoder::new();
    dec.feed(bytes);
    let mut frames = Vec::new();
    while let Some(msg) = dec.next_message::<ServerMsg>().expect("whole frames") {
        match msg {
            ServerMsg::Stdout { id, data } => frames.push((id, data)),
            other => panic!("not output: {other:?}"),
        }
    }
    assert_eq!(dec.buffered(), 0, "a frame cut short");
    frames
}

#[test]
fn output_becomes_frames_for_its_id_and_goes_out_when_the_pipe_runs_dry() {
    let (mut p, mut tx) = started();
    let mut sink = Fake::default();
    tx.write_all(b"hello, ").unwrap();
    tx.write_all(b"world\n").unwrap();
    assert_eq!(pump_until_not_more(&mut p, &mut sink, None), Pumped::Idle);
    assert!(
        sink.flushes > 0 && sink.frames.is_empty(),
        "flushed when dry"
    );
    let data: Vec<u8> = stdout_frames(&sink.sent)
        .into_iter()
        .inspect(|(id, _)| assert_eq!(*id, 7))
        .flat_map(|(_, d)| d)
        .collect();
    assert_eq!(data, b"hello, world\n");
    drop(tx);
    // (Another test's child may hold a copy of the writing end for the
    // moment between its fork and its exec: `Idle` until it is gone.)
    let end = (0..100_000)
        .map(|_| pump_until_not_more(&mut p, &mut sink, None))
        .find(|step| *step != Pumped::Idle);
    assert_eq!(end, Some(Pumped::Ended));
}

#[test]
fn a_blocked_sink_leaves_the_bytes_in_the_pipe() {
    let (mut p, mut tx) = started();
    let mut sink = Fake {
        blocked: true,
        ..Fake::default()
    };
    tx.write_all(b"waits").unwrap();
    assert_eq!(pump_until_not_more(&mut p, &mut sink, None), Pumped::Paused);
    assert!(sink.sent.is_empty() && sink.frames.is_empty());
    assert!(p.pipes_hold_output(), "the pipe, not rexecd, holds them");
    // Unblocked, they come out whole.
    sink.blocked = false;
    assert_eq!(pump_until_not_more(&mut p, &mut sink, None), Pumped::Idle);
    assert_eq!(stdout_frames(&sink.sent), vec![(7, b"waits".to_vec())]);
}

#[test]
fn what_was_read_is_written_before_the_pipe_waits() {
    // The sink blocks once it holds anything (as a connection over the
    // memory budget, or under a queue limit below one batch): the chunk
    // read before that is written now, not left for a writable event that
    // a socket never written to will not send.
    let (mut p, mut tx) = started();
    let mut sink = Fake::default();
    tx.write_all(b"read, then blocked").unwrap();
    let mut parts = Parts::default();
    let mut io = parts.io(None);
    assert_eq!(
        p.pump(OutputStream::Stdout, &mut sink, &mut io),
        Pumped::More
    );
    assert!(!sink.frames.is_empty() && sink.flushes == 0, "batched");
    sink.blocked = true;
    assert_eq!(
        p.pump(OutputStream::Stdout, &mut sink, &mut io),
        Pumped::Paused
    );
    assert_eq!(sink.flushes, 1, "written before the pause");
    assert_eq!(
        stdout_frames(&sink.sent),
        vec![(7, b"read, then blocked".to_vec())]
    );
}

#[test]
fn a_pipe_waits_only_while_its_socket_holds_something_back() {
    // Over its limit until written, and the socket takes it all: nothing
    // to wait for (no writable event would come for a socket never full),
    // so the pump reads on.
    let (mut p, mut tx) = started();
    let mut sink = Fake::default();
    let mut parts = Parts::default();
    let mut io = parts.io(None);
    tx.write_all(b"first ").unwrap();
    assert_eq!(
        p.pump(OutputStream::Stdout, &mut sink, &mut io),
        Pumped::More
    );
    sink.blocked_while_holding = true;
    tx.write_all(b"second").unwrap();
    assert_eq!(
        p.pump(OutputStream::Stdout, &mut sink, &mut io),
        Pumped::More
    );
    assert_eq!(sink.flushes, 1);
    let data: Vec<u8> = stdout_frames(&sink.sent)
        .into_iter()
        .flat_map(|(_, d)| d)
        .collect();
    assert_eq!(data, b"first ");
    assert_eq!(stdout_frames(&sink.frames), vec![(7, b"second".to_vec())]);
}

#[test]
fn a_dead_sink_reads_nothing_more() {
    let (mut p, mut tx) = started();
    let mut sink = Fake {
        dead: true,
        ..Fake::default()
    };
    tx.write_all(b"for nobody").unwrap();
    assert_eq!(pump_until_not_more(&mut p, &mut sink, None), Pumped::Dead);
    assert!(p.pipes_hold_output());
}

#[test]
fn the_output_limit_cuts_at_exactly_the_limit_and_flushes_the_last_chunk() {
    let (mut p, mut tx) = started();
    let mut sink = Fake::default();
    tx.write_all(&[b'x'; 100]).unwrap();
    assert_eq!(
        pump_until_not_more(&mut p, &mut sink, Some(60)),
        Pumped::Cut
    );
    assert!(p.truncated);
    assert!(sink.frames.is_empty(), "the cut chunk went out at once");
    let sent: usize = stdout_frames(&sink.sent).iter().map(|(_, d)| d.len()).sum();
    assert_eq!(sent, 60);
}

#[test]
fn a_tutorial_reply_over_the_memory_budget_is_cut_and_says_so() {
    let (mut p, mut tx) = started();
    let mut sink = Fake {
        tutorial: true,
        ..Fake::default()
    };
    // A whole reply gathered up to the batch size (through a pipe that
    // holds less: pumped whenever it is full), then memory runs short.
    let big = vec![b'y'; FLUSH_BATCH];
    let mut left = &big[..];
    while !left.is_empty() {
        match tx.write(left) {
            Ok(n) => left = &left[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert_eq!(pump_until_not_more(&mut p, &mut sink, None), Pumped::Idle);
            }
            Err(e) => panic!("writing: {e}"),
        }
    }
    assert_eq!(pump_until_not_more(&mut p, &mut sink, None), Pumped::Idle);
    assert_eq!(p.tutorial_out.len(), FLUSH_BATCH);
    tx.write_all(b"more").unwrap();
    sink.memory_held = true;
    assert_eq!(pump_until_not_more(&mut p, &mut sink, None), Pumped::Cut);
    assert_eq!(p.tutorial_out.len(), FLUSH_BATCH, "nothing past the cut");
    let note = String::from_utf8_lossy(&p.tutorial_err).into_owned();
    assert!(note.contains("memory budget"), "{note}");
    assert!(sink.sent.is_empty(), "a tutorial reply is no frames");
}
