//! `rexec cp`: files both ways, with scp's syntax. Streamed in frames with
//! the same backpressure as output, never a whole file in memory; checked
//! end to end with SHA-256; renamed into place only when complete and
//! verified, on the server (files.rs there) as here.
//!
//! - `rexec cp FILE... HOST:DEST` (`-r` for directories, `-p` to keep mode
//!   and mtime, `-w LIST` instead of `HOST:` to copy to many hosts at once)
//! - `rexec cp HOST:PATH LOCAL`
//!
//! With a port: `host:port:/path`.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::UNIX_EPOCH;

use rexec_proto::{
    ClientMsg, ExitStatus, GET_HEADER_LEN, OutputStream, Put, PutWhat, ServerEvent, ServerMsg,
};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use sha2::{Digest, Sha256};

use crate::cli::CpArgs;
use crate::error::ClientError;
use crate::hosts::Config;
use crate::run::EXIT_CONNECTION;
use crate::session::Session;

/// Largest data chunk sent: well under the server's 1 MiB frame limit.
const CHUNK: usize = 256 * 1024;

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// `HOST:PATH` or `HOST:PORT:PATH` → (host spec, path); `None` for a local
/// path (no colon before the first slash). The path is bytes, as any Linux
/// name may be; the host must be text.
pub fn remote(spec: &OsStr) -> Option<(String, OsString)> {
    let b = spec.as_bytes();
    let path = |p: &[u8]| OsStr::from_bytes(p).to_os_string();
    fn port_then(rest: &[u8]) -> Option<(Option<String>, &[u8])> {
        let c = rest.iter().position(|&x| x == b':')?;
        let port = &rest[..c];
        (!port.is_empty() && port.iter().all(u8::is_ascii_digit)).then(|| {
            (
                std::str::from_utf8(port).ok().map(str::to_string),
                &rest[c + 1..],
            )
        })
    }
    // An IPv6 literal in brackets: `[::1]:/path`, `[::1]:7070:/path`.
    if let Some(inside) = b.strip_prefix(b"[") {
        let end = inside.windows(2).position(|w| w == b"]:")?;
        let addr = std::str::from_utf8(&inside[..end]).ok()?;
        if addr.contains('/') {
            return None;
        }
        let rest = &inside[end + 2..];
        return match port_then(rest) {
            Some((Some(port), p)) => Some((format!("[{addr}]:{port}"), path(p))),
            _ => Some((format!("[{addr}]"), path(rest))),
        };
    }
    let colon = b.iter().position(|&x| x == b':')?;
    let host = std::str::from_utf8(&b[..colon]).ok()?;
    if host.is_empty() || host.contains('/') {
        return None;
    }
    let rest = &b[colon + 1..];
    match port_then(rest) {
        Some((Some(port), p)) => Some((format!("{host}:{port}"), path(p))),
        _ => Some((host.to_string(), path(rest))),
    }
}

/// A path for a message (bytes that are not UTF-8 shown replaced).
fn lossy(p: &OsStr) -> String {
    p.to_string_lossy().into_owned()
}

/// `DEST/NAME`, a path on the server (no doubled slash).
fn join_dest(dest: &OsStr, name: &OsStr) -> OsString {
    let mut d = dest.as_bytes();
    while d.len() > 1 && d.ends_with(b"/") {
        d = &d[..d.len() - 1];
    }
    let mut out = d.to_vec();
    if !out.ends_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(name.as_bytes());
    OsString::from_vec(out)
}

/// One file to send: where it is here, and where it goes there.
#[derive(Debug)]
struct Upload {
    local: PathBuf,
    dest: OsString,
    name: OsString,
    mkdirs: bool,
    /// A file, or a directory or symlink of a tree (`-r`).
    what: PutWhat,
}

/// The whole command; returns the exit status: 0 all copied, 1 a copy
/// failed, 255 a host could not be reached.
pub fn main(args: &CpArgs) -> i32 {
    let cfg = match Config::load(args.conn.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rexec: {e}");
            return 2;
        }
    };
    let Some((dest, sources)) = args.paths.split_last() else {
        eprintln!("rexec cp: give SOURCE... DEST");
        return 2;
    };
    if let Err(e) = crate::cleanup::on_signals() {
        eprintln!("rexec cp: cannot handle signals: {e}");
    }
    // Down: one remote source, a local destination.
    let hosts_list = crate::cli::host_list(&args.hosts);
    if let ([src], None, None) = (sources, remote(dest), hosts_list.as_ref()) {
        return match remote(src) {
            Some((host, path)) => finish(download(args, &cfg, &host, &path, Path::new(dest))),
            None => {
                eprintln!(
                    "rexec cp: neither {:?} nor {:?} is HOST:PATH",
                    lossy(src),
                    lossy(dest)
                );
                2
            }
        };
    }
    // What is not supported, said plainly (never a lookup of a local name).
    if let Some(src) = sources.iter().find(|s| remote(s).is_some()) {
        eprintln!("{}", unsupported(src, dest, hosts_list.is_some()));
        return 2;
    }
    // Up: local sources to one host, or with -w to every host of a list.
    let (hosts, dest_path) = match (&hosts_list, remote(dest)) {
        (Some(list), None) => match cfg.expand(list, None) {
            Ok(h) => (h, dest.to_os_string()),
            Err(e) => {
                eprintln!("rexec: {e}");
                return 2;
            }
        },
        (None, Some((host, path))) => (vec![host], path),
        (Some(_), Some(_)) => {
            eprintln!("rexec cp: with -w, DEST is a path on every host, not HOST:PATH");
            return 2;
        }
        (None, None) => {
            eprintln!("rexec cp: DEST must be HOST:PATH (or use -w LIST)");
            return 2;
        }
    };
    let uploads = match plan(sources, &dest_path, args.recursive) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("rexec cp: {e}");
            return 1;
        }
    };
    let many = hosts.len() > 1;
    let (uploads, cfg) = (&uploads, &cfg);
    let statuses: Vec<i32> = std::thread::scope(|scope| {
        let workers: Vec<_> = hosts
            .iter()
            .map(|host| {
                scope.spawn(move || {
                    let prefix = if many {
                        format!("{host}: ")
                    } else {
                        String::new()
                    };
                    finish_on(&prefix, upload_all(args, cfg, host, uploads))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or(EXIT_CONNECTION))
            .collect()
    });
    statuses.into_iter().max().unwrap_or(0)
}

/// Why a copy with a remote source other than "one source down" is
/// refused.
fn unsupported(src: &OsStr, dest: &OsStr, many_hosts: bool) -> String {
    let dest_remote = remote(dest).is_some();
    let (src, dest) = (lossy(src), lossy(dest));
    match (many_hosts, dest_remote) {
        (true, _) => format!(
            "rexec cp: with -w, rexec cp sends local files to every host; it does not \
             fetch {src} from many hosts (run rexec cp HOST:PATH DIR for each host)"
        ),
        (false, true) => format!(
            "rexec cp: copying from one server to another ({src} to {dest}) is not \
             supported: copy it here first, then up (write ./{src} for a local file \
             whose name has a colon)"
        ),
        (false, false) => {
            format!("rexec cp: one remote source at a time: {src} (and a local DEST)")
        }
    }
}

fn finish(r: Result<(), CopyError>) -> i32 {
    finish_on("", r)
}

fn finish_on(prefix: &str, r: Result<(), CopyError>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(CopyError::Connect(e)) => {
            eprintln!("{prefix}rexec cp: {e}");
            crate::error::report_to_error_fd(&e);
            EXIT_CONNECTION
        }
        Err(CopyError::Failed(m)) => {
            eprintln!("{prefix}rexec cp: {m}");
            1
        }
    }
}

#[derive(Debug)]
enum CopyError {
    /// The host could not be reached, or the connection broke.
    Connect(ClientError),
    /// This copy failed (the reason says why); others may go on.
    Failed(String),
}

impl From<ClientError> for CopyError {
    fn from(e: ClientError) -> Self {
        CopyError::Connect(e)
    }
}

/// The files to send for these sources.
fn plan(sources: &[OsString], dest: &OsStr, recursive: bool) -> Result<Vec<Upload>, String> {
    let mut out = Vec::new();
    for src in sources {
        let path = Path::new(src);
        let shown = lossy(src);
        let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
        let name = path
            .file_name()
            .map(OsStr::to_os_string)
            .ok_or_else(|| format!("{shown}: no file name"))?;
        if meta.is_dir() {
            if !recursive {
                return Err(format!("{shown} is a directory (use -r)"));
            }
            // The directory itself first (even empty, with its mode): as
            // cp -r, DEST/NAME when DEST is a directory, else DEST itself
            // (the server says which; the rest follows it).
            out.push(Upload {
                local: path.to_path_buf(),
                dest: dest.to_os_string(),
                name: name.clone(),
                mkdirs: false,
                what: PutWhat::TreeTop,
            });
            walk(path, &join_dest(dest, &name), &mut out)?;
        } else {
            out.push(Upload {
                local: path.to_path_buf(),
                dest: dest.to_os_string(),
                name,
                mkdirs: false,
                what: PutWhat::File,
            });
        }
    }
    Ok(out)
}

fn walk(dir: &Path, dest: &OsStr, out: &mut Vec<Upload>) -> Result<(), String> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let ft = e
            .file_type()
            .map_err(|err| format!("{}: {err}", e.path().display()))?;
        let what = if ft.is_dir() {
            PutWhat::Dir
        } else if ft.is_symlink() {
            // Copied as a link, with its target as it is: never followed.
            let target = std::fs::read_link(e.path())
                .map_err(|err| format!("{}: {err}", e.path().display()))?;
            PutWhat::Symlink(target.into_os_string().into_vec())
        } else if ft.is_file() {
            PutWhat::File
        } else {
            continue; // FIFOs, sockets, devices: not copied (as scp)
        };
        let is_dir = what == PutWhat::Dir;
        out.push(Upload {
            local: e.path(),
            dest: dest.to_os_string(),
            name: name.clone(),
            mkdirs: true,
            what,
        });
        if is_dir {
            walk(&e.path(), &join_dest(dest, &name), out)?;
        }
    }
    Ok(())
}

fn connect(args: &CpArgs, cfg: &Config, host: &str) -> Result<Session, ClientError> {
    args.conn.connect(&cfg.target(host))
}

fn progress(label: &str, size: u64) -> indicatif::ProgressBar {
    if !io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(size);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(label.to_string());
    bar
}

/// Ends a progress bar as scp does: a last line that stays, with the name,
/// size, rate and time of the copy (nothing when stderr is no terminal).
fn progress_done(bar: &indicatif::ProgressBar, ok: bool) {
    if bar.is_hidden() {
        return;
    }
    if !ok {
        return bar.abandon();
    }
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} 100% {total_bytes} {bytes_per_sec} {elapsed_precise}",
    ) {
        bar.set_style(style);
    }
    bar.finish();
}

fn upload_all(
    args: &CpArgs,
    cfg: &Config,
    host: &str,
    uploads: &[Upload],
) -> Result<(), CopyError> {
    let mut session = connect(args, cfg, host)?;
    let mut failed = None;
    // Where each tree's top went on this host: (planned, made).
    let mut tops: Vec<(OsString, OsString)> = Vec::new();
    for u in uploads {
        if u.what == PutWhat::TreeTop {
            let planned = join_dest(&u.dest, &u.name);
            match tree_top(args, &mut session, u) {
                Ok(made) => tops.push((planned, made)),
                Err(CopyError::Failed(m)) => {
                    eprintln!("rexec cp: {m}");
                    failed = Some(m);
                }
                Err(e) => return Err(e),
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
        match upload(args, &mut session, u) {
            Ok(()) => {}
            Err(CopyError::Failed(m)) => {
                eprintln!("rexec cp: {m}");
                failed = Some(m);
            }
            Err(e) => return Err(e),
        }
    }
    match failed {
        Some(m) => Err(CopyError::Failed(format!(
            "not every file was copied (last: {m})"
        ))),
        None => Ok(()),
    }
}

fn upload(args: &CpArgs, session: &mut Session, u: &Upload) -> Result<(), CopyError> {
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
    let bar = progress(&lossy(&u.name), meta.len());
    let mut hash = Sha256::new();
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
        vec![0; 32]
    };
    session.send(&ClientMsg::PutEnd { id, sha256: digest })?;
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
fn upload_entry(
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
        mtime: None,
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
    check(status, &stderr, &format!("{shown} -> {}", lossy(&u.dest)))?;
    Ok(said)
}

/// The top directory of a tree; returns the path the server made for it.
fn tree_top(args: &CpArgs, session: &mut Session, u: &Upload) -> Result<OsString, CopyError> {
    let shown = u.local.display().to_string();
    upload_entry(args, session, u, &shown).map(OsString::from_vec)
}

/// Waits until the server is ready for the data of put `id` (its one
/// `PUT_READY` byte); a put it refuses ends here, with its reason.
fn ready(session: &mut Session, id: u32, what: &str) -> Result<(), CopyError> {
    let mut said_ready = false;
    let (status, stderr) = wait_until(session, id, |data| {
        said_ready = data == [rexec_proto::PUT_READY];
        if said_ready {
            Ok(true)
        } else {
            Err(CopyError::Failed(format!(
                "{what}: the server sent data before the file"
            )))
        }
    })?;
    if said_ready {
        return Ok(());
    }
    check(status, &stderr, what)?;
    Err(CopyError::Failed(format!(
        "{what}: the server ended the copy before it began"
    )))
}

/// Waits for the end of transfer `id`, handing its stdout to `out`;
/// returns its status and what it said on stderr.
fn wait(
    session: &mut Session,
    id: u32,
    mut out: impl FnMut(&[u8]) -> Result<(), CopyError>,
) -> Result<(Option<ExitStatus>, String), CopyError> {
    wait_until(session, id, |data| out(data).map(|()| false))
}

/// Like [`wait`], but `out` may end the wait early by returning `true`
/// (the status is then `None` and nothing is said yet).
fn wait_until(
    session: &mut Session,
    id: u32,
    mut out: impl FnMut(&[u8]) -> Result<bool, CopyError>,
) -> Result<(Option<ExitStatus>, String), CopyError> {
    let mut stderr = Vec::new();
    loop {
        match session.next_event()? {
            ServerEvent::Output {
                stream,
                id: i,
                data,
            } if i == id => match stream {
                OutputStream::Stdout => {
                    if out(data)? {
                        return Ok((None, String::new()));
                    }
                }
                OutputStream::Stderr if stderr.len() < 4096 => stderr.extend_from_slice(data),
                OutputStream::Stderr => {}
            },
            ServerEvent::Msg(ServerMsg::Exited(x)) if x.id == id => {
                let status = if x.truncated { None } else { Some(x.status) };
                return Ok((status, String::from_utf8_lossy(&stderr).trim().to_string()));
            }
            ServerEvent::Msg(ServerMsg::Error(e)) if e.id == Some(id) => {
                return Err(CopyError::Failed(format!("{}: {}", e.kind, e.message)));
            }
            ServerEvent::Msg(ServerMsg::Error(e)) if e.id.is_none() => {
                return Err(CopyError::Connect(ClientError::Server(e)));
            }
            _ => {}
        }
    }
}

fn check(status: Option<ExitStatus>, stderr: &str, what: &str) -> Result<(), CopyError> {
    match status {
        Some(ExitStatus::Code(0)) => Ok(()),
        None => Err(CopyError::Failed(format!(
            "{what}: cut at the server's output limit"
        ))),
        Some(_) if !stderr.is_empty() => Err(CopyError::Failed(format!(
            "{what}: {}",
            rexec_proto::text::clean(stderr.trim_start_matches("rexecd: "), 1000)
        ))),
        Some(s) => Err(CopyError::Failed(format!("{what}: failed ({s:?})"))),
    }
}

/// Fetches `path` from `host` into `local` (a file, or a directory to put
/// it in): into a temporary file beside the target, renamed over it once
/// the checksum matches.
fn download(
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
fn download_tree(
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
struct Entry {
    kind: u8,
    /// Bytes: any Linux name.
    path: Vec<u8>,
    target: Vec<u8>,
}

/// Lists the tree below `path` on the server (confined there like a get).
fn list(session: &mut Session, host: &str, path: &OsStr) -> Result<Vec<Entry>, CopyError> {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    session.send(&ClientMsg::List {
        id,
        path: path.as_bytes().to_vec(),
    })?;
    let path = lossy(path);
    let limit = crate::run::CAPTURE_LIMIT;
    let mut bytes = Vec::new();
    let (status, stderr) = wait(session, id, |data| {
        if bytes.len() + data.len() > limit {
            return Err(CopyError::Failed(format!(
                "{host}:{path}: the listing is longer than {} MiB",
                limit >> 20
            )));
        }
        bytes.extend_from_slice(data);
        Ok(())
    })?;
    check(status, &stderr, &format!("{host}:{path}"))?;
    parse_listing(&bytes).ok_or_else(|| {
        CopyError::Failed(format!("{host}:{path}: the server sent a broken listing"))
    })
}

/// `KIND PATH NUL [TARGET NUL]`, one entry after another.
fn parse_listing(mut bytes: &[u8]) -> Option<Vec<Entry>> {
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
fn make_symlink(
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
fn beneath<'a>(top: &Path, path: &'a Path) -> Option<Vec<&'a std::ffi::OsStr>> {
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

fn open_dir(path: &Path) -> Result<OwnedFd, CopyError> {
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
fn make_dirs_beneath(
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
fn download_with(
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
fn fetch_into(
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
    let mut state = GetState::default();
    let label = shown
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    let mut bar: Option<indicatif::ProgressBar> = None;
    let res = wait(session, id, |data| {
        state.feed(data, &mut file).map_err(|e| failed(&e))?;
        if state.header.len() == GET_HEADER_LEN {
            // The size is known once the header is in.
            bar.get_or_insert_with(|| progress(&label, state.size))
                .set_position(state.written);
        }
        Ok(())
    })
    .and_then(|(status, stderr)| check(status, &stderr, &format!("{host}:{path}")))
    .and_then(|()| state.verify())
    .and_then(|()| {
        let file = file.file();
        file.sync_all().map_err(|e| failed(&e))?;
        use std::os::unix::fs::PermissionsExt;
        // Never a setuid, setgid or sticky bit from the wire; without -p the
        // umask applies, as with cp and scp.
        let mode = match args.preserve {
            true => state.mode & 0o777,
            false => state.mode & 0o777 & !umask(),
        };
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| failed(&e))?;
        if args.preserve
            && let Ok(secs) = u64::try_from(state.mtime)
        {
            let _ = file.set_modified(UNIX_EPOCH + std::time::Duration::from_secs(secs));
        }
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
fn umask() -> u32 {
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
struct GetState {
    header: Vec<u8>,
    size: u64,
    mode: u32,
    mtime: i64,
    written: u64,
    hash: Sha256,
    trailer: Vec<u8>,
}

impl GetState {
    fn feed(&mut self, mut data: &[u8], file: &mut impl Write) -> io::Result<()> {
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

    fn verify(&self) -> Result<(), CopyError> {
        if self.written != self.size || self.trailer.len() != 32 {
            return Err(CopyError::Failed("the copy ended early".into()));
        }
        if self.hash.clone().finalize().as_slice() != self.trailer.as_slice() {
            return Err(CopyError::Failed(
                "checksum mismatch: the data was damaged on the way, or the file changed while it was sent".into(),
            ));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn r(spec: &str) -> Option<(String, String)> {
        remote(OsStr::new(spec)).map(|(h, p)| (h, p.to_string_lossy().into_owned()))
    }

    #[test]
    fn remote_specs_name_host_port_and_path() {
        assert_eq!(r("lab1:/tmp/x"), Some(("lab1".into(), "/tmp/x".into())));
        assert_eq!(
            r("lab1:7071:/tmp/x"),
            Some(("lab1:7071".into(), "/tmp/x".into()))
        );
        assert_eq!(r("lab1:data"), Some(("lab1".into(), "data".into())));
        assert_eq!(r("./a:b"), None);
        assert_eq!(r("/tmp/x"), None);
        assert_eq!(r("plain"), None);
        assert_eq!(
            r("[::1]:7071:/tmp/x"),
            Some(("[::1]:7071".into(), "/tmp/x".into()))
        );
        assert_eq!(r("[::1]:/tmp/x"), Some(("[::1]".into(), "/tmp/x".into())));
        assert_eq!(r("[::1]"), None, "no path: a local name");
    }

    #[test]
    fn listed_names_must_be_plain_paths_below_the_top() {
        let top = Path::new("/srv/data");
        let ok = beneath(top, Path::new("/srv/data/a/b.txt")).unwrap();
        assert_eq!(ok, ["a", "b.txt"]);
        for bad in [
            "/srv/data/../../../../tmp/x/PWNED",
            "/srv/data/a/../../../etc/passwd",
            "/srv/other/file",
            "/srv/data",
            "/srv/database/x",
            "relative/data/x",
        ] {
            assert!(beneath(top, Path::new(bad)).is_none(), "{bad}");
        }
    }
}
