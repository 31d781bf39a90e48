//! Frame sizes. Both the framing (`frame.rs`) and the payload codec
//! (`payload.rs`, which must not let a payload claim more) depend on them;
//! this file imports nothing, so neither depends on the other for them.

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 4;

/// Default largest payload accepted: 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// The largest payload limit that may be configured: 16 MiB.
pub const MAX_FRAME_LIMIT: usize = 16 << 20;
