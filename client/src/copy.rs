//! `rexec cp`: files both ways, with scp's syntax. Streamed in frames with
//! the same backpressure as output, never a whole file in memory (but a
//! small one, at most 4 MiB, on its way in a batch); checked end to end
//! (BLAKE3, or SHA-256 with an older rexecd); renamed into place only when
//! complete and verified, on the server (files.rs there) as here.
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

use rexec_proto::{Checksum, DIGEST_LEN, Hasher};
use rexec_proto::{
    ClientMsg, ExitStatus, GET_HEADER_LEN, OutputStream, Put, PutWhat, ServerEvent, ServerMsg,
};
use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::cli::CpArgs;
use crate::error::ClientError;
use crate::hosts::Config;
use crate::run::EXIT_CONNECTION;
use crate::session::Session;

mod download;
mod fetch_many;
mod library;
mod pipeline;
mod progress;
use progress::{progress, progress_done};
mod scan;
mod sync;
mod sync_down;
mod upload;

pub use download::decode_untrusted;
use download::*;
pub(crate) use library::{fetch, send};
pub(crate) use sync::main as sync_main;
use upload::*;

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
    let cfg = match load_config(&args.conn) {
        Ok(c) => c,
        Err(code) => return code,
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
    // Several sources go into a directory, which must exist (as with cp
    // and scp): `DEST/` says so to the server, which refuses anything else
    // before a byte is written.
    let several = sources.len() > 1;
    let dest_path = match several && !dest_path.as_bytes().ends_with(b"/") {
        true => OsString::from_vec([dest_path.as_bytes(), b"/"].concat()),
        false => dest_path,
    };
    let uploads = match plan(sources, &dest_path, args.recursive) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("rexec cp: {e}");
            return 1;
        }
    };
    let many = hosts_list.is_some();
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
                    let copied = upload_all(args, cfg, host, uploads, several, &prefix);
                    finish_on(&prefix, copied)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or(EXIT_CONNECTION))
            .collect()
    });
    if many {
        eprintln!("{}", summary("rexec cp", &hosts, &statuses));
    }
    statuses.into_iter().max().unwrap_or(0)
}

/// The config file for `conn`, with its `-J`; the exit status (2) when
/// it cannot be read, which it says.
fn load_config(conn: &crate::cli::ConnArgs) -> Result<Config, i32> {
    let mut cfg = Config::load(conn.config.as_deref()).map_err(|e| {
        eprintln!("rexec: {e}");
        2
    })?;
    cfg.jump = conn.jump.clone();
    Ok(cfg)
}

/// The line after a copy to many hosts, as after `rexec -w`: how many
/// copied, and which failed or could not be reached (folded lists).
fn summary(what: &str, hosts: &[String], statuses: &[i32]) -> String {
    let with = |want: fn(i32) -> bool| -> Vec<String> {
        hosts
            .iter()
            .zip(statuses)
            .filter(|(_, s)| want(**s))
            .map(|(h, _)| h.clone())
            .collect()
    };
    let ok = with(|s| s == 0).len();
    let mut line = format!("{what}: {ok} ok");
    for (how, hosts) in [
        ("failed", with(|s| s != 0 && s != EXIT_CONNECTION)),
        ("unreachable", with(|s| s == EXIT_CONNECTION)),
    ] {
        if !hosts.is_empty() {
            line.push_str(&format!(
                ", {} {how} ({})",
                hosts.len(),
                crate::hosts::fold(&hosts)
            ));
        }
    }
    line
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
        Err(CopyError::Failed(m) | CopyError::Refused(m)) => {
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
    /// The server refused the destination before any data went.
    Refused(String),
}

impl CopyError {
    /// A failure of the server's answer to a `Put`, before any data: the
    /// destination was refused.
    fn refused(self) -> CopyError {
        match self {
            CopyError::Failed(m) => CopyError::Refused(m),
            other => other,
        }
    }
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

/// The hash that checks copies with this server: BLAKE3 from protocol 9,
/// SHA-256 before (an older rexecd still copies).
fn checksum(session: &Session) -> Checksum {
    Checksum::between(rexec_proto::PROTOCOL_VERSION, session.server.protocol)
}

fn connect(args: &CpArgs, cfg: &Config, host: &str) -> Result<Session, ClientError> {
    args.conn.connect(&cfg.target(host))
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
    check(status, &stderr, what).map_err(CopyError::refused)?;
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
