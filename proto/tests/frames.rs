//! Property and fixed-vector tests of the frame layer.

use proptest::collection::vec;
use proptest::prelude::*;
use rexec_proto::tutorial::{
    SeedError, SeedReplyDecoder, encode_raw_reply, encode_seed_reply, parse_seed_header,
    seed_header,
};
use rexec_proto::*;
use serde_bytes::ByteBuf;

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![vec(any::<u8>(), 0..64), vec(any::<u8>(), 0..70_000)]
}

fn error_kind() -> impl Strategy<Value = ErrorKind> {
    prop_oneof![
        Just(ErrorKind::Protocol),
        Just(ErrorKind::Version),
        Just(ErrorKind::Auth),
        Just(ErrorKind::Limit),
        Just(ErrorKind::BadRequest),
        Just(ErrorKind::Spawn),
        Just(ErrorKind::Forbidden),
        Just(ErrorKind::Idle),
        Just(ErrorKind::Shutdown),
    ]
}

fn client_msg() -> impl Strategy<Value = ClientMsg> {
    prop_oneof![
        (any::<u16>(), ".{0,20}")
            .prop_map(|(protocol, software)| ClientMsg::Hello(ClientHello { protocol, software })),
        vec(any::<u8>(), 0..40).prop_map(|answer| ClientMsg::Auth { answer }),
        (
            any::<u32>(),
            ".{0,200}",
            any::<bool>(),
            proptest::option::of(".{0,30}"),
            vec((".{0,10}", ".{0,10}"), 0..4),
            proptest::option::of(any::<u64>()),
            any::<bool>(),
            proptest::option::of((".{0,12}", any::<u16>(), any::<u16>()))
        )
            .prop_map(|(id, command, argv, cwd, env, timeout_ms, stdin, pty)| {
                ClientMsg::Exec(Exec {
                    id,
                    command,
                    mode: if argv {
                        ExecMode::Argv
                    } else {
                        ExecMode::Shell
                    },
                    cwd,
                    env,
                    timeout_ms,
                    stdin,
                    pty: pty.map(|(term, rows, cols)| PtyRequest { term, rows, cols }),
                })
            }),
        (any::<u32>(), bytes()).prop_map(|(id, data)| ClientMsg::Stdin { id, data }),
        any::<u32>().prop_map(|id| ClientMsg::StdinEof { id }),
        any::<u32>().prop_map(|id| ClientMsg::Cancel { id }),
        (any::<u32>(), any::<u16>(), any::<u16>()).prop_map(|(id, rows, cols)| ClientMsg::Resize {
            id,
            rows,
            cols
        }),
    ]
}

fn server_msg() -> impl Strategy<Value = ServerMsg> {
    prop_oneof![
        (
            any::<u16>(),
            ".{0,20}",
            proptest::option::of(vec(any::<u8>(), 0..40))
        )
            .prop_map(
                |(protocol, software, challenge)| ServerMsg::Hello(ServerHello {
                    protocol,
                    software,
                    challenge: challenge.map(ByteBuf::from),
                })
            ),
        (any::<u32>(), any::<u32>()).prop_map(|(id, pid)| ServerMsg::Started { id, pid }),
        (any::<u32>(), bytes()).prop_map(|(id, data)| ServerMsg::Stdout { id, data }),
        (any::<u32>(), bytes()).prop_map(|(id, data)| ServerMsg::Stderr { id, data }),
        (
            any::<u32>(),
            any::<i32>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(
                |(id, n, sig, timed_out, truncated, duration_ms, bytes_out)| {
                    ServerMsg::Exited(Exited {
                        id,
                        status: if sig {
                            ExitStatus::Signal(n)
                        } else {
                            ExitStatus::Code(n)
                        },
                        timed_out,
                        truncated,
                        duration_ms,
                        bytes_out,
                    })
                }
            ),
        (proptest::option::of(any::<u32>()), error_kind(), ".{0,50}")
            .prop_map(|(id, kind, message)| ServerMsg::Error(ErrorMsg { id, kind, message })),
    ]
}

fn decode_all<M: serde::de::DeserializeOwned>(dec: &mut FrameDecoder) -> Vec<M> {
    let mut out = Vec::new();
    while let Some(m) = dec.next_message().expect("valid stream") {
        out.push(m);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn client_messages_round_trip(msg in client_msg()) {
        let mut wire = Vec::new();
        let len = encode_frame(&msg, &mut wire);
        prop_assert_eq!(wire.len(), HEADER_LEN + len);
        prop_assert_eq!(&wire[..4], &(len as u32).to_be_bytes());
        let mut dec = FrameDecoder::with_max_frame(MAX_FRAME_LIMIT);
        dec.feed(&wire);
        prop_assert_eq!(dec.next_message::<ClientMsg>(), Ok(Some(msg)));
        prop_assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn server_messages_round_trip(msg in server_msg()) {
        let mut wire = Vec::new();
        encode_frame(&msg, &mut wire);
        let mut dec = FrameDecoder::with_max_frame(MAX_FRAME_LIMIT);
        dec.feed(&wire);
        prop_assert_eq!(dec.next_message::<ServerMsg>(), Ok(Some(msg)));
    }

    /// The copy-once output encoder writes exactly what the generic one does.
    #[test]
    fn output_frames_match_generic_encoding(id in any::<u32>(), data in bytes(), err in any::<bool>()) {
        let (stream, msg) = if err {
            (OutputStream::Stderr, ServerMsg::Stderr { id, data: data.clone() })
        } else {
            (OutputStream::Stdout, ServerMsg::Stdout { id, data: data.clone() })
        };
        let mut generic = vec![7u8];
        encode_frame(&msg, &mut generic);
        let mut fast = vec![7u8];
        encode_output_frame(stream, id, &data, &mut fast);
        prop_assert_eq!(generic, fast);
    }

    /// A spliced frame (header written first, data moved separately) is
    /// byte for byte the frame the copying encoder writes, whatever size
    /// class the data length's varint falls in.
    #[test]
    fn output_header_plus_data_is_the_whole_frame(
        id in any::<u32>(),
        len in prop::sample::select(vec![0usize, 1, 250, 251, 252, 65_535, 65_536, 65_537, (1 << 20) - 20]),
        err in any::<bool>(),
    ) {
        let stream = if err { OutputStream::Stderr } else { OutputStream::Stdout };
        let data = vec![0x5a; len];
        let mut whole = Vec::new();
        let payload = encode_output_frame(stream, id, &data, &mut whole);
        let mut spliced = Vec::new();
        prop_assert_eq!(encode_output_header(stream, id, len, &mut spliced), payload);
        prop_assert!(spliced.len() <= OUTPUT_HEADER_MAX);
        spliced.extend_from_slice(&data);
        prop_assert_eq!(spliced, whole);
    }

    /// An output frame cut anywhere after its data prefix is described as a
    /// partial output (the data so far, the bytes missing); before that, or
    /// once whole, it is not, and a frame of another kind never is.
    #[test]
    fn partial_output_describes_a_cut_output_frame(
        id in any::<u32>(),
        data in vec(any::<u8>(), 1..3000),
        cut in any::<prop::sample::Index>(),
        other in server_msg(),
    ) {
        let mut wire = Vec::new();
        encode_output_frame(OutputStream::Stdout, id, &data, &mut wire);
        let mut head = Vec::new();
        encode_output_header(OutputStream::Stdout, id, data.len(), &mut head);
        let at = cut.index(wire.len() + 1);
        let mut dec = FrameDecoder::new();
        dec.feed(&wire[..at]);
        match dec.partial_output() {
            Some(p) => {
                prop_assert!(at >= head.len() && at < wire.len());
                prop_assert_eq!(p.stream, OutputStream::Stdout);
                prop_assert_eq!(p.id, id);
                prop_assert_eq!(p.data, &data[..at - head.len()]);
                prop_assert_eq!(p.remaining, wire.len() - at);
                dec.discard_partial();
                prop_assert_eq!(dec.buffered(), 0);
            }
            None => prop_assert!(at < head.len() || at == wire.len()),
        }
        if !matches!(other, ServerMsg::Stdout { .. } | ServerMsg::Stderr { .. }) {
            let mut w = Vec::new();
            encode_frame(&other, &mut w);
            let mut dec = FrameDecoder::new();
            dec.feed(&w[..w.len() - 1]);
            prop_assert_eq!(dec.partial_output(), None);
            dec.discard_partial();
            prop_assert_eq!(dec.buffered(), w.len() - 1);
        }
    }

    /// The same for a client's `Stdin` frame, which the server splices the
    /// rest of into the command's pipe: described once its data prefix is
    /// here and until it is whole, and never for another kind of frame.
    #[test]
    fn partial_stdin_describes_a_cut_stdin_frame(
        id in any::<u32>(),
        data in vec(any::<u8>(), 1..3000),
        cut in any::<prop::sample::Index>(),
        other in client_msg(),
    ) {
        let mut wire = Vec::new();
        encode_frame(&ClientMsg::Stdin { id, data: data.clone() }, &mut wire);
        let head = wire.len() - data.len();
        let at = cut.index(wire.len() + 1);
        let mut dec = FrameDecoder::new();
        dec.feed(&wire[..at]);
        match dec.partial_stdin() {
            Some(p) => {
                prop_assert!(at >= head && at < wire.len());
                prop_assert_eq!(p.id, id);
                prop_assert_eq!(p.data, &data[..at - head]);
                prop_assert_eq!(p.remaining, wire.len() - at);
                dec.discard_partial();
                prop_assert_eq!(dec.buffered(), 0);
            }
            None => prop_assert!(at < head || at == wire.len()),
        }
        if !matches!(other, ClientMsg::Stdin { .. }) {
            let mut w = Vec::new();
            encode_frame(&other, &mut w);
            let mut dec = FrameDecoder::with_max_frame(MAX_FRAME_LIMIT);
            dec.feed(&w[..w.len() - 1]);
            prop_assert_eq!(dec.partial_stdin(), None);
            dec.discard_partial();
            prop_assert_eq!(dec.buffered(), w.len() - 1);
        }
    }

    /// Many frames, glued together and cut at random places, decode to the
    /// same messages: sticky packets and split packets both handled.
    #[test]
    fn random_splits_decode_the_same(msgs in vec(server_msg(), 1..12), cuts in vec(any::<prop::sample::Index>(), 0..20)) {
        let mut wire = Vec::new();
        for m in &msgs {
            encode_frame(m, &mut wire);
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        points.push(0);
        points.push(wire.len());
        points.sort_unstable();
        let mut dec = FrameDecoder::with_max_frame(MAX_FRAME_LIMIT);
        let mut got = Vec::new();
        for w in points.windows(2) {
            dec.feed(&wire[w[0]..w[1]]);
            got.extend(decode_all::<ServerMsg>(&mut dec));
        }
        prop_assert_eq!(got, msgs);
        prop_assert_eq!(dec.finish(), Ok(()));
    }

    /// Truncated input never errors: it waits, and `finish` reports it.
    #[test]
    fn truncated_input_waits(msg in client_msg(), cut in any::<prop::sample::Index>()) {
        let mut wire = Vec::new();
        encode_frame(&msg, &mut wire);
        let n = cut.index(wire.len()); // strictly less than the whole frame
        let mut dec = FrameDecoder::with_max_frame(MAX_FRAME_LIMIT);
        dec.feed(&wire[..n]);
        prop_assert_eq!(dec.next_message::<ClientMsg>(), Ok(None));
        prop_assert_eq!(dec.finish().is_err(), n > 0);
    }

    /// A declared length above the limit is refused from the header alone,
    /// before the buffer grows to hold it.
    #[test]
    fn oversized_length_refused_without_allocation(len in (DEFAULT_MAX_FRAME as u32 + 1)..=u32::MAX) {
        let mut dec = FrameDecoder::new();
        dec.feed(&len.to_be_bytes());
        prop_assert_eq!(
            dec.next_message::<ClientMsg>(),
            Err(FrameError::TooLarge { len: len as u64, max: DEFAULT_MAX_FRAME })
        );
        prop_assert!(dec.capacity() < 1024, "decoder grew to {}", dec.capacity());
    }

    /// Random bytes never panic: every call yields a message, "not yet", or an error.
    #[test]
    fn garbage_never_panics(data in vec(any::<u8>(), 0..4096), max in 0usize..5000) {
        let mut dec = FrameDecoder::with_max_frame(max);
        dec.feed(&data);
        for _ in 0..64 {
            match dec.next_message::<ClientMsg>() {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
        let mut dec = FrameDecoder::with_max_frame(max);
        dec.feed(&data);
        for _ in 0..64 {
            match dec.next_message::<ServerMsg>() {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// A framed payload of random bytes is a typed error or a message, never a panic,
    /// and a message that decodes re-encodes to the same length or less.
    #[test]
    fn random_payload_is_typed_error(payload in vec(any::<u8>(), 0..512)) {
        let mut wire = frame_header(payload.len()).to_vec();
        wire.extend_from_slice(&payload);
        let mut dec = FrameDecoder::new();
        dec.feed(&wire);
        match dec.next_message::<ClientMsg>() {
            Ok(Some(_)) | Err(FrameError::Decode(_)) => {}
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    #[test]
    fn seed_replies_split_anywhere(replies in vec(vec(any::<u8>(), 0..3000), 1..6), cut in any::<prop::sample::Index>()) {
        let mut wire = Vec::new();
        for r in &replies {
            encode_seed_reply(r, b"", &mut wire).expect("small reply");
        }
        let n = cut.index(wire.len() + 1);
        let mut dec = SeedReplyDecoder::new(1 << 20);
        let mut got = Vec::new();
        dec.feed(&wire[..n]);
        while let Some(r) = dec.next_reply().expect("valid") { got.push(r); }
        dec.feed(&wire[n..]);
        while let Some(r) = dec.next_reply().expect("valid") { got.push(r); }
        prop_assert_eq!(got, replies);
    }
}

/// Byte vectors printed by Python: `struct.pack('!I', n)` for rexec's frame
/// header, and `struct.pack('<i', n)` for the tutorials' seed header.
#[test]
fn headers_match_python_struct_pack() {
    let cases: [(usize, [u8; 4], [u8; 4]); 6] = [
        (0, [0, 0, 0, 0], [0, 0, 0, 0]),
        (1, [0, 0, 0, 1], [1, 0, 0, 0]),
        (1024, [0x00, 0x00, 0x04, 0x00], [0x00, 0x04, 0x00, 0x00]),
        (65_546, [0x00, 0x01, 0x00, 0x0a], [0x0a, 0x00, 0x01, 0x00]),
        (0x0102_0304, [1, 2, 3, 4], [4, 3, 2, 1]),
        (
            i32::MAX as usize,
            [0x7f, 0xff, 0xff, 0xff],
            [0xff, 0xff, 0xff, 0x7f],
        ),
    ];
    for (n, be, le) in cases {
        assert_eq!(frame_header(n), be, "struct.pack('!I', {n})");
        assert_eq!(seed_header(n), Ok(le), "struct.pack('<i', {n})");
        assert_eq!(parse_seed_header(le), Ok(n));
    }
    // struct.pack('<i', 2**31) raises struct.error; so do we.
    assert_eq!(seed_header(1 << 31), Err(SeedError::TooLarge(1 << 31)));
    // struct.unpack('<i', b'\xff\xff\xff\xff') == (-1,): refused, not read as 4 GiB.
    assert_eq!(parse_seed_header([0xff; 4]), Err(SeedError::Negative(-1)));
}

#[test]
fn seed_and_raw_replies_put_stdout_before_stderr() {
    let mut seed = Vec::new();
    encode_seed_reply(b"out\n", b"err\n", &mut seed).expect("small");
    assert_eq!(seed, b"\x08\x00\x00\x00out\nerr\n");
    let mut raw = Vec::new();
    encode_raw_reply(b"out\n", b"err\n", &mut raw);
    assert_eq!(raw, b"out\nerr\n");
}

#[test]
fn seed_decoder_refuses_oversized_reply() {
    let mut dec = SeedReplyDecoder::new(100);
    dec.feed(&seed_header(101).expect("fits"));
    assert_eq!(dec.next_reply(), Err(SeedError::TooLarge(101)));
}

#[test]
fn every_split_of_a_stream_decodes_the_same() {
    let msgs = vec![
        ServerMsg::Started { id: 1, pid: 42 },
        ServerMsg::Stdout {
            id: 1,
            data: b"hello\n".to_vec(),
        },
        ServerMsg::Stderr {
            id: 1,
            data: vec![0xff, 0, 0xfe],
        },
        ServerMsg::Exited(Exited {
            id: 1,
            status: ExitStatus::Code(3),
            timed_out: false,
            truncated: false,
            duration_ms: 12,
            bytes_out: 9,
        }),
    ];
    let mut wire = Vec::new();
    for m in &msgs {
        encode_frame(m, &mut wire);
    }
    // every single cut point, and every byte fed on its own
    for cut in 0..=wire.len() {
        let mut dec = FrameDecoder::new();
        dec.feed(&wire[..cut]);
        let mut got = decode_all::<ServerMsg>(&mut dec);
        dec.feed(&wire[cut..]);
        got.extend(decode_all::<ServerMsg>(&mut dec));
        assert_eq!(got, msgs, "cut at {cut}");
    }
    let mut dec = FrameDecoder::new();
    let mut got = Vec::new();
    for b in &wire {
        dec.feed(std::slice::from_ref(b));
        got.extend(decode_all::<ServerMsg>(&mut dec));
    }
    assert_eq!(got, msgs);
}

#[test]
fn read_from_reads_straight_into_the_buffer() {
    let mut wire = Vec::new();
    for id in 0..100 {
        encode_frame(&ClientMsg::Cancel { id }, &mut wire);
    }
    let mut src = std::io::Cursor::new(wire);
    let mut dec = FrameDecoder::new();
    let mut got = Vec::new();
    while dec.read_from(&mut src).expect("cursor") > 0 {
        got.extend(decode_all::<ClientMsg>(&mut dec));
    }
    assert_eq!(got.len(), 100);
    assert_eq!(got[99], ClientMsg::Cancel { id: 99 });
}

#[test]
fn trailing_bytes_in_a_payload_are_an_error() {
    let mut wire = Vec::new();
    encode_frame(&ClientMsg::Cancel { id: 1 }, &mut wire);
    // Claim one more byte and append it: the message decodes but leaves a byte.
    let len = wire.len() - HEADER_LEN + 1;
    wire[..4].copy_from_slice(&frame_header(len));
    wire.push(0);
    let mut dec = FrameDecoder::new();
    dec.feed(&wire);
    assert!(matches!(
        dec.next_message::<ClientMsg>(),
        Err(FrameError::Decode(_))
    ));
}

#[test]
fn a_small_payload_cannot_claim_a_huge_vector() {
    // Stdin { id: 0, data: <length 2^40> } in 12 bytes: bincode's limit refuses it.
    let payload = [2u8, 0, 0xfd, 0, 0, 0, 0, 0, 1, 0, 0];
    let mut wire = frame_header(payload.len()).to_vec();
    wire.extend_from_slice(&payload);
    let mut dec = FrameDecoder::new();
    dec.feed(&wire);
    assert!(matches!(
        dec.next_message::<ClientMsg>(),
        Err(FrameError::Decode(_))
    ));
}

proptest! {
    /// The borrowed decode of output frames agrees with the owned one.
    #[test]
    fn server_events_agree_with_messages(msgs in vec(server_msg(), 1..8)) {
        let mut wire = Vec::new();
        for m in &msgs {
            encode_frame(m, &mut wire);
        }
        let mut dec = FrameDecoder::with_max_frame(MAX_FRAME_LIMIT);
        dec.feed(&wire);
        for m in &msgs {
            let ev = dec.next_server_event().expect("valid").expect("whole frame");
            match (ev, m) {
                (ServerEvent::Output { stream: OutputStream::Stdout, id, data }, ServerMsg::Stdout { id: i, data: d })
                | (ServerEvent::Output { stream: OutputStream::Stderr, id, data }, ServerMsg::Stderr { id: i, data: d }) => {
                    prop_assert_eq!(id, *i);
                    prop_assert_eq!(data, &d[..]);
                }
                (ServerEvent::Msg(got), want) => prop_assert_eq!(&got, want),
                (ev, want) => prop_assert!(false, "{:?} decoded as {:?}", want, ev),
            }
        }
    }
}

/// `missing` counts what the frame at the front lacks, once its header is
/// here; `decode_borrowed` hands byte strings out without copying them.
#[test]
fn missing_bytes_and_borrowed_decoding() {
    let mut wire = Vec::new();
    encode_frame(
        &ClientMsg::Stdin {
            id: 4,
            data: vec![8; 1000],
        },
        &mut wire,
    );
    let mut dec = FrameDecoder::new();
    assert_eq!(dec.missing(), None);
    dec.feed(&wire[..3]);
    assert_eq!(dec.missing(), None, "no whole header yet");
    dec.feed(&wire[3..10]);
    assert_eq!(dec.missing(), Some(wire.len() - 10));
    dec.feed(&wire[10..]);
    assert_eq!(dec.missing(), Some(0));
    let payload = dec.next_payload().unwrap().unwrap();
    let (variant, id, data): (u32, u32, &[u8]) = payload::decode_borrowed(payload).unwrap();
    assert_eq!((variant, id, data), (2, 4, &[8u8; 1000][..]));
    assert!(
        std::ptr::eq(data.as_ptr(), payload[payload.len() - 1000..].as_ptr()),
        "borrowed"
    );
    assert!(
        payload::decode_borrowed::<(u32, u32)>(payload).is_err(),
        "trailing bytes"
    );
}
