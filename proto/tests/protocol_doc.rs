//! The hex examples in docs/PROTOCOL.md are real: each decodes to the message
//! the document describes, and encoding that message gives the same bytes.

use rexec_proto::tutorial::encode_seed_reply;
use rexec_proto::*;

const DOC: &str = include_str!("../../docs/PROTOCOL.md");

/// The bytes of the fenced block that starts with "```hex NAME".
fn example(name: &str) -> Vec<u8> {
    let fence = format!("```hex {name}\n");
    let start = DOC
        .find(&fence)
        .unwrap_or_else(|| panic!("no example {name} in PROTOCOL.md"))
        + fence.len();
    let end = start + DOC[start..].find("```").expect("closing fence");
    DOC[start..end]
        .split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).expect("hex byte"))
        .collect()
}

fn check<M>(name: &str, msg: M)
where
    M: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = example(name);
    let mut encoded = Vec::new();
    encode_frame(&msg, &mut encoded);
    assert_eq!(encoded, bytes, "encoding of example {name}");
    let mut dec = FrameDecoder::new();
    dec.feed(&bytes);
    assert_eq!(
        dec.next_message::<M>(),
        Ok(Some(msg)),
        "decoding of example {name}"
    );
    assert_eq!(dec.buffered(), 0);
}

#[test]
fn exec_example() {
    check(
        "exec",
        ClientMsg::Exec(Exec {
            id: 1,
            command: "ls -l".into(),
            mode: ExecMode::Shell,
            cwd: None,
            env: vec![("LANG".into(), "C".into())],
            timeout_ms: Some(5000),
            stdin: false,
            pty: None,
        }),
    );
}

#[test]
fn transfer_examples() {
    check(
        "put",
        ClientMsg::Put(Put {
            id: 3,
            dest: "/tmp/".into(),
            name: "a".into(),
            size: 2,
            mkdirs: false,
            mode: Some(0o644),
            mtime: None,
            preserve: false,
            what: PutWhat::File,
        }),
    );
    check(
        "get",
        ClientMsg::Get {
            id: 4,
            path: "a".into(),
        },
    );
    check(
        "list",
        ClientMsg::List {
            id: 5,
            path: "src".into(),
        },
    );
}

#[test]
fn pty_examples() {
    check(
        "exec-pty",
        ClientMsg::Exec(Exec {
            id: 2,
            command: "top".into(),
            stdin: true,
            pty: Some(PtyRequest {
                term: "xterm".into(),
                rows: 24,
                cols: 80,
            }),
            ..Exec::default()
        }),
    );
    check(
        "resize",
        ClientMsg::Resize {
            id: 2,
            rows: 50,
            cols: 132,
        },
    );
}

#[test]
fn stdout_example() {
    check(
        "stdout",
        ServerMsg::Stdout {
            id: 1,
            data: b"hi\n".to_vec(),
        },
    );
}

#[test]
fn exited_example() {
    check(
        "exited",
        ServerMsg::Exited(Exited {
            id: 1,
            status: ExitStatus::Code(0),
            timed_out: false,
            truncated: false,
            duration_ms: 300,
            bytes_out: 3,
        }),
    );
}

#[test]
fn auth_methods_example() {
    check(
        "auth-methods",
        ServerMsg::AuthMethods {
            token: false,
            keys: true,
        },
    );
}

#[test]
fn keepalive_examples() {
    check("ping", ClientMsg::Ping { seq: 1 });
    check("pong", ServerMsg::Pong { seq: 1 });
}

#[test]
fn server_hello_example() {
    check(
        "server-hello",
        ServerMsg::Hello(ServerHello {
            protocol: 7,
            software: "0.1.0".into(),
            challenge: None,
        }),
    );
}

#[test]
fn client_hello_example() {
    check(
        "client-hello",
        ClientMsg::Hello(ClientHello {
            protocol: 7,
            software: "0.1.0".into(),
        }),
    );
}

#[test]
fn seed_example() {
    let mut out = Vec::new();
    encode_seed_reply(b"hi\n", b"", &mut out).expect("small");
    assert!(DOC.contains("`echo hi`: `03 00 00 00 68 69 0a`"));
    assert_eq!(out, [0x03, 0, 0, 0, 0x68, 0x69, 0x0a]);
}

/// The variant tables in the document list the variants in wire order.
#[test]
fn variant_tables_match_indices() {
    let kinds = [
        ErrorKind::Protocol,
        ErrorKind::Version,
        ErrorKind::Auth,
        ErrorKind::Limit,
        ErrorKind::BadRequest,
        ErrorKind::Spawn,
        ErrorKind::Forbidden,
        ErrorKind::Idle,
        ErrorKind::Shutdown,
    ];
    for (i, kind) in kinds.iter().enumerate() {
        let mut w = Vec::new();
        encode_frame(kind, &mut w);
        assert_eq!(w[HEADER_LEN], i as u8);
        assert!(
            DOC.contains(&format!("| {i} | `{kind:?}` |")),
            "row for {kind:?}"
        );
    }
}

/// The binding of the worked examples: plain TCP to 127.0.0.1:7070.
fn example_binding() -> Vec<u8> {
    let b = rexec_proto::auth::address_binding("127.0.0.1:7070".parse().unwrap());
    assert!(DOC.contains(&format!("`{}`", String::from_utf8_lossy(&b))));
    b
}

/// The worked authentication answer in the document is what the code computes.
#[test]
fn auth_example() {
    let t = rexec_proto::auth::Token::new("token").unwrap();
    let hex: String = t
        .answer(&example_binding(), &[0u8; 32])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        DOC.contains(&format!("the answer is\n   `{hex}`")),
        "PROTOCOL.md lacks {hex}"
    );
}

/// The worked key signature in the document: Ed25519 signatures are
/// deterministic, so the example's bytes are what the code makes.
#[test]
fn key_auth_example() {
    use signature::Signer;
    use ssh_key::PrivateKey;
    use ssh_key::private::{Ed25519Keypair, KeypairData};
    let key = PrivateKey::new(
        KeypairData::Ed25519(Ed25519Keypair::from_seed(&[1u8; 32])),
        "",
    )
    .unwrap();
    let data = rexec_proto::keyauth::signed_data("alice", false, &example_binding(), &[0u8; 32]);
    let sig = rexec_proto::keyauth::encode_signature(key.try_sign(&data).unwrap());
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let public = key.public_key().to_bytes().unwrap();
    println!("public {}\nsignature {}", hex(&public), hex(&sig));
    assert!(
        DOC.contains(&format!("public key `{}`", hex(&public))),
        "public key"
    );
    assert!(
        DOC.contains(&format!("signature `{}`", hex(&sig))),
        "signature"
    );
}

#[test]
fn job_examples() {
    check(
        "job-start",
        ClientMsg::Job {
            exec: Exec {
                id: 3,
                command: "./train.sh".into(),
                ..Exec::default()
            },
            verb: JobVerb::Start,
        },
    );
    check(
        "job-attach",
        ClientMsg::Job {
            exec: Exec {
                id: 4,
                ..Exec::default()
            },
            verb: JobVerb::Attach { job: 3 },
        },
    );
}

#[test]
fn forwarding_examples() {
    check(
        "open",
        ClientMsg::Open {
            id: 1,
            host: "localhost".into(),
            port: 8888,
        },
    );
    check(
        "opened",
        ServerMsg::Opened {
            id: 1,
            peer: "127.0.0.1:8888".into(),
        },
    );
    check(
        "channel-data",
        ClientMsg::ChannelData {
            id: 1,
            data: b"hi\n".to_vec(),
        },
    );
    check("channel-ack", ServerMsg::ChannelAck { id: 1, bytes: 3 });
    check("channel-eof", ClientMsg::ChannelEof { id: 1 });
    check(
        "channel-close",
        ServerMsg::ChannelClose {
            id: 2,
            error: Some("refused".into()),
        },
    );
    check(
        "listen",
        ClientMsg::Listen {
            id: 1,
            bind: String::new(),
            port: 0,
        },
    );
    check(
        "listening",
        ServerMsg::Listening {
            id: 1,
            result: Ok(40000),
        },
    );
    check(
        "accepted",
        ServerMsg::Accepted {
            listen: 1,
            id: SERVER_CHANNEL | 1,
            from: "127.0.0.1:5000".into(),
        },
    );
    check(
        "client-opened",
        ClientMsg::Opened {
            id: SERVER_CHANNEL | 1,
        },
    );
    // The one-copy encoder writes what the message would.
    let mut fast = Vec::new();
    encode_channel_data_frame(false, 1, b"hi\n", &mut fast);
    assert_eq!(fast, example("channel-data"));
    // And its header, with the data sent from where it is.
    let mut parts = Vec::new();
    encode_channel_data_header(false, 1, 3, &mut parts);
    parts.extend_from_slice(b"hi\n");
    assert_eq!(parts, example("channel-data"));
}
