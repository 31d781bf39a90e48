//! Detached jobs (`rexec -d`, `jobs`, `attach`, `kill`): commands that
//! outlive their client and rexecd itself, with their output kept.
//!
//! rexecd does no job work in its event loop: each verb is a helper
//! process, `rexecd __job VERB ...`, started like any command (as the
//! connection's account, from its home, in a clean environment), whose
//! output and exit status are the verb's answer. So an attach streams
//! through the same pipes, backpressure and splicing as a command, and
//! the kernel's permissions decide whose records a helper may read.
//!
//! - `start` allocates a job directory (record.rs), starts the supervisor
//!   (supervise.rs) in a session of its own, and prints the job's id;
//! - `run` is the supervisor: it runs the job and spools its output
//!   (spool.rs) until it ends, whatever becomes of rexecd;
//! - `list`, `attach`, `kill` and `clean` read (and for `clean` remove)
//!   records (verbs.rs).

pub mod record;
pub mod spool;
mod supervise;
mod text;
mod verbs;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The first argument that selects a job helper in rexecd's `main`.
pub const ARG: &str = "__job";

/// The job settings rexecd passes to its helpers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// This rexecd's executable (the helpers are it).
    pub exe: PathBuf,
    /// `STATE/jobs`: one directory per job.
    pub dir: PathBuf,
    /// `--job-output-max`: output kept per job.
    pub output_max: u64,
    /// `--job-keep`: seconds a finished job's record is kept.
    pub keep_secs: u64,
    /// `--max-jobs`: jobs running at once per account.
    pub max: usize,
    /// `--max-jobs-total`: jobs running at once in all.
    pub max_total: usize,
    /// `--job-disk-max`: disk one account's kept output may take.
    pub disk_max: u64,
    /// Why the accounts commands run as cannot reach `dir`, when rexecd
    /// found at start that they cannot (see [`unreachable`]).
    pub unreachable: Option<String>,
}

impl Settings {
    /// The helper's arguments for `verb`, before its own.
    pub fn args(&self, verb: &str) -> Vec<OsString> {
        let n = |v: u64| OsString::from(v.to_string());
        vec![
            ARG.into(),
            verb.into(),
            self.dir.clone().into(),
            n(self.keep_secs),
            n(self.max as u64),
            n(self.max_total as u64),
            n(self.output_max),
            n(self.disk_max),
        ]
    }
}

/// Why other accounts cannot reach `dir` (the jobs directory), if they
/// cannot: an existing directory on its way that others may not pass
/// through (no `x` for others), as a state directory in root's home, or
/// one made 0700, is. Their job helpers, run as them, must make their job
/// directories there.
pub fn unreachable(dir: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut ancestors: Vec<&Path> = dir.ancestors().collect();
    ancestors.reverse();
    ancestors.into_iter().find_map(|d| {
        let mode = std::fs::metadata(d).ok()?.permissions().mode();
        (mode & 0o001 == 0).then(|| {
            format!(
                "{} is mode {:03o}: other accounts cannot pass through it to {}",
                d.display(),
                mode & 0o777,
                dir.display()
            )
        })
    })
}

/// Runs the job helper `args` (after `__job`) names; its exit code.
pub fn main(args: &[OsString]) -> i32 {
    let Some((verb, rest)) = args.split_first() else {
        eprintln!("rexecd {ARG}: no verb");
        return 2;
    };
    if verb == "run" {
        return supervise::run(rest);
    }
    let Some(common) = verbs::Common::parse(rest) else {
        eprintln!("rexecd {ARG}: bad arguments");
        return 2;
    };
    verbs::main(verb.to_str().unwrap_or(""), &common)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_directory_others_cannot_pass_through_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let set = |mode| std::fs::set_permissions(&state, std::fs::Permissions::from_mode(mode));
        set(0o711).unwrap();
        let jobs = state.join("jobs");
        // The temp directory's own parents let everyone through.
        assert_eq!(unreachable(&jobs), None);
        set(0o700).unwrap();
        let why = unreachable(&jobs).expect("0700 blocks");
        assert!(
            why.starts_with(&format!("{} is mode 700", state.display())),
            "{why}"
        );
    }
}
