//! `rexecd --config FILE`: every long flag as a TOML key, with the command
//! line winning over the file, and `--check-config`'s account of where
//! each setting came from.
//!
//! The file is not a second description of the settings: each key is
//! looked up among clap's own arguments (cli.rs), its value checked by
//! that argument's own parser, and the file turned into the command line
//! it stands for. So a flag added to `Args` is a key at once, with the
//! same checks and the same `--help` text, and nothing can drift.
//!
//! ```toml
//! listen = ["0.0.0.0:7070", "[::]:7070"]   # a flag that repeats: a list
//! login = true                              # a switch: true or false
//! timeout = 600                             # a number
//! token-file = "/etc/rexec/token"           # anything else: a string
//! ```

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};
use toml::de::{DeTable, DeValue};

use crate::cli::Args;

/// Read when `--config` is not given and the file exists, as sshd reads
/// `/etc/ssh/sshd_config`.
pub const DEFAULT_CONFIG: &str = "/etc/rexec/rexecd.toml";

/// Flags that are about reading the configuration, not part of it.
const NOT_KEYS: [&str; 4] = ["config", "check-config", "help", "version"];

/// The settings rexecd starts with, and where each came from.
#[derive(Debug)]
pub struct Loaded {
    /// The flags, the file's and the command line's together.
    pub args: Args,
    /// The file read, if any.
    pub file: Option<PathBuf>,
    matches: ArgMatches,
    /// The line of each key of the file.
    lines: HashMap<String, usize>,
    /// The keys whose value is the file's (the command line gave no other).
    from_file: HashSet<String>,
}

/// Why the settings could not be read.
#[derive(Debug)]
pub enum LoadError {
    /// The command line itself, or `--help`/`--version`: clap prints it.
    Clap(clap::Error),
    /// The file: its name, and the line where there is one.
    File(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Clap(e) => write!(f, "{}", first_line(e)),
            LoadError::File(s) => f.write_str(s),
        }
    }
}

/// Reads the command line `argv` (with the program's name first) and the
/// configuration file it names, or the default one.
pub fn load(argv: &[OsString]) -> Result<Loaded, LoadError> {
    let cmd = Args::command();
    let cli = cmd
        .clone()
        .try_get_matches_from(argv)
        .map_err(LoadError::Clap)?;
    let file = match cli.get_one::<PathBuf>("config") {
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| p.exists()),
    };
    let (flags, lines, from_file) = match &file {
        None => (Vec::new(), HashMap::new(), HashSet::new()),
        Some(path) => file_args(&cmd, path, &cli)?,
    };
    // The file's flags first, then the command line's: a key the command
    // line also gives was left out above, so the command line wins.
    let mut merged: Vec<OsString> = argv.iter().take(1).cloned().collect();
    merged.extend(flags);
    merged.extend(argv.iter().skip(1).cloned());
    let matches = cmd.try_get_matches_from(&merged).map_err(|e| match &file {
        Some(path) if !lines.is_empty() => LoadError::File(format!(
            "{} together with the command line: {}",
            path.display(),
            first_line(&e)
        )),
        _ => LoadError::Clap(e),
    })?;
    let args = Args::from_arg_matches(&matches).map_err(LoadError::Clap)?;
    Ok(Loaded {
        args,
        file,
        matches,
        lines,
        from_file,
    })
}

/// A file's flags, the line of each key, and the keys the command line
/// left to it.
type FileArgs = (Vec<OsString>, HashMap<String, usize>, HashSet<String>);

/// The flags `path` stands for, leaving out what the command line `cli`
/// gives; and the line of each key.
fn file_args(cmd: &Command, path: &Path, cli: &ArgMatches) -> Result<FileArgs, LoadError> {
    let shown = path.display();
    let text = read_config(path).map_err(|why| LoadError::File(format!("{shown}: {why}")))?;
    let table = DeTable::parse(&text).map_err(|e| {
        let line = e.span().map_or(0, |s| line_of(&text, s.start));
        LoadError::File(format!("{shown}:{line}: {}", e.message()))
    })?;
    let mut out = Vec::new();
    let mut lines = HashMap::new();
    let mut taken = HashSet::new();
    for (key, value) in table.get_ref() {
        let line = line_of(&text, key.span().start);
        let name: &str = key.get_ref();
        let at = |why: String| LoadError::File(format!("{shown}:{line}: {name}: {why}"));
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(name) && !NOT_KEYS.contains(&name))
            .ok_or_else(|| {
                at("no such setting (the keys are rexecd's long flags, as in --help)".into())
            })?;
        let flags = flags_for(cmd, arg, value.get_ref()).map_err(at)?;
        lines.insert(name.to_string(), line);
        if cli.value_source(arg.get_id().as_str()) != Some(ValueSource::CommandLine) {
            out.extend(flags);
            taken.insert(name.to_string());
        }
    }
    Ok((out, lines, taken))
}

/// The file's text, if it is one rexecd may trust: like sshd's
/// StrictModes, not writable by group or others, and owned by root or by
/// rexecd's own account.
fn read_config(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "writable by group or others (mode {:o}): anyone who can change it decides \
             who may log in; chmod go-w it",
            meta.mode() & 0o7777
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!(
            "owned by uid {}, not by root or rexecd's account (uid {me})",
            meta.uid()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

/// The command-line flags one key's value stands for, each value checked
/// by the flag's own parser.
fn flags_for(cmd: &Command, arg: &Arg, value: &DeValue<'_>) -> Result<Vec<OsString>, String> {
    let long = arg.get_long().unwrap_or_default();
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        return match value.as_bool() {
            Some(true) => Ok(vec![format!("--{long}").into()]),
            Some(false) => Ok(Vec::new()),
            None => Err(format!("a switch: true or false, not {}", value.type_str())),
        };
    }
    let items: Vec<&DeValue<'_>> = match value.as_array() {
        Some(list) if matches!(arg.get_action(), ArgAction::Append) => {
            list.iter().map(|v| v.get_ref()).collect()
        }
        Some(_) => return Err("takes one value, not a list".into()),
        None => vec![value],
    };
    let flags = items
        .into_iter()
        .map(|item| scalar(item).map(|text| OsString::from(format!("--{long}={text}"))))
        .collect::<Result<Vec<_>, _>>()?;
    // Each value through the flag's own parser: the key's flags alone on
    // a command line. What they need or exclude besides is judged later,
    // with everything together.
    let alone = std::iter::once(OsString::from("rexecd")).chain(flags.iter().cloned());
    match cmd.clone().try_get_matches_from(alone) {
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::InvalidValue | ErrorKind::ValueValidation
            ) =>
        {
            Err(first_line(&e))
        }
        _ => Ok(flags),
    }
}

/// A value as the command line would give it.
fn scalar(v: &DeValue<'_>) -> Result<String, String> {
    match v {
        DeValue::String(s) => Ok(s.to_string()),
        DeValue::Integer(i) if i.radix() == 10 => Ok(i.as_str().replace('_', "")),
        DeValue::Integer(_) => Err("write the number in decimal".into()),
        other => Err(format!("a string or a number, not {}", other.type_str())),
    }
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A clap error's message on one line, without its "error: ", usage and
/// help lines.
fn first_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let message: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect();
    let line = message.join(" ");
    line.strip_prefix("error: ").unwrap_or(&line).to_string()
}

impl Loaded {
    /// What `--check-config` prints: every setting as a line of a
    /// configuration file (so the output can become one), and where it
    /// came from.
    pub fn describe(&self) -> String {
        let cmd = Args::command();
        let mut out = String::new();
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if NOT_KEYS.contains(&long) {
                continue;
            }
            let id = arg.get_id().as_str();
            let raw: Vec<String> = self
                .matches
                .get_raw(id)
                .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            let from = match (self.lines.get(long), self.matches.value_source(id)) {
                (Some(line), _) if self.from_file.contains(long) => {
                    format!(
                        "{}:{line}",
                        self.file.as_deref().unwrap_or(Path::new("")).display()
                    )
                }
                (_, Some(ValueSource::CommandLine)) => "command line".to_string(),
                _ => "default".to_string(),
            };
            let value = match (arg.get_action(), raw.as_slice()) {
                (_, []) => {
                    out.push_str(&format!("# {long} is not set\n"));
                    continue;
                }
                (ArgAction::SetTrue, [v]) => v.clone(),
                (ArgAction::Append, vals) => format!(
                    "[{}]",
                    vals.iter()
                        .map(|v| toml_str(v))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                (_, [v]) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => v.clone(),
                (_, vals) => toml_str(&vals.join(",")),
            };
            out.push_str(&format!("{long} = {value}  # {from}\n"));
        }
        out
    }
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests;
