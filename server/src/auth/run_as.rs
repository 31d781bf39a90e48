//! The account commands run as, other than rexecd's own: `--user`'s, or
//! (with `--login`) the one a client logged in as. Looked up in the user
//! database; applied to a command between fork and exec.

use std::path::PathBuf;
use std::process::Command;

use crate::error::ConfigError;

/// The account commands run as with `--user`: its ids, supplementary groups
/// and home, looked up once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: PathBuf,
    /// Its login shell, from the user database.
    pub shell: PathBuf,
}

impl RunAs {
    /// Looks `name` up in the user database.
    pub fn lookup(name: &str) -> Result<RunAs, ConfigError> {
        let fail = |why: String| ConfigError::User {
            name: name.to_string(),
            why,
        };
        let user = crate::sys::Account::named(name)
            .map_err(|e| fail(e.to_string()))?
            .ok_or_else(|| fail("no such user".into()))?;
        let groups = user
            .groups()
            .map_err(|e| fail(format!("its groups: {e}")))?;
        Ok(RunAs {
            name: name.to_string(),
            uid: user.uid,
            gid: user.gid,
            groups,
            home: user.home,
            shell: user.shell,
        })
    }

    /// Makes `cmd` run as this account, with its HOME, USER and LOGNAME.
    pub(crate) fn apply(&self, cmd: &mut Command) {
        cmd.env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name);
        let step = crate::sys::InChild::credentials(&self.groups, self.gid, self.uid);
        crate::sys::in_child(cmd, step);
    }
}
