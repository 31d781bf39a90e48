//! A connection's protocol state machine: client messages in, actions out.
//!
//! Pure logic — no sockets, no processes — so the fuzzer can drive it with
//! arbitrary bytes (see `fuzz/`). The event loop does what the actions say.
//!
//! ```text
//!   Hello ──(client Hello, right version)──▶ [server Hello] ──▶ Running
//!     │                                          │ (token or keys)
//!     │                                          ▼
//!     │                                        Auth ──(right token)──▶ Running
//!     │                                          │  ▲
//!     │                       (key, good signature) │ (refused: up to 6 keys)
//!     │                                          ▼  │
//!     │                                      KeyCheck ──(allowed)──▶ Running
//!     │                                          │
//!     └──(anything else, wrong answer, silence)──┴──▶ Error + close
//! ```
//!
//! Whether a signed key is allowed in (and as whom) is the server's to
//! say: it may read a file in the account's home on another thread
//! (login.rs), so the answer comes back through [`ConnProtocol::key_checked`].

use rexec_proto::auth::{NONCE_LEN, Token};
use rexec_proto::{
    ADDRESS_BINDING_PROTOCOL, AUTH_METHODS_PROTOCOL, ClientMsg, ErrorKind, Exec,
    KEEPALIVE_PROTOCOL, OLDEST_PROTOCOL, PROTOCOL_VERSION, SOFTWARE_VERSION, ServerHello,
    ServerMsg,
};

/// Most environment variables one `Exec` may set.
pub const MAX_ENV: usize = 1024;

/// What the event loop should do about a message.
#[derive(Debug, PartialEq, Eq)]
#[doc(hidden)]
pub enum Action {
    /// Send the server's hello now. With `open` the connection is running
    /// (no token required); otherwise the client's `Auth` comes next.
    SendHello {
        open: bool,
    },
    /// The answer was right; commands may follow.
    Authenticated,
    Exec(Exec),
    /// A detached job's verb (protocol 6); runs like a command with
    /// `exec.id`.
    Job {
        exec: Exec,
        verb: rexec_proto::JobVerb,
    },
    Stdin {
        id: u32,
        data: Vec<u8>,
    },
    StdinEof {
        id: u32,
    },
    Cancel {
        id: u32,
    },
    /// Resize the command's pty.
    Resize {
        id: u32,
        rows: u16,
        cols: u16,
    },
    /// Receive a file.
    Put(rexec_proto::Put),
    /// The checksum that ends a `Put`.
    PutEnd {
        id: u32,
        digest: Vec<u8>,
    },
    /// Send a file.
    Get {
        id: u32,
        path: Vec<u8>,
    },
    /// List a tree.
    List {
        id: u32,
        path: Vec<u8>,
    },
    /// Scan a tree, or remove an entry (`rexec sync`).
    Tree {
        id: u32,
        path: Vec<u8>,
        op: rexec_proto::TreeOp,
    },
    /// A key's signature is good: is the key allowed in, for that account
    /// (`--authorized-keys`, or the account's file with `--login`)? The
    /// answer goes to [`ConnProtocol::key_checked`].
    CheckKey {
        user: String,
        explicit: bool,
        key: Box<ssh_key::PublicKey>,
    },
    /// The key is allowed in: tell the client.
    KeyAccepted,
    /// A key was refused; the client may offer `tries_left` more.
    KeyRefused {
        tries_left: u8,
    },
    /// Answer the client's keepalive probe.
    Ping {
        seq: u32,
    },
    /// The client answered a probe (liveness is counted from its bytes;
    /// nothing more to do).
    Pong,
    /// A port forwarding message (protocol 8): server/forward.rs.
    Forward(crate::forward::Request),
    /// Refuse one command; the connection stays usable.
    Reject {
        id: u32,
        kind: ErrorKind,
        message: String,
    },
    /// Send a connection-level error and close.
    Fail {
        kind: ErrorKind,
        message: String,
    },
}

/// What ties a login (a token's answer, a key's signature) to this
/// connection, so that it cannot be relayed from another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// Plain TCP: [`rexec_proto::auth::address_binding`] of the address
    /// the client reached (protocol 7; older clients cannot log in).
    Address(Vec<u8>),
    /// TLS: the session's exporter value.
    Tls(Vec<u8>),
}

impl Binding {
    fn bytes(&self) -> &[u8] {
        match self {
            Binding::Address(b) | Binding::Tls(b) => b,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the client's hello.
    Hello,
    /// Waiting for the answer to the challenge.
    Auth,
    /// A key is being checked (`Action::CheckKey`); the client waits for
    /// the answer before it sends anything.
    KeyCheck,
    Running,
}

/// The protocol state of one native connection.
#[derive(Debug)]
#[doc(hidden)]
pub struct ConnProtocol {
    phase: Phase,
    token: Option<Token>,
    nonce: [u8; NONCE_LEN],
    /// What ties the auth answer to the channel.
    binding: Binding,
    /// The protocol version both speak: the client's, when it is older.
    version: u16,
    /// Whether keys may come in (`--authorized-keys` or `--login`).
    keys: bool,
    /// Keys refused so far on this connection.
    keys_tried: u8,
}

/// Most keys a client may offer on one connection.
pub const MAX_KEY_TRIES: u8 = 6;

impl ConnProtocol {
    /// The protocol version both ends speak.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// `nonce` must be fresh random bytes for every connection.
    pub fn new(token: Option<Token>, nonce: [u8; NONCE_LEN]) -> Self {
        ConnProtocol {
            phase: Phase::Hello,
            token,
            nonce,
            binding: Binding::Address(Vec::new()),
            version: PROTOCOL_VERSION,
            keys: false,
            keys_tried: 0,
        }
    }

    /// Also lets in clients with a key (the server says which keys).
    pub fn with_keys(mut self, keys: bool) -> Self {
        self.keys = keys;
        self
    }

    /// Whether the client must authenticate (a token or a key).
    fn auth_required(&self) -> bool {
        self.token.is_some() || self.keys
    }

    /// Ties authentication to the channel (the server's address, or the
    /// TLS exporter value); call before the first message.
    pub fn set_binding(&mut self, binding: Binding) {
        self.binding = binding;
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the client speaks keepalive probes (protocol 4 and later).
    pub fn has_keepalive(&self) -> bool {
        self.version >= KEEPALIVE_PROTOCOL
    }

    /// What follows the hello for a client of protocol 7 or later that
    /// must log in: the ways in this server takes.
    pub fn auth_methods(&self) -> Option<ServerMsg> {
        (self.auth_required() && self.version >= AUTH_METHODS_PROTOCOL).then_some(
            ServerMsg::AuthMethods {
                token: self.token.is_some(),
                keys: self.keys,
            },
        )
    }

    /// The server's hello, with a challenge when a token is required.
    pub fn hello(&self) -> ServerHello {
        ServerHello {
            protocol: self.version,
            software: SOFTWARE_VERSION.to_string(),
            challenge: self
                .auth_required()
                .then(|| serde_bytes::ByteBuf::from(self.nonce.to_vec())),
        }
    }

    pub fn on_message(&mut self, msg: ClientMsg) -> Action {
        match (self.phase, msg) {
            (Phase::Hello, ClientMsg::Hello(h)) => {
                if !(OLDEST_PROTOCOL..=PROTOCOL_VERSION).contains(&h.protocol) {
                    return Action::Fail {
                        kind: ErrorKind::Version,
                        message: format!(
                            "version mismatch: client speaks protocol {} (rexec {}), server speaks {} to {} (rexecd {}); \
                             protocol 3 added confined tree listings and checked puts (List, PUT_READY): \
                             use a rexec and rexecd of the same version",
                            h.protocol,
                            clip(&h.software),
                            OLDEST_PROTOCOL,
                            PROTOCOL_VERSION,
                            SOFTWARE_VERSION
                        ),
                    };
                }
                self.version = h.protocol;
                if let Some(refused) = self.unbound_login() {
                    return refused;
                }
                let open = !self.auth_required();
                self.phase = if open { Phase::Running } else { Phase::Auth };
                Action::SendHello { open }
            }
            (
                Phase::Auth,
                ClientMsg::AuthKey {
                    user,
                    explicit,
                    public_key,
                    signature,
                },
            ) => self.on_key(user, explicit, &public_key, &signature),
            (Phase::Auth, ClientMsg::Auth { answer }) => {
                let ok = self
                    .token
                    .as_ref()
                    .is_some_and(|t| t.verify(self.binding.bytes(), &self.nonce, &answer));
                if !ok {
                    return Action::Fail {
                        kind: ErrorKind::Auth,
                        message: match self.token {
                            Some(_) => "wrong token".into(),
                            None => "this server does not accept tokens; it wants a key".into(),
                        },
                    };
                }
                self.phase = Phase::Running;
                Action::Authenticated
            }
            (Phase::KeyCheck, other) => Action::Fail {
                kind: ErrorKind::Protocol,
                message: format!("got {} while its key was being checked", other.kind_name()),
            },
            (Phase::Hello | Phase::Auth, other) => Action::Fail {
                kind: if self.auth_required() {
                    ErrorKind::Auth
                } else {
                    ErrorKind::Protocol
                },
                message: match (self.phase, &other) {
                    (Phase::Auth, _) => format!(
                        "this server requires a token (--token-file or REXEC_TOKEN); got {} instead of Auth",
                        other.kind_name()
                    ),
                    _ => format!("expected Hello first, got {}", other.kind_name()),
                },
            },
            (Phase::Running, ClientMsg::Hello(_)) => Action::Fail {
                kind: ErrorKind::Protocol,
                message: "Hello sent twice".into(),
            },
            (Phase::Running, ClientMsg::Auth { .. } | ClientMsg::AuthKey { .. }) => Action::Fail {
                kind: ErrorKind::Protocol,
                message: "Auth sent when none was asked for".into(),
            },
            (Phase::Running, ClientMsg::Exec(e)) => match too_many_env(&e) {
                Some(reject) => reject,
                None => Action::Exec(e),
            },
            (Phase::Running, ClientMsg::Job { exec, verb }) => match too_many_env(&exec) {
                Some(reject) => reject,
                None => Action::Job { exec, verb },
            },
            (Phase::Running, ClientMsg::Stdin { id, data }) => Action::Stdin { id, data },
            (Phase::Running, ClientMsg::StdinEof { id }) => Action::StdinEof { id },
            (Phase::Running, ClientMsg::Cancel { id }) => Action::Cancel { id },
            (Phase::Running, ClientMsg::Resize { id, rows, cols }) => {
                Action::Resize { id, rows, cols }
            }
            (Phase::Running, ClientMsg::Put(p)) => Action::Put(p),
            (Phase::Running, ClientMsg::PutEnd { id, digest }) => Action::PutEnd { id, digest },
            (Phase::Running, ClientMsg::Get { id, path }) => Action::Get { id, path },
            (Phase::Running, ClientMsg::List { id, path }) => Action::List { id, path },
            (Phase::Running, ClientMsg::Tree { id, path, op }) => Action::Tree { id, path, op },
            (Phase::Running, ClientMsg::Ping { seq }) => Action::Ping { seq },
            (Phase::Running, ClientMsg::Pong { .. }) => Action::Pong,
            (Phase::Running, msg) => forward_request(msg),
        }
    }
}

impl ConnProtocol {
    /// A client older than protocol 7 on plain TCP signs its login over
    /// nothing that names this server, so a server it connected to could
    /// have relayed it here: when a login is required, it is refused.
    fn unbound_login(&self) -> Option<Action> {
        let plain = matches!(self.binding, Binding::Address(_));
        (plain && self.auth_required() && self.version < ADDRESS_BINDING_PROTOCOL).then(|| {
            Action::Fail {
                kind: ErrorKind::Version,
                message: format!(
                    "a client of protocol {} signs its login over plain TCP without naming the \
                     server, so another server could relay it here; protocol \
                     {ADDRESS_BINDING_PROTOCOL} names it: use rexec {SOFTWARE_VERSION}, or TLS",
                    self.version
                ),
            }
        })
    }

    /// A key offered in the Auth phase: with a good signature (over this
    /// connection's challenge and the account named), the server checks
    /// whether the key is allowed in; otherwise it is refused with a few
    /// more tries, or the last try failed.
    fn on_key(
        &mut self,
        user: String,
        explicit: bool,
        public_key: &[u8],
        signature: &[u8],
    ) -> Action {
        if !self.keys {
            return Action::Fail {
                kind: ErrorKind::Auth,
                message: "this server does not accept keys (no --authorized-keys or --login); \
                          it wants a token"
                    .into(),
            };
        }
        let data =
            rexec_proto::keyauth::signed_data(&user, explicit, self.binding.bytes(), &self.nonce);
        let signed = rexec_proto::keyauth::public_key(public_key)
            .ok()
            .filter(|k| rexec_proto::keyauth::verify(k, &data, signature).is_ok());
        match signed {
            Some(key) => {
                self.phase = Phase::KeyCheck;
                Action::CheckKey {
                    user,
                    explicit,
                    key: Box::new(key),
                }
            }
            None => self.key_refused(),
        }
    }

    /// The server's answer to [`Action::CheckKey`]: in, or refused (the
    /// same answer whatever the reason: a key not listed, another account,
    /// an account that does not exist).
    pub fn key_checked(&mut self, accepted: bool) -> Action {
        if self.phase != Phase::KeyCheck {
            return Action::Fail {
                kind: ErrorKind::Protocol,
                message: "no key was being checked".into(),
            };
        }
        if accepted {
            self.phase = Phase::Running;
            return Action::KeyAccepted;
        }
        self.phase = Phase::Auth;
        self.key_refused()
    }

    /// One more key refused: the client may offer another, up to
    /// [`MAX_KEY_TRIES`] in all.
    fn key_refused(&mut self) -> Action {
        self.keys_tried = self.keys_tried.saturating_add(1);
        if self.keys_tried >= MAX_KEY_TRIES {
            return Action::Fail {
                kind: ErrorKind::Auth,
                message: format!(
                    "Permission denied (publickey): none of {MAX_KEY_TRIES} keys was accepted"
                ),
            };
        }
        Action::KeyRefused {
            tries_left: MAX_KEY_TRIES - self.keys_tried,
        }
    }
}

/// Refuses an `Exec` with more than [`MAX_ENV`] variables.
/// The forwarding messages, passed on as they are.
fn forward_request(msg: ClientMsg) -> Action {
    use crate::forward::Request;
    Action::Forward(match msg {
        ClientMsg::Open { id, host, port } => Request::Open { id, host, port },
        ClientMsg::Listen { id, bind, port } => Request::Listen { id, bind, port },
        ClientMsg::ChannelData { id, data } => Request::Data { id, data },
        ClientMsg::ChannelAck { id, bytes } => Request::Ack { id, bytes },
        ClientMsg::ChannelEof { id } => Request::Eof { id },
        ClientMsg::ChannelClose { id, error } => Request::Close { id, error },
        ClientMsg::Opened { id } => Request::Opened { id },
        other => {
            return Action::Fail {
                kind: ErrorKind::Protocol,
                message: format!("unexpected {}", other.kind_name()),
            };
        }
    })
}

fn too_many_env(e: &Exec) -> Option<Action> {
    (e.env.len() > MAX_ENV).then(|| Action::Reject {
        id: e.id,
        kind: ErrorKind::BadRequest,
        message: format!("{} environment variables; at most {MAX_ENV}", e.env.len()),
    })
}

/// Peer-supplied text shortened for messages and logs.
fn clip(s: &str) -> String {
    rexec_proto::text::clean(s, 40)
}

#[cfg(test)]
mod tests;
