use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn from_patterns_match_addresses_networks_and_negations() {
    let o = KeyOptions::parse("from=\"127.0.0.*,10.1.0.0/16,!10.1.2.3,::1\"").unwrap();
    let now = SystemTime::now();
    assert!(o.admits(ip("127.0.0.9"), now).is_ok());
    assert!(o.admits(ip("10.1.200.4"), now).is_ok());
    assert!(o.admits(ip("::1"), now).is_ok());
    assert!(o.admits(ip("::ffff:127.0.0.2"), now).is_ok(), "mapped v4");
    let e = o.admits(ip("10.1.2.3"), now).unwrap_err();
    assert!(e.contains("10.1.2.3 is not in"), "{e}");
    assert!(o.admits(ip("10.2.0.1"), now).is_err());
    assert!(o.admits(ip("128.0.0.1"), now).is_err());
    let any = KeyOptions::parse("from=\"0.0.0.0/0\"").unwrap();
    assert!(any.admits(ip("192.0.2.1"), now).is_ok());
    assert!(
        any.admits(ip("::1"), now).is_err(),
        "a v4 network holds no v6"
    );
}

#[test]
fn expiry_time_is_utc_with_z_and_refuses_from_then_on() {
    let o = KeyOptions::parse("expiry-time=\"20260102030405Z\"").unwrap();
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_323_045);
    assert_eq!(o.expires, Some(t));
    assert!(
        o.admits(ip("127.0.0.1"), t - Duration::from_secs(1))
            .is_ok()
    );
    let e = o.admits(ip("127.0.0.1"), t).unwrap_err();
    assert!(e.contains("expired"), "{e}");
    let day = KeyOptions::parse("expiry-time=\"19700102Z\"").unwrap();
    assert_eq!(
        day.expires,
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(86_400))
    );
    // Local time: within a day of the UTC reading, whatever the zone.
    let local = KeyOptions::parse("expiry-time=\"202601020304\"")
        .unwrap()
        .expires
        .unwrap();
    let utc = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_323_040);
    let apart = local
        .duration_since(utc)
        .or_else(|e| Ok::<_, ()>(e.duration()))
        .unwrap();
    assert!(apart <= Duration::from_secs(86_400));
    for bad in ["2026", "20261301", "2026010203", "\"x\"", "20260102T0304"] {
        assert!(
            KeyOptions::parse(&format!("expiry-time=\"{bad}\"")).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn what_is_not_understood_refuses_the_key() {
    for bad in [
        // (permitopen is honoured since port forwarding came; one without
        // a port still refuses the key.)
        "permitopen=\"h\"",
        "permitlisten=\"h:x\"",
        "tunnel=\"1\"",
        "environment=\"A=b\"",
        "cert-authority",
        "no-touch-required",
        "command=unquoted",
        "no-pty,,x",
        "from",
    ] {
        assert!(KeyOptions::parse(bad).is_err(), "{bad}");
    }
    let ok = KeyOptions::parse("No-Agent-Forwarding,no-X11-forwarding,no-user-rc").unwrap();
    assert_eq!(ok, KeyOptions::default());
}

#[test]
fn forwarding_options_are_honoured_in_order() {
    let off = KeyOptions::parse("no-port-forwarding").unwrap();
    assert!(off.forwarding.off && !off.no_pty);
    let restrict = KeyOptions::parse("restrict").unwrap();
    assert!(restrict.forwarding.off && restrict.no_pty);
    let back = KeyOptions::parse("restrict,port-forwarding").unwrap();
    assert!(!back.forwarding.off && back.no_pty);
    let open = KeyOptions::parse("permitopen=\"localhost:8888\",permitopen=\"*:22\"").unwrap();
    assert!(open.forwarding.may_open("localhost", 8888).is_ok());
    assert!(open.forwarding.may_open("db", 22).is_ok());
    assert!(open.forwarding.may_open("localhost", 8889).is_err());
    let listen = KeyOptions::parse("permitlisten=\"9000\"").unwrap();
    assert!(listen.forwarding.may_listen("", 9000).is_ok());
    assert!(listen.forwarding.may_listen("", 9001).is_err());
}
