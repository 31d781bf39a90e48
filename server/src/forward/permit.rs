//! Who may forward what: the server's `--forwarding` and
//! `--gateway-ports`, and a key's `no-port-forwarding`, `permitopen` and
//! `permitlisten` (`sshd(8)`, AUTHORIZED_KEYS FILE FORMAT), as sshd's
//! `AllowTcpForwarding`, `GatewayPorts` and `PermitOpen` decide them.

use std::net::IpAddr;

/// `--forwarding`: which ways this server forwards (sshd's
/// `AllowTcpForwarding`; `yes` by default, as there).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Allow {
    /// Both ways.
    #[default]
    Yes,
    /// Neither.
    No,
    /// Only connections the server makes for the client (`rexec -L`).
    Local,
    /// Only ports the server listens on for the client (`rexec -R`).
    Remote,
}

impl Allow {
    /// Parses `yes`, `no`, `local` or `remote`, as sshd spells them.
    pub fn parse(s: &str) -> Result<Allow, String> {
        match s {
            "yes" | "all" => Ok(Allow::Yes),
            "no" => Ok(Allow::No),
            "local" => Ok(Allow::Local),
            "remote" => Ok(Allow::Remote),
            _ => Err(format!("{s:?}: expected yes, no, local or remote")),
        }
    }

    /// Why a connection to a target (`-L`) is refused, if it is.
    pub fn check_open(self) -> Result<(), String> {
        match self {
            Allow::Yes | Allow::Local => Ok(()),
            _ => {
                Err("port forwarding to a target (-L) is off on this server (--forwarding)".into())
            }
        }
    }

    /// Why a listening port (`-R`) is refused, if it is.
    pub fn check_listen(self) -> Result<(), String> {
        match self {
            Allow::Yes | Allow::Remote => Ok(()),
            _ => Err("remote port forwarding (-R) is off on this server (--forwarding)".into()),
        }
    }
}

/// One `permitopen`/`permitlisten` entry: a host and a port, either of
/// which may be `*` (any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    host: Option<String>,
    port: Option<u16>,
}

impl HostPort {
    /// `host:port` (`permitopen`), with `[v6]:port` for an IPv6 address.
    pub fn parse_open(spec: &str) -> Result<HostPort, String> {
        let Some((host, port)) = spec.rsplit_once(':') else {
            return Err(format!("permitopen=\"{spec}\" must be host:port"));
        };
        Ok(HostPort {
            host: wild_host(host),
            port: wild_port(port).map_err(|e| format!("permitopen=\"{spec}\": {e}"))?,
        })
    }

    /// `[host:]port` (`permitlisten`).
    pub fn parse_listen(spec: &str) -> Result<HostPort, String> {
        let (host, port) = match spec.rsplit_once(':') {
            Some((h, p)) => (wild_host(h), p),
            None => (None, spec),
        };
        Ok(HostPort {
            host,
            port: wild_port(port).map_err(|e| format!("permitlisten=\"{spec}\": {e}"))?,
        })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
            && self
                .host
                .as_deref()
                .is_none_or(|h| h.eq_ignore_ascii_case(host.trim_matches(['[', ']'])))
    }
}

fn wild_host(h: &str) -> Option<String> {
    let h = h.trim_matches(['[', ']']);
    (h != "*").then(|| h.to_string())
}

fn wild_port(p: &str) -> Result<Option<u16>, String> {
    if p == "*" {
        return Ok(None);
    }
    p.parse::<u16>()
        .map(Some)
        .map_err(|_| format!("{p:?} is not a port"))
}

/// What one authenticated connection may forward: decided when its key
/// was accepted (a token, or a key with no options, may forward anything
/// the server allows).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permits {
    /// `no-port-forwarding`, or `restrict` without `port-forwarding`.
    pub off: bool,
    /// `permitopen` entries; none: any target.
    pub open: Vec<HostPort>,
    /// `permitlisten` entries; none: any port.
    pub listen: Vec<HostPort>,
}

impl Permits {
    /// Why this key may not connect to `host:port`, if it may not.
    pub fn may_open(&self, host: &str, port: u16) -> Result<(), String> {
        if self.off {
            return Err(KEY_OFF.into());
        }
        if !self.open.is_empty() && !self.open.iter().any(|p| p.matches(host, port)) {
            return Err(format!(
                "port forwarding to {host}:{port} is not in this key's permitopen (authorized_keys)"
            ));
        }
        Ok(())
    }

    /// Why this key may not listen on `bind:port`, if it may not.
    pub fn may_listen(&self, bind: &str, port: u16) -> Result<(), String> {
        if self.off {
            return Err(KEY_OFF.into());
        }
        let bind = if bind.is_empty() { "localhost" } else { bind };
        if !self.listen.is_empty() && !self.listen.iter().any(|p| p.matches(bind, port)) {
            return Err(format!(
                "remote port forwarding on {bind}:{port} is not in this key's permitlisten \
                 (authorized_keys)"
            ));
        }
        Ok(())
    }
}

const KEY_OFF: &str =
    "port forwarding is off for this key (no-port-forwarding or restrict in authorized_keys)";

/// Whether `host` can be a target: a name (letters, digits, `-`, `_`,
/// `.`) or an address (IPv6 with its zone), at most 255 bytes. Anything
/// else (control characters for the log, a name no resolver takes) is
/// refused before it is logged or looked up.
pub fn check_host(host: &str) -> Result<(), String> {
    let fits = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '%');
    if host.is_empty() || host.len() > 255 || !host.chars().all(fits) {
        return Err(format!(
            "{:?} is not a host name or address",
            rexec_proto::text::clean(host, 80)
        ));
    }
    Ok(())
}

/// Where a `-R` listens: loopback for an empty bind or `localhost`; any
/// other address only with `--gateway-ports` (sshd's `GatewayPorts`),
/// and never a name to look up.
pub fn listen_address(bind: &str, gateway_ports: bool) -> Result<IpAddr, String> {
    let ip = match bind.trim_matches(['[', ']']) {
        "" | "localhost" => return Ok(IpAddr::from([127, 0, 0, 1])),
        "*" => IpAddr::from([0, 0, 0, 0]),
        other => other.parse::<IpAddr>().map_err(|_| {
            let shown = rexec_proto::text::clean(other, 80);
            format!("listen address {shown:?}: give an IP address (no names)")
        })?,
    };
    if !ip.is_loopback() && !gateway_ports {
        return Err(format!(
            "this server listens for -R on loopback only; {ip} needs rexecd --gateway-ports"
        ));
    }
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permitopen_admits_what_it_names_and_nothing_else() {
        let p = Permits {
            open: vec![
                HostPort::parse_open("localhost:8888").unwrap(),
                HostPort::parse_open("*:5432").unwrap(),
                HostPort::parse_open("[::1]:*").unwrap(),
            ],
            ..Permits::default()
        };
        assert!(p.may_open("localhost", 8888).is_ok());
        assert!(p.may_open("LOCALHOST", 8888).is_ok());
        assert!(p.may_open("10.1.2.3", 5432).is_ok());
        assert!(p.may_open("::1", 22).is_ok());
        let e = p.may_open("localhost", 22).unwrap_err();
        assert!(e.contains("permitopen"), "{e}");
        assert!(
            p.may_open("127.0.0.1", 8888).is_err(),
            "names are not looked up"
        );
        assert!(Permits::default().may_open("anything", 1).is_ok());
        let off = Permits {
            off: true,
            ..Permits::default()
        };
        assert!(
            off.may_open("localhost", 8888)
                .unwrap_err()
                .contains("no-port-forwarding")
        );
        assert!(off.may_listen("", 8888).is_err());
    }

    #[test]
    fn permitlisten_and_bad_specs() {
        let p = Permits {
            listen: vec![HostPort::parse_listen("9000").unwrap()],
            ..Permits::default()
        };
        assert!(p.may_listen("", 9000).is_ok());
        assert!(p.may_listen("", 9001).unwrap_err().contains("permitlisten"));
        assert!(HostPort::parse_open("nohost").is_err());
        assert!(HostPort::parse_open("h:99999").is_err());
        assert!(HostPort::parse_listen("x").is_err());
    }

    #[test]
    fn a_target_is_a_name_or_an_address_and_nothing_else() {
        for ok in [
            "localhost",
            "lab-1.example",
            "10.0.0.5",
            "::1",
            "fe80::1%eth0",
            "db_1",
        ] {
            assert!(check_host(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(256);
        for bad in ["", "a b", "x\u{1b}[2J", "h/p", long.as_str()] {
            let e = check_host(bad).unwrap_err();
            assert!(e.contains("not a host name"), "{e}");
            assert!(!e.contains('\u{1b}'), "escaped for the log: {e}");
        }
    }

    #[test]
    fn listening_is_on_loopback_unless_gateway_ports() {
        assert_eq!(listen_address("", false), Ok(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(
            listen_address("localhost", false),
            Ok(IpAddr::from([127, 0, 0, 1]))
        );
        assert_eq!(listen_address("::1", false), Ok("::1".parse().unwrap()));
        assert!(
            listen_address("0.0.0.0", false)
                .unwrap_err()
                .contains("--gateway-ports")
        );
        assert!(listen_address("*", false).is_err());
        assert_eq!(listen_address("*", true), Ok(IpAddr::from([0, 0, 0, 0])));
        assert!(
            listen_address("lab1.invalid", true)
                .unwrap_err()
                .contains("no names")
        );
        assert_eq!(Allow::parse("local"), Ok(Allow::Local));
        assert!(Allow::No.check_open().unwrap_err().contains("--forwarding"));
        assert!(Allow::Local.check_listen().is_err());
        assert!(Allow::Remote.check_listen().is_ok());
    }
}
