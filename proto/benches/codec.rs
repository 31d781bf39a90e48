//! encode + decode of 64 KiB output frames, against a plain memcpy of the
//! same bytes measured in the same run.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rexec_proto::payload::decode_output;
use rexec_proto::{
    DEFAULT_MAX_FRAME, FrameDecoder, OutputStream, ServerEvent, ServerMsg, encode_output_frame,
    parse_frame,
};
use std::hint::black_box;

const CHUNK: usize = 64 * 1024;
const FRAMES: usize = 16;

fn bench(c: &mut Criterion) {
    let data: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
    let mut g = c.benchmark_group("64KiB output frames");
    g.throughput(Throughput::Bytes((CHUNK * FRAMES) as u64));

    g.bench_function("memcpy", |b| {
        let mut out = vec![0u8; CHUNK * FRAMES];
        b.iter(|| {
            for i in 0..FRAMES {
                out[i * CHUNK..(i + 1) * CHUNK].copy_from_slice(black_box(&data));
            }
            black_box(&out);
        })
    });

    g.bench_function("encode", |b| {
        let mut out = Vec::with_capacity((CHUNK + 16) * FRAMES);
        b.iter(|| {
            out.clear();
            for i in 0..FRAMES {
                encode_output_frame(OutputStream::Stdout, i as u32, black_box(&data), &mut out);
            }
            black_box(&out);
        })
    });

    // The codec's own work: encode (one copy of the data), then split the
    // frames and decode them in place, the data borrowed, not copied. In use,
    // the kernel's recv copy fills the decoder's buffer; it is not ours.
    g.bench_function("encode+decode", |b| {
        let mut wire = Vec::with_capacity((CHUNK + 16) * FRAMES);
        b.iter(|| {
            wire.clear();
            for i in 0..FRAMES {
                encode_output_frame(OutputStream::Stdout, i as u32, black_box(&data), &mut wire);
            }
            let (mut at, mut n) = (0, 0);
            while let Some((payload, used)) =
                parse_frame(&wire[at..], DEFAULT_MAX_FRAME).expect("valid")
            {
                let (_, _, d) = decode_output(payload).expect("output frame");
                n += black_box(d).len();
                at += used;
            }
            assert_eq!(n, CHUNK * FRAMES);
        })
    });

    // The same through FrameDecoder, with the receive copy done by `feed`.
    g.bench_function("encode+feed+decode", |b| {
        let mut wire = Vec::with_capacity((CHUNK + 16) * FRAMES);
        let mut dec = FrameDecoder::new();
        b.iter(|| {
            wire.clear();
            for i in 0..FRAMES {
                encode_output_frame(OutputStream::Stdout, i as u32, black_box(&data), &mut wire);
            }
            dec.feed(&wire);
            let mut n = 0;
            while let Some(ev) = dec.next_server_event().expect("valid frames") {
                if let ServerEvent::Output { data, .. } = ev {
                    n += black_box(data).len();
                }
            }
            assert_eq!(n, CHUNK * FRAMES);
        })
    });

    g.bench_function("encode+decode owned", |b| {
        let mut wire = Vec::with_capacity((CHUNK + 16) * FRAMES);
        let mut dec = FrameDecoder::new();
        b.iter(|| {
            wire.clear();
            for i in 0..FRAMES {
                encode_output_frame(OutputStream::Stdout, i as u32, black_box(&data), &mut wire);
            }
            dec.feed(&wire);
            let mut n = 0;
            while let Some(msg) = dec.next_message::<ServerMsg>().expect("valid frames") {
                if let ServerMsg::Stdout { data, .. } = msg {
                    n += data.len();
                }
            }
            assert_eq!(n, CHUNK * FRAMES);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
