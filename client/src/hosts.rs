//! Named hosts and host lists: the config file (TOML), pdsh/ClusterShell
//! host lists (`lab[1-8],gpu[01-04]`, `@group`, exclusions), and folding a
//! set of names back into a list (`lab[1-4,6]`) for display.
//!
//! ```toml
//! [defaults]            # optional: applies to every host
//! token_file = "~/.rexec-token"
//! [hosts.lab1]
//! address = "10.0.0.5:7070"   # host or host:port; the port defaults to 7070
//! token_file = "~/.rexec-token-lab1"   # optional
//! tls = true                  # optional
//! fingerprint = "SHA256:..."  # optional; implies tls
//! [groups]
//! lab = "lab[1-8]"
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Most hosts one list may expand to.
pub const MAX_HOSTS: u64 = 10_000;

/// Settings for one host (or, under `[defaults]`, for all).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    pub address: Option<String>,
    pub token_file: Option<String>,
    pub tls: Option<bool>,
    pub fingerprint: Option<String>,
    /// Seconds of silence before a keepalive probe (0: none).
    pub keepalive: Option<u64>,
    /// The account to log in as (default: the local user name).
    pub user: Option<String>,
    /// A private key file to offer, after the agent's keys.
    pub identity: Option<String>,
    /// Reach this host through that one (a rexecd there connects on),
    /// as ssh's ProxyJump: `jump = "gateway"`.
    pub jump: Option<String>,
    /// Ports forwarded whenever this host is used for a command:
    /// `forward = ["L 8888:localhost:8888", "R 9000:127.0.0.1:9000"]`.
    pub forward: Option<Vec<String>>,
}

/// The config file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub defaults: HostEntry,
    #[serde(default)]
    pub hosts: BTreeMap<String, HostEntry>,
    #[serde(default)]
    pub groups: BTreeMap<String, String>,
    /// Where it was read from, for messages.
    #[serde(skip)]
    pub file: Option<PathBuf>,
    /// `-J` on the command line: every target goes through it.
    #[serde(skip)]
    pub jump: Option<String>,
}

/// A host to connect to: the name the user gave and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    /// `HOST[:PORT]` to connect to.
    pub address: String,
    pub token_file: Option<PathBuf>,
    pub tls: bool,
    pub fingerprint: Option<String>,
    /// Seconds of silence before a keepalive probe, from the file.
    pub keepalive: Option<u64>,
    /// The account asked for: `user@host`, else the file's `user`.
    pub user: Option<String>,
    /// A key file from the file's `identity`.
    pub identity: Option<PathBuf>,
    /// The gateway to go through (`-J`, else the file's `jump`); its own
    /// `jump` is not followed (one gateway).
    pub jump: Option<Box<Target>>,
    /// The file's `forward` entries for this host.
    pub forward: Vec<String>,
}

/// `~/x` and `~` in paths from the file.
fn expand_tilde(p: &str) -> PathBuf {
    match (p.strip_prefix('~'), dirs::home_dir()) {
        (Some(""), Some(h)) => h,
        (Some(rest), Some(h)) if rest.starts_with('/') => h.join(&rest[1..]),
        _ => PathBuf::from(p),
    }
}

impl Config {
    /// The file to read: `$REXEC_CONFIG`, else `--config FILE`, else
    /// `~/.config/rexec/config.toml`. A missing default file is no error.
    pub fn load(flag: Option<&Path>) -> Result<Config, String> {
        let env = std::env::var_os("REXEC_CONFIG").filter(|v| !v.is_empty());
        let (file, required) = match (env, flag) {
            (Some(f), _) => (PathBuf::from(f), true),
            (None, Some(f)) => (f.to_path_buf(), true),
            (None, None) => match dirs::config_dir() {
                Some(d) => (d.join("rexec").join("config.toml"), false),
                None => return Ok(Config::default()),
            },
        };
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Config::default());
            }
            Err(e) => return Err(format!("{}: {e}", file.display())),
        };
        let mut cfg = Self::parse(&text).map_err(|e| format!("{}:{e}", file.display()))?;
        cfg.file = Some(file);
        Ok(cfg)
    }

    /// Parses the file's text; an error says `LINE:COLUMN: what`.
    pub fn parse(text: &str) -> Result<Config, String> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let (line, col) = match e.span() {
                Some(span) => line_col(text, span.start),
                None => (1, 1),
            };
            format!("{line}:{col}: {}", e.message())
        })?;
        for (name, list) in &cfg.groups {
            check_size(list).map_err(|e| format!("groups.{name}: {e}"))?;
        }
        Ok(cfg)
    }

    /// How to reach `name`: its entry if the file has one, else `name` is
    /// an address as it is; `[defaults]` fill what the entry leaves out.
    pub fn target(&self, name: &str) -> Target {
        let mut t = self.direct_target(name);
        let gateway = self.jump.clone().or_else(|| {
            let host = name.split_once('@').map_or(name, |(_, h)| h);
            let entry = self.hosts.get(host).or_else(|| {
                let base = host.rsplit_once(':').map_or(host, |(b, _)| b);
                self.hosts.get(base)
            });
            entry
                .and_then(|e| e.jump.clone())
                .or_else(|| self.defaults.jump.clone())
        });
        // "none" turns the defaults' gateway off for a host (the gateway
        // itself, say).
        if let Some(g) = gateway.filter(|g| g != "none" && g != name) {
            t.jump = Some(Box::new(self.direct_target(&g)));
        }
        t
    }

    /// The target `name` names, gateway aside.
    fn direct_target(&self, name: &str) -> Target {
        // `alice@lab1`: lab1, as alice (a host name never has an `@`).
        if let Some((user, host)) = name.split_once('@')
            && !user.is_empty()
        {
            let mut t = self.direct_target(host);
            t.user = Some(user.to_string());
            return t;
        }
        // `lab1:7071`: lab1's entry for everything but the port.
        if !self.hosts.contains_key(name)
            && let Some((base, port)) = name.rsplit_once(':')
        {
            let port = port.parse::<u16>().ok().filter(|&p| p > 0);
            if let (Some(entry), Some(port)) = (self.hosts.get(base), port) {
                let address = entry.address.clone().unwrap_or_else(|| base.to_string());
                let host = crate::addr::parse_host(&address).map_or(address, |(h, _)| h);
                let mut t = self.direct_target(base);
                t.address = crate::addr::hostport(&host, port);
                t.name = name.to_string();
                return t;
            }
        }
        let entry = self.hosts.get(name);
        let pick = |f: fn(&HostEntry) -> Option<&String>| {
            entry.and_then(f).or_else(|| f(&self.defaults)).cloned()
        };
        let fingerprint = pick(|e| e.fingerprint.as_ref());
        let tls = entry
            .and_then(|e| e.tls)
            .or(self.defaults.tls)
            .unwrap_or(false)
            || fingerprint.is_some();
        Target {
            name: name.to_string(),
            address: entry
                .and_then(|e| e.address.clone())
                .unwrap_or_else(|| name.to_string()),
            token_file: pick(|e| e.token_file.as_ref()).map(|t| expand_tilde(&t)),
            tls,
            fingerprint,
            keepalive: entry.and_then(|e| e.keepalive).or(self.defaults.keepalive),
            user: pick(|e| e.user.as_ref()),
            identity: pick(|e| e.identity.as_ref()).map(|t| expand_tilde(&t)),
            jump: None,
            forward: entry.and_then(|e| e.forward.clone()).unwrap_or_default(),
        }
    }

    /// Expands a host list: comma-separated items, each a name, a pattern
    /// with ranges (`lab[1-8]`, `gpu[01-04]`) or `@group`; `exclude` (the
    /// same syntax) is taken out. Order is kept, duplicates dropped.
    pub fn expand(&self, list: &str, exclude: Option<&str>) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for name in self.expand_one(list, 0)? {
            if seen.insert(name.clone()) {
                out.push(name);
            }
        }
        if let Some(x) = exclude {
            let gone: BTreeSet<String> = self.expand_one(x, 0)?.into_iter().collect();
            out.retain(|h| !gone.contains(h));
        }
        Ok(out)
    }

    fn expand_one(&self, list: &str, depth: usize) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for item in split_top(list) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            if let Some(group) = item.strip_prefix('@') {
                if depth > 8 {
                    return Err(format!("@{group}: groups nest too deep"));
                }
                let Some(def) = self.groups.get(group) else {
                    return Err(match &self.file {
                        Some(f) => format!("no group {group:?} in {}", f.display()),
                        None => format!("no group {group:?}: there is no config file"),
                    });
                };
                out.extend(self.expand_one(def, depth + 1)?);
            } else {
                if let Some(at) = item.find(':') {
                    return Err(format!(
                        "host list {item:?}: a port (character {}) does not go in a host list; \
                         name the host in the config file with its port: \
                         [hosts.NAME] address = \"HOST:PORT\"",
                        at + 1
                    ));
                }
                check_brackets(item)?;
                check_size(item)?;
                out.extend(hostlist_parser::parse(item).map_err(|e| parse_error(item, &e))?);
            }
            if out.len() as u64 > MAX_HOSTS {
                return Err(format!("the host list names more than {MAX_HOSTS} hosts"));
            }
        }
        Ok(out)
    }
}

/// Splits at commas outside brackets.
fn split_top(list: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&list[start..]);
    parts
}

/// An unbalanced bracket, named by its character (counted from 1) before
/// the parser sees it.
fn check_brackets(item: &str) -> Result<(), String> {
    let mut open: Option<usize> = None;
    for (n, c) in item.chars().enumerate() {
        match (c, open) {
            ('[', Some(at)) => {
                return Err(format!(
                    "host list {item:?}: character {}: '[' inside the range opened at character {}",
                    n + 1,
                    at + 1
                ));
            }
            ('[', None) => open = Some(n),
            (']', None) => {
                return Err(format!(
                    "host list {item:?}: character {}: ']' without '['",
                    n + 1
                ));
            }
            (']', Some(_)) => open = None,
            _ => {}
        }
    }
    match open {
        Some(at) => Err(format!(
            "host list {item:?}: character {}: '[' is never closed",
            at + 1
        )),
        None => Ok(()),
    }
}

/// The parser's error, its position (counted from 0) said as a character
/// counted from 1, with the pattern and a caret under it.
fn parse_error(item: &str, e: &impl std::fmt::Display) -> String {
    let text = e.to_string();
    let at = text
        .split("at ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|d| d.parse::<usize>().ok());
    let detail = text.lines().skip(1).collect::<Vec<_>>().join("; ");
    match at {
        Some(n) => format!(
            "host list {item:?}: character {}: {detail}\n  {item}\n  {}^",
            n + 1,
            " ".repeat(n)
        ),
        None => format!("host list {item:?}: {text}"),
    }
}

/// Refuses, before anything is expanded, a pattern that would name more
/// than [`MAX_HOSTS`] hosts (`x[1-99999999]` must not allocate first), and
/// a range that runs backwards (`lab[4-1]`), as ClusterShell's nodeset
/// does: the parser would expand `lab[99999999-1]` to the whole range while
/// it looked like one host here.
fn check_size(item: &str) -> Result<(), String> {
    let mut total: u64 = 1;
    let mut rest = item;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']') else {
            break; // the parser reports the syntax
        };
        let inside = &rest[open + 1..open + close];
        let mut n: u64 = 0;
        for part in inside.split(',') {
            n = n.saturating_add(match part.split_once('-') {
                Some((a, b)) => {
                    let number = |s: &str| {
                        let s = s.trim();
                        match s.parse::<u64>() {
                            Ok(v) => Ok(Some(v)),
                            // All digits, but more than u64 holds.
                            Err(_) if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) => {
                                Err(format!("{item:?}: {s} is too large a host number"))
                            }
                            Err(_) => Ok(None), // the parser reports the syntax
                        }
                    };
                    match (number(a)?, number(b)?) {
                        (Some(a), Some(b)) if b < a => {
                            return Err(format!(
                                "{item:?}: the range {}-{} runs backwards (write [{}-{}])",
                                a, b, b, a
                            ));
                        }
                        (Some(a), Some(b)) => (b - a).saturating_add(1),
                        _ => 1,
                    }
                }
                None => 1,
            });
        }
        total = total.saturating_mul(n.max(1));
        rest = &rest[open + close + 1..];
    }
    if total > MAX_HOSTS {
        return Err(format!("{item:?} names more than {MAX_HOSTS} hosts"));
    }
    Ok(())
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// Folds names back into a host list: `lab1 lab2 lab3 lab6` is
/// `lab[1-3,6]`; names with no number stay as they are.
pub fn fold(names: &[String]) -> String {
    // (prefix, digit width, suffix) -> numbers
    let mut runs: BTreeMap<(String, usize, String), BTreeSet<u64>> = BTreeMap::new();
    let mut plain = BTreeSet::new();
    for name in names {
        let digits_end = name.rfind(|c: char| c.is_ascii_digit()).map(|i| i + 1);
        let Some(end) = digits_end else {
            plain.insert(name.clone());
            continue;
        };
        let start = name[..end]
            .rfind(|c: char| !c.is_ascii_digit())
            .map_or(0, |i| i + 1);
        let digits = &name[start..end];
        let width = if digits.starts_with('0') && digits.len() > 1 {
            digits.len()
        } else {
            0
        };
        match digits.parse::<u64>() {
            Ok(n) => {
                runs.entry((name[..start].to_string(), width, name[end..].to_string()))
                    .or_default()
                    .insert(n);
            }
            Err(_) => {
                plain.insert(name.clone());
            }
        }
    }
    let mut parts: Vec<String> = plain.into_iter().collect();
    for ((prefix, width, suffix), nums) in runs {
        let show = |n: u64| format!("{n:0width$}");
        if nums.len() == 1 {
            let n = nums.iter().next().copied().unwrap_or(0);
            parts.push(format!("{prefix}{}{suffix}", show(n)));
            continue;
        }
        let mut ranges = Vec::new();
        let mut iter = nums.iter().copied();
        let Some(mut lo) = iter.next() else { continue };
        let mut hi = lo;
        for n in iter {
            if n == hi + 1 {
                hi = n;
            } else {
                ranges.push((lo, hi));
                lo = n;
                hi = n;
            }
        }
        ranges.push((lo, hi));
        let inner: Vec<String> = ranges
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    show(a)
                } else {
                    format!("{}-{}", show(a), show(b))
                }
            })
            .collect();
        parts.push(format!("{prefix}[{}]{suffix}", inner.join(",")));
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn lists_expand_with_groups_and_exclusions() {
        let cfg =
            Config::parse("[groups]\nlab = \"lab[1-4]\"\nall = \"@lab,gpu[01-02]\"\n").unwrap();
        assert_eq!(
            cfg.expand("lab[1-3],x", None).unwrap(),
            names(&["lab1", "lab2", "lab3", "x"])
        );
        assert_eq!(
            cfg.expand("@all", Some("lab3,gpu01")).unwrap(),
            names(&["lab1", "lab2", "lab4", "gpu02"])
        );
        assert!(cfg.expand("@nope", None).unwrap_err().contains("no group"));
        assert!(
            cfg.expand("x[1-99999999]", None)
                .unwrap_err()
                .contains("more than")
        );
    }

    #[test]
    fn reversed_and_oversized_ranges_are_refused_before_expanding() {
        let cfg = Config::default();
        // Counted as one host before, and expanded to 99,999,999 (15 GB).
        let e = cfg.expand("lab[99999999-1]", None).unwrap_err();
        assert!(
            e.contains("lab[99999999-1]") && e.contains("backwards"),
            "{e}"
        );
        assert!(cfg.expand("lab[4-1]", None).unwrap_err().contains("[1-4]"));
        // As ClusterShell's nodeset: the first bound's width pads them all.
        assert_eq!(
            cfg.expand("lab[01-4]", None).unwrap(),
            names(&["lab01", "lab02", "lab03", "lab04"])
        );
        let e = cfg
            .expand("lab[1-99999999999999999999999]", None)
            .unwrap_err();
        assert!(e.contains("too large"), "{e}");
        assert!(
            cfg.expand("a[1-100],b[1-100]", None).unwrap().len() == 200,
            "the bound is per list, not per item"
        );
        assert!(cfg.expand("a[1-100][1-101]", None).is_err());
    }

    #[test]
    fn a_port_after_a_configured_name_keeps_the_rest_of_its_entry() {
        let cfg = Config::parse(
            "[hosts.lab1]\naddress = \"10.0.0.5:7070\"\ntls = true\n[hosts.v6]\naddress = \"[fd00::5]\"\n",
        )
        .unwrap();
        let t = cfg.target("lab1:7071");
        assert_eq!(t.address, "10.0.0.5:7071");
        assert!(t.tls, "the entry's other settings stay");
        assert_eq!(cfg.target("v6:9").address, "[fd00::5]:9");
        // A name not in the file is an address, as before.
        assert_eq!(cfg.target("other:7071").address, "other:7071");
    }

    #[test]
    fn host_list_errors_say_where_ports_go() {
        let e = Config::default().expand("lab1:7071", None).unwrap_err();
        assert!(
            e.contains("character 5") && e.contains("config file"),
            "{e}"
        );
    }

    #[test]
    fn host_list_errors_point_at_the_character() {
        let cfg = Config::default();
        let e = cfg.expand("lab[1-4", None).unwrap_err();
        assert!(e.contains("character 4: '[' is never closed"), "{e}");
        let e = cfg.expand("lab1-4]", None).unwrap_err();
        assert!(e.contains("character 7: ']' without '['"), "{e}");
        let e = cfg.expand("lab[a-b]", None).unwrap_err();
        assert!(e.contains("character 5") && e.contains("\n      ^"), "{e}");
    }

    #[test]
    fn config_errors_name_line_and_column() {
        let e = Config::parse("[hosts.lab1]\naddress = \"a\"\nport = 7\n").unwrap_err();
        assert!(e.starts_with("3:1:"), "{e}");
        assert!(e.contains("port"), "{e}");
    }

    #[test]
    fn user_at_host_and_the_files_user_and_identity() {
        let cfg = Config::parse(
            "[defaults]\nuser = \"lab\"\n[hosts.lab1]\naddress = \"10.0.0.5\"\nidentity = \"/k\"\n",
        )
        .unwrap();
        let t = cfg.target("alice@lab1");
        assert_eq!(t.user.as_deref(), Some("alice"), "user@ wins over the file");
        assert_eq!(t.address, "10.0.0.5", "the entry still applies");
        assert_eq!(t.identity, Some(PathBuf::from("/k")));
        assert_eq!(cfg.target("lab1").user.as_deref(), Some("lab"));
        assert_eq!(cfg.target("127.0.0.1:7070").user.as_deref(), Some("lab"));
        assert_eq!(
            Config::default().target("bob@127.0.0.1").address,
            "127.0.0.1"
        );
    }

    #[test]
    fn keepalive_comes_from_the_entry_then_the_defaults() {
        let cfg = Config::parse(
            "[defaults]\nkeepalive = 20\n[hosts.lab1]\nkeepalive = 0\n[hosts.lab2]\n",
        )
        .unwrap();
        assert_eq!(cfg.target("lab1").keepalive, Some(0), "0 turns it off");
        assert_eq!(cfg.target("lab2").keepalive, Some(20));
        assert_eq!(Config::default().target("x").keepalive, None);
    }

    #[test]
    fn targets_take_the_entry_then_the_defaults() {
        let cfg = Config::parse(
            "[defaults]\ntoken_file = \"/t\"\n[hosts.lab1]\naddress = \"10.0.0.5:7071\"\nfingerprint = \"SHA256:ab\"\n",
        )
        .unwrap();
        let t = cfg.target("lab1");
        assert_eq!(t.address, "10.0.0.5:7071");
        assert!(t.tls, "a fingerprint implies TLS");
        assert_eq!(t.token_file, Some(PathBuf::from("/t")));
        let t = cfg.target("other:7072");
        assert_eq!(t.address, "other:7072");
        assert!(!t.tls);
    }

    #[test]
    fn names_fold_back_into_lists() {
        assert_eq!(
            fold(&names(&[
                "lab1", "lab2", "lab3", "lab6", "gpu01", "gpu02", "login"
            ])),
            "login,gpu[01-02],lab[1-3,6]"
        );
        assert_eq!(fold(&names(&["lab4"])), "lab4");
    }
}
