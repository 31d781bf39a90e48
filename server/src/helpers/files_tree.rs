//! The tree-shaped parts of file transfers (files.rs): a directory or a
//! symlink of an uploaded tree, the top of a tree as `cp -r` makes it, and
//! `__list`, which walks a tree beneath the files root and follows
//! nothing.

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use crate::helpers::files_path::{
    Root, TransferError, at, plain_name, shown, shown_dir, temp_name,
};

/// A directory of an uploaded tree: made when missing; with -p, given the
/// source's mode (never a special bit) and, when the put has one, its
/// mtime.
pub(crate) fn put_dir(
    dir: &OwnedFd,
    name: &OsStr,
    mode: Option<u32>,
    mtime: Option<i64>,
    preserve: bool,
) -> Result<(), TransferError> {
    let bits = mode.map_or(0o755, |m| m & 0o777);
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(bits)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(at(name)(e)),
    }
    if preserve {
        let d = rustix::fs::openat(
            dir,
            name,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(at(name))?;
        rustix::fs::fchmod(&d, Mode::from_raw_mode(bits)).map_err(at(name))?;
        // Set last of all by `rexec sync`, once everything inside is
        // written (each file written changes it).
        if let Some(secs) = mtime {
            crate::helpers::files_path::set_mtime(&d, secs)?;
        }
    }
    Ok(())
}

/// The top of an uploaded tree, as `cp -r SRC DEST` makes it: DEST/NAME
/// when DEST is a directory, else DEST itself (its parent must exist);
/// writes the path made on stdout. `DEST/` must be a directory, as for a
/// file (the client writes it so for several sources, which cannot all
/// become DEST).
pub(crate) fn put_tree_top(
    root: &Root,
    dest: &OsStr,
    name: &OsStr,
    mode: Option<u32>,
    preserve: bool,
) -> Result<(), TransferError> {
    let must_be_dir = dest.as_bytes().len() > 1 && dest.as_bytes().ends_with(b"/");
    let mut bytes = dest.as_bytes();
    while bytes.len() > 1 && bytes.ends_with(b"/") {
        bytes = &bytes[..bytes.len() - 1];
    }
    let shown = dest;
    let dest = OsStr::from_bytes(bytes);
    let (parent, dir_name, made): (OsString, OsString, OsString) = match root.dir(dest) {
        Ok(_) => (
            dest.to_os_string(),
            name.to_os_string(),
            Path::new(dest).join(name).into_os_string(),
        ),
        Err(e) if must_be_dir => return Err(at(shown)(e)),
        Err(_) => {
            let p = Path::new(dest);
            let leaf = p
                .file_name()
                .ok_or_else(|| TransferError::NotADirName(dest.to_os_string()))?;
            let parent = p
                .parent()
                .map_or(OsString::new(), |x| x.as_os_str().to_os_string());
            (parent, leaf.to_os_string(), dest.to_os_string())
        }
    };
    if !plain_name(&dir_name) {
        return Err(TransferError::NotADirName(dir_name));
    }
    let dir = root.dir(&parent).map_err(at(shown_dir(&parent)))?;
    put_dir(&dir, &dir_name, mode, None, preserve)?;
    let mut out = io::stdout().lock();
    out.write_all(made.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|source| TransferError::Io {
            what: "telling the client".into(),
            source,
        })
}

/// A symlink of an uploaded tree, as it is (its target is never
/// followed), replacing what had the name.
pub(crate) fn put_symlink(
    dir: &OwnedFd,
    name: &OsStr,
    target: &OsStr,
) -> Result<(), TransferError> {
    let tmp = temp_name(name);
    let fail = at::<rustix::io::Errno>(name);
    rustix::fs::symlinkat(target, dir, &tmp).map_err(&fail)?;
    rustix::fs::renameat(dir, &tmp, dir, name).map_err(|e| {
        let _ = rustix::fs::unlinkat(dir, &tmp, rustix::fs::AtFlags::empty());
        fail(e)
    })
}

/// Deepest directory nesting listed.
const LIST_DEPTH: usize = 256;

pub(crate) fn list(root: &Root, path: &OsStr) -> Result<(), TransferError> {
    let top = root.dir(path).map_err(at(path))?;
    let mut out = io::BufWriter::with_capacity(256 * 1024, io::stdout().lock());
    list_dir(&top, &mut Vec::new(), 0, &mut out)
        .and_then(|()| out.flush())
        .map_err(|source| TransferError::Io {
            what: format!("listing {}", shown(path)),
            source,
        })
}

/// Lists the entries of `dir` (at `rel` below the top), depth first, in
/// name order.
fn list_dir(
    dir: &OwnedFd,
    rel: &mut Vec<u8>,
    depth: usize,
    out: &mut impl Write,
) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if depth > LIST_DEPTH {
        return Err(io::Error::other("directories nest too deep"));
    }
    let mut names: Vec<Vec<u8>> = rustix::fs::Dir::read_from(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_bytes().to_vec())
        .filter(|n| n != b"." && n != b"..")
        .collect();
    names.sort();
    for name in names {
        let name_os = std::ffi::OsStr::from_bytes(&name);
        let st = rustix::fs::statat(dir, name_os, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
        let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
        let len = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(&name);
        let entry = |k: u8, out: &mut dyn Write| {
            out.write_all(&[k])?;
            out.write_all(rel)?;
            out.write_all(&[0])
        };
        match kind {
            rustix::fs::FileType::RegularFile => entry(b'f', out)?,
            rustix::fs::FileType::Symlink => {
                entry(b'l', out)?;
                let target = rustix::fs::readlinkat(dir, name_os, Vec::new())?;
                out.write_all(target.as_bytes())?;
                out.write_all(&[0])?;
            }
            rustix::fs::FileType::Directory => {
                entry(b'd', out)?;
                let sub = rustix::fs::openat(
                    dir,
                    name_os,
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                list_dir(&sub, rel, depth + 1, out)?;
            }
            _ => {}
        }
        rel.truncate(len);
    }
    Ok(())
}
