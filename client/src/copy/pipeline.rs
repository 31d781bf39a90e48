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

/// Files in one batch at most: a batch that fails says why for each file
/// on stderr, which must fit in what the connection holds while the rest
/// is sent.
const BATCH_FILES: usize = 1000;

/// One entry of a batch put, named below its top.
#[derive(Debug, Clone, Copy)]
pub(super) enum Item<'a> {
    /// A directory, made when missing (its parent exists by then), and
    /// given this mode and, when there is one, this time.
    Dir {
        rel: &'a [u8],
        mode: u32,
        mtime: Option<i64>,
    },
    /// A small file (at most [`SMALL`]): where it is here.
    File { path: &'a Path, rel: &'a [u8] },
}

/// Sends `items` (directories, and small files whose directories exist
/// there or come before them) below `top` as batch puts, one helper on the
/// server for up to [`BATCH_FILES`] of them (protocol 10); with
/// `preserve`, as `cp -p` (modes and times exactly).
pub(super) fn upload_batches(
    session: &mut Session,
    top: &OsStr,
    files: &[Item<'_>],
    preserve: bool,
    progress: &super::progress::Progress,
) -> Result<(), CopyError> {
    let mut failed = None;
    for batch in files.chunks(BATCH_FILES) {
        if let Err(e) = upload_batch(session, (top, preserve), batch, progress) {
            if matches!(e, CopyError::Connect(_)) {
                return Err(e);
            }
            let m = super::library::library_error(e);
            progress.say(&format!("rexec: {m}"));
            failed = Some(m);
        }
    }
    match failed {
        Some(m) => Err(CopyError::Failed(format!(
            "not every file was sent (last: {m})"
        ))),
        None => Ok(()),
    }
}

/// One batch put: each file announced, its bytes, their digest, all as
/// frames of `BatchItem` in the put's data.
fn upload_batch(
    session: &mut Session,
    (top, preserve): (&OsStr, bool),
    files: &[Item<'_>],
    progress: &super::progress::Progress,
) -> Result<(), CopyError> {
    use rexec_proto::{BATCH_FRAME_MAX, BatchItem};
    use std::os::unix::fs::MetadataExt;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    session.send(&ClientMsg::Put(Put {
        id,
        dest: top.as_bytes().to_vec(),
        preserve,
        what: PutWhat::Batch,
        ..Put::default()
    }))?;
    let shown = format!("{} entries into {}", files.len(), lossy(top));
    ready(session, id, &shown)?;
    let mut frames = Vec::with_capacity(2 * BATCH_FRAME_MAX);
    let mut unread = 0;
    for item in files {
        let (local, name) = match *item {
            Item::File { path, rel } => (path, rel),
            Item::Dir { rel, mode, mtime } => {
                let dir = BatchItem::Dir {
                    name: rel.to_vec(),
                    mode: Some(mode),
                    mtime,
                };
                rexec_proto::encode_frame(&dir, &mut frames);
                continue;
            }
        };
        let read = File::open(local).and_then(|mut f| {
            let meta = f.metadata()?;
            // Room for all of it: one read, and one that finds the end.
            let mut data = Vec::with_capacity(usize::try_from(meta.len().min(SMALL)).unwrap_or(0));
            (&mut f).take(SMALL + 1).read_to_end(&mut data)?;
            Ok((meta, data))
        });
        let (meta, data) = match read {
            Ok(r) if r.1.len() as u64 <= SMALL => r,
            Ok(_) => {
                progress.say(&format!(
                    "rexec: {}: grew while being read",
                    local.display()
                ));
                unread += 1;
                continue;
            }
            Err(e) => {
                progress.say(&format!("rexec: {}: {e}", local.display()));
                unread += 1;
                continue;
            }
        };
        rexec_proto::encode_frame(
            &BatchItem::File {
                name: name.to_vec(),
                size: data.len() as u64,
                mode: Some(meta.mode() & 0o777),
                mtime: preserve.then(|| meta.mtime()),
            },
            &mut frames,
        );
        let mut hash = checksum(session).hasher();
        // (A frame's few bytes of its own, then the data.)
        for chunk in data.chunks(BATCH_FRAME_MAX - 64) {
            hash.update(chunk);
            BatchItem::encode_data(chunk, &mut frames);
        }
        let digest = hash.finalize().to_vec();
        rexec_proto::encode_frame(&BatchItem::End { digest }, &mut frames);
        if frames.len() >= BATCH_FRAME_MAX {
            send_frames(session, id, &mut frames)?;
        }
        progress.sent(data.len() as u64);
    }
    send_frames(session, id, &mut frames)?;
    session.send(&ClientMsg::PutEnd {
        id,
        digest: Vec::new(),
    })?;
    let (status, stderr) = wait(session, id, |_| Ok(()))?;
    check(status, &stderr, &shown)?;
    match unread {
        0 => Ok(()),
        n => Err(CopyError::Failed(format!(
            "{shown}: {n} could not be read here"
        ))),
    }
}

/// Sends the batch's frames gathered so far as the put's data.
fn send_frames(session: &mut Session, id: u32, frames: &mut Vec<u8>) -> Result<(), CopyError> {
    for chunk in frames.chunks(CHUNK) {
        session.send_stdin(id, chunk)?;
    }
    frames.clear();
    Ok(())
}
