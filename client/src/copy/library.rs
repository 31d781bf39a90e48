//! The library's copies (api/files.rs): one file or tree over a session
//! the caller opened, as `rexec cp` copies, without a progress bar or
//! JSON.

use super::*;

/// What the library's copies (api/files.rs) may do: as `rexec cp`, with
/// `-r` and `-p` as asked, no progress bar and no JSON.
pub(super) fn quiet_args(recursive: bool, preserve: bool) -> Result<CpArgs, String> {
    use clap::{Args, FromArgMatches};
    let cmd = CpArgs::augment_args(clap::Command::new("cp").no_binary_name(true));
    let m = cmd
        .try_get_matches_from(["-", "-"])
        .map_err(|e| e.to_string())?;
    let mut args = CpArgs::from_arg_matches(&m).map_err(|e| e.to_string())?;
    args.recursive = recursive;
    args.preserve = preserve;
    args.quiet = true;
    Ok(args)
}

/// The reason a library copy failed.
pub(super) fn library_error(e: CopyError) -> String {
    match e {
        CopyError::Connect(e) => e.to_string(),
        CopyError::Failed(m) | CopyError::Refused(m) => m,
    }
}

/// Sends `local` (a file, or with `recursive` a tree) to `dest` over
/// `session`, as `rexec cp [-r] [-p] LOCAL HOST:DEST` does.
pub(crate) fn send(
    session: &mut Session,
    local: &Path,
    dest: &OsStr,
    recursive: bool,
    preserve: bool,
) -> Result<(), String> {
    let args = quiet_args(recursive, preserve)?;
    let uploads = plan(&[local.as_os_str().to_os_string()], dest, recursive)?;
    upload_on(&args, session, "the server", &uploads, false, "").map_err(library_error)
}

/// Fetches `remote` (a file, or with `recursive` a tree) into `local`
/// over `session`, as `rexec cp [-r] [-p] HOST:REMOTE LOCAL` does.
pub(crate) fn fetch(
    session: &mut Session,
    remote: &OsStr,
    local: &Path,
    recursive: bool,
    preserve: bool,
) -> Result<(), String> {
    let args = quiet_args(recursive, preserve)?;
    let host = "the server";
    match recursive {
        true => download_tree(&args, session, host, remote, local),
        false => download_with(&args, session, host, remote, local),
    }
    .map_err(library_error)
}
