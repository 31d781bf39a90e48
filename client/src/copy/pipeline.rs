//! Many small files up at once. One file's `Put` waits a round trip for
//! the server's `PUT_READY` and another for its `Exited`, and the server
//! starts a transfer helper for each: one after another, 3,000 files of
//! 4 KiB took 15 s. Here up to [`WINDOW`] puts are in flight on the one
//! connection, each as `rexec cp -p` makes it (the same checks, its own
//! temporary file renamed into place), so the round trips and the
//! helpers' starts overlap.

use std::collections::HashMap;

use super::*;

/// Puts in flight at once.
const WINDOW: usize = 16;

/// Files up to this size go through the pipeline (read whole into memory,
/// at most `WINDOW` of them at a time); larger ones stream on their own.
pub(super) const SMALL: u64 = 4 << 20;

/// A put on its way.
struct Flying<'a> {
    upload: &'a Upload,
    data: Vec<u8>,
    ready: bool,
    stderr: Vec<u8>,
}

/// Sends every file of `uploads` (each at most [`SMALL`] bytes, whose
/// directories exist), keeping `WINDOW` in flight. A file that fails is
/// said and the rest go on; the last failure is returned.
pub(super) fn upload_small(
    session: &mut Session,
    uploads: &[&Upload],
    preserve: bool,
    progress: &super::progress::Progress,
) -> Result<(), CopyError> {
    let mut flying: HashMap<u32, Flying<'_>> = HashMap::new();
    let mut next = 0;
    let mut failed = None;
    loop {
        while flying.len() < WINDOW && next < uploads.len() {
            let u = uploads[next];
            next += 1;
            match start(session, u, preserve)? {
                Ok((id, f)) => drop(flying.insert(id, f)),
                Err(m) => failed = Some(m),
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
                    OutputStream::Stdout if !f.ready && data == [rexec_proto::PUT_READY] => {
                        f.ready = true;
                        send_data(session, id, &f.data)?;
                    }
                    OutputStream::Stdout => {
                        return Err(CopyError::Failed(format!(
                            "{}: the server sent data before the file",
                            f.upload.local.display()
                        )));
                    }
                    OutputStream::Stderr if f.stderr.len() < 4096 => {
                        f.stderr.extend_from_slice(data)
                    }
                    OutputStream::Stderr => {}
                }
            }
            ServerEvent::Msg(ServerMsg::Exited(x)) => {
                let Some(f) = flying.remove(&x.id) else {
                    continue;
                };
                let status = if x.truncated { None } else { Some(x.status) };
                let stderr = String::from_utf8_lossy(&f.stderr).trim().to_string();
                let what = format!(
                    "{} -> {}",
                    f.upload.local.display(),
                    lossy(&join_dest(&f.upload.dest, &f.upload.name))
                );
                if let Err(e) = check(status, &stderr, &what) {
                    let m = super::library::library_error(e);
                    progress.say(&format!("rexec: {m}"));
                    failed = Some(m);
                }
                progress.sent(f.data.len() as u64);
            }
            ServerEvent::Msg(ServerMsg::Error(e)) => match e.id {
                Some(id) if flying.remove(&id).is_some() => {
                    let m = format!("{}: {}", e.kind, e.message);
                    progress.say(&format!("rexec: {m}"));
                    failed = Some(m);
                }
                Some(_) => {}
                None => return Err(CopyError::Connect(ClientError::Server(e))),
            },
            ServerEvent::Msg(_) => {}
        }
    }
    match failed {
        Some(m) => Err(CopyError::Failed(format!(
            "not every file was sent (last: {m})"
        ))),
        None => Ok(()),
    }
}

/// A put sent (its id and state), or why a file could not be.
type Started<'a> = Result<(u32, Flying<'a>), String>;

/// Reads `u` and sends its `Put`; the reason instead when the file cannot
/// be read (the others go on).
fn start<'a>(
    session: &mut Session,
    u: &'a Upload,
    preserve: bool,
) -> Result<Started<'a>, CopyError> {
    use std::os::unix::fs::MetadataExt;
    let shown = u.local.display();
    let read = File::open(&u.local).and_then(|mut f| {
        let meta = f.metadata()?;
        let mut data = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        (&mut f).take(SMALL + 1).read_to_end(&mut data)?;
        Ok((meta, data))
    });
    let (meta, data) = match read {
        Ok(r) if r.1.len() as u64 <= SMALL => r,
        Ok(_) => return Ok(Err(format!("{shown}: grew while being read"))),
        Err(e) => return Ok(Err(format!("{shown}: {e}"))),
    };
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    session.send(&ClientMsg::Put(Put {
        id,
        dest: u.dest.as_bytes().to_vec(),
        name: u.name.as_bytes().to_vec(),
        size: data.len() as u64,
        mkdirs: u.mkdirs,
        mode: Some(meta.mode() & 0o777),
        mtime: preserve.then(|| meta.mtime()),
        preserve,
        what: PutWhat::File,
    }))?;
    Ok(Ok((
        id,
        Flying {
            upload: u,
            data,
            ready: false,
            stderr: Vec::new(),
        },
    )))
}

/// A ready put's bytes and its digest.
fn send_data(session: &mut Session, id: u32, data: &[u8]) -> Result<(), CopyError> {
    let mut hash = checksum(session).hasher();
    for chunk in data.chunks(CHUNK) {
        hash.update(chunk);
        session.send_stdin(id, chunk)?;
    }
    let digest = hash.finalize().to_vec();
    session.send(&ClientMsg::PutEnd { id, digest })?;
    Ok(())
}
