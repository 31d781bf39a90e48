//! The options before a key in `authorized_keys` (`sshd(8)`, "AUTHORIZED_KEYS
//! FILE FORMAT"): the ones rexecd honours, and a refusal for the rest.
//!
//! Honoured: `from="PATTERNS"` (the client's address; rexecd does not look
//! names up, as sshd's default `UseDNS no`), `command="..."` (a forced
//! command), `no-pty`, `restrict` (no pty and no port forwarding, unless
//! `pty` or `port-forwarding` follows), `no-port-forwarding`,
//! `permitopen="host:port"`, `permitlisten="[host:]port"` (each may be
//! given more than once) and `expiry-time="YYYYMMDD[HHMM[SS]][Z]"`.
//! Options that only forbid what rexec never does (agent and X11
//! forwarding, `~/.ssh/rc`) are accepted as they are.
//! Anything else refuses the key: a key is never let in with less than its
//! line asks for.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::forward::permit::{HostPort, Permits};

/// What a key's line allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyOptions {
    /// `from=`: the address patterns the client must match.
    pub from: Option<Vec<String>>,
    /// `command=`: run this instead of what the client asks.
    pub command: Option<String>,
    /// `no-pty` (or `restrict` without `pty`).
    pub no_pty: bool,
    /// `expiry-time=`: the key is refused from then on.
    pub expires: Option<SystemTime>,
    /// `no-port-forwarding`, `permitopen=`, `permitlisten=`.
    pub forwarding: Permits,
}

/// Options that only forbid what rexec does not do anyway.
const NOTHING_TO_FORBID: [&str; 3] = ["no-agent-forwarding", "no-x11-forwarding", "no-user-rc"];

impl KeyOptions {
    /// Parses the options field (`opt,opt="value",...`).
    pub fn parse(field: &str) -> Result<KeyOptions, String> {
        let mut o = KeyOptions::default();
        for opt in split(field)? {
            let (name, value) = match opt.split_once('=') {
                Some((n, v)) => (n.to_ascii_lowercase(), Some(unquote(v)?)),
                None => (opt.to_ascii_lowercase(), None),
            };
            match (name.as_str(), value) {
                ("from", Some(v)) => o.from = Some(v.split(',').map(str::to_string).collect()),
                ("command", Some(v)) => o.command = Some(v),
                ("expiry-time", Some(v)) => o.expires = Some(parse_expiry(&v)?),
                // In order, as sshd: `restrict,pty` allows a pty.
                ("restrict", None) => {
                    o.no_pty = true;
                    o.forwarding.off = true;
                }
                ("no-pty", None) => o.no_pty = true,
                ("pty", None) => o.no_pty = false,
                ("no-port-forwarding", None) => o.forwarding.off = true,
                ("port-forwarding", None) => o.forwarding.off = false,
                ("permitopen", Some(v)) => o.forwarding.open.push(HostPort::parse_open(&v)?),
                ("permitlisten", Some(v)) => o.forwarding.listen.push(HostPort::parse_listen(&v)?),
                (n, None) if NOTHING_TO_FORBID.contains(&n) => {}
                (n, _) => return Err(format!("option \"{}\" is not supported", clip(n))),
            }
        }
        Ok(o)
    }

    /// Whether a client from `peer` may use the key at `now`; why not.
    pub fn admits(&self, peer: IpAddr, now: SystemTime) -> Result<(), String> {
        if let Some(t) = self.expires
            && now >= t
        {
            return Err("the key has expired (expiry-time)".into());
        }
        if let Some(patterns) = &self.from
            && !address_matches(peer.to_canonical(), patterns)
        {
            return Err(format!(
                "{} is not in the key's from=\"{}\"",
                peer.to_canonical(),
                clip(&patterns.join(","))
            ));
        }
        Ok(())
    }
}

/// The options of a field, split at commas outside quotes.
fn split(field: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in field.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&field[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return Err("unbalanced quote in the options".into());
    }
    out.push(&field[start..]);
    if out.iter().any(|o| o.is_empty()) {
        return Err("an empty option".into());
    }
    Ok(out)
}

/// A value: `"text"` with `\"` for a quote inside.
fn unquote(v: &str) -> Result<String, String> {
    let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return Err(format!("option value {} must be in double quotes", clip(v)));
    };
    Ok(inner.replace("\\\"", "\""))
}

/// sshd's `from=` list: an address matching a `!pattern` is refused
/// whatever else matches; otherwise one plain pattern must match. A
/// pattern is an address with `*` and `?`, or a network `ADDR/BITS`.
fn address_matches(peer: IpAddr, patterns: &[String]) -> bool {
    let mut yes = false;
    for p in patterns {
        let (negated, p) = match p.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, p.as_str()),
        };
        if pattern_matches(peer, p) {
            if negated {
                return false;
            }
            yes = true;
        }
    }
    yes
}

fn pattern_matches(peer: IpAddr, pattern: &str) -> bool {
    if let Some((net, bits)) = pattern.split_once('/') {
        let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
            return false;
        };
        return in_network(peer, net, bits);
    }
    glob(pattern.as_bytes(), peer.to_string().as_bytes())
}

fn in_network(peer: IpAddr, net: IpAddr, bits: u32) -> bool {
    let (a, b, width) = match (peer, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a).into(), u32::from(b).into(), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    if bits > width {
        return false;
    }
    // A /0 holds every address (and shifting by the whole width of a
    // u128 would overflow).
    bits == 0 || (a >> (width - bits)) == (b >> (width - bits))
}

/// `*` matches any run of characters, `?` any one.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((&c, rest)) => text
            .split_first()
            .is_some_and(|(&t, tail)| (c == b'?' || c == t) && glob(rest, tail)),
    }
}

/// `YYYYMMDD[HHMM[SS]]`, in local time, or UTC with a trailing `Z`.
fn parse_expiry(v: &str) -> Result<SystemTime, String> {
    let bad = || format!("expiry-time=\"{}\" is not YYYYMMDD[HHMM[SS]][Z]", clip(v));
    let (digits, utc) = match v.strip_suffix(['Z', 'z']) {
        Some(d) => (d, true),
        None => (v, false),
    };
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| digits.get(r).map_or(0, |s| s.parse().unwrap_or(0));
    let fields = [
        num(0..4),
        num(4..6),
        num(6..8),
        num(8..10),
        num(10..12),
        num(12..14),
    ];
    let [year, month, day, hour, minute, second] = fields;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return Err(bad());
    }
    let secs = if utc {
        let days = days_from_civil(year, month, day);
        days * 86_400 + hour * 3600 + minute * 60 + second
    } else {
        crate::sys::local_time(fields).ok_or_else(bad)?
    };
    let secs = u64::try_from(secs).map_err(|_| bad())?;
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn clip(s: &str) -> String {
    rexec_proto::text::clean(s, 60)
}

#[cfg(test)]
mod tests;
