//! A batch put (`PutWhat::Batch`, protocol 10): many files below one
//! directory from one helper, for `rexec sync`. A helper per file cost a
//! process start each (about 2 ms here), most of a first sync of small
//! files.
//!
//! The put's data is frames of [`BatchItem`], decoded with the protocol's
//! own frame decoder (at most [`BATCH_FRAME_MAX`] a frame): a file is
//! announced, its bytes follow, then their digest; a directory is made (or
//! given its mode and time) as a put of one makes it. Each file is written as
//! a single put writes one: into an unnamed file in its directory, given
//! its mode and time, and named only once its digest matches. A file that
//! cannot be written (a name that is not a plain path, a missing
//! directory, a damaged copy) is said on stderr and skipped; the others go
//! on. A stream that breaks the rules (bytes without a file, more bytes
//! than announced) ends the batch.
//!
//! Durability in groups: the files are synced to disk before they are
//! named, as a single put syncs its file, but with one `syncfs` for up to
//! [`GROUP`] files instead of one `fsync` each; until then they stay
//! unnamed, so a killed helper leaves no temporary file behind.

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use rexec_proto::{BATCH_FRAME_MAX, BatchItem, Checksum, FrameDecoder, Hasher, Put};
use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::helpers::files::{commit, say_ready, set_metadata};
use crate::helpers::files_path::{Root, TransferError, at, plain_name};
use crate::helpers::files_request::{HelperInput, HelperMsg, Incoming};

/// Files synced with one `syncfs` and then named (each holds a descriptor
/// until then).
const GROUP: usize = 64;

/// Writes the files of a batch put below `put.dest` (which must be a
/// directory); fails if any could not be written (each said on stderr).
pub(crate) fn put_batch<R: io::Read>(
    root: &Root,
    put: &Put,
    input: &mut HelperInput<R>,
    checksum: Checksum,
) -> Result<(), TransferError> {
    let dest = OsStr::from_bytes(&put.dest);
    let top = root.dir(dest).map_err(at(dest))?;
    say_ready()?;
    let mut batch = Batch {
        top,
        preserve: put.preserve,
        checksum,
        current: None,
        named: Vec::new(),
        failed: 0,
    };
    let mut decoder = FrameDecoder::with_max_frame(BATCH_FRAME_MAX);
    let bad = |e: rexec_proto::FrameError| TransferError::Request(e.to_string());
    loop {
        match input.next()? {
            Some(Incoming::Data(data)) => {
                decoder.feed(data);
                while let Some(item) = decoder.next_message::<BatchItem>().map_err(bad)? {
                    batch.take(item)?;
                }
            }
            Some(Incoming::Msg(HelperMsg::End { .. })) if decoder.buffered() == 0 => break,
            Some(Incoming::Msg(HelperMsg::End { .. })) | None => {
                return Err(TransferError::Request("the batch ended in a frame".into()));
            }
            Some(Incoming::Msg(_)) => {
                return Err(TransferError::Request("a second request".into()));
            }
        }
    }
    if batch.current.is_some() {
        return Err(TransferError::Request("the batch ended in a file".into()));
    }
    batch.name_all()?;
    match batch.failed {
        0 => Ok(()),
        n => Err(TransferError::Request(format!(
            "{n} of the files were not written"
        ))),
    }
}

/// A batch on its way.
struct Batch {
    /// The put's `dest`, open.
    top: OwnedFd,
    preserve: bool,
    checksum: Checksum,
    /// The file whose bytes are arriving.
    current: Option<Current>,
    /// Complete files waiting for the group's sync to be named.
    named: Vec<Done>,
    /// Files not written.
    failed: u64,
}

/// The file whose bytes are arriving.
struct Current {
    name: Vec<u8>,
    size: u64,
    got: u64,
    mode: Option<u32>,
    mtime: Option<i64>,
    hash: Hasher,
    /// Where it goes and what it is written to; `None` once it failed
    /// (its bytes are still taken, and dropped).
    out: Option<(OwnedFd, OsString, std::fs::File)>,
}

/// A complete, checked file, to be named.
struct Done {
    dir: OwnedFd,
    name: OsString,
    file: std::fs::File,
}

impl Batch {
    fn take(&mut self, item: BatchItem) -> Result<(), TransferError> {
        let broken = |what: &str| Err(TransferError::Request(what.into()));
        match item {
            BatchItem::File {
                name,
                size,
                mode,
                mtime,
            } => {
                if self.current.is_some() {
                    return broken("a file inside a file");
                }
                let out = match self.open(&name) {
                    Ok(out) => Some(out),
                    Err(e) => {
                        self.say(&e);
                        None
                    }
                };
                self.current = Some(Current {
                    name,
                    size,
                    got: 0,
                    mode,
                    mtime,
                    hash: self.checksum.hasher(),
                    out,
                });
            }
            BatchItem::Data(data) => {
                let Some(c) = self.current.as_mut() else {
                    return broken("bytes outside a file");
                };
                c.got += data.len() as u64;
                if c.got > c.size {
                    return Err(TransferError::TooMuch(c.size));
                }
                c.hash.update(&data);
                if let Some((_, name, file)) = &mut c.out
                    && let Err(e) = file.write_all(&data)
                {
                    let e = at(name)(e);
                    c.out = None;
                    self.say(&e);
                }
            }
            BatchItem::Dir { name, mode, mtime } => {
                if self.current.is_some() {
                    return broken("a directory inside a file");
                }
                // Files waiting to be named would change its time after
                // it is set: named first.
                self.name_all()?;
                let made = self.parent_of(&name).and_then(|(dir, leaf)| {
                    let mtime = mtime.filter(|_| self.preserve);
                    crate::helpers::files_tree::put_dir(&dir, &leaf, mode, mtime, self.preserve)
                });
                if let Err(e) = made {
                    self.say(&e);
                    self.failed += 1;
                }
            }
            BatchItem::End { digest } => {
                let Some(c) = self.current.take() else {
                    return broken("an end outside a file");
                };
                if c.got != c.size {
                    return Err(TransferError::Short {
                        got: c.got,
                        size: c.size,
                    });
                }
                self.finish(c, &digest)?;
            }
        }
        Ok(())
    }

    /// Opens the unnamed file for `name` in its directory.
    fn open(&self, name: &[u8]) -> Result<(OwnedFd, OsString, std::fs::File), TransferError> {
        let (dir, leaf) = self.parent_of(name)?;
        let tmp = rustix::fs::openat(
            &dir,
            ".",
            OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(at(OsStr::from_bytes(name)))?;
        Ok((dir, leaf, std::fs::File::from(tmp)))
    }

    /// The directory `name` goes in, found beneath the top without
    /// following a symlink, and its last component; every component must
    /// be a plain name.
    fn parent_of(&self, name: &[u8]) -> Result<(OwnedFd, OsString), TransferError> {
        let parts: Vec<&OsStr> = name.split(|&b| b == b'/').map(OsStr::from_bytes).collect();
        let shown_name = OsStr::from_bytes(name);
        if parts.iter().any(|p| !plain_name(p)) {
            return Err(TransferError::NotAName(shown_name.to_os_string()));
        }
        let (dirs, leaf) = parts.split_at(parts.len() - 1);
        let dir = match dirs.is_empty() {
            true => rustix::io::fcntl_dupfd_cloexec(&self.top, 0),
            false => rustix::fs::openat2(
                &self.top,
                dirs.join(OsStr::new("/")),
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
            ),
        }
        .map_err(at(shown_name))?;
        Ok((dir, leaf[0].to_os_string()))
    }

    /// The end of a file: checked, given its mode and time, and queued to
    /// be named with its group.
    fn finish(&mut self, c: Current, digest: &[u8]) -> Result<(), TransferError> {
        let Some((dir, name, file)) = c.out else {
            self.failed += 1;
            return Ok(());
        };
        let shown_name = OsStr::from_bytes(&c.name);
        if c.hash.finalize().as_slice() != digest {
            self.say(&at(shown_name)(io::Error::other(
                TransferError::Checksum.to_string(),
            )));
            self.failed += 1;
            return Ok(());
        }
        if let Err(e) = set_metadata(&file, &dir, &name, c.mode, c.mtime, self.preserve) {
            self.say(&e);
            self.failed += 1;
            return Ok(());
        }
        self.named.push(Done { dir, name, file });
        if self.named.len() >= GROUP {
            self.name_all()?;
        }
        Ok(())
    }

    /// Syncs the waiting files (one `syncfs`) and names each.
    fn name_all(&mut self) -> Result<(), TransferError> {
        let Some(first) = self.named.first() else {
            return Ok(());
        };
        rustix::fs::syncfs(&first.file).map_err(|e| TransferError::Io {
            what: "syncing the files".into(),
            source: e.into(),
        })?;
        for d in std::mem::take(&mut self.named) {
            if let Err(e) = commit(&d.file, &d.dir, &d.name) {
                self.say(&e);
                self.failed += 1;
            }
        }
        Ok(())
    }

    /// One file's failure, on stderr (one write: one line, whole).
    fn say(&self, e: &TransferError) {
        let _ = io::stderr().write_all(format!("rexecd: {e}\n").as_bytes());
    }
}

/// A batch put's data from an untrusted client, fed to the helper's
/// writer in chunks of `step` bytes, into the directory `dest`; the result
/// is what the helper would exit with. For the `batch` fuzz target.
pub fn decode_untrusted(dest: &std::path::Path, step: usize, data: &[u8]) -> bool {
    let mut wire = Vec::new();
    for chunk in data.chunks(step.max(1)) {
        HelperMsg::encode_data(chunk, &mut wire);
    }
    HelperMsg::End { digest: Vec::new() }.encode(&mut wire);
    let put = Put {
        dest: dest.as_os_str().as_bytes().to_vec(),
        preserve: true,
        what: rexec_proto::PutWhat::Batch,
        ..Put::default()
    };
    let mut input = HelperInput::from_reader(&wire[..]);
    Root::new(None)
        .and_then(|root| put_batch(&root, &put, &mut input, Checksum::Blake3))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rexec_proto::PutWhat;
    use std::os::unix::fs::MetadataExt;

    /// A file of a batch as a client sends it: announced, its bytes in
    /// two items, and the digest of `digest_of`.
    fn file(out: &mut Vec<BatchItem>, name: &[u8], data: &[u8], digest_of: &[u8]) {
        out.push(BatchItem::File {
            name: name.to_vec(),
            size: data.len() as u64,
            mode: Some(0o640),
            mtime: Some(1_000_000_000),
        });
        let (a, b) = data.split_at(data.len() / 2);
        out.push(BatchItem::Data(a.to_vec()));
        out.push(BatchItem::Data(b.to_vec()));
        let mut h = Checksum::Blake3.hasher();
        h.update(digest_of);
        out.push(BatchItem::End {
            digest: h.finalize().to_vec(),
        });
    }

    /// Runs a batch of `items` into `dest`, its frames cut into the
    /// helper's data chunks at `step` bytes (so that frames straddle them).
    fn run(dest: &std::path::Path, items: &[BatchItem], step: usize) -> Result<(), TransferError> {
        let mut frames = Vec::new();
        for item in items {
            rexec_proto::encode_frame(item, &mut frames);
        }
        let mut wire = Vec::new();
        for chunk in frames.chunks(step) {
            HelperMsg::encode_data(chunk, &mut wire);
        }
        HelperMsg::End { digest: Vec::new() }.encode(&mut wire);
        let put = Put {
            dest: dest.as_os_str().as_bytes().to_vec(),
            preserve: true,
            what: PutWhat::Batch,
            ..Put::default()
        };
        let mut input = HelperInput::from_reader(&wire[..]);
        put_batch(&Root::new(None)?, &put, &mut input, Checksum::Blake3)
    }

    #[test]
    fn a_batch_writes_every_file_with_its_mode_and_time() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("old"), "replaced").unwrap();
        let mut items = Vec::new();
        file(&mut items, b"old", b"new bytes", b"new bytes");
        file(&mut items, b"sub/two", b"second", b"second");
        file(&mut items, b"\xff name", b"", b"");
        for step in [7, 1 << 20] {
            run(dir.path(), &items, step).unwrap();
            assert_eq!(std::fs::read(dir.path().join("old")).unwrap(), b"new bytes");
            assert_eq!(
                std::fs::read(dir.path().join("sub/two")).unwrap(),
                b"second"
            );
            let odd = dir.path().join(OsStr::from_bytes(b"\xff name"));
            assert_eq!(std::fs::read(&odd).unwrap(), b"");
            let m = std::fs::metadata(dir.path().join("sub/two")).unwrap();
            assert_eq!((m.mode() & 0o7777, m.mtime()), (0o640, 1_000_000_000));
        }
        // Nothing else: no temporary file left beside them.
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn directories_are_made_in_order_and_given_their_mode_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let d = |name: &[u8], mtime: Option<i64>| BatchItem::Dir {
            name: name.to_vec(),
            mode: Some(0o750),
            mtime,
        };
        let mut items = vec![d(b"new", None), d(b"new/deeper", None)];
        file(&mut items, b"new/deeper/f", b"inside", b"inside");
        // Last, the times (as sync sends them), and a name that climbs.
        items.push(d(b"new/deeper", Some(1_000_000_000)));
        items.push(d(b"new", Some(1_100_000_000)));
        items.push(d(b"../climb", None));
        let e = run(dir.path(), &items, 11).unwrap_err();
        assert!(e.to_string().contains("1 of the files"), "{e}");
        let meta = |p: &str| std::fs::metadata(dir.path().join(p)).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("new/deeper/f")).unwrap(),
            b"inside"
        );
        assert_eq!(meta("new/deeper").mode() & 0o7777, 0o750);
        assert_eq!(meta("new/deeper").mtime(), 1_000_000_000);
        assert_eq!(meta("new").mtime(), 1_100_000_000);
        assert!(!dir.path().parent().unwrap().join("climb").exists());
    }

    #[test]
    fn a_file_that_cannot_be_written_is_skipped_and_the_others_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let mut items = Vec::new();
        file(&mut items, b"../escape", b"x", b"x");
        file(&mut items, b"link/through", b"x", b"x");
        file(&mut items, b"/abs", b"x", b"x");
        file(&mut items, b"no/such/dir", b"x", b"x");
        file(&mut items, b"damaged", b"sent", b"other");
        file(&mut items, b"good", b"fine", b"fine");
        let e = run(dir.path(), &items, 5).unwrap_err();
        assert!(e.to_string().contains("5 of the files"), "{e}");
        assert_eq!(std::fs::read(dir.path().join("good")).unwrap(), b"fine");
        assert!(!dir.path().join("damaged").exists());
        assert!(!dir.path().parent().unwrap().join("escape").exists());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_batch_that_breaks_the_rules_ends_and_names_nothing_unchecked() {
        let dir = tempfile::tempdir().unwrap();
        let mut items = Vec::new();
        file(&mut items, b"first", b"ok", b"ok");
        // More bytes than announced.
        items.push(BatchItem::File {
            name: b"liar".to_vec(),
            size: 1,
            mode: None,
            mtime: None,
        });
        items.push(BatchItem::Data(b"too many".to_vec()));
        let e = run(dir.path(), &items, 1 << 20).unwrap_err();
        assert!(matches!(e, TransferError::TooMuch(1)), "{e}");
        // Neither the liar nor the file before it in the unsynced group
        // was named.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // Bytes with no file, and an end with none.
        for items in [
            vec![BatchItem::Data(b"x".to_vec())],
            vec![BatchItem::End { digest: vec![] }],
        ] {
            assert!(matches!(
                run(dir.path(), &items, 64),
                Err(TransferError::Request(_))
            ));
        }
    }
}
