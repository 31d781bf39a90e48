//! The server's per-connection state machine driven by arbitrary byte
//! streams, without sockets or processes: bytes -> FrameDecoder ->
//! ClientMsg -> ConnProtocol -> Action. Properties: no panic; no command,
//! stdin or cancel is acted on before the hello was accepted; with a token,
//! the hello is never accepted (the fuzzer cannot know the HMAC); no
//! port forwarding message (protocol 8) is passed on before it either; no key is
//! handled by a server that takes none; nothing is processed after a
//! connection-level failure.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rexec_proto::auth::{NONCE_LEN, Token};
use rexec_proto::{ClientMsg, FrameDecoder};
use rexec_server::{Action, ConnProtocol};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, data)) = data.split_first() else { return };
    let with_token = ctl & 1 == 1;
    let step = 1 + (ctl >> 1) as usize;
    let token = with_token.then(|| Token::new("fuzz-secret").expect("token"));
    let mut proto = ConnProtocol::new(token, [0x5a; NONCE_LEN]);
    assert_eq!(proto.hello().challenge.is_some(), with_token);
    let mut dec = FrameDecoder::with_max_frame(64 * 1024);
    let mut authenticated = false;
    for chunk in data.chunks(step) {
        dec.feed(chunk);
        loop {
            let msg = match dec.next_message::<ClientMsg>() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(_) => return, // the server sends an Error and closes
            };
            match proto.on_message(msg) {
                Action::SendHello { open } => {
                    assert_eq!(open, !with_token, "opened without the token");
                    assert!(!authenticated, "hello accepted twice");
                    authenticated = open;
                }
                Action::Authenticated => {
                    assert!(!with_token, "authenticated without the token");
                    assert!(!authenticated, "authenticated twice");
                    authenticated = true;
                }
                Action::Fail { .. } => return, // closed
                // This server takes no keys: a key is never checked, and
                // only `key_checked` (never called here) accepts one.
                Action::CheckKey { .. } | Action::KeyAccepted | Action::KeyRefused { .. } => {
                    panic!("a key handled by a server that takes none")
                }
                Action::Exec(_) | Action::Job { .. } | Action::Stdin { .. } | Action::StdinEof { .. } | Action::Cancel { .. } | Action::Resize { .. } | Action::Put(_) | Action::PutEnd { .. } | Action::Get { .. } | Action::List { .. } | Action::Tree { .. } | Action::Ping { .. } | Action::Pong | Action::Reject { .. } | Action::Forward(_) => {
                    assert!(authenticated, "acted on a request before the hello");
                }
            }
        }
    }
});
