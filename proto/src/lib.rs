//! The rexec wire format, and nothing else: no sockets live here.
//!
//! TCP delivers a byte stream, not messages. Two writes may arrive as one read
//! and one write may arrive in many reads (the "sticky packet" problem of the
//! socket tutorials). rexec therefore puts every message in a *frame*:
//!
//! ```text
//! +----------------------+-----------------------------+
//! | length: u32, big-end | payload: `length` bytes     |
//! +----------------------+-----------------------------+
//! ```
//!
//! The payload is one [`ClientMsg`] or [`ServerMsg`] encoded by the
//! [`payload`] module. [`FrameDecoder`] accepts bytes split anywhere and hands
//! back whole messages; [`encode_frame`] appends a frame to an output buffer.
//! The tutorials' own protocols live in [`tutorial`], for compatibility and
//! teaching. `docs/PROTOCOL.md` is the byte-level specification.

pub mod auth;
pub mod checksum;
pub mod frame;
pub mod keyauth;
pub mod limits;
pub mod message;
pub mod payload;
pub mod text;
pub mod tutorial;

pub use checksum::{BLAKE3_PROTOCOL, Checksum, DIGEST_LEN, Hasher};
pub use frame::{
    DEFAULT_MAX_FRAME, FrameDecoder, FrameError, HEADER_LEN, MAX_FRAME_LIMIT, OUTPUT_HEADER_MAX,
    PartialOutput, PartialStdin, encode_channel_data_frame, encode_channel_data_header,
    encode_frame, encode_output_frame, encode_output_header, encode_stdin_header, frame_header,
    parse_frame,
};
pub use message::{
    ADDRESS_BINDING_PROTOCOL, AUTH_METHODS_PROTOCOL, BATCH_FRAME_MAX, BATCH_PROTOCOL, BatchItem,
    CHANNEL_CHUNK, CHANNEL_WINDOW, ClientHello, ClientMsg, ErrorKind, ErrorMsg, Exec, ExecMode,
    ExitStatus, Exited, FORWARDING_PROTOCOL, GET_HEADER_LEN, JOBS_PROTOCOL, JobVerb,
    KEEPALIVE_PROTOCOL, KEY_AUTH_PROTOCOL, OLDEST_PROTOCOL, OutputStream, PROTOCOL_VERSION,
    PUT_READY, PtyRequest, Put, PutWhat, SERVER_CHANNEL, SYNC_PROTOCOL, ServerEvent, ServerHello,
    ServerMsg, TreeOp,
};
pub use payload::DecodeError;

/// The port rexecd listens on, and rexec connects to, when none is given.
pub const DEFAULT_PORT: u16 = 7070;

/// The software version of this build, sent in both hellos.
pub const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");
