//! rexecd's settings: [`Config`], checked before the server starts. The
//! command line that builds it is in cli.rs.

use std::net::SocketAddr;
use std::time::Duration;

use clap::ValueEnum;
use rexec_proto::auth::Token;

use crate::error::ConfigError;
use crate::exec_policy::ExecPolicy;

/// Which protocol a server speaks on its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// rexec's framed protocol (docs/PROTOCOL.md): streaming, exit codes,
    /// stdin, several commands at once.
    Native,
    /// The socket tutorials' protocol: each read of up to 1024 bytes is a
    /// command; the reply is a 4-byte little-endian length, then stdout and
    /// stderr. Works with the tutorials' Python client.
    Seed,
    /// The tutorials' broken first version: the reply with no header at all.
    /// Shows sticky packets; for teaching only.
    Raw,
}

/// Everything the server needs to know; built from the command line
/// (`Args` in cli.rs) or by hand (tests, the client's embedded demo
/// server).
#[derive(Debug, Clone)]
pub struct Config {
    /// The address to listen on (the first, when there are several).
    pub listen: SocketAddr,
    /// More addresses to listen on, each with its own socket.
    pub also_listen: Vec<SocketAddr>,
    /// The protocol spoken.
    pub protocol: Protocol,
    /// Longest a command may run; `None` for no limit.
    pub timeout: Option<Duration>,
    /// Most output bytes (stdout + stderr) per command; `None` for no limit.
    pub max_output: Option<u64>,
    /// Most client connections at once.
    pub max_conns: usize,
    /// Most connections waiting to authenticate (no hello, or no answer yet).
    pub max_startups: usize,
    /// Most commands running at once.
    pub max_procs: usize,
    /// Close connections that send nothing and run nothing for this long.
    pub idle_timeout: Option<Duration>,
    /// Probe a silent client after this long; it is gone after three times
    /// as long without a byte. `None`: no probes (TCP keepalive only).
    pub keepalive: Option<Duration>,
    /// Unsent bytes a connection may have queued before its commands' pipes
    /// stop being read.
    pub queue_limit: usize,
    /// Bytes all connections and commands together may hold in queues
    /// (output not yet sent, stdin not yet written, partial frames, tutorial
    /// replies being built).
    pub max_buffer: usize,
    /// Largest frame accepted from a client.
    pub max_frame: usize,
    /// On shutdown, how long running commands may go on before they are
    /// stopped (`--stop-grace`; zero for an embedded server).
    pub stop_grace: Duration,
    /// Time between SIGTERM and SIGKILL when a command is stopped.
    pub kill_grace: Duration,
    /// How long to wait for the pipes of a command whose process has exited
    /// (grandchildren may hold them open).
    pub pipe_grace: Duration,
    /// Whether to handle SIGINT and SIGTERM (off for an embedded server).
    pub handle_signals: bool,
    /// The shared secret clients must prove they hold; `None` lets anyone in
    /// (unless `authorized_keys` is set).
    pub token: Option<Token>,
    /// Public keys that may come in instead of the token (`--authorized-keys`).
    pub authorized_keys: Option<std::sync::Arc<crate::auth::authorized::AuthorizedKeys>>,
    /// `--login`: a client names an account, and its key must be in that
    /// account's `~/.ssh/authorized_keys` (login.rs).
    pub login: bool,
    /// `--permit-root-login`: root may log in with `--login`.
    pub permit_root_login: bool,
    /// A connection must complete its hello (and auth) within this time.
    pub handshake_timeout: Duration,
    /// A frame that has begun to arrive must be complete within this time.
    pub frame_timeout: Duration,
    /// What clients may run: through a shell or not, which programs.
    pub exec: ExecPolicy,
    /// Allow plaintext, or no token, on a non-loopback address.
    pub insecure: bool,
    /// Speak TLS on the port.
    pub tls: Option<crate::tls::TlsSetup>,
    /// Splice busy pipes into plain sockets (zero-copy output); off, all
    /// output is copied through rexecd's memory.
    pub splice: bool,
    /// Which ways ports are forwarded (`--forwarding`).
    pub forwarding: crate::forward::permit::Allow,
    /// `-R` ports may listen on other addresses than loopback.
    pub gateway_ports: bool,
}

/// The output limit that always applies to the tutorial protocols, whose
/// replies must be buffered whole to know their length.
pub const TUTORIAL_MAX_OUTPUT: u64 = 64 << 20;

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            also_listen: Vec::new(),
            stop_grace: Duration::ZERO,
            protocol: Protocol::Native,
            timeout: None,
            max_output: None,
            max_conns: 1024,
            max_startups: 64,
            max_procs: 256,
            idle_timeout: Some(Duration::from_secs(600)),
            keepalive: Some(Duration::from_secs(30)),
            queue_limit: 1 << 20,
            max_buffer: 256 << 20,
            max_frame: rexec_proto::DEFAULT_MAX_FRAME,
            kill_grace: Duration::from_secs(1),
            pipe_grace: Duration::from_millis(500),
            handle_signals: true,
            token: None,
            authorized_keys: None,
            login: false,
            permit_root_login: false,
            handshake_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(30),
            exec: ExecPolicy::default(),
            insecure: false,
            tls: None,
            splice: true,
            forwarding: crate::forward::permit::Allow::Yes,
            gateway_ports: false,
        }
    }
}

impl Config {
    /// Whether clients must authenticate: with a token or a key.
    pub fn needs_auth(&self) -> bool {
        self.token.is_some() || self.authorized_keys.is_some() || self.login
    }

    /// Every address to listen on, the first first.
    pub fn addresses(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        std::iter::once(self.listen).chain(self.also_listen.iter().copied())
    }

    /// Refuses unsafe settings; returns warnings to log for allowed ones.
    pub fn check(&self) -> Result<Vec<String>, ConfigError> {
        let mut warnings = Vec::new();
        if self.tls.is_some() && self.protocol != Protocol::Native {
            return Err(ConfigError::TlsNeedsNative);
        }
        if self.login {
            match self.protocol {
                Protocol::Native => {}
                Protocol::Seed => return Err(ConfigError::LoginNeedsNative("seed")),
                Protocol::Raw => return Err(ConfigError::LoginNeedsNative("raw")),
            }
            if self.token.is_some() && !self.permit_root_login {
                return Err(ConfigError::LoginTokenIsRoot);
            }
        }
        // Every address counts: one exposed socket exposes rexecd.
        if let Some(listen) = self.addresses().find(|a| !a.ip().is_loopback()) {
            let mut missing = Vec::new();
            if self.tls.is_none() {
                missing.push("TLS (--tls)");
            }
            let open = !self.needs_auth();
            if open {
                missing.push(
                    "a token (--token-file FILE or REXEC_TOKEN) or keys (--authorized-keys FILE)",
                );
            }
            if !missing.is_empty() && !self.insecure {
                return Err(ConfigError::Exposed {
                    listen,
                    missing: missing.join(" and "),
                    could: if open {
                        "run commands as this user"
                    } else {
                        "read every command and its output"
                    },
                });
            }
            if self.tls.is_none() {
                warnings.push(format!(
                    "INSECURE: listening on {} in plaintext: commands and output can be read on the network",
                    listen
                ));
            }
            if open {
                warnings.push(format!(
                    "INSECURE: listening on {} without a token: anyone who can connect can run commands as this user",
                    listen
                ));
            }
        }
        if let Some(why) = self.exec.jobs.as_ref().and_then(|j| j.unreachable.as_ref()) {
            warnings.push(format!(
                "detached jobs are off for the accounts commands run as: {why}; give \
                 --state-dir /var/lib/rexec (or any directory they can reach)"
            ));
        }
        if self.protocol != Protocol::Native && self.token.is_some() {
            warnings.push(
                "the seed and raw protocols have no authentication: the token is not checked"
                    .into(),
            );
        }
        Ok(warnings)
    }

    /// The output limit in force for this protocol. The tutorial protocols
    /// build each reply whole before sending it, so theirs is never above
    /// 64 MiB or a quarter of the memory budget.
    pub fn output_limit(&self) -> Option<u64> {
        match self.protocol {
            Protocol::Native => self.max_output,
            Protocol::Seed | Protocol::Raw => {
                let cap = TUTORIAL_MAX_OUTPUT.min(self.max_buffer as u64 / 4).max(1);
                Some(self.max_output.map_or(cap, |m| m.min(cap)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_needs_tls_and_a_token_or_insecure() {
        let mut c = Config::default();
        assert_eq!(c.check().unwrap(), Vec::<String>::new());
        c.listen = "0.0.0.0:7070".parse().unwrap();
        let err = c.check().unwrap_err().to_string();
        assert!(
            err.contains("--tls") && err.contains("--token-file") && err.contains("--insecure"),
            "{err}"
        );
        c.insecure = true;
        let warnings = c.check().unwrap();
        assert_eq!(
            warnings.iter().filter(|w| w.contains("INSECURE")).count(),
            2,
            "{warnings:?}"
        );
        // A token alone is not enough: plaintext still needs --insecure.
        c.insecure = false;
        c.token = Some(Token::new("t").unwrap());
        let err = c.check().unwrap_err().to_string();
        assert!(
            err.contains("TLS (--tls)") && !err.contains("token"),
            "{err}"
        );
        c.insecure = true;
        let warnings = c.check().unwrap();
        assert!(
            warnings.iter().any(|w| w.contains("plaintext")),
            "{warnings:?}"
        );
        // TLS and a token: no complaint.
        let dir = std::env::temp_dir().join(format!("rexec-cfg-{}", std::process::id()));
        c.tls = Some(crate::tls::self_signed(&dir).unwrap());
        c.insecure = false;
        assert_eq!(c.check().unwrap(), Vec::<String>::new());
        c.listen = "[::1]:7070".parse().unwrap();
        c.protocol = Protocol::Seed;
        assert!(c.check().unwrap_err().to_string().contains("native only"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tutorial_protocols_always_have_an_output_limit() {
        let mut c = Config::default();
        assert_eq!(c.output_limit(), None);
        c.protocol = Protocol::Seed;
        assert_eq!(c.output_limit(), Some(TUTORIAL_MAX_OUTPUT));
        c.max_output = Some(10);
        assert_eq!(c.output_limit(), Some(10));
        // A small memory budget lowers the cap: a quarter of it.
        c.max_output = None;
        c.max_buffer = 16 << 20;
        assert_eq!(c.output_limit(), Some(4 << 20));
    }
}
