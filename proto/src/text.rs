//! Text from a peer made safe to echo in an error or write to the log:
//! control characters escaped (a newline cannot forge a log line), and cut
//! to a bound (an error cannot be made larger than what provoked it).
//! Used by both sides: rexecd for what clients send, rexec for what a
//! server sends (which may be hostile: escape sequences, forged lines).

/// The most characters of peer-supplied text an error message repeats.
pub const ECHO_MAX: usize = 200;

/// `s` with control characters escaped (`\n`, `\u{1b}`), cut to about `max`
/// characters with `...` where it was cut.
pub fn clean(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 3);
    for (n, c) in s.chars().enumerate() {
        if n >= max {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// [`clean`] with the usual bound, for error messages.
pub fn echo(s: &str) -> String {
    clean(s, ECHO_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_long_text_is_cut() {
        assert_eq!(clean("a\nb\x1b[2Jc", 50), "a\\nb\\u{1b}[2Jc");
        assert_eq!(
            clean("héllo wörld", 50),
            "héllo wörld",
            "other text stays as it is"
        );
        let long = "x".repeat(10_000);
        assert_eq!(echo(&long).len(), ECHO_MAX + 3);
        assert!(echo(&long).ends_with("..."));
    }
}
