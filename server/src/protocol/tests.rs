use super::*;
use rexec_proto::ClientHello;

fn hello() -> ClientMsg {
    ClientMsg::Hello(ClientHello {
        protocol: PROTOCOL_VERSION,
        software: "t".into(),
    })
}

fn auth(answer: Vec<u8>) -> ClientMsg {
    ClientMsg::Auth { answer }
}

#[test]
fn a_version_3_client_is_served_without_probes_and_a_version_2_refused() {
    let hello_v = |protocol| {
        ClientMsg::Hello(ClientHello {
            protocol,
            software: "t".into(),
        })
    };
    let mut p = ConnProtocol::new(None, [1; NONCE_LEN]);
    assert!(matches!(p.on_message(hello_v(3)), Action::SendHello { .. }));
    assert_eq!(p.hello().protocol, 3, "answered in the client's version");
    assert!(!p.has_keepalive());
    assert!(matches!(
        p.on_message(ClientMsg::Ping { seq: 1 }),
        Action::Ping { seq: 1 }
    ));
    let mut p = ConnProtocol::new(None, [1; NONCE_LEN]);
    assert!(matches!(
        p.on_message(hello_v(PROTOCOL_VERSION)),
        Action::SendHello { .. }
    ));
    assert_eq!(p.hello().protocol, PROTOCOL_VERSION);
    assert!(p.has_keepalive());
    let mut p = ConnProtocol::new(None, [1; NONCE_LEN]);
    assert_eq!(p.on_message(hello_v(2)).kind(), Some(ErrorKind::Version));
}

mod keys {
    use super::*;
    use signature::Signer;
    use ssh_key::PrivateKey;
    use ssh_key::private::{Ed25519Keypair, KeypairData};

    fn key(seed: u8) -> PrivateKey {
        PrivateKey::new(
            KeypairData::Ed25519(Ed25519Keypair::from_seed(&[seed; 32])),
            "",
        )
        .unwrap()
    }

    /// A protocol that takes keys.
    fn protocol() -> ConnProtocol {
        let mut p = ConnProtocol::new(None, [5; NONCE_LEN]).with_keys(true);
        assert!(p.hello().challenge.is_some(), "keys need a challenge");
        let hello = ClientMsg::Hello(ClientHello {
            protocol: PROTOCOL_VERSION,
            software: "t".into(),
        });
        assert!(matches!(
            p.on_message(hello),
            Action::SendHello { open: false }
        ));
        p
    }

    fn offer(p: &mut ConnProtocol, k: &PrivateKey, user: &str, explicit: bool) -> Action {
        let data = rexec_proto::keyauth::signed_data(user, explicit, b"", &[5; NONCE_LEN]);
        p.on_message(ClientMsg::AuthKey {
            user: user.into(),
            explicit,
            public_key: k.public_key().to_bytes().unwrap(),
            signature: rexec_proto::keyauth::encode_signature(k.try_sign(&data).unwrap()),
        })
    }

    /// Offers `k` signed with `signer`; on a good signature, the server's
    /// answer is `allowed`.
    fn answer(p: &mut ConnProtocol, k: &PrivateKey, signer: &PrivateKey, allowed: bool) -> Action {
        let data = rexec_proto::keyauth::signed_data("alice", true, b"", &[5; NONCE_LEN]);
        let action = p.on_message(ClientMsg::AuthKey {
            user: "alice".into(),
            explicit: true,
            public_key: k.public_key().to_bytes().unwrap(),
            signature: rexec_proto::keyauth::encode_signature(signer.try_sign(&data).unwrap()),
        });
        match action {
            Action::CheckKey {
                user,
                explicit,
                key,
            } => {
                assert_eq!((user.as_str(), explicit), ("alice", true));
                assert_eq!(key.key_data(), k.public_key().key_data());
                assert_eq!(p.phase(), Phase::KeyCheck);
                p.key_checked(allowed)
            }
            other => other,
        }
    }

    #[test]
    fn a_signed_key_is_checked_and_the_answer_opens_the_connection() {
        let mut p = protocol();
        assert!(matches!(
            offer(&mut p, &key(1), "alice", false),
            Action::CheckKey { .. }
        ));
        // Nothing else is taken while the key is checked.
        let mut q = protocol();
        offer(&mut q, &key(1), "alice", false);
        let ping = q.on_message(ClientMsg::Ping { seq: 1 });
        assert_eq!(ping.kind(), Some(ErrorKind::Protocol));
        assert_eq!(p.key_checked(true), Action::KeyAccepted);
        assert_eq!(p.phase(), Phase::Running);
        assert_eq!(p.key_checked(true).kind(), Some(ErrorKind::Protocol));
    }

    #[test]
    fn a_signature_from_another_tls_session_is_refused() {
        // Signed over session A's exporter value, offered in session B.
        let k = key(1);
        let data = rexec_proto::keyauth::signed_data("alice", true, b"session-a", &[5; NONCE_LEN]);
        let msg = ClientMsg::AuthKey {
            user: "alice".into(),
            explicit: true,
            public_key: k.public_key().to_bytes().unwrap(),
            signature: rexec_proto::keyauth::encode_signature(k.try_sign(&data).unwrap()),
        };
        let mut b = protocol();
        b.set_binding(Binding::Tls(b"session-b".to_vec()));
        assert_eq!(
            b.on_message(msg.clone()),
            Action::KeyRefused { tries_left: 5 }
        );
        let mut a = protocol();
        a.set_binding(Binding::Tls(b"session-a".to_vec()));
        assert!(matches!(a.on_message(msg), Action::CheckKey { .. }));
    }

    #[test]
    fn refused_keys_and_bad_signatures_count_to_six_then_close() {
        let mut p = protocol();
        // A bad signature (another key signed) is refused without a check.
        assert_eq!(
            answer(&mut p, &key(1), &key(2), true),
            Action::KeyRefused { tries_left: 5 }
        );
        assert_eq!(
            answer(&mut p, &key(1), &key(1), false),
            Action::KeyRefused { tries_left: 4 }
        );
        assert_eq!(p.phase(), Phase::Auth);
        for left in [3, 2, 1] {
            assert_eq!(
                answer(&mut p, &key(2), &key(2), false),
                Action::KeyRefused { tries_left: left }
            );
        }
        // The sixth refused key ends it.
        assert_eq!(
            answer(&mut p, &key(2), &key(2), false).kind(),
            Some(ErrorKind::Auth)
        );
        // While tries are left, an allowed key gets in.
        let mut p = protocol();
        answer(&mut p, &key(2), &key(2), false);
        assert_eq!(answer(&mut p, &key(1), &key(1), true), Action::KeyAccepted);
    }
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
    assert_eq!(p.on_message(hello()), Action::SendHello { open: true });
    assert_eq!(
        p.on_message(ClientMsg::Cancel { id: 1 }),
        Action::Cancel { id: 1 }
    );
    assert_eq!(p.on_message(hello()).kind(), Some(ErrorKind::Protocol));
    assert_eq!(
        p.on_message(auth(vec![1])).kind(),
        Some(ErrorKind::Protocol)
    );
}

#[test]
fn with_a_token_only_the_right_answer_opens_it() {
    let token = Token::new("secret").unwrap();
    let nonce = [9; NONCE_LEN];
    let fresh = || {
        let mut p = ConnProtocol::new(Some(token.clone()), nonce);
        assert_eq!(p.on_message(hello()), Action::SendHello { open: false });
        assert_eq!(p.phase(), Phase::Auth);
        p
    };
    let p = fresh();
    assert_eq!(&p.hello().challenge.expect("challenge")[..], &nonce);
    let mut p = fresh();
    assert_eq!(
        p.on_message(auth(vec![0; 32])).kind(),
        Some(ErrorKind::Auth)
    );
    // An answer recorded on another connection (another nonce) fails.
    let mut p = fresh();
    assert_eq!(
        p.on_message(auth(token.answer(b"", &[8; NONCE_LEN]).to_vec()))
            .kind(),
        Some(ErrorKind::Auth)
    );
    // No command before the answer.
    let mut p = fresh();
    let m = p.on_message(ClientMsg::Exec(Exec::default()));
    assert_eq!(m.kind(), Some(ErrorKind::Auth));
    let mut p = ConnProtocol::new(Some(token.clone()), nonce);
    assert_eq!(
        p.on_message(ClientMsg::Exec(Exec::default())).kind(),
        Some(ErrorKind::Auth)
    );
    let mut p = fresh();
    assert_eq!(
        p.on_message(auth(token.answer(b"", &nonce).to_vec())),
        Action::Authenticated
    );
    assert_eq!(p.phase(), Phase::Running);
}

#[test]
fn answers_are_bound_to_the_tls_session() {
    let token = Token::new("secret").unwrap();
    let nonce = [3; NONCE_LEN];
    let session = |binding: &[u8]| {
        let mut p = ConnProtocol::new(Some(token.clone()), nonce);
        p.set_binding(Binding::Tls(binding.to_vec()));
        p.on_message(hello());
        p
    };
    // An answer relayed from another TLS session (another exporter value),
    // even with the same nonce, is refused.
    let relayed = token.answer(b"session-a", &nonce).to_vec();
    assert_eq!(
        session(b"session-b")
            .on_message(auth(relayed.clone()))
            .kind(),
        Some(ErrorKind::Auth)
    );
    assert_eq!(
        session(b"session-a").on_message(auth(relayed)),
        Action::Authenticated
    );
}

#[test]
fn huge_env_is_rejected_for_that_command() {
    let mut p = ConnProtocol::new(None, [0; NONCE_LEN]);
    p.on_message(hello());
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
        protocol: PROTOCOL_VERSION + 1,
        software: "x".repeat(1000),
    });
    match p.on_message(m) {
        Action::Fail {
            kind: ErrorKind::Version,
            message,
        } => {
            assert!(
                message.contains(&format!("protocol {}", PROTOCOL_VERSION + 1))
                    && message.contains("speaks 3"),
                "{message}"
            );
            // The version names what it added, so the message is longer
            // than it was; the peer's 1000 characters are still cut.
            assert!(message.contains("List"), "{message}");
            assert!(message.len() < 400, "peer text is clipped");
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

/// Over plain TCP a login names the server's address (protocol 7): an
/// answer made for another address (a relay's) is refused, and a client
/// too old to name it cannot log in at all. Inside TLS, and where no login
/// is asked for, older clients are served as before.
#[test]
fn over_plain_tcp_logins_name_the_address_and_older_clients_cannot_log_in() {
    let token = Token::new("secret").unwrap();
    let nonce = [4; NONCE_LEN];
    let here = rexec_proto::auth::address_binding("127.0.0.1:7070".parse().unwrap());
    let relay = rexec_proto::auth::address_binding("127.0.0.2:7070".parse().unwrap());
    let hello_v = |protocol| {
        ClientMsg::Hello(ClientHello {
            protocol,
            software: "t".into(),
        })
    };
    let plain = |token: Option<Token>, version| {
        let mut p = ConnProtocol::new(token, nonce);
        p.set_binding(Binding::Address(here.clone()));
        let a = p.on_message(hello_v(version));
        (p, a)
    };
    let (mut p, a) = plain(Some(token.clone()), PROTOCOL_VERSION);
    assert_eq!(a, Action::SendHello { open: false });
    assert_eq!(
        p.on_message(auth(token.answer(&relay, &nonce).to_vec()))
            .kind(),
        Some(ErrorKind::Auth),
        "an answer naming the relay's address"
    );
    let (mut p, _) = plain(Some(token.clone()), PROTOCOL_VERSION);
    assert_eq!(
        p.on_message(auth(token.answer(&here, &nonce).to_vec())),
        Action::Authenticated
    );
    // A protocol-6 client's login over plain TCP names no server.
    let (_, a) = plain(Some(token.clone()), 6);
    match a {
        Action::Fail {
            kind: ErrorKind::Version,
            message,
        } => assert!(
            message.contains("relay") && message.contains("TLS"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    let mut keys = ConnProtocol::new(None, nonce).with_keys(true);
    keys.set_binding(Binding::Address(here.clone()));
    assert_eq!(keys.on_message(hello_v(6)).kind(), Some(ErrorKind::Version));
    // No login asked for: served. Inside TLS: served, bound to the session.
    let (_, a) = plain(None, 6);
    assert_eq!(a, Action::SendHello { open: true });
    let mut tls = ConnProtocol::new(Some(token.clone()), nonce);
    tls.set_binding(Binding::Tls(b"session".to_vec()));
    assert_eq!(
        tls.on_message(hello_v(6)),
        Action::SendHello { open: false }
    );
    assert_eq!(
        tls.on_message(auth(token.answer(b"session", &nonce).to_vec())),
        Action::Authenticated
    );
}

/// A client of protocol 7 that must log in is told which ways in the
/// server takes; an older one, or one that need not log in, is not.
#[test]
fn the_ways_in_follow_the_hello_from_protocol_7() {
    let hello_v = |protocol| {
        ClientMsg::Hello(ClientHello {
            protocol,
            software: "t".into(),
        })
    };
    let token = Some(Token::new("secret").unwrap());
    for (token, keys, version, want) in [
        (token.clone(), false, 7, Some((true, false))),
        (None, true, 7, Some((false, true))),
        (token.clone(), true, 7, Some((true, true))),
        (None, false, 7, None),
        (None, true, 6, None),
    ] {
        let mut p = ConnProtocol::new(token, [1; NONCE_LEN]).with_keys(keys);
        p.set_binding(Binding::Tls(b"s".to_vec()));
        p.on_message(hello_v(version));
        let got = p.auth_methods().map(|m| match m {
            ServerMsg::AuthMethods { token, keys } => (token, keys),
            other => panic!("{other:?}"),
        });
        assert_eq!(got, want, "version {version}");
    }
}
