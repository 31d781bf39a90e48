//! A get (`rexec cp HOST:FILE`) in the transfer helper: the file's size,
//! mode and mtime, its bytes spliced from the page cache into stdout (a
//! pipe that rexecd splices on into the socket), and the digest of what
//! was sent, hashed where the bytes lie rather than copied out again.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::fd::AsFd;

use rexec_proto::Hasher;
use rustix::fs::{Mode, OFlags};

use crate::helpers::files_path::{Root, TransferError, at, shown};

pub(crate) fn get(root: &Root, path: &OsStr, mut hash: Hasher) -> Result<(), TransferError> {
    // Non-blocking: opening a FIFO for reading would otherwise wait for a
    // writer forever. Anything but a regular file is refused below, at once.
    let fd = root
        .open(path, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty())
        .map_err(at(path))?;
    let st = rustix::fs::fstat(&fd).map_err(at(path))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(TransferError::NotAFile(path.to_os_string()));
    }
    rustix::fs::fcntl_setfl(&fd, OFlags::empty()).map_err(at(path))?;
    let mut out = io::stdout().lock();
    let mut header = Vec::with_capacity(rexec_proto::GET_HEADER_LEN);
    header.extend_from_slice(&(st.st_size as u64).to_be_bytes());
    header.extend_from_slice(&(st.st_mode & 0o7777).to_be_bytes());
    header.extend_from_slice(&st.st_mtime.to_be_bytes());
    let fail = |source| TransferError::Io {
        what: format!("sending {}", shown(path)),
        source,
    };
    out.write_all(&header).map_err(fail)?;
    let file = std::fs::File::from(fd);
    let size = st.st_size as u64;
    // The hash reads the file where it is mapped: should it shrink under
    // the mapping, the helper ends with this (and the client's copy with
    // it) instead of a core dump.
    crate::sys::exit_on_sigbus("rexecd: the file shrank while it was being sent\n");
    out.flush().map_err(fail)?;
    let sent = send_data(&file, size, &mut out, &mut hash)
        .map_err(fail)?
        .bytes;
    if sent != st.st_size as u64 {
        return Err(TransferError::Changed(path.to_os_string()));
    }
    out.write_all(hash.finalize().as_slice()).map_err(fail)?;
    out.flush().map_err(fail)
}

/// What [`send_data`] sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    /// Data bytes (fewer than asked if the file shrank while being read).
    bytes: u64,
    /// Whether they were spliced (else read and written).
    spliced: bool,
}

/// Sends up to `size` bytes of `file` to `out` (stdout, flushed), hashing
/// what is sent.
///
/// When stdout is a pipe, as rexecd gives it, the data is spliced from the
/// page cache into it and rexecd splices it on into the socket: no copy on
/// the server at all. The hash then reads the same range once more (from
/// the cache, into a small buffer): should the file change between the
/// splice and that read, the client's check fails rather than passing a
/// file that differs from the checksum. Elsewhere (stdout a file, as in a
/// test), it is read and written.
fn send_data(
    file: &std::fs::File,
    size: u64,
    out: &mut (impl Write + AsFd),
    hash: &mut Hasher,
) -> io::Result<Sent> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut sent: u64 = 0;
    let mut splicing = true;
    let mut window = None;
    while sent < size {
        let want = buf
            .len()
            .min(usize::try_from(size - sent).unwrap_or(usize::MAX));
        if splicing {
            let mut offset = sent;
            match rustix::pipe::splice(
                file,
                Some(&mut offset),
                out.as_fd(),
                None,
                want,
                rustix::pipe::SpliceFlags::empty(),
            ) {
                Ok(0) => break, // shrank while being read: the checksum tells
                Ok(n) => {
                    hash_sent(file, sent, n, &mut window, &mut buf, hash)?;
                    sent += n as u64;
                    continue;
                }
                Err(rustix::io::Errno::INTR) => continue,
                // Not a pipe (or a file system without splice): read and write.
                Err(rustix::io::Errno::INVAL) => splicing = false,
                Err(e) => return Err(e.into()),
            }
        }
        let n = match rustix::io::pread(file, &mut buf[..want], sent) {
            Ok(0) => break,
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        hash.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        sent += n as u64;
    }
    Ok(Sent {
        bytes: sent,
        spliced: splicing,
    })
}

/// How much of a file one mapping shows (a multiple of any page size).
const WINDOW: usize = 64 << 20;

/// Hashes the `n` bytes of `file` from `at`, just spliced: where they lie
/// in the page cache, through `window` (remapped as the get moves on), or,
/// where the file cannot be mapped, read into `buf` once more.
fn hash_sent(
    file: &std::fs::File,
    at: u64,
    n: usize,
    window: &mut Option<crate::sys::FileWindow>,
    buf: &mut [u8],
    hash: &mut Hasher,
) -> io::Result<()> {
    let (mut at, end) = (at, at + n as u64);
    while at < end {
        let inside = |w: &crate::sys::FileWindow| at >= w.start && at < w.start + WINDOW as u64;
        if !window.as_ref().is_some_and(inside) {
            *window = None;
            let start = at / WINDOW as u64 * WINDOW as u64;
            match crate::sys::FileWindow::map(file, start, WINDOW) {
                Ok(w) => *window = Some(w),
                Err(_) => return hash_read(file, at, (end - at) as usize, buf, hash),
            }
        }
        let Some(w) = window.as_ref() else {
            return hash_read(file, at, (end - at) as usize, buf, hash);
        };
        let from = (at - w.start) as usize;
        let to = (end - w.start).min(WINDOW as u64) as usize;
        hash.update(&w.bytes()[from..to]);
        at = w.start + to as u64;
    }
    Ok(())
}

/// Hashes the `n` bytes of `file` from `at` read into `buf`.
fn hash_read(
    file: &std::fs::File,
    mut at: u64,
    mut n: usize,
    buf: &mut [u8],
    hash: &mut Hasher,
) -> io::Result<()> {
    while n > 0 {
        let want = n.min(buf.len());
        match rustix::io::pread(file, &mut buf[..want], at) {
            // Shrank between the splice and the read: what was hashed is
            // not what was sent.
            Ok(0) => return Err(io::Error::other("the file changed while being sent")),
            Ok(k) => {
                hash.update(&buf[..k]);
                at += k as u64;
                n -= k;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rexec_proto::Checksum;
    use std::io::Read;
    use std::os::fd::OwnedFd;

    fn sample_file(len: usize) -> (tempfile::TempDir, std::fs::File, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(dir.path().join("src"), &data).unwrap();
        let file = std::fs::File::open(dir.path().join("src")).unwrap();
        (dir, file, data)
    }

    /// The BLAKE3 digest of `data`, computed whole.
    fn digest(data: &[u8]) -> [u8; 32] {
        let mut h = Checksum::Blake3.hasher();
        h.update(data);
        h.finalize()
    }

    #[test]
    fn a_get_into_a_pipe_is_spliced_and_hashed_as_sent() {
        let (_dir, file, data) = sample_file(3 * 256 * 1024 + 123);
        let (mut rx, tx) = std::io::pipe().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            rx.read_to_end(&mut got).unwrap();
            got
        });
        let mut out = std::fs::File::from(OwnedFd::from(tx));
        let mut hash = Checksum::Blake3.hasher();
        let sent = send_data(&file, data.len() as u64, &mut out, &mut hash).unwrap();
        drop(out);
        let bytes = data.len() as u64;
        assert_eq!(
            sent,
            Sent {
                bytes,
                spliced: true
            }
        );
        assert!(reader.join().unwrap() == data, "the pipe got the file");
        assert_eq!(hash.finalize(), digest(&data));
    }

    #[test]
    fn a_get_into_something_else_is_read_and_written() {
        // splice(2) needs a pipe at one end: a file gets the plain loop.
        let (dir, file, data) = sample_file(300 * 1024);
        let mut out = std::fs::File::create(dir.path().join("dst")).unwrap();
        let mut hash = Checksum::Blake3.hasher();
        let sent = send_data(&file, data.len() as u64, &mut out, &mut hash).unwrap();
        let bytes = data.len() as u64;
        assert_eq!(
            sent,
            Sent {
                bytes,
                spliced: false
            }
        );
        assert!(std::fs::read(dir.path().join("dst")).unwrap() == data);
        assert_eq!(hash.finalize(), digest(&data));
    }

    #[test]
    fn a_get_stops_at_the_end_of_a_file_shorter_than_its_size() {
        let (_dir, file, data) = sample_file(1000);
        let (mut rx, tx) = std::io::pipe().unwrap();
        let mut out = std::fs::File::from(OwnedFd::from(tx));
        let mut hash = Checksum::Blake3.hasher();
        let sent = send_data(&file, 5000, &mut out, &mut hash).unwrap();
        drop(out);
        let mut got = Vec::new();
        rx.read_to_end(&mut got).unwrap();
        assert_eq!((sent.bytes, got), (1000, data));
    }

    #[test]
    fn a_hash_across_two_windows_is_the_hash_of_the_bytes() {
        // A sparse file a little longer than one window: the range hashed
        // starts in the first mapping and ends in the next.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let file = std::fs::File::create(&path).unwrap();
        let tail = b"the last bytes, past the first window";
        rustix::io::pwrite(&file, tail, WINDOW as u64).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let (from, n) = (WINDOW as u64 - 5, 5 + tail.len());
        let mut buf = vec![0u8; 1024];
        let mut window = None;
        let mut hash = Checksum::Blake3.hasher();
        hash_sent(&file, from, n, &mut window, &mut buf, &mut hash).unwrap();
        let mut want = vec![0u8; 5];
        want.extend_from_slice(tail);
        assert_eq!(hash.finalize(), digest(&want));
        assert_eq!(window.map(|w| w.start), Some(WINDOW as u64), "moved on");
    }

    /// Set in the child that [`a_file_that_shrinks_under_its_mapping_fails_with_the_reason`]
    /// starts.
    const SHRINK_CHILD: &str = "REXEC_TEST_SHRINK_UNDER_MAPPING";

    #[test]
    fn a_file_that_shrinks_under_its_mapping_fails_with_the_reason() {
        if let Some(dir) = std::env::var_os(SHRINK_CHILD) {
            // In the child: map, shrink, read past the new end.
            let path = std::path::Path::new(&dir).join("f");
            std::fs::write(&path, vec![7u8; 3 * 4096]).unwrap();
            let file = std::fs::File::open(&path).unwrap();
            crate::sys::exit_on_sigbus("rexecd: the file shrank while it was being sent\n");
            let (mut window, mut buf) = (None, vec![0u8; 4096]);
            let mut hash = Checksum::Blake3.hasher();
            hash_sent(&file, 0, 4096, &mut window, &mut buf, &mut hash).unwrap();
            std::fs::File::create(&path).unwrap(); // truncated to nothing
            let _ = hash_sent(&file, 4096, 4096, &mut window, &mut buf, &mut hash);
            std::process::exit(0); // not reached: SIGBUS ends the process
        }
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "helpers::files_get::tests::a_file_that_shrinks_under_its_mapping_fails_with_the_reason",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SHRINK_CHILD, dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("the file shrank while it was being sent"),
            "{stderr}"
        );
    }
}
