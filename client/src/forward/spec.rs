//! `-L [BIND:]PORT:HOST:HOSTPORT` and `-R [BIND:]PORT:HOST:HOSTPORT`, as
//! ssh spells them (an IPv6 address in brackets), and the `forward = [...]`
//! entries of the config file, which are the same with `L ` or `R ` first.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Which way a forward goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// `-L`: we listen here, the server connects there.
    Local,
    /// `-R`: the server listens there, we connect here.
    Remote,
}

/// One forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// `-L` or `-R`.
    pub way: Way,
    /// Where to listen: empty for loopback.
    pub bind: String,
    /// The port listened on (0: one the system picks).
    pub port: u16,
    /// Where each connection goes.
    pub host: String,
    /// The port it goes to there.
    pub host_port: u16,
}

impl Spec {
    /// Parses the argument of `-L` or `-R`.
    pub fn parse(way: Way, s: &str) -> Result<Spec, String> {
        let fields = split(s).ok_or_else(|| format!("{s}: unbalanced [ ]"))?;
        let (bind, port, host, host_port) = match fields.as_slice() {
            [p, h, hp] => (String::new(), p, h, hp),
            [b, p, h, hp] => (b.to_string(), p, h, hp),
            _ => return Err(format!("{s}: expected [BIND:]PORT:HOST:HOSTPORT")),
        };
        let port_of = |p: &str| {
            p.parse::<u16>()
                .map_err(|_| format!("{s}: {p:?} is not a port"))
        };
        let spec = Spec {
            way,
            bind,
            port: port_of(port)?,
            host: host.to_string(),
            host_port: port_of(host_port)?,
        };
        if spec.host.is_empty() {
            return Err(format!("{s}: no HOST"));
        }
        if way == Way::Local && spec.port == 0 {
            return Err(format!("{s}: give the local port to listen on"));
        }
        Ok(spec)
    }

    /// A config file entry: `L 8888:localhost:8888` or `R ...`.
    pub fn parse_config(s: &str) -> Result<Spec, String> {
        match s.trim().split_once(char::is_whitespace) {
            Some(("L" | "-L", rest)) => Spec::parse(Way::Local, rest.trim()),
            Some(("R" | "-R", rest)) => Spec::parse(Way::Remote, rest.trim()),
            _ => Err(format!(
                "forward {s:?}: expected \"L [BIND:]PORT:HOST:HOSTPORT\" or \"R ...\""
            )),
        }
    }

    /// Where a `-L` listens: loopback unless BIND names an address (`*`
    /// for all); never a name to look up.
    pub fn local_address(&self) -> Result<SocketAddr, String> {
        let ip = match self.bind.as_str() {
            "" | "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            b => b
                .parse::<IpAddr>()
                .map_err(|_| format!("{self}: bind address {b:?}: give an IP address"))?,
        };
        Ok(SocketAddr::new(ip, self.port))
    }
}

impl std::fmt::Display for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let flag = match self.way {
            Way::Local => "-L",
            Way::Remote => "-R",
        };
        let bracket = |h: &str| match h.contains(':') {
            true => format!("[{h}]"),
            false => h.to_string(),
        };
        let bind = match self.bind.is_empty() {
            true => String::new(),
            false => format!("{}:", bracket(&self.bind)),
        };
        write!(
            f,
            "{flag} {bind}{}:{}:{}",
            self.port,
            bracket(&self.host),
            self.host_port
        )
    }
}

/// Splits at colons outside brackets, dropping the brackets.
fn split(s: &str) -> Option<Vec<String>> {
    let mut out = vec![String::new()];
    let mut inside = false;
    for c in s.chars() {
        match c {
            '[' if !inside => inside = true,
            ']' if inside => inside = false,
            ':' if !inside => out.push(String::new()),
            c => out.last_mut()?.push(c),
        }
    }
    (!inside).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_forms_parse() {
        let s = Spec::parse(Way::Local, "8888:localhost:8888").unwrap();
        assert_eq!(
            (s.bind.as_str(), s.port, s.host.as_str(), s.host_port),
            ("", 8888, "localhost", 8888)
        );
        assert_eq!(
            s.local_address().unwrap(),
            "127.0.0.1:8888".parse().unwrap()
        );
        let s = Spec::parse(Way::Local, "[::1]:8080:[::1]:80").unwrap();
        assert_eq!((s.bind.as_str(), s.host.as_str()), ("::1", "::1"));
        assert_eq!(s.to_string(), "-L [::1]:8080:[::1]:80");
        let s = Spec::parse(Way::Remote, "0:127.0.0.1:22").unwrap();
        assert_eq!(s.port, 0, "-R may ask the server to pick");
        assert_eq!(
            Spec::parse_config("R 9000:127.0.0.1:9000").unwrap().way,
            Way::Remote
        );
        for bad in ["8888", "x:h:1", "1:h:70000", "1::1", "[::1:1:h:2", "0:h:1"] {
            assert!(Spec::parse(Way::Local, bad).is_err(), "{bad}");
        }
        assert!(Spec::parse_config("X 1:h:1").is_err());
        let named = Spec::parse(Way::Local, "lab.invalid:1:h:1").unwrap();
        assert!(
            named
                .local_address()
                .unwrap_err()
                .contains("give an IP address")
        );
    }
}
