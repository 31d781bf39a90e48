//! What can stop rexecd from starting, as types: the command line and its
//! settings ([`ConfigError`]) and the TLS identity ([`TlsError`]). Errors
//! while serving are per command (`CommandError` in process.rs) or per
//! connection (an `Error` frame), never a reason to stop.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use rexec_proto::auth::TokenError;

/// A setting rexecd cannot start with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("--allow {0}: no such program in PATH")]
    NoSuchProgram(String),
    #[error("--user needs rexecd to run as root (it switches to that user for each command)")]
    UserNeedsRoot,
    #[error("--user {name}: {why}")]
    User { name: String, why: String },
    #[error("no state directory: give --state-dir DIR")]
    NoStateDir,
    #[error("{what}: cannot find rexecd's own executable: {source}")]
    OwnExecutable {
        what: &'static str,
        source: io::Error,
    },
    #[error("--files-root {}: {source}", path.display())]
    FilesRoot { path: PathBuf, source: io::Error },
    #[error("--authorized-keys {}: {why}", path.display())]
    AuthorizedKeys { path: PathBuf, why: String },
    #[error("--tls works with --protocol native only")]
    TlsNeedsNative,
    #[error(
        "--login needs rexecd to run as root (it runs each account's commands as that account)"
    )]
    LoginNeedsRoot,
    #[error(
        "--allow-env has no effect without --no-shell or --login: otherwise a client may set \
         any variable"
    )]
    AllowEnvUnused,
    #[error(
        "--state-dir: {0}; detached jobs of the accounts commands run as would all fail: \
         run chmod o+x on it, or give a --state-dir they can reach (/var/lib/rexec)"
    )]
    JobsUnreachable(String),
    #[error(
        "--login with the {0} protocol: it has no authentication, so everyone would run \
         commands as root; use --protocol native"
    )]
    LoginNeedsNative(&'static str),
    #[error(
        "--login with a token: token holders would run commands as root (rexecd's account); \
         add --permit-root-login if that is meant, or leave the token out"
    )]
    LoginTokenIsRoot,
    #[error(
        "refusing to listen on {listen} without {missing}: anyone on the network could {could}. \
         Listen on loopback, add what is missing, or pass --insecure if this network is trusted"
    )]
    Exposed {
        listen: SocketAddr,
        missing: String,
        could: &'static str,
    },
}

/// The TLS identity could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate {}: {why}", path.display())]
    Certificate { path: PathBuf, why: String },
    #[error("key {}: {why}", path.display())]
    Key { path: PathBuf, why: String },
    #[error(
        "TLS key {} can be read by others (mode {mode:03o}); run: chmod 600 {}",
        path.display(),
        path.display()
    )]
    KeyReadable { path: PathBuf, mode: u32 },
    #[error("state directory {}: {source}", path.display())]
    StateDir { path: PathBuf, source: io::Error },
    #[error("{}: {source}", path.display())]
    File { path: PathBuf, source: io::Error },
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS setup: {0}")]
    Setup(rustls::Error),
    #[error("TLS certificate and key: {0}")]
    Pair(rustls::Error),
    #[error(
        "certificate {} and key {} do not match: the key is not the one the certificate \
         was made for",
        cert.display(),
        key.display()
    )]
    Mismatch { cert: PathBuf, key: PathBuf },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn errors_say_what_and_keep_their_cause() {
        let missing = PathBuf::from("/nonexistent/rexec-token");
        let e = ConfigError::from(rexec_proto::auth::Token::from_file(&missing).unwrap_err());
        assert_eq!(
            e.to_string(),
            "token file /nonexistent/rexec-token: No such file or directory (os error 2)"
        );
        let cause = e.source().and_then(|s| s.downcast_ref::<io::Error>());
        assert_eq!(cause.map(io::Error::kind), Some(io::ErrorKind::NotFound));
        let e = ConfigError::OwnExecutable {
            what: "--contain",
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert!(
            e.to_string()
                .starts_with("--contain: cannot find rexecd's own executable")
        );
        assert!(e.source().is_some());
    }
}
