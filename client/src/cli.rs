//! `rexec`'s command line: clap definitions only. What the program does
//! with them is in `app.rs`; how they become connection options and an
//! `Exec` is in `options.rs`.
// The doc comments here are the --help text, written for a terminal:
// `HOST[:PORT]` and `[::1]:7070` are not links.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
How the command reaches the server:
  One word is the command string as it is, run by the remote /bin/sh, as
  with ssh; quote it locally so your own shell leaves it alone:
      rexec lab1 'ls /var/log | wc -l'
  Several words are an argument vector: they are run directly, without a
  shell, each word arriving as one argument, unexpanded:
      rexec lab1 -- ls -l \"my file\" '$HOME' '*'
  (ls gets exactly the four arguments -l, my file, $HOME and *.)

With no command, on a terminal, rexec opens a login shell on a
pseudo-terminal, as `ssh HOST` does; with stdin not a terminal, all of stdin
is one script for one shell (`rexec lab1 < script.sh`). `--prompt` gives a
line prompt instead, each line run in a new shell. `-t` runs a command on a
pseudo-terminal (top, vim, python3); stdin is forwarded, from a terminal too,
unless -n.

Exit status: the remote command's; 128+N when it died of signal N; 124 when
it timed out; 141 when the server cut its output at its limit (--max-output);
127 when it could not be started; 255 when the connection, the protocol or
authentication failed.

Try `rexec demo` for an end-to-end demonstration that needs no server.";

/// Run commands on a rexecd server as if they were local.
///
/// Remote stdout and stderr arrive on local stdout and stderr as they are
/// produced; stdin is forwarded when it is not a terminal.
#[derive(Debug, Parser)]
#[command(
    name = "rexec",
    version,
    about,
    long_about,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub sub: Option<Sub>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Sub {
    /// Copy files to or from a server, as scp: `rexec cp FILE... HOST:DEST`,
    /// `rexec cp HOST:PATH LOCAL` (HOST:PORT:PATH with a port). Checked end
    /// to end (BLAKE3; SHA-256 with an older rexecd) and renamed into place
    /// only when complete.
    #[command(
        override_usage = "rexec cp [OPTIONS] SOURCE... HOST:DEST\n       rexec cp [OPTIONS] HOST:PATH LOCAL"
    )]
    Cp(Box<CpArgs>),
    /// Make HOST:DEST like the local SRC... (or LOCAL like HOST:SRC), as
    /// `rsync -a`: only files whose size, modification time or mode differ
    /// are sent (each checked and renamed into place), and modes, times,
    /// symlinks, empty directories and names byte for byte are kept.
    /// `SRC/` syncs SRC's contents into DEST; `SRC` syncs SRC itself into
    /// DEST/SRC.
    #[command(
        override_usage = "rexec sync [OPTIONS] SRC... HOST:DEST\n       rexec sync [OPTIONS] HOST:SRC LOCAL"
    )]
    Sync(Box<SyncArgs>),
    /// List the hosts and groups of the config file, groups expanded.
    Hosts {
        /// The config file [default: $REXEC_CONFIG, else
        /// ~/.config/rexec/config.toml].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print a completion script for SHELL on stdout. Install it, for bash:
    /// `rexec completions bash > ~/.local/share/bash-completion/completions/rexec`.
    /// Host names and @groups of the config file (as it is now) complete
    /// where a host or a host list goes: generate it again after editing
    /// the file.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
        /// The config file whose hosts to complete [default: as for a run]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print a man page (roff) on stdout: rexec(1), or rexecd(8) with
    /// `rexec man rexecd`. Read it with `rexec man | man -l -`.
    Man {
        #[arg(value_enum, default_value = "rexec")]
        page: ManPage,
    },
    /// List your detached jobs (rexec -d) on HOST, or on every host of -w
    /// LIST: id, state (running, exited N, killed by signal N, timed out,
    /// lost), start, time, output, command.
    Jobs(JobsArgs),
    /// Print a detached job's output from its start, then follow it live
    /// until it ends, and exit with its status. Ctrl-C stops following;
    /// the job runs on.
    Attach(JobArgs),
    /// End a detached job and everything it started.
    Kill(JobArgs),
    /// Forget a server's TLS fingerprint: remove HOST[:PORT] from the
    /// known-hosts file (as `ssh-keygen -R`), after a legitimate change of
    /// its certificate.
    Forget(ForgetArgs),
    /// End-to-end demonstration with an embedded loopback server: runs a few
    /// commands, then shows why TCP needs message framing (`demo sticky`)
    /// and how UDP differs (`demo udp`).
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// The server, HOST or HOST:PORT.
    #[arg(value_name = "HOST[:PORT]", required_unless_present = "hosts")]
    pub host: Option<String>,
    /// List the jobs of every host of LIST (as rexec -w), each line prefixed
    /// with its host.
    #[arg(short = 'w', long = "hosts", value_name = "LIST", action = clap::ArgAction::Append)]
    pub hosts: Vec<String>,
    /// With -w: leave out these hosts.
    #[arg(short = 'x', long = "exclude", value_name = "LIST", requires = "hosts")]
    pub exclude: Option<String>,
    /// One JSON object per job (id, state, exit_code, signal, started,
    /// duration_ms, output_bytes, dropped_bytes, command).
    #[arg(long)]
    pub json: bool,
    /// Remove the records of your jobs that have ended (their output too).
    #[arg(long, conflicts_with = "json")]
    pub clean: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Debug, Args)]
pub struct JobArgs {
    /// The server, HOST or HOST:PORT.
    #[arg(value_name = "HOST[:PORT]")]
    pub host: String,
    /// The job's id, as rexec -d printed it.
    #[arg(value_name = "ID")]
    pub id: u64,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// SOURCE... DEST: local files and HOST:DEST, or HOST:PATH and a local
    /// file or directory.
    #[arg(value_name = "PATH", num_args = 2.., required = true)]
    pub paths: Vec<std::ffi::OsString>,
    /// Copy directories and what is in them.
    #[arg(short = 'r')]
    pub recursive: bool,
    /// Keep mode and modification time.
    #[arg(short = 'p')]
    pub preserve: bool,
    /// Copy to every host of LIST at once; DEST is then a plain path. May be
    /// given more than once, as with pdsh.
    #[arg(short = 'w', long = "hosts", value_name = "LIST", action = clap::ArgAction::Append)]
    pub hosts: Vec<String>,
    /// One JSON object per file copied, on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress bar, whatever stderr is (the library's copies).
    #[arg(skip)]
    pub quiet: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// SRC... HOST:DEST: local files or directories, and where they go.
    #[arg(value_name = "PATH", num_args = 2.., required = true)]
    pub paths: Vec<std::ffi::OsString>,
    /// Also remove what DEST has and SRC no longer does (only below the
    /// directories synced).
    #[arg(long)]
    pub delete: bool,
    /// Show what would change (one line each: `send`, `mkdir`, `link`,
    /// `delete`, and `touch` for a directory whose time alone differs),
    /// change nothing.
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// Compare files by their content (a digest the server computes, and
    /// one here) instead of their size and modification time: slower,
    /// but sees a change that kept both.
    #[arg(long)]
    pub checksum: bool,
    /// Sync the local SRC... to every host of LIST at once (DEST is then a
    /// plain path on each); may be given more than once, as with pdsh.
    #[arg(short = 'w', long = "hosts", value_name = "LIST", action = clap::ArgAction::Append)]
    pub hosts: Vec<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// The man pages `rexec man` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ManPage {
    /// rexec(1), this client.
    Rexec,
    /// rexecd(8), the server.
    #[cfg(feature = "demo")]
    Rexecd,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// The server, HOST or HOST:PORT (default port 7070), as it was recorded.
    #[arg(value_name = "HOST[:PORT]")]
    pub host: String,
    /// The known-hosts file [default: $XDG_CONFIG_HOME/rexec/known_hosts, or
    /// ~/.config/rexec/known_hosts].
    #[arg(long, value_name = "FILE", env = "REXEC_KNOWN_HOSTS")]
    pub known_hosts: Option<PathBuf>,
}

#[cfg(feature = "demo")]
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Only this part of the demo.
    #[arg(value_enum)]
    pub part: Option<crate::demo::DemoPart>,
    /// For `sticky`: use this `rexecd --protocol raw` instead of an embedded
    /// one.
    #[arg(long, value_name = "ADDR")]
    pub connect: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The server, HOST or HOST:PORT (default port 7070); IPv6 as [::1]:7070.
    #[arg(value_name = "HOST[:PORT]")]
    pub host: Option<String>,

    /// The command: one word is a shell command string, several words are
    /// an argument vector (see below).
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,

    /// Never forward stdin (the remote command reads /dev/null).
    #[arg(short = 'n', long = "no-stdin")]
    pub no_stdin: bool,

    /// Forward stdin (the default, from a terminal too, as ssh does; kept
    /// for scripts that say so). Its short form -i now names a key, as
    /// with ssh.
    #[arg(long = "stdin", conflicts_with = "no_stdin")]
    pub force_stdin: bool,

    /// Run the command on a pseudo-terminal on the server, for programs that
    /// need one (top, vim, a shell): when the local stdin is a terminal;
    /// -tt even when it is not. The local terminal is in raw mode meanwhile;
    /// at the start of a line, ~. disconnects and ~? lists the escapes.
    #[arg(short = 't', action = clap::ArgAction::Count, conflicts_with = "no_tty")]
    pub tty: u8,

    /// Never a pseudo-terminal, not even for `rexec HOST` on a terminal.
    #[arg(short = 'T')]
    pub no_tty: bool,

    /// Start the command as a detached job and return at once, printing its
    /// id (with -w, `host: id` per host). It runs on whatever becomes of
    /// this client or the connection, and rexecd keeps its output and exit
    /// status: see `rexec jobs`, `rexec attach`, `rexec kill`. Stdin is
    /// /dev/null.
    #[arg(short = 'd', long, conflicts_with_all = ["tty", "prompt"])]
    pub detach: bool,

    /// The job verb this run carries out (set by `-d` and the job
    /// subcommands, not on the command line).
    #[arg(skip)]
    pub job: Option<rexec_proto::JobVerb>,

    /// With no command: the line prompt (one command per line, each in a new
    /// shell, with history) instead of a login shell on a pseudo-terminal;
    /// with stdin not a terminal, one command per line.
    #[arg(long)]
    pub prompt: bool,

    /// Run on every host of LIST at once: names, patterns (lab[1-8],
    /// gpu[01-04]) and @groups of the config file, comma-separated. The
    /// positional arguments are then all command. Output lines are prefixed
    /// with the host's name; a summary line follows on stderr.
    #[arg(short = 'w', long = "hosts", value_name = "LIST", action = clap::ArgAction::Append)]
    pub hosts: Vec<String>,

    /// With -w: leave out these hosts (same syntax).
    #[arg(short = 'x', long = "exclude", value_name = "LIST", requires = "hosts")]
    pub exclude: Option<String>,

    /// With -w: at most this many hosts at once.
    #[arg(short = 'f', long = "fanout", value_name = "N", default_value_t = 64)]
    pub fanout: usize,

    /// With -w: gather identical outputs and print each once, under the
    /// folded list of hosts that gave it (as clush -b / dshbak -c).
    #[arg(short = 'b', long = "gather", requires = "hosts")]
    pub gather: bool,

    /// Ask the server to kill the command after this many seconds (exit 124).
    /// The server's own limit wins when it is shorter.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,

    /// Run the command in this directory on the server.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,

    /// Set an environment variable for the command (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,

    /// Print one JSON object per command on stdout (command, exit_code,
    /// signal, timed_out, truncated, stdout, stderr, duration_ms) instead of
    /// streaming the output.
    #[arg(long)]
    pub json: bool,

    /// Most output kept in memory per host for --json and -b (K, M, G
    /// suffixes): a server that sends more is cut off there, and the command
    /// reported as truncated (exit 141), so no server can fill this
    /// machine's memory.
    #[arg(long, value_name = "BYTES", default_value = "64M", value_parser = rexec_proto::limits::parse_size)]
    pub capture_limit: u64,

    /// Forward a local port: connections to [BIND:]PORT here (loopback
    /// unless BIND says otherwise) go to HOST:HOSTPORT as the server sees
    /// it, as ssh -L (Jupyter on the lab machine: -L 8888:localhost:8888).
    /// Repeatable; also `forward = ["L ..."]` in the config file.
    #[arg(short = 'L', value_name = "[BIND:]PORT:HOST:HOSTPORT", action = clap::ArgAction::Append)]
    pub local_forward: Vec<String>,

    /// Forward a remote port: the server listens on [BIND:]PORT (its
    /// loopback unless it allows more) and each connection comes to
    /// HOST:HOSTPORT as this machine sees it, as ssh -R. PORT 0: the
    /// server picks one and rexec says which. Repeatable.
    #[arg(short = 'R', value_name = "[BIND:]PORT:HOST:HOSTPORT", action = clap::ArgAction::Append)]
    pub remote_forward: Vec<String>,

    /// Run no command: only forward ports (-L, -R) until Ctrl-C or the
    /// connection ends, as ssh -N. With a command, the ports are forwarded
    /// for as long as it runs.
    #[arg(short = 'N', conflicts_with_all = ["tty", "detach", "prompt"])]
    pub no_command: bool,

    #[command(flatten)]
    pub conn: ConnArgs,
}

/// How to reach and trust a server: shared by running commands and copying
/// files.
#[derive(Debug, Args, Clone)]
pub struct ConnArgs {
    /// Also write one line on this file descriptor when rexec itself fails
    /// (cannot connect, the connection breaks, authentication fails): its
    /// kind, then the message. Output of the remote command never goes
    /// there, so a caller (the Ansible plugin) can tell rexec's own
    /// failures from a command that exits 255.
    #[arg(long, value_name = "FD")]
    pub error_fd: Option<i32>,

    /// Reach the host through the rexecd on GATEWAY (HOST[:PORT], or a
    /// name in the config file), as ssh -J: the gateway connects on and
    /// carries the bytes; TLS and the login are between you and the host.
    /// [default: the host's `jump` in the config file]
    #[arg(short = 'J', long = "jump", value_name = "GATEWAY")]
    pub jump: Option<String>,

    /// Give up connecting after this many seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub connect_timeout: Duration,

    /// Probe the server after this many seconds without sending it anything,
    /// and give up (exit 255) after three times as long without a byte from
    /// it: a hung host or a vanished network is noticed even while the
    /// command is quiet, like ssh's ServerAliveInterval. 0 turns it off.
    /// [default: the host's `keepalive` in the config file, else 15]
    #[arg(long, value_name = "SECS")]
    pub keepalive: Option<u64>,

    /// Log every frame on stderr as it is sent or received: direction, the 4
    /// header bytes in hex, the length they encode, the message kind and size.
    #[arg(long)]
    pub trace: bool,

    /// The account to run as on the server, as ssh -l (also `user@host`, or
    /// `user = "..."` in the host's config entry) [default: the local user
    /// name]. With rexecd --login, your key must be in that account's
    /// authorized_keys; a server that runs everything as one account
    /// accepts only that one when a user is given.
    #[arg(short = 'l', long = "user", value_name = "USER")]
    pub user: Option<String>,

    /// A private key to authenticate with (repeatable), as ssh -i: offered
    /// after the keys in ssh-agent and before ~/.ssh/id_ed25519, id_ecdsa
    /// and id_rsa. A server with --authorized-keys lets in a listed key;
    /// nothing secret is handed out.
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    pub identity: Vec<PathBuf>,

    /// Prove to the server that we hold the token in FILE (which must not be
    /// readable by group or others). Without it, REXEC_TOKEN is used if set.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Speak TLS (also on with any of the three options below, and always
    /// for a host:port in the known-hosts file). An unknown server's
    /// fingerprint is shown and you are asked whether to trust it; the
    /// answer is remembered in the known-hosts file. REXEC_TLS=1 (or yes,
    /// true, on) in the environment does the same.
    #[arg(long, env = "REXEC_TLS", value_parser = clap::builder::BoolishValueParser::new())]
    pub tls: bool,

    /// With TLS: trust an unknown server on first use without asking, and
    /// remember it. A server whose certificate later changes is still refused.
    #[arg(long)]
    pub accept_new: bool,

    /// With TLS: trust only the server certificate with this fingerprint (as
    /// rexecd prints it at start).
    #[arg(long, value_name = "SHA256:HEX", conflicts_with_all = ["accept_new", "ca"])]
    pub fingerprint: Option<String>,

    /// With TLS: trust a certificate signed by a CA in FILE (PEM) that names
    /// the host, instead of fingerprints.
    #[arg(long, value_name = "FILE", conflicts_with = "accept_new")]
    pub ca: Option<PathBuf>,

    /// The known-hosts file [default: $XDG_CONFIG_HOME/rexec/known_hosts, or
    /// ~/.config/rexec/known_hosts].
    #[arg(long, value_name = "FILE", env = "REXEC_KNOWN_HOSTS")]
    pub known_hosts: Option<PathBuf>,

    /// The config file (named hosts, groups) [default: $REXEC_CONFIG, else
    /// ~/.config/rexec/config.toml].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(v.is_finite() && v > 0.0 && v < 1e9) {
        return Err(format!("{s:?}: give a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Every `-w` given, as one host list (`-w a -w b` is `a,b`, as pdsh).
pub fn host_list(lists: &[String]) -> Option<String> {
    (!lists.is_empty()).then(|| lists.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_values_parse() {
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("novalue").is_err());
        assert_eq!(parse_secs("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
    }

    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
