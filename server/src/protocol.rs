//! A connection's protocol state machine: client messages in, actions out.
//!
//! Pure logic — no sockets, no processes — so the fuzzer can drive it with
//! arbitrary bytes (see `fuzz/`). The event loop does what the actions say.
//!
//! ```text
//!   Hello ──(Hello, right version, right answer)──▶ Running ──▶ ...
//!     │
//!     └──(anything else, wrong answer, silence)──▶ Error + close
//! ```

use rexec_proto::auth::{NONCE_LEN, Token};
use rexec_proto::{ClientMsg, ErrorKind, Exec, PROTOCOL_VERSION, SOFTWARE_VERSION, ServerHello};

/// Most environment variables one `Exec` may set.
pub const MAX_ENV: usize = 1024;

/// What the event loop should do about a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing (the message was fine and needs no work).
    None,
    /// The hello was accepted; commands may follow.
    Authenticated,
    Exec(Exec),
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the client's hello (and its answer to the challenge).
    Hello,
    Running,
}

/// The protocol state of one native connection.
#[derive(Debug)]
pub struct ConnProtocol {
    phase: Phase,
    token: Option<Token>,
    nonce: [u8; NONCE_LEN],
    /// Bytes that tie the auth answer to the channel (empty on plain TCP).
    binding: Vec<u8>,
}

impl ConnProtocol {
    /// `nonce` must be fresh random bytes for every connection.
    pub fn new(token: Option<Token>, nonce: [u8; NONCE_LEN]) -> Self {
        ConnProtocol {
            phase: Phase::Hello,
            token,
            nonce,
            binding: Vec::new(),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The server's hello, with a challenge when a token is required.
    pub fn hello(&self) -> ServerHello {
        ServerHello {
            protocol: PROTOCOL_VERSION,
            software: SOFTWARE_VERSION.to_string(),
            challenge: self
                .token
                .as_ref()
                .map(|_| serde_bytes::ByteBuf::from(self.nonce.to_vec())),
        }
    }

    pub fn on_message(&mut self, msg: ClientMsg) -> Action {
        match (self.phase, msg) {
            (Phase::Hello, ClientMsg::Hello(h)) => {
                if h.protocol != PROTOCOL_VERSION {
                    return Action::Fail {
                        kind: ErrorKind::Version,
                        message: format!(
                            "version mismatch: client speaks protocol {} (rexec {}), server speaks {} (rexecd {})",
                            h.protocol,
                            clip(&h.software),
                            PROTOCOL_VERSION,
                            SOFTWARE_VERSION
                        ),
                    };
                }
                if let Some(token) = &self.token {
                    let ok = h
                        .auth
                        .as_ref()
                        .is_some_and(|a| token.verify(&self.binding, &self.nonce, a));
                    if !ok {
                        return Action::Fail {
                            kind: ErrorKind::Auth,
                            message: if h.auth.is_some() {
                                "wrong token".into()
                            } else {
                                "this server requires a token (--token-file or REXEC_TOKEN)".into()
                            },
                        };
                    }
                }
                self.phase = Phase::Running;
                Action::Authenticated
            }
            (Phase::Hello, other) => Action::Fail {
                kind: if self.token.is_some() {
                    ErrorKind::Auth
                } else {
                    ErrorKind::Protocol
                },
                message: format!("expected Hello first, got {}", other.kind_name()),
            },
            (Phase::Running, ClientMsg::Hello(_)) => Action::Fail {
                kind: ErrorKind::Protocol,
                message: "Hello sent twice".into(),
            },
            (Phase::Running, ClientMsg::Exec(e)) => {
                if e.env.len() > MAX_ENV {
                    return Action::Reject {
                        id: e.id,
                        kind: ErrorKind::BadRequest,
                        message: format!(
                            "{} environment variables; at most {MAX_ENV}",
                            e.env.len()
                        ),
                    };
                }
                Action::Exec(e)
            }
            (Phase::Running, ClientMsg::Stdin { id, data }) => Action::Stdin { id, data },
            (Phase::Running, ClientMsg::StdinEof { id }) => Action::StdinEof { id },
            (Phase::Running, ClientMsg::Cancel { id }) => Action::Cancel { id },
        }
    }
}

/// Peer-supplied text shortened for messages and logs.
fn clip(s: &str) -> String {
    s.chars().take(40).flat_map(char::escape_default).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rexec_proto::ClientHello;

    fn hello(auth: Option<Vec<u8>>) -> ClientMsg {
        ClientMsg::Hello(ClientHello {
            protocol: PROTOCOL_VERSION,
            software: "t".into(),
            auth: auth.map(serde_bytes::ByteBuf::from),
        })
    }

    #[test]
    fn without_a_token_hello_opens_the_connection() {
        let mut p = ConnProtocol::new(None, [1; NONCE_LEN]);
        assert_eq!(p.hello().challenge, None);
        assert_eq!(
            p.on_message(ClientMsg::Cancel { id: 1 }).kind(),
            Some(ErrorKind::Protocol)
        );
        let mut p = ConnProtocol::new(None, [1; NONCE_LEN]);
        assert_eq!(p.on_message(hello(None)), Action::Authenticated);
        assert_eq!(
            p.on_message(ClientMsg::Cancel { id: 1 }),
            Action::Cancel { id: 1 }
        );
        assert_eq!(p.on_message(hello(None)).kind(), Some(ErrorKind::Protocol));
    }

    #[test]
    fn with_a_token_only_the_right_answer_opens_it() {
        let token = Token::new("secret").unwrap();
        let nonce = [9; NONCE_LEN];
        let mut p = ConnProtocol::new(Some(token.clone()), nonce);
        let challenge = p.hello().challenge.expect("challenge");
        assert_eq!(&challenge[..], &nonce);
        assert_eq!(p.on_message(hello(None)).kind(), Some(ErrorKind::Auth));
        let mut p = ConnProtocol::new(Some(token.clone()), nonce);
        assert_eq!(
            p.on_message(hello(Some(vec![0; 32]))).kind(),
            Some(ErrorKind::Auth)
        );
        // An answer recorded on another connection (another nonce) fails.
        let mut p = ConnProtocol::new(Some(token.clone()), nonce);
        let replayed = token.answer(b"", &[8; NONCE_LEN]).to_vec();
        assert_eq!(
            p.on_message(hello(Some(replayed))).kind(),
            Some(ErrorKind::Auth)
        );
        let mut p = ConnProtocol::new(Some(token.clone()), nonce);
        let exec = ClientMsg::Exec(Exec::default());
        assert_eq!(
            p.on_message(exec).kind(),
            Some(ErrorKind::Auth),
            "no command before auth"
        );
        let mut p = ConnProtocol::new(Some(token.clone()), nonce);
        assert_eq!(
            p.on_message(hello(Some(token.answer(b"", &nonce).to_vec()))),
            Action::Authenticated
        );
        assert_eq!(p.phase(), Phase::Running);
    }

    #[test]
    fn huge_env_is_rejected_for_that_command() {
        let mut p = ConnProtocol::new(None, [0; NONCE_LEN]);
        p.on_message(hello(None));
        let e = Exec {
            id: 4,
            env: vec![("A".into(), "b".into()); MAX_ENV + 1],
            ..Exec::default()
        };
        assert!(matches!(
            p.on_message(ClientMsg::Exec(e)),
            Action::Reject {
                id: 4,
                kind: ErrorKind::BadRequest,
                ..
            }
        ));
    }

    #[test]
    fn version_mismatch_names_both_versions() {
        let mut p = ConnProtocol::new(None, [0; NONCE_LEN]);
        let m = ClientMsg::Hello(ClientHello {
            protocol: 7,
            software: "x".repeat(1000),
            auth: None,
        });
        match p.on_message(m) {
            Action::Fail {
                kind: ErrorKind::Version,
                message,
            } => {
                assert!(
                    message.contains("protocol 7") && message.contains("speaks 1"),
                    "{message}"
                );
                assert!(message.len() < 200, "peer text is clipped");
            }
            other => panic!("{other:?}"),
        }
    }

    impl Action {
        fn kind(&self) -> Option<ErrorKind> {
            match self {
                Action::Fail { kind, .. } => Some(*kind),
                _ => None,
            }
        }
    }
}
