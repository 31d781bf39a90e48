//! What one authenticated connection may do, and as whom: decided once,
//! when its key (or token) is accepted, and consulted for every command
//! and copy it asks for.

use std::path::Path;
use std::sync::Arc;

use rexec_proto::{ErrorKind, Exec};

use crate::auth::run_as::RunAs;
use crate::process::CommandError;

/// The variable a forced command finds the client's command in.
pub const ORIGINAL_COMMAND: &str = "REXEC_ORIGINAL_COMMAND";

/// A connection's rights.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// With `--login`: the account the client named, whose commands run as
    /// it and through its login shell. `None`: the server's account
    /// (`--user`, or rexecd's own).
    pub account: Option<Arc<RunAs>>,
    /// `command="..."` on the key's line: run instead of what is asked.
    pub forced: Option<String>,
    /// `no-pty` (or `restrict`) on the key's line.
    pub no_pty: bool,
    /// What the key's line lets it forward (`no-port-forwarding`,
    /// `permitopen`, `permitlisten`, `restrict`).
    pub forwarding: crate::forward::permit::Permits,
}

impl Grant {
    /// Refuses what this connection may not run at all: a terminal with
    /// `no-pty`, anything for an account whose shell is `nologin`.
    pub fn check_exec(&self, exec: &Exec) -> Result<(), CommandError> {
        self.check_account()?;
        if exec.pty.is_some() && self.no_pty {
            return Err(CommandError::new(
                ErrorKind::Forbidden,
                "this key may not open a terminal (no-pty in authorized_keys): run without -t",
            ));
        }
        Ok(())
    }

    /// Refuses `what` (file copies, jobs: rexecd's helpers) to a key with a
    /// forced command (it may run that command only, as with sshd, where
    /// scp would run it instead) and to an account that may not log in.
    pub fn check_helper(&self, what: &str) -> Result<(), CommandError> {
        self.check_account()?;
        if self.forced.is_some() {
            return Err(CommandError::new(
                ErrorKind::Forbidden,
                format!(
                    "this key may only run its forced command (command= in authorized_keys); \
                     {what} are off for it"
                ),
            ));
        }
        Ok(())
    }

    /// As sshd runs an account's commands through its shell, an account
    /// whose shell is `nologin` (or `false`) runs nothing; said plainly
    /// here, since argv mode and copies would not go through that shell.
    fn check_account(&self) -> Result<(), CommandError> {
        let Some(user) = &self.account else {
            return Ok(());
        };
        if no_login(&user.shell) {
            return Err(CommandError::new(
                ErrorKind::Forbidden,
                format!(
                    "account {} may not run commands here (its shell is {})",
                    user.name,
                    user.shell.display()
                ),
            ));
        }
        Ok(())
    }

    /// The command line to run for `exec`: the forced one, if any, and
    /// whether it replaced the client's.
    pub fn command<'a>(&'a self, exec: &'a Exec) -> (&'a str, bool) {
        match &self.forced {
            Some(forced) => (forced, true),
            None => (&exec.command, false),
        }
    }
}

/// Whether `shell` is one that refuses logins.
fn no_login(shell: &Path) -> bool {
    shell
        .file_name()
        .is_some_and(|n| n == "nologin" || n == "false")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn account(shell: &str) -> Option<Arc<RunAs>> {
        Some(Arc::new(RunAs {
            name: "lab".into(),
            uid: 1000,
            gid: 1000,
            groups: vec![1000],
            home: PathBuf::from("/home/lab"),
            shell: PathBuf::from(shell),
        }))
    }

    #[test]
    fn nologin_accounts_no_pty_keys_and_forced_commands_are_held_to_them() {
        let tty = Exec {
            pty: Some(rexec_proto::PtyRequest {
                term: "xterm".into(),
                rows: 24,
                cols: 80,
            }),
            ..Exec::default()
        };
        let plain = Exec::default();
        let nologin = Grant {
            account: account("/usr/sbin/nologin"),
            ..Grant::default()
        };
        let e = nologin.check_exec(&plain).unwrap_err();
        assert!(
            e.message.contains("account lab may not run"),
            "{}",
            e.message
        );
        assert!(nologin.check_helper("file copies").is_err());
        let ok = Grant {
            account: account("/bin/bash"),
            ..Grant::default()
        };
        assert!(ok.check_exec(&tty).is_ok() && ok.check_helper("file copies").is_ok());
        let no_pty = Grant {
            no_pty: true,
            ..Grant::default()
        };
        assert!(no_pty.check_exec(&plain).is_ok());
        assert_eq!(
            no_pty.check_exec(&tty).unwrap_err().kind,
            ErrorKind::Forbidden
        );
        let forced = Grant {
            forced: Some("uptime".into()),
            ..Grant::default()
        };
        let asked = Exec {
            command: "rm -rf ~".into(),
            ..Exec::default()
        };
        assert_eq!(forced.command(&asked), ("uptime", true));
        assert_eq!(ok.command(&asked), ("rm -rf ~", false));
        assert!(forced.check_helper("file copies").is_err());
    }
}
