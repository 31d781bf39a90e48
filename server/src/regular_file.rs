//! Opening a file that someone else controls: an account's
//! `authorized_keys` (login.rs), a job's record and output (jobs/), which
//! their owners may replace with anything.
//!
//! A plain `open` of a FIFO waits for a writer for ever, of a device may
//! wait or act, of a symlink goes wherever it points. So, as sshd does for
//! `authorized_keys`: open without blocking and without following a final
//! symlink, then look at what was opened (not at the name, which may have
//! changed since) and refuse all but a regular file; only then read.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Opens `path` for reading if it is a regular file.
pub fn open_regular(path: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        // O_NOFOLLOW's answer for a final symlink.
        rustix::io::Errno::LOOP => io::Error::other("a symlink, not followed"),
        e => e.into(),
    })?;
    let file = File::from(fd);
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other(format!(
            "not a regular file ({})",
            kind_of(&meta)
        )));
    }
    // Reads of a regular file never wait for a writer: the flag was only
    // for the open.
    rustix::fs::fcntl_setfl(&file, OFlags::empty())?;
    Ok(file)
}

/// Opens `path` if it is a regular file owned by `owner` (a record's files
/// must be its directory owner's: another account's file planted there is
/// not believed).
pub fn open_owned(path: &Path, owner: u32) -> io::Result<File> {
    let file = open_regular(path)?;
    let uid = file.metadata()?.uid();
    if uid != owner {
        return Err(io::Error::other(format!(
            "owned by uid {uid}, not by {owner} (the directory's owner)"
        )));
    }
    Ok(file)
}

/// The contents of `path`, a regular file owned by `owner`, if it is at
/// most `max` bytes long.
pub fn read_owned(path: &Path, owner: u32, max: u64) -> io::Result<Vec<u8>> {
    let file = open_owned(path, owner)?;
    let mut buf = Vec::new();
    file.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(io::Error::other(format!("larger than {max} bytes")));
    }
    Ok(buf)
}

/// What kind of file `meta` describes, for messages.
fn kind_of(meta: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    match () {
        _ if t.is_dir() => "a directory",
        _ if t.is_fifo() => "a FIFO",
        _ if t.is_socket() => "a socket",
        _ if t.is_char_device() || t.is_block_device() => "a device",
        _ => "not a file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO nobody writes, a directory, a device and a symlink in the
    /// file's place are refused at once, and nothing is left waiting.
    #[test]
    fn only_a_regular_file_is_opened_and_a_fifo_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = open_regular(&fifo).unwrap_err().to_string();
        assert!(e.contains("a FIFO"), "{e}");
        let e = open_regular(dir.path()).unwrap_err().to_string();
        assert!(e.contains("a directory"), "{e}");
        let e = open_regular(Path::new("/dev/null"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("a device"), "{e}");
        let file = dir.path().join("keys");
        std::fs::write(&file, "k\n").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let e = open_regular(&link).unwrap_err().to_string();
        assert!(e.contains("symlink"), "{e}");
        let me = rustix::process::geteuid().as_raw();
        assert_eq!(read_owned(&file, me, 2).unwrap(), b"k\n");
        let e = read_owned(&file, me, 1).unwrap_err().to_string();
        assert!(e.contains("larger than 1 bytes"), "{e}");
        let e = read_owned(&file, me + 1, 2).unwrap_err().to_string();
        assert!(e.contains("owned by uid"), "{e}");
    }
}
