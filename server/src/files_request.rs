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

use crate::files_path::TransferError;
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
}

/// One frame on a helper's stdin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum HelperMsg {
    /// Always first, once.
    Request {
        request: Request,
        /// Where paths are resolved beneath (`--files-root`), if anywhere.
        root: Option<Vec<u8>>,
    },
    /// A put's bytes, as the client sent them.
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A put's end: the SHA-256 the client computed over its data.
    End {
        #[serde(with = "serde_bytes")]
        sha256: Vec<u8>,
    },
}

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
}

/// The helper's end of its stdin: frames in, messages out.
pub(crate) struct HelperInput {
    stdin: io::Stdin,
    decoder: FrameDecoder,
    buf: Vec<u8>,
}

impl HelperInput {
    pub(crate) fn new() -> HelperInput {
        HelperInput {
            stdin: io::stdin(),
            decoder: FrameDecoder::with_max_frame(MAX_FRAME_LIMIT),
            buf: vec![0; 256 * 1024],
        }
    }

    /// The next message; `None` once stdin has ended between frames.
    pub(crate) fn next(&mut self) -> Result<Option<HelperMsg>, TransferError> {
        loop {
            match self.decoder.next_message::<HelperMsg>() {
                Ok(Some(m)) => return Ok(Some(m)),
                Ok(None) => {}
                Err(e) => return Err(TransferError::Request(e.to_string())),
            }
            match self.stdin.read(&mut self.buf) {
                Ok(0) => {
                    return match self.decoder.finish() {
                        Ok(()) => Ok(None),
                        Err(e) => Err(TransferError::Request(e.to_string())),
                    };
                }
                Ok(n) => self.decoder.feed(&self.buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(TransferError::Io {
                        what: "reading from rexecd".into(),
                        source,
                    });
                }
            }
        }
    }

    /// The request that opens the stream, with the files root.
    pub(crate) fn request(&mut self) -> Result<(Request, Option<OsString>), TransferError> {
        match self.next()? {
            Some(HelperMsg::Request { request, root }) => {
                Ok((request, root.map(OsString::from_vec)))
            }
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
            },
            HelperMsg::Data(b"hello".to_vec()),
            HelperMsg::End {
                sha256: vec![7; 32],
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

    #[test]
    fn data_encoded_in_place_is_the_data_message() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        HelperMsg::Data(b"some bytes".to_vec()).encode(&mut a);
        HelperMsg::encode_data(b"some bytes", &mut b);
        assert_eq!(a, b);
    }
}
