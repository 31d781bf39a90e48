use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use rexec_server::{Args, Server};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = Args::parse().into_config();
    let server = match Server::bind(config.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rexecd: cannot listen on {}: {e}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    // Scripts and tests wait for this line to learn the port.
    if writeln!(out, "listening on {}", server.local_addr())
        .and_then(|_| out.flush())
        .is_err()
    {
        // stdout closed: keep serving, the line was only informative
    }
    drop(out);
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rexecd: {e}");
            ExitCode::FAILURE
        }
    }
}
