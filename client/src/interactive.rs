//! With no command: a prompt with line editing and history on a terminal,
//! or one command per line from a pipe.

use std::io::{self, BufRead, IsTerminal};
use std::path::PathBuf;

use rexec_proto::ExecMode;

use crate::cli::RunArgs;
use crate::error::ClientError;
use crate::hosts::Target;
use crate::run::{self, EXIT_CONNECTION, Sinks};
use crate::session::Session;

/// Where the prompt's history is kept: `$XDG_DATA_HOME/rexec/history`, or
/// `~/.local/share/rexec/history`.
pub fn history_path() -> Option<PathBuf> {
    Some(dirs::data_dir()?.join("rexec").join("history"))
}

pub fn main(target: &Target, args: &RunArgs) -> i32 {
    let host = target.name.as_str();
    let mut session = match args.connect(target) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rexec: {e}");
            return EXIT_CONNECTION;
        }
    };
    let res = if io::stdin().is_terminal() {
        prompt(host, &mut session, args)
    } else {
        lines(&mut session, args)
    };
    res.unwrap_or_else(|e| {
        eprintln!("rexec: {e}");
        EXIT_CONNECTION
    })
}

/// Runs one line; returns its exit code.
fn run_line(
    session: &mut Session,
    args: &RunArgs,
    id: u32,
    line: &str,
) -> Result<i32, ClientError> {
    let mut sinks = if args.json {
        Sinks::capture()
    } else {
        Sinks::terminal()?
    };
    let outcome = run::run(
        session,
        args.exec(id, line.to_string(), ExecMode::Shell),
        &mut sinks,
        None,
    )?;
    if args.json {
        outcome.print_json(line, &sinks);
    }
    if sinks.ends_mid_line() && io::stdout().is_terminal() {
        // The next prompt would wipe a last line without a newline: mark
        // it (as zsh does, with a reverse-video %) and end it.
        println!("\x1b[7m%\x1b[0m");
    }
    outcome.report();
    Ok(outcome.exit_code())
}

fn lines(session: &mut Session, args: &RunArgs) -> Result<i32, ClientError> {
    let mut last = 0;
    for (n, line) in io::stdin().lock().lines().enumerate() {
        let line = line?;
        let cmd = line.trim();
        if cmd.is_empty() {
            continue;
        }
        last = run_line(session, args, n as u32 + 1, cmd)?;
    }
    Ok(last)
}

fn prompt(host: &str, session: &mut Session, args: &RunArgs) -> Result<i32, ClientError> {
    use rustyline::error::ReadlineError;
    let mut rl = rustyline::DefaultEditor::new()
        .map_err(|e| ClientError::Usage(format!("line editor: {e}")))?;
    let history = history_path();
    if let Some(h) = &history {
        let _ = rl.load_history(h); // none yet is fine
    }
    eprintln!(
        "connected to {} (rexecd {}). Type commands; exit or Ctrl-D to leave, Ctrl-C stops a running command.\n\
         Each line runs in a new shell: cd and export do not carry over to the next line.",
        session.addr, session.server.software
    );
    let mut last = 0;
    let mut id = 0u32;
    loop {
        match rl.readline(&format!("rexec {host}> ")) {
            Ok(line) => {
                let cmd = line.trim();
                if cmd.is_empty() {
                    continue;
                }
                if cmd == "exit" || cmd == "logout" {
                    break;
                }
                let _ = rl.add_history_entry(cmd);
                // Saved now, not only at the end: a second Ctrl-C during the
                // command quits at once.
                save_history(&mut rl, history.as_deref());
                id = id.wrapping_add(1);
                last = run_line(session, args, id, cmd)?;
                if last != 0 {
                    eprintln!("[exit {last}]");
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(ClientError::Usage(format!("reading the prompt: {e}"))),
        }
    }
    save_history(&mut rl, history.as_deref());
    Ok(last)
}

fn save_history(rl: &mut rustyline::DefaultEditor, file: Option<&std::path::Path>) {
    let Some(h) = file else {
        return;
    };
    if let Some(dir) = h.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = rl.save_history(h) {
        eprintln!("rexec: cannot save history to {}: {e}", h.display());
    }
}
