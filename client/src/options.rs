//! From the command line to what the library takes: [`ConnectOptions`]
//! (TLS trust, token, timeouts) and the [`Exec`] for a command.

use rexec_proto::{Exec, ExecMode};

use crate::addr::{hostport, parse_host};
use crate::cli::RunArgs;
use crate::error::ClientError;
use crate::session::ConnectOptions;
use crate::tls::{self, TlsOptions, Trust};

impl RunArgs {
    /// TLS settings for `host_spec`, or `None` for plaintext.
    pub fn tls_options(&self, host_spec: &str) -> Result<Option<TlsOptions>, ClientError> {
        let known_hosts = match self.known_hosts.clone().or_else(tls::default_known_hosts) {
            Some(f) => f,
            None => {
                return Err(ClientError::Usage(
                    "no known-hosts file: give --known-hosts FILE".into(),
                ));
            }
        };
        let (host, port) = parse_host(host_spec).map_err(ClientError::Usage)?;
        // A pinned host never falls back to plaintext.
        let pinned = tls::known_host(&known_hosts, &hostport(&host, port))?.is_some();
        let wanted = self.tls
            || self.accept_new
            || self.fingerprint.is_some()
            || self.ca.is_some()
            || pinned;
        if !wanted {
            return Ok(None);
        }
        let trust = match (&self.fingerprint, &self.ca) {
            (Some(fp), _) => Trust::Fingerprint(fp.clone()),
            (_, Some(ca)) => Trust::Ca(ca.clone()),
            _ => Trust::KnownHosts {
                accept_new: self.accept_new,
            },
        };
        Ok(Some(TlsOptions { trust, known_hosts }))
    }

    pub fn connect_options(&self, host_spec: &str) -> Result<ConnectOptions, ClientError> {
        Ok(ConnectOptions {
            tls: self.tls_options(host_spec)?,
            connect_timeout: Some(self.connect_timeout),
            trace: self.trace,
            token: rexec_proto::auth::Token::load(self.token_file.as_deref())
                .map_err(ClientError::Usage)?,
        })
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
