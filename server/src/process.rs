//! Child processes: spawning them in their own process group with
//! non-blocking pipes, a pidfd to learn of their exit without blocking, and
//! stopping them with everything they started.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use mio::event::Source;
use mio::unix::SourceFd;
use mio::unix::pipe::{Receiver, Sender};
use mio::{Interest, Registry, Token};
use rexec_proto::{ErrorKind, Exec, ExecMode, ExitStatus};

use crate::out_queue::OutQueue;
use crate::registry::ConnId;
use crate::text::echo;
use crate::timer::{Timer, Timers};

/// Why a command could not be started; becomes an `Error` for its id.
#[derive(Debug)]
pub struct CommandError {
    pub kind: ErrorKind,
    pub message: String,
}

impl CommandError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CommandError {
            kind,
            message: message.into(),
        }
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }
    fn os(what: &str, e: io::Error) -> Self {
        CommandError {
            kind: ErrorKind::Spawn,
            message: format!("{what}: {e}"),
        }
    }
}

/// A freshly started child and its non-blocking pipe ends.
#[derive(Debug)]
pub struct Spawned {
    pub child: Child,
    pub stdout: Receiver,
    pub stderr: Receiver,
    pub stdin: Option<Sender>,
    /// Where the kernel has them (Linux 5.3+); otherwise the server sweeps
    /// with `try_wait`.
    pub pidfd: Option<Pidfd>,
}

/// A descriptor that becomes readable when the child exits.
#[derive(Debug)]
pub struct Pidfd(OwnedFd);

impl Source for Pidfd {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        SourceFd(&self.0.as_raw_fd()).register(r, t, i)
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        SourceFd(&self.0.as_raw_fd()).reregister(r, t, i)
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        SourceFd(&self.0.as_raw_fd()).deregister(r)
    }
}

/// The PATH commands run with.
pub const CHILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables copied from the server's own environment when set; nothing else
/// of it (no secrets, no REXEC_TOKEN) reaches a command.
pub const INHERITED_ENV: [&str; 6] = ["HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ"];

/// Finds the program a command name runs: a name with a slash as it is,
/// otherwise the first executable of that name in [`CHILD_PATH`]; then
/// resolves `..` and symlinks. `None` when there is none.
pub fn resolve_program(name: &str) -> Option<PathBuf> {
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
    std::fs::canonicalize(found).ok()
}

/// What the server lets clients run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecPolicy {
    /// Never run commands through a shell: split them and execute directly.
    pub no_shell: bool,
    /// With `no_shell`: only these programs may run (resolved, canonical paths).
    pub allow: Option<Vec<PathBuf>>,
    /// With `no_shell`: variables clients may set besides [`SAFE_ENV`].
    pub allow_env: Vec<String>,
    /// Run commands as this account instead of rexecd's own (root only).
    pub run_as: Option<RunAs>,
    /// Run each command under a supervisor (this executable, see
    /// contain.rs) that kills everything the command started when it ends.
    pub contain: Option<PathBuf>,
}

/// The account commands run as with `--user`: its ids, supplementary groups
/// and home, looked up once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: PathBuf,
}

impl RunAs {
    /// Looks `name` up in the user database.
    pub fn lookup(name: &str) -> Result<RunAs, String> {
        use nix::unistd::{User, getgrouplist};
        let user = User::from_name(name)
            .map_err(|e| format!("--user {name}: {e}"))?
            .ok_or_else(|| format!("--user {name}: no such user"))?;
        let cname =
            std::ffi::CString::new(name).map_err(|_| format!("--user {name:?}: bad name"))?;
        let groups = getgrouplist(&cname, user.gid)
            .map_err(|e| format!("--user {name}: its groups: {e}"))?;
        Ok(RunAs {
            name: name.to_string(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups: groups.iter().map(|g| g.as_raw()).collect(),
            home: user.dir,
        })
    }

    /// Makes `cmd` run as this account, with its HOME, USER and LOGNAME.
    fn apply(&self, cmd: &mut Command) {
        use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
        cmd.env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name);
        let uid = Uid::from_raw(self.uid);
        let gid = Gid::from_raw(self.gid);
        let groups: Vec<Gid> = self.groups.iter().map(|g| Gid::from_raw(*g)).collect();
        // SAFETY: the closure runs in the child between fork and exec and
        // only makes the setgroups, setgid and setuid system calls (in that
        // order: groups and gid while still root) on data prepared before
        // the fork; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                setgroups(&groups)?;
                setgid(gid)?;
                setuid(uid)?;
                Ok(())
            });
        }
    }
}

/// Variables a client may always set, even with `no_shell`: they choose a
/// language, a time zone and a terminal, and load no code. Anything else
/// (`LD_PRELOAD`, `GCONV_PATH`, `BASH_ENV`, ...) could make an allowed
/// program run code of the client's choosing.
pub const SAFE_ENV: [&str; 4] = ["LANG", "LC_*", "TZ", "TERM"];

impl ExecPolicy {
    /// Whether a client may set `name` under this policy.
    pub fn env_allowed(&self, name: &str) -> bool {
        let matches = |pat: &str| match pat.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == pat,
        };
        !self.no_shell
            || SAFE_ENV
                .iter()
                .copied()
                .chain(self.allow_env.iter().map(String::as_str))
                .any(matches)
    }
}

/// Builds the `Command` an `Exec` asks for, without running it, under the
/// server's policy: a clean environment, and with `no_shell` no shell and
/// optionally only allowed programs.
pub fn command_for(exec: &Exec, policy: &ExecPolicy) -> Result<Command, CommandError> {
    let mode = if policy.no_shell {
        ExecMode::Argv
    } else {
        exec.mode
    };
    // What to run: the program, the name it is given (argv[0]), its arguments.
    let (program, arg0, args): (PathBuf, Option<String>, Vec<String>) = match mode {
        ExecMode::Shell => (
            PathBuf::from("/bin/sh"),
            None,
            vec!["-c".into(), exec.command.clone()],
        ),
        ExecMode::Argv => {
            let words = shlex::split(&exec.command).ok_or_else(|| {
                CommandError::bad(
                    "cannot split the command: unbalanced quote or trailing backslash",
                )
            })?;
            let Some((prog, args)) = words.split_first() else {
                return Err(CommandError::bad("empty command"));
            };
            match &policy.allow {
                Some(allowed) => {
                    let resolved = resolve_program(prog).filter(|r| allowed.contains(r));
                    let Some(path) = resolved else {
                        return Err(CommandError::new(
                            ErrorKind::Forbidden,
                            format!(
                                "\"{}\" is not an allowed program on this server",
                                echo(prog)
                            ),
                        ));
                    };
                    // Run exactly what was checked, under the name it was given.
                    (path, Some(prog.clone()), args.to_vec())
                }
                None => (PathBuf::from(prog), None, args.to_vec()),
            }
        }
    };
    let mut cmd = match &policy.contain {
        // The supervisor runs the command and, when it ends, everything it
        // started (see contain.rs).
        Some(exe) => {
            let mut c = Command::new(exe);
            c.arg(crate::contain::ARG).arg(&program).args(&args);
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
    // Where the command starts: the home directory of the user it runs as
    // (as with ssh), or the client's --cwd, where `~` is that home too.
    let home = match &policy.run_as {
        Some(user) => Some(user.home.clone()),
        None => std::env::var_os("HOME").map(PathBuf::from),
    };
    match exec.cwd.as_deref() {
        None => {
            if let Some(h) = home.as_ref().filter(|h| h.is_dir()) {
                cmd.current_dir(h);
            }
        }
        Some(given) => {
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
            // Checked here so the error names the directory; std's spawn
            // error would not say which of program and directory was missing.
            let shown = echo(&dir.to_string_lossy());
            match std::fs::metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(CommandError::os(
                        &format!("cwd {shown}"),
                        io::Error::from(io::ErrorKind::NotADirectory),
                    ));
                }
                Err(e) => return Err(CommandError::os(&format!("cwd {shown}"), e)),
            }
            cmd.current_dir(dir);
        }
    }
    cmd.env_clear()
        .env("PATH", CHILD_PATH)
        .env("SHELL", "/bin/sh");
    for k in INHERITED_ENV {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    if let Some(user) = &policy.run_as {
        user.apply(&mut cmd);
    }
    for (k, v) in &exec.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(CommandError::bad(format!(
                "invalid environment variable \"{}\"",
                echo(k)
            )));
        }
        if !policy.env_allowed(k) {
            return Err(CommandError::new(
                ErrorKind::Forbidden,
                format!(
                    "environment variable {} may not be set on this server (with --no-shell \
                     clients may set {} and what --allow-env names)",
                    echo(k),
                    SAFE_ENV.join(", ")
                ),
            ));
        }
        cmd.env(k, v);
    }
    Ok(cmd)
}

/// Starts `cmd` in a new process group with piped stdout and stderr, and a
/// piped stdin when `stdin` is true (otherwise `/dev/null`).
/// A spawn error names the program that failed to start (not `/bin/sh`
/// when there is no shell).
pub fn spawn(mut cmd: Command, stdin: bool) -> Result<Spawned, CommandError> {
    cmd.process_group(0)
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| CommandError::os(&echo(&cmd.get_program().to_string_lossy()), e))?;
    let pipes = (|| -> io::Result<_> {
        let out = nonblocking_receiver(child.stdout.take())?;
        let err = nonblocking_receiver(child.stderr.take())?;
        let inp = match child.stdin.take() {
            Some(s) => {
                let s = Sender::from(s);
                s.set_nonblocking(true)?;
                Some(s)
            }
            None => None,
        };
        Ok((out, err, inp))
    })();
    let (stdout, stderr, stdin) = match pipes {
        Ok(p) => p,
        Err(e) => {
            // Do not leave it running or unreaped.
            kill_group(child.id() as i32, libc::SIGKILL);
            let _ = child.wait();
            return Err(CommandError::os("setting up pipes", e));
        }
    };
    let pidfd = pidfd_open(child.id());
    Ok(Spawned {
        child,
        stdout,
        stderr,
        stdin,
        pidfd,
    })
}

fn nonblocking_receiver<T>(pipe: Option<T>) -> io::Result<Receiver>
where
    Receiver: From<T>,
{
    let pipe = pipe.ok_or_else(|| io::Error::other("child pipe missing"))?;
    // mio's pipe types take the descriptor as it is: blocking, until told.
    let r = Receiver::from(pipe);
    r.set_nonblocking(true)?;
    Ok(r)
}

fn pidfd_open(pid: u32) -> Option<Pidfd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; it touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just gave us this descriptor and nobody else owns it.
    Some(Pidfd(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
}

/// Sends `sig` to every process in group `pgid`. Errors (the group is gone)
/// are ignored.
pub fn kill_group(pgid: i32, sig: libc::c_int) {
    if pgid <= 1 {
        return; // never signal "every process" or init's group
    }
    // SAFETY: kill(2) with a negative pid signals a process group; no memory
    // is shared.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// Whether process group `pgid` still has a member.
pub fn group_alive(pgid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks; no memory is shared.
    pgid > 1 && unsafe { libc::kill(-pgid, 0) } == 0
}

/// Converts std's exit status into the protocol's.
pub fn exit_status(status: std::process::ExitStatus) -> ExitStatus {
    match (status.code(), status.signal()) {
        (Some(c), _) => ExitStatus::Code(c),
        (None, Some(s)) => ExitStatus::Signal(s),
        (None, None) => ExitStatus::Code(-1),
    }
}

/// A command the server is running, and everything it owns.
#[derive(Debug)]
pub struct Proc {
    /// The connection it runs for; `None` once that connection went away.
    pub conn: Option<ConnId>,
    /// The client's id for it.
    pub id: u32,
    /// For the audit log.
    pub command: String,
    pub peer: std::net::SocketAddr,
    pub child: Child,
    pub pgid: i32,
    /// Each pipe with its poll registration; `None` once closed.
    pub stdout: Option<(Receiver, Token)>,
    pub stderr: Option<(Receiver, Token)>,
    pub stdin: Option<(Sender, Token)>,
    /// Bytes from the client not yet written to the child's stdin.
    pub stdin_queue: OutQueue,
    /// The client closed stdin: close the pipe once the queue is written.
    pub stdin_eof: bool,
    pub pidfd: Option<(Pidfd, Token)>,
    /// Set once the child has been reaped.
    pub status: Option<ExitStatus>,
    pub started: std::time::Instant,
    /// When its time limit runs out, if it has one.
    pub deadline: Option<std::time::Instant>,
    pub bytes_out: u64,
    pub timed_out: bool,
    pub truncated: bool,
    /// SIGTERM was sent to its group.
    pub stopping: bool,
    /// The pipe grace timer is armed.
    pub grace_armed: bool,
    /// Whole stdout and stderr, for the tutorial protocols only.
    pub tutorial_out: Vec<u8>,
    pub tutorial_err: Vec<u8>,
}

impl Proc {
    /// Sends SIGTERM to the whole process group and schedules SIGKILL.
    pub fn stop(&mut self, timers: &mut Timers, grace: std::time::Duration) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        kill_group(self.pgid, libc::SIGTERM);
        timers.after(grace, Timer::KillGroup(self.pgid));
    }

    /// Both output pipes have been closed.
    pub fn output_done(&self) -> bool {
        self.stdout.is_none() && self.stderr.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_resolve_through_path_and_symlinks() {
        let sh = resolve_program("sh").expect("sh is in PATH");
        assert!(sh.is_absolute());
        assert_eq!(resolve_program("/bin/../bin/sh"), Some(sh.clone()));
        assert_eq!(resolve_program("no-such-program-xyz"), None);
        assert_eq!(resolve_program("/etc/passwd"), None, "not executable");
        assert_eq!(resolve_program(""), None);
    }

    #[test]
    fn allow_list_matches_the_resolved_program() {
        let cfg = ExecPolicy {
            no_shell: true,
            allow: Some(vec![resolve_program("echo").unwrap()]),
            ..ExecPolicy::default()
        };
        let exec = |c: &str| Exec {
            command: c.into(),
            ..Exec::default()
        };
        assert!(command_for(&exec("echo hi"), &cfg).is_ok());
        let e = command_for(&exec("/bin/../bin/rm -rf /tmp/x"), &cfg).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Forbidden);
        // Shell mode is not a way around it: the whole string is split, no shell.
        let e = command_for(&exec("sh -c 'rm -rf /tmp/x'"), &cfg).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Forbidden);
    }

    #[test]
    fn without_a_shell_only_safe_variables_may_be_set() {
        let mut policy = ExecPolicy {
            no_shell: true,
            ..ExecPolicy::default()
        };
        for ok in ["LANG", "LC_ALL", "LC_TIME", "TZ", "TERM"] {
            assert!(policy.env_allowed(ok), "{ok}");
        }
        for bad in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "GCONV_PATH",
            "BASH_ENV",
            "PATH",
            "LANGX",
        ] {
            assert!(!policy.env_allowed(bad), "{bad}");
        }
        policy.allow_env = vec!["MY_*".into(), "DEBUG".into()];
        assert!(policy.env_allowed("MY_SETTING") && policy.env_allowed("DEBUG"));
        assert!(!policy.env_allowed("DEBUGX"));
        // With a shell the client can set anything in the command anyway.
        assert!(ExecPolicy::default().env_allowed("LD_PRELOAD"));
    }
}
