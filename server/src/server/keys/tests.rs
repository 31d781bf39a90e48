use super::*;

#[test]
fn a_refusal_comes_at_the_floor_or_a_doubling_of_it() {
    let asked = Instant::now();
    let ms = Duration::from_millis;
    for (took, wait) in [
        (ms(0), REFUSAL_FLOOR),
        (ms(1), REFUSAL_FLOOR),
        (REFUSAL_FLOOR, REFUSAL_FLOOR),
        (REFUSAL_FLOOR + ms(1), 2 * REFUSAL_FLOOR),
        (3 * REFUSAL_FLOOR, 4 * REFUSAL_FLOOR),
        (Duration::from_secs(5), 128 * REFUSAL_FLOOR),
    ] {
        assert_eq!(refusal_due(asked, asked + took), asked + wait, "{took:?}");
    }
}

#[test]
fn a_check_ends_before_the_handshake_does() {
    assert_eq!(check_limit(Duration::from_secs(10)), CHECK_LIMIT);
    assert_eq!(check_limit(Duration::from_secs(4)), Duration::from_secs(2));
}
