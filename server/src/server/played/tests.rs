//! The router driven by played clients and the server's own clock: each
//! test sends what a client would, says what the poll would, moves `now`
//! by hand, and reads what the client got. No socket, no sleep.

use std::net::SocketAddr;
use std::time::Duration;

use rexec_proto::{ClientHello, ClientMsg, ErrorKind, FrameDecoder, ServerMsg, encode_frame};

use super::super::Server;
use crate::config::Config;
use crate::connection::{Hold, Played, Ready};
use crate::registry::ConnId;

fn server(cfg: Config) -> Server {
    Server::unbound(Config {
        handle_signals: false,
        ..cfg
    })
    .expect("a server")
}

fn peer(n: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, n], 40_000))
}

fn frame(msg: &ClientMsg) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_frame(msg, &mut bytes);
    bytes
}

fn hello() -> ClientMsg {
    ClientMsg::Hello(ClientHello {
        protocol: rexec_proto::PROTOCOL_VERSION,
        software: "t".into(),
    })
}

/// What the client got since the last look: whole frames, nothing cut.
fn replies(c: &Played) -> Vec<ServerMsg> {
    let mut dec = FrameDecoder::new();
    dec.feed(&c.received());
    let mut got = Vec::new();
    while let Some(msg) = dec.next_message::<ServerMsg>().expect("frames") {
        got.push(msg);
    }
    assert_eq!(dec.buffered(), 0, "a frame cut short");
    got
}

/// The one error the client was told, as (kind, message).
fn told(c: &Played) -> (ErrorKind, String) {
    match replies(c).as_slice() {
        [ServerMsg::Error(e)] => (e.kind, e.message.clone()),
        other => panic!("not one error: {other:?}"),
    }
}

/// A client let in, its hello answered.
fn greeted(s: &mut Server) -> (Played, ConnId) {
    let (c, id) = s.admit_played(peer(2));
    let id = id.expect("admitted");
    c.send(&frame(&hello()));
    s.poll_says(id, Ready::READABLE);
    let got = replies(&c);
    assert!(matches!(got.as_slice(), [ServerMsg::Hello(_)]), "{got:?}");
    (c, id)
}

/// The client goes with a reset, and the poll says so.
fn vanishes(s: &mut Server, c: &Played, id: ConnId) {
    c.reset();
    s.poll_says(
        id,
        Ready {
            readable: true,
            read_closed: true,
            error: true,
            ..Ready::default()
        },
    );
}

#[test]
fn a_hello_is_answered_and_every_ping_ponged_in_order() {
    let s = &mut server(Config::default());
    let (c, id) = greeted(s);
    let mut pings = Vec::new();
    for seq in 0..3 {
        pings.extend(frame(&ClientMsg::Ping { seq }));
    }
    c.send(&pings);
    s.poll_says(id, Ready::READABLE);
    assert_eq!(
        replies(&c),
        (0..3)
            .map(|seq| ServerMsg::Pong { seq })
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_frame_that_never_completes_is_cut_off_at_the_frame_timeout_and_not_before() {
    let cfg = Config {
        keepalive: None, // no probes in what the client is told
        ..Config::default()
    };
    let timeout = cfg.frame_timeout;
    let s = &mut server(cfg);
    let (c, id) = greeted(s);
    c.send(&[0, 0, 0, 9, 1]); // 1 byte of a 9-byte frame, and no more
    s.poll_says(id, Ready::READABLE);
    s.later(timeout - Duration::from_millis(1));
    assert!(replies(&c).is_empty(), "not yet");
    s.later(Duration::from_millis(1));
    let (kind, why) = told(&c);
    assert_eq!(kind, ErrorKind::Idle);
    assert!(why.contains("not complete"), "{why}");
    // The error sent, the server shuts its side and waits for the client
    // to close before it lets go.
    assert!(c.server_finished_sending());
    assert!(s.conns.contains_key(&id), "lingering");
    c.finish();
    s.poll_says(id, Ready::READABLE);
    assert!(!s.conns.contains_key(&id) && c.closed_by_server());
}

#[test]
fn an_idle_connection_is_told_at_the_idle_timeout_by_the_servers_clock() {
    let idle = Duration::from_secs(60);
    let s = &mut server(Config {
        idle_timeout: Some(idle),
        keepalive: None,
        ..Config::default()
    });
    let (c, _id) = greeted(s);
    s.later(idle - Duration::from_millis(1));
    assert!(replies(&c).is_empty(), "not yet");
    s.later(Duration::from_millis(1));
    let (kind, why) = told(&c);
    assert_eq!(kind, ErrorKind::Idle);
    assert!(why.contains("60 s without a command"), "{why}");
}

#[test]
fn a_client_that_reads_no_replies_is_not_read_until_it_does() {
    let s = &mut server(Config {
        queue_limit: 64, // replies held at 128 bytes unread
        ..Config::default()
    });
    let (c, id) = greeted(s);
    c.set_room(Some(0)); // its socket takes nothing more
    let mut pings = Vec::new();
    for seq in 0..100 {
        pings.extend(frame(&ClientMsg::Ping { seq }));
    }
    c.send(&pings);
    s.poll_says(id, Ready::READABLE);
    assert!(
        s.conns[&id].queued() >= 128 && s.conns[&id].queued() < 256,
        "queued {}",
        s.conns[&id].queued()
    );
    assert!(s.conns[&id].is_held(Hold::RepliesUnread));
    // It reads: its socket drains, and the rest is read and answered.
    c.set_room(None);
    s.poll_says(id, Ready::WRITABLE);
    assert!(!s.conns[&id].is_held(Hold::RepliesUnread));
    assert_eq!(
        replies(&c),
        (0..100)
            .map(|seq| ServerMsg::Pong { seq })
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_tls_hello_on_a_plain_port_is_told_in_plain_words() {
    let s = &mut server(Config::default());
    let (c, id) = s.admit_played(peer(2));
    let id = id.expect("admitted");
    c.send(&[0x16, 3, 1, 0, 200, 1]);
    s.poll_says(id, Ready::READABLE);
    let (kind, why) = told(&c);
    assert_eq!(kind, ErrorKind::Protocol);
    assert!(why.contains("connect without --tls"), "{why}");
}

#[test]
fn a_client_that_vanishes_is_let_go_at_once() {
    let s = &mut server(Config::default());
    let (c, id) = greeted(s);
    vanishes(s, &c, id);
    assert!(!s.conns.contains_key(&id) && c.closed_by_server());
}

/// Takes process turns until the client got what `done` looks for (at
/// most a minute of real time: a child to start, write and exit), and
/// returns all it got.
fn until(s: &mut Server, c: &Played, done: impl Fn(&[ServerMsg]) -> bool) -> Vec<ServerMsg> {
    let mut got = Vec::new();
    for _ in 0..600 {
        s.process_turn(Duration::from_millis(100)).expect("a poll");
        got.extend(replies(c));
        if done(&got) {
            return got;
        }
    }
    let kinds: Vec<String> = got
        .iter()
        .map(|m| match m {
            ServerMsg::Stdout { data, .. } => format!("Stdout({})", data.len()),
            ServerMsg::Stderr { data, .. } => format!("Stderr({})", data.len()),
            other => format!("{other:?}"),
        })
        .collect();
    panic!("not there after a minute: {kinds:?}");
}

fn exec(id: u32, command: &str) -> ClientMsg {
    ClientMsg::Exec(rexec_proto::Exec {
        id,
        command: command.into(),
        mode: rexec_proto::ExecMode::Shell,
        cwd: None,
        env: Vec::new(),
        timeout_ms: None,
        stdin: false,
        pty: None,
    })
}

#[test]
fn a_command_is_started_its_output_sent_and_its_exit_said_last() {
    let s = &mut server(Config::default());
    let (c, id) = greeted(s);
    c.send(&frame(&exec(1, "echo out; echo err >&2; exit 3")));
    s.poll_says(id, Ready::READABLE);
    let got = until(s, &c, |m| matches!(m.last(), Some(ServerMsg::Exited(_))));
    assert!(
        matches!(got.first(), Some(ServerMsg::Started { id: 1, .. })),
        "{got:?}"
    );
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for m in &got[1..got.len() - 1] {
        match m {
            ServerMsg::Stdout { id: 1, data } => out.extend(data),
            ServerMsg::Stderr { id: 1, data } => err.extend(data),
            other => panic!("{other:?} between Started and Exited"),
        }
    }
    assert_eq!((&out[..], &err[..]), (&b"out\n"[..], &b"err\n"[..]));
    match got.last() {
        Some(ServerMsg::Exited(e)) => {
            assert_eq!((e.id, e.status), (1, rexec_proto::ExitStatus::Code(3)));
            assert_eq!(e.bytes_out, 8);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_client_that_vanishes_mid_command_leaves_nothing_running() {
    let s = &mut server(Config::default());
    let (c, id) = greeted(s);
    c.send(&frame(&exec(1, "sleep 600")));
    s.poll_says(id, Ready::READABLE);
    let got = until(s, &c, started);
    let pid = match got.first() {
        Some(ServerMsg::Started { pid, .. }) => *pid,
        other => panic!("{other:?}"),
    };
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a pid");
    vanishes(s, &c, id);
    assert!(!s.conns.contains_key(&id));
    // Stopped and reaped: no such process (not even a zombie) is left.
    for _ in 0..600 {
        if rustix::process::test_kill_process(pid).is_err() {
            return;
        }
        s.process_turn(Duration::from_millis(100)).expect("a poll");
    }
    panic!("{pid:?} still there after a minute");
}

/// Whether the client was told its command started.
fn started(got: &[ServerMsg]) -> bool {
    got.iter().any(|m| matches!(m, ServerMsg::Started { .. }))
}

/// All of command `id`'s stdout in `got`, and its exit.
fn stdout_and_exit(got: &[ServerMsg], id: u32) -> (Vec<u8>, Option<rexec_proto::Exited>) {
    let mut out = Vec::new();
    let mut exit = None;
    for m in got {
        match m {
            ServerMsg::Stdout { id: i, data } if *i == id => {
                assert!(exit.is_none(), "output after the exit");
                out.extend(data);
            }
            ServerMsg::Exited(e) if e.id == id => exit = Some(e.clone()),
            _ => {}
        }
    }
    (out, exit)
}

#[test]
fn what_the_client_sends_is_the_commands_stdin_and_its_end_ends_it() {
    let s = &mut server(Config::default());
    let (c, id) = greeted(s);
    let mut cat = exec(1, "cat");
    if let ClientMsg::Exec(e) = &mut cat {
        e.stdin = true;
    }
    let mut wire = frame(&cat);
    wire.extend(frame(&ClientMsg::Stdin {
        id: 1,
        data: b"typed ".to_vec(),
    }));
    wire.extend(frame(&ClientMsg::Stdin {
        id: 1,
        data: b"and sent\n".to_vec(),
    }));
    wire.extend(frame(&ClientMsg::StdinEof { id: 1 }));
    c.send(&wire);
    s.poll_says(id, Ready::READABLE);
    let got = until(s, &c, |m| matches!(m.last(), Some(ServerMsg::Exited(_))));
    let (out, exit) = stdout_and_exit(&got, 1);
    assert_eq!(out, b"typed and sent\n");
    assert_eq!(
        exit.map(|e| e.status),
        Some(rexec_proto::ExitStatus::Code(0))
    );
}

#[test]
fn a_cancelled_command_is_stopped_and_says_by_which_signal() {
    let s = &mut server(Config::default());
    let (c, id) = greeted(s);
    c.send(&frame(&exec(1, "sleep 600")));
    s.poll_says(id, Ready::READABLE);
    until(s, &c, started);
    c.send(&frame(&ClientMsg::Cancel { id: 1 }));
    s.poll_says(id, Ready::READABLE);
    let got = until(s, &c, |m| matches!(m.last(), Some(ServerMsg::Exited(_))));
    let (_, exit) = stdout_and_exit(&got, 1);
    assert!(
        matches!(
            exit.map(|e| e.status),
            Some(rexec_proto::ExitStatus::Signal(_))
        ),
        "{got:?}"
    );
}

#[test]
fn output_waits_for_a_client_that_stopped_reading_and_none_is_lost() {
    // A queue of 64 KiB: what the server holds and what the pipe holds
    // together take all the command writes, so it exits while most of its
    // output still waits, in our queue and in its pipe: none of it may be
    // lost to the pipe grace or any timer, however long the server's
    // clock says the client took.
    let s = &mut server(Config {
        queue_limit: 64 << 10,
        keepalive: None, // an hour of a client not reading is not the point
        ..Config::default()
    });
    let (c, id) = greeted(s);
    c.set_room(Some(0));
    c.send(&frame(&exec(1, "head -c 100000 /dev/zero; echo end")));
    s.poll_says(id, Ready::READABLE);
    for _ in 0..600 {
        s.process_turn(Duration::from_millis(100)).expect("a poll");
        if !s.procs.is_empty() && s.procs.values().all(|p| p.has_exited()) {
            break;
        }
    }
    assert!(
        s.procs.values().all(|p| p.has_exited()),
        "the command exited"
    );
    let queued = s.conns[&id].queued();
    assert!(
        (64 << 10..(64 << 10) + 70_000).contains(&queued),
        "queued {queued}"
    );
    // Nothing is lost while it waits, however long the server's clock
    // says that was: the pipe grace cuts only a pipe that stayed empty.
    for _ in 0..60 {
        s.later(Duration::from_secs(60));
    }
    c.set_room(None);
    s.poll_says(id, Ready::WRITABLE);
    let got = until(s, &c, |m| {
        m.iter().any(|m| matches!(m, ServerMsg::Exited(_)))
    });
    let (out, exit) = stdout_and_exit(&got, 1);
    assert_eq!(out.len(), 100_004);
    assert!(out.ends_with(b"end\n"));
    let exit = exit.expect("an exit");
    assert_eq!(
        (exit.status, exit.bytes_out),
        (rexec_proto::ExitStatus::Code(0), 100_004)
    );
}
