//! A job's kept output: records of `[stream u8][length u32 LE][bytes]`
//! (stream 1 stdout, 2 stderr, so the two stay apart and in order), in
//! files `out.0`, `out.1`, ...
//!
//! Bounded by `--job-output-max` (CAP): `out.0` keeps the first half, then
//! the latest part goes to segments of an eighth each, of which the last
//! four are kept; an older one is removed and its bytes counted in
//! `dropped`, so `attach` can say how much is missing where. Written
//! without fsync: what was written survives a crash of rexecd (the
//! supervisor is another process) and is read back as it is.
//!
//! The follower (`attach`) reads a file to its end, moves to the next one
//! when the writer has, and waits for more while the job runs. Records
//! are moved to its stdout or stderr with `splice` (file to pipe: no copy
//! through memory) when it can, else with read and write.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::record::{self, DROPPED};

pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
const HEADER: usize = 5;
/// Tail segments kept, the one being written included.
const SEGMENTS: u64 = 4;

fn segment(dir: &Path, i: u64) -> PathBuf {
    dir.join(format!("out.{i}"))
}

/// The writing end, owned by the supervisor.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    head_max: u64,
    segment_max: u64,
    file: File,
    index: u64,
    /// Bytes in the file being written, and the payload among them.
    len: u64,
    payload: u64,
    /// Earlier tail segments still kept: index and payload bytes.
    kept: VecDeque<(u64, u64)>,
    pub total: u64,
    pub dropped: u64,
}

impl Spool {
    /// Starts `out.0` in `dir`, for at most about `cap` bytes in all.
    pub fn create(dir: &Path, cap: u64) -> io::Result<Spool> {
        let cap = cap.max(64);
        Ok(Spool {
            dir: dir.to_path_buf(),
            head_max: cap / 2,
            segment_max: cap / 8,
            file: open_new(&segment(dir, 0))?,
            index: 0,
            len: 0,
            payload: 0,
            kept: VecDeque::new(),
            total: 0,
            dropped: 0,
        })
    }

    /// Appends `data` as records, split where a file fills up, so no file
    /// grows past its share of the cap.
    pub fn append(&mut self, stream: u8, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let max = if self.index == 0 {
                self.head_max
            } else {
                self.segment_max
            };
            let room = max.saturating_sub(self.len + HEADER as u64).max(1);
            let (now, rest) = data.split_at(data.len().min(room as usize));
            self.record(stream, now)?;
            if self.len >= max {
                self.rotate()?;
            }
            data = rest;
        }
        Ok(())
    }

    fn record(&mut self, stream: u8, data: &[u8]) -> io::Result<()> {
        let mut header = [0u8; HEADER];
        header[0] = stream;
        header[1..].copy_from_slice(&(data.len() as u32).to_le_bytes());
        self.file.write_all(&header)?;
        self.file.write_all(data)?;
        self.len += (HEADER + data.len()) as u64;
        self.payload += data.len() as u64;
        self.total += data.len() as u64;
        Ok(())
    }

    /// The next file; the oldest tail segment goes when more than
    /// [`SEGMENTS`] would be kept.
    fn rotate(&mut self) -> io::Result<()> {
        let next = open_new(&segment(&self.dir, self.index + 1))?;
        if self.index > 0 {
            self.kept.push_back((self.index, self.payload));
        }
        self.index += 1;
        self.file = next;
        self.len = 0;
        self.payload = 0;
        let mut removed = false;
        while self.kept.len() as u64 >= SEGMENTS {
            let Some((i, bytes)) = self.kept.pop_front() else {
                break;
            };
            std::fs::remove_file(segment(&self.dir, i))?;
            self.dropped += bytes;
            removed = true;
        }
        if removed {
            record::write_atomic(&self.dir.join(DROPPED), self.dropped.to_string().as_bytes())?;
        }
        Ok(())
    }
}

fn open_new(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Output bytes written so far, read from the files (for a running job's
/// listing): what is kept, less record headers, plus what was dropped.
/// Only regular files of `owner` (the record's) are read (regular_file.rs).
pub fn written(dir: &Path, owner: u32) -> u64 {
    let mut payload = 0;
    for i in segments(dir) {
        let Ok(f) = open_segment(dir, i, owner) else {
            continue; // removed meanwhile, or not a file to read
        };
        let mut off = 0u64;
        let mut header = [0u8; HEADER];
        while f.read_exact_at(&mut header, off).is_ok() {
            let len = u64::from(u32::from_le_bytes([
                header[1], header[2], header[3], header[4],
            ]));
            payload += len;
            off += HEADER as u64 + len;
        }
    }
    payload + dropped(dir, owner)
}

/// Bytes the job's kept output takes on disk (its `out.N` files), from
/// their sizes: nothing is opened.
pub fn kept(dir: &Path) -> u64 {
    segments(dir)
        .into_iter()
        .filter_map(|i| std::fs::symlink_metadata(segment(dir, i)).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn dropped(dir: &Path, owner: u32) -> u64 {
    crate::regular_file::read_owned(&dir.join(DROPPED), owner, 32)
        .ok()
        .and_then(|b| String::from_utf8_lossy(&b).trim().parse().ok())
        .unwrap_or(0)
}

/// Copies the kept output of the job in `dir` (owned by `owner`) to `out`
/// and `err`, from the beginning, and goes on as it grows until `ended()`
/// says the job has ended (checked when there is nothing more to read).
pub fn follow(
    dir: &Path,
    owner: u32,
    out: BorrowedFd<'_>,
    err: BorrowedFd<'_>,
    ended: &dyn Fn() -> bool,
) -> io::Result<()> {
    let mut index = 0;
    let mut file = open_segment(dir, index, owner)?;
    let mut off = 0u64;
    let mut pause = Duration::from_millis(2);
    let mut last_look = false;
    loop {
        let mut header = [0u8; HEADER];
        if file.read_exact_at(&mut header, off).is_ok() {
            let len = u64::from(u32::from_le_bytes([
                header[1], header[2], header[3], header[4],
            ]));
            let size = file.metadata()?.len();
            if size >= off + HEADER as u64 + len {
                let to = if header[0] == STDERR { err } else { out };
                copy_record(&file, off + HEADER as u64, len, to)?;
                off += HEADER as u64 + len;
                pause = Duration::from_millis(2);
                continue;
            }
        }
        // At the end of this file: the writer moved on, or has not yet.
        if let Some(next) = next_segment(dir, index) {
            if next > index + 1 {
                let note = format!(
                    "rexec: [{} bytes of the job's output were dropped here: it wrote more than rexecd's --job-output-max]\n",
                    dropped(dir, owner)
                );
                write_all(err, note.as_bytes())?;
            }
            index = next;
            file = open_segment(dir, index, owner)?;
            off = 0;
            continue;
        }
        if last_look {
            return Ok(());
        }
        if ended() {
            // Whatever was written before the end is read once more.
            last_look = true;
            continue;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A segment, if it is a regular file of the record's owner: a FIFO put
/// in its place must not hang an attach (root's included).
fn open_segment(dir: &Path, i: u64, owner: u32) -> io::Result<File> {
    crate::regular_file::open_owned(&segment(dir, i), owner)
}

/// The first segment after `i` that exists, if any (however many were
/// removed in between).
fn next_segment(dir: &Path, i: u64) -> Option<u64> {
    segments(dir).into_iter().find(|&j| j > i)
}

/// The numbers of the `out.N` files in `dir`, in order.
fn segments(dir: &Path) -> Vec<u64> {
    let mut found: Vec<u64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("out.")?.parse().ok())
        .collect();
    found.sort_unstable();
    found
}

/// Moves `len` bytes at `off` of `file` to `to`: spliced when `to` is a
/// pipe, else read and written.
fn copy_record(file: &File, mut off: u64, len: u64, to: BorrowedFd<'_>) -> io::Result<()> {
    let end = off + len;
    while off < end {
        let want = (end - off).min(1 << 20) as usize;
        match rustix::pipe::splice(
            file.as_fd(),
            Some(&mut off),
            to,
            None,
            want,
            rustix::pipe::SpliceFlags::empty(),
        ) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::INVAL) => {
                // Not a pipe: copy.
                let mut buf = vec![0u8; want];
                file.read_exact_at(&mut buf, off)?;
                write_all(to, &buf)?;
                off += want as u64;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn write_all(to: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::write(to, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn output_over_the_cap_keeps_the_head_and_the_tail_and_says_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::create(dir.path(), 8000).unwrap();
        // 100 records of 100 bytes: 10,000 bytes, over the 8,000 kept.
        for i in 0..100u8 {
            let stream = if i % 10 == 9 { STDERR } else { STDOUT };
            s.append(stream, &[b'a' + i % 26; 100]).unwrap();
        }
        assert_eq!(s.total, 10_000);
        assert!(s.dropped > 0 && s.dropped < 10_000, "{}", s.dropped);
        let me = rustix::process::geteuid().as_raw();
        assert_eq!(written(dir.path(), me), 10_000);
        let (mut out_r, out_w) = std::io::pipe().unwrap();
        let (mut err_r, err_w) = std::io::pipe().unwrap();
        let reader = std::thread::spawn(move || {
            let mut o = Vec::new();
            out_r.read_to_end(&mut o).unwrap();
            o
        });
        let err_reader = std::thread::spawn(move || {
            let mut e = String::new();
            err_r.read_to_string(&mut e).unwrap();
            e
        });
        follow(dir.path(), me, out_w.as_fd(), err_w.as_fd(), &|| true).unwrap();
        drop((out_w, err_w));
        let out = reader.join().unwrap();
        let err = err_reader.join().unwrap();
        // The head begins at the first byte; the tail ends at the last.
        assert!(out.starts_with(&[b'a'; 100]));
        let last_stdout = 98u8; // record 99 went to stderr
        assert!(out.ends_with(&[b'a' + last_stdout % 26; 100]));
        let note = format!(
            "rexec: [{} bytes of the job's output were dropped here: it wrote more than rexecd's --job-output-max]\n",
            s.dropped
        );
        assert!(err.contains(&note), "{err}");
        let err = err.replace(&note, "");
        assert!(
            err.ends_with(&"v".repeat(100)),
            "record 99 (v) is stderr's last"
        );
        assert_eq!((out.len() + err.len()) as u64 + s.dropped, 10_000);
    }
}
