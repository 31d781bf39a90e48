//! What rexecd tells a file-transfer helper (files.rs), typed end to end:
//! the helper reads frames on its stdin, in the framing of
//! docs/PROTOCOL.md. First a [`HelperMsg::Request`] (the client's own
//! `Put`, or the path of a get or a list, and the files root), then for a
//! put its data and, apart from the data, the client's checksum. Nothing
//! travels as command-line text to be parsed back.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::ffi::OsStringExt;

use rexec_proto::{FrameDecoder, MAX_FRAME_LIMIT, Put};

use crate::helpers::files_path::TransferError;
use serde::{Deserialize, Serialize};

/// What a helper is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Write what the client's `Put` describes (its data follows as
    /// [`HelperMsg::Data`], then [`HelperMsg::End`]).
    Put(Put),
    /// Send a file (`__get` in docs/PROTOCOL.md).
    Get(#[serde(with = "serde_bytes")] Vec<u8>),
    /// List a tree.
    List(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Describe a tree with sizes, times and modes (`rexec sync`); with
    /// `true`, each file's digest too.
    Scan(#[serde(with = "serde_bytes")] Vec<u8>, bool),
    /// Remove one entry (`rexec sync --delete`).
    Remove(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// What a helper is asked, as it opens.
#[derive(Debug)]
pub(crate) struct Opening {
    pub request: Request,
    pub root: Option<OsString>,
    pub checksum: rexec_proto::Checksum,
}

/// One frame on a helper's stdin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum HelperMsg {
    /// Always first, once.
    Request {
        request: Request,
        /// Where paths are resolved beneath (`--files-root`), if anywhere.
        root: Option<Vec<u8>>,
        /// The hash that checks the copy (the client's protocol decides).
        checksum: rexec_proto::Checksum,
    },
    /// A put's bytes, as the client sent them.
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A put's end: the digest the client computed over its data.
    End {
        #[serde(with = "serde_bytes")]
        digest: Vec<u8>,
    },
}

/// The variant index of [`HelperMsg::Data`] (checked by a test).
const DATA_VARIANT: u8 = 1;

impl HelperMsg {
    /// The frame rexecd queues on the helper's stdin.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        rexec_proto::encode_frame(self, out);
    }

    /// The frame of `HelperMsg::Data(data)`, encoded from the client's
    /// bytes where they are (no message built around a copy of them).
    pub(crate) fn encode_data(data: &[u8], out: &mut Vec<u8>) {
        /// `HelperMsg` as the wire sees it, up to `Data`: the same variant
        /// indexes (checked by a test).
        #[derive(Serialize)]
        enum Borrowed<'a> {
            _Request,
            Data(#[serde(with = "serde_bytes")] &'a [u8]),
        }
        rexec_proto::encode_frame(&Borrowed::Data(data), out);
    }

    /// What [`HelperMsg::encode_data`] writes before the data of a
    /// `len`-byte chunk whose bytes rexecd moves into the pipe itself
    /// (spliced from the socket, splice_in.rs): the frame header, the
    /// variant, and the byte string's length, which is how bincode starts
    /// `Data(bytes)`.
    pub(crate) fn encode_data_header(len: usize, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; rexec_proto::HEADER_LEN]);
        rexec_proto::payload::encode_into(&(u32::from(DATA_VARIANT), len as u64), out);
        let payload = out.len() - start - rexec_proto::HEADER_LEN + len;
        out[start..start + rexec_proto::HEADER_LEN]
            .copy_from_slice(&rexec_proto::frame_header(payload));
    }
}

/// The helper's end of its stdin: frames in, messages out.
pub(crate) struct HelperInput<R = io::Stdin> {
    stdin: R,
    decoder: FrameDecoder,
}

/// A frame from rexecd, with a put's data borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming<'a> {
    Data(&'a [u8]),
    Msg(HelperMsg),
}

impl HelperInput {
    pub(crate) fn new() -> HelperInput {
        HelperInput::from_reader(io::stdin())
    }
}

impl<R: Read> HelperInput<R> {
    pub(crate) fn from_reader(stdin: R) -> HelperInput<R> {
        HelperInput {
            stdin,
            decoder: FrameDecoder::with_max_frame(MAX_FRAME_LIMIT),
        }
    }

    /// The next message; `None` once stdin has ended between frames.
    ///
    /// A put's data is the bulk of what arrives, so it is read straight
    /// into the decoder, a frame's missing bytes exactly (no read runs past
    /// a frame's end, so no partial frame is ever moved), and handed out
    /// where it lies.
    pub(crate) fn next(&mut self) -> Result<Option<Incoming<'_>>, TransferError> {
        let bad = |e: rexec_proto::FrameError| TransferError::Request(e.to_string());
        while self.decoder.frame_ready().map_err(bad)?.is_none() {
            let want = self
                .decoder
                .missing()
                .filter(|&n| n > 0)
                .unwrap_or(rexec_proto::frame::READ_CHUNK);
            match self.decoder.read_from_at_most(&mut self.stdin, want) {
                Ok(0) => return self.decoder.finish().map(|()| None).map_err(bad),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(TransferError::Io {
                        what: "reading from rexecd".into(),
                        source,
                    });
                }
            }
        }
        let Some(payload) = self.decoder.next_payload().map_err(bad)? else {
            return Err(TransferError::Request("a frame went missing".into()));
        };
        if payload.first() == Some(&DATA_VARIANT)
            && let Ok((_, data)) = rexec_proto::payload::decode_borrowed::<(u32, &[u8])>(payload)
        {
            return Ok(Some(Incoming::Data(data)));
        }
        rexec_proto::payload::decode::<HelperMsg>(payload)
            .map(|m| Some(Incoming::Msg(m)))
            .map_err(|e| TransferError::Request(e.to_string()))
    }

    /// The request that opens the stream, with the files root and the
    /// hash.
    pub(crate) fn request(&mut self) -> Result<Opening, TransferError> {
        match self.next()? {
            Some(Incoming::Msg(HelperMsg::Request {
                request,
                root,
                checksum,
            })) => Ok(Opening {
                request,
                root: root.map(OsString::from_vec),
                checksum,
            }),
            _ => Err(TransferError::Request("no request".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_survives_the_frame_as_it_was() {
        let put = Put {
            id: 3,
            dest: b"dir/\xff name".to_vec(),
            name: b"x".to_vec(),
            size: 5,
            mkdirs: true,
            mode: Some(0o640),
            mtime: Some(-1),
            preserve: true,
            what: rexec_proto::PutWhat::Symlink(b"../t".to_vec()),
        };
        let msgs = [
            HelperMsg::Request {
                request: Request::Put(put),
                root: Some(b"/srv".to_vec()),
                checksum: rexec_proto::Checksum::Blake3,
            },
            HelperMsg::Data(b"hello".to_vec()),
            HelperMsg::End {
                digest: vec![7; 32],
            },
        ];
        let mut wire = Vec::new();
        for m in &msgs {
            m.encode(&mut wire);
        }
        let mut d = FrameDecoder::with_max_frame(MAX_FRAME_LIMIT);
        d.feed(&wire);
        for m in &msgs {
            assert_eq!(d.next_message::<HelperMsg>().unwrap().as_ref(), Some(m));
        }
        assert_eq!(d.next_message::<HelperMsg>().unwrap(), None);
    }

    /// A reader that hands out at most `max` bytes a read, and records
    /// how much each read asked for.
    struct Trickle<'a> {
        bytes: &'a [u8],
        max: usize,
        asked: Vec<usize>,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.asked.push(buf.len());
            let n = buf.len().min(self.max).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    #[test]
    fn data_comes_out_borrowed_and_reads_stop_at_frame_ends() {
        let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let mut wire = Vec::new();
        HelperMsg::Data(big.clone()).encode(&mut wire);
        HelperMsg::encode_data(b"tail", &mut wire);
        let end = HelperMsg::End {
            digest: vec![1; 32],
        };
        end.encode(&mut wire);
        for max in [1, 7, 4096, 1 << 20] {
            let mut r = Trickle {
                bytes: &wire,
                max,
                asked: Vec::new(),
            };
            let mut input = HelperInput::from_reader(&mut r);
            assert_eq!(input.next().unwrap(), Some(Incoming::Data(&big)));
            assert_eq!(input.next().unwrap(), Some(Incoming::Data(b"tail")));
            assert_eq!(input.next().unwrap(), Some(Incoming::Msg(end.clone())));
            assert_eq!(input.next().unwrap(), None);
            // Once a header is in, no read asks past that frame's end.
            let first = 4 + (big.len() + 6);
            assert!(r.asked.iter().all(|&n| n <= first), "{max}: {:?}", r.asked);
        }
        // A frame cut short is an error, not the end.
        let mut input = HelperInput::from_reader(&wire[..100]);
        assert!(input.next().is_err());
    }

    #[test]
    fn data_encoded_in_place_is_the_data_message() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        HelperMsg::Data(b"some bytes".to_vec()).encode(&mut a);
        HelperMsg::encode_data(b"some bytes", &mut b);
        assert_eq!(a, b);
        assert_eq!(a[rexec_proto::HEADER_LEN], DATA_VARIANT);
    }

    #[test]
    fn a_data_header_then_the_data_is_the_data_message() {
        for n in [0usize, 1, 250, 251, 65_536, 256 * 1024] {
            let data = vec![0xa5; n];
            let mut whole = Vec::new();
            HelperMsg::Data(data.clone()).encode(&mut whole);
            let mut spliced = Vec::new();
            HelperMsg::encode_data_header(n, &mut spliced);
            spliced.extend_from_slice(&data);
            assert_eq!(spliced, whole, "{n}");
        }
    }
}
