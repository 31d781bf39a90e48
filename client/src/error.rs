//! Client errors. Each becomes exit code 255 and one line on stderr that
//! names the cause.

use std::io;

use rexec_proto::{ErrorKind, ErrorMsg};

/// Why the client could not do what it was asked (the program's error;
/// the library's is [`crate::Error`]).
#[derive(Debug)]
pub enum ClientError {
    /// The host spec or name could not be resolved.
    Resolve(String),
    /// Nothing listens there.
    Refused(String),
    /// No route, network down, host unreachable.
    Unreachable(String, io::Error),
    /// The connection attempt or the server's hello took too long.
    Timeout(String),
    /// The connection broke.
    Io(io::Error),
    /// The server sent bytes that are not the rexec protocol.
    Protocol(String),
    /// The server refused the connection or closed it with an error.
    Server(ErrorMsg),
    /// Bad arguments from the user.
    Usage(String),
    /// The server's TLS certificate is not trusted.
    Trust(String),
    /// The server sent nothing for three keepalive periods (a hung host,
    /// or a network that went away): the address, and for how long.
    NoAnswer(String, std::time::Duration),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Resolve(m) => write!(f, "cannot resolve host: {m}"),
            ClientError::Refused(a) => {
                write!(
                    f,
                    "connection refused by {a} (is rexecd running and listening there?)"
                )
            }
            ClientError::Unreachable(a, e) => write!(f, "cannot reach {a}: {e}"),
            ClientError::Timeout(a) => write!(f, "timed out connecting to {a}"),
            ClientError::Io(e) => write!(f, "connection lost: {e}"),
            ClientError::Protocol(m) => write!(f, "protocol error: {m}"),
            ClientError::Server(e) => match e.kind {
                ErrorKind::Auth => write!(f, "auth failed: {}", e.message),
                ErrorKind::Version => write!(f, "{}", e.message),
                ErrorKind::Shutdown => write!(f, "{}: {}", e.kind, e.message),
                _ => write!(f, "server closed the connection: {}: {}", e.kind, e.message),
            },
            ClientError::Usage(m) => f.write_str(m),
            ClientError::Trust(m) => f.write_str(m),
            ClientError::NoAnswer(a, d) => {
                write!(f, "{a}: no answer for {} s (keepalive)", d.as_secs())
            }
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// Whether the next address of a host name might do better: only when
    /// this one could not be reached at all.
    pub fn worth_another_address(&self) -> bool {
        matches!(
            self,
            ClientError::Refused(_)
                | ClientError::Unreachable(..)
                | ClientError::Timeout(_)
                | ClientError::Io(_)
        )
    }

    /// A stable lower-case name for scripts (`--json`): the server's error
    /// kind when it refused, otherwise what went wrong on the way.
    pub fn kind_name(&self) -> &'static str {
        match self {
            ClientError::Resolve(_) => "resolve",
            ClientError::Refused(_) => "refused",
            ClientError::Unreachable(..) => "unreachable",
            ClientError::Timeout(_) => "timeout",
            ClientError::Io(_) => "connection",
            ClientError::Protocol(_) => "protocol",
            ClientError::Server(e) => e.kind.name(),
            ClientError::Usage(_) => "usage",
            ClientError::Trust(_) => "trust",
            ClientError::NoAnswer(..) => "keepalive",
        }
    }
}

impl ClientError {
    /// What went wrong, without the address: the same failure on many hosts
    /// reads the same, so a summary can fold them (`lab[3-5]: connection
    /// refused`).
    pub fn short(&self) -> String {
        match self {
            ClientError::Refused(_) => "connection refused".into(),
            ClientError::Timeout(_) => "timed out connecting".into(),
            ClientError::Unreachable(_, e) => format!("cannot reach: {e}"),
            ClientError::NoAnswer(..) => "no answer (keepalive)".into(),
            other => other.to_string(),
        }
    }
}

/// The descriptor given with `--error-fd`, if any.
static ERROR_FD: std::sync::OnceLock<i32> = std::sync::OnceLock::new();

/// Remembers `--error-fd`.
pub fn set_error_fd(fd: i32) {
    let _ = ERROR_FD.set(fd);
}

/// With `--error-fd`: one line for this failure there, `KIND MESSAGE`.
/// (Opened through /proc, so no descriptor is taken on trust.)
pub fn report_to_error_fd(e: &ClientError) {
    use std::io::Write;
    let Some(fd) = ERROR_FD.get() else {
        return;
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .open(format!("/proc/self/fd/{fd}"))
    {
        let _ = writeln!(f, "{} {}", e.kind_name(), e);
    }
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreachable_addresses_are_worth_trying_the_next_one() {
        assert!(ClientError::Refused("a".into()).worth_another_address());
        assert!(ClientError::Timeout("a".into()).worth_another_address());
        // Trust was asked (and refused) once: not again for another address.
        assert!(!ClientError::Trust("no".into()).worth_another_address());
        let auth = ErrorMsg {
            id: None,
            kind: ErrorKind::Auth,
            message: "wrong token".into(),
        };
        assert!(!ClientError::Server(auth).worth_another_address());
        assert!(!ClientError::Usage("x".into()).worth_another_address());
    }
}
