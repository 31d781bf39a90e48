use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use rexec_server::config_file::{self, LoadError, Loaded};
use rexec_server::settings::{self, Kept};
use rexec_server::{Server, logging};

fn main() -> ExitCode {
    // Before anything else, in rexecd and in every helper: nothing they
    // start inherits an ignored or blocked signal (sys.rs).
    rexec_server::adopt_ignored_signals();
    // `rexecd __contain ...`, `rexecd __files`: a helper (lib.rs).
    let argv: Vec<OsString> = std::env::args_os().collect();
    if let Some(code) = rexec_server::helper_mode(&argv) {
        std::process::exit(code);
    }
    // The command line, and the configuration file (config_file.rs).
    let loaded = match config_file::load(&argv) {
        Ok(l) => l,
        Err(LoadError::Clap(e)) => e.exit(),
        Err(e) => {
            eprintln!("rexecd: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init(loaded.args.log_format);
    if loaded.args.check_config {
        return check_config(loaded);
    }
    // Started by a systemd socket unit: its sockets, not --listen.
    let inherited = match rexec_server::inherited_listeners() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rexecd: socket activation: {e}");
            return ExitCode::from(2);
        }
    };
    let mut kept = Kept {
        inherited: inherited
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect(),
        env_token: None,
    };
    if !kept.inherited.is_empty() {
        log::info!("serving on the sockets systemd passed; --listen is not used");
    }
    let token_from_env = loaded.args.token_file.is_none();
    let settings = match settings::build(loaded, &kept) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rexecd: {e}");
            return ExitCode::from(2);
        }
    };
    settings.warnings.iter().for_each(|w| log::warn!("{w}"));
    let config = settings.config;
    if token_from_env {
        kept.env_token = config.token.clone();
    }
    // Children never inherit the server's environment, but drop the secret
    // from our own too: from the process's environment, and from the memory
    // /proc/PID/environ shows, which remove_var leaves as it was.
    rexec_server::scrub_environ(rexec_proto::auth::TOKEN_ENV);
    let served = match inherited.is_empty() {
        true => Server::bind(config.clone()),
        false => Server::from_listeners(config.clone(), inherited),
    };
    let mut server = match served {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rexecd: cannot listen on {e}");
            return ExitCode::FAILURE;
        }
    };
    // SIGHUP reads the same command line and file again (reload.rs).
    server.set_reload(Arc::new(move || settings::reread(&argv, &kept)));
    let mut out = std::io::stdout().lock();
    // Scripts and tests wait for the first line to learn the port.
    let mut banner = String::new();
    for addr in server.local_addrs() {
        banner.push_str(&format!("listening on {addr}\n"));
    }
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
    // Under a unit of Type=notify: serving now (notify.rs).
    let addrs: Vec<String> = server.local_addrs().iter().map(|a| a.to_string()).collect();
    rexec_server::notify::ready(&format!("listening on {}", addrs.join(", ")));
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rexecd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--check-config`: every setting and where it comes from on stdout, as
/// a configuration file would give it; then the checks rexecd makes at
/// start. Exit 0 when it would start, 2 with the reason when not.
fn check_config(loaded: Loaded) -> ExitCode {
    let mut text = match &loaded.file {
        Some(f) => format!(
            "# rexecd --check-config: {} and the command line\n",
            f.display()
        ),
        None => format!(
            "# rexecd --check-config: the command line ({} does not exist)\n",
            config_file::DEFAULT_CONFIG
        ),
    };
    text.push_str(&loaded.describe());
    let settings = match settings::build(loaded, &Kept::default()) {
        Ok(s) => s,
        Err(e) => {
            print!("{text}");
            eprintln!("rexecd: {e}");
            return ExitCode::from(2);
        }
    };
    for w in &settings.warnings {
        text.push_str(&format!("# warning: {w}\n"));
    }
    if let Some(tls) = &settings.config.tls {
        text.push_str(&format!(
            "# tls fingerprint {} (certificate from {})\n",
            tls.fingerprint, tls.source
        ));
    }
    text.push_str("# the settings are valid\n");
    print!("{text}");
    ExitCode::SUCCESS
}
