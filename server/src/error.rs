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
    /// The token file or `REXEC_TOKEN`.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The TLS identity.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// An `--allow` program that is not in PATH.
    #[error("--allow {0}: no such program in PATH")]
    NoSuchProgram(String),
    /// `--user` without root.
    #[error("--user needs rexecd to run as root (it switches to that user for each command)")]
    UserNeedsRoot,
    /// `--user NAME` cannot be used.
    #[error("--user {name}: {why}")]
    User {
        /// The account.
        name: String,
        /// Why.
        why: String,
    },
    /// No state directory could be found.
    #[error("no state directory: give --state-dir DIR")]
    NoStateDir,
    /// rexecd's own executable (its helpers) cannot be found.
    #[error("{what}: cannot find rexecd's own executable: {source}")]
    OwnExecutable {
        /// What needed it.
        what: &'static str,
        /// Why it was not found.
        source: io::Error,
    },
    /// `--files-root` cannot be used.
    #[error("--files-root {}: {source}", path.display())]
    FilesRoot {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// `--authorized-keys` cannot be used.
    #[error("--authorized-keys {}: {why}", path.display())]
    AuthorizedKeys {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// TLS with a tutorial protocol.
    #[error("--tls works with --protocol native only")]
    TlsNeedsNative,
    /// `--login` without root.
    #[error(
        "--login needs rexecd to run as root (it runs each account's commands as that account)"
    )]
    LoginNeedsRoot,
    /// `--allow-env` where every variable is allowed anyway.
    #[error(
        "--allow-env has no effect without --no-shell or --login: otherwise a client may set \
         any variable"
    )]
    AllowEnvUnused,
    /// A `--state-dir` the accounts' jobs cannot reach.
    #[error(
        "--state-dir: {0}; detached jobs of the accounts commands run as would all fail: \
         run chmod o+x on it, or give a --state-dir they can reach (/var/lib/rexec)"
    )]
    JobsUnreachable(String),
    /// `--login` with a tutorial protocol.
    #[error(
        "--login with the {0} protocol: it has no authentication, so everyone would run \
         commands as root; use --protocol native"
    )]
    LoginNeedsNative(&'static str),
    /// `--login` with a token but without `--permit-root-login`.
    #[error(
        "--login with a token: token holders would run commands as root (rexecd's account); \
         add --permit-root-login if that is meant, or leave the token out"
    )]
    LoginTokenIsRoot,
    /// A non-loopback address without TLS or without authentication.
    #[error(
        "refusing to listen on {listen} without {missing}: anyone on the network could {could}. \
         Listen on loopback, add what is missing, or pass --insecure if this network is trusted"
    )]
    Exposed {
        /// The address.
        listen: SocketAddr,
        /// What it lacks.
        missing: String,
        /// What anyone could then do.
        could: &'static str,
    },
}

/// The TLS identity could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file cannot be used.
    #[error("certificate {}: {why}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The key file cannot be used.
    #[error("key {}: {why}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The key file can be read by others.
    #[error(
        "TLS key {} can be read by others (mode {mode:03o}); run: chmod 600 {}",
        path.display(),
        path.display()
    )]
    KeyReadable {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// The state directory cannot be made or used.
    #[error("state directory {}: {source}", path.display())]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file of the identity cannot be read or written.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A certificate could not be made.
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the setup.
    #[error("TLS setup: {0}")]
    Setup(rustls::Error),
    /// rustls refused the certificate and key.
    #[error("TLS certificate and key: {0}")]
    Pair(rustls::Error),
    /// The key is not the certificate's.
    #[error(
        "certificate {} and key {} do not match: the key is not the one the certificate \
         was made for",
        cert.display(),
        key.display()
    )]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
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
