use super::*;

#[test]
fn due_timers_come_out_in_order() {
    let mut t = Timers::default();
    let now = Instant::now();
    t.at(now + Duration::from_millis(20), Timer::ReapSweep);
    t.at(now + Duration::from_millis(10), Timer::AcceptRetry);
    t.at(now + Duration::from_secs(60), Timer::ShutdownDeadline);
    assert_eq!(t.timeout(now), Some(Duration::from_millis(10)));
    let later = now + Duration::from_millis(30);
    assert_eq!(t.pop_due(later), Some(Timer::AcceptRetry));
    assert_eq!(t.pop_due(later), Some(Timer::ReapSweep));
    assert_eq!(t.pop_due(later), None);
    assert!(t.timeout(later).is_some());
}

#[test]
fn retain_drops_timers_of_things_that_are_gone() {
    let mut t = Timers::default();
    let now = Instant::now();
    for i in 0..100 {
        t.at(now, Timer::ConnIdle(ConnId(i)));
    }
    t.at(now, Timer::AcceptRetry);
    t.retain(|x| !matches!(x, Timer::ConnIdle(ConnId(i)) if *i >= 10));
    assert_eq!(t.len(), 11);
    let mut left = Vec::new();
    while let Some(x) = t.pop_due(now) {
        left.push(x);
    }
    assert!(left.contains(&Timer::AcceptRetry));
    assert!(left.contains(&Timer::ConnIdle(ConnId(9))));
    assert!(!left.contains(&Timer::ConnIdle(ConnId(10))));
}
