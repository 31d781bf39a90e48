//! The forwarding room driven by a played client and real loopback
//! targets: what the simulation (tests/sim/channels.rs) does not single
//! out.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use rexec_proto::{ClientHello, ClientMsg, FrameDecoder, ServerMsg, encode_frame};

use super::super::Server;
use crate::config::Config;
use crate::connection::{Played, Ready};
use crate::registry::ConnId;

fn say(s: &mut Server, c: &Played, id: ConnId, msg: &ClientMsg) {
    let mut bytes = Vec::new();
    encode_frame(msg, &mut bytes);
    c.send(&bytes);
    s.poll_says(id, Ready::READABLE);
}

/// A server with no listener and a played client whose hello it took.
fn greeted(cfg: Config) -> (Server, Played, ConnId) {
    let mut s = Server::unbound(Config {
        handle_signals: false,
        ..cfg
    })
    .unwrap();
    let (c, id) = s.admit_played(SocketAddr::from(([127, 0, 0, 1], 40_000)));
    let id = id.unwrap();
    let hello = ClientMsg::Hello(ClientHello {
        protocol: rexec_proto::PROTOCOL_VERSION,
        software: "t".into(),
    });
    say(&mut s, &c, id, &hello);
    (s, c, id)
}

/// Channel data the client got, by channel, from `dec` fed with what came.
fn data_for(dec: &mut FrameDecoder, c: &Played, channel: u32) -> Vec<u8> {
    dec.feed(&c.received());
    let mut got = Vec::new();
    while let Some(msg) = dec.next_message::<ServerMsg>().expect("frames") {
        if let ServerMsg::ChannelData { id, data } = msg
            && id == channel
        {
            got.extend(data);
        }
    }
    got
}

/// Accepts the connection the server makes to `l`, within the test's
/// patience (turning the server's loop meanwhile).
fn accepted(s: &mut Server, l: &TcpListener) -> TcpStream {
    l.set_nonblocking(true).unwrap();
    for _ in 0..10_000 {
        s.process_turn(Duration::from_millis(1)).unwrap();
        if let Ok((t, _)) = l.accept() {
            return t;
        }
    }
    panic!("the server never connected");
}

#[test]
fn a_channel_stopped_by_a_full_queue_reads_again_when_the_queue_drains() {
    let (mut s, c, id) = greeted(Config {
        queue_limit: 4096,
        ..Config::default()
    });
    let (quiet, busy) = (
        TcpListener::bind("127.0.0.1:0").unwrap(),
        TcpListener::bind("127.0.0.1:0").unwrap(),
    );
    for (n, l) in [(1, &quiet), (2, &busy)] {
        let port = l.local_addr().unwrap().port();
        say(
            &mut s,
            &c,
            id,
            &ClientMsg::Open {
                id: n,
                host: "127.0.0.1".into(),
                port,
            },
        );
    }
    let mut quiet_end = accepted(&mut s, &quiet);
    let mut busy_end = accepted(&mut s, &busy);
    // The client's socket takes nothing: channel 2's data fills the
    // connection's queue...
    c.set_room(Some(0));
    busy_end.write_all(&vec![2u8; 64 * 1024]).unwrap();
    for _ in 0..100 {
        s.process_turn(Duration::from_millis(1)).unwrap();
    }
    assert!(s.queued_for(id).unwrap() >= 4096, "the queue filled");
    // ...so channel 1's one byte is left in its socket for now, and no
    // new event will come for it.
    quiet_end.write_all(b"x").unwrap();
    for _ in 0..100 {
        s.process_turn(Duration::from_millis(1)).unwrap();
    }
    // The client reads again: the queue drains, and channel 1, which
    // has nothing unacknowledged (no ack will wake it), reads its byte.
    c.set_room(None);
    let mut dec = FrameDecoder::new();
    let mut got = Vec::new();
    for _ in 0..100 {
        s.poll_says(id, Ready::WRITABLE);
        s.process_turn(Duration::from_millis(1)).unwrap();
        got.extend(data_for(&mut dec, &c, 1));
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(got, b"x", "channel 1 was never read again");
}

#[test]
fn what_channels_hold_for_their_far_ends_counts_against_the_memory_budget() {
    let (mut s, c, id) = greeted(Config {
        max_buffer: 600_000,
        ..Config::default()
    });
    // Two channels still connecting (the loop has not seen them connect):
    // what the client sends for them waits in rexecd, within each window.
    let targets = [
        TcpListener::bind("127.0.0.1:0").unwrap(),
        TcpListener::bind("127.0.0.1:0").unwrap(),
    ];
    for (n, l) in (1..).zip(&targets) {
        let port = l.local_addr().unwrap().port();
        say(
            &mut s,
            &c,
            id,
            &ClientMsg::Open {
                id: n,
                host: "127.0.0.1".into(),
                port,
            },
        );
        say(
            &mut s,
            &c,
            id,
            &ClientMsg::ChannelData {
                id: n,
                data: vec![n as u8; 400_000],
            },
        );
    }
    s.turn(Duration::from_millis(20), &[]);
    let held = s
        .conns
        .get(&id)
        .is_some_and(|c| c.is_held(crate::connection::Hold::Memory));
    assert!(
        held,
        "800,000 bytes held for channels, a budget of 600,000, and not held back"
    );
}
