//! `HOST[:PORT]` parsing: `lab1`, `lab1:7070`, `10.0.0.5`, `[::1]:7070`, `::1`.

/// rexecd's default port.
pub use rexec_proto::DEFAULT_PORT;

/// The `host:port` key that names a server in the known-hosts file and in
/// messages; IPv6 addresses in brackets (`[::1]:7070`).
pub fn hostport(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Splits a host spec into host and port (default 7070). IPv6 addresses with
/// a port are written in brackets, as in URLs.
pub fn parse_host(spec: &str) -> Result<(String, u16), String> {
    let bad_port =
        |p: &str| format!("invalid port {p:?} in {spec:?}: expected a number from 1 to 65535");
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| bad_port(p))
    };
    if spec.is_empty() {
        return Err("empty host".into());
    }
    if let Some(rest) = spec.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("missing ']' in {spec:?}"))?;
        return match after {
            "" => Ok((host.to_string(), DEFAULT_PORT)),
            p => match p.strip_prefix(':') {
                Some(p) => Ok((host.to_string(), port(p)?)),
                None => Err(format!("unexpected {after:?} after ']' in {spec:?}")),
            },
        };
    }
    match spec.matches(':').count() {
        0 => Ok((spec.to_string(), DEFAULT_PORT)),
        1 => {
            let (h, p) = spec.split_once(':').unwrap_or((spec, ""));
            if h.is_empty() {
                return Err(format!("missing host in {spec:?}"));
            }
            Ok((h.to_string(), port(p)?))
        }
        _ => Ok((spec.to_string(), DEFAULT_PORT)), // a bare IPv6 address
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_specs() {
        assert_eq!(parse_host("lab1"), Ok(("lab1".into(), 7070)));
        assert_eq!(parse_host("lab1:22"), Ok(("lab1".into(), 22)));
        assert_eq!(parse_host("127.0.0.1:9000"), Ok(("127.0.0.1".into(), 9000)));
        assert_eq!(parse_host("[::1]:7071"), Ok(("::1".into(), 7071)));
        assert_eq!(parse_host("[::1]"), Ok(("::1".into(), 7070)));
        assert_eq!(parse_host("::1"), Ok(("::1".into(), 7070)));
        assert!(parse_host("lab1:0").is_err());
        assert!(parse_host("lab1:http").is_err());
        assert!(parse_host("[::1").is_err());
        assert!(parse_host(":80").is_err());
        assert!(parse_host("").is_err());
    }
}
