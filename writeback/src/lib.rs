//! Write-behind for the files rexec receives (a download on the client, an
//! upload in rexecd's transfer helper).
//!
//! A received file is fsync'd before it is renamed into place, so that a
//! copy that says it is done is on the disk. Written the ordinary way, the
//! data only sits in the page cache until that fsync, which then waits for
//! all of it: about 0.45 s for 1 GiB here, a third of the whole copy, spent
//! after the last byte arrived. [`WriteBehind`] asks the kernel to start
//! writing each [`WINDOW`] back as soon as it is complete
//! (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which does not wait), so the
//! disk works while the network does and the fsync finds little left.
//!
//! Nothing is weaker for it: the fsync is still what makes the file
//! durable. A start that fails (a file system without writeback, a pipe)
//! is ignored, as the fsync will write the data anyway.

use std::fs::File;
use std::io::{self, Write};
use std::ops::Range;
use std::os::fd::AsRawFd;

/// How much is written before its writeback is started: large enough that
/// the calls are few (128 per GiB), small enough that the disk starts early.
pub const WINDOW: u64 = 8 << 20;

/// A file being written from its start, with each completed window's
/// writeback started as it completes.
#[derive(Debug)]
pub struct WriteBehind {
    file: File,
    /// Bytes written so far (the file's size, as it is written in order).
    written: u64,
    /// Where the next window to start begins.
    started: u64,
}

impl WriteBehind {
    /// Wraps a file opened for writing at offset 0.
    pub fn new(file: File) -> WriteBehind {
        WriteBehind {
            file,
            written: 0,
            started: 0,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The file, to sync, set metadata on, or keep.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Write for WriteBehind {
    /// Writes to the file, then starts the writeback of the windows this
    /// completed.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.file.write(data)?;
        self.written += n as u64;
        if let Some(range) = completed(self.started, self.written) {
            self.started = range.end;
            start_writeback(&self.file, range);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The whole windows between `started` and `written` not yet started, as
/// one range; `None` while the current window is incomplete.
fn completed(started: u64, written: u64) -> Option<Range<u64>> {
    let end = written / WINDOW * WINDOW;
    (end > started).then_some(started..end)
}

/// Asks the kernel to begin writing `range` of `file` to its disk, without
/// waiting for it.
fn start_writeback(file: &File, range: Range<u64>) {
    let (Ok(offset), Ok(len)) = (
        libc::off64_t::try_from(range.start),
        libc::off64_t::try_from(range.end - range.start),
    ) else {
        return;
    };
    // SAFETY: sync_file_range only reads its integer arguments; the
    // descriptor is valid for as long as `file` is borrowed.
    let _ = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn windows_are_started_once_each_in_order_when_complete() {
        assert_eq!(completed(0, 0), None);
        assert_eq!(completed(0, WINDOW - 1), None);
        assert_eq!(completed(0, WINDOW), Some(0..WINDOW));
        assert_eq!(completed(WINDOW, WINDOW + 5), None);
        // One large write that completes several windows starts them at once.
        assert_eq!(completed(WINDOW, 3 * WINDOW + 1), Some(WINDOW..3 * WINDOW));
    }

    #[test]
    fn every_byte_is_written_and_every_whole_window_started() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = WriteBehind::new(File::create(&path).unwrap());
        let chunk: Vec<u8> = (0..=255u8).cycle().take(3 * 1024 * 1024 + 7).collect();
        for _ in 0..6 {
            w.write_all(&chunk).unwrap();
        }
        let total = 6 * chunk.len() as u64;
        assert_eq!(w.written(), total);
        assert_eq!(
            w.started,
            total / WINDOW * WINDOW,
            "the whole windows, no more"
        );
        w.file().sync_all().unwrap();
        let mut back = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back.len() as u64, total);
        assert!(back.chunks(chunk.len()).all(|c| c == chunk.as_slice()));
    }

    #[test]
    fn a_destination_without_writeback_is_still_written() {
        // A pipe: sync_file_range fails (ESPIPE), and that is no error.
        let (mut rx, tx) = std::io::pipe().unwrap();
        let reader = std::thread::spawn(move || {
            let mut n = 0u64;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                match rx.read(&mut buf).unwrap() {
                    0 => break n,
                    k => n += k as u64,
                }
            }
        });
        let mut w = WriteBehind::new(File::from(std::os::fd::OwnedFd::from(tx)));
        w.write_all(&vec![1u8; WINDOW as usize + 10]).unwrap();
        drop(w);
        assert_eq!(reader.join().unwrap(), WINDOW + 10);
    }
}
