use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use rexec_server::{Args, Server};

fn main() -> ExitCode {
    // Before anything else, in rexecd and in every helper: nothing they
    // start inherits an ignored or blocked signal (sys.rs).
    rexec_server::adopt_ignored_signals();
    // `rexecd __contain ...`, `rexecd __files`: a helper (lib.rs).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = rexec_server::helper_mode(&args) {
        std::process::exit(code);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut config = match Args::parse().into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rexecd: {e}");
            return ExitCode::from(2);
        }
    };
    // Started by a systemd socket unit: its socket, not --listen.
    let inherited = match rexec_server::inherited_listener() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rexecd: socket activation: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(addr) = inherited.as_ref().and_then(|l| l.local_addr().ok()) {
        log::info!("serving on the socket systemd passed ({addr}); --listen is not used");
        // What the checks below judge (loopback or not) is this address.
        config.listen = addr;
    }
    // Children never inherit the server's environment, but drop the secret
    // from our own too: from the process's environment, and from the memory
    // /proc/PID/environ shows, which remove_var leaves as it was.
    rexec_server::scrub_environ(rexec_proto::auth::TOKEN_ENV);
    match config.check() {
        Ok(warnings) => warnings.iter().for_each(|w| log::warn!("{w}")),
        Err(e) => {
            eprintln!("rexecd: {e}");
            return ExitCode::from(2);
        }
    }
    let served = match inherited {
        Some(l) => Server::from_listener(config.clone(), l),
        None => Server::bind(config.clone()),
    };
    let server = match served {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rexecd: cannot listen on {}: {e}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    // Scripts and tests wait for this line to learn the port.
    let mut banner = format!("listening on {}\n", server.local_addr());
    if let Some(tls) = &config.tls {
        // Clients pin this: rexec --fingerprint SHA256:... or --accept-new.
        banner.push_str(&format!("tls fingerprint {}\n", tls.fingerprint));
        log::info!("TLS certificate from {}", tls.source);
    }
    if out
        .write_all(banner.as_bytes())
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
