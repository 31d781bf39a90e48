//! `rexec cp` uploads: a file's `Put`, the server's go-ahead, the data
//! and its digest; directories, symlinks and a tree's top as one `Put`
//! each; a tree's small files in batch puts (protocol 10, pipeline.rs).

use super::*;

/// Sends `uploads` to `host`. With `several` sources the first refusal
/// ends it: the destination is not a directory there, and every other
/// source would be refused the same way.
pub(super) fn upload_all(
    args: &CpArgs,
    cfg: &Config,
    host: &str,
    uploads: &[Upload],
    several: bool,
    prefix: &str,
) -> Result<(), CopyError> {
    let mut session = connect(args, cfg, host)?;
    upload_on(args, &mut session, host, uploads, several, prefix)
}

/// [`upload_all`] over a session already open.
pub(super) fn upload_on(
    args: &CpArgs,
    session: &mut Session,
    host: &str,
    uploads: &[Upload],
    several: bool,
    prefix: &str,
) -> Result<(), CopyError> {
    let mut failed = None;
    // The reason to go on to the next source, or the end of them all.
    let next = |i: usize, e: CopyError| match (e, several, i, uploads.first()) {
        (CopyError::Refused(m), true, 0, Some(u)) => Err(CopyError::Failed(format!(
            "several sources go into a directory, and {} is not one on {host} ({m}); nothing \
             was copied",
            lossy(&u.dest)
        ))),
        (CopyError::Failed(m) | CopyError::Refused(m), ..) => Ok(m),
        (e, ..) => Err(e),
    };
    // Where each tree's top went on this host: (planned, made).
    let mut tops: Vec<(OsString, OsString)> = Vec::new();
    // The small files of trees, sent in batches once all their directories
    // are made (protocol 10; not with --json, which says each file).
    let batching = session.server.protocol >= rexec_proto::BATCH_PROTOCOL && !args.json;
    let mut small: Vec<SmallFile> = Vec::new();
    for (i, u) in uploads.iter().enumerate() {
        if u.what == PutWhat::TreeTop {
            let planned = join_dest(&u.dest, &u.name);
            match tree_top(args, session, u) {
                Ok(made) => tops.push((planned, made)),
                Err(e) => {
                    let m = next(i, e)?;
                    eprintln!("{prefix}rexec cp: {m}");
                    failed = Some(m);
                }
            }
            continue;
        }
        let moved;
        let under = |p: &OsStr| {
            let (d, p) = (u.dest.as_bytes(), p.as_bytes());
            d == p || (d.starts_with(p) && d.get(p.len()) == Some(&b'/'))
        };
        let u = match tops.iter().find(|(p, _)| under(p)) {
            Some((planned, made)) => {
                let tail = &u.dest.as_bytes()[planned.len()..];
                let size = std::fs::symlink_metadata(&u.local)
                    .ok()
                    .filter(|m| m.is_file() && m.len() <= super::pipeline::SMALL)
                    .map(|m| m.len());
                if let Some(size) = size.filter(|_| batching && u.what == PutWhat::File) {
                    let mut rel = tail.strip_prefix(b"/").unwrap_or(tail).to_vec();
                    if !rel.is_empty() {
                        rel.push(b'/');
                    }
                    rel.extend_from_slice(u.name.as_bytes());
                    small.push(SmallFile {
                        top: made.clone(),
                        rel,
                        local: u.local.clone(),
                        size,
                    });
                    continue;
                }
                moved = Upload {
                    dest: OsString::from_vec([made.as_bytes(), tail].concat()),
                    local: u.local.clone(),
                    name: u.name.clone(),
                    mkdirs: u.mkdirs,
                    what: u.what.clone(),
                };
                &moved
            }
            None => u,
        };
        if let Err(e) = upload(args, session, u) {
            let m = next(i, e)?;
            eprintln!("{prefix}rexec cp: {m}");
            failed = Some(m);
        }
    }
    if let Err(e) = upload_small_of_trees(args, session, &small, prefix) {
        if matches!(e, CopyError::Connect(_)) {
            return Err(e);
        }
        let m = super::library::library_error(e);
        eprintln!("{prefix}rexec cp: {m}");
        failed = Some(m);
    }
    match failed {
        Some(m) => Err(CopyError::Failed(format!(
            "not every file was copied (last: {m})"
        ))),
        None => Ok(()),
    }
}

/// A small file of a tree, sent in a batch once the tree's directories
/// are made.
struct SmallFile {
    /// The tree's top, as the server made it.
    top: OsString,
    /// Its name below the top.
    rel: Vec<u8>,
    local: PathBuf,
    size: u64,
}

/// The small files of trees, each tree's in batches, with one progress
/// line for all.
fn upload_small_of_trees(
    args: &CpArgs,
    session: &mut Session,
    small: &[SmallFile],
    prefix: &str,
) -> Result<(), CopyError> {
    let bytes = small.iter().map(|f| f.size).sum();
    let progress =
        super::progress::Progress::new(!args.quiet && prefix.is_empty(), small.len() as u64, bytes)
            .labelled("cp", prefix);
    let mut failed = None;
    for tree in small.chunk_by(|a, b| a.top == b.top) {
        let files: Vec<super::pipeline::Item<'_>> = tree
            .iter()
            .map(|f| super::pipeline::Item::File {
                path: f.local.as_path(),
                rel: f.rel.as_slice(),
            })
            .collect();
        let top = &tree[0].top;
        match super::pipeline::upload_batches(session, top, &files, args.preserve, &progress) {
            Err(CopyError::Failed(m)) => failed = Some(m),
            other => other?,
        }
    }
    if !small.is_empty() {
        progress.finish();
    }
    match failed {
        Some(m) => Err(CopyError::Failed(m)),
        None => Ok(()),
    }
}

pub(super) fn upload(args: &CpArgs, session: &mut Session, u: &Upload) -> Result<(), CopyError> {
    let shown = u.local.display().to_string();
    if u.what != PutWhat::File {
        return upload_entry(args, session, u, &shown).map(drop);
    }
    let mut file = File::open(&u.local).map_err(|e| CopyError::Failed(format!("{shown}: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| CopyError::Failed(format!("{shown}: {e}")))?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    use std::os::unix::fs::MetadataExt;
    // The permission bits always go (a script stays executable, as with
    // scp); -p sets them exactly, and the time.
    let mode = Some(meta.mode() & 0o777);
    let mtime = args.preserve.then(|| meta.mtime());
    session.send(&ClientMsg::Put(Put {
        id,
        dest: u.dest.as_bytes().to_vec(),
        name: u.name.as_bytes().to_vec(),
        size: meta.len(),
        mkdirs: u.mkdirs,
        mode,
        mtime,
        preserve: args.preserve,
        what: PutWhat::File,
    }))?;
    // Nothing is sent before the server says the destination is good.
    ready(session, id, &format!("{shown} -> {}", lossy(&u.dest)))?;
    let bar = progress(args, &lossy(&u.name), meta.len());
    let mut hash = checksum(session).hasher();
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    while sent < meta.len() {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n.min(usize::try_from(meta.len() - sent).unwrap_or(usize::MAX)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Failed(format!("{shown}: {e}"))),
        };
        hash.update(&buf[..n]);
        session.send_stdin(id, &buf[..n])?;
        sent += n as u64;
        bar.set_position(sent);
    }
    // A file that shrank while being read: the server waits for bytes that
    // never come; a wrong checksum makes it refuse cleanly instead.
    let digest = if sent == meta.len() {
        hash.finalize().to_vec()
    } else {
        vec![0; DIGEST_LEN]
    };
    session.send(&ClientMsg::PutEnd { id, digest })?;
    let (status, stderr) = wait(session, id, |_| Ok(()))?;
    progress_done(
        &bar,
        sent == meta.len() && status == Some(ExitStatus::Code(0)),
    );
    if sent != meta.len() {
        return Err(CopyError::Failed(format!(
            "{shown}: changed while being read"
        )));
    }
    check(status, &stderr, &format!("{shown} -> {}", lossy(&u.dest)))?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"source": shown, "dest": lossy(&u.dest), "name": lossy(&u.name), "bytes": sent})
        );
    }
    Ok(())
}

/// A directory, a symlink or the top of a tree: one `Put` and its answer,
/// no data; returns what the server said on stdout (the top's path).
pub(super) fn upload_entry(
    args: &CpArgs,
    session: &mut Session,
    u: &Upload,
    shown: &str,
) -> Result<Vec<u8>, CopyError> {
    use std::os::unix::fs::MetadataExt;
    // The top is what the user named (a link to a directory counts as it);
    // an entry inside is what it is.
    let meta = match u.what {
        PutWhat::TreeTop => std::fs::metadata(&u.local),
        _ => std::fs::symlink_metadata(&u.local),
    }
    .map_err(|e| CopyError::Failed(format!("{shown}: {e}")))?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    session.send(&ClientMsg::Put(Put {
        id,
        dest: u.dest.as_bytes().to_vec(),
        name: u.name.as_bytes().to_vec(),
        size: 0,
        mkdirs: u.mkdirs,
        mode: Some(meta.mode() & 0o777),
        // A directory's time, with -p (the server sets it on one that
        // exists too: `rexec sync` sends each directory again, last).
        mtime: (args.preserve && u.what == PutWhat::Dir).then(|| meta.mtime()),
        preserve: args.preserve,
        what: u.what.clone(),
    }))?;
    let mut said = Vec::new();
    let (status, stderr) = wait(session, id, |data| {
        if said.len() + data.len() > 64 * 1024 {
            return Err(CopyError::Failed(format!(
                "{shown}: the server's answer is too long"
            )));
        }
        said.extend_from_slice(data);
        Ok(())
    })?;
    check(status, &stderr, &format!("{shown} -> {}", lossy(&u.dest)))
        .map_err(CopyError::refused)?;
    Ok(said)
}

/// The top directory of a tree; returns the path the server made for it.
pub(super) fn tree_top(
    args: &CpArgs,
    session: &mut Session,
    u: &Upload,
) -> Result<OsString, CopyError> {
    let shown = u.local.display().to_string();
    upload_entry(args, session, u, &shown).map(OsString::from_vec)
}
