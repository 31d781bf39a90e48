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

/// Output bytes made safe to print among other hosts' lines: every control
/// character but tab and newline (C0, DEL, and C1 as UTF-8 encodes it) is
/// written escaped (`\r`, `\x1b`, `\u{9b}`), so that no server can move the
/// cursor, rewrite the screen, set the title or forge another host's line.
/// Everything else, invalid UTF-8 included, is passed through as it is.
pub fn escape_controls(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let is_c1 = |i: usize| bytes[i] == 0xc2 && matches!(bytes.get(i + 1), Some(0x80..=0x9f));
    let unsafe_at = |i: usize| matches!(bytes[i], 0..=0x08 | 0x0b..=0x1f | 0x7f) || is_c1(i);
    if !(0..bytes.len()).any(unsafe_at) {
        return std::borrow::Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() + 16);
    let mut i = 0;
    while i < bytes.len() {
        if is_c1(i) {
            out.extend_from_slice(format!("\\u{{{:x}}}", bytes[i + 1]).as_bytes());
            i += 2;
            continue;
        }
        match bytes[i] {
            b'\r' => out.extend_from_slice(b"\\r"),
            b @ (0..=0x08 | 0x0b..=0x1f | 0x7f) => {
                out.extend_from_slice(format!("\\x{b:02x}").as_bytes())
            }
            b => out.push(b),
        }
        i += 1;
    }
    std::borrow::Cow::Owned(out)
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

    #[test]
    fn output_keeps_text_tabs_and_newlines_and_escapes_the_rest() {
        let plain = "a\tb caf\u{e9}\n".as_bytes();
        assert!(matches!(
            escape_controls(plain),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            &*escape_controls(b"x\rgood1: forged\x1b]0;title\x07\x1b[2J\n"),
            b"x\\rgood1: forged\\x1b]0;title\\x07\\x1b[2J\n"
        );
        // U+009B, the one-byte CSI, as UTF-8; and invalid UTF-8 as it is.
        assert_eq!(&*escape_controls(b"\xc2\x9b2J\xff"), b"\\u{9b}2J\xff");
    }
}
