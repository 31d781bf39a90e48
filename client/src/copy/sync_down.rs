//! `rexec sync HOST:SRC LOCAL`: the other direction of sync.rs. The
//! server's scan says what SRC holds; each entry that the local copy lacks
//! or has otherwise (size, mtime to the second, mode; a symlink's target)
//! is fetched as `rexec cp -p` fetches it (checked, renamed into place),
//! made, or linked. Every name comes from the server and so is checked
//! twice: as a plain path below the top when the scan is parsed, and by
//! the kernel, which resolves every directory beneath the local top
//! without following a symlink (a link planted in LOCAL cannot lead the
//! sync out). `--delete` removes, beneath the top and deepest first, what
//! the server no longer has.

use rustix::fs::{AtFlags, FileType};

use super::scan::Remote;
use super::sync::{Kind, Tally, digest_fd, digest_of, kind_at, same_file, under, walk};
use super::*;
use crate::cli::SyncArgs;

/// Syncs `HOST:src` into the local `dest`.
pub(super) fn sync_down(
    args: &SyncArgs,
    session: &mut Session,
    host: &str,
    src: &OsStr,
    dest: &Path,
    done: &mut Tally,
) -> Result<(), CopyError> {
    let contents = src.as_bytes().len() > 1 && src.as_bytes().ends_with(b"/");
    let mut trimmed = src.as_bytes();
    while trimmed.len() > 1 && trimmed.ends_with(b"/") {
        trimmed = &trimmed[..trimmed.len() - 1];
    }
    let src = OsStr::from_bytes(trimmed);
    let remote = super::scan::scan(session, host, src, args.checksum)?;
    let hash = checksum(session);
    let shown_src = format!("{host}:{}", lossy(src));
    let Some(top) = &remote.top else {
        return Err(CopyError::Failed(format!(
            "{shown_src}: no such file or directory"
        )));
    };
    let name = Path::new(src).file_name().filter(|_| !contents);
    let target = match name {
        Some(n) => dest.join(n),
        None => dest.to_path_buf(),
    };
    let cp = super::library::quiet_args(false, true).map_err(CopyError::Failed)?;
    // A single file: fetched as rexec cp -p fetches it, if it differs.
    let Remote::Dir { mode, .. } = top else {
        let same = kind_at(&target)
            .ok()
            .flatten()
            .is_some_and(|l| matches(&l, top, || digest_of(&target, hash)));
        if same {
            done.same += 1;
            return Ok(());
        }
        done.sent += 1;
        if args.dry_run {
            println!("fetch {}", target.display());
            return Ok(());
        }
        return download_with(&cp, session, host, src, &target);
    };
    if args.dry_run && !target.is_dir() {
        println!("mkdir {}", target.display());
        return dry_run_all(&remote.below, &target, done);
    }
    if !args.dry_run {
        std::fs::create_dir_all(&target)
            .map_err(|e| CopyError::Failed(format!("{}: {e}", target.display())))?;
    }
    let root = open_dir(&target)?;
    let progress = super::progress::Progress::open_ended(!args.dry_run);
    // Small files are fetched many at once after the walk (fetch_many.rs).
    let small = std::cell::RefCell::new(Vec::new());
    if !args.dry_run {
        let _ = rustix::fs::fchmod(&root, Mode::from_raw_mode(mode & 0o777));
    }
    for (rel, there) in &remote.below {
        let at = Place {
            cp: &cp,
            root: &root,
            target: &target,
            src,
            hash,
            progress: &progress,
            small: &small,
        };
        entry(args, session, host, &at, rel, there, done)?;
    }
    super::fetch_many::fetch_small(session, host, small.into_inner(), &progress)?;
    if args.delete {
        delete_extras(args, &root, &target, &remote.below, done)?;
    }
    dir_times(args.dry_run, &root, &target, top, &remote.below)?;
    progress.finish();
    Ok(())
}

/// Gives each local directory the server's time, last (every entry made or
/// removed in a directory changed its time) and deepest first; in a dry
/// run, says which differ (`touch`).
fn dir_times(
    dry_run: bool,
    root: &OwnedFd,
    target: &Path,
    top: &Remote,
    below: &std::collections::BTreeMap<Vec<u8>, Remote>,
) -> Result<(), CopyError> {
    // In byte order a directory comes before all below it: reversed, after.
    let none = Vec::new();
    let dirs = below.iter().rev().chain([(&none, top)]);
    for (rel, there) in dirs {
        let Remote::Dir { mtime, .. } = there else {
            continue;
        };
        let parts: Vec<&OsStr> = match rel.is_empty() {
            true => Vec::new(),
            false => rel.split(|&b| b == b'/').map(OsStr::from_bytes).collect(),
        };
        // Not there (a dry run, or something else in its place): nothing.
        let Some(dir) = beneath_dir(root, &parts) else {
            continue;
        };
        let Ok(st) = rustix::fs::fstat(&dir) else {
            continue;
        };
        if st.st_mtime == *mtime || FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            continue;
        }
        let shown = target.join(OsStr::from_bytes(rel));
        if dry_run {
            println!("touch {}", shown.display());
            continue;
        }
        let at = rustix::fs::Timespec {
            tv_sec: *mtime,
            tv_nsec: 0,
        };
        let times = rustix::fs::Timestamps {
            last_access: at,
            last_modification: at,
        };
        rustix::fs::futimens(&dir, &times)
            .map_err(|e| CopyError::Failed(format!("{}: {e}", shown.display())))?;
    }
    Ok(())
}

/// Where a down sync writes: the local top (open, and its path), the
/// server's SRC, and the hash of digests.
struct Place<'a> {
    /// How files are fetched (`rexec cp -p`'s settings).
    cp: &'a CpArgs,
    root: &'a OwnedFd,
    target: &'a Path,
    src: &'a OsStr,
    hash: Checksum,
    progress: &'a super::progress::Progress,
    /// Small files to fetch many at once, once all directories are made.
    small: &'a std::cell::RefCell<Vec<super::fetch_many::Small>>,
}

/// Makes one of the server's entries (`rel`, `there`) below the top, if
/// the local one differs.
fn entry(
    args: &SyncArgs,
    session: &mut Session,
    host: &str,
    at: &Place<'_>,
    rel: &[u8],
    there: &Remote,
    done: &mut Tally,
) -> Result<(), CopyError> {
    let parts: Vec<&OsStr> = rel.split(|&b| b == b'/').map(OsStr::from_bytes).collect();
    let shown = at.target.join(OsStr::from_bytes(rel));
    let (dirs, leaf) = parts.split_at(parts.len() - 1);
    let dir = match beneath_dir(at.root, dirs) {
        Some(d) => d,
        // Its directory is not there (a dry run, or made otherwise).
        None if args.dry_run => {
            report(there, &shown, done, true);
            return Ok(());
        }
        None => make_dirs_beneath(at.root, at.target, dirs)?,
    };
    let here = entry_kind(&dir, leaf[0]);
    let digest_here = || {
        let fd = rustix::fs::openat(
            &dir,
            leaf[0],
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        digest_fd(fd, at.hash)
    };
    if here
        .as_ref()
        .is_some_and(|h| matches(h, there, digest_here))
    {
        done.same += 1;
        return Ok(());
    }
    if there == &Remote::Other {
        return Ok(());
    }
    report(there, &shown, done, args.dry_run);
    if args.dry_run {
        return Ok(());
    }
    // A directory where something else goes, or the other way round:
    // gone first (a directory with all in it). A file or link over a
    // file or link is replaced by the rename, atomically.
    if let Some(h) = &here
        && matches!(h, Kind::Dir { .. }) != matches!(there, Remote::Dir { .. })
    {
        remove_tree(&dir, leaf[0], &shown)?;
    }
    let remote_path = join_dest(at.src, OsStr::from_bytes(rel));
    match there {
        Remote::Dir { mode, .. } => {
            let d = make_dirs_beneath(&dir, &shown, &[leaf[0]])?;
            let _ = rustix::fs::fchmod(&d, Mode::from_raw_mode(mode & 0o777));
        }
        Remote::File { size, .. } if *size <= super::pipeline::SMALL => {
            at.small.borrow_mut().push(super::fetch_many::Small {
                remote: remote_path,
                dir,
                name: leaf[0].to_os_string(),
                shown,
            })
        }
        Remote::File { size, .. } => {
            fetch_into(at.cp, session, host, &remote_path, &dir, leaf[0], &shown)?;
            at.progress.sent(*size);
        }
        Remote::Symlink { target } => make_symlink(&dir, leaf[0], target, &shown)?,
        Remote::Other => {}
    }
    Ok(())
}

/// A dry run into a directory that does not exist yet: all is new.
fn dry_run_all(
    below: &std::collections::BTreeMap<Vec<u8>, Remote>,
    target: &Path,
    done: &mut Tally,
) -> Result<(), CopyError> {
    for (rel, there) in below {
        if there != &Remote::Other {
            report(there, &target.join(OsStr::from_bytes(rel)), done, true);
        }
    }
    Ok(())
}

/// Counts one entry to make, and on a dry run says it.
fn report(there: &Remote, shown: &Path, done: &mut Tally, dry_run: bool) {
    let verb = match there {
        Remote::File { size, .. } => {
            done.bytes += size;
            "fetch"
        }
        Remote::Dir { .. } => "mkdir",
        Remote::Symlink { .. } => "link",
        Remote::Other => return,
    };
    done.sent += 1;
    if dry_run {
        println!("{verb} {}", shown.display());
    }
}

/// The kind of `name` in `dir`, never followed.
fn entry_kind(dir: &OwnedFd, name: &OsStr) -> Option<Kind> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    let mode = st.st_mode & 0o777;
    Some(match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => Kind::Dir {
            mode,
            mtime: st.st_mtime,
        },
        FileType::Symlink => Kind::Symlink {
            target: rustix::fs::readlinkat(dir, name, Vec::new())
                .ok()?
                .into_bytes(),
        },
        FileType::RegularFile => Kind::File {
            size: st.st_size as u64,
            mtime: st.st_mtime,
            mode,
        },
        _ => return None,
    })
}

/// Whether the local entry is what the server has (the quick check, or
/// with digests the content); `digest_here` reads the local file's.
fn matches(
    here: &Kind,
    there: &Remote,
    digest_here: impl FnOnce() -> Option<[u8; DIGEST_LEN]>,
) -> bool {
    match (here, there) {
        (Kind::File { size, mtime, mode }, r) => same_file((*size, *mtime, *mode), r, digest_here),
        // (Its time is set last: see `dir_times`.)
        (Kind::Dir { mode, .. }, Remote::Dir { mode: o, .. }) => *mode == o & 0o777,
        (Kind::Symlink { target }, Remote::Symlink { target: t }) => target == t,
        _ => false,
    }
}

/// The directory `dirs` below `root`, if it is there, resolved beneath it
/// without following a symlink.
fn beneath_dir(root: &OwnedFd, dirs: &[&OsStr]) -> Option<OwnedFd> {
    let mut fd = rustix::io::fcntl_dupfd_cloexec(root, 0).ok()?;
    for d in dirs {
        fd = rustix::fs::openat2(
            &fd,
            *d,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
        )
        .ok()?;
    }
    Some(fd)
}

/// Removes `name` in `dir`: a file or symlink, or a directory with all in
/// it, never following a link.
fn remove_tree(dir: &OwnedFd, name: &OsStr, shown: &Path) -> Result<(), CopyError> {
    let fail = |e: rustix::io::Errno| CopyError::Failed(format!("{}: {e}", shown.display()));
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(fail)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(fail);
    }
    let sub = beneath_dir(dir, &[name])
        .ok_or_else(|| CopyError::Failed(format!("{}: cannot open", shown.display())))?;
    let names: Vec<OsString> = rustix::fs::Dir::read_from(&sub)
        .map_err(fail)?
        .filter_map(Result::ok)
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
        .filter(|n| n != "." && n != "..")
        .collect();
    for n in names {
        remove_tree(&sub, &n, &shown.join(&n))?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(fail)
}

/// `--delete`: what the local top has and the server does not, removed
/// beneath the top.
fn delete_extras(
    args: &SyncArgs,
    root: &OwnedFd,
    target: &Path,
    below: &std::collections::BTreeMap<Vec<u8>, Remote>,
    done: &mut Tally,
) -> Result<(), CopyError> {
    let local =
        walk(target).map_err(|e| CopyError::Failed(format!("{}: {e}", target.display())))?;
    let mut gone: Vec<&Vec<u8>> = Vec::new();
    for l in local.iter().filter(|l| !l.rel.is_empty()) {
        if below.contains_key(&l.rel) || gone.iter().any(|g| under(&l.rel, g)) {
            continue;
        }
        gone.push(&l.rel);
    }
    for rel in gone {
        let shown = target.join(OsStr::from_bytes(rel));
        done.deleted += 1;
        if args.dry_run {
            println!("delete {}", shown.display());
            continue;
        }
        let parts: Vec<&OsStr> = rel.split(|&b| b == b'/').map(OsStr::from_bytes).collect();
        let (dirs, leaf) = parts.split_at(parts.len() - 1);
        if let Some(dir) = beneath_dir(root, dirs) {
            remove_tree(&dir, leaf[0], &shown)?;
        }
    }
    Ok(())
}
