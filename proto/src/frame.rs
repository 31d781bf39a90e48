//! Frames: `[u32 big-endian payload length][payload]`.
//!
//! The length header is what cures sticky packets: the receiver always knows
//! where one message ends and the next begins, however the bytes were split
//! or glued together on the way.

use std::io::{self, Read};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::limits::{DEFAULT_MAX_FRAME, HEADER_LEN, MAX_FRAME_LIMIT};
use crate::message::{OutputStream, ServerEvent, ServerMsg};
use crate::payload::{self, DecodeError};

/// How much [`FrameDecoder::read_from`] asks the reader for at most at once.
pub const READ_CHUNK: usize = 64 * 1024;

/// The 4 header bytes for a payload of `len` bytes.
///
/// # Panics
/// When `len` does not fit in a `u32`; rexec never builds such a payload.
pub fn frame_header(len: usize) -> [u8; HEADER_LEN] {
    let len = u32::try_from(len).expect("frame payload larger than 4 GiB");
    len.to_be_bytes()
}

/// Appends one frame holding `msg` to `out`; returns the payload length.
pub fn encode_frame<M: Serialize>(msg: &M, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    payload::encode_into(msg, out);
    let len = out.len() - start - HEADER_LEN;
    out[start..start + HEADER_LEN].copy_from_slice(&frame_header(len));
    len
}

/// Appends a `Stdout` / `Stderr` frame for `data`, copying `data` once.
/// Returns the payload length. Produces exactly the bytes [`encode_frame`]
/// would for the equivalent `ServerMsg`.
pub fn encode_output_frame(stream: OutputStream, id: u32, data: &[u8], out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.reserve(HEADER_LEN + 16 + data.len());
    out.extend_from_slice(&[0; HEADER_LEN]);
    payload::encode_output_into(stream, id, data, out);
    let len = out.len() - start - HEADER_LEN;
    out[start..start + HEADER_LEN].copy_from_slice(&frame_header(len));
    len
}

/// Appends a `ChannelData` frame for `data` (the server's when
/// `from_server`), copying `data` once; the bytes [`encode_frame`] would
/// write for the message. Returns the payload length.
pub fn encode_channel_data_frame(
    from_server: bool,
    id: u32,
    data: &[u8],
    out: &mut Vec<u8>,
) -> usize {
    let start = out.len();
    out.reserve(HEADER_LEN + 16 + data.len());
    out.extend_from_slice(&[0; HEADER_LEN]);
    payload::encode_channel_data_into(from_server, id, data, out);
    let len = out.len() - start - HEADER_LEN;
    out[start..start + HEADER_LEN].copy_from_slice(&frame_header(len));
    len
}

/// Appends the frame header and the start of a `ChannelData` payload for
/// `len` bytes of data the caller writes next from where they are; the
/// two together are what [`encode_channel_data_frame`] writes. Returns the
/// payload length.
pub fn encode_channel_data_header(
    from_server: bool,
    id: u32,
    len: usize,
    out: &mut Vec<u8>,
) -> usize {
    data_header(len, out, |out| {
        payload::encode_channel_data_prefix(from_server, id, len, out)
    })
}

/// Appends the frame header and the start of a `Stdout` / `Stderr` payload
/// for `len` bytes of data that the caller sends next by other means (the
/// server splices them from a pipe straight into the socket). The header
/// followed by the data is exactly what [`encode_output_frame`] writes.
/// Returns the payload length.
pub fn encode_output_header(stream: OutputStream, id: u32, len: usize, out: &mut Vec<u8>) -> usize {
    data_header(len, out, |out| {
        payload::encode_output_prefix(stream, id, len, out)
    })
}

/// Appends the frame header and the start of a `ClientMsg::Stdin` for
/// `len` bytes of data that the caller writes next from where they are, as
/// [`encode_output_header`] does for output: the header followed by the
/// data is exactly what [`encode_frame`] writes for the message. Returns
/// the payload length.
pub fn encode_stdin_header(id: u32, len: usize, out: &mut Vec<u8>) -> usize {
    data_header(len, out, |out| payload::encode_stdin_prefix(id, len, out))
}

/// A frame header and a payload prefix (`prefix` appends it) for `len`
/// data bytes that follow.
fn data_header(len: usize, out: &mut Vec<u8>, prefix: impl FnOnce(&mut Vec<u8>)) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    prefix(out);
    let payload_len = out.len() - start - HEADER_LEN + len;
    out[start..start + HEADER_LEN].copy_from_slice(&frame_header(payload_len));
    payload_len
}

/// Most bytes an output frame has before its data (header, variant, id,
/// length): anything that long that is not a whole prefix is no output frame.
pub const OUTPUT_HEADER_MAX: usize = HEADER_LEN + 1 + 5 + 9;

/// An output frame that has begun to arrive: the data received so far, and
/// how much is still to come. See [`FrameDecoder::partial_output`].
#[derive(Debug, PartialEq, Eq)]
pub struct PartialOutput<'a> {
    pub stream: OutputStream,
    pub id: u32,
    pub data: &'a [u8],
    pub remaining: usize,
}

/// A `Stdin` frame that has begun to arrive, as [`PartialOutput`] is for
/// output. See [`FrameDecoder::partial_stdin`].
#[derive(Debug, PartialEq, Eq)]
pub struct PartialStdin<'a> {
    pub id: u32,
    pub data: &'a [u8],
    pub remaining: usize,
}

/// Looks for one whole frame at the start of `buf`: `Ok(Some((payload,
/// consumed)))` when it is all there, `Ok(None)` when more bytes are needed,
/// and an error as soon as the header declares more than `max_frame` bytes.
/// [`FrameDecoder`] is this plus a buffer.
pub fn parse_frame(buf: &[u8], max_frame: usize) -> Result<Option<(&[u8], usize)>, FrameError> {
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*header) as usize;
    if len > max_frame {
        return Err(FrameError::TooLarge {
            len: len as u64,
            max: max_frame,
        });
    }
    Ok(buf
        .get(HEADER_LEN..HEADER_LEN + len)
        .map(|payload| (payload, HEADER_LEN + len)))
}

/// Why a byte stream could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A header declared a payload larger than the limit. Detected from the
    /// 4 header bytes alone, before anything is allocated.
    TooLarge { len: u64, max: usize },
    /// A complete payload that is not a valid message.
    Decode(DecodeError),
    /// The stream ended in the middle of a frame.
    Truncated { buffered: usize },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max} bytes")
            }
            FrameError::Decode(e) => e.fmt(f),
            FrameError::Truncated { buffered } => write!(
                f,
                "connection closed in the middle of a frame ({buffered} bytes of it received)"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<DecodeError> for FrameError {
    fn from(e: DecodeError) -> Self {
        FrameError::Decode(e)
    }
}

/// An incremental frame decoder for non-blocking sockets.
///
/// Feed it whatever arrived — one byte, half a header, ten frames at once —
/// and take out whole messages. Incomplete input yields `Ok(None)` ("not
/// yet"), never an error. Memory stays bounded by the frame limit plus one
/// read chunk, as long as the caller takes frames out between reads.
///
/// ```
/// use rexec_proto::{ClientMsg, FrameDecoder, encode_frame};
/// let mut wire = Vec::new();
/// encode_frame(&ClientMsg::Cancel { id: 1 }, &mut wire);
/// encode_frame(&ClientMsg::Cancel { id: 2 }, &mut wire);
///
/// let mut dec = FrameDecoder::new();
/// dec.feed(&wire[..3]); // half a header: not yet
/// assert_eq!(dec.next_message::<ClientMsg>(), Ok(None));
/// dec.feed(&wire[3..]); // the rest, and the whole second frame: sticky
/// assert_eq!(dec.next_message(), Ok(Some(ClientMsg::Cancel { id: 1 })));
/// assert_eq!(dec.next_message(), Ok(Some(ClientMsg::Cancel { id: 2 })));
/// assert_eq!(dec.next_message::<ClientMsg>(), Ok(None));
/// ```
#[derive(Debug)]
pub struct FrameDecoder {
    /// Bytes `pos..end` are received and not yet consumed; `end..` is spare
    /// room that was zeroed once when the buffer grew.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    max_frame: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder with the default 1 MiB payload limit.
    pub fn new() -> Self {
        Self::with_max_frame(DEFAULT_MAX_FRAME)
    }

    /// A decoder that refuses payloads above `max_frame` bytes (capped at
    /// [`MAX_FRAME_LIMIT`]).
    pub fn with_max_frame(max_frame: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            pos: 0,
            end: 0,
            max_frame: max_frame.min(MAX_FRAME_LIMIT),
        }
    }

    /// The payload limit in force.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Bytes received but not yet taken out as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.pos
    }

    /// The received bytes not yet taken out.
    pub fn buffered_bytes(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// Bytes of memory the buffer holds.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.make_room(data.len());
        self.buf[self.end..self.end + data.len()].copy_from_slice(data);
        self.end += data.len();
    }

    /// Makes sure at least `n` bytes of spare room follow the buffered data,
    /// so that [`FrameDecoder::read_from`] can take that much in one read.
    pub fn reserve(&mut self, n: usize) {
        self.make_room(n);
    }

    /// Does one `read` from `r` straight into the buffer (no intermediate
    /// copy), into all the spare room there is (at least 64 KiB). Returns
    /// what `read` returned: `Ok(0)` is end of stream.
    pub fn read_from<R: Read + ?Sized>(&mut self, r: &mut R) -> io::Result<usize> {
        self.make_room(READ_CHUNK);
        let n = r.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Like [`FrameDecoder::read_from`], asking for at most `max` bytes: a
    /// reader that wants to take a large frame's data some other way reads
    /// little more than its header.
    pub fn read_from_at_most<R: Read + ?Sized>(
        &mut self,
        r: &mut R,
        max: usize,
    ) -> io::Result<usize> {
        self.make_room(max);
        let n = r.read(&mut self.buf[self.end..self.end + max])?;
        self.end += n;
        Ok(n)
    }

    /// When the buffered bytes are the beginning of an output frame that is
    /// not whole yet (its header and data prefix are here, some data may
    /// be), the part received and how much is missing. The caller may then
    /// move the missing bytes itself (the client splices them from the socket
    /// to stdout) and call [`FrameDecoder::discard_partial`].
    pub fn partial_output(&self) -> Option<PartialOutput<'_>> {
        let (stream, id, data, remaining) = self.partial(payload::decode_output_prefix)?;
        Some(PartialOutput {
            stream,
            id,
            data,
            remaining,
        })
    }

    /// The same for a client's `Stdin` frame: the server moves the missing
    /// bytes from the socket straight into the command's pipe.
    pub fn partial_stdin(&self) -> Option<PartialStdin<'_>> {
        let ((), id, data, remaining) = self.partial(|p| {
            payload::decode_stdin_prefix(p).map(|(id, len, used)| ((), id, len, used))
        })?;
        Some(PartialStdin {
            id,
            data,
            remaining,
        })
    }

    /// The buffered start of a frame whose payload `prefix` reads as
    /// `(kind, id, data length, prefix length)`, when the frame is not
    /// whole: its kind, id, the data here, and the data still to come.
    fn partial<K>(
        &self,
        prefix: impl Fn(&[u8]) -> Option<(K, u32, u64, usize)>,
    ) -> Option<(K, u32, &[u8], usize)> {
        let buf = &self.buf[self.pos..self.end];
        let header = buf.first_chunk::<HEADER_LEN>()?;
        let len = u32::from_be_bytes(*header) as usize;
        if len > self.max_frame || buf.len() >= HEADER_LEN + len {
            return None;
        }
        let (kind, id, data_len, used) = prefix(&buf[HEADER_LEN..])?;
        if usize::try_from(data_len).ok()? != len.checked_sub(used)? {
            return None;
        }
        let data = &buf[HEADER_LEN + used..];
        Some((kind, id, data, len - used - data.len()))
    }

    /// Drops the partly received frame that [`FrameDecoder::partial_output`]
    /// or [`FrameDecoder::partial_stdin`] described; its missing bytes are
    /// the caller's to consume.
    pub fn discard_partial(&mut self) {
        if self.partial_output().is_some() || self.partial_stdin().is_some() {
            self.pos = 0;
            self.end = 0;
        }
    }

    /// Releases memory when the buffer is empty and has grown large.
    pub fn shrink_if_idle(&mut self) {
        if self.pos == self.end && self.buf.len() > 2 * READ_CHUNK {
            self.buf = Vec::new();
            self.pos = 0;
            self.end = 0;
        }
    }

    fn make_room(&mut self, want: usize) {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        }
        if self.buf.len() - self.end >= want {
            return;
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.buf.len() - self.end < want {
            self.buf.resize(self.end + want, 0);
        }
    }

    /// How many bytes the frame at the front still lacks, once its header
    /// is here (0 when it is whole): a reader may ask for exactly that
    /// many, so that its reads end where frames do and nothing buffered
    /// ever has to be moved.
    pub fn missing(&self) -> Option<usize> {
        let buf = &self.buf[self.pos..self.end];
        let len = u32::from_be_bytes(*buf.first_chunk::<HEADER_LEN>()?) as usize;
        Some((HEADER_LEN + len).saturating_sub(buf.len()))
    }

    /// The payload length of the next frame if it is wholly buffered, without
    /// taking it out.
    pub fn frame_ready(&self) -> Result<Option<usize>, FrameError> {
        Ok(parse_frame(&self.buf[self.pos..self.end], self.max_frame)?
            .map(|(_, used)| used - HEADER_LEN))
    }

    /// Takes out the next whole frame's payload, if one is buffered.
    pub fn next_payload(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let Some((_, used)) = parse_frame(&self.buf[self.pos..self.end], self.max_frame)? else {
            return Ok(None);
        };
        let start = self.pos + HEADER_LEN;
        self.pos += used;
        Ok(Some(&self.buf[start..self.pos]))
    }

    /// The next whole frame, if it is a client's `ChannelData`: its channel
    /// and its data, borrowed where they are (left in the buffer; see
    /// [`FrameDecoder::skip_frame`]).
    pub fn front_channel_data(&self) -> Option<(u32, &[u8])> {
        let (_, used) = parse_frame(&self.buf[self.pos..self.end], self.max_frame).ok()??;
        payload::decode_client_channel_data(&self.buf[self.pos + HEADER_LEN..self.pos + used])
    }

    /// Drops the next whole frame, if one is buffered.
    pub fn skip_frame(&mut self) {
        if let Ok(Some((_, used))) = parse_frame(&self.buf[self.pos..self.end], self.max_frame) {
            self.pos += used;
        }
    }

    /// Takes out and decodes the next whole message, if one is buffered.
    pub fn next_message<M: DeserializeOwned>(&mut self) -> Result<Option<M>, FrameError> {
        match self.next_payload()? {
            None => Ok(None),
            Some(p) => Ok(Some(payload::decode(p)?)),
        }
    }

    /// Takes out the next frame if it is a keepalive probe (`Ping` or
    /// `Pong`): a client answers those itself, before any caller sees a
    /// frame (and so without holding a borrow of the buffer).
    pub fn next_probe(&mut self) -> Result<Option<ServerMsg>, FrameError> {
        self.next_server_msg_if(payload::is_probe)
    }

    /// Takes out the next frame if it is about a forwarded channel
    /// (protocol 8): a client hands those to its forwarder, as it answers
    /// probes, before any caller sees a frame.
    pub fn next_channel_msg(&mut self) -> Result<Option<ServerMsg>, FrameError> {
        self.next_server_msg_if(payload::is_channel)
    }

    /// Takes out and decodes the next frame if its payload passes `kind`.
    fn next_server_msg_if(
        &mut self,
        kind: fn(&[u8]) -> bool,
    ) -> Result<Option<ServerMsg>, FrameError> {
        let Some((_, used)) = parse_frame(&self.buf[self.pos..self.end], self.max_frame)? else {
            return Ok(None);
        };
        let payload = &self.buf[self.pos + HEADER_LEN..self.pos + used];
        if !kind(payload) {
            return Ok(None);
        }
        let msg = payload::decode::<ServerMsg>(payload)?;
        self.pos += used;
        Ok(Some(msg))
    }

    /// Takes out the next server frame; `Stdout` / `Stderr` data is borrowed
    /// from the buffer instead of copied (the client's hot path).
    pub fn next_server_event(&mut self) -> Result<Option<ServerEvent<'_>>, FrameError> {
        let Some(p) = self.next_payload()? else {
            return Ok(None);
        };
        if let Some((stream, id, data)) = payload::decode_output(p) {
            return Ok(Some(ServerEvent::Output { stream, id, data }));
        }
        Ok(Some(ServerEvent::Msg(payload::decode::<ServerMsg>(p)?)))
    }

    /// Call at end of stream: a partly received frame is an error, not a
    /// clean close.
    pub fn finish(&self) -> Result<(), FrameError> {
        match self.buffered() {
            0 => Ok(()),
            buffered => Err(FrameError::Truncated { buffered }),
        }
    }
}
