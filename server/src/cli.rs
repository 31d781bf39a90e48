//! rexecd's command line: the clap definitions, and how they become a
//! [`Config`].
// The doc comments here are the --help text, written for a terminal:
// `[::1]:PORT` is not a link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use rexec_proto::auth::Token;

use crate::auth::run_as::RunAs;
use crate::config::{Config, Protocol};
use crate::error::ConfigError;
use crate::exec_policy::{Allowed, ExecPolicy};

mod parse;
pub use parse::parse_addr;
use parse::parse_duration;

/// rexecd: run commands for rexec clients and stream their output back.
///
/// Every command runs with `/bin/sh -c` (or directly, when the client asks
/// for argv mode) in its own process group; its stdout and stderr are sent as
/// they are produced. The first line printed is `listening on HOST:PORT`.
/// Logging goes to stderr; set RUST_LOG=info for one audit line per command,
/// RUST_LOG=debug for connections too.
#[derive(Debug, Parser)]
#[command(name = "rexecd", version, about, long_about, max_term_width = 100)]
pub struct Args {
    /// Read settings from FILE (TOML): each long flag is a key, as in
    /// `timeout = 600`, `login = true`, `listen = ["0.0.0.0:7070",
    /// "[::]:7070"]`. A flag on the command line wins over the file.
    /// Without --config, /etc/rexec/rexecd.toml is read when it exists.
    /// The file must not be writable by group or others. SIGHUP reads it
    /// again (with the token, keys and certificate files it names).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Read and check every setting (the configuration file, the token,
    /// keys and certificate files, the accounts), print the settings that
    /// would be used and where each comes from, and exit: 0 when rexecd
    /// would start, 2 with the reason when not (as sshd -t).
    #[arg(long)]
    pub check_config: bool,

    /// Address to listen on, HOST:PORT, or HOST for port 7070. Port 0 picks
    /// a free port (the real one is printed on the first line, for scripts
    /// and tests). Use [::1]:PORT for IPv6. Repeat it to listen on several
    /// addresses, each with its own socket.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070", value_parser = parse_addr, action = clap::ArgAction::Append)]
    pub listen: Vec<SocketAddr>,

    /// Protocol spoken on the port: `native` is rexec's framed protocol;
    /// `seed` and `raw` are the socket tutorials' protocols (with and
    /// without the length header), for compatibility and teaching.
    #[arg(long, value_enum, default_value_t = Protocol::Native)]
    pub protocol: Protocol,

    /// Kill a command (its whole process group) that runs longer than this
    /// many seconds; its exit is reported as timed out. Clients may ask for a
    /// shorter limit, never a longer one. 0 means no limit.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub timeout: u64,

    /// Cut a command's output (stdout + stderr) after this many bytes, kill
    /// it, and report it as truncated. Accepts K, M, G suffixes (powers of
    /// 1024). 0 means no limit; the seed and raw protocols always stop at 64M
    /// (or a quarter of --max-buffer, if less) because they buffer each reply
    /// whole.
    #[arg(long, value_name = "BYTES", default_value = "0", value_parser = rexec_proto::limits::parse_size)]
    pub max_output: u64,

    /// Memory for queued bytes across all clients: output not yet sent,
    /// stdin not yet taken by commands, partly received frames. Above it,
    /// the largest queues are held back first (their commands' output pipes
    /// and their stdin stop being read) until there is room again. K, M, G
    /// suffixes.
    #[arg(long, value_name = "BYTES", default_value = "256M", value_parser = rexec_proto::limits::parse_size)]
    pub max_buffer: u64,

    /// Most client connections at once; a client over the limit gets an error
    /// and is closed, others are unaffected.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_conns: usize,

    /// Most connections waiting to authenticate (that have not sent their
    /// hello, or not yet answered the token challenge). Over it, the oldest
    /// waiting connection of the address with the most is closed, so silent
    /// connections from one place cannot keep token holders out.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_startups: usize,

    /// Most commands running at once across all clients; an Exec over the
    /// limit gets an error, the connection stays usable.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_procs: usize,

    /// Close a connection that sends nothing and runs nothing for this many
    /// seconds. 0 means never.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub idle_timeout: u64,

    /// Probe a client that has sent nothing for this many seconds, and treat
    /// it as gone (its commands stopped, as on a disconnect) after three
    /// such periods without a byte from it; TCP keepalive is set to match.
    /// A hung or partitioned client is noticed this way even while its
    /// command is quiet. 0 turns it off.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub keepalive: u64,

    /// Require clients to prove they hold the token in FILE (which must not be
    /// readable by group or others: chmod 600). Without it, the REXEC_TOKEN
    /// environment variable is used if set. The token never crosses the wire:
    /// clients answer a random challenge with an HMAC of it.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Let in clients holding a key listed in FILE (OpenSSH authorized_keys
    /// format: `ssh-ed25519 AAAA... comment`, one per line), as rexecd's
    /// account (or --user's): they prove it with a signature, as with ssh,
    /// and nothing secret is handed out. With a token too, either works.
    /// Options before a key are honoured: from="PATTERNS", command="..."
    /// (the client's command is in REXEC_ORIGINAL_COMMAND), no-pty,
    /// restrict, expiry-time="YYYYMMDD[HHMM]"; a key with any other option
    /// is left out (and logged). The file is read at start.
    #[arg(long, value_name = "FILE", conflicts_with = "login")]
    pub authorized_keys: Option<PathBuf>,

    /// Let every account log in with its own keys, as sshd does: the client
    /// names an account (rexec alice@HOST), and its key must be in that
    /// account's ~/.ssh/authorized_keys (read at each login, checked as
    /// sshd's StrictModes: the file and its directories owned by the
    /// account or root and not writable by others). Commands, terminals
    /// and copies run as that account, from its home, through its login
    /// shell, in a clean environment; an account whose shell is nologin
    /// runs nothing. Needs root; root itself needs --permit-root-login.
    #[arg(long, conflicts_with = "user")]
    pub login: bool,

    /// With --login, let root log in too (with a key in root's own
    /// authorized_keys). Also lets token holders in, as root.
    #[arg(long, requires = "login")]
    pub permit_root_login: bool,

    /// Close connections that have not completed their hello (and
    /// authentication) within this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub handshake_timeout: u64,

    /// Never run commands through a shell: split them with shell quoting rules
    /// and execute the program directly (no pipes, globs or variables).
    #[arg(long)]
    pub no_shell: bool,

    /// With --no-shell, run only these programs (comma-separated names or
    /// paths). A client must name a program exactly as given here, and it
    /// runs under that name: another name for the same file (a symlink,
    /// its path, another applet of a multi-call binary) is refused.
    #[arg(
        long,
        value_name = "PROG[,PROG...]",
        value_delimiter = ',',
        requires = "no_shell"
    )]
    pub allow: Option<Vec<String>>,

    /// With --no-shell or --login, also let clients set these environment
    /// variables (comma-separated names; NAME_* for a prefix), as sshd's
    /// AcceptEnv. Always allowed: LANG, LC_*, TZ, TERM. Others are refused:
    /// variables such as LD_PRELOAD make an allowed program run code of
    /// the client's choosing, and a login's environment is the account's.
    #[arg(long, value_name = "NAME[,NAME...]", value_delimiter = ',')]
    pub allow_env: Vec<String>,

    /// Run each command under a supervisor that, when the command ends
    /// (normally, timed out, cancelled, or its client gone, or rexecd
    /// killed), ends everything it started: background jobs, `nohup`,
    /// `setsid` and double forks included. Without it, as with ssh, a job
    /// started in the background on purpose outlives its command (until
    /// --timeout, if set).
    #[arg(long)]
    pub contain: bool,

    /// Which port forwarding clients may ask for, as sshd's
    /// AllowTcpForwarding: yes (both), no, local (rexec -L: rexecd
    /// connects to a target for the client) or remote (rexec -R: rexecd
    /// listens for the client). Keys may forward less: no-port-forwarding,
    /// permitopen, permitlisten and restrict in authorized_keys.
    #[arg(long, value_name = "yes|no|local|remote", default_value = "yes",
          value_parser = crate::forward::permit::Allow::parse)]
    pub forwarding: crate::forward::permit::Allow,

    /// Let rexec -R listen on addresses other than loopback (0.0.0.0, or a
    /// given address), as sshd's GatewayPorts: other machines can then
    /// reach the client's service through this one.
    #[arg(long)]
    pub gateway_ports: bool,

    /// Turn file transfers (rexec cp) off.
    #[arg(long)]
    pub no_files: bool,

    /// Confine file transfers beneath DIR: every path is resolved inside it
    /// by the kernel (no `..`, no symlink leads out). Needed for transfers
    /// with --no-shell.
    #[arg(long, value_name = "DIR", conflicts_with = "no_files")]
    pub files_root: Option<PathBuf>,

    /// Run commands as this user (its uid, gid, supplementary groups, HOME,
    /// and its home directory as the starting directory) instead of as the
    /// user rexecd runs as. Needs rexecd to run as root.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Close a connection on which a frame has begun to arrive but is not
    /// complete after this many seconds (a stalled or trickling client).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub frame_timeout: u64,

    /// Allow listening on a non-loopback address without TLS or without a
    /// token. Without TLS anyone on the path reads every command and its
    /// output; without a token anyone who can connect runs commands.
    #[arg(long)]
    pub insecure: bool,

    /// Speak TLS. Without --cert/--key, a self-signed certificate is made on
    /// first start and kept in --state-dir, so its fingerprint (printed on the
    /// second line of output) stays the same across restarts.
    #[arg(long)]
    pub tls: bool,

    /// TLS certificate chain (PEM) to use instead of a self-signed one.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,

    /// TLS private key (PEM) for --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Copy command output through rexecd's memory instead of splicing a
    /// busy pipe straight into the socket (plain connections only; TLS and
    /// ptys always copy). The bytes sent are the same; this costs CPU. For
    /// comparing the two paths, or a kernel whose splice misbehaves.
    #[arg(long)]
    pub no_splice: bool,

    /// Output kept per detached job (rexec -d): the first half and the
    /// latest part; attach says how much in between was dropped. K, M, G
    /// suffixes.
    #[arg(long, value_name = "BYTES", default_value = "64M", value_parser = rexec_proto::limits::parse_size)]
    pub job_output_max: u64,

    /// How long a finished job's record (its output and exit status) is
    /// kept: SECS, or with a unit (30m, 12h, 7d).
    #[arg(long, value_name = "TIME", default_value = "7d", value_parser = parse_duration)]
    pub job_keep: u64,

    /// Disk one account's detached jobs may take for their kept output:
    /// each running job counts as --job-output-max, each finished one as
    /// what it kept. A start that would pass it is refused (rexec jobs
    /// --clean removes finished jobs' records). K, M, G suffixes.
    #[arg(long, value_name = "BYTES", default_value = "4G", value_parser = rexec_proto::limits::parse_size)]
    pub job_disk_max: u64,

    /// Most detached jobs running at once per account.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub max_jobs: usize,

    /// Most detached jobs running at once in all.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_jobs_total: usize,

    /// On SIGTERM (systemctl stop or restart), give running commands this
    /// many seconds to finish before they are stopped: no new connection
    /// or command is taken meanwhile, and each client is told when its
    /// connection closes. Detached jobs (rexec -d) are not touched: they
    /// outlive rexecd. 0 stops commands at once.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub stop_grace: u64,

    /// How log lines look: `text` (without timestamps when stderr is
    /// the journal, which stamps its own), or `json`, one object per line
    /// with the audit lines' facts (event, peer, account, command, status)
    /// as keys.
    #[arg(long, value_enum, value_name = "text|json", default_value_t = crate::logging::LogFormat::Text)]
    pub log_format: crate::logging::LogFormat,

    /// Where the self-signed TLS identity is kept [default:
    /// $XDG_STATE_HOME/rexec or ~/.local/state/rexec].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

impl Args {
    /// Detached jobs: their records live in `STATE/jobs` (--state-dir).
    /// With --login, every account must be able to reach that directory:
    /// give a --state-dir outside root's home.
    fn jobs(&self) -> Result<Option<crate::helpers::jobs::Settings>, ConfigError> {
        let Some(state) = self
            .state_dir
            .clone()
            .or_else(crate::tls::default_state_dir)
        else {
            return Ok(None);
        };
        let dir = state.join("jobs");
        // With commands run as other accounts, their helpers must reach
        // the jobs directory: a --state-dir that does not let them is
        // refused; the default one (in root's home) is warned about.
        let others = crate::sys::is_root() && (self.login || self.user.is_some());
        let unreachable = others
            .then(|| crate::helpers::jobs::unreachable(&dir))
            .flatten();
        if let (Some(why), Some(_)) = (&unreachable, &self.state_dir) {
            return Err(ConfigError::JobsUnreachable(why.clone()));
        }
        Ok(Some(crate::helpers::jobs::Settings {
            exe: own_executable("jobs")?,
            dir,
            output_max: self.job_output_max.max(4096),
            keep_secs: self.job_keep,
            max: self.max_jobs.max(1),
            max_total: self.max_jobs_total.max(1),
            disk_max: self.job_disk_max,
            unreachable,
        }))
    }

    /// `--authorized-keys`, for the account commands run as.
    fn authorized_keys(
        &self,
        run_as: Option<&RunAs>,
    ) -> Result<Option<std::sync::Arc<crate::auth::authorized::AuthorizedKeys>>, ConfigError> {
        let Some(path) = &self.authorized_keys else {
            return Ok(None);
        };
        let account = match run_as {
            Some(u) => u.name.clone(),
            None => crate::sys::Account::own()
                .map(|u| u.name)
                .unwrap_or_default(),
        };
        let keys = crate::auth::authorized::AuthorizedKeys::load(path, account)?;
        Ok(Some(std::sync::Arc::new(keys)))
    }

    /// The [`Config`] these flags describe, with the files they name read
    /// and checked (token, keys, certificate, accounts).
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        let token = Token::load(self.token_file.as_deref())?;
        let allow = match &self.allow {
            None => None,
            Some(progs) => Some(
                progs
                    .iter()
                    .map(|p| {
                        Allowed::lookup(p).ok_or_else(|| ConfigError::NoSuchProgram(p.clone()))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let run_as = match &self.user {
            None => None,
            Some(_) if !crate::sys::is_root() => {
                return Err(ConfigError::UserNeedsRoot);
            }
            Some(name) => Some(RunAs::lookup(name)?),
        };
        if self.login && !crate::sys::is_root() {
            return Err(ConfigError::LoginNeedsRoot);
        }
        if !self.allow_env.is_empty() && !self.no_shell && !self.login {
            return Err(ConfigError::AllowEnvUnused);
        }
        let authorized_keys = self.authorized_keys(run_as.as_ref())?;
        let tls = match (&self.cert, &self.key, self.tls) {
            (Some(c), Some(k), _) => Some(crate::tls::from_files(c, k)?),
            (_, _, true) => {
                let dir = self
                    .state_dir
                    .clone()
                    .or_else(crate::tls::default_state_dir)
                    .ok_or(ConfigError::NoStateDir)?;
                Some(crate::tls::self_signed(&dir)?)
            }
            _ => None,
        };
        Ok(Config {
            tls,
            listen: self.listen[0],
            also_listen: self.listen[1..].to_vec(),
            stop_grace: Duration::from_secs(self.stop_grace),
            protocol: self.protocol,
            timeout: secs(self.timeout),
            max_output: (self.max_output > 0).then_some(self.max_output),
            max_buffer: usize::try_from(self.max_buffer)
                .unwrap_or(usize::MAX)
                .max(1 << 20),
            max_conns: self.max_conns.max(1),
            max_startups: self.max_startups.max(1),
            max_procs: self.max_procs.max(1),
            idle_timeout: secs(self.idle_timeout),
            keepalive: secs(self.keepalive),
            token,
            authorized_keys,
            login: self.login,
            permit_root_login: self.permit_root_login,
            handshake_timeout: Duration::from_secs(self.handshake_timeout.max(1)),
            forwarding: self.forwarding,
            gateway_ports: self.gateway_ports,
            exec: ExecPolicy {
                jobs: self.jobs()?,
                no_shell: self.no_shell,
                allow,
                allow_env: self.allow_env,
                run_as,
                files_helper: match self.no_files {
                    true => None,
                    false => Some(own_executable("file transfers")?),
                },
                files_root: match &self.files_root {
                    None => None,
                    Some(d) => {
                        Some(
                            std::fs::canonicalize(d).map_err(|source| ConfigError::FilesRoot {
                                path: d.clone(),
                                source,
                            })?,
                        )
                    }
                },
                own_home: crate::sys::Account::own().map(|u| u.home),
                contain: match self.contain {
                    false => None,
                    true => Some(own_executable("--contain")?),
                },
            },
            frame_timeout: Duration::from_secs(self.frame_timeout.max(1)),
            insecure: self.insecure,
            splice: !self.no_splice,
            ..Config::default()
        })
    }
}

/// rexecd's own executable, which runs as the helper for `what`.
fn own_executable(what: &'static str) -> Result<PathBuf, ConfigError> {
    std::env::current_exe().map_err(|source| ConfigError::OwnExecutable { what, source })
}
