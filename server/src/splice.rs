//! Zero-copy output: a child's pipe moved into the socket with `splice(2)`,
//! so the bytes never enter rexecd's memory.
//!
//! A frame is a header followed by data, and the header holds the data's
//! length, so the length must be known first: `FIONREAD` says how many bytes
//! the pipe holds, the header for exactly that many is written (with
//! `MSG_MORE`, so it leaves in the same TCP segment as the data), then the
//! data is spliced from the pipe. The bytes on the wire are exactly what
//! the copying path (`encode_output_frame`) would have sent.
//!
//! A chunk the socket did not take at once is *owed*: the connection keeps
//! a duplicate of the pipe and finishes this frame before it writes anything
//! else (see `Connection::flush`). Used on plain native connections only:
//! TLS encrypts in user space, and the tutorial protocols collect the whole
//! reply before sending it. Everything here is Linux-only, as rexecd is.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rexec_proto::{DEFAULT_MAX_FRAME, OUTPUT_HEADER_MAX, OutputStream, encode_output_header};
use rustix::net::SendFlags;
use rustix::pipe::SpliceFlags;

/// Most data bytes spliced into one frame: the largest frame a client
/// accepts by default, less the header.
pub const SPLICE_MAX: usize = DEFAULT_MAX_FRAME - OUTPUT_HEADER_MAX;

/// What a command's busy pipe grows to (`F_SETPIPE_SZ`; 1 MiB is also the
/// default `/proc/sys/fs/pipe-max-size` for unprivileged users): a fast
/// writer fills 64 KiB in microseconds, and each fill would cost a wakeup,
/// a frame and three system calls.
pub const BIG_PIPE: usize = 1 << 20;

/// Bytes waiting in a pipe (`FIONREAD`). 0 means empty *or* at its end:
/// a `read` tells which.
pub fn pending(pipe: BorrowedFd<'_>) -> io::Result<usize> {
    let n = rustix::io::ioctl_fionread(pipe)?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Grows a pipe to [`BIG_PIPE`]; `false` when the kernel refused (a user's
/// pipe memory over `/proc/sys/fs/pipe-user-pages-soft`, for one).
pub fn grow(pipe: BorrowedFd<'_>) -> bool {
    rustix::pipe::fcntl_setpipe_size(pipe, BIG_PIPE).is_ok()
}

/// How far [`send_chunk`] got.
#[derive(Debug)]
pub enum Sent {
    /// The whole frame is in the socket.
    All,
    /// The socket was full before the header: nothing was written.
    Blocked,
    /// Part of the frame is in the socket; the rest must follow before
    /// anything else is written.
    Owed(Owed),
}

/// The unsent rest of a spliced frame.
#[derive(Debug)]
pub struct Owed {
    progress: Progress,
    /// A duplicate of the pipe, so the frame can be finished even if the
    /// command's own end is closed meanwhile (its bytes stay in the pipe).
    pipe: OwnedFd,
}

impl Owed {
    /// Sends more of the frame; `true` once it is all sent, `false` when
    /// the socket is full again.
    pub fn resume(&mut self, sock: BorrowedFd<'_>) -> io::Result<bool> {
        self.progress.advance(self.pipe.as_fd(), sock)
    }
}

#[derive(Debug)]
struct Progress {
    header: [u8; OUTPUT_HEADER_MAX],
    header_len: usize,
    header_sent: usize,
    /// Data bytes still in the pipe that belong to this frame.
    remaining: usize,
}

impl Progress {
    fn advance(&mut self, pipe: BorrowedFd<'_>, sock: BorrowedFd<'_>) -> io::Result<bool> {
        while self.header_sent < self.header_len {
            let more = if self.remaining > 0 {
                SendFlags::MORE
            } else {
                SendFlags::empty()
            };
            match rustix::net::send(
                sock,
                &self.header[self.header_sent..self.header_len],
                more | SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
            ) {
                Ok(n) => self.header_sent += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        while self.remaining > 0 {
            match rustix::pipe::splice(
                pipe,
                None,
                sock,
                None,
                self.remaining,
                SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
            ) {
                // The pipe held these bytes (FIONREAD) and nothing else reads
                // it: running dry here means the pipe is not what we think.
                Ok(0) => return Err(io::Error::other("pipe ran dry in the middle of a frame")),
                Ok(n) => self.remaining -= n.min(self.remaining),
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }
}

/// Sends one output frame whose `len` data bytes are waiting in `pipe`
/// (`len` at most [`SPLICE_MAX`] and at most [`pending`]), splicing them
/// into `sock`. Nothing else may be written to `sock` before the frame is
/// complete.
pub fn send_chunk(
    pipe: BorrowedFd<'_>,
    sock: BorrowedFd<'_>,
    stream: OutputStream,
    id: u32,
    len: usize,
) -> io::Result<Sent> {
    let mut head = Vec::with_capacity(OUTPUT_HEADER_MAX);
    encode_output_header(stream, id, len, &mut head);
    let mut header = [0u8; OUTPUT_HEADER_MAX];
    header[..head.len()].copy_from_slice(&head);
    let mut progress = Progress {
        header,
        header_len: head.len(),
        header_sent: 0,
        remaining: len,
    };
    if progress.advance(pipe, sock)? {
        return Ok(Sent::All);
    }
    if progress.header_sent == 0 {
        return Ok(Sent::Blocked);
    }
    Ok(Sent::Owed(Owed {
        progress,
        pipe: pipe.try_clone_to_owned()?,
    }))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    use rexec_proto::{FrameDecoder, ServerEvent};

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

    fn decode_all(bytes: &[u8]) -> Vec<(OutputStream, u32, Vec<u8>)> {
        let mut dec = FrameDecoder::new();
        dec.feed(bytes);
        let mut got = Vec::new();
        while let Some(ev) = dec.next_server_event().expect("valid frames") {
            match ev {
                ServerEvent::Output { stream, id, data } => got.push((stream, id, data.to_vec())),
                ServerEvent::Msg(m) => panic!("unexpected {m:?}"),
            }
        }
        assert_eq!(dec.buffered(), 0, "a frame was left incomplete");
        got
    }

    /// A chunk small enough for the socket goes out whole, as one frame the
    /// ordinary decoder reads.
    #[test]
    fn a_spliced_chunk_is_an_ordinary_frame() {
        let (rx, mut wx) = test_pipe();
        wx.write_all(b"hello, splice").expect("fill pipe");
        let (server, mut client) = pair();
        let n = pending(rx.as_fd()).expect("FIONREAD");
        assert_eq!(n, 13);
        let sent =
            send_chunk(rx.as_fd(), server.as_fd(), OutputStream::Stderr, 9, n).expect("splice");
        assert!(matches!(sent, Sent::All), "{sent:?}");
        drop(server);
        let mut wire = Vec::new();
        client.read_to_end(&mut wire).expect("read");
        assert_eq!(
            decode_all(&wire),
            vec![(OutputStream::Stderr, 9, b"hello, splice".to_vec())]
        );
    }

    /// A chunk larger than the socket takes is owed, and resuming it once
    /// the reader drains completes the same frame.
    #[test]
    fn an_owed_chunk_completes_the_frame() {
        let (rx, mut wx) = test_pipe();
        assert!(grow(rx.as_fd()), "F_SETPIPE_SZ to 1 MiB");
        let data: Vec<u8> = (0..SPLICE_MAX).map(|i| (i % 251) as u8).collect();
        let writer = std::thread::spawn(move || wx.write_all(&data).map(|()| data));
        let (server, mut client) = pair();
        server.set_nonblocking(true).expect("nonblocking");
        // Keep the socket small so the frame cannot fit at once.
        rustix::net::sockopt::set_socket_send_buffer_size(&server, 16 * 1024).expect("SO_SNDBUF");
        let data = writer.join().expect("writer").expect("write pipe");
        assert_eq!(pending(rx.as_fd()).expect("FIONREAD"), SPLICE_MAX);
        let sent = send_chunk(
            rx.as_fd(),
            server.as_fd(),
            OutputStream::Stdout,
            3,
            SPLICE_MAX,
        )
        .expect("splice");
        let Sent::Owed(mut owed) = sent else {
            panic!("a 1 MiB frame fit a 16 KiB socket buffer: {sent:?}");
        };
        drop(rx); // the command's end closes; the owed frame still completes
        let reader = std::thread::spawn(move || {
            let mut wire = Vec::new();
            client.read_to_end(&mut wire).map(|_| wire)
        });
        while !owed.resume(server.as_fd()).expect("resume") {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(server);
        let wire = reader.join().expect("reader").expect("read");
        assert_eq!(decode_all(&wire), vec![(OutputStream::Stdout, 3, data)]);
    }
}
