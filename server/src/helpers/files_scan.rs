//! `rexec sync`'s questions about a tree (protocol 9, `Tree`): a scan
//! that describes every entry with what the quick check compares (kind,
//! size, modification time, mode, a symlink's target), and the removal of
//! one entry for `--delete`. Both are confined like a get (files_path.rs)
//! and follow no symlink: the last component is looked at, never through.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::helpers::files_path::{Root, TransferError, at, plain_name, shown};

/// Directories nested deeper than this are refused (a loop of bind mounts
/// would otherwise never end).
const SCAN_DEPTH: usize = 256;

/// `path` split into the directory it is in and its last component.
fn split(path: &OsStr) -> Result<(&OsStr, &OsStr), TransferError> {
    let mut bytes = path.as_bytes();
    while bytes.len() > 1 && bytes.ends_with(b"/") {
        bytes = &bytes[..bytes.len() - 1];
    }
    let (dir, name) = match bytes.iter().rposition(|&b| b == b'/') {
        Some(0) => (&b"/"[..], &bytes[1..]),
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (&b"."[..], bytes),
    };
    let name = OsStr::from_bytes(name);
    if !plain_name(name) {
        return Err(TransferError::NotAName(path.to_os_string()));
    }
    Ok((OsStr::from_bytes(dir), name))
}

/// Writes the scan of `path` on stdout; with `digests`, each file's
/// digest under that hash too.
pub(crate) fn scan(
    root: &Root,
    path: &OsStr,
    digests: Option<rexec_proto::Checksum>,
) -> Result<(), TransferError> {
    let (dir_path, name) = split(path)?;
    let fail = |source| TransferError::Io {
        what: format!("scanning {}", shown(path)),
        source,
    };
    let mut out = io::BufWriter::with_capacity(256 * 1024, io::stdout().lock());
    let dir = match root.dir(dir_path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return out
                .write_all(b"n\0")
                .and_then(|()| out.flush())
                .map_err(fail);
        }
        Err(e) => return Err(at(path)(e)),
    };
    let mut rel = Vec::new();
    let mut walk = Walk {
        digests,
        out: &mut out,
    };
    walk.entry(&dir, name, &mut rel, 0)
        .and_then(|()| out.flush())
        .map_err(fail)
}

/// A scan under way: where it writes, and whether with digests.
struct Walk<'a, W: Write> {
    digests: Option<rexec_proto::Checksum>,
    out: &'a mut W,
}

impl<W: Write> Walk<'_, W> {
    /// Describes `name` in `dir` (at `rel` below the top), and below it
    /// for a directory, depth first in name order.
    fn entry(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        rel: &mut Vec<u8>,
        depth: usize,
    ) -> io::Result<()> {
        let digests = self.digests;
        let out = &mut *self.out;
        let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Only the top may be missing; an entry gone since it was listed
            // is left out.
            Err(rustix::io::Errno::NOENT) if depth == 0 => return out.write_all(b"n\0"),
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let head = |kind: u8, out: &mut dyn Write| {
            out.write_all(&[kind])?;
            out.write_all(rel)?;
            out.write_all(&[0])
        };
        let mode = st.st_mode & 0o7777;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {
                head(b'f', out)?;
                out.write_all(&(st.st_size as u64).to_be_bytes())?;
                out.write_all(&st.st_mtime.to_be_bytes())?;
                out.write_all(&(st.st_mtime_nsec as u32).to_be_bytes())?;
                out.write_all(&mode.to_be_bytes())?;
                match digests {
                    Some(kind) => out.write_all(&digest(dir, name, kind)?),
                    None => Ok(()),
                }
            }
            FileType::Symlink => {
                head(b'l', out)?;
                let target = rustix::fs::readlinkat(dir, name, Vec::new())?;
                out.write_all(target.as_bytes())?;
                out.write_all(&[0])
            }
            FileType::Directory => {
                head(b'd', out)?;
                out.write_all(&mode.to_be_bytes())?;
                out.write_all(&st.st_mtime.to_be_bytes())?;
                out.write_all(&(st.st_mtime_nsec as u32).to_be_bytes())?;
                if depth > SCAN_DEPTH {
                    return Err(io::Error::other("directories nest too deep"));
                }
                let sub = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let mut names: Vec<Vec<u8>> = rustix::fs::Dir::read_from(&sub)?
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_bytes().to_vec())
                    .filter(|n| n != b"." && n != b"..")
                    .collect();
                names.sort();
                for n in names {
                    let len = rel.len();
                    if !rel.is_empty() {
                        rel.push(b'/');
                    }
                    rel.extend_from_slice(&n);
                    self.entry(&sub, OsStr::from_bytes(&n), rel, depth + 1)?;
                    rel.truncate(len);
                }
                Ok(())
            }
            _ => head(b'o', out),
        }
    }
}

/// The digest of the file `name` in `dir`, read without following a link.
fn digest(dir: &OwnedFd, name: &OsStr, kind: rexec_proto::Checksum) -> io::Result<[u8; 32]> {
    use std::io::Read;
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut file = std::fs::File::from(fd);
    let mut hash = kind.hasher();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(hash.finalize()),
            n => hash.update(&buf[..n]),
        }
    }
}

/// Removes the file or symlink `path`, or the directory `path` when it is
/// empty; never anything it leads to.
pub(crate) fn remove(root: &Root, path: &OsStr) -> Result<(), TransferError> {
    let (dir_path, name) = split(path)?;
    let dir = root.dir(dir_path).map_err(at(path))?;
    let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(at(path))?;
    let flags = match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => AtFlags::REMOVEDIR,
        _ => AtFlags::empty(),
    };
    rustix::fs::unlinkat(&dir, name, flags).map_err(at(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_a_directory_and_a_plain_name() {
        let s = |p: &str| split(OsStr::new(p)).map(|(d, n)| (d.to_owned(), n.to_owned()));
        assert_eq!(s("a/b/c").unwrap(), ("a/b".into(), "c".into()));
        assert_eq!(s("/top").unwrap(), ("/".into(), "top".into()));
        assert_eq!(s("name").unwrap(), (".".into(), "name".into()));
        assert_eq!(s("dir/").unwrap(), (".".into(), "dir".into()));
        assert!(s("a/..").is_err() && s("/").is_err() && s("").is_err());
    }
}
