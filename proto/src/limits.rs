//! Frame sizes, and how both command lines read a size (`64M`). Both the framing (`frame.rs`) and the payload codec
//! (`payload.rs`, which must not let a payload claim more) depend on them;
//! this file imports nothing, so neither depends on the other for them.

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 4;

/// Default largest payload accepted: 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// The largest payload limit that may be configured: 16 MiB.
pub const MAX_FRAME_LIMIT: usize = 16 << 20;

/// Parses a byte count with an optional K, M or G suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("unknown size suffix in {s:?}: use K, M or G")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count (examples: 1048576, 512K, 64M)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1500"), Ok(1500));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("3m"), Ok(3 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}
