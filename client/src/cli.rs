//! `rexec`'s command line.

use std::io::{self, IsTerminal, Read};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use rexec_proto::{Exec, ExecMode};

use crate::error::ClientError;
use crate::run::{self, EXIT_CONNECTION, Outcome, Sinks};
use crate::session::{ConnectOptions, Session};
use crate::tls::{self, TlsOptions, Trust};
use crate::{demo, interactive};

const AFTER_HELP: &str = "\
How the command reaches the server:
  One word is the command string as it is, run by the remote /bin/sh, as
  with ssh; quote it locally so your own shell leaves it alone:
      rexec lab1 'ls /var/log | wc -l'
  Several words are an argument vector: they are run directly, without a
  shell, each word arriving as one argument, unexpanded:
      rexec lab1 -- ls -l \"my file\" '$HOME' '*'
  (ls gets exactly the four arguments -l, my file, $HOME and *.)

With no command, rexec reads commands from a prompt (or one per line from
stdin when it is not a terminal) and runs them one after another.

Exit status: the remote command's; 128+N when it died of signal N; 124 when
it timed out; 127 when it could not be started; 255 when the connection, the
protocol or authentication failed.

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
    /// End-to-end demonstration with an embedded loopback server: runs a few
    /// commands, then shows why TCP needs message framing (`demo sticky`).
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Only this part of the demo.
    #[arg(value_enum)]
    pub part: Option<DemoPart>,
    /// For `sticky`: use this `rexecd --protocol raw` instead of an embedded
    /// one.
    #[arg(long, value_name = "ADDR")]
    pub connect: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoPart {
    /// The tutorials' sticky-packet cases, then the same over rexec's frames.
    Sticky,
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

    /// Forward stdin even when it is a terminal.
    #[arg(short = 'i', long = "stdin", conflicts_with = "no_stdin")]
    pub force_stdin: bool,

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

    /// Give up connecting after this many seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub connect_timeout: Duration,

    /// Print one JSON object per command on stdout (command, exit_code,
    /// signal, timed_out, truncated, stdout, stderr, duration_ms) instead of
    /// streaming the output.
    #[arg(long)]
    pub json: bool,

    /// Log every frame on stderr as it is sent or received: direction, the 4
    /// header bytes in hex, the length they encode, the message kind and size.
    #[arg(long)]
    pub trace: bool,

    /// Prove to the server that we hold the token in FILE (which must not be
    /// readable by group or others). Without it, REXEC_TOKEN is used if set.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<std::path::PathBuf>,

    /// Speak TLS (also on with REXEC_TLS=1, with any of the three options
    /// below, and always for a host:port in the known-hosts file). An unknown
    /// server's fingerprint is shown and you are asked whether to trust it;
    /// the answer is remembered in the known-hosts file.
    #[arg(long)]
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
    pub ca: Option<std::path::PathBuf>,

    /// The known-hosts file [default: $REXEC_KNOWN_HOSTS, else
    /// ~/.config/rexec/known_hosts].
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<std::path::PathBuf>,
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
        let (host, port) = crate::addr::parse_host(host_spec).map_err(ClientError::Usage)?;
        let hostport = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        // A pinned host never falls back to plaintext.
        let pinned = tls::known_host(&known_hosts, &hostport)?.is_some();
        let env = std::env::var(tls::TLS_ENV).is_ok_and(|v| v == "1");
        let wanted = self.tls
            || self.accept_new
            || self.fingerprint.is_some()
            || self.ca.is_some()
            || env
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

/// Prints the `--json` object for a finished command.
pub fn print_json(command: &str, outcome: &Outcome, sinks: &Sinks) {
    let (stdout, stderr) = match sinks {
        Sinks::Capture { stdout, stderr } => (
            String::from_utf8_lossy(stdout).into_owned(),
            String::from_utf8_lossy(stderr).into_owned(),
        ),
        Sinks::Terminal { .. } => (String::new(), String::new()),
    };
    let x = outcome.exited.as_ref();
    let obj = serde_json::json!({
        "command": command,
        "exit_code": x.and_then(|x| match x.status {
            rexec_proto::ExitStatus::Code(c) => Some(c),
            rexec_proto::ExitStatus::Signal(_) => None,
        }),
        "signal": outcome.signal(),
        "timed_out": x.is_some_and(|x| x.timed_out),
        "truncated": x.is_some_and(|x| x.truncated),
        "stdout": stdout,
        "stderr": stderr,
        "duration_ms": x.map_or(outcome.duration.as_millis() as u64, |x| x.duration_ms),
        "error": outcome.error.as_ref().map(|e| e.message.clone()),
    });
    println!("{obj}");
}

/// Explains on stderr what the exit status alone would not.
pub fn report(outcome: &Outcome) {
    if let Some(e) = &outcome.error {
        eprintln!("rexec: {}: {}", e.kind, e.message);
    }
    if let Some(x) = &outcome.exited {
        if x.timed_out {
            eprintln!("rexec: the command timed out and was killed");
        }
        if x.truncated {
            eprintln!(
                "rexec: output cut at {} bytes by the server's limit; the command was killed",
                x.bytes_out
            );
        }
    }
}

/// The whole program; returns the process exit code.
pub fn main_entry() -> i32 {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match cli.sub {
        Some(Sub::Demo(d)) => demo::main(d.part, d.connect.as_deref()),
        None => one_shot_or_interactive(cli.run),
    }
}

fn one_shot_or_interactive(args: RunArgs) -> i32 {
    let Some(host) = args.host.clone() else {
        eprintln!("rexec: missing HOST[:PORT]; see rexec --help, or try rexec demo");
        return 2;
    };
    if let Err(e) = run::install_ctrl_c() {
        eprintln!("rexec: cannot handle Ctrl-C: {e}");
    }
    if args.command.is_empty() {
        return interactive::main(&host, &args);
    }
    let (command, mode) = match command_from_words(&args.command) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rexec: {e}");
            return 2;
        }
    };
    let forward = args.force_stdin || (!args.no_stdin && !io::stdin().is_terminal());
    let mut session = match args
        .connect_options(&host)
        .and_then(|o| Session::connect(&host, &o))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rexec: {e}");
            return EXIT_CONNECTION;
        }
    };
    let mut sinks = if args.json {
        Sinks::capture()
    } else {
        match Sinks::terminal() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("rexec: cannot use stdout/stderr: {e}");
                return EXIT_CONNECTION;
            }
        }
    };
    let stdin: Option<Box<dyn Read + Send>> =
        forward.then(|| Box::new(io::stdin()) as Box<dyn Read + Send>);
    match run::run(
        &mut session,
        args.exec(1, command.clone(), mode),
        &mut sinks,
        stdin,
    ) {
        Ok(outcome) => {
            if args.json {
                print_json(&command, &outcome, &sinks);
            }
            report(&outcome);
            outcome.exit_code()
        }
        Err(e) => {
            eprintln!("rexec: {e}");
            EXIT_CONNECTION
        }
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
