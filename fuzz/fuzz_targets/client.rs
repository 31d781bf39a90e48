//! What the client decodes from a server, which may be hostile: frames
//! split anywhere (probes and channel messages taken out first, as the
//! session does, then the rest), a `Get`'s header, bytes and checksum, a `List` answer,
//! and server text made safe for the terminal. Properties: no panic, no
//! unbounded allocation; no listed path that climbs or is absolute passes
//! the download's check (asserted inside `decode_untrusted`); escaped text
//! holds no control character but tab and newline.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rexec_proto::FrameDecoder;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, data)) = data.split_first() else { return };
    let step = 1 + ctl as usize;

    let mut dec = FrameDecoder::new();
    'frames: for chunk in data.chunks(step) {
        dec.feed(chunk);
        loop {
            match dec.next_probe().and_then(|p| match p {
                Some(_) => Ok(true),
                None => dec.next_channel_msg().map(|c| c.is_some()),
            }) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(_) => break 'frames,
            }
            match dec.next_server_event() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => break 'frames,
            }
        }
    }

    rexec_client::decode_untrusted(step, data);

    let shown = rexec_proto::text::escape_controls(data);
    for (i, &b) in shown.iter().enumerate() {
        assert!(
            !matches!(b, 0..=0x08 | 0x0b..=0x1f | 0x7f),
            "control byte {b:#04x} left at {i}"
        );
        assert!(
            !(b == 0xc2 && matches!(shown.get(i + 1), Some(0x80..=0x9f))),
            "C1 control left at {i}"
        );
    }
});
