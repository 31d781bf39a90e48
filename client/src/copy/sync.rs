//! `rexec sync SRC... HOST:DEST`: make DEST like SRC, sending only what
//! differs, as `rsync -a` does with its quick check.
//!
//! 1. The server scans what is there (`Tree` scan, scan.rs): every entry's
//!    kind, size, modification time and mode, a symlink's target.
//! 2. The local tree is walked the same way, following no symlink.
//! 3. Each local entry is compared with the server's at the same path: a
//!    file whose size, seconds of modification time and mode are the same
//!    is left alone; anything else is sent as `rexec cp -p` sends it (a
//!    `Put`, checked end to end and renamed into place, so a file is never
//!    seen half written). A directory is made, or given its mode; a
//!    symlink is made with its target as it is.
//! 4. With `--delete`, what the server has below the synced top and the
//!    local tree does not is removed, deepest first (`Tree` remove: a
//!    file, a symlink, or an emptied directory; never followed).
//!
//! Paths are bytes end to end, so any name survives. The rules of a
//! trailing slash are rsync's: `SRC/` is SRC's contents, put into DEST;
//! `SRC` is SRC itself, put into DEST as DEST/NAME.

use std::collections::BTreeSet;

use super::pipeline::Item;
use super::progress::Progress;
use super::scan::{Remote, Scan};
use super::*;
use crate::cli::SyncArgs;

/// One local entry, by its path below the top (empty for the top).
#[derive(Debug)]
pub(super) struct Local {
    pub rel: Vec<u8>,
    pub path: PathBuf,
    pub what: Kind,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Kind {
    File { size: u64, mtime: i64, mode: u32 },
    Dir { mode: u32, mtime: i64 },
    Symlink { target: Vec<u8> },
}

/// What the sync does at one path.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Send the file, directory or symlink at this local index.
    Send(usize),
    /// Remove this remote path (and, for a directory, all below it).
    Delete(Vec<u8>),
}

/// What a sync did, for its closing line.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub sent: usize,
    pub bytes: u64,
    pub same: usize,
    pub deleted: usize,
}

/// Which way a sync goes, and between what.
enum Way<'a> {
    /// Local sources into DEST on the server.
    Up {
        sources: &'a [OsString],
        dest: &'a OsStr,
    },
    /// SRC on the server into a local directory.
    Down { src: &'a OsStr, dest: &'a Path },
}

/// The whole command; 0 in sync, 1 something failed, 2 usage, 255 a
/// server could not be reached.
pub(crate) fn main(args: &SyncArgs) -> i32 {
    let Some((dest, sources)) = args.paths.split_last() else {
        return 2;
    };
    let cfg = match load_config(&args.conn) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(list) = crate::cli::host_list(&args.hosts) {
        return to_every_host(args, &cfg, &list, sources, dest);
    }
    let bad = |why: String| {
        eprintln!("rexec sync: {why}");
        2
    };
    match (sources, remote(dest)) {
        // Down: one remote source into a local directory.
        ([src], None) => match remote(src) {
            Some((host, src)) => {
                let way = Way::Down {
                    src: &src,
                    dest: Path::new(dest),
                };
                sync_host(args, &cfg, &host, way, "")
            }
            None => bad(format!(
                "neither {} nor {} is HOST:PATH",
                lossy(src),
                lossy(dest)
            )),
        },
        (_, Some((host, dest))) => match sources.iter().find(|s| remote(s).is_some()) {
            Some(src) => bad(format!(
                "{} is remote: syncing from one server to another is not supported",
                lossy(src)
            )),
            None => sync_host(
                args,
                &cfg,
                &host,
                Way::Up {
                    sources,
                    dest: &dest,
                },
                "",
            ),
        },
        _ => bad("give SRC... HOST:DEST, or HOST:SRC LOCAL".into()),
    }
}

/// `-w LIST`: the local sources to DEST (a plain path) on every host of
/// LIST at once, each line of output prefixed with its host, then one
/// line for all, as `rexec cp -w` ends.
fn to_every_host(
    args: &SyncArgs,
    cfg: &Config,
    list: &str,
    sources: &[OsString],
    dest: &OsStr,
) -> i32 {
    if remote(dest).is_some() || sources.iter().any(|s| remote(s).is_some()) {
        eprintln!("rexec sync: with -w, the sources are local and DEST is a path on every host");
        return 2;
    }
    let hosts = match cfg.expand(list, None) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("rexec: {e}");
            return 2;
        }
    };
    let statuses: Vec<i32> = std::thread::scope(|scope| {
        let workers: Vec<_> = hosts
            .iter()
            .map(|host| {
                scope.spawn(move || {
                    let way = Way::Up { sources, dest };
                    sync_host(args, cfg, host, way, &format!("{host}: "))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or(EXIT_CONNECTION))
            .collect()
    });
    eprintln!("{}", super::summary("rexec sync", &hosts, &statuses));
    statuses.into_iter().max().unwrap_or(0)
}

/// One host's sync; its exit status. Messages start with `prefix`.
fn sync_host(args: &SyncArgs, cfg: &Config, host: &str, way: Way<'_>, prefix: &str) -> i32 {
    let mut session = match args.conn.connect(&cfg.target(host)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{prefix}rexec: {e}");
            return EXIT_CONNECTION;
        }
    };
    if session.server.protocol < rexec_proto::SYNC_PROTOCOL {
        eprintln!(
            "{prefix}rexec sync: {host} runs rexecd {} (protocol {}), which cannot scan a tree; \
             sync needs protocol {} (rexec cp -r -p copies everything instead)",
            rexec_proto::text::clean(&session.server.software, 40),
            session.server.protocol,
            rexec_proto::SYNC_PROTOCOL
        );
        return 1;
    }
    let mut tally = Tally::default();
    let mut status = 0;
    // Each source in turn (down: the one); a lost connection ends it all.
    let mut work: Vec<Result<(), CopyError>> = Vec::new();
    match way {
        Way::Down { src, dest } => work.push(super::sync_down::sync_down(
            args,
            &mut session,
            host,
            src,
            dest,
            &mut tally,
        )),
        Way::Up { sources, dest } => {
            for src in sources {
                let done = sync_one(args, &mut session, host, src, dest, &mut tally, prefix);
                let lost = matches!(done, Err(CopyError::Connect(_)));
                work.push(done);
                if lost {
                    break;
                }
            }
        }
    }
    for e in work.into_iter().filter_map(Result::err) {
        status = match e {
            CopyError::Connect(_) => EXIT_CONNECTION,
            _ => 1,
        };
        eprintln!("{prefix}rexec sync: {}", super::library::library_error(e));
    }
    let verb = if args.dry_run { "would send" } else { "sent" };
    eprintln!(
        "{prefix}rexec sync: {verb} {} ({} bytes), {} unchanged, {} deleted",
        tally.sent, tally.bytes, tally.same, tally.deleted
    );
    status
}

/// Syncs one SRC into DEST.
fn sync_one(
    args: &SyncArgs,
    session: &mut Session,
    host: &str,
    src: &OsStr,
    dest: &OsStr,
    tally: &mut Tally,
    prefix: &str,
) -> Result<(), CopyError> {
    let contents = src.as_bytes().len() > 1 && src.as_bytes().ends_with(b"/");
    let top = Path::new(src);
    let name = top
        .file_name()
        .filter(|_| !contents)
        .map(OsStr::to_os_string);
    // Where SRC's top lands: DEST itself for `SRC/`, else DEST/NAME.
    let target = match &name {
        Some(n) => join_dest(dest, n),
        None => dest.to_os_string(),
    };
    let local = walk(top).map_err(|e| CopyError::Failed(format!("{}: {e}", lossy(src))))?;
    let remote = super::scan::scan(session, host, &target, args.checksum)?;
    let steps = plan(&local, &remote, args.delete, checksum(session));
    let touch = touch_dirs(&local, &remote, &steps);
    tally.same += local.len() - steps.iter().filter(|s| matches!(s, Step::Send(_))).count();
    let (files, bytes) = steps
        .iter()
        .filter_map(|s| match s {
            Step::Send(i) => match local[*i].what {
                Kind::File { size, .. } => Some(size),
                _ => None,
            },
            Step::Delete(_) => None,
        })
        .fold((0, 0), |(n, b), size| (n + 1, b + size));
    let progress = super::progress::Progress::new(!args.dry_run && prefix.is_empty(), files, bytes)
        .labelled("sync", prefix);
    // With batch puts (protocol 10) the directories go first, then the
    // small files, from one helper on the server; then links and large
    // files, each on its own. Before, small files went last, 16 in flight
    // (pipeline.rs), their directories made by then. What only the server
    // has goes after them.
    let batching = session.server.protocol >= rexec_proto::BATCH_PROTOCOL;
    let (mut small, mut dirs, mut later, mut extras) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for step in steps {
        match step {
            Step::Send(i) => {
                let l = &local[i];
                if let Kind::File { size, .. } = l.what {
                    tally.bytes += size;
                }
                tally.sent += 1;
                if args.dry_run {
                    println!("{prefix}{} {}", verb(&l.what), shown(&target, &l.rel));
                    continue;
                }
                match l.what {
                    _ if l.rel.is_empty() => send_counted(session, l, &target, &progress)?,
                    Kind::File { size, .. } if size <= super::pipeline::SMALL => small.push(i),
                    Kind::Dir { .. } if batching => dirs.push(i),
                    _ if batching => later.push(i),
                    _ => send_counted(session, l, &target, &progress)?,
                }
            }
            Step::Delete(rel) if !local.iter().any(|l| l.rel == rel) => extras.push(rel),
            Step::Delete(rel) => {
                delete(args, session, host, (&remote, &target), &rel, tally, prefix)?
            }
        }
    }
    if batching {
        let items: Vec<Item<'_>> = dirs
            .iter()
            .map(|&i| dir_item(&local[i], false))
            .chain(small.iter().map(|&i| Item::File {
                path: local[i].path.as_path(),
                rel: local[i].rel.as_slice(),
            }))
            .collect();
        super::pipeline::upload_batches(session, &target, &items, true, &progress)?;
        for i in later {
            send_counted(session, &local[i], &target, &progress)?;
        }
    } else {
        let uploads = small
            .iter()
            .map(|&i| upload_of(&local[i], &target))
            .collect::<Result<Vec<Upload>, _>>()?;
        let refs: Vec<&Upload> = uploads.iter().collect();
        super::pipeline::upload_small(session, &refs, true, &progress)?;
    }
    for rel in extras {
        delete(args, session, host, (&remote, &target), &rel, tally, prefix)?;
    }
    // Directories' times last: everything inside them is written.
    let tree = (local.as_slice(), &remote, target.as_os_str());
    match args.dry_run {
        true => say_touches(tree, &touch, prefix),
        false => set_times(session, tree, touch, batching, &progress)?,
    }
    progress.finish();
    Ok(())
}

/// Removes `rel` on the server, and all below it, deepest first.
fn delete(
    args: &SyncArgs,
    session: &mut Session,
    host: &str,
    (remote, target): (&Scan, &OsStr),
    rel: &[u8],
    tally: &mut Tally,
    prefix: &str,
) -> Result<(), CopyError> {
    let below: Vec<&[u8]> = remote
        .below
        .keys()
        .filter(|k| under(k, rel))
        .map(Vec::as_slice)
        .collect();
    // Deepest first: a directory is empty when its turn comes.
    for r in below.into_iter().rev().chain([rel]) {
        tally.deleted += 1;
        let path = join_rel(target, r);
        if args.dry_run {
            println!("{prefix}delete {}", lossy(&path));
            continue;
        }
        super::scan::remove(session, host, &path)?;
    }
    Ok(())
}

/// `target/rel`, or `target` for the top.
fn join_rel(target: &OsStr, rel: &[u8]) -> OsString {
    match rel.is_empty() {
        true => target.to_os_string(),
        false => join_dest(target, OsStr::from_bytes(rel)),
    }
}

fn shown(target: &OsStr, rel: &[u8]) -> String {
    lossy(&join_rel(target, rel))
}

fn verb(k: &Kind) -> &'static str {
    match k {
        Kind::File { .. } => "send",
        Kind::Dir { .. } => "mkdir",
        Kind::Symlink { .. } => "link",
    }
}

/// The local tree, the server's scan of it, and where it goes there.
type Tree<'a> = (&'a [Local], &'a Scan, &'a OsStr);

/// `-n`: the directories of `touch` whose time alone differs (what
/// changes inside the others is said already).
fn say_touches((local, remote, target): Tree<'_>, touch: &[usize], prefix: &str) {
    for &i in touch {
        let l = &local[i];
        let there = remote.at(&l.rel);
        if let (Kind::Dir { mtime, .. }, Some(Remote::Dir { mtime: t, .. })) = (&l.what, there)
            && mtime != t
        {
            println!("{prefix}touch {}", shown(target, &l.rel));
        }
    }
}

/// Gives the directories of `touch` their times on the server, deepest
/// first: in one batch put (protocol 10), the top on its own.
fn set_times(
    session: &mut Session,
    (local, _, target): Tree<'_>,
    touch: Vec<usize>,
    batching: bool,
    progress: &Progress,
) -> Result<(), CopyError> {
    if !batching {
        return touch
            .into_iter()
            .try_for_each(|i| send(session, &local[i], target));
    }
    let (top, below): (Vec<usize>, Vec<usize>) =
        touch.into_iter().partition(|&i| local[i].rel.is_empty());
    let items: Vec<Item<'_>> = below.iter().map(|&i| dir_item(&local[i], true)).collect();
    if !items.is_empty() {
        super::pipeline::upload_batches(session, target, &items, true, progress)?;
    }
    top.into_iter()
        .try_for_each(|i| send(session, &local[i], target))
}

/// A directory of a batch put: made with its mode, and with `time` its
/// time too.
fn dir_item(l: &Local, time: bool) -> Item<'_> {
    let (mode, mtime) = match l.what {
        Kind::Dir { mode, mtime } => (mode, time.then_some(mtime)),
        _ => (0o755, None),
    };
    Item::Dir {
        rel: &l.rel,
        mode,
        mtime,
    }
}

/// [`send`], and a file counted on the progress line.
fn send_counted(
    session: &mut Session,
    l: &Local,
    target: &OsStr,
    progress: &Progress,
) -> Result<(), CopyError> {
    send(session, l, target)?;
    if let Kind::File { size, .. } = l.what {
        progress.sent(size);
    }
    Ok(())
}

/// Sends one local entry to its place below `target`, on its own.
fn send(session: &mut Session, l: &Local, target: &OsStr) -> Result<(), CopyError> {
    let args = super::library::quiet_args(false, true).map_err(CopyError::Failed)?;
    upload(&args, session, &upload_of(l, target)?)
}

/// The put that makes local entry `l` below `target`.
fn upload_of(l: &Local, target: &OsStr) -> Result<Upload, CopyError> {
    let full = join_rel(target, &l.rel);
    let path = Path::new(&full);
    let (dest, name) = match (path.parent(), path.file_name()) {
        (Some(d), Some(n)) => (d.as_os_str().to_os_string(), n.to_os_string()),
        _ => {
            return Err(CopyError::Failed(format!(
                "{}: not a name to sync to",
                lossy(&full)
            )));
        }
    };
    Ok(Upload {
        local: l.path.clone(),
        dest: if dest.is_empty() { ".".into() } else { dest },
        name,
        // Only the top's parents may be missing (DEST itself): the rest
        // are made in order, parents first.
        mkdirs: l.rel.is_empty(),
        what: match &l.what {
            Kind::File { .. } => PutWhat::File,
            Kind::Dir { .. } => PutWhat::Dir,
            Kind::Symlink { target } => PutWhat::Symlink(target.clone()),
        },
    })
}

/// The local directories whose time the server must be given again, last
/// and deepest first: those whose time differs there, and those the sync
/// changes something right inside (a file written or removed in a
/// directory changes its time). Indexes into `local`.
fn touch_dirs(local: &[Local], remote: &Scan, steps: &[Step]) -> Vec<usize> {
    let parent = |rel: &[u8]| -> Vec<u8> {
        match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => rel[..i].to_vec(),
            None => Vec::new(),
        }
    };
    let changed: BTreeSet<Vec<u8>> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Send(i) if !local[*i].rel.is_empty() => Some(parent(&local[*i].rel)),
            Step::Delete(rel) if !rel.is_empty() => Some(parent(rel)),
            _ => None,
        })
        .collect();
    let mut out: Vec<usize> = Vec::new();
    for (i, l) in local.iter().enumerate() {
        let Kind::Dir { mtime, .. } = l.what else {
            continue;
        };
        let there = remote.at(&l.rel);
        let same_time = matches!(there, Some(Remote::Dir { mtime: t, .. }) if *t == mtime);
        if !same_time || changed.contains(&l.rel) {
            out.push(i);
        }
    }
    // The walk puts parents first: reversed, children come first.
    out.reverse();
    out
}

/// What to do, in order: each local entry that differs from the server's
/// (parents before children), and with `delete` what only the server has.
fn plan(local: &[Local], remote: &Scan, delete: bool, hash: Checksum) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut deleted: Vec<Vec<u8>> = Vec::new();
    for (i, l) in local.iter().enumerate() {
        let there = remote.at(&l.rel);
        // Below a path being replaced, nothing of the server's counts.
        let there = there.filter(|_| !deleted.iter().any(|d| under(&l.rel, d)));
        match (&l.what, there) {
            (Kind::File { size, mtime, mode }, Some(r @ Remote::File { .. }))
                if same_file((*size, *mtime, *mode), r, || digest_of(&l.path, hash)) => {}
            // (Its time is set last: see `touch_dirs`.)
            (Kind::Dir { mode, .. }, Some(Remote::Dir { mode: o, .. })) if mode == o => {}
            (Kind::Symlink { target }, Some(Remote::Symlink { target: t })) if target == t => {}
            (Kind::Dir { .. }, Some(Remote::Dir { .. })) => steps.push(Step::Send(i)),
            // A directory in the way of something else: its tree goes
            // first (a put cannot rename over it).
            (_, Some(Remote::Dir { .. })) | (Kind::Dir { .. }, Some(_)) => {
                steps.push(Step::Delete(l.rel.clone()));
                deleted.push(l.rel.clone());
                steps.push(Step::Send(i));
            }
            _ => steps.push(Step::Send(i)),
        }
    }
    if delete {
        let ours: BTreeSet<&[u8]> = local.iter().map(|l| l.rel.as_slice()).collect();
        let mut gone: Vec<&Vec<u8>> = Vec::new();
        for rel in remote.below.keys() {
            if ours.contains(rel.as_slice()) || gone.iter().any(|g| under(rel, g)) {
                continue;
            }
            if deleted.iter().any(|d| under(rel, d) || d == rel) {
                continue;
            }
            gone.push(rel);
        }
        steps.extend(gone.into_iter().map(|g| Step::Delete(g.clone())));
    }
    steps
}

/// Whether a local file (size, mtime, mode) is the server's: the same
/// size and mode, and the same mtime (the quick check) or, when the scan
/// carries digests (`--checksum`), the same bytes.
pub(super) fn same_file(
    (size, mtime, mode): (u64, i64, u32),
    there: &Remote,
    digest_here: impl FnOnce() -> Option<[u8; DIGEST_LEN]>,
) -> bool {
    let Remote::File {
        size: s,
        mtime: m,
        mode: o,
        digest,
    } = there
    else {
        return false;
    };
    if (size, mode) != (*s, o & 0o777) {
        return false;
    }
    match digest {
        Some(d) => digest_here().is_some_and(|h| h == *d),
        None => mtime == *m,
    }
}

/// The digest of the local file at `path` (not followed if a link).
pub(super) fn digest_of(path: &Path, hash: Checksum) -> Option<[u8; DIGEST_LEN]> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    digest_fd(fd, hash)
}

/// The digest of an open file's bytes.
pub(super) fn digest_fd(fd: OwnedFd, hash: Checksum) -> Option<[u8; DIGEST_LEN]> {
    let mut file = File::from(fd);
    let mut h = hash.hasher();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Some(h.finalize()),
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// Whether `rel` is below `dir`.
pub(super) fn under(rel: &[u8], dir: &[u8]) -> bool {
    rel.starts_with(dir) && rel.get(dir.len()) == Some(&b'/')
}

/// The local tree at `top`, top first, then depth first in name order;
/// nothing is followed (a symlink is sent as a symlink).
pub(super) fn walk(top: &Path) -> io::Result<Vec<Local>> {
    let mut out = Vec::new();
    walk_into(top, Vec::new(), &mut out, 0)?;
    Ok(out)
}

/// What is at `path`, never followed; `None` for a FIFO, socket or
/// device, which sync leaves alone (as cp).
pub(super) fn kind_at(path: &Path) -> io::Result<Option<Kind>> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    let ft = meta.file_type();
    Ok(Some(if ft.is_dir() {
        Kind::Dir {
            mode: meta.mode() & 0o777,
            mtime: meta.mtime(),
        }
    } else if ft.is_symlink() {
        Kind::Symlink {
            target: std::fs::read_link(path)?.into_os_string().into_vec(),
        }
    } else if ft.is_file() {
        Kind::File {
            size: meta.len(),
            mtime: meta.mtime(),
            mode: meta.mode() & 0o777,
        }
    } else {
        return Ok(None);
    }))
}

fn walk_into(path: &Path, rel: Vec<u8>, out: &mut Vec<Local>, depth: usize) -> io::Result<()> {
    let Some(what) = kind_at(path)? else {
        return Ok(());
    };
    let is_dir = matches!(what, Kind::Dir { .. });
    out.push(Local {
        rel: rel.clone(),
        path: path.to_path_buf(),
        what,
    });
    if !is_dir {
        return Ok(());
    }
    if depth > 256 {
        return Err(io::Error::other("directories nest too deep"));
    }
    let mut names: Vec<OsString> = std::fs::read_dir(path)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for n in names {
        let mut sub = rel.clone();
        if !sub.is_empty() {
            sub.push(b'/');
        }
        sub.extend_from_slice(n.as_bytes());
        walk_into(&path.join(&n), sub, out, depth + 1)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(rel: &str, size: u64, mtime: i64) -> Local {
        Local {
            rel: rel.as_bytes().to_vec(),
            path: PathBuf::from(rel),
            what: Kind::File {
                size,
                mtime,
                mode: 0o644,
            },
        }
    }

    fn dir(rel: &str) -> Local {
        Local {
            rel: rel.as_bytes().to_vec(),
            path: PathBuf::from(rel),
            what: Kind::Dir {
                mode: 0o755,
                mtime: 1000,
            },
        }
    }

    fn rdir() -> Remote {
        Remote::Dir {
            mode: 0o755,
            mtime: 1000,
        }
    }

    fn scan(entries: &[(&str, Remote)]) -> Scan {
        Scan {
            top: Some(rdir()),
            below: entries
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
                .collect(),
        }
    }

    fn rfile(size: u64, mtime: i64) -> Remote {
        Remote::File {
            size,
            mtime,
            mode: 0o644,
            digest: None,
        }
    }

    #[test]
    fn only_what_differs_is_sent_and_only_with_delete_is_anything_removed() {
        let local = vec![
            dir(""),
            file("a", 1, 10),
            file("b", 2, 20),
            dir("d"),
            file("d/c", 3, 30),
        ];
        let remote = scan(&[
            ("a", rfile(1, 10)),
            ("b", rfile(2, 21)),
            ("old", rfile(9, 9)),
            ("gone", rdir()),
            ("gone/x", rfile(1, 1)),
        ]);
        // b's time differs; d and d/c are new; old and gone stay.
        assert_eq!(
            plan(&local, &remote, false, Checksum::Blake3),
            vec![Step::Send(2), Step::Send(3), Step::Send(4)]
        );
        // With --delete: gone (its tree) and old, nothing else.
        let steps = plan(&local, &remote, true, Checksum::Blake3);
        assert_eq!(
            &steps[3..],
            &[
                Step::Delete(b"gone".to_vec()),
                Step::Delete(b"old".to_vec())
            ]
        );
    }

    #[test]
    fn a_directory_in_the_way_is_removed_before_its_replacement() {
        let local = vec![dir(""), file("x", 1, 1)];
        let remote = scan(&[("x", rdir()), ("x/y", rfile(1, 1))]);
        assert_eq!(
            plan(&local, &remote, false, Checksum::Blake3),
            vec![Step::Delete(b"x".to_vec()), Step::Send(1)]
        );
        // And a file where a directory goes.
        let local = vec![dir(""), dir("x"), file("x/y", 1, 1)];
        let remote = scan(&[("x", rfile(5, 5))]);
        assert_eq!(
            plan(&local, &remote, false, Checksum::Blake3),
            vec![Step::Delete(b"x".to_vec()), Step::Send(1), Step::Send(2)]
        );
    }

    #[test]
    fn a_directory_gets_its_time_back_when_it_differs_or_its_contents_changed() {
        let local = vec![
            dir(""),
            dir("same"),
            file("same/f", 1, 1),
            dir("edited"),
            file("edited/f", 1, 2),
            dir("touched"),
            dir("new"),
        ];
        let mut touched = rdir();
        if let Remote::Dir { mtime, .. } = &mut touched {
            *mtime = 5;
        }
        let remote = scan(&[
            ("same", rdir()),
            ("same/f", rfile(1, 1)),
            ("edited", rdir()),
            ("edited/f", rfile(1, 1)),
            ("touched", touched),
        ]);
        let steps = plan(&local, &remote, false, Checksum::Blake3);
        // Deepest first: new (made), touched (its time), edited (a file
        // written in it) and the top (new is made in it), not same.
        assert_eq!(touch_dirs(&local, &remote, &steps), vec![6, 5, 3, 0]);
        // Nothing differs: nothing to touch.
        let remote = scan(&[
            ("same", rdir()),
            ("same/f", rfile(1, 1)),
            ("edited", rdir()),
            ("edited/f", rfile(1, 2)),
            ("touched", rdir()),
            ("new", rdir()),
        ]);
        let steps = plan(&local, &remote, false, Checksum::Blake3);
        assert!(steps.is_empty(), "{steps:?}");
        assert!(touch_dirs(&local, &remote, &steps).is_empty());
    }
}
