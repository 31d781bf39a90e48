//! The socket tutorials' own protocols, kept for compatibility and teaching.
//!
//! * `seed` — the tutorials' fix for sticky packets. Client to server: the
//!   command is whatever one `recv(1024)` returns. Server to client:
//!   `struct.pack('i', n)` (4 bytes, *signed*, native order, which is
//!   little-endian on every machine the tutorials ran on) followed by `n`
//!   bytes: the command's stdout, then its stderr.
//! * `raw` — the tutorials' first, broken version: the same without the
//!   header. The receiver cannot tell where one reply ends, so leftovers of a
//!   large reply show up in front of the next one.
//!
//! Note what `seed` still gets wrong, which rexec's own frames fix: commands
//! have no framing at all (two quick sends become one command), the header is
//! signed, and stdout and stderr are glued together.

/// The tutorials read a command with one `recv(1024)`.
pub const SEED_READ_SIZE: usize = 1024;

/// Bytes in a `seed` reply header.
pub const SEED_HEADER_LEN: usize = 4;

/// A `seed` reply too large for its signed 32-bit header, or a header that
/// announces a negative length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedError {
    TooLarge(usize),
    Negative(i32),
}

impl std::fmt::Display for SeedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SeedError::TooLarge(n) => {
                write!(
                    f,
                    "a seed reply of {n} bytes does not fit its 32-bit signed header"
                )
            }
            SeedError::Negative(n) => write!(f, "seed header announces a negative length {n}"),
        }
    }
}

impl std::error::Error for SeedError {}

/// `struct.pack('<i', len)`.
pub fn seed_header(len: usize) -> Result<[u8; SEED_HEADER_LEN], SeedError> {
    let n = i32::try_from(len).map_err(|_| SeedError::TooLarge(len))?;
    Ok(n.to_le_bytes())
}

/// `struct.unpack('<i', header)`, refusing negative lengths.
pub fn parse_seed_header(header: [u8; SEED_HEADER_LEN]) -> Result<usize, SeedError> {
    let n = i32::from_le_bytes(header);
    usize::try_from(n).map_err(|_| SeedError::Negative(n))
}

/// Appends a `seed` reply: header, stdout, stderr.
pub fn encode_seed_reply(stdout: &[u8], stderr: &[u8], out: &mut Vec<u8>) -> Result<(), SeedError> {
    let header = seed_header(stdout.len() + stderr.len())?;
    out.reserve(SEED_HEADER_LEN + stdout.len() + stderr.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(stdout);
    out.extend_from_slice(stderr);
    Ok(())
}

/// Appends a `raw` reply: stdout then stderr, no header at all.
pub fn encode_raw_reply(stdout: &[u8], stderr: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(stdout);
    out.extend_from_slice(stderr);
}

/// The command string of one tutorial read, decoded as the tutorial server
/// does (`decode('utf-8', 'replace')`).
pub fn seed_command(read: &[u8]) -> String {
    String::from_utf8_lossy(read).into_owned()
}

/// Incremental decoder of `seed` replies (the client side), bounded by a
/// maximum reply size.
#[derive(Debug)]
pub struct SeedReplyDecoder {
    buf: Vec<u8>,
    max_reply: usize,
}

impl SeedReplyDecoder {
    pub fn new(max_reply: usize) -> Self {
        SeedReplyDecoder {
            buf: Vec::new(),
            max_reply,
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Takes out the next whole reply, if one is buffered.
    pub fn next_reply(&mut self) -> Result<Option<Vec<u8>>, SeedError> {
        let Some(header) = self.buf.first_chunk::<SEED_HEADER_LEN>() else {
            return Ok(None);
        };
        let len = parse_seed_header(*header)?;
        if len > self.max_reply {
            return Err(SeedError::TooLarge(len));
        }
        if self.buf.len() < SEED_HEADER_LEN + len {
            return Ok(None);
        }
        let reply = self.buf[SEED_HEADER_LEN..SEED_HEADER_LEN + len].to_vec();
        self.buf.drain(..SEED_HEADER_LEN + len);
        Ok(Some(reply))
    }

    /// Bytes received but not yet taken out.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}
