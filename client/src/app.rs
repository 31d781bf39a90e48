//! The `rexec` program: parse the command line, then run the demo, one
//! command, or the interactive prompt. Returns the process exit code.

use std::io::{self, IsTerminal, Read};
use std::time::Instant;

use clap::{CommandFactory, Parser};

use crate::addr::{hostport, parse_host};
use crate::cli::{Cli, ForgetArgs, ManPage, RunArgs};
use crate::error::ClientError;
use crate::forward::spec::{Spec, Way};
use crate::hosts::{Config, Target};
use crate::options::command_from_words;
use crate::run::{self, EXIT_CONNECTION, EXIT_INTERRUPTED, Sinks};
use crate::tls;
use crate::{interactive, terminal};
use rexec_proto::{ExecMode, JobVerb};

/// The whole program; returns the process exit code.
pub fn main_entry() -> i32 {
    let cli = Cli::parse_from(crate::argv::normalize(std::env::args_os().collect()));
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let error_fd = match &cli.sub {
        Some(crate::cli::Sub::Cp(c)) => c.conn.error_fd,
        Some(crate::cli::Sub::Sync(s)) => s.conn.error_fd,
        Some(crate::cli::Sub::Jobs(j)) => j.conn.error_fd,
        Some(crate::cli::Sub::Attach(j) | crate::cli::Sub::Kill(j)) => j.conn.error_fd,
        _ => cli.run.conn.error_fd,
    };
    if let Some(fd) = error_fd {
        crate::error::set_error_fd(fd);
    }
    match cli.sub {
        #[cfg(feature = "demo")]
        Some(crate::cli::Sub::Demo(d)) => crate::demo::main(d.part, d.connect.as_deref()),
        Some(crate::cli::Sub::Forget(f)) => forget(&f),
        Some(crate::cli::Sub::Completions { shell, config }) => {
            // Into memory first: clap_complete panics on a write error, and
            // `rexec completions bash | head` is no reason to.
            let mut script = Vec::new();
            let mut cmd = with_config_hosts(Cli::command(), config.as_deref());
            clap_complete::generate(shell, &mut cmd, "rexec", &mut script);
            let _ = io::Write::write_all(&mut io::stdout(), &script);
            0
        }
        Some(crate::cli::Sub::Man { page }) => man(page),
        Some(crate::cli::Sub::Cp(c)) => crate::copy::main(&c),
        Some(crate::cli::Sub::Sync(s)) => crate::copy::sync_main(&s),
        Some(crate::cli::Sub::Hosts { config }) => list_hosts(config.as_deref()),
        Some(crate::cli::Sub::Jobs(j)) => one_shot_or_interactive(crate::jobs::list_args(j)),
        Some(crate::cli::Sub::Attach(j)) => {
            let job = j.id;
            one_shot_or_interactive(crate::jobs::job_args(j, JobVerb::Attach { job }))
        }
        Some(crate::cli::Sub::Kill(j)) => {
            let job = j.id;
            one_shot_or_interactive(crate::jobs::job_args(j, JobVerb::Kill { job }))
        }
        None => one_shot_or_interactive(cli.run),
    }
}

/// The command line for completion scripts: where a host goes, the names of
/// the config file's hosts; where a host list goes, those and its @groups.
/// (An unreadable or missing file completes nothing more.)
fn with_config_hosts(cmd: clap::Command, config: Option<&std::path::Path>) -> clap::Command {
    let Ok(cfg) = Config::load(config) else {
        return cmd;
    };
    let hosts: Vec<String> = cfg.hosts.keys().cloned().collect();
    if hosts.is_empty() && cfg.groups.is_empty() {
        return cmd;
    }
    let lists: Vec<String> = hosts
        .iter()
        .cloned()
        .chain(cfg.groups.keys().map(|g| format!("@{g}")))
        .collect();
    // The process prints the script and ends: leaking the names is what
    // gives clap the 'static strings it keeps (without its `string`
    // feature).
    let values = |v: Vec<String>| {
        clap::builder::PossibleValuesParser::new(
            v.into_iter()
                .map(|s| clap::builder::PossibleValue::new(&*Box::leak(s.into_boxed_str()))),
        )
    };
    // (mut_arg moves an argument last: the positionals keep their places
    // only with their indices said.)
    cmd.mut_arg("host", |a| {
        a.value_parser(values(hosts))
            .hide_possible_values(true)
            .index(1)
    })
    .mut_arg("command", |a| a.index(2))
    .mut_arg("hosts", |a| {
        a.value_parser(values(lists.clone()))
            .hide_possible_values(true)
    })
    .mut_subcommand("cp", |c| {
        c.mut_arg("hosts", |a| {
            a.value_parser(values(lists)).hide_possible_values(true)
        })
    })
}

/// `rexec man [rexecd]`: the page rendered from the clap definitions.
fn man(page: ManPage) -> i32 {
    let cmd = match page {
        ManPage::Rexec => Cli::command(),
        #[cfg(feature = "demo")]
        ManPage::Rexecd => rexec_server::Args::command(),
    };
    let section = match page {
        ManPage::Rexec => "1",
        #[cfg(feature = "demo")]
        ManPage::Rexecd => "8",
    };
    match clap_mangen::Man::new(cmd)
        .section(section)
        .render(&mut io::stdout())
    {
        Ok(()) => 0,
        // `rexec man | head`: the reader has what it wanted.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => crate::run::EXIT_BROKEN_PIPE,
        Err(e) => {
            eprintln!("rexec: writing the man page: {e}");
            1
        }
    }
}

/// `rexec forget HOST[:PORT]`.
fn forget(args: &ForgetArgs) -> i32 {
    let Some(file) = args.known_hosts.clone().or_else(tls::default_known_hosts) else {
        eprintln!("rexec: no known-hosts file: give --known-hosts FILE");
        return 2;
    };
    let hostport = match parse_host(&args.host) {
        Ok((h, p)) => hostport(&h, p),
        Err(e) => {
            eprintln!("rexec: {e}");
            return 2;
        }
    };
    match tls::forget_host(&file, &hostport) {
        Ok(0) => {
            eprintln!("rexec: {hostport} is not in {}", file.display());
            1
        }
        Ok(n) => {
            eprintln!(
                "rexec: removed {hostport} from {} ({n} line{})",
                file.display(),
                if n == 1 { "" } else { "s" }
            );
            0
        }
        Err(e) => {
            eprintln!("rexec: {}: {e}", file.display());
            1
        }
    }
}

/// `rexec hosts`: the config file's hosts and groups.
fn list_hosts(flag: Option<&std::path::Path>) -> i32 {
    let cfg = match Config::load(flag) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rexec: {e}");
            return 2;
        }
    };
    let Some(file) = &cfg.file else {
        eprintln!("rexec: no config file (REXEC_CONFIG, --config or ~/.config/rexec/config.toml)");
        return 1;
    };
    println!("# {}", file.display());
    for name in cfg.hosts.keys() {
        let t = cfg.target(name);
        let tls = if t.tls { " tls" } else { "" };
        println!("{name}\t{}{tls}", t.address);
    }
    for (name, list) in &cfg.groups {
        match cfg.expand(list, None) {
            Ok(hosts) => println!("@{name}\t{list}\t= {}", hosts.join(",")),
            Err(e) => println!("@{name}\t{list}\t(error: {e})"),
        }
    }
    0
}

/// `rexec -w LIST CMD...`: the positional words are all command.
fn fan_out(args: &RunArgs, cfg: &Config, list: &str) -> i32 {
    let hosts = match cfg.expand(list, args.exclude.as_deref()) {
        Ok(h) if h.is_empty() => {
            eprintln!("rexec: the host list is empty");
            return 2;
        }
        Ok(h) => h,
        Err(e) => {
            eprintln!("rexec: {e}");
            return 2;
        }
    };
    let words: Vec<String> = args.host.iter().chain(&args.command).cloned().collect();
    let parsed = match args.job {
        // A job verb other than start carries no command.
        Some(v) if v != JobVerb::Start => Ok((String::new(), ExecMode::Shell)),
        _ => command_from_words(&words),
    };
    let (command, mode) = match parsed {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rexec: {e} (with -w every argument is command)");
            return 2;
        }
    };
    // Stdin goes to every host, as with clush: read once (bounded), sent to
    // each. Not from a terminal (nobody types to many hosts), nor with -n.
    let stdin = if args.no_stdin || args.job.is_some() || io::stdin().is_terminal() {
        None
    } else {
        let limit = args.capture_limit();
        let mut data = Vec::new();
        match io::stdin()
            .lock()
            .take(limit as u64 + 1)
            .read_to_end(&mut data)
        {
            Ok(_) if data.len() > limit => {
                eprintln!(
                    "rexec: stdin is over {} MiB, too much to send to every host (see --capture-limit, or -n)",
                    limit >> 20
                );
                return 2;
            }
            Ok(_) => Some(std::sync::Arc::<[u8]>::from(data)),
            Err(e) => {
                eprintln!("rexec: reading stdin: {e}");
                return 2;
            }
        }
    };
    crate::fanout::run(args, cfg, hosts, &command, mode, stdin)
}

/// `@lab`, `lab[1-2]` or `a,b` where one host was expected (a bracketed
/// IPv6 address, `[::1]:7070`, is a host, also after an account:
/// `alice@[::1]:7070`).
fn looks_like_host_list(spec: &str) -> bool {
    if spec.starts_with('@') {
        return true;
    }
    let host = spec.split_once('@').map_or(spec, |(_, host)| host);
    host.contains(',') || (host.contains('[') && !host.starts_with('['))
}

/// The command line to send: the words given, or for none a login shell
/// (on a pty) or a shell reading stdin as one script.
fn command_to_run(words: &[String], pty: bool) -> Result<(String, ExecMode), ClientError> {
    if !words.is_empty() {
        return command_from_words(words);
    }
    Ok(if pty {
        // The server runs the login shell for an empty command on a pty.
        (String::new(), ExecMode::Shell)
    } else {
        // All of stdin is one script for one shell: multi-line constructs
        // work, cd and variables carry from line to line, and the status is
        // the script's.
        ("exec /bin/sh -s".to_string(), ExecMode::Shell)
    })
}

fn one_shot_or_interactive(mut args: RunArgs) -> i32 {
    if args.detach {
        args.job = Some(JobVerb::Start);
    }
    let cfg =
        match check_forward_args(&args).and_then(|()| Config::load(args.conn.config.as_deref())) {
            Ok(mut c) => {
                c.jump = args.conn.jump.clone();
                c
            }
            Err(e) => {
                eprintln!("rexec: {e}");
                return 2;
            }
        };
    if let Err(e) = run::install_ctrl_c() {
        eprintln!("rexec: cannot handle Ctrl-C: {e}");
    }
    if let Some(list) = &crate::cli::host_list(&args.hosts) {
        return fan_out(&args, &cfg, list);
    }
    let Some(host) = args.host.clone() else {
        eprintln!("rexec: missing HOST[:PORT]; see rexec --help, or try rexec demo");
        return 2;
    };
    if looks_like_host_list(&host) {
        // Not a name to look up (in DNS, for one): say what was meant.
        eprintln!(
            "rexec: {} is a host list, not a host: run it on each with rexec -w {} ...",
            rexec_proto::text::echo(&host),
            rexec_proto::text::echo(&host)
        );
        return 2;
    }
    if let Some(verb) = args.job {
        return crate::jobs::one(&args, &cfg, &host, verb);
    }
    let target = cfg.target(&host);
    let specs = match forward_specs(&args, &target) {
        Ok(s) if args.no_command => return forward_only(&args, &target, &s),
        Ok(s) => s,
        Err(e) => {
            eprintln!("rexec: {e}");
            return 2;
        }
    };
    let stdin_tty = io::stdin().is_terminal();
    if args.command.is_empty() && args.prompt {
        return interactive::main(&target, &args);
    }
    // A pseudo-terminal as ssh decides: asked for with -t when stdin is a
    // terminal, forced with -tt, never with -T; and for no command at all
    // on a terminal (a login shell, like `ssh HOST`).
    let pty = !args.no_tty
        && (args.tty >= 2 || ((args.tty == 1 || args.command.is_empty()) && stdin_tty));
    if args.tty == 1 && !stdin_tty {
        eprintln!("rexec: no pseudo-terminal, as stdin is not a terminal (-tt forces one)");
    }
    let (command, mode) = match command_to_run(&args.command, pty) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rexec: {e}");
            return 2;
        }
    };
    // Forwarded like ssh does: from a terminal too, unless -n.
    let forward = !args.no_stdin;
    let started = Instant::now();
    // A script reading --json from stdout gets a line whatever happens.
    let fail = |e: ClientError| {
        eprintln!("rexec: {e}");
        crate::error::report_to_error_fd(&e);
        if args.json {
            run::print_json_failure(None, &command, &e, started.elapsed());
        }
        EXIT_CONNECTION
    };
    let mut session = match connect_forwarding(&args, &target, &specs) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if pty {
        let mut exec = args.exec(1, command.clone(), mode);
        exec.pty = Some(terminal::request());
        return match terminal::run(&mut session, exec, &host) {
            Ok(outcome) => {
                outcome.report();
                outcome.exit_code()
            }
            Err(e) => fail(e),
        };
    }
    match run_piped(
        &mut session,
        &args,
        &command,
        mode,
        &host,
        forward,
        stdin_tty,
    ) {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

/// `-L`, `-R` and `-N` go with one host and its command.
fn check_forward_args(args: &RunArgs) -> Result<(), String> {
    let forwarding = !args.local_forward.is_empty() || !args.remote_forward.is_empty();
    if (forwarding || args.no_command) && (!args.hosts.is_empty() || args.job.is_some()) {
        return Err(
            "-L, -R and -N forward ports for one host and its command: not with -w, \
                    -d or a job verb"
                .into(),
        );
    }
    if args.no_command && !args.command.is_empty() {
        return Err("-N runs no command; drop -N to run one with the ports forwarded".into());
    }
    Ok(())
}

/// The forwards asked for: `-L` and `-R`, then the host's `forward`
/// entries in the config file.
fn forward_specs(args: &RunArgs, target: &Target) -> Result<Vec<Spec>, String> {
    let mut specs = Vec::new();
    for s in &args.local_forward {
        specs.push(Spec::parse(Way::Local, s)?);
    }
    for s in &args.remote_forward {
        specs.push(Spec::parse(Way::Remote, s)?);
    }
    for s in &target.forward {
        specs.push(Spec::parse_config(s)?);
    }
    Ok(specs)
}

/// Connects, and starts forwarding `specs` (if any).
fn connect_forwarding(
    args: &RunArgs,
    target: &Target,
    specs: &[Spec],
) -> Result<crate::Session, ClientError> {
    let mut session = args.connect(target)?;
    if !specs.is_empty() {
        crate::forward::start(&mut session, specs)?;
    }
    Ok(session)
}

/// `-N`: forwards ports until the connection ends (or Ctrl-C, which
/// exits 130); exits 255 when the connection is lost, as ssh -N.
fn forward_only(args: &RunArgs, target: &Target, specs: &[Spec]) -> i32 {
    if specs.is_empty() {
        eprintln!("rexec: -N with nothing to forward: give -L or -R");
        return 2;
    }
    let fail = |e: ClientError| {
        eprintln!("rexec: {e}");
        crate::error::report_to_error_fd(&e);
        EXIT_CONNECTION
    };
    let mut session = match args.connect(target) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if let Err(e) = crate::forward::start(&mut session, specs) {
        return fail(e);
    }
    loop {
        match session.next_event() {
            Ok(rexec_proto::ServerEvent::Msg(rexec_proto::ServerMsg::Error(e)))
                if e.id.is_none() =>
            {
                return fail(ClientError::Server(e));
            }
            Ok(_) => {}
            Err(e) => return fail(e),
        }
    }
}

/// Runs the command without a pty: output to the terminal (or captured
/// for --json), stdin forwarded unless -n; the exit code to exit with.
fn run_piped(
    session: &mut crate::Session,
    args: &RunArgs,
    command: &str,
    mode: ExecMode,
    host: &str,
    forward: bool,
    stdin_tty: bool,
) -> Result<i32, ClientError> {
    let mut sinks = if args.json {
        Sinks::capture_at_most(args.capture_limit())
    } else {
        match Sinks::terminal() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("rexec: cannot use stdout/stderr: {e}");
                return Ok(EXIT_CONNECTION);
            }
        }
    };
    // From a terminal, ssh's escapes work without a pty too (`~.`, `~?`).
    let stdin: Option<Box<dyn Read + Send>> = forward.then(|| match stdin_tty {
        true => terminal::escapes(host.to_string()),
        false => Box::new(io::stdin()) as Box<dyn Read + Send>,
    });
    let outcome = run::run(
        session,
        args.exec(1, command.to_string(), mode),
        &mut sinks,
        stdin,
    )?;
    if args.json {
        outcome.print_json(command, &sinks);
    }
    outcome.report();
    // Ctrl-C stopped it: exit as an interrupted program does (as ssh
    // without a pty), whatever the remote status.
    if run::interrupted() {
        return Ok(EXIT_INTERRUPTED);
    }
    Ok(outcome.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bracketed_ipv6_addresses_are_hosts_with_or_without_an_account() {
        for host in [
            "[::1]",
            "[::1]:7000",
            "alice@[::1]",
            "alice@[::1]:7000",
            "lab1",
            "a@lab1",
        ] {
            assert!(!looks_like_host_list(host), "{host}");
        }
        for list in ["@lab", "lab[1-2]", "a,b", "alice@lab[1-2]", "alice@a,b"] {
            assert!(looks_like_host_list(list), "{list}");
        }
    }
}
