//! A byte queue for a non-blocking writer: what we owe a socket (frames not
//! yet sent) or a child's stdin (bytes the client sent that the child has not
//! read yet). It imports nothing of the crate, so anything may use it.

use std::io::{self, Write};

/// Bytes waiting to be written to a socket.
///
/// Frames are appended at the end and written from `pos`; the consumed front
/// is dropped lazily, so appending is amortised O(1) and a partial write never
/// shifts the buffer.
#[derive(Debug, Default)]
pub struct OutQueue {
    buf: Vec<u8>,
    pos: usize,
}

impl OutQueue {
    /// Unsent bytes.
    pub fn len(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer to append frames to.
    pub fn tail(&mut self) -> &mut Vec<u8> {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        &mut self.buf
    }

    /// The unsent bytes.
    pub fn front(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Marks `n` bytes of [`OutQueue::front`] as sent.
    pub fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Writes until the queue is empty or the writer would block. Other
    /// errors (the peer went away) are returned.
    pub fn write_to<W: Write>(&mut self, w: &mut W) -> io::Result<()> {
        while self.pos < self.buf.len() {
            match w.write(&self.buf[self.pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.buf.clear();
        self.pos = 0;
        Ok(())
    }

    /// Gives memory back once the queue is empty.
    pub fn shrink(&mut self) {
        if self.is_empty() {
            self.buf = Vec::new();
            self.pos = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `chunk` bytes per call and then blocks.
    struct Trickle {
        got: Vec<u8>,
        chunk: usize,
        calls_left: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.calls_left == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls_left -= 1;
            let n = b.len().min(self.chunk);
            self.got.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_keep_order_and_resume() {
        let mut q = OutQueue::default();
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        q.tail().extend_from_slice(&data[..6000]);
        let mut w = Trickle {
            got: Vec::new(),
            chunk: 1000,
            calls_left: 4,
        };
        q.write_to(&mut w).expect("would-block is not an error");
        assert_eq!(q.len(), 2000);
        q.tail().extend_from_slice(&data[6000..]);
        assert_eq!(q.len(), 6000);
        w.calls_left = usize::MAX;
        q.write_to(&mut w).expect("drains");
        assert!(q.is_empty());
        assert_eq!(w.got, data);
    }

    #[test]
    fn write_errors_are_reported() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut q = OutQueue::default();
        q.tail().push(1);
        assert!(q.write_to(&mut Broken).is_err());
    }
}
