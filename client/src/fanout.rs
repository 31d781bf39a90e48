//! `rexec -w LIST CMD`: one command on many hosts at once, from a bounded
//! pool of `--fanout` threads (1,000 hosts are not 1,000 threads); a host
//! that is down or slow holds up only its own thread, for at most the
//! connect timeout. Output is prefixed line by line as it arrives, gathered
//! (`-b`), or one JSON object per host; a summary line ends it on stderr.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::{Arc, Mutex};

use rexec_proto::ExecMode;
use rexec_proto::text::escape_controls;

use crate::cli::RunArgs;
use crate::error::ClientError;
use crate::hosts::{Config, fold};
use crate::run::{self, EXIT_CONNECTION, Outcome, Sinks};

/// One host's stdout and stderr.
type Output = (Vec<u8>, Vec<u8>);

/// What happened on one host.
#[derive(Debug)]
enum HostResult {
    Ran(Outcome, Sinks),
    Unreachable(ClientError),
}

/// Runs `command` on every host; returns rexec's exit status: 0 when every
/// host exited 0; 255 when any host could not be reached; otherwise the
/// highest status of a host.
pub fn run(
    args: &RunArgs,
    cfg: &Config,
    hosts: Vec<String>,
    command: &str,
    mode: ExecMode,
    stdin: Option<Arc<[u8]>>,
) -> i32 {
    let queue = Arc::new(Mutex::new(
        hosts.iter().cloned().enumerate().collect::<VecDeque<_>>(),
    ));
    let results: Arc<Mutex<BTreeMap<usize, (String, HostResult)>>> = Arc::default();
    let workers = args.fanout.clamp(1, hosts.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (queue, results, stdin) = (queue.clone(), results.clone(), stdin.clone());
            scope.spawn(move || {
                loop {
                    if run::stdout_broken() {
                        return; // nobody reads what the next host would say
                    }
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                    let Some((i, host)) = next else {
                        return;
                    };
                    let r = one(args, cfg, &host, command, mode, stdin.clone());
                    if args.json {
                        print_json(&host, command, &r);
                    }
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(i, (host, r));
                }
            });
        }
    });
    let results = std::mem::take(&mut *results.lock().unwrap_or_else(|p| p.into_inner()));
    if args.gather && !args.json {
        print_gathered(&results);
    }
    if run::stdout_broken() {
        // `rexec -w ... | head`: the reader has what it wanted; the hosts'
        // commands were stopped. Quietly, as a local writer would end.
        return run::EXIT_BROKEN_PIPE;
    }
    summary(&results)
}

/// Connects to one host and runs the command there.
fn one(
    args: &RunArgs,
    cfg: &Config,
    host: &str,
    command: &str,
    mode: ExecMode,
    stdin: Option<Arc<[u8]>>,
) -> HostResult {
    let mut session = match args.connect(&cfg.target(host)) {
        Ok(s) => s,
        Err(e) => {
            if !args.json && !args.gather {
                eprintln!("{host}: rexec: {e}");
            }
            return HostResult::Unreachable(e);
        }
    };
    let mut sinks = if args.json || args.gather {
        Sinks::capture_at_most(args.capture_limit())
    } else {
        Sinks::prefixed(host)
    };
    let exec = args.exec(1, command.to_string(), mode);
    let input = stdin.map(|d| Box::new(std::io::Cursor::new(d)) as Box<dyn std::io::Read + Send>);
    let ran = match args.job {
        Some(verb) => run::run_job(&mut session, exec, verb, &mut sinks, input),
        None => run::run(&mut session, exec, &mut sinks, input),
    };
    match ran {
        Ok(outcome) => {
            sinks.finish();
            if let (Some(e), false) = (&outcome.error, args.json) {
                eprintln!("{host}: rexec: {}: {}", e.kind, e.message);
            }
            HostResult::Ran(outcome, sinks)
        }
        Err(e) => {
            sinks.finish();
            if !args.json && !args.gather {
                eprintln!("{host}: rexec: {e}");
            }
            HostResult::Unreachable(e)
        }
    }
}

fn print_json(host: &str, command: &str, r: &HostResult) {
    match r {
        HostResult::Ran(o, sinks) => o.print_json_for(Some(host), command, sinks),
        HostResult::Unreachable(e) => {
            run::print_json_failure(Some(host), command, e, std::time::Duration::ZERO)
        }
    }
}

/// `-b`: each distinct output once, under the hosts that gave it.
fn print_gathered(results: &BTreeMap<usize, (String, HostResult)>) {
    // (stdout, stderr) -> the hosts that gave exactly that, in host order.
    let mut groups: Vec<(Output, Vec<String>)> = Vec::new();
    for (host, r) in results.values() {
        let HostResult::Ran(_, Sinks::Capture { stdout, stderr, .. }) = r else {
            continue;
        };
        let key = (stdout.clone(), stderr.clone());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, hosts)) => hosts.push(host.clone()),
            None => groups.push((key, vec![host.clone()])),
        }
    }
    let mut out = std::io::stdout().lock();
    for ((stdout, stderr), hosts) in groups {
        let shown = writeln!(
            out,
            "---------------\n{} ({})\n---------------",
            fold(&hosts),
            hosts.len()
        )
        // Many hosts' output on one screen: no escape sequences (see
        // run::write_lines).
        .and_then(|()| out.write_all(&escape_controls(&stdout)))
        .and_then(|()| out.flush());
        if shown.is_err() {
            run::note_stdout_broken();
            return;
        }
        let _ = std::io::stderr().write_all(&escape_controls(&stderr));
    }
}

/// The summary line on stderr, and the exit status. Hosts that failed the
/// same way are folded into one host list (`lab[3-5]: connection refused`).
fn summary(results: &BTreeMap<usize, (String, HostResult)>) -> i32 {
    let mut ok = Vec::new();
    // (how, why) -> hosts, in the order first seen.
    let mut bad: Vec<((&str, String), Vec<String>)> = Vec::new();
    let mut status = 0;
    for (host, r) in results.values() {
        let key = match r {
            HostResult::Ran(o, _) if o.exit_code() == 0 => {
                ok.push(host.clone());
                continue;
            }
            HostResult::Ran(o, _) => {
                status = status.max(o.exit_code());
                match &o.exited {
                    Some(x) if x.timed_out => ("timed out", String::new()),
                    _ if o.cut || o.exited.as_ref().is_some_and(|x| x.truncated) => {
                        ("truncated", String::new())
                    }
                    _ => ("failed", o.exit_code().to_string()),
                }
            }
            HostResult::Unreachable(ClientError::NoAnswer(..)) => {
                // It answered once, then went silent (hung, or cut off).
                status = EXIT_CONNECTION;
                ("no answer (keepalive)", String::new())
            }
            HostResult::Unreachable(e) => {
                status = EXIT_CONNECTION;
                ("unreachable", e.short())
            }
        };
        match bad.iter_mut().find(|(k, _)| *k == key) {
            Some((_, hosts)) => hosts.push(host.clone()),
            None => bad.push((key, vec![host.clone()])),
        }
    }
    let mut line = format!("rexec: {} ok", ok.len());
    for how in [
        "failed",
        "timed out",
        "truncated",
        "no answer (keepalive)",
        "unreachable",
    ] {
        let groups: Vec<String> = bad
            .iter()
            .filter(|((h, _), _)| *h == how)
            .map(|((_, why), hosts)| match why.is_empty() {
                true => fold(hosts),
                false => format!("{}: {why}", fold(hosts)),
            })
            .collect();
        let count: usize = bad
            .iter()
            .filter(|((h, _), _)| *h == how)
            .map(|(_, hosts)| hosts.len())
            .sum();
        if count > 0 {
            let sep = if how == "unreachable" { "; " } else { ", " };
            line.push_str(&format!(", {count} {how} ({})", groups.join(sep)));
        }
    }
    eprintln!("{line}");
    status
}
