//! File transfers: `rexecd __files`, run as a command.
//!
//! rexecd never touches a file itself: a transfer is a child process of the
//! rexecd executable, started like any command (the same exec policy, user,
//! limits, audit line, backpressure through its pipes), so disk I/O never
//! blocks the event loop and a cancel is a kill. What it is to do comes on
//! its stdin, typed (files_request.rs): first the request and the files
//! root, then for a put the data and, apart from it, the checksum.
//!
//! - A put makes what the client's `Put` says: with `PutWhat::Dir` the
//!   directory NAME, with `Symlink` the symlink NAME, with `TreeTop` the top
//!   of a tree (files_tree.rs); with `File` it checks the destination, says
//!   so with one byte on stdout ([`rexec_proto::PUT_READY`]), then takes
//!   exactly SIZE bytes of data and the client's digest (BLAKE3, or SHA-256 for a
//!   client older than protocol 9). The data goes
//!   into an unnamed file (`O_TMPFILE`) in the target's directory; only when
//!   the hashes match is it linked there under a temporary name and renamed
//!   over the target. A killed or failed put leaves the old file and no
//!   temporary behind. DEST may be a directory (then NAME inside it). With
//!   `Batch` many files and directories come from one put (files_batch.rs).
//! - A get writes a 20-byte header (size u64, mode u32, mtime i64,
//!   big-endian), the file, then its digest (files_get.rs).
//! - A list writes the tree below the directory PATH, one entry after
//!   another: `f`, `d` or `l`, the path relative to PATH, NUL (and for a
//!   symlink its target, NUL). Nothing is followed: a symlink is listed,
//!   never entered, and other kinds (FIFOs, devices) are left out.
//!
//! Without a files root, paths are taken as they are (relative to the home
//! directory the command starts in). With one, every path is resolved
//! beneath it by the kernel (`openat2` with `RESOLVE_BENEATH`): no `..` and
//! no symlink leads out, checked on the file actually opened.

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use rexec_proto::Hasher;
use rexec_proto::{Put, PutWhat};
use rustix::fs::{CWD, Mode, OFlags};

use crate::helpers::files_path::{Root, TransferError, at, plain_name, shown_dir, temp_name};
use crate::helpers::files_request::{HelperInput, HelperMsg, Incoming, Request};

/// The first argument that makes `rexecd` a transfer helper.
pub const FILES: &str = "__files";

/// Runs the helper; the exit code: 0 done, 1 failed (the reason on stderr).
pub fn helper() -> i32 {
    let mut input = HelperInput::new();
    let res = input.request().and_then(|open| {
        let root = Root::new(open.root.as_deref())?;
        let hash = open.checksum.hasher();
        match open.request {
            Request::Put(p) if p.what == PutWhat::Batch => {
                crate::helpers::files_batch::put_batch(&root, &p, &mut input, open.checksum)
            }
            Request::Put(p) => put(&root, &p, &mut input, hash),
            Request::Get(path) => {
                crate::helpers::files_get::get(&root, OsStr::from_bytes(&path), hash)
            }
            Request::List(path) => {
                crate::helpers::files_tree::list(&root, OsStr::from_bytes(&path))
            }
            Request::Scan(path, digests) => crate::helpers::files_scan::scan(
                &root,
                OsStr::from_bytes(&path),
                digests.then_some(open.checksum),
            ),
            Request::Remove(path) => {
                crate::helpers::files_scan::remove(&root, OsStr::from_bytes(&path))
            }
        }
    });
    match res {
        Ok(()) => 0,
        Err(e) => {
            // One write: the client gets the line in one frame, whole.
            let _ = io::stderr().write_all(format!("rexecd: {e}\n").as_bytes());
            1
        }
    }
}

fn put(root: &Root, put: &Put, input: &mut HelperInput, hash: Hasher) -> Result<(), TransferError> {
    let (dest, name) = (OsStr::from_bytes(&put.dest), OsStr::from_bytes(&put.name));
    // DEST is a directory (then NAME goes inside), or a file to write; with
    // MKDIRS it is a directory, made if missing.
    if put.what == PutWhat::TreeTop {
        return crate::helpers::files_tree::put_tree_top(root, dest, name, put.mode, put.preserve);
    }
    if put.mkdirs {
        make_dirs(root, dest)?;
    }
    let (dir, dir_path, file_name) = put_target(root, dest, name)?;
    match &put.what {
        PutWhat::Dir => {
            return crate::helpers::files_tree::put_dir(
                &dir,
                &file_name,
                put.mode,
                put.preserve.then_some(put.mtime).flatten(),
                put.preserve,
            );
        }
        PutWhat::Symlink(target) => {
            return crate::helpers::files_tree::put_symlink(
                &dir,
                &file_name,
                OsStr::from_bytes(target),
            );
        }
        PutWhat::File | PutWhat::TreeTop => {}
        // (Taken by files_batch.rs before it gets here.)
        PutWhat::Batch => return Err(TransferError::Request("a batch out of place".into())),
    }
    // An unnamed file in the target's directory: nothing to clean up if we
    // are killed before it is complete.
    let tmp = rustix::fs::openat(
        &dir,
        ".",
        OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(at(&dir_path))?;
    // The destination is good: only now does the client send the data, so a
    // put the server refuses costs a round trip, not the whole file.
    say_ready()?;
    // The disk writes while the data arrives, not all at the closing fsync.
    let mut out = rexec_writeback::WriteBehind::new(std::fs::File::from(tmp));
    receive(input, &mut out, put.size, &file_name, hash)?;
    let file = out.file();
    set_metadata(file, &dir, &file_name, put.mode, put.mtime, put.preserve)?;
    file.sync_all().map_err(at(&file_name))?;
    commit(file, &dir, &file_name)
}

/// Tells the client the destination is good: its data may come
/// ([`rexec_proto::PUT_READY`] on stdout).
pub(crate) fn say_ready() -> Result<(), TransferError> {
    io::stdout()
        .write_all(&[rexec_proto::PUT_READY])
        .and_then(|()| io::stdout().flush())
        .map_err(|source| TransferError::Io {
            what: "telling the client to go on".into(),
            source,
        })
}

/// Where a put goes: the directory it is written in (open) and the name
/// in it. DEST is a directory (then NAME goes inside it) or the file to
/// write.
fn put_target(
    root: &Root,
    dest: &OsStr,
    name: &OsStr,
) -> Result<(OwnedFd, OsString, OsString), TransferError> {
    let as_dir = root.dir(dest);
    let (dir_path, file_name): (OsString, OsString) = match as_dir {
        Ok(_) => (dest.to_os_string(), name.to_os_string()),
        // `dir/` must be a directory; and a path that exists but cannot be
        // opened (outside the root, no permission) is not a new file name.
        Err(e)
            if dest.as_bytes().ends_with(b"/")
                || !matches!(
                    e.raw_os_error(),
                    Some(c) if c == rustix::io::Errno::NOTDIR.raw_os_error()
                        || c == rustix::io::Errno::NOENT.raw_os_error()
                ) =>
        {
            return Err(at(dest)(e));
        }
        Err(_) => {
            let p = Path::new(dest);
            let file = p
                .file_name()
                .ok_or_else(|| TransferError::NotAName(dest.to_os_string()))?;
            let parent = p
                .parent()
                .map_or(OsString::new(), |x| x.as_os_str().to_os_string());
            (parent, file.to_os_string())
        }
    };
    if !plain_name(&file_name) {
        return Err(TransferError::NotAName(file_name));
    }
    let dir = root.dir(&dir_path).map_err(at(shown_dir(&dir_path)))?;
    Ok((dir, dir_path, file_name))
}

/// Takes exactly `size` bytes of data into `file`, then the client's
/// digest, and checks that it matches `hash`'s.
fn receive(
    input: &mut HelperInput,
    file: &mut impl Write,
    size: u64,
    file_name: &OsStr,
    mut hash: Hasher,
) -> Result<(), TransferError> {
    let mut got: u64 = 0;
    let expected = loop {
        let data = match input.next()? {
            Some(Incoming::Data(data)) => data,
            Some(Incoming::Msg(HelperMsg::Data(_))) => {
                // (`next` hands data out borrowed; never built.)
                return Err(TransferError::Request("data out of place".into()));
            }
            Some(Incoming::Msg(HelperMsg::End { digest })) if got == size => break digest,
            Some(Incoming::Msg(HelperMsg::End { .. })) | None if got < size => {
                return Err(TransferError::Short { got, size });
            }
            None => return Err(TransferError::NoChecksum),
            Some(Incoming::Msg(HelperMsg::End { .. } | HelperMsg::Request { .. })) => {
                return Err(TransferError::Request("a second request".into()));
            }
        };
        got += data.len() as u64;
        if got > size {
            return Err(TransferError::TooMuch(size));
        }
        hash.update(data);
        file.write_all(data).map_err(at(file_name))?;
    };
    if hash.finalize().as_slice() != expected {
        return Err(TransferError::Checksum);
    }
    Ok(())
}

/// Gives the received file its mode (see below), its owner and group where
/// it replaces one, and the source's mtime.
pub(crate) fn set_metadata(
    file: &std::fs::File,
    dir: &OwnedFd,
    file_name: &OsStr,
    mode: Option<u32>,
    mtime: Option<i64>,
    preserve: bool,
) -> Result<(), TransferError> {
    // Mode: the source's as it is (-p); else the replaced file's own plain
    // permission bits; else the source's under our umask (as scp does).
    // Never a special bit: neither from the wire nor from the file it
    // replaces (a setuid file overwritten with the uploader's bytes must
    // not stay setuid).
    let old = rustix::fs::statat(dir, file_name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        .ok()
        .filter(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
        });
    let source = mode.map(|m| m & 0o777);
    let mode = match (preserve, source, old) {
        (true, Some(m), _) => m,
        (_, _, Some(st)) => st.st_mode & 0o777,
        (_, Some(m), None) => m & !umask(),
        (_, None, None) => 0o644 & !umask(),
    };
    if let Some(st) = &old {
        // The file it replaces keeps its owner and group where we may set
        // them (as root, or our own group): the rename stays atomic, but a
        // replaced file is a new inode, so its other hard links keep the
        // old content.
        let _ = rustix::fs::fchown(
            file,
            Some(rustix::fs::Uid::from_raw(st.st_uid)),
            Some(rustix::fs::Gid::from_raw(st.st_gid)),
        );
    }
    rustix::fs::fchmod(file, Mode::from_raw_mode(mode)).map_err(|e| TransferError::Io {
        what: "mode".into(),
        source: e.into(),
    })?;
    if let Some(secs) = mtime {
        crate::helpers::files_path::set_mtime(file, secs)?;
    }
    Ok(())
}

/// Names the complete file: linked in under a temporary name, then
/// renamed over the target in one step.
pub(crate) fn commit(
    file: &std::fs::File,
    dir: &OwnedFd,
    file_name: &OsStr,
) -> Result<(), TransferError> {
    // Give it a name (through /proc: linkat of an fd needs no privilege
    // that way), then rename it over the target in one step.
    let tmp_name = temp_name(file_name);
    let proc_path = format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(file));
    rustix::fs::linkat(
        CWD,
        proc_path.as_str(),
        dir,
        tmp_name.as_os_str(),
        rustix::fs::AtFlags::SYMLINK_FOLLOW,
    )
    .map_err(at(file_name))?;
    if let Err(e) = rustix::fs::renameat(dir, &tmp_name, dir, file_name) {
        let _ = rustix::fs::unlinkat(dir, &tmp_name, rustix::fs::AtFlags::empty());
        return Err(at(file_name)(e));
    }
    Ok(())
}

/// Creates the directories of `path` that are missing, each beneath the
/// base (a symlink among them cannot lead out).
fn make_dirs(root: &Root, path: &OsStr) -> Result<(), TransferError> {
    let mut done = std::path::PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(part) => {
                let parent = root.dir(done.as_os_str()).map_err(at(done.as_os_str()))?;
                match rustix::fs::mkdirat(&parent, part, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(at(path)(e)),
                }
                done.push(part);
            }
            Component::RootDir => done.push("/"),
            _ => {}
        }
    }
    Ok(())
}

/// This process's umask, read from /proc (setting it to read it would
/// change it); 022 when unknown.
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
