//! Payload encoding: the one module that knows the serialization library.
//!
//! Payloads are bincode 2 (`=2.0.1`, serde integration) with its standard
//! configuration: little-endian, variable-length integers, enum variants as
//! their index. bincode is unmaintained (RUSTSEC-2025-0141), so nothing else
//! in the workspace names it: replacing it means rewriting this file only.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::limits::MAX_FRAME_LIMIT;
use crate::message::OutputStream;

/// bincode's own allocation guard: no single decode may claim more bytes than
/// the largest frame rexec ever accepts. (The frame length check comes first
/// and is ours; this only stops a small payload from *claiming* a huge vector.)
type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_FRAME_LIMIT>,
>;

const CONFIG: Config = bincode::config::standard().with_limit::<MAX_FRAME_LIMIT>();

/// A payload that could not be decoded into a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "undecodable payload: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Appends the encoding of `msg` to `out`.
pub fn encode_into<M: Serialize>(msg: &M, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail, and every rexec message is serializable
    // (no maps with non-string keys, no sequences of unknown length).
    if let Err(e) = bincode::serde::encode_into_std_write(msg, out, CONFIG) {
        unreachable!("encoding a rexec message into memory failed: {e}");
    }
}

/// Decodes exactly one message from `bytes`; trailing bytes are an error.
pub fn decode<M: DeserializeOwned>(bytes: &[u8]) -> Result<M, DecodeError> {
    let (msg, used) =
        bincode::serde::decode_from_slice(bytes, CONFIG).map_err(|e| DecodeError(e.to_string()))?;
    if used != bytes.len() {
        return Err(DecodeError(format!(
            "{} trailing bytes after the message",
            bytes.len() - used
        )));
    }
    Ok(msg)
}

/// Decodes exactly one value from `bytes`, borrowing from them: byte
/// strings come out as slices of `bytes`, not copies.
pub fn decode_borrowed<'a, M: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<M, DecodeError> {
    let (msg, used) = bincode::serde::borrow_decode_from_slice(bytes, CONFIG)
        .map_err(|e| DecodeError(e.to_string()))?;
    if used != bytes.len() {
        return Err(DecodeError(format!(
            "{} trailing bytes after the message",
            bytes.len() - used
        )));
    }
    Ok(msg)
}

/// The variant indexes of `ServerMsg::Ping` and `ServerMsg::Pong`, which
/// are their payloads' first byte (a varint below 251 is one byte).
const PROBE_VARIANTS: [u8; 2] = [6, 7];

/// Whether a server payload is a keepalive probe (`Ping` or `Pong`), told by
/// its first byte without decoding the rest.
pub fn is_probe(payload: &[u8]) -> bool {
    payload.first().is_some_and(|b| PROBE_VARIANTS.contains(b))
}

/// The variant indexes of the server's channel messages (protocol 8):
/// `Opened` to `ChannelClose`.
const CHANNEL_VARIANTS: std::ops::RangeInclusive<u8> = 11..=17;

/// Whether a server payload is about a forwarded channel, told by its
/// first byte.
pub fn is_channel(payload: &[u8]) -> bool {
    payload
        .first()
        .is_some_and(|b| CHANNEL_VARIANTS.contains(b))
}

/// Appends the payload of `ServerMsg::Stdout { id, data }` (or `Stderr`)
/// without building the message first, so an output chunk is copied once,
/// straight from the read buffer into `out`.
///
/// The encoding is identical to that of the enum variant: bincode writes a
/// struct variant as its variant index followed by its fields, which is what
/// this tuple serializes to. A test checks the two never differ.
pub fn encode_output_into(stream: OutputStream, id: u32, data: &[u8], out: &mut Vec<u8>) {
    encode_into(
        &(output_variant(stream), id, serde_bytes::Bytes::new(data)),
        out,
    );
}

/// Variant indices of `ServerMsg::Stdout` and `ServerMsg::Stderr`.
fn output_variant(stream: OutputStream) -> u32 {
    match stream {
        OutputStream::Stdout => 2,
        OutputStream::Stderr => 3,
    }
}

/// Appends what [`encode_output_into`] writes *before* the data of a
/// `len`-byte chunk, for data that reaches the socket without passing
/// through this process (spliced from a pipe). bincode writes a byte string
/// as its length (a varint `u64`) followed by the bytes, so the prefix is the
/// encoding of `(variant, id, len)`.
pub fn encode_output_prefix(stream: OutputStream, id: u32, len: usize, out: &mut Vec<u8>) {
    encode_data_prefix(output_variant(stream), id, len, out);
}

/// Appends what a `ClientMsg::Stdin` of a `len`-byte chunk holds before its
/// data, as [`encode_output_prefix`] does for output: the client writes
/// it, then the data from where it already is (no message built around a
/// copy of it).
pub fn encode_stdin_prefix(id: u32, len: usize, out: &mut Vec<u8>) {
    encode_data_prefix(u32::from(STDIN_VARIANT), id, len, out);
}

/// Variant indices of `ServerMsg::ChannelData` and `ClientMsg::ChannelData`.
const SERVER_CHANNEL_DATA: u32 = 14;
const CLIENT_CHANNEL_DATA: u32 = 17;

/// Appends the payload of a `ChannelData { id, data }` (the server's when
/// `from_server`, else the client's) straight from `data`, as
/// [`encode_output_into`] does for output: a forwarded chunk is copied
/// once, from the read buffer into the queue.
pub fn encode_channel_data_into(from_server: bool, id: u32, data: &[u8], out: &mut Vec<u8>) {
    let variant = match from_server {
        true => SERVER_CHANNEL_DATA,
        false => CLIENT_CHANNEL_DATA,
    };
    encode_into(&(variant, id, serde_bytes::Bytes::new(data)), out);
}

/// What [`encode_channel_data_into`] writes before the data of a
/// `len`-byte chunk, for data sent from where it is (a vectored write).
pub fn encode_channel_data_prefix(from_server: bool, id: u32, len: usize, out: &mut Vec<u8>) {
    let variant = match from_server {
        true => SERVER_CHANNEL_DATA,
        false => CLIENT_CHANNEL_DATA,
    };
    encode_data_prefix(variant, id, len, out);
}

/// Reads a whole `ClientMsg::ChannelData` payload without copying its
/// data: the channel's id and the data, borrowed. `None` for any other
/// message, or one whose length does not add up.
pub fn decode_client_channel_data(bytes: &[u8]) -> Option<(u32, &[u8])> {
    if bytes.first() != Some(&(CLIENT_CHANNEL_DATA as u8)) {
        return None;
    }
    let (id, len, used) = decode_data_prefix(bytes)?;
    let data = bytes.get(used..)?;
    (data.len() as u64 == len).then_some((id, data))
}

/// `(variant, id, data length)`: how a data message starts.
fn encode_data_prefix(variant: u32, id: u32, len: usize, out: &mut Vec<u8>) {
    encode_into(&(variant, id, len as u64), out);
}

/// Reads the start of a `Stdout` / `Stderr` payload: its stream, id, data
/// length and how many bytes precede the data. `None` when `bytes` does not
/// (yet) hold the whole prefix of an output message.
pub fn decode_output_prefix(bytes: &[u8]) -> Option<(OutputStream, u32, u64, usize)> {
    let stream = match bytes.first() {
        Some(2) => OutputStream::Stdout,
        Some(3) => OutputStream::Stderr,
        _ => return None,
    };
    let (id, len, used) = decode_data_prefix(bytes)?;
    Some((stream, id, len, used))
}

/// Variant index of `ClientMsg::Stdin`.
const STDIN_VARIANT: u8 = 2;

/// Reads the start of a `ClientMsg::Stdin` payload, as
/// [`decode_output_prefix`] does for output: the command's id, the data
/// length and how many bytes precede the data. The server uses it to move a
/// large chunk's data from the socket to the command's pipe without reading
/// it (a `Stdin` is a variant index, the id, then a byte string, exactly
/// like an output message).
pub fn decode_stdin_prefix(bytes: &[u8]) -> Option<(u32, u64, usize)> {
    if bytes.first() != Some(&STDIN_VARIANT) {
        return None;
    }
    decode_data_prefix(bytes)
}

/// `(variant, id, data length)` and the bytes they took.
fn decode_data_prefix(bytes: &[u8]) -> Option<(u32, u64, usize)> {
    let ((_, id, len), used): ((u32, u32, u64), usize) =
        bincode::serde::decode_from_slice(bytes, CONFIG).ok()?;
    Some((id, len, used))
}

/// Decodes a `ServerMsg::Stdout` / `Stderr` payload without copying its data:
/// the returned slice points into `bytes`. `None` when the payload is not a
/// well-formed output message (decode it with [`decode`] to learn why).
pub fn decode_output(bytes: &[u8]) -> Option<(OutputStream, u32, &[u8])> {
    let stream = match bytes.first() {
        Some(2) => OutputStream::Stdout,
        Some(3) => OutputStream::Stderr,
        _ => return None,
    };
    let ((_, id, data), used): ((u32, u32, &[u8]), usize) =
        bincode::serde::borrow_decode_from_slice(bytes, CONFIG).ok()?;
    (used == bytes.len()).then_some((stream, id, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ErrorKind, ErrorMsg, ServerMsg};

    #[test]
    fn probes_are_told_by_their_first_byte_and_nothing_else_is() {
        let bytes = |m: &ServerMsg| {
            let mut v = Vec::new();
            encode_into(m, &mut v);
            v
        };
        assert!(is_probe(&bytes(&ServerMsg::Ping { seq: 300 })));
        assert!(is_probe(&bytes(&ServerMsg::Pong { seq: 1 })));
        for m in [
            ServerMsg::Opened {
                id: 1,
                peer: "x".into(),
            },
            ServerMsg::Listening {
                id: 1,
                result: Ok(1),
            },
            ServerMsg::Accepted {
                listen: 1,
                id: 2,
                from: "y".into(),
            },
            ServerMsg::ChannelData {
                id: 1,
                data: vec![1],
            },
            ServerMsg::ChannelAck { id: 1, bytes: 2 },
            ServerMsg::ChannelEof { id: 1 },
            ServerMsg::ChannelClose { id: 1, error: None },
        ] {
            assert!(is_channel(&bytes(&m)), "{m:?}");
            assert!(!is_probe(&bytes(&m)), "{m:?}");
        }
        assert!(!is_channel(&bytes(&ServerMsg::KeyAccepted)));
        assert!(!is_channel(&bytes(&ServerMsg::AuthMethods {
            token: true,
            keys: true
        })));
        let others = [
            ServerMsg::Started { id: 6, pid: 7 },
            ServerMsg::Stdout {
                id: 6,
                data: vec![6, 7],
            },
            ServerMsg::Error(ErrorMsg {
                id: Some(6),
                kind: ErrorKind::Limit,
                message: "x".into(),
            }),
        ];
        for m in &others {
            assert!(!is_probe(&bytes(m)), "{m:?}");
        }
    }

    #[test]
    fn a_stdin_prefix_is_read_from_the_real_message_and_only_from_it() {
        use crate::message::ClientMsg;
        for (id, n) in [(1u32, 0usize), (300, 250), (70_000, 256 * 1024)] {
            let mut v = Vec::new();
            encode_into(
                &ClientMsg::Stdin {
                    id,
                    data: vec![9; n],
                },
                &mut v,
            );
            let (got_id, len, used) = decode_stdin_prefix(&v).unwrap();
            assert_eq!((got_id, len as usize), (id, n));
            assert_eq!(used + n, v.len());
            assert!(v[used..].iter().all(|&b| b == 9));
            // Only the prefix is needed.
            assert_eq!(decode_stdin_prefix(&v[..used]), Some((id, n as u64, used)));
            assert_eq!(decode_stdin_prefix(&v[..used - 1]), None);
        }
        let mut other = Vec::new();
        encode_into(&ClientMsg::StdinEof { id: 1 }, &mut other);
        assert_eq!(decode_stdin_prefix(&other), None);
    }

    #[test]
    fn channel_data_encoded_from_where_it_is_is_the_message() {
        use crate::message::ClientMsg;
        for (id, n) in [(1u32, 0usize), (0x8000_0001, 250), (70_000, 64 * 1024)] {
            let data = vec![5u8; n];
            let mut server = Vec::new();
            encode_into(
                &ServerMsg::ChannelData {
                    id,
                    data: data.clone(),
                },
                &mut server,
            );
            let mut fast = Vec::new();
            encode_channel_data_into(true, id, &data, &mut fast);
            assert_eq!(fast, server);
            let mut client = Vec::new();
            encode_into(
                &ClientMsg::ChannelData {
                    id,
                    data: data.clone(),
                },
                &mut client,
            );
            fast.clear();
            encode_channel_data_into(false, id, &data, &mut fast);
            assert_eq!(fast, client);
        }
    }

    #[test]
    fn channel_data_is_read_in_place_and_nothing_else_is() {
        use crate::message::ClientMsg;
        for (id, n) in [(1u32, 0usize), (300, 250), (0x7fff_ffff, 256 * 1024)] {
            let mut v = Vec::new();
            encode_into(
                &ClientMsg::ChannelData {
                    id,
                    data: vec![4; n],
                },
                &mut v,
            );
            let (got, data) = decode_client_channel_data(&v).unwrap();
            assert_eq!((got, data.len()), (id, n));
            assert!(data.iter().all(|&b| b == 4));
            assert_eq!(
                decode_client_channel_data(&v[..v.len() - 1]).filter(|_| n > 0),
                None
            );
        }
        for other in [
            ClientMsg::ChannelEof { id: 1 },
            ClientMsg::Stdin {
                id: 1,
                data: vec![1],
            },
        ] {
            let mut v = Vec::new();
            encode_into(&other, &mut v);
            assert_eq!(decode_client_channel_data(&v), None, "{other:?}");
        }
    }

    #[test]
    fn a_stdin_prefix_and_its_data_are_the_whole_message() {
        use crate::message::ClientMsg;
        for (id, n) in [(1u32, 0usize), (300, 250), (70_000, 256 * 1024)] {
            let data = vec![7u8; n];
            let mut whole = Vec::new();
            encode_into(
                &ClientMsg::Stdin {
                    id,
                    data: data.clone(),
                },
                &mut whole,
            );
            let mut split = Vec::new();
            encode_stdin_prefix(id, n, &mut split);
            split.extend_from_slice(&data);
            assert_eq!(split, whole);
        }
        let mut other = Vec::new();
        encode_into(&ClientMsg::StdinEof { id: 1 }, &mut other);
        assert_eq!(decode_stdin_prefix(&other), None);
    }
}
