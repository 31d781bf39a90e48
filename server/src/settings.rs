//! From the command line and the configuration file to a checked
//! [`Config`]: once at start, and again on each SIGHUP (reload.rs), the
//! same way both times.

use std::ffi::OsString;
use std::net::SocketAddr;

use rexec_proto::auth::Token;

use crate::config::Config;
use crate::config_file::{self, LoadError, Loaded};

/// What a reload keeps from the start, since it cannot be read again.
#[derive(Debug, Clone, Default)]
pub struct Kept {
    /// The addresses of the sockets systemd passed: served on instead of
    /// `--listen`.
    pub inherited: Vec<SocketAddr>,
    /// The token from `REXEC_TOKEN`, which is wiped from the environment
    /// once read: used while no `--token-file` is given.
    pub env_token: Option<Token>,
}

/// Checked settings, and warnings to log about the ones allowed.
#[derive(Debug)]
pub struct Settings {
    /// The settings.
    pub config: Config,
    /// What to warn about (an exposed address allowed by `--insecure`).
    pub warnings: Vec<String>,
}

/// Builds and checks the settings `loaded` describes.
pub fn build(loaded: Loaded, kept: &Kept) -> Result<Settings, String> {
    let file = loaded.file.clone();
    let token_file = loaded.args.token_file.is_some();
    let mut config = loaded.args.into_config().map_err(|e| match &file {
        Some(f) => format!("{e} (settings from {} and the command line)", f.display()),
        None => e.to_string(),
    })?;
    if !token_file && let Some(t) = &kept.env_token {
        config.token = Some(t.clone());
    }
    if let Some((first, rest)) = kept.inherited.split_first() {
        config.listen = *first;
        config.also_listen = rest.to_vec();
    }
    let warnings = config.check().map_err(|e| e.to_string())?;
    Ok(Settings { config, warnings })
}

/// SIGHUP: the command line `argv` and its configuration file read again.
pub fn reread(argv: &[OsString], kept: &Kept) -> Result<Config, String> {
    let loaded = config_file::load(argv).map_err(|e| match e {
        LoadError::Clap(e) => format!("the command line: {e}"),
        LoadError::File(why) => why,
    })?;
    let settings = build(loaded, kept)?;
    settings.warnings.iter().for_each(|w| log::warn!("{w}"));
    Ok(settings.config)
}
