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
