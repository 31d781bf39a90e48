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
/// through, and clients played in memory: a client in the middle of its
/// login is never closed for a newcomer while it is young, and is once it
/// is past the grace, however little real time went by. (tests/security.rs
/// checks the same through the binaries, and has to wait half a second of
/// real time for it.)
#[test]
fn logins_in_progress_make_room_only_once_past_the_grace_by_the_servers_clock() {
    use crate::connection::{Played, Ready};
    let cfg = crate::config::Config {
        max_startups: 2,
        token: Some(rexec_proto::auth::Token::new("s3cret").unwrap()),
        handle_signals: false,
        ..crate::config::Config::default()
    };
    let s = &mut Server::unbound(cfg).unwrap();
    // A client that said its hello and is now to answer the challenge.
    let mut hello = Vec::new();
    rexec_proto::encode_frame(
        &rexec_proto::ClientMsg::Hello(rexec_proto::ClientHello {
            protocol: rexec_proto::PROTOCOL_VERSION,
            software: "t".into(),
        }),
        &mut hello,
    );
    let peer = SocketAddr::from(([127, 0, 0, 2], 40_000));
    let logging_in = |s: &mut Server| -> (Played, ConnId) {
        let (c, id) = s.admit_played(peer);
        let id = id.expect("admitted");
        c.send(&hello);
        s.poll_says(id, Ready::READABLE);
        assert_ne!(s.conns[&id].state(), State::New, "the hello was read");
        (c, id)
    };
    let text = |c: &Played| String::from_utf8_lossy(&c.received()).into_owned();
    let (a, a_id) = logging_in(s);
    s.now += Duration::from_millis(1);
    let (_b, b_id) = logging_in(s);
    assert_eq!(s.door.startups, 2);
    // A newcomer now: both in a young login, so it is the one refused.
    let (c, refused) = s.admit_played(peer);
    assert_eq!(refused, None, "the newcomer is refused");
    assert!(s.conns.contains_key(&a_id) && s.conns.contains_key(&b_id));
    let told = text(&c);
    assert!(told.contains("try again shortly"), "{told:?}");
    // The server's clock passes the grace (no real time needs to): the
    // oldest login gives way to the next newcomer.
    s.now += STARTUP_GRACE;
    let (_d, d_id) = s.admit_played(peer);
    assert!(d_id.is_some(), "the newcomer is let in");
    assert!(!s.conns.contains_key(&a_id), "the oldest was closed");
    assert!(s.conns.contains_key(&b_id));
    assert_eq!(s.door.startups, 2);
    let told = text(&a);
    assert!(told.contains("closing the oldest"), "{told:?}");
}

/// The handshake deadline, by the server's clock: a connection that says
/// nothing is told so and let go when `now` passes it, not a moment of
/// real time later, and not before.
#[test]
fn a_silent_connection_is_told_at_the_handshake_deadline_by_the_servers_clock() {
    let cfg = crate::config::Config {
        handle_signals: false,
        keepalive: None,
        ..crate::config::Config::default()
    };
    let timeout = cfg.handshake_timeout;
    let s = &mut Server::unbound(cfg).unwrap();
    let (c, id) = s.admit_played(SocketAddr::from(([127, 0, 0, 2], 40_000)));
    let id = id.expect("admitted");
    s.later(timeout - Duration::from_millis(1));
    assert_eq!(s.conns[&id].state(), State::New, "not yet");
    assert!(c.received().is_empty());
    s.later(Duration::from_millis(1));
    let told = String::from_utf8_lossy(&c.received()).into_owned();
    assert!(told.contains("no hello within 10 s"), "{told:?}");
}
