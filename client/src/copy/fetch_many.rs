//! Many small files down at once (`rexec sync HOST:SRC LOCAL`). One get
//! at a time waited a round trip and a helper start on the server for
//! each file: a first sync of 3,000 small files took 13 s. Here up to
//! [`WINDOW`] gets are in flight on the one connection, each decoded as a
//! single get is ([`GetState`]: header, bytes, digest) into a temporary
//! file beside its target, so the round trips and the helpers' starts
//! overlap. Complete, checked files are made durable a group at a time
//! (one `syncfs` for up to [`GROUP`]) and only then renamed into place.

use std::collections::HashMap;

use super::download::GetState;
use super::progress::Progress;
use super::*;

/// Gets in flight at once.
const WINDOW: usize = 16;

/// Checked files made durable with one `syncfs`, then renamed.
const GROUP: usize = 64;

/// A file to fetch: its path on the server, and where it goes here.
pub(super) struct Small {
    pub remote: OsString,
    /// Its directory here, open (found beneath the top without following
    /// a link).
    pub dir: OwnedFd,
    pub name: OsString,
    /// Its path here, for messages.
    pub shown: PathBuf,
}

/// A get on its way, or done and waiting for its group's sync.
struct Flying {
    small: Small,
    tmp: OsString,
    file: File,
    state: GetState,
    stderr: Vec<u8>,
    /// What went wrong while its bytes came (said at its end).
    broken: Option<String>,
    /// Removes the temporary file on an interrupt.
    _pending: crate::cleanup::Pending,
}

/// Fetches every file of `items` (each at most a few MiB, as the scan
/// said), `WINDOW` at a time, as `rexec cp -p` would; a file that fails is
/// said and the rest go on; the last failure is returned.
pub(super) fn fetch_small(
    session: &mut Session,
    host: &str,
    items: Vec<Small>,
    progress: &Progress,
) -> Result<(), CopyError> {
    let mut queue = items.into_iter();
    let mut flying: HashMap<u32, Flying> = HashMap::new();
    let mut done: Vec<Flying> = Vec::new();
    let mut failed = None;
    let mut fail = |m: String| {
        progress.say(&format!("rexec: {m}"));
        failed = Some(m);
    };
    loop {
        while flying.len() < WINDOW {
            let Some(small) = queue.next() else { break };
            match start(session, small) {
                Ok((id, f)) => drop(flying.insert(id, f)),
                Err(CopyError::Failed(m)) => fail(m),
                Err(e) => return Err(e),
            }
        }
        if flying.is_empty() {
            break;
        }
        match session.next_event()? {
            ServerEvent::Output { stream, id, data } => {
                let Some(f) = flying.get_mut(&id) else {
                    continue;
                };
                match stream {
                    OutputStream::Stdout if f.broken.is_none() => {
                        if let Err(e) = f.state.feed(data, &mut f.file) {
                            f.broken = Some(e.to_string());
                        }
                    }
                    OutputStream::Stderr if f.stderr.len() < 4096 => {
                        f.stderr.extend_from_slice(data)
                    }
                    _ => {}
                }
            }
            ServerEvent::Msg(ServerMsg::Exited(x)) => {
                let Some(f) = flying.remove(&x.id) else {
                    continue;
                };
                let status = if x.truncated { None } else { Some(x.status) };
                match finish(host, &f, status) {
                    Ok(()) => {
                        progress.sent(f.state.size);
                        done.push(f);
                    }
                    Err(e) => {
                        drop_temp(&f);
                        fail(super::library::library_error(e));
                    }
                }
                if done.len() >= GROUP
                    && let Err(m) = name_all(&mut done)
                {
                    fail(m);
                }
            }
            ServerEvent::Msg(ServerMsg::Error(e)) => match e.id {
                Some(id) => {
                    if let Some(f) = flying.remove(&id) {
                        drop_temp(&f);
                        fail(format!(
                            "{}: {}: {}",
                            f.small.shown.display(),
                            e.kind,
                            e.message
                        ));
                    }
                }
                None => return Err(CopyError::Connect(ClientError::Server(e))),
            },
            ServerEvent::Msg(_) => {}
        }
    }
    if let Err(m) = name_all(&mut done) {
        fail(m);
    }
    match failed {
        Some(m) => Err(CopyError::Failed(format!(
            "not every file was fetched (last: {m})"
        ))),
        None => Ok(()),
    }
}

/// Opens the temporary file beside the target and sends the `Get`.
fn start(session: &mut Session, small: Small) -> Result<(u32, Flying), CopyError> {
    let mut tmp = OsString::from(".");
    tmp.push(&small.name);
    tmp.push(format!(".rexec-{}", std::process::id()));
    let fd = rustix::fs::openat(
        &small.dir,
        &tmp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| CopyError::Failed(format!("{}: {e}", small.shown.display())))?;
    let pending = crate::cleanup::register(&small.dir, &tmp);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let sent = session.send(&ClientMsg::Get {
        id,
        path: small.remote.as_bytes().to_vec(),
    });
    let f = Flying {
        small,
        tmp,
        file: File::from(fd),
        state: GetState::new(checksum(session).hasher()),
        stderr: Vec::new(),
        broken: None,
        _pending: pending,
    };
    if let Err(e) = sent {
        drop_temp(&f);
        return Err(e.into());
    }
    Ok((id, f))
}

/// A get's end: it ended well, its digest matches, and its file has the
/// source's mode (never a special bit) and time.
fn finish(host: &str, f: &Flying, status: Option<ExitStatus>) -> Result<(), CopyError> {
    let stderr = String::from_utf8_lossy(&f.stderr).trim().to_string();
    check(
        status,
        &stderr,
        &format!("{host}:{}", lossy(&f.small.remote)),
    )?;
    if let Some(why) = &f.broken {
        return Err(CopyError::Failed(format!(
            "{}: {why}",
            f.small.shown.display()
        )));
    }
    f.state.verify()?;
    // As `rexec cp -p` (sync keeps modes and times).
    f.state
        .give_metadata(&f.file, true)
        .map_err(|e| CopyError::Failed(format!("{}: {e}", f.small.shown.display())))
}

/// Makes the checked files durable (one `syncfs`) and renames each over
/// its target; the last failure, if any.
fn name_all(done: &mut Vec<Flying>) -> Result<(), String> {
    let Some(first) = done.first() else {
        return Ok(());
    };
    if let Err(e) = rustix::fs::syncfs(&first.file) {
        let m = format!("{}: syncing: {e}", first.small.shown.display());
        done.drain(..).for_each(|f| drop_temp(&f));
        return Err(m);
    }
    let mut failed = Ok(());
    for f in done.drain(..) {
        let s = &f.small;
        if let Err(e) = rustix::fs::renameat(&s.dir, &f.tmp, &s.dir, &s.name) {
            drop_temp(&f);
            failed = Err(format!("{}: {e}", s.shown.display()));
        }
    }
    failed
}

/// Removes a get's temporary file.
fn drop_temp(f: &Flying) {
    let _ = rustix::fs::unlinkat(&f.small.dir, &f.tmp, rustix::fs::AtFlags::empty());
}
