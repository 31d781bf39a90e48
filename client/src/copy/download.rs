//! `rexec cp` downloads: a `Get` streamed into a temporary file beside the
//! target (hashed, written behind, fsync'd, renamed once the checksum
//! matches), and trees listed, checked entry by entry and fetched beneath
//! the destination.

use super::*;

/// Fetches `path` from `host` into `local` (a file, or a directory to put
/// it in): into a temporary file beside the target, renamed over it once
/// the checksum matches.
pub(super) fn download(
    args: &CpArgs,
    cfg: &Config,
    host: &str,
    path: &OsStr,
    local: &Path,
) -> Result<(), CopyError> {
    let mut session = connect(args, cfg, host)?;
    if args.recursive {
        return download_tree(args, &mut session, host, path, local);
    }
    download_with(args, &mut session, host, path, local)
}

/// `-r` down: the files below `path` (listed with `find` on the server),
/// each fetched like a single file into the same tree under `local`.
pub(super) fn download_tree(
    args: &CpArgs,
    session: &mut Session,
    host: &str,
    path: &OsStr,
    local: &Path,
) -> Result<(), CopyError> {
    let listing = list(session, host, path)?;
    let mut top_bytes = path.as_bytes();
    while top_bytes.len() > 1 && top_bytes.ends_with(b"/") {
        top_bytes = &top_bytes[..top_bytes.len() - 1];
    }
    let top = OsStr::from_bytes(top_bytes);
    let name = Path::new(top)
        .file_name()
        .ok_or_else(|| CopyError::Failed(format!("{}: not a directory name", lossy(path))))?;
    // As cp -r and scp -r: into an existing directory as NAME, or as the
    // new directory LOCAL itself.
    let root_path = if local.is_dir() {
        local.join(name)
    } else {
        local.to_path_buf()
    };
    std::fs::create_dir_all(&root_path)
        .map_err(|e| CopyError::Failed(format!("{}: {e}", root_path.display())))?;
    let root = open_dir(&root_path)?;
    for entry in &listing {
        // The server chose these names: each must be a plain relative path
        // (no `..`, no root), or a lying server could make us write
        // anywhere (scp's CVE-2019-6111); and everything is made beneath
        // the destination without following a symlink.
        let entry_path = OsStr::from_bytes(&entry.path);
        let rel = beneath(Path::new(""), Path::new(entry_path)).ok_or_else(|| {
            CopyError::Failed(format!(
                "{host} listed {} under {}: refused (not a plain path below it)",
                rexec_proto::text::echo(&lossy(entry_path)),
                lossy(path)
            ))
        })?;
        let shown = root_path.join(rel.iter().collect::<PathBuf>());
        match entry.kind {
            b'd' => drop(make_dirs_beneath(&root, &root_path, &rel)?),
            b'f' => {
                let (dirs, file) = rel.split_at(rel.len() - 1);
                let dir = make_dirs_beneath(&root, &root_path, dirs)?;
                let remote = join_dest(top, entry_path);
                fetch_into(args, session, host, &remote, &dir, file[0], &shown)?;
            }
            b'l' => {
                let (dirs, link) = rel.split_at(rel.len() - 1);
                let dir = make_dirs_beneath(&root, &root_path, dirs)?;
                make_symlink(&dir, link[0], &entry.target, &shown)?;
            }
            other => {
                return Err(CopyError::Failed(format!(
                    "{host} listed an entry of unknown kind {other:#04x}"
                )));
            }
        }
    }
    Ok(())
}

/// One entry of a `List`.
#[derive(Debug)]
pub(super) struct Entry {
    kind: u8,
    /// Bytes: any Linux name.
    path: Vec<u8>,
    target: Vec<u8>,
}

/// Lists the tree below `path` on the server (confined there like a get).
pub(super) fn list(
    session: &mut Session,
    host: &str,
    path: &OsStr,
) -> Result<Vec<Entry>, CopyError> {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    session.send(&ClientMsg::List {
        id,
        path: path.as_bytes().to_vec(),
    })?;
    let shown = format!("{host}:{}", lossy(path));
    let bytes = collect(session, id, &shown, "listing")?;
    parse_listing(&bytes)
        .ok_or_else(|| CopyError::Failed(format!("{shown}: the server sent a broken listing")))
}

/// All that request `id` answers on stdout (a listing or a scan, `what`,
/// at most the capture limit), once it has ended well.
pub(super) fn collect(
    session: &mut Session,
    id: u32,
    shown: &str,
    what: &str,
) -> Result<Vec<u8>, CopyError> {
    let limit = crate::run::CAPTURE_LIMIT;
    let mut bytes = Vec::new();
    let (status, stderr) = wait(session, id, |data| {
        if bytes.len() + data.len() > limit {
            return Err(CopyError::Failed(format!(
                "{shown}: the {what} is longer than {} MiB",
                limit >> 20
            )));
        }
        bytes.extend_from_slice(data);
        Ok(())
    })?;
    check(status, &stderr, shown)?;
    Ok(bytes)
}

/// `KIND PATH NUL [TARGET NUL]`, one entry after another.
pub(super) fn parse_listing(mut bytes: &[u8]) -> Option<Vec<Entry>> {
    let mut out = Vec::new();
    let field = |bytes: &mut &[u8]| -> Option<Vec<u8>> {
        let end = bytes.iter().position(|&b| b == 0)?;
        let f = bytes[..end].to_vec();
        *bytes = &bytes[end + 1..];
        Some(f)
    };
    while let Some((&kind, rest)) = bytes.split_first() {
        bytes = rest;
        let path = field(&mut bytes)?;
        let target = if kind == b'l' {
            field(&mut bytes)?
        } else {
            Vec::new()
        };
        out.push(Entry { kind, path, target });
    }
    Some(out)
}

/// Makes the symlink `name` in `dir` pointing at `target` (as it is: a
/// link is copied, never followed), replacing what was there.
pub(super) fn make_symlink(
    dir: &OwnedFd,
    name: &std::ffi::OsStr,
    target: &[u8],
    shown: &Path,
) -> Result<(), CopyError> {
    use std::os::unix::ffi::OsStrExt;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".rexec-{}", std::process::id()));
    let fail = |e: rustix::io::Errno| CopyError::Failed(format!("{}: {e}", shown.display()));
    rustix::fs::symlinkat(std::ffi::OsStr::from_bytes(target), dir, &tmp).map_err(fail)?;
    rustix::fs::renameat(dir, &tmp, dir, name).map_err(|e| {
        let _ = rustix::fs::unlinkat(dir, &tmp, rustix::fs::AtFlags::empty());
        fail(e)
    })
}

/// The components of `path` after `top`, when every one is a plain name;
/// `None` when `path` is not below `top` or climbs (`..`), restarts (`/`)
/// or is empty.
pub(super) fn beneath<'a>(top: &Path, path: &'a Path) -> Option<Vec<&'a std::ffi::OsStr>> {
    let rel = path.strip_prefix(top).ok()?;
    let parts: Vec<_> = rel
        .components()
        .map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect::<Option<_>>()?;
    (!parts.is_empty()).then_some(parts)
}

pub(super) fn open_dir(path: &Path) -> Result<OwnedFd, CopyError> {
    rustix::fs::open(
        path,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| CopyError::Failed(format!("{}: {e}", path.display())))
}

/// Opens (making them when missing) the directories `dirs` below `root`,
/// each resolved by the kernel beneath it without following any symlink,
/// so that a link planted in the destination cannot lead the copy out.
pub(super) fn make_dirs_beneath(
    root: &OwnedFd,
    root_path: &Path,
    dirs: &[&std::ffi::OsStr],
) -> Result<OwnedFd, CopyError> {
    let mut fd = rustix::io::fcntl_dupfd_cloexec(root, 0)
        .map_err(|e| CopyError::Failed(format!("{}: {e}", root_path.display())))?;
    let mut shown = root_path.to_path_buf();
    for d in dirs {
        shown.push(d);
        let fail = |e: rustix::io::Errno| CopyError::Failed(format!("{}: {e}", shown.display()));
        match rustix::fs::mkdirat(&fd, *d, Mode::from_raw_mode(0o777)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(fail(e)),
        }
        fd = rustix::fs::openat2(
            &fd,
            *d,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
        )
        .map_err(fail)?;
    }
    Ok(fd)
}

/// Fetches one file over `session` to `local` (a file, or a directory to
/// put it in).
pub(super) fn download_with(
    args: &CpArgs,
    session: &mut Session,
    host: &str,
    path: &OsStr,
    local: &Path,
) -> Result<(), CopyError> {
    let name = Path::new(path)
        .file_name()
        .ok_or_else(|| CopyError::Failed(format!("{}: not a file name", lossy(path))))?;
    let target = if local.is_dir() {
        local.join(name)
    } else {
        local.to_path_buf()
    };
    let dir_path = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = target
        .file_name()
        .ok_or_else(|| CopyError::Failed(format!("{}: not a file name", target.display())))?;
    let dir = open_dir(dir_path)?;
    fetch_into(args, session, host, path, &dir, file_name, &target)
}

/// Fetches `path` into the file `name` of directory `dir` (`shown` is its
/// path for messages): into a temporary file beside it, renamed over it
/// once the checksum matches.
pub(super) fn fetch_into(
    args: &CpArgs,
    session: &mut Session,
    host: &str,
    path: &OsStr,
    dir: &OwnedFd,
    name: &std::ffi::OsStr,
    shown: &Path,
) -> Result<(), CopyError> {
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".rexec-{}", std::process::id()));
    let tmp_shown = shown.with_file_name(&tmp_name);
    let failed =
        |e: &dyn std::fmt::Display| CopyError::Failed(format!("{}: {e}", tmp_shown.display()));
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    session.send(&ClientMsg::Get {
        id,
        path: path.as_bytes().to_vec(),
    })?;
    let path = lossy(path);
    let fd = rustix::fs::openat(
        dir,
        &tmp_name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| failed(&e))?;
    // Removed on an interrupt too, not only on an error.
    let _pending = crate::cleanup::register(dir, &tmp_name);
    // The disk writes while the data arrives (writeback/), not all at the
    // closing fsync.
    let mut file = rexec_writeback::WriteBehind::new(File::from(fd));
    let mut state = GetState::new(checksum(session).hasher());
    let label = shown
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    let mut bar: Option<indicatif::ProgressBar> = None;
    let res = wait(session, id, |data| {
        state.feed(data, &mut file).map_err(|e| failed(&e))?;
        if state.header.len() == GET_HEADER_LEN {
            // The size is known once the header is in.
            bar.get_or_insert_with(|| progress(args, &label, state.size))
                .set_position(state.written);
        }
        Ok(())
    })
    .and_then(|(status, stderr)| check(status, &stderr, &format!("{host}:{path}")))
    .and_then(|()| state.verify())
    .and_then(|()| {
        let file = file.file();
        file.sync_all().map_err(|e| failed(&e))?;
        state
            .give_metadata(file, args.preserve)
            .map_err(|e| failed(&e))?;
        rustix::fs::renameat(dir, &tmp_name, dir, name)
            .map_err(|e| CopyError::Failed(format!("{}: {e}", shown.display())))
    });
    if let Some(bar) = &bar {
        progress_done(bar, res.is_ok());
    }
    if res.is_err() {
        let _ = rustix::fs::unlinkat(dir, &tmp_name, rustix::fs::AtFlags::empty());
    } else if args.json {
        println!(
            "{}",
            serde_json::json!({"source": format!("{host}:{path}"), "dest": shown.display().to_string(), "bytes": state.size})
        );
    }
    res
}

/// This process's umask (from /proc; 022 when it cannot be read). Reading
/// it with umask(2) would mean setting it, which other threads could see.
pub(super) fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// Parsing a get's stream: header, data, checksum.
#[derive(Debug, Default)]
pub(super) struct GetState {
    header: Vec<u8>,
    pub(super) size: u64,
    mode: u32,
    mtime: i64,
    written: u64,
    hash: Hasher,
    trailer: Vec<u8>,
}

impl GetState {
    /// A get's stream to come, checked with `hash`.
    pub(super) fn new(hash: Hasher) -> GetState {
        GetState {
            hash,
            ..GetState::default()
        }
    }

    /// Gives the received `file` the header's mode, never a setuid,
    /// setgid or sticky bit from the wire (without `preserve` under the
    /// umask, as with cp and scp), and with `preserve` its time.
    pub(super) fn give_metadata(&self, file: &File, preserve: bool) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let mode = match preserve {
            true => self.mode & 0o777,
            false => self.mode & 0o777 & !umask(),
        };
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        if preserve && let Ok(secs) = u64::try_from(self.mtime) {
            let _ = file.set_modified(UNIX_EPOCH + std::time::Duration::from_secs(secs));
        }
        Ok(())
    }

    pub(super) fn feed(&mut self, mut data: &[u8], file: &mut impl Write) -> io::Result<()> {
        if self.header.len() < GET_HEADER_LEN {
            let take = (GET_HEADER_LEN - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.header.len() == GET_HEADER_LEN {
                let h = &self.header;
                self.size = u64::from_be_bytes(h[0..8].try_into().unwrap_or_default());
                self.mode = u32::from_be_bytes(h[8..12].try_into().unwrap_or_default());
                self.mtime = i64::from_be_bytes(h[12..20].try_into().unwrap_or_default());
            }
        }
        let room = usize::try_from(self.size - self.written).unwrap_or(usize::MAX);
        let body = &data[..room.min(data.len())];
        self.hash.update(body);
        file.write_all(body)?;
        self.written += body.len() as u64;
        let rest = &data[body.len()..];
        if self.trailer.len() + rest.len() > 32 {
            return Err(io::Error::other("more bytes than the file has"));
        }
        self.trailer.extend_from_slice(rest);
        Ok(())
    }

    pub(super) fn verify(&self) -> Result<(), CopyError> {
        if self.written != self.size || self.trailer.len() != DIGEST_LEN {
            return Err(CopyError::Failed("the copy ended early".into()));
        }
        if self.hash.clone().finalize().as_slice() != self.trailer.as_slice() {
            return Err(CopyError::Failed(format!(
                "checksum ({}) mismatch: the data was damaged on the way, or the file changed \
                 while it was sent",
                self.hash.kind().name()
            )));
        }
        Ok(())
    }
}

/// Everything `rexec cp` decodes from a server, fed `data` as a server
/// would send it: as a `Get`'s stream (header, bytes, checksum) in chunks
/// of `step` bytes, and as a `List` answer (each entry's path checked the
/// way a download checks it). For the `client` fuzz target: whatever the
/// bytes, nothing may panic, allocate without bound or accept a path that
/// leaves the destination.
pub fn decode_untrusted(step: usize, data: &[u8]) {
    let mut get = GetState::default();
    for chunk in data.chunks(step.max(1)) {
        if get.feed(chunk, &mut io::sink()).is_err() {
            break;
        }
    }
    let _ = get.verify();
    if let Some(entries) = parse_listing(data) {
        for e in entries {
            if let Some(rel) = beneath(Path::new(""), Path::new(OsStr::from_bytes(&e.path))) {
                assert!(
                    rel.iter().all(|c| *c != ".." && *c != "." && !c.is_empty()),
                    "{:?} passed as plain",
                    e.path
                );
                assert!(!e.path.starts_with(b"/"), "{:?} passed as relative", e.path);
            }
        }
    }
}
