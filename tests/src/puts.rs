//! A loopback proxy to a test's rexecd that records the `what` of every
//! `Put` a client sends, and can make the server look older (its hello
//! rewritten to protocol 9, before batch puts): to see which way a copy
//! or a sync sends its files.

use crate::Daemon;

/// A proxy to `d` for one connection, whose hello says protocol 9 (before
/// batch puts) when `older`; it records the `what` of every `Put` the
/// client sends.
pub fn recorded(
    d: &Daemon,
    older: bool,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<rexec_proto::PutWhat>>>,
) {
    use rexec_proto::{ClientMsg, FrameDecoder, ServerMsg};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let puts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = puts.clone();
    let upstream = d.addr;
    std::thread::spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        let mut server = TcpStream::connect(upstream).unwrap();
        let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        // Client to server, as it is, each message looked at.
        std::thread::spawn(move || {
            let mut dec = FrameDecoder::new();
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n) = c2.read(&mut buf) {
                if n == 0 || s2.write_all(&buf[..n]).is_err() {
                    break;
                }
                dec.feed(&buf[..n]);
                while let Ok(Some(m)) = dec.next_message::<ClientMsg>() {
                    if let ClientMsg::Put(p) = m {
                        seen.lock().unwrap().push(p.what);
                    }
                }
            }
            let _ = s2.shutdown(std::net::Shutdown::Write);
        });
        // Server to client: the hello says 9, the rest as it is.
        let mut dec = FrameDecoder::new();
        let mut buf = vec![0u8; 1 << 16];
        let hello = loop {
            let n = server.read(&mut buf).unwrap();
            assert!(n > 0, "rexecd closed before its hello");
            dec.feed(&buf[..n]);
            if let Some(m) = dec.next_message::<ServerMsg>().unwrap() {
                break m;
            }
        };
        let ServerMsg::Hello(mut h) = hello else {
            panic!("not a hello: {hello:?}");
        };
        if older {
            h.protocol = 9;
        }
        let mut out = Vec::new();
        rexec_proto::encode_frame(&ServerMsg::Hello(h), &mut out);
        out.extend_from_slice(dec.buffered_bytes());
        client.write_all(&out).unwrap();
        while let Ok(n) = server.read(&mut buf) {
            if n == 0 || client.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = client.shutdown(std::net::Shutdown::Write);
    });
    (addr.to_string(), puts)
}
