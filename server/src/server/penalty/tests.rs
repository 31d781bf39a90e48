use super::*;

const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));

#[test]
fn parallel_attempts_are_spaced_like_sequential_ones() {
    let mut f = AuthFailures::default();
    let t = Instant::now();
    assert_eq!(f.hello_delay(A, t), HelloDelay::Now);
    f.failed(A, t);
    // Three connections at once: 250 ms, then 500 ms, then 750 ms.
    let waits: Vec<_> = (0..3).map(|_| f.hello_delay(A, t)).collect();
    assert_eq!(
        waits,
        [250, 500, 750].map(|ms| HelloDelay::After(Duration::from_millis(ms)))
    );
    // Another address is not affected.
    assert_eq!(f.hello_delay(B, t), HelloDelay::Now);
    // The penalty stops growing at MAX, and the queue is bounded.
    for _ in 0..10 {
        f.failed(A, t);
    }
    let mut refused = false;
    for _ in 0..10 {
        match f.hello_delay(A, t) {
            HelloDelay::After(d) => assert!(d <= QUEUE_MAX),
            HelloDelay::Refuse(_) => refused = true,
            HelloDelay::Now => panic!("penalised address got no delay"),
        }
    }
    assert!(refused, "the queue of waiting attempts is bounded");
    f.succeeded(A);
    assert_eq!(f.hello_delay(A, t), HelloDelay::Now);
}

#[test]
fn a_token_holder_among_four_guessers_waits_briefly_and_gets_in() {
    // Four guessers from the holder's own address, each reconnecting as
    // soon as its wrong answer is refused, for ten minutes; the holder
    // logs in again 300 ms after each login. (With a 2 s step the holder
    // was refused: 0 logins in 30.)
    let mut f = AuthFailures::default();
    let t0 = Instant::now();
    let mut hello_at: Vec<Instant> = (0..4).map(|_| t0).collect();
    let (mut guesses, mut logins, mut worst) = (0, 0, Duration::ZERO);
    let mut guess_until = |f: &mut AuthFailures, until: Instant, hello_at: &mut Vec<Instant>| {
        while let Some(i) = (0..4)
            .filter(|&i| hello_at[i] <= until)
            .min_by_key(|&i| hello_at[i])
        {
            let now = hello_at[i];
            f.failed(A, now);
            guesses += 1;
            hello_at[i] = match f.hello_delay(A, now) {
                HelloDelay::Now => now,
                HelloDelay::After(d) | HelloDelay::Refuse(d) => now + d,
            };
        }
    };
    let mut holder = t0 + Duration::from_millis(10);
    while holder < t0 + Duration::from_secs(600) {
        guess_until(&mut f, holder, &mut hello_at);
        let wait = match f.hello_delay(A, holder) {
            HelloDelay::Now => Duration::ZERO,
            HelloDelay::After(d) => d,
            HelloDelay::Refuse(d) => panic!("the holder was refused ({d:?})"),
        };
        worst = worst.max(wait);
        guess_until(&mut f, holder + wait, &mut hello_at);
        f.succeeded(A);
        logins += 1;
        holder += wait + Duration::from_millis(300);
    }
    assert!(
        worst <= Duration::from_millis(2500),
        "the holder waited {worst:?}"
    );
    // Guessing stays slow: a few tries a second, not thousands.
    let per_sec = guesses as f64 / 600.0;
    assert!(
        per_sec < 8.0,
        "{per_sec} guesses a second ({logins} logins)"
    );
}

#[test]
fn failures_are_forgotten_after_a_while() {
    let mut f = AuthFailures::default();
    let t = Instant::now();
    f.failed(A, t);
    assert_eq!(f.hello_delay(A, t + MEMORY), HelloDelay::Now);
}
