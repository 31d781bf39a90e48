//! What clients may run and how: the exec policy (shell or not, allowed
//! programs and variables, the account commands run as), and the `Command`
//! an `Exec` becomes under it: program, arguments, a clean environment, the
//! starting directory. Nothing is started here (see process.rs).

use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rexec_proto::{ErrorKind, Exec, ExecMode};

use crate::auth::grant::Grant;
use crate::auth::run_as::RunAs;
use crate::process::CommandError;
use rexec_proto::text::echo;

/// The PATH commands run with.
pub const CHILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables copied from the server's own environment when set; nothing else
/// of it (no secrets, no REXEC_TOKEN) reaches a command.
pub const INHERITED_ENV: [&str; 6] = ["HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ"];

/// A program `--allow` names: clients must name it exactly so, and it runs
/// under that name (`argv[0]`), from the file found for it at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// As the administrator wrote it: `ls` or `/usr/local/bin/tool`.
    pub name: String,
    /// The file it ran as when rexecd started.
    pub path: PathBuf,
}

impl Allowed {
    /// Looks `name` up as a command would run it; `None` when there is no
    /// such program.
    pub fn lookup(name: &str) -> Option<Allowed> {
        Some(Allowed {
            name: name.to_string(),
            path: find_program(name)?,
        })
    }
}

/// Finds the program a command name runs: a name with a slash as it is,
/// otherwise the first executable of that name in [`CHILD_PATH`]. `None`
/// when there is none.
pub fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.is_empty() {
        return None;
    }
    let found = if name.contains('/') {
        Some(PathBuf::from(name)).filter(|p| executable(p))
    } else {
        CHILD_PATH
            .split(':')
            .map(|d| Path::new(d).join(name))
            .find(|p| executable(p))
    }?;
    Some(found)
}

/// What the server lets clients run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecPolicy {
    /// Never run commands through a shell: split them and execute directly.
    pub no_shell: bool,
    /// With `no_shell`: only these programs may run, named exactly so.
    pub allow: Option<Vec<Allowed>>,
    /// With `no_shell`: variables clients may set besides `SAFE_ENV`.
    pub allow_env: Vec<String>,
    /// Run commands as this account instead of rexecd's own (root only).
    pub run_as: Option<RunAs>,
    /// Run each command under a supervisor (this executable, see
    /// contain.rs) that kills everything the command started when it ends.
    pub contain: Option<PathBuf>,
    /// File transfers: the rexecd executable that runs them (files.rs), or
    /// `None` when they are off (--no-files, an embedded server).
    pub files_helper: Option<PathBuf>,
    /// Confine every transferred path beneath this directory.
    pub files_root: Option<PathBuf>,
    /// The home directory of the account rexecd runs as, from the user
    /// database (looked up once at start); `None`: `$HOME`.
    pub own_home: Option<PathBuf>,
    /// Detached jobs (jobs.rs), or `None` when they are off.
    pub jobs: Option<crate::helpers::jobs::Settings>,
}

/// Variables a client may always set, even with `no_shell`: they choose a
/// language, a time zone and a terminal, and load no code. Anything else
/// (`LD_PRELOAD`, `GCONV_PATH`, `BASH_ENV`, ...) could make an allowed
/// program run code of the client's choosing.
pub const SAFE_ENV: [&str; 4] = ["LANG", "LC_*", "TZ", "TERM"];

impl ExecPolicy {
    /// The account a connection's commands run as: the one it logged in
    /// as (`--login`), `--user`'s, or `None` for rexecd's own.
    pub fn account<'a>(&'a self, grant: &'a Grant) -> Option<&'a RunAs> {
        grant.account.as_deref().or(self.run_as.as_ref())
    }

    /// The home directory of the account commands run as: the connection's
    /// or `--user`'s, or rexecd's own from the user database (not `$HOME`,
    /// which whoever started rexecd may have set to anything), else `$HOME`.
    pub fn home(&self, grant: &Grant) -> Option<PathBuf> {
        match self.account(grant) {
            Some(user) => Some(user.home.clone()),
            None => self
                .own_home
                .clone()
                .or_else(|| std::env::var_os("HOME").map(PathBuf::from)),
        }
    }

    /// Whether a client may set `name` under this policy, for a
    /// connection granted `grant`: anything with a shell as rexecd's own
    /// account (the command could set it anyway); otherwise, without a
    /// shell or logged in to an account (`--login`, as sshd's AcceptEnv),
    /// only `SAFE_ENV` and `--allow-env`'s.
    pub fn env_allowed(&self, name: &str, grant: &Grant) -> bool {
        (!self.no_shell && grant.account.is_none()) || self.safe_env(name)
    }

    /// Whether `name` is one of [`SAFE_ENV`] or `--allow-env`'s: all a
    /// client may set without a shell, or for a forced command, since a
    /// variable such as `BASH_ENV` or `LD_PRELOAD` would run code of its
    /// choosing instead.
    fn safe_env(&self, name: &str) -> bool {
        let matches = |pat: &str| match pat.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == pat,
        };
        SAFE_ENV
            .iter()
            .copied()
            .chain(self.allow_env.iter().map(String::as_str))
            .any(matches)
    }
}

/// The `Command` for a file transfer helper (`rexecd __files`; its request
/// comes on stdin), under the same environment, user and starting directory
/// as a command.
pub fn transfer_command(policy: &ExecPolicy, grant: &Grant) -> Result<Command, CommandError> {
    grant.check_helper("file copies")?;
    let Some(exe) = &policy.files_helper else {
        return Err(CommandError::new(
            ErrorKind::Forbidden,
            "file transfers are off on this server",
        ));
    };
    if policy.no_shell && policy.files_root.is_none() {
        return Err(CommandError::new(
            ErrorKind::Forbidden,
            "file transfers are off with --no-shell unless rexecd has --files-root DIR",
        ));
    }
    Ok(helper_command(
        policy,
        grant,
        exe,
        [crate::helpers::files::FILES],
    ))
}

/// One of rexecd's helpers (`exe ARGS...`) for a connection: as its
/// account, from its home, in a clean environment.
pub(crate) fn helper_command<I, S>(
    policy: &ExecPolicy,
    grant: &Grant,
    exe: &Path,
    args: I,
) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(exe);
    cmd.args(args);
    if let Some(h) = policy.home(grant).filter(|h| h.is_dir()) {
        cmd.current_dir(h);
    }
    cmd.env_clear().env("PATH", CHILD_PATH);
    for k in INHERITED_ENV {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    if let Some(h) = policy.home(grant) {
        cmd.env("HOME", h);
    }
    if let Some(user) = policy.account(grant) {
        user.apply(&mut cmd);
    }
    cmd
}

/// The login shell of `user`, or of the user rexecd runs as: from the
/// user database, `/bin/sh` when it names none.
fn login_shell(user: Option<&RunAs>) -> PathBuf {
    let shell = match user {
        Some(u) => Some(u.shell.clone()),
        None => crate::sys::Account::own().map(|u| u.shell),
    };
    shell
        .filter(|s| s.is_file())
        .unwrap_or_else(|| PathBuf::from("/bin/sh"))
}

/// Builds the `Command` an `Exec` asks for, without running it, under the
/// server's policy: a clean environment, and with `no_shell` no shell and
/// optionally only allowed programs.
///
/// `grant` is what the connection may do: the account it logged in as
/// (whose login shell runs the command, as sshd does), a forced command.
pub fn command_for(
    exec: &Exec,
    policy: &ExecPolicy,
    grant: &Grant,
) -> Result<Command, CommandError> {
    grant.check_exec(exec)?;
    let (program, arg0, args) = what_to_run(exec, policy, grant)?;
    let mut cmd = match &policy.contain {
        // The supervisor runs the command and, when it ends, everything it
        // started (see contain.rs).
        Some(exe) => {
            let mut c = Command::new(exe);
            c.arg(crate::helpers::contain::ARG)
                .arg(&program)
                .args(&args);
            c
        }
        None => {
            let mut c = Command::new(&program);
            if let Some(a) = arg0 {
                c.arg0(a);
            }
            c.args(&args);
            c
        }
    };
    cmd.current_dir(start_dir(exec, policy, grant)?);
    set_environment(&mut cmd, exec, policy, grant)?;
    Ok(cmd)
}

/// The program, the name it is given (argv[0]), and its arguments.
pub(crate) type Invocation = (PathBuf, Option<String>, Vec<String>);

/// What to run for `exec`: through the shell, the login shell, or (with
/// `--no-shell`) the split command line, checked against `--allow`.
pub(crate) fn what_to_run(
    exec: &Exec,
    policy: &ExecPolicy,
    grant: &Grant,
) -> Result<Invocation, CommandError> {
    let (command, forced) = grant.command(exec);
    let mode = match (policy.no_shell, forced) {
        (true, _) => ExecMode::Argv,
        // A forced command is a shell command line, as with sshd.
        (false, true) => ExecMode::Shell,
        (false, false) => exec.mode,
    };
    let login = exec.pty.is_some() && command.trim().is_empty();
    Ok(match mode {
        // `rexec -t HOST` with no command: the login shell of the user
        // commands run as, as `ssh HOST` opens, named `-sh` so it reads the
        // login profile.
        ExecMode::Shell if login => {
            let shell = login_shell(policy.account(grant));
            let name = shell
                .file_name()
                .map(|n| format!("-{}", n.to_string_lossy()))
                .unwrap_or_else(|| "-sh".into());
            (shell, Some(name), Vec::new())
        }
        ExecMode::Argv if login => {
            return Err(CommandError::new(
                ErrorKind::Forbidden,
                "no login shell on this server (--no-shell): give a command",
            ));
        }
        // Logged in as an account (--login): through its own shell, as
        // sshd runs commands.
        ExecMode::Shell => (
            match &grant.account {
                Some(user) => login_shell(Some(user)),
                None => PathBuf::from("/bin/sh"),
            },
            None,
            vec!["-c".into(), command.to_string()],
        ),
        ExecMode::Argv => {
            let words = shlex::split(command).ok_or_else(|| {
                CommandError::bad(
                    "cannot split the command: unbalanced quote or trailing backslash",
                )
            })?;
            let Some((prog, args)) = words.split_first() else {
                return Err(CommandError::bad("empty command"));
            };
            match &policy.allow {
                Some(allowed) => {
                    // By name, not by file: a symlink or a multi-call binary
                    // (busybox) makes one file many programs, and allowing
                    // `ls` must not allow whatever else that file is.
                    let Some(entry) = allowed.iter().find(|a| a.name == *prog) else {
                        return Err(CommandError::new(
                            ErrorKind::Forbidden,
                            format!(
                                "\"{}\" is not an allowed program on this server",
                                echo(prog)
                            ),
                        ));
                    };
                    // Run exactly what was checked, under the name it was given.
                    (entry.path.clone(), Some(entry.name.clone()), args.to_vec())
                }
                None => (PathBuf::from(prog), None, args.to_vec()),
            }
        }
    })
}

/// Where the command starts: the home directory of the user it runs as (as
/// with ssh), or the client's --cwd, where `~` is that home too.
pub(crate) fn start_dir(
    exec: &Exec,
    policy: &ExecPolicy,
    grant: &Grant,
) -> Result<PathBuf, CommandError> {
    let home = policy.home(grant);
    let Some(given) = exec.cwd.as_deref() else {
        // As sshd: a home that is missing is no reason not to run.
        return Ok(home
            .filter(|h| h.is_dir())
            .unwrap_or_else(|| PathBuf::from("/")));
    };
    let dir = match (given.strip_prefix('~'), &home) {
        (Some(""), Some(h)) => h.clone(),
        (Some(rest), Some(h)) if rest.starts_with('/') => h.join(&rest[1..]),
        (Some(rest), None) if rest.is_empty() || rest.starts_with('/') => {
            return Err(CommandError::bad(format!(
                "cwd {}: no home directory to start from",
                echo(given)
            )));
        }
        _ => PathBuf::from(given),
    };
    // Checked here so the error names the directory; std's spawn error
    // would not say which of program and directory was missing.
    let shown = echo(&dir.to_string_lossy());
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(dir),
        Ok(_) => Err(CommandError::os(
            &format!("cwd {shown}"),
            io::Error::from(io::ErrorKind::NotADirectory),
        )),
        Err(e) => Err(CommandError::os(&format!("cwd {shown}"), e)),
    }
}

/// A clean environment: PATH, SHELL, HOME, what the server passes on, and
/// what the client asked for and the policy allows.
pub(crate) fn set_environment(
    cmd: &mut Command,
    exec: &Exec,
    policy: &ExecPolicy,
    grant: &Grant,
) -> Result<(), CommandError> {
    cmd.env_clear().env("PATH", CHILD_PATH).env(
        "SHELL",
        match &grant.account {
            Some(user) => login_shell(Some(user)),
            None => PathBuf::from("/bin/sh"),
        },
    );
    for k in INHERITED_ENV {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    if let Some(h) = policy.home(grant) {
        cmd.env("HOME", h);
    }
    if let Some(user) = policy.account(grant) {
        user.apply(cmd);
    }
    let (_, forced) = grant.command(exec);
    if forced {
        cmd.env(crate::auth::grant::ORIGINAL_COMMAND, &exec.command);
    }
    for (k, v) in &exec.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(CommandError::bad(format!(
                "invalid environment variable \"{}\"",
                echo(k)
            )));
        }
        let allowed = match forced {
            true => policy.safe_env(k),
            false => policy.env_allowed(k, grant),
        };
        if !allowed {
            return Err(CommandError::new(
                ErrorKind::Forbidden,
                format!(
                    "environment variable {} may not be set on this server (with --no-shell, \
                     --login or a forced command, clients may set {} and what --allow-env names)",
                    echo(k),
                    SAFE_ENV.join(", ")
                ),
            ));
        }
        cmd.env(k, v);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
