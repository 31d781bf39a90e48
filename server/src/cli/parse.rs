//! The values of rexecd's flags that clap cannot parse alone: addresses
//! and durations.

use std::net::{SocketAddr, ToSocketAddrs};

use rexec_proto::DEFAULT_PORT;

/// Parses `HOST:PORT` or `HOST` (port 7070), resolving a host name such as
/// `localhost`.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    // An address without a port listens on the default one, as the client
    // assumes for a host without a port.
    if let Ok(ip) = s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    if !s.contains(':') {
        return parse_addr(&format!("{s}:{DEFAULT_PORT}"));
    }
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {s:?} as HOST:PORT: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_resolve() {
        assert_eq!(
            parse_addr("127.0.0.1:0"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 0)))
        );
        assert_eq!(parse_addr("[::1]:7070").map(|a| a.is_ipv6()), Ok(true));
        assert_eq!(parse_addr("localhost:7070").map(|a| a.port()), Ok(7070));
        assert!(parse_addr("127.0.0.1:notaport").is_err());
        // No port: the default one.
        assert_eq!(
            parse_addr("127.0.0.1"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 7070)))
        );
        assert_eq!(parse_addr("::1").map(|a| a.port()), Ok(7070));
        assert_eq!(parse_addr("[::1]").map(|a| a.port()), Ok(7070));
        assert_eq!(parse_addr("localhost").map(|a| a.port()), Ok(7070));
    }
}

/// A duration in seconds: `SECS`, or a number with `s`, `m`, `h` or `d`.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (SECS, or 30m, 12h, 7d)"))?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("{s:?}: the unit is s, m, h or d")),
    };
    Ok(n.saturating_mul(scale))
}

#[cfg(test)]
mod duration_tests {
    #[test]
    fn durations_take_a_unit() {
        use super::parse_duration as p;
        assert_eq!(p("90"), Ok(90));
        assert_eq!(p("30m"), Ok(1800));
        assert_eq!(p("7d"), Ok(604_800));
        assert!(p("7w").is_err() && p("d").is_err() && p("").is_err());
    }
}
