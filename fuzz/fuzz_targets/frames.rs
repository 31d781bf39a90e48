//! The frame decoder and message decoding, fed arbitrary bytes split at
//! arbitrary places. Properties: no panic; every decoded message re-encodes
//! to a frame that decodes to the same message; the borrowed output decode
//! agrees with the owned one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rexec_proto::{ClientMsg, FrameDecoder, ServerEvent, ServerMsg, encode_frame};

fn round_trip<M>(m: &M)
where
    M: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let mut w = Vec::new();
    encode_frame(m, &mut w);
    let mut d = FrameDecoder::with_max_frame(rexec_proto::MAX_FRAME_LIMIT);
    d.feed(&w);
    assert_eq!(d.next_message::<M>().ok().flatten().as_ref(), Some(m));
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, data)) = data.split_first() else { return };
    let max = [16usize, 300, 4096, 1 << 20][(ctl & 3) as usize];
    let step = 1 + (ctl >> 2) as usize;

    let mut client = FrameDecoder::with_max_frame(max);
    let mut server = FrameDecoder::with_max_frame(max);
    let (mut client_ok, mut server_ok) = (true, true);
    for chunk in data.chunks(step) {
        if client_ok {
            client.feed(chunk);
            loop {
                match client.next_message::<ClientMsg>() {
                    Ok(Some(m)) => round_trip(&m),
                    Ok(None) => break,
                    Err(_) => {
                        client_ok = false;
                        break;
                    }
                }
            }
        }
        if server_ok {
            server.feed(chunk);
            loop {
                match server.next_server_event() {
                    Ok(Some(ServerEvent::Output { stream, id, data })) => {
                        let m = match stream {
                            rexec_proto::OutputStream::Stdout => ServerMsg::Stdout { id, data: data.to_vec() },
                            rexec_proto::OutputStream::Stderr => ServerMsg::Stderr { id, data: data.to_vec() },
                        };
                        round_trip(&m);
                    }
                    Ok(Some(ServerEvent::Msg(m))) => round_trip(&m),
                    Ok(None) => break,
                    Err(_) => {
                        server_ok = false;
                        break;
                    }
                }
            }
        }
        assert!(client.buffered() <= max + 4 + step);
    }
    let _ = client.finish();
});
