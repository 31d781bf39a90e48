//! From the command line to what the library takes: [`ConnectOptions`]
//! (TLS trust, token, timeouts) and the [`Exec`] for a command.

use std::time::Duration;

use rexec_proto::{Exec, ExecMode};

use crate::addr::{hostport, parse_host};
use crate::cli::{ConnArgs, RunArgs};
use crate::error::ClientError;
use crate::hosts::Target;
use crate::session::{ConnectOptions, Session};
use crate::tls::{self, TlsOptions, Trust};

impl ConnArgs {
    /// TLS settings for `target`, or `None` for plaintext. Flags on the
    /// command line win over the config file.
    pub fn tls_options(&self, target: &Target) -> Result<Option<TlsOptions>, ClientError> {
        let known_hosts = match self.known_hosts.clone().or_else(tls::default_known_hosts) {
            Some(f) => f,
            None => {
                return Err(ClientError::Usage(
                    "no known-hosts file: give --known-hosts FILE".into(),
                ));
            }
        };
        let (host, port) = parse_host(&target.address).map_err(ClientError::Usage)?;
        // A pinned host never falls back to plaintext.
        let pinned = tls::known_host(&known_hosts, &hostport(&host, port))?.is_some();
        let fingerprint = self
            .fingerprint
            .clone()
            .or_else(|| target.fingerprint.clone());
        let wanted = self.tls
            || self.accept_new
            || fingerprint.is_some()
            || self.ca.is_some()
            || target.tls
            || pinned;
        if !wanted {
            return Ok(None);
        }
        let trust = match (fingerprint, &self.ca) {
            (Some(fp), _) => Trust::Fingerprint(fp),
            (_, Some(ca)) => Trust::Ca(ca.clone()),
            _ => Trust::KnownHosts {
                accept_new: self.accept_new,
            },
        };
        Ok(Some(TlsOptions { trust, known_hosts }))
    }

    pub fn connect_options(&self, target: &Target) -> Result<ConnectOptions, ClientError> {
        let token_file = self.token_file.as_deref().or(target.token_file.as_deref());
        Ok(ConnectOptions {
            tls: self.tls_options(target)?,
            connect_timeout: Some(self.connect_timeout),
            keepalive: match self
                .keepalive
                .or(target.keepalive)
                .unwrap_or(DEFAULT_KEEPALIVE)
            {
                0 => None,
                secs => Some(Duration::from_secs(secs)),
            },
            trace: self.trace,
            identities: self
                .identity
                .iter()
                .cloned()
                .chain(target.identity.clone())
                .collect(),
            user: self.user.clone().or_else(|| target.user.clone()),
            token_from_config: self.token_file.is_none()
                && target.token_file.is_some()
                && std::env::var_os(rexec_proto::auth::TOKEN_ENV).is_none(),
            token: rexec_proto::auth::Token::load(token_file)
                .map_err(|e| ClientError::Usage(e.to_string()))?,
            jump: match &target.jump {
                None => None,
                Some(gateway) => {
                    let mut opts = self.connect_options(gateway)?;
                    // -l names the account on the host, not on the
                    // gateway (as ssh's -l).
                    opts.user = gateway.user.clone();
                    Some(crate::session::Jump {
                        address: gateway.address.clone(),
                        opts: Box::new(opts),
                    })
                }
            },
        })
    }

    /// Connects to `target` with this invocation's options.
    /// Through its gateway, if it has one (`-J`, `jump`).
    pub fn connect(&self, target: &Target) -> Result<Session, ClientError> {
        let opts = self.connect_options(target)?;
        match &opts.jump {
            Some(jump) => crate::forward::jump::connect(&target.address, &opts, jump),
            None => Session::connect(&target.address, &opts),
        }
    }
}

/// Seconds of silence before a keepalive probe, when neither the command
/// line nor the config file says: a hung host is given up within about 45 s.
const DEFAULT_KEEPALIVE: u64 = 15;

impl RunArgs {
    /// `--capture-limit` in bytes.
    pub fn capture_limit(&self) -> usize {
        usize::try_from(self.capture_limit).unwrap_or(usize::MAX)
    }

    /// Connects to `target` with this invocation's options.
    pub fn connect(&self, target: &Target) -> Result<Session, ClientError> {
        self.conn.connect(target)
    }

    /// The `Exec` for `command` with this invocation's options.
    pub fn exec(&self, id: u32, command: String, mode: ExecMode) -> Exec {
        Exec {
            id,
            command,
            mode,
            cwd: self.cwd.clone(),
            env: self.env.clone(),
            timeout_ms: self
                .timeout
                .map(|d| d.as_millis().try_into().unwrap_or(u64::MAX)),
            stdin: false,
            pty: None,
        }
    }
}

/// The command string and mode for the words given on the command line.
pub fn command_from_words(words: &[String]) -> Result<(String, ExecMode), ClientError> {
    match words {
        [] => Err(ClientError::Usage("no command".into())),
        [one] => Ok((one.clone(), ExecMode::Shell)),
        many => shlex::try_join(many.iter().map(String::as_str))
            .map(|s| (s, ExecMode::Argv))
            .map_err(|e| ClientError::Usage(format!("cannot quote the command: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_word_is_a_shell_string_several_are_argv() {
        assert_eq!(
            command_from_words(&words(&["ls | wc -l"])).ok(),
            Some(("ls | wc -l".to_string(), ExecMode::Shell))
        );
        let (s, mode) =
            command_from_words(&words(&["ls", "-l", "my file", "$HOME", "*"])).expect("joins");
        assert_eq!(mode, ExecMode::Argv);
        assert_eq!(
            shlex::split(&s),
            Some(words(&["ls", "-l", "my file", "$HOME", "*"])),
            "the server's split gives back the same words: {s}"
        );
    }
}
