//! Detached jobs from the client's side: `rexec -d`, `rexec jobs`,
//! `rexec attach`, `rexec kill`. Each is one `Job` request that runs like
//! a command (its output printed as it comes, its exit status rexec's),
//! on one host or with -w on many (fanout.rs).

use std::io::{self, IsTerminal};

use clap::{Args, FromArgMatches};
use rexec_proto::{ExecMode, JobVerb};

use crate::cli::{JobArgs, JobsArgs, RunArgs};
use crate::hosts::Config;
use crate::run::{self, EXIT_CONNECTION, EXIT_INTERRUPTED, Sinks};

/// The run for `rexec jobs` (with `--clean`: remove finished records).
pub fn list_args(a: JobsArgs) -> RunArgs {
    let verb = match a.clean {
        true => JobVerb::Clean,
        false => JobVerb::List { json: a.json },
    };
    let mut run = blank(a.conn, verb);
    run.host = a.host;
    run.hosts = a.hosts;
    run.exclude = a.exclude;
    run
}

/// The run for `rexec attach` or `rexec kill`.
pub fn job_args(a: JobArgs, verb: JobVerb) -> RunArgs {
    let mut run = blank(a.conn, verb);
    run.host = Some(a.host);
    run
}

/// A run with every option at its default, then `conn` and `verb`.
fn blank(conn: crate::cli::ConnArgs, verb: JobVerb) -> RunArgs {
    let matches = RunArgs::augment_args(clap::Command::new("rexec"))
        .try_get_matches_from(["rexec"])
        .expect("the defaults of rexec's options parse");
    let mut run = RunArgs::from_arg_matches(&matches).expect("the defaults of rexec's options");
    run.conn = conn;
    run.job = Some(verb);
    run.no_stdin = true;
    run
}

/// Carries out `verb` on one host; rexec's exit status.
pub fn one(args: &RunArgs, cfg: &Config, host: &str, verb: JobVerb) -> i32 {
    let (command, mode) = match verb {
        JobVerb::Start if args.command.is_empty() => {
            eprintln!("rexec: -d needs a command to run as a job");
            return 2;
        }
        JobVerb::Start => match crate::options::command_from_words(&args.command) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("rexec: {e}");
                return 2;
            }
        },
        _ => (String::new(), ExecMode::Shell),
    };
    let fail = |e: crate::error::ClientError| {
        eprintln!("rexec: {e}");
        crate::error::report_to_error_fd(&e);
        EXIT_CONNECTION
    };
    let mut session = match args.connect(&cfg.target(host)) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let mut sinks = match Sinks::terminal() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rexec: cannot use stdout/stderr: {e}");
            return EXIT_CONNECTION;
        }
    };
    // Following a job: Ctrl-C (or ~. on a terminal) stops following; the
    // job runs on.
    let mut stdin = None;
    if let JobVerb::Attach { job } = verb {
        run::on_ctrl_c_say(format!(
            "rexec: no longer following job {job}; it runs on (rexec attach {host} {job})"
        ));
        if io::stdin().is_terminal() {
            stdin = Some(crate::terminal::escapes(host.to_string()));
        }
    }
    let exec = args.exec(1, command, mode);
    match run::run_job(&mut session, exec, verb, &mut sinks, stdin) {
        Ok(outcome) => {
            outcome.report();
            if run::interrupted() {
                return EXIT_INTERRUPTED;
            }
            outcome.exit_code()
        }
        Err(e) => fail(e),
    }
}
