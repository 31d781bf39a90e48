//! The messages of the rexec protocol, one enum for each direction.
//!
//! These are plain externally tagged serde enums and structs on purpose:
//! serde's `skip`, `flatten`, `tag` and `untagged` attributes rely on
//! self-describing formats and silently lose data under bincode. Variant
//! order is part of the wire format (bincode writes the variant index), so new
//! variants go at the end and existing ones never move.

use serde::{Deserialize, Serialize};

/// Protocol version spoken by this build; see `docs/PROTOCOL.md` for the
/// rules. Version 4 added keepalive probes (`Ping`, `Pong`); version 5
/// public-key authentication (`AuthKey`, `KeyRefused`, `KeyAccepted`);
/// version 6 detached jobs (`Job`); version 7 binds a login over plain TCP
/// to the server's address ([`crate::auth::address_binding`]) and says
/// which ways in a server takes (`AuthMethods`); version 8 forwards TCP
/// ports over channels (`Open`, `Listen` and the `Channel*` messages);
/// version 9 checks copies with BLAKE3 instead of SHA-256
/// ([`crate::checksum`]); version 10 sends many files in one put
/// ([`PutWhat::Batch`]).
pub const PROTOCOL_VERSION: u16 = 10;

/// The oldest version this build still speaks: a version-3 peer is served
/// without keepalive probes. Older peers are refused with
/// [`ErrorKind::Version`].
pub const OLDEST_PROTOCOL: u16 = 3;

/// The first version with keepalive probes.
pub const KEEPALIVE_PROTOCOL: u16 = 4;

/// The first version with public-key authentication.
pub const KEY_AUTH_PROTOCOL: u16 = 5;

/// The first version with detached jobs.
pub const JOBS_PROTOCOL: u16 = 6;

/// The first version whose logins over plain TCP name the server's
/// address, so that they cannot be relayed: a server of this version or
/// later refuses an older client's login over plain TCP, and a client
/// refuses to log in to an older server over plain TCP.
pub const ADDRESS_BINDING_PROTOCOL: u16 = 7;

/// The first version whose server says which ways in it takes
/// ([`ServerMsg::AuthMethods`]).
pub const AUTH_METHODS_PROTOCOL: u16 = 7;

/// The first version with port forwarding: channels (`Open`, `Listen`,
/// `Accepted`, `Opened` and the `Channel*` messages). An older server would
/// fail to decode them and close the connection, so a client checks the
/// server's version before it sends one.
pub const FORWARDING_PROTOCOL: u16 = 8;

/// Bytes either side may send on a channel before the other acknowledges
/// them (`ChannelAck`): each side's buffer for a channel stays below it, so
/// a stalled channel holds at most this much and stalls nothing else.
pub const CHANNEL_WINDOW: u32 = 512 * 1024;

/// The largest `ChannelData` chunk either side sends.
pub const CHANNEL_CHUNK: usize = 256 * 1024;

/// Channel ids with this bit set are opened by the server (a connection to
/// a port it listens on for the client, `Listen`); the client opens the
/// others (`Open`). The two never collide.
pub const SERVER_CHANNEL: u32 = 0x8000_0000;

/// Messages a client sends to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// First message of every connection.
    Hello(ClientHello),
    /// Run a command.
    Exec(Exec),
    /// Bytes for a running command's standard input.
    Stdin {
        id: u32,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Close a running command's standard input.
    StdinEof { id: u32 },
    /// Stop a running command and everything it started.
    Cancel { id: u32 },
    /// The answer to the challenge in the server's hello.
    Auth {
        #[serde(with = "serde_bytes")]
        answer: Vec<u8>,
    },
    /// The client's terminal changed size: resize a command's pty.
    /// (Protocol 2.)
    Resize { id: u32, rows: u16, cols: u16 },
    /// Copy a file to the server (protocol 2): `size` bytes follow as
    /// `Stdin` chunks, then `PutEnd` with their digest (SHA-256, or BLAKE3
    /// when both ends speak protocol 9: [`crate::checksum`]). `dest` is a file
    /// path, or a directory to put `name` in.
    Put(Put),
    /// The digest of all the bytes of a `Put` (see `Put`); the file is
    /// renamed into place only if the server computed the same.
    PutEnd {
        id: u32,
        #[serde(with = "serde_bytes")]
        digest: Vec<u8>,
    },
    /// Copy a file from the server (protocol 2): it arrives as `Stdout`:
    /// a 20-byte header (size u64, mode u32, mtime i64, big-endian), the
    /// bytes, then their digest (as a `Put`'s).
    Get {
        id: u32,
        /// A path is bytes, as on Linux: any name, UTF-8 or not (protocol 3).
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
    },
    /// List the tree below the directory `path` (protocol 3), confined like
    /// a `Get`: its `Stdout` is one entry after another, each a kind byte
    /// (`f` file, `d` directory, `l` symlink), the path relative to `path`,
    /// and a NUL; a symlink's entry is followed by its target and a NUL.
    List {
        id: u32,
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
    },
    /// A keepalive probe (protocol 4): the server answers `Pong` with the
    /// same `seq`. Sent after a while of silence; never counts as activity.
    Ping { seq: u32 },
    /// The answer to the server's `Ping` (protocol 4).
    Pong { seq: u32 },
    /// Authenticate with a public key instead of a token (protocol 5): the
    /// key's signature over the bytes `keyauth::signed_data` gives. The
    /// server answers `KeyAccepted`, or `KeyRefused` (try another), or
    /// closes with `Error{Auth}` when no tries are left.
    AuthKey {
        /// The account asked for (the client's user name unless `explicit`).
        user: String,
        /// The user named the account (`user@host`): it must be that one.
        explicit: bool,
        /// The public key, SSH wire encoding.
        #[serde(with = "serde_bytes")]
        public_key: Vec<u8>,
        /// The signature, SSH wire encoding.
        #[serde(with = "serde_bytes")]
        signature: Vec<u8>,
    },
    /// A detached job's verb (protocol 6). It runs like a command with
    /// `exec.id`: `Started`, output, then `Exited`. For `Start`, `exec` is
    /// the command to run as a job; for the others only its `id` counts.
    Job { exec: Exec, verb: JobVerb },
    /// Open channel `id` (protocol 8): the server connects to `host:port`
    /// from its side (`rexec -L`) and answers `Opened`, or `ChannelClose`
    /// with the reason. Data may follow at once, within the window.
    Open { id: u32, host: String, port: u16 },
    /// Listen on `bind:port` on the server's side (protocol 8, `rexec
    /// -R`); answered with `Listening`. Each connection to it comes to the
    /// client as `Accepted`. `port` 0: one the kernel picks.
    Listen { id: u32, bind: String, port: u16 },
    /// Bytes for channel `id` (protocol 8), within the window the server
    /// has left the client.
    ChannelData {
        id: u32,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// `bytes` more of the server's data on channel `id` were delivered:
    /// the server may send that many more.
    ChannelAck { id: u32, bytes: u32 },
    /// The client's side of channel `id` sends nothing more (half-close).
    ChannelEof { id: u32 },
    /// Channel `id` is over (an error, or the client gave up on it); no
    /// answer comes, and messages for it still in flight are ignored.
    ChannelClose { id: u32, error: Option<String> },
    /// The client reached its target for channel `id`, which the server
    /// opened with `Accepted`: the server starts reading the connection.
    Opened { id: u32 },
    /// What `rexec sync` asks of a tree (protocol 9), confined like a
    /// `Get`: see [`TreeOp`].
    Tree {
        id: u32,
        #[serde(with = "serde_bytes")]
        path: Vec<u8>,
        op: TreeOp,
    },
}

/// What a `Tree` request does (protocol 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TreeOp {
    /// Describe `path` and everything below it, following no symlink: its
    /// `Stdout` is one entry after another, the first for `path` itself
    /// (with an empty name), each a kind byte (`f` file, `d` directory,
    /// `l` symlink, `o` anything else, `n` for a `path` that does not
    /// exist), the name relative to `path` and a NUL, then for `f` its
    /// size (u64), modification time (i64 seconds, u32 nanoseconds) and
    /// permission bits (u32), for `d` its permission bits, for `l` its
    /// target and a NUL (numbers big-endian).
    Scan,
    /// Remove the file or symlink `path`, or the directory `path` if it is
    /// empty.
    Remove,
    /// As `Scan`, with each file's digest (the copies' hash, 32 bytes)
    /// after its mode: `rexec sync --checksum`.
    ScanDigests,
}

/// The first version with `Tree` (`rexec sync`).
pub const SYNC_PROTOCOL: u16 = 9;

/// What a `Job` message asks for (protocol 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobVerb {
    /// Start `exec` as a job and end at once: its `Stdout` is the job's id
    /// and a newline.
    Start,
    /// The caller's jobs, one line each (`json`: one JSON object each).
    List { json: bool },
    /// The job's kept output from the beginning, then live until it ends;
    /// the `Exited` is the job's own status. A `Cancel` stops following and
    /// leaves the job running.
    Attach { job: u64 },
    /// End the job and everything it started.
    Kill { job: u64 },
    /// Remove the caller's finished jobs' records.
    Clean,
}

/// The one byte of `Stdout` a `Put` answers with once the server has
/// checked the destination and is ready for the data (protocol 3): the
/// client sends nothing before it, so a refused put costs a round trip.
pub const PUT_READY: u8 = 0x01;

/// Bytes of the header before a `Get`'s data: size u64, mode u32, mtime
/// i64, big-endian.
pub const GET_HEADER_LEN: usize = 20;

/// A file the client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Put {
    pub id: u32,
    /// Paths are bytes, as on Linux (protocol 3).
    #[serde(with = "serde_bytes")]
    pub dest: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    pub size: u64,
    /// Create the missing directories of `dest`.
    pub mkdirs: bool,
    /// The source's permission bits. With `preserve` they are set as
    /// they are; otherwise a new file gets them under the server's umask
    /// and a replaced file keeps its own (as with scp).
    pub mode: Option<u32>,
    /// Modification time to set, seconds since 1970 (`-p`).
    pub mtime: Option<i64>,
    /// `-p`: set `mode` and `mtime` exactly (protocol 3).
    pub preserve: bool,
    /// What `name` becomes (protocol 3): a file (the data follows), a
    /// directory, or a symlink; nothing follows for the last two.
    pub what: PutWhat,
}

/// What a `Put` makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum PutWhat {
    /// A regular file of `size` bytes.
    #[default]
    File,
    /// A directory (made if missing; with `preserve`, `mode` set on it).
    Dir,
    /// The top directory of a tree, as `cp -r` makes it: `dest/name` when
    /// `dest` is a directory, else `dest` itself. Its `Stdout` is the path
    /// it made, for the rest of the tree.
    TreeTop,
    /// A symlink with this target, as it is (never followed).
    Symlink(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Many files below the directory `dest` (protocol 10, `rexec sync`):
    /// the data is frames of [`BatchItem`], each file announced, then its
    /// bytes, then their digest; `size` and `name` are unused. One helper
    /// writes them all, each as a single put would (its own temporary
    /// file, renamed into place once its digest matches).
    Batch,
}

/// The first version with [`PutWhat::Batch`].
pub const BATCH_PROTOCOL: u16 = 10;

/// The largest frame of a batch's data: a file's bytes go in `Data` items
/// of at most this less a few bytes.
pub const BATCH_FRAME_MAX: usize = 256 * 1024;

/// One frame of a [`PutWhat::Batch`] put's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchItem {
    /// The next file: its path below the put's `dest` (plain names joined
    /// by `/`; its directories exist), its size, and what `Put` would say
    /// of its mode and mtime.
    File {
        #[serde(with = "serde_bytes")]
        name: Vec<u8>,
        size: u64,
        mode: Option<u32>,
        mtime: Option<i64>,
    },
    /// The next bytes of the current file.
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The end of the current file: the digest of its bytes.
    End {
        #[serde(with = "serde_bytes")]
        digest: Vec<u8>,
    },
    /// A directory below `dest` (its parent exists), made when missing;
    /// with the put's `preserve`, given this mode and, when there is one,
    /// this mtime (as a `Put` of a directory).
    Dir {
        #[serde(with = "serde_bytes")]
        name: Vec<u8>,
        mode: Option<u32>,
        mtime: Option<i64>,
    },
}

impl BatchItem {
    /// Appends the frame of `BatchItem::Data(data)`, encoded from `data`
    /// where it is (no item built around a copy of it): the bytes
    /// [`crate::encode_frame`] would write for the owned item.
    pub fn encode_data(data: &[u8], out: &mut Vec<u8>) -> usize {
        /// `BatchItem` as the wire sees it, up to `Data`: the same variant
        /// indexes (checked by a test).
        #[derive(Serialize)]
        enum Borrowed<'a> {
            _File,
            Data(#[serde(with = "serde_bytes")] &'a [u8]),
        }
        crate::encode_frame(&Borrowed::Data(data), out)
    }
}

/// Messages the server sends to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMsg {
    /// The answer to the client's hello.
    Hello(ServerHello),
    /// A command was spawned.
    Started { id: u32, pid: u32 },
    /// A chunk of a command's standard output.
    Stdout {
        id: u32,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// A chunk of a command's standard error.
    Stderr {
        id: u32,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// A command ended; no more output follows for its id.
    Exited(Exited),
    /// Something went wrong, for one command (`id` set) or the connection.
    Error(ErrorMsg),
    /// A keepalive probe (protocol 4): the client answers `Pong`.
    Ping { seq: u32 },
    /// The answer to the client's `Ping` (protocol 4).
    Pong { seq: u32 },
    /// That key was not accepted (protocol 5); `tries_left` more may be
    /// offered on this connection.
    KeyRefused { tries_left: u8 },
    /// The key was accepted (protocol 5): the connection is running.
    KeyAccepted,
    /// Right after a hello with a challenge (protocol 7): the ways in this
    /// server takes, so that a client with a token and keys offers the
    /// right one.
    AuthMethods { token: bool, keys: bool },
    /// Channel `id` reached its target (protocol 8), at the address `peer`
    /// (`IP:PORT`, as the server connected to it).
    Opened { id: u32, peer: String },
    /// The answer to `Listen` `id` (protocol 8): the port listened on, or
    /// why not.
    Listening {
        id: u32,
        result: Result<u16, String>,
    },
    /// A connection came to the port of `Listen` `listen` (protocol 8) from
    /// `from`: it is channel `id` (with [`SERVER_CHANNEL`] set). The client
    /// connects to its target and answers `Opened`, or `ChannelClose`.
    Accepted { listen: u32, id: u32, from: String },
    /// Bytes from channel `id`'s far end, within the client's window.
    ChannelData {
        id: u32,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// `bytes` more of the client's data on channel `id` were delivered.
    ChannelAck { id: u32, bytes: u32 },
    /// Channel `id`'s far end sends nothing more (half-close).
    ChannelEof { id: u32 },
    /// Channel `id` is over: refused, unreachable, reset, or forbidden
    /// (`error` says which), or simply done.
    ChannelClose { id: u32, error: Option<String> },
}

/// The server's greeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerHello {
    pub protocol: u16,
    pub software: String,
    /// Random bytes the client must answer when the server requires
    /// authentication; `None` when it does not.
    pub challenge: Option<serde_bytes::ByteBuf>,
}

/// The client's greeting: the first message of every connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientHello {
    pub protocol: u16,
    pub software: String,
}

/// How the command string is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ExecMode {
    /// `/bin/sh -c COMMAND`, as ssh and the tutorials do.
    #[default]
    Shell,
    /// Split with shell-like quoting rules and executed directly, no shell.
    Argv,
}

/// A request to run a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Exec {
    /// Chosen by the client, unique among its running commands.
    pub id: u32,
    pub command: String,
    pub mode: ExecMode,
    pub cwd: Option<String>,
    /// Extra environment variables for the command.
    pub env: Vec<(String, String)>,
    /// Requested time limit in milliseconds; the server's own limit wins
    /// when it is shorter.
    pub timeout_ms: Option<u64>,
    /// Whether `Stdin` / `StdinEof` will follow. When false the command's
    /// standard input is `/dev/null`.
    pub stdin: bool,
    /// Run the command on a pseudo-terminal (protocol 2). Its stdin, stdout
    /// and stderr are the terminal; output arrives as `Stdout` only. An empty
    /// `command` then means the login shell of the user commands run as.
    pub pty: Option<PtyRequest>,
}

/// A pseudo-terminal for a command: the `TERM` to give it and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyRequest {
    pub term: String,
    pub rows: u16,
    pub cols: u16,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// The exit code a shell would report: the code itself, or 128 +
    /// signal; 255 for a status no process can have (a code outside
    /// 0-255, a signal outside 1-127), which a lying or broken server may
    /// send: `exit(256)` would be 0, success.
    pub fn shell_code(self) -> i32 {
        match self {
            _ if !self.is_possible() => 255,
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }

    /// Whether a process can end this way (see [`ExitStatus::shell_code`]).
    pub fn is_possible(self) -> bool {
        match self {
            ExitStatus::Code(c) => (0..=255).contains(&c),
            ExitStatus::Signal(s) => (1..=127).contains(&s),
        }
    }
}

/// The last message about a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exited {
    pub id: u32,
    pub status: ExitStatus,
    /// The server killed it because it ran past its time limit.
    pub timed_out: bool,
    /// The server cut its output at the output limit and killed it.
    pub truncated: bool,
    pub duration_ms: u64,
    /// Bytes of stdout and stderr sent for this command.
    pub bytes_out: u64,
}

/// An error report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMsg {
    /// The command concerned, or `None` for the connection as a whole (the
    /// server closes the connection after such an error).
    pub id: Option<u32>,
    pub kind: ErrorKind,
    pub message: String,
}

/// Machine-readable error kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// Bytes that are not a valid frame or message, or a message not allowed
    /// in the connection's current state.
    Protocol,
    /// The peers speak different protocol versions.
    Version,
    /// Authentication failed or is missing.
    Auth,
    /// A server limit was reached (connections, processes, frame size).
    Limit,
    /// The request itself is invalid (bad quoting, duplicate id, ...).
    BadRequest,
    /// The command could not be started (missing program or cwd, ...).
    Spawn,
    /// The command is not allowed by the server's policy.
    Forbidden,
    /// The connection was idle for too long.
    Idle,
    /// The server is shutting down.
    Shutdown,
}

/// Which output stream a chunk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl ErrorKind {
    /// A stable lower-case name for scripts (`--json`).
    pub fn name(&self) -> &'static str {
        match self {
            ErrorKind::Protocol => "protocol",
            ErrorKind::Version => "version",
            ErrorKind::Auth => "auth",
            ErrorKind::Limit => "limit",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Spawn => "spawn",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Idle => "idle",
            ErrorKind::Shutdown => "shutdown",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            ErrorKind::Protocol => "protocol error",
            ErrorKind::Version => "version mismatch",
            ErrorKind::Auth => "auth failed",
            ErrorKind::Limit => "server limit",
            ErrorKind::BadRequest => "bad request",
            ErrorKind::Spawn => "cannot start command",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Idle => "idle timeout",
            ErrorKind::Shutdown => "server shutting down",
        };
        f.write_str(s)
    }
}

impl ServerMsg {
    /// A short name of the message kind, for logs and `--trace`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            ServerMsg::Hello(_) => "Hello",
            ServerMsg::Started { .. } => "Started",
            ServerMsg::Stdout { .. } => "Stdout",
            ServerMsg::Stderr { .. } => "Stderr",
            ServerMsg::Exited(_) => "Exited",
            ServerMsg::Error(_) => "Error",
            ServerMsg::Ping { .. } => "Ping",
            ServerMsg::Pong { .. } => "Pong",
            ServerMsg::KeyRefused { .. } => "KeyRefused",
            ServerMsg::KeyAccepted => "KeyAccepted",
            ServerMsg::AuthMethods { .. } => "AuthMethods",
            ServerMsg::Opened { .. } => "Opened",
            ServerMsg::Listening { .. } => "Listening",
            ServerMsg::Accepted { .. } => "Accepted",
            ServerMsg::ChannelData { .. } => "ChannelData",
            ServerMsg::ChannelAck { .. } => "ChannelAck",
            ServerMsg::ChannelEof { .. } => "ChannelEof",
            ServerMsg::ChannelClose { .. } => "ChannelClose",
        }
    }
}

impl ClientMsg {
    /// A short name of the message kind, for logs and `--trace`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            ClientMsg::Hello(_) => "Hello",
            ClientMsg::Exec(_) => "Exec",
            ClientMsg::Stdin { .. } => "Stdin",
            ClientMsg::StdinEof { .. } => "StdinEof",
            ClientMsg::Cancel { .. } => "Cancel",
            ClientMsg::Auth { .. } => "Auth",
            ClientMsg::Resize { .. } => "Resize",
            ClientMsg::Put(_) => "Put",
            ClientMsg::PutEnd { .. } => "PutEnd",
            ClientMsg::Get { .. } => "Get",
            ClientMsg::List { .. } => "List",
            ClientMsg::Tree { .. } => "Tree",
            ClientMsg::Ping { .. } => "Ping",
            ClientMsg::Pong { .. } => "Pong",
            ClientMsg::AuthKey { .. } => "AuthKey",
            ClientMsg::Job { .. } => "Job",
            ClientMsg::Open { .. } => "Open",
            ClientMsg::Listen { .. } => "Listen",
            ClientMsg::ChannelData { .. } => "ChannelData",
            ClientMsg::ChannelAck { .. } => "ChannelAck",
            ClientMsg::ChannelEof { .. } => "ChannelEof",
            ClientMsg::ChannelClose { .. } => "ChannelClose",
            ClientMsg::Opened { .. } => "Opened",
        }
    }
}

/// A decoded server frame; output chunks borrow the decoder's buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerEvent<'a> {
    Output {
        stream: OutputStream,
        id: u32,
        data: &'a [u8],
    },
    Msg(ServerMsg),
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_batch_data_frame_encoded_in_place_is_the_owned_items_frame() {
        for data in [&b""[..], b"x", &[7u8; 300][..]] {
            let (mut owned, mut borrowed) = (Vec::new(), Vec::new());
            crate::encode_frame(&super::BatchItem::Data(data.to_vec()), &mut owned);
            super::BatchItem::encode_data(data, &mut borrowed);
            assert_eq!(owned, borrowed);
        }
    }

    use super::ExitStatus::{Code, Signal};

    #[test]
    fn impossible_statuses_are_255_never_success() {
        for (status, code) in [
            (Code(0), 0),
            (Code(255), 255),
            (Signal(9), 137),
            (Signal(127), 255),
            (Code(256), 255),
            (Code(512), 255),
            (Code(-1), 255),
            (Code(i32::MIN), 255),
            (Signal(0), 255),
            (Signal(128), 255),
            (Signal(i32::MIN), 255),
            (Signal(i32::MAX), 255),
        ] {
            assert_eq!(status.shell_code(), code, "{status:?}");
        }
    }
}
