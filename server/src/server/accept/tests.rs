use super::*;

#[test]
fn young_handshakes_are_never_evicted_and_the_oldest_goes_first() {
    let t = Instant::now() + Duration::from_secs(100);
    let a = IpAddr::from([127, 0, 0, 2]);
    let b = IpAddr::from([127, 0, 0, 3]);
    let grace = Duration::from_secs(2);
    let at = |s: u64| t - Duration::from_secs(s);
    // Everyone young and in a login: nobody is closed.
    let young = [(ConnId(1), a, at(1), true), (ConnId(2), b, at(0), true)];
    assert_eq!(startup_victim(young.into_iter(), t, grace), None);
    // Young but silent: may go, when nobody is past the grace.
    let silent = [(ConnId(1), a, at(1), true), (ConnId(2), b, at(0), false)];
    assert_eq!(
        startup_victim(silent.into_iter(), t, grace),
        Some(ConnId(2))
    );
    // The busiest address's oldest, among those past the grace.
    let mixed = [
        (ConnId(1), a, at(50), true),
        (ConnId(2), b, at(60), true),
        (ConnId(3), b, at(30), true),
        (ConnId(4), b, at(1), false), // young: neither counted nor chosen
        (ConnId(5), a, at(40), true),
        (ConnId(6), a, at(20), true),
    ];
    assert_eq!(startup_victim(mixed.into_iter(), t, grace), Some(ConnId(1)));
}

/// The router itself, with time moved by hand (`Server::now`), not slept
/// through: a client in the middle of its login is never closed for a
/// newcomer while it is young, and is once it is past the grace, however
/// little real time went by. (tests/security.rs checks the same through
/// the binaries, and has to wait half a second of real time for it.)
#[test]
fn logins_in_progress_make_room_only_once_past_the_grace_by_the_servers_clock() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let cfg = crate::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        max_startups: 2,
        token: Some(rexec_proto::auth::Token::new("s3cret").unwrap()),
        handle_signals: false,
        ..crate::config::Config::default()
    };
    let s = &mut Server::bind(cfg).unwrap();
    let addr = s.local_addr();
    // A client that said its hello and is now to answer the challenge.
    let mut hello = Vec::new();
    rexec_proto::encode_frame(
        &rexec_proto::ClientMsg::Hello(rexec_proto::ClientHello {
            protocol: rexec_proto::PROTOCOL_VERSION,
            software: "t".into(),
        }),
        &mut hello,
    );
    let logging_in = |s: &mut Server| {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(&hello).unwrap();
        s.accept();
        let id = *s.conns.keys().max().unwrap();
        // Read once loopback has delivered it (at once, in practice).
        for _ in 0..100_000 {
            if s.conns[&id].state() != State::New {
                break;
            }
            s.service_input(id);
            std::thread::yield_now();
        }
        assert_ne!(s.conns[&id].state(), State::New, "the hello was read");
        (c, id)
    };
    let (mut a, a_id) = logging_in(s);
    s.now += Duration::from_millis(1);
    let (_b, b_id) = logging_in(s);
    assert_eq!(s.door.startups, 2);
    // A newcomer now: both in a young login, so it is the one refused.
    let mut c = TcpStream::connect(addr).unwrap();
    s.accept();
    assert!(s.conns.contains_key(&a_id) && s.conns.contains_key(&b_id));
    assert_eq!(s.conns.len(), 2, "the newcomer is refused");
    let mut told = [0u8; 256];
    let n = c.read(&mut told).unwrap();
    assert!(
        String::from_utf8_lossy(&told[..n]).contains("try again shortly"),
        "{:?}",
        String::from_utf8_lossy(&told[..n])
    );
    // The server's clock passes the grace (no real time needs to): the
    // oldest login gives way to the next newcomer.
    s.now += STARTUP_GRACE;
    let _d = TcpStream::connect(addr).unwrap();
    s.accept();
    assert!(!s.conns.contains_key(&a_id), "the oldest was closed");
    assert!(s.conns.contains_key(&b_id));
    assert_eq!(s.door.startups, 2);
    a.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut all = Vec::new();
    let _ = a.read_to_end(&mut all);
    assert!(
        String::from_utf8_lossy(&all).contains("closing the oldest"),
        "{:?}",
        String::from_utf8_lossy(&all)
    );
}

/// The handshake deadline, by the server's clock: a connection that says
/// nothing is told so and let go when `now` passes it, not a moment of
/// real time later, and not before.
#[test]
fn a_silent_connection_is_told_at_the_handshake_deadline_by_the_servers_clock() {
    use std::io::Read;
    use std::net::TcpStream;
    let cfg = crate::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        handle_signals: false,
        ..crate::config::Config::default()
    };
    let timeout = cfg.handshake_timeout;
    let s = &mut Server::bind(cfg).unwrap();
    let mut c = TcpStream::connect(s.local_addr()).unwrap();
    s.accept();
    let id = *s.conns.keys().next().expect("admitted");
    s.now += timeout - Duration::from_millis(1);
    s.fire_timers();
    assert_eq!(s.conns[&id].state(), State::New, "not yet");
    s.now += Duration::from_millis(1);
    s.fire_timers();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut told = [0u8; 256];
    let n = c.read(&mut told).unwrap();
    let told = String::from_utf8_lossy(&told[..n]);
    assert!(told.contains("no hello within 10 s"), "{told:?}");
}
