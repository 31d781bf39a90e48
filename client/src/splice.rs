//! Zero-copy output on the client: the data of a large stdout frame moves
//! from the socket to local stdout with `splice(2)`, without passing through
//! this process's memory (Linux).
//!
//! The frame's header still goes through the decoder, which says what the
//! frame is and how many data bytes are still to come (`partial_output`);
//! only those are spliced. One end of a splice must be a pipe: when stdout is
//! one, the bytes go straight to it; when it is a file or `/dev/null`, they
//! pass through a pipe of our own. Anything splice cannot do (an `O_APPEND`
//! file, an old kernel) falls back to reading and writing, so the bytes of
//! the frame are always consumed exactly, and a failing stdout never leaves
//! the connection mid-frame.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{FileType, OFlags};
use rustix::pipe::SpliceFlags;

/// Frames with less than this still to come are copied: below it, the
/// extra system calls cost more than the copy they save.
pub const SPLICE_MIN: usize = 16 * 1024;

/// Our own pipe between the socket and a stdout that is not a pipe.
const VIA_PIPE: usize = 1 << 20;

/// Moves frame data from a socket to local stdout.
#[derive(Debug)]
pub struct Splicer {
    out: File,
    /// `out` is not a pipe: bytes pass through a pipe of our own.
    needs_via: bool,
    /// That pipe (read end, write end), made on first use: a `--prompt`
    /// session makes a splicer per command, most of which splice nothing.
    via: Option<(OwnedFd, OwnedFd)>,
    /// splice failed once: read and write from then on.
    copy: bool,
    /// Writing to stdout failed (`| head` closed it): the rest is consumed
    /// from the socket and dropped.
    broken: bool,
}

impl Splicer {
    /// A splicer for `out` when splicing to it can work: a pipe, a regular
    /// file not opened for appending, or a character device that is not a
    /// terminal (`/dev/null`). Terminals keep the ordinary path, which also
    /// tracks where the last line ended.
    pub fn new(out: BorrowedFd<'_>) -> Option<Splicer> {
        let stat = rustix::fs::fstat(out).ok()?;
        let needs_via = match FileType::from_raw_mode(stat.st_mode) {
            FileType::Fifo => false,
            FileType::RegularFile | FileType::CharacterDevice => {
                let append = rustix::fs::fcntl_getfl(out).ok()?.contains(OFlags::APPEND);
                if append || rustix::termios::isatty(out) {
                    return None;
                }
                true
            }
            _ => return None,
        };
        Some(Splicer {
            out: File::from(out.try_clone_to_owned().ok()?),
            needs_via,
            via: None,
            copy: false,
            broken: false,
        })
    }

    /// Whether local stdout failed (the remote command should be stopped).
    pub fn broken(&self) -> bool {
        self.broken
    }

    /// Writes bytes that already arrived (the start of a frame's data).
    pub fn write(&mut self, data: &[u8]) {
        write_out(&mut self.out, &mut self.broken, data);
    }

    /// Moves exactly `n` bytes from `sock` to stdout. An error is the
    /// socket's: stdout's are recorded in [`Splicer::broken`].
    /// `n` counts down as bytes move; a read that times out (the socket's
    /// receive timeout: keepalive) returns `WouldBlock` with `n` left as it
    /// is, to be called again.
    pub fn transfer(&mut self, sock: BorrowedFd<'_>, n: &mut usize) -> io::Result<()> {
        if self.needs_via && self.via.is_none() {
            match rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC) {
                Ok((r, w)) => {
                    // A bigger pipe means fewer round trips; the default
                    // works too.
                    let _ = rustix::pipe::fcntl_setpipe_size(&r, VIA_PIPE);
                    self.via = Some((r, w));
                }
                Err(_) => self.copy = true,
            }
        }
        while *n > 0 {
            if self.copy || self.broken {
                *n -= self.copy_some(sock, *n)?;
                continue;
            }
            let moved = match &self.via {
                None => {
                    rustix::pipe::splice(sock, None, self.out.as_fd(), None, *n, SpliceFlags::MOVE)
                }
                Some((_, w)) => rustix::pipe::splice(sock, None, w, None, *n, SpliceFlags::MOVE),
            };
            match moved {
                // Not necessarily the end: tcp_splice_read also returns 0
                // when it cannot take the bytes that are there (at an
                // urgent mark, for one). A read tells: it returns them, or
                // 0 at the real end.
                Ok(0) => *n -= self.copy_some(sock, *n)?,
                Ok(k) => {
                    *n -= k.min(*n);
                    self.drain_via(k);
                }
                Err(rustix::io::Errno::INTR) => {}
                // The socket's receive timeout: nothing for a while.
                Err(rustix::io::Errno::AGAIN) => return Err(io::ErrorKind::WouldBlock.into()),
                // Either end may have failed; copying tells which (a socket
                // error comes back from the read, a stdout one marks broken).
                Err(_) => self.copy = true,
            }
        }
        Ok(())
    }

    /// Empties our pipe of the `k` bytes just moved into it, into stdout.
    fn drain_via(&mut self, mut k: usize) {
        let Some((r, _)) = &self.via else {
            return;
        };
        while k > 0 {
            if !self.broken {
                match rustix::pipe::splice(r, None, self.out.as_fd(), None, k, SpliceFlags::MOVE) {
                    Ok(0) => self.broken = true,
                    Ok(m) => {
                        k -= m.min(k);
                        continue;
                    }
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(_) => self.copy = true,
                }
            }
            // Copy (or drop) what is left in our pipe.
            let mut buf = [0u8; 16 * 1024];
            let want = k.min(buf.len());
            match rustix::io::read(r, &mut buf[..want]) {
                Ok(0) | Err(_) => return, // cannot happen: the bytes are there
                Ok(m) => {
                    k -= m;
                    write_out(&mut self.out, &mut self.broken, &buf[..m]);
                }
            }
        }
    }

    /// Reads up to `n` bytes from the socket and writes them to stdout (or
    /// drops them once it is broken); returns how many were consumed.
    fn copy_some(&mut self, sock: BorrowedFd<'_>, n: usize) -> io::Result<usize> {
        let mut buf = vec![0u8; n.min(256 * 1024)];
        let got = loop {
            match rustix::io::read(sock, &mut buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(k) => break k,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        };
        self.write(&buf[..got]);
        Ok(got)
    }
}

/// Writes to stdout unless it already failed; a failure marks it broken.
fn write_out(out: &mut File, broken: &mut bool, data: &[u8]) {
    if !*broken && out.write_all(data).is_err() {
        *broken = true;
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    use super::*;

    /// A pipe as (read end, write end) files.
    fn test_pipe() -> (std::fs::File, std::fs::File) {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe");
        (r.into(), w.into())
    }

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let a = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (b, _) = l.accept().expect("accept");
        (a, b)
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 253) as u8).collect()
    }

    /// A socket that receives `data` then `NEXT`, and the sending thread.
    fn incoming(data: Vec<u8>) -> (TcpStream, std::thread::JoinHandle<()>) {
        let (mut tx, rx) = pair();
        let sender = std::thread::spawn(move || {
            tx.write_all(&data).expect("send");
            tx.write_all(b"NEXT").expect("send");
        });
        (rx, sender)
    }

    /// What follows the moved bytes is still in the socket, untouched.
    fn assert_next_is_left(rx: &TcpStream, sender: std::thread::JoinHandle<()>) {
        sender.join().expect("sender");
        let mut next = [0u8; 4];
        (&*rx)
            .read_exact(&mut next)
            .expect("the rest stays in the socket");
        assert_eq!(&next, b"NEXT");
    }

    /// Exactly `n` bytes are moved, the next ones stay in the socket, to a
    /// pipe and through our own pipe to a file.
    #[test]
    fn moves_exactly_n_bytes_to_a_pipe_and_a_file() {
        let data = pattern(3 << 20);
        let (rx, sender) = incoming(data.clone());
        // To a pipe: read on another thread so the pipe never blocks us.
        let (mut pr, pw) = test_pipe();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            pr.read_to_end(&mut got).map(|_| got)
        });
        let mut s = Splicer::new(pw.as_fd()).expect("a pipe can be spliced to");
        assert!(!s.needs_via);
        s.transfer(rx.as_fd(), &mut (1 << 20)).expect("to the pipe");
        drop(s);
        drop(pw);
        assert_eq!(
            reader.join().expect("reader").expect("read"),
            data[..1 << 20]
        );

        // To a file, through our pipe.
        let path = std::env::temp_dir().join(format!("rexec-splice-{}", std::process::id()));
        let file = File::create(&path).expect("temp file");
        let mut s = Splicer::new(file.as_fd()).expect("a file can be spliced to");
        assert!(s.needs_via);
        s.transfer(rx.as_fd(), &mut (2 << 20)).expect("to the file");
        drop(s);
        let got = std::fs::read(&path).expect("read back");
        let _ = std::fs::remove_file(&path);
        assert_eq!(got, data[1 << 20..]);
        assert_next_is_left(&rx, sender);
    }

    /// A stdout whose reader went away is recorded as broken, and the
    /// frame's bytes are still consumed from the socket, no more.
    #[test]
    fn a_closed_stdout_is_broken_and_the_frame_is_still_consumed() {
        let (rx, sender) = incoming(pattern(1 << 20));
        let (pr, pw) = test_pipe();
        drop(pr);
        let mut s = Splicer::new(pw.as_fd()).expect("pipe");
        s.transfer(rx.as_fd(), &mut (1 << 20))
            .expect("the socket is fine");
        assert!(s.broken());
        assert_next_is_left(&rx, sender);
    }

    /// splice(2) from a TCP socket can return 0 while bytes are waiting
    /// (tcp_splice_read stops, for one, at an urgent mark, which read(2)
    /// steps over). That 0 is not the end of the stream: the bytes after it
    /// must still arrive, in order, and the frame end where it should.
    #[test]
    fn a_splice_that_moves_nothing_is_not_taken_for_the_end() {
        let (mut tx, rx) = pair();
        let first = pattern(64 << 10);
        let second = pattern(96 << 10);
        tx.write_all(&first).expect("send");
        // One urgent byte: read(2) skips it (no SO_OOBINLINE), splice
        // returns 0 at it for as long as it is there.
        rustix::net::send(&tx, b"!", rustix::net::SendFlags::OOB).expect("send urgent");
        tx.write_all(&second).expect("send");
        tx.write_all(b"NEXT").expect("send");
        let (mut pr, pw) = test_pipe();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            pr.read_to_end(&mut got).map(|_| got)
        });
        let mut s = Splicer::new(pw.as_fd()).expect("pipe");
        let mut n = first.len() + second.len();
        s.transfer(rx.as_fd(), &mut n)
            .expect("a zero from splice is not the end of the stream");
        assert_eq!(n, 0);
        drop(s);
        drop(pw);
        let got = reader.join().expect("reader").expect("read");
        assert_eq!(got.len(), first.len() + second.len());
        assert!(got[..first.len()] == first[..] && got[first.len()..] == second[..]);
        let mut next = [0u8; 4];
        (&rx)
            .read_exact(&mut next)
            .expect("the rest stays in the socket");
        assert_eq!(&next, b"NEXT");
    }

    /// Appending files and terminals keep the ordinary path.
    #[test]
    fn append_mode_files_are_not_spliced_to() {
        let path = std::env::temp_dir().join(format!("rexec-splice-a-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("temp file");
        assert!(Splicer::new(file.as_fd()).is_none());
        let _ = std::fs::remove_file(&path);
    }
}
