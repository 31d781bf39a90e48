//! The connection's decisions on plain state, with time passed in: no
//! sleeps. A loopback socket pair stands in for the client.
use super::*;
use crate::splice_in::Moved;
use rexec_proto::auth::NONCE_LEN;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::time::Duration;

const IDLE: Duration = Duration::from_secs(60);

/// A native connection accepted at `now`, and the client's end.
fn pair(now: Instant) -> (Connection, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (server, peer) = listener.accept().expect("accept");
    server.set_nonblocking(true).expect("nonblocking");
    let wire = Wire::Native(ConnProtocol::new(None, [0; NONCE_LEN]));
    let stream = Stream::Tcp(mio::net::TcpStream::from_std(server));
    let conn = Connection::new(stream, Token(9), peer, wire, 1 << 20, None, now);
    (conn, client)
}

/// Reads what the client sent into the decoder.
fn read_all(conn: &mut Connection, want: usize) {
    let mut scratch = vec![0; 1024];
    let mut got = 0;
    let mut tries = 0;
    while got < want {
        match conn.read_input(&mut scratch, Instant::now()) {
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Loopback: the bytes are on their way; wait for them
                // with a poll, not a guess.
                tries += 1;
                assert!(tries < 1000, "the client's bytes never arrived");
                let fd = conn.stream.fd().expect("a socket");
                let mut pfd = [rustix::event::PollFd::new(
                    &fd,
                    rustix::event::PollFlags::IN,
                )];
                let _ = rustix::event::poll(&mut pfd, None);
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_time_and_not_before() {
    let t0 = Instant::now();
    let (conn, _client) = pair(t0);
    assert_eq!(
        conn.idle_deadline(t0 + IDLE / 2, IDLE),
        Deadline::At(t0 + IDLE)
    );
    assert_eq!(conn.idle_deadline(t0 + IDLE, IDLE), Deadline::Expired);
}

#[test]
fn a_connection_running_a_command_is_never_idle() {
    let t0 = Instant::now();
    let (mut conn, _client) = pair(t0);
    conn.add_command(1, ProcId(1));
    let late = t0 + 10 * IDLE;
    assert_eq!(conn.idle_deadline(late, IDLE), Deadline::At(late + IDLE));
    conn.remove_command(1, ProcId(1));
    assert_eq!(conn.idle_deadline(late, IDLE), Deadline::Expired);
}

#[test]
fn a_frame_that_never_completes_runs_out_its_deadline() {
    let t0 = Instant::now();
    let (mut conn, mut client) = pair(t0);
    let limit = Duration::from_secs(5);
    assert_eq!(conn.frame_deadline(t0, limit), Deadline::None);
    // Three bytes of a four-byte length header: a frame has begun.
    client.write_all(&[0, 0, 0]).unwrap();
    read_all(&mut conn, 3);
    assert!(conn.track_partial_frame(false, t0), "a frame began");
    assert!(
        !conn.track_partial_frame(false, t0 + limit / 2),
        "the same one"
    );
    assert_eq!(
        conn.frame_deadline(t0 + limit / 2, limit),
        Deadline::At(t0 + limit)
    );
    assert_eq!(conn.frame_deadline(t0 + limit, limit), Deadline::Expired);
}

#[test]
fn a_frame_we_stopped_reading_is_not_timed_while_we_hold_it() {
    let t0 = Instant::now();
    let (mut conn, mut client) = pair(t0);
    let limit = Duration::from_secs(5);
    client.write_all(&[0, 0, 0]).unwrap();
    read_all(&mut conn, 3);
    assert!(conn.track_partial_frame(false, t0));
    // A command's stdin is full (its disk is slow): we stopped reading.
    conn.hold(Hold::StdinFull);
    let late = t0 + 10 * limit;
    assert_eq!(
        conn.frame_deadline(late, limit),
        Deadline::At(late + limit),
        "looked at again later, not expired"
    );
    // Held because the client reads no replies: that is the client's
    // doing, and the clock runs.
    conn.release(Hold::StdinFull, t0 + limit / 4);
    conn.hold(Hold::RepliesUnread);
    assert!(
        matches!(conn.frame_deadline(t0 + limit / 2, limit), Deadline::At(due) if due > t0 + limit),
        "the clock restarted when the hold ended"
    );
    let restarted = conn.partial_since.unwrap();
    assert_eq!(
        conn.frame_deadline(restarted + limit, limit),
        Deadline::Expired
    );
}

#[test]
fn the_handshake_deadline_moves_with_a_held_back_hello() {
    let t0 = Instant::now();
    let (mut conn, _client) = pair(t0);
    let due = t0 + Duration::from_secs(10);
    conn.begin_startup(due);
    assert!(conn.in_startup());
    assert_eq!(conn.handshake_deadline(t0), Deadline::At(due));
    let later = due + Duration::from_secs(3);
    assert_eq!(conn.extend_startup(later), Some(later));
    assert_eq!(conn.handshake_deadline(due), Deadline::At(later));
    assert_eq!(conn.handshake_deadline(later), Deadline::Expired);
    assert!(conn.leave_startup());
    assert!(!conn.leave_startup(), "counted once");
    assert_eq!(conn.extend_startup(later), None);
}

#[test]
fn any_hold_stops_input_until_every_hold_is_released() {
    let (mut conn, _client) = pair(Instant::now());
    assert!(conn.may_read());
    assert!(conn.hold(Hold::StdinFull));
    assert!(!conn.hold(Hold::StdinFull), "already held");
    assert!(conn.hold(Hold::Memory));
    assert!(!conn.may_read());
    assert!(conn.release(Hold::StdinFull, Instant::now()));
    assert!(!conn.may_read(), "still held for memory");
    assert!(conn.release(Hold::Memory, Instant::now()));
    assert!(!conn.release(Hold::Memory, Instant::now()));
    assert!(conn.may_read());
}

#[test]
fn output_waits_over_the_queue_limit_or_for_memory() {
    let (mut conn, _client) = pair(Instant::now());
    let limit = 1024;
    assert!(!conn.output_blocked(limit, false, false));
    conn.frames().extend_from_slice(&[0; 1024]);
    assert!(
        conn.output_blocked(limit, false, false),
        "queue at its limit"
    );
    conn.pause_pipe(ProcId(1), OutputStream::Stdout);
    conn.pause_pipe(ProcId(1), OutputStream::Stdout);
    assert!(
        conn.pipes_to_resume(limit).is_empty(),
        "nothing resumes while the queue is full"
    );
    conn.flush(); // the client's socket takes 1 KiB at once
    assert!(!conn.output_blocked(limit, false, false));
    conn.hold(Hold::Memory);
    assert!(conn.output_blocked(limit, false, false), "held for memory");
    assert!(conn.pipes_to_resume(limit).is_empty());
    conn.release(Hold::Memory, Instant::now());
    assert_eq!(
        conn.pipes_to_resume(limit),
        [(ProcId(1), OutputStream::Stdout)],
        "paused once, resumed once"
    );
}

#[test]
fn lingering_shuts_our_side_and_reads_until_the_client_closes() {
    let (mut conn, mut client) = pair(Instant::now());
    client.write_all(b"late bytes").unwrap();
    let mut scratch = vec![0; 1024];
    let mut step = conn.start_linger(&mut scratch);
    assert_eq!(conn.state(), State::Lingering);
    // The client sees the end of our stream (after the error it got).
    let mut buf = [0u8; 8];
    assert_eq!(client.read(&mut buf).unwrap(), 0);
    drop(client);
    let fd = conn
        .stream
        .fd()
        .expect("a socket")
        .try_clone_to_owned()
        .unwrap();
    while step == Lingered::Waiting {
        let mut pfd = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        let _ = rustix::event::poll(&mut pfd, None);
        step = conn.linger(&mut scratch);
    }
    assert_eq!(step, Lingered::Done);
}

fn say_hello(conn: &mut Connection, version: u16) {
    let hello = rexec_proto::ClientMsg::Hello(rexec_proto::ClientHello {
        protocol: version,
        software: "t".into(),
    });
    let proto = conn.protocol().expect("native");
    assert!(matches!(
        proto.on_message(hello),
        crate::protocol::Action::SendHello { .. }
    ));
}

#[test]
fn a_silent_client_is_probed_then_given_up_after_three_periods() {
    let t0 = Instant::now();
    let every = Duration::from_secs(30);
    let (mut conn, mut client) = pair(t0);
    // During the handshake: no probes (it has its own deadline).
    assert!(matches!(
        conn.keepalive(t0 + every, every),
        Keepalive::Later(_)
    ));
    say_hello(&mut conn, rexec_proto::PROTOCOL_VERSION);
    assert_eq!(
        conn.keepalive(t0 + every / 2, every),
        Keepalive::Later(t0 + every)
    );
    assert_eq!(
        conn.keepalive(t0 + every, every),
        Keepalive::Probe {
            seq: 1,
            next: t0 + 2 * every
        }
    );
    assert_eq!(
        conn.keepalive(t0 + 2 * every, every),
        Keepalive::Probe {
            seq: 2,
            next: t0 + 3 * every
        }
    );
    assert_eq!(
        conn.keepalive(t0 + 3 * every, every),
        Keepalive::Gone(3 * every)
    );
    // A byte from the client (a probe's answer, say) starts over.
    client.write_all(&[0]).unwrap();
    let t1 = t0 + 3 * every;
    let mut scratch = [0u8; 16];
    loop {
        match conn.read_input(&mut scratch, t1) {
            Ok(n) if n > 0 => break,
            _ => {
                let fd = conn.stream.fd().expect("a socket");
                let mut pfd = [rustix::event::PollFd::new(
                    &fd,
                    rustix::event::PollFlags::IN,
                )];
                let _ = rustix::event::poll(&mut pfd, None);
            }
        }
    }
    assert_eq!(
        conn.keepalive(t1 + every / 2, every),
        Keepalive::Later(t1 + every)
    );
}

#[test]
fn a_client_whose_input_we_hold_is_not_silent() {
    let t0 = Instant::now();
    let every = Duration::from_secs(30);
    let (mut conn, _client) = pair(t0);
    say_hello(&mut conn, rexec_proto::PROTOCOL_VERSION);
    conn.hold(Hold::StdinFull);
    let late = t0 + 10 * every;
    assert_eq!(
        conn.keepalive(late, every),
        Keepalive::Probe {
            seq: 1,
            next: late + every
        },
        "probed (so that it hears from us), never given up"
    );
    conn.release(Hold::StdinFull, Instant::now());
    assert_eq!(
        conn.keepalive(late + 3 * every, every),
        Keepalive::Gone(3 * every),
        "counted from when we last held it"
    );
}

#[test]
fn no_probe_piles_up_behind_replies_a_client_does_not_read() {
    let t0 = Instant::now();
    let every = Duration::from_secs(30);
    let (mut conn, _client) = pair(t0);
    say_hello(&mut conn, rexec_proto::PROTOCOL_VERSION);
    conn.hold(Hold::RepliesUnread);
    conn.frames().extend_from_slice(b"replies it does not read");
    let queued = conn.queued();
    for n in 1..100 {
        let at = t0 + n * every;
        assert_eq!(conn.keepalive(at, every), Keepalive::Later(at + every));
    }
    assert_eq!(conn.queued(), queued, "nothing added for it to read");
}

#[test]
fn a_version_3_client_is_never_probed() {
    let t0 = Instant::now();
    let (mut conn, _client) = pair(t0);
    say_hello(&mut conn, rexec_proto::OLDEST_PROTOCOL);
    let every = Duration::from_secs(30);
    assert_eq!(conn.keepalive(t0 + 10 * every, every), Keepalive::Off);
}

/// Waits (a poll, not a guess) until `fd` is ready for `flags`.
fn wait_ready(fd: std::os::fd::BorrowedFd<'_>, flags: rustix::event::PollFlags) {
    let mut pfd = [rustix::event::PollFd::new(&fd, flags)];
    let _ = rustix::event::poll(&mut pfd, None);
}

#[test]
fn a_large_stdin_chunk_is_moved_or_dropped_and_framing_resumes_after_it() {
    use rexec_proto::ClientMsg;
    use rustix::event::PollFlags;
    let t0 = Instant::now();
    let (mut conn, client) = pair(t0);
    say_hello(&mut conn, rexec_proto::PROTOCOL_VERSION);
    conn.state = State::Open;
    let first: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut wire = Vec::new();
    for m in [
        ClientMsg::Stdin {
            id: 5,
            data: first.clone(),
        },
        ClientMsg::StdinEof { id: 5 },
        ClientMsg::Stdin {
            id: 6,
            data: vec![1; 100_000],
        },
        ClientMsg::Cancel { id: 6 },
    ] {
        encode_frame(&m, &mut wire);
    }
    let writer = std::thread::spawn(move || {
        let mut client = client;
        client.write_all(&wire).unwrap();
        client
    });

    // A little is read; the rest of the chunk is spliced into a pipe that
    // a reader drains.
    read_all(&mut conn, 1000);
    let start = conn.inbound_start().expect("a chunk worth splicing");
    assert_eq!(start.id, 5);
    let head = start.data.to_vec();
    assert_eq!(head.len() + start.remaining, first.len());
    let chunk = crate::splice_in::Inbound::from(&start);
    conn.begin_inbound(chunk);
    assert_eq!(conn.decoder.buffered(), 0, "its bytes left the decoder");
    let (mut rx, tx) = std::io::pipe().unwrap();
    rustix::fs::fcntl_setfl(&tx, rustix::fs::OFlags::NONBLOCK).unwrap();
    let want = first.len() - head.len();
    let reader = std::thread::spawn(move || {
        let mut got = vec![0; want];
        rx.read_exact(&mut got).unwrap();
        got
    });
    let mut scratch = vec![0; 1024];
    loop {
        match conn.move_inbound(Some(tx.as_fd()), &mut scratch, Instant::now()) {
            Ok(Moved::Done) => break,
            Ok(Moved::SocketEmpty) => {
                wait_ready(conn.stream.fd().expect("a socket"), PollFlags::IN)
            }
            Ok(Moved::PipeFull) => wait_ready(tx.as_fd(), PollFlags::OUT),
            other => panic!("{other:?}"),
        }
    }
    assert!(conn.inbound().is_none());
    assert!(
        reader.join().unwrap() == first[head.len()..],
        "the pipe got the chunk's rest"
    );

    // Framing resumes just after it.
    read_all(&mut conn, 1);
    assert_eq!(
        conn.next_message(Instant::now()).unwrap(),
        Some(ClientMsg::StdinEof { id: 5 })
    );
    // With no pipe (the command closed its stdin) the rest is dropped.
    let chunk = loop {
        if let Some(p) = conn.inbound_start() {
            break crate::splice_in::Inbound::from(&p);
        }
        read_all(&mut conn, 1);
    };
    assert_eq!(chunk.id, 6);
    conn.begin_inbound(chunk);
    loop {
        match conn.move_inbound(None, &mut scratch, Instant::now()) {
            Ok(Moved::Done) => break,
            Ok(Moved::SocketEmpty) => {
                wait_ready(conn.stream.fd().expect("a socket"), PollFlags::IN)
            }
            other => panic!("{other:?}"),
        }
    }
    let _client = writer.join().unwrap();
    read_all(&mut conn, 1);
    assert_eq!(
        conn.next_message(Instant::now()).unwrap(),
        Some(ClientMsg::Cancel { id: 6 })
    );
}

/// Reads until `hear` says something other than `Bytes`, waiting with a
/// poll (not a guess) for loopback bytes on their way.
fn hear_until_not_bytes(conn: &mut Connection, scratch: &mut [u8]) -> Heard {
    loop {
        match conn.hear(scratch, Instant::now()) {
            Heard::Bytes => continue,
            other => return other,
        }
    }
}

#[test]
fn buffered_input_comes_as_messages_then_a_need_for_bytes() {
    use rexec_proto::ClientMsg;
    let t0 = Instant::now();
    let (mut conn, mut client) = pair(t0);
    let mut wire = Vec::new();
    encode_frame(&ClientMsg::Ping { seq: 1 }, &mut wire);
    encode_frame(&ClientMsg::Ping { seq: 2 }, &mut wire);
    wire.extend_from_slice(&[0, 0]); // half of a header
    client.write_all(&wire).unwrap();
    read_all(&mut conn, wire.len());
    assert!(matches!(
        conn.next_input(t0, 1 << 20, false),
        Incoming::Defer
    ));
    assert!(matches!(
        conn.next_input(t0, 1 << 20, true),
        Incoming::Message(ClientMsg::Ping { seq: 1 })
    ));
    assert_eq!(conn.state(), State::Open, "its first frame opened it");
    assert!(matches!(
        conn.next_input(t0, 1 << 20, true),
        Incoming::Message(ClientMsg::Ping { seq: 2 })
    ));
    assert!(matches!(
        conn.next_input(t0, 1 << 20, true),
        Incoming::NeedBytes
    ));
}

#[test]
fn a_client_that_does_not_read_our_replies_is_not_read() {
    let t0 = Instant::now();
    let (mut conn, _client) = pair(t0);
    conn.frames().extend_from_slice(&[0; 2048]);
    assert!(matches!(conn.next_input(t0, 2048, true), Incoming::Wait));
    assert!(conn.is_held(Hold::RepliesUnread));
    // Held, it waits whatever the queue, until the router releases it.
    assert!(matches!(conn.next_input(t0, 1 << 20, true), Incoming::Wait));
    assert!(conn.release(Hold::RepliesUnread, t0));
    assert!(matches!(
        conn.next_input(t0, 1 << 20, true),
        Incoming::NeedBytes
    ));
}

#[test]
fn bad_input_fails_with_its_reason() {
    let t0 = Instant::now();
    // A TLS ClientHello on a plaintext port.
    let (mut conn, mut client) = pair(t0);
    client.write_all(&[0x16, 3, 1, 0, 5]).unwrap();
    read_all(&mut conn, 5);
    match conn.next_input(t0, 1 << 20, true) {
        Incoming::Fail(rexec_proto::ErrorKind::Protocol, why) => {
            assert!(why.contains("started TLS"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    // A frame over the limit: a limit, not a protocol error.
    let (mut conn, mut client) = pair(t0);
    client.write_all(&u32::MAX.to_be_bytes()).unwrap();
    read_all(&mut conn, 4);
    assert!(matches!(
        conn.next_input(t0, 1 << 20, true),
        Incoming::Fail(rexec_proto::ErrorKind::Limit, _)
    ));
}

#[test]
fn a_read_says_drained_then_ended_when_the_client_stops_sending() {
    let (mut conn, mut client) = pair(Instant::now());
    let mut scratch = vec![0; 1024];
    assert_eq!(
        conn.hear(&mut scratch, Instant::now()),
        Heard::Drained,
        "nothing sent yet"
    );
    client.write_all(b"x").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut end = hear_until_not_bytes(&mut conn, &mut scratch);
    while end == Heard::Drained {
        wait_ready(
            conn.stream.fd().expect("a socket"),
            rustix::event::PollFlags::IN,
        );
        end = hear_until_not_bytes(&mut conn, &mut scratch);
    }
    assert_eq!(end, Heard::Ended);
    assert_eq!(
        conn.decoder.buffered(),
        1,
        "the byte before the end was kept"
    );
}

#[test]
fn messages_still_in_our_decoder_are_not_the_clients_silence() {
    use rexec_proto::ClientMsg;
    let t0 = Instant::now();
    let every = Duration::from_secs(30);
    let (mut conn, mut client) = pair(t0);
    say_hello(&mut conn, rexec_proto::PROTOCOL_VERSION);
    let mut wire = Vec::new();
    for seq in 0..3 {
        encode_frame(&ClientMsg::Ping { seq }, &mut wire);
    }
    client.write_all(&wire).unwrap();
    read_all(&mut conn, wire.len());
    // Read at once, acted on later (a turn's share used, the loop held up
    // for three periods): what it sent was heard when it is acted on.
    let late = t0 + 3 * every;
    assert!(matches!(
        conn.next_input(late, 1 << 20, true),
        Incoming::Message(ClientMsg::Ping { seq: 0 })
    ));
    assert_eq!(conn.keepalive(late, every), Keepalive::Later(late + every));
}
