//! Zero-copy output: on plain connections rexecd splices a command's pipe
//! into the socket, and rexec splices the socket into a stdout that is a
//! pipe or a file. The bytes must be exactly those the command wrote,
//! whatever the stdout, and output waiting for a slow client must wait in
//! the kernel, not in rexecd.

use std::net::TcpStream;
use std::time::Duration;

use rexec_proto::*;
use rexec_tests::wire::{hello, read_until, send, stdout_of};
use rexec_tests::*;

/// A file of `n` bytes that no run of zeros or repeated block would pass
/// for: a frame cut, doubled or misplaced shows.
fn pattern_file(dir: &TempDir, n: usize) -> std::path::PathBuf {
    let mut x: u32 = 0x2545_f491;
    let data: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let p = dir.path("pattern");
    std::fs::write(&p, data).expect("write the pattern");
    p
}

fn sh(script: &str) -> Ran {
    run(std::process::Command::new("/bin/sh").arg("-c").arg(script))
}

#[test]
fn large_output_arrives_intact_to_a_file_a_pipe_and_an_appended_file() {
    let d = Daemon::start(&[]);
    let dir = TempDir::new("splice");
    let src = pattern_file(&dir, 5 << 20);
    let want = std::fs::read(&src).expect("read the pattern");
    let rexec = bin("rexec");
    let cmd = format!("cat {0}; cat {0} >&2; cat {0}", src.display());
    let both = [want.as_slice(), want.as_slice()].concat();

    // stdout a file (spliced through rexec's own pipe), stderr another.
    let (out, err) = (dir.path("out"), dir.path("err"));
    let r = sh(&format!(
        "{} {} '{cmd}' > {} 2> {}",
        rexec.display(),
        d.host(),
        out.display(),
        err.display()
    ));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        std::fs::read(&out).expect("out") == both,
        "stdout to a file differs"
    );
    assert!(
        std::fs::read(&err).expect("err") == want,
        "stderr to a file differs"
    );

    // stdout a pipe (spliced straight into it).
    let r = sh(&format!(
        "{} {} '{cmd}' 2>/dev/null | cat",
        rexec.display(),
        d.host()
    ));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout == both,
        "stdout through a pipe differs ({} bytes)",
        r.stdout.len()
    );

    // An O_APPEND file cannot be spliced to: the copying path, same bytes.
    let app = dir.path("appended");
    std::fs::write(&app, b"before\n").expect("seed");
    let r = sh(&format!(
        "{} {} '{cmd}' 2>/dev/null >> {}",
        rexec.display(),
        d.host(),
        app.display()
    ));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let got = std::fs::read(&app).expect("appended");
    assert!(
        got[..7] == *b"before\n" && got[7..] == both,
        "appended output differs"
    );
}

#[test]
fn the_output_limit_cuts_spliced_output_exactly() {
    let d = Daemon::start(&["--max-output", "3000000"]);
    let dir = TempDir::new("splice-limit");
    let src = pattern_file(&dir, 5 << 20);
    let want = std::fs::read(&src).expect("read the pattern");
    let r = sh(&format!(
        "{} {} 'cat {}' | cat",
        bin("rexec").display(),
        d.host(),
        src.display()
    ));
    assert_eq!(r.stdout.len(), 3_000_000, "{}", r.stderr);
    assert!(r.stdout == want[..3_000_000], "the cut output differs");
    assert!(r.stderr.contains("3000000"), "{}", r.stderr);
}

#[test]
fn output_for_clients_that_never_read_waits_in_the_kernel() {
    let d = Daemon::start(&[]);
    let base = d.rss_kib();
    // 48 clients start a large output each and never read it. Copied through
    // rexecd, each would fill its 1 MiB queue (and the memory budget allows
    // 256 MiB): 48 MiB and more. Spliced, it stays in the pipes and sockets,
    // and at most one small read per connection waits in rexecd.
    let socks: Vec<TcpStream> = (0..48)
        .map(|i| {
            let mut s = TcpStream::connect(d.addr).expect("connect");
            send(&mut s, &hello());
            send(
                &mut s,
                &ClientMsg::Exec(Exec {
                    id: i,
                    command: "head -c 20000000 /dev/zero".into(),
                    ..Exec::default()
                }),
            );
            s
        })
        .collect();
    // Every command fills what it can (20 MB each is more than a pipe and
    // two socket buffers hold) and blocks.
    assert!(
        wait_until_stalled(d.pid(), 48, || 0),
        "the 48 commands did not all block"
    );
    let rss = d.rss_kib();
    assert!(
        rss < base + 4 * 1024,
        "RSS {rss} KiB with 48 non-readers (from {base} KiB)"
    );
    let r = run(rexec().arg(d.host()).arg("echo still here"));
    assert_eq!(r.out(), "still here\n", "{}", r.stderr);
    drop(socks);
}

/// Zero-copy input: a large `Stdin` chunk's data goes from the socket
/// straight into the command's pipe. A command that does not read for a
/// while (a slow disk, say) fills that pipe, and rexecd stops reading the
/// socket in the middle of a chunk: that wait is rexecd's, and must not run
/// out the client's frame timeout. Every byte arrives, in order.
#[test]
fn stdin_spliced_into_a_command_that_reads_late_arrives_whole() {
    let d = Daemon::start(&["--frame-timeout", "1"]);
    let mut sock = TcpStream::connect(d.addr).expect("connect");
    send(&mut sock, &hello());
    // The command holds off reading until the test says so, through a
    // fifo, long after its pipe and the socket have filled.
    let dir = TempDir::new("splice-in");
    let go = dir.path("go");
    assert!(sh(&format!("mkfifo {}", go.display())).code == Some(0));
    send(
        &mut sock,
        &ClientMsg::Exec(Exec {
            id: 1,
            command: format!("read _ < {}; sha256sum", go.display()),
            stdin: true,
            ..Exec::default()
        }),
    );
    const CHUNK: usize = 256 * 1024;
    const CHUNKS: usize = 96; // 24 MiB: far more than the pipe and the socket hold
    let chunk = |i: usize| -> Vec<u8> { (0..CHUNK).map(|j| (i * 7 + j / 4096) as u8).collect() };
    let mut writer = sock.try_clone().expect("clone");
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = sent.clone();
    let t = std::thread::spawn(move || {
        for i in 0..CHUNKS {
            send(
                &mut writer,
                &ClientMsg::Stdin {
                    id: 1,
                    data: chunk(i),
                },
            );
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        send(&mut writer, &ClientMsg::StdinEof { id: 1 });
    });
    // The writer stalls, as the command is not reading: wait until it has
    // made no progress for twice the frame timeout (the bytes wait in the
    // kernel meanwhile, mid-chunk).
    let stalled = {
        let (mut last, mut since) = (usize::MAX, std::time::Instant::now());
        wait_until(PATIENCE, || {
            let now = sent.load(std::sync::atomic::Ordering::SeqCst);
            if now != last {
                (last, since) = (now, std::time::Instant::now());
            }
            now < CHUNKS && since.elapsed() > Duration::from_secs(2)
        })
    };
    assert!(stalled, "the writer never stalled");
    // Non-blocking: with the command gone (its connection closed for the
    // frame timeout) there is no reader, and this fails instead of waiting.
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut fifo = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&go)
            .expect("the command waits on its fifo (is its connection still open?)");
        fifo.write_all(b"go\n").expect("let the command read");
    }
    let mut dec = FrameDecoder::new();
    let seen = read_until(&mut sock, &mut dec, |m| matches!(m, ServerMsg::Exited(_)));
    t.join().expect("the writer");
    let out = stdout_of(&seen);
    let want = {
        let f = dir.path("want");
        let all: Vec<u8> = (0..CHUNKS).flat_map(chunk).collect();
        std::fs::write(&f, all).expect("write");
        String::from_utf8(sh(&format!("sha256sum < {}", f.display())).stdout).expect("text")
    };
    assert_eq!(String::from_utf8_lossy(&out), want, "{seen:?}");
    assert!(
        seen.iter()
            .any(|m| matches!(m, ServerMsg::Exited(x) if x.status == ExitStatus::Code(0))),
        "{seen:?}"
    );
}

/// splice(2) from a socket can move nothing though bytes are waiting (it
/// stops at an urgent mark, which a read steps over): rexecd must not take
/// that for the client closing in the middle of a chunk. Here one urgent
/// byte sits 768 KiB into a spliced `Stdin` chunk; every data byte around it
/// must reach the command, in order.
#[test]
fn stdin_whose_splice_stops_short_still_arrives_whole() {
    let d = Daemon::start(&[]);
    let mut sock = TcpStream::connect(d.addr).expect("connect");
    send(&mut sock, &hello());
    send(
        &mut sock,
        &ClientMsg::Exec(Exec {
            id: 1,
            command: "sha256sum".into(),
            stdin: true,
            ..Exec::default()
        }),
    );
    let data: Vec<u8> = (0..(1usize << 20) - 64)
        .map(|j| (j * 31 / 7) as u8)
        .collect();
    let whole = rexec_tests::wire::frame(&ClientMsg::Stdin {
        id: 1,
        data: data.clone(),
    });
    // The frame's data ends it: the mark goes 256 KiB before its end, far
    // past what one read of rexecd takes, so that rexecd is splicing there.
    let split = whole.len() - (1 << 18);
    {
        use std::io::Write;
        sock.write_all(&whole[..split]).expect("send");
        rustix::net::send(&sock, b"!", rustix::net::SendFlags::OOB).expect("send urgent");
        sock.write_all(&whole[split..]).expect("send");
    }
    send(&mut sock, &ClientMsg::StdinEof { id: 1 });
    let mut dec = FrameDecoder::new();
    let seen = read_until(&mut sock, &mut dec, |m| matches!(m, ServerMsg::Exited(_)));
    let want = {
        let dir = TempDir::new("splice-urgent");
        let f = dir.path("want");
        std::fs::write(&f, &data).expect("write");
        String::from_utf8(sh(&format!("sha256sum < {}", f.display())).stdout).expect("text")
    };
    assert_eq!(String::from_utf8_lossy(&stdout_of(&seen)), want, "{seen:?}");
}

/// A command on a terminal (`-tt` with stdin a file) gets large `Stdin`
/// chunks too, but splice(2) cannot write into a pty's master (it needs a
/// pipe at one end): those chunks are written as usual. Before, the splice
/// failed (EINVAL) and rexecd dropped the connection: the client said
/// "connection lost" and the command got a part of its input.
#[test]
fn large_stdin_for_a_command_on_a_terminal_arrives_whole() {
    let d = Daemon::start(&[]);
    let dir = TempDir::new("splice-pty");
    // Text in lines, so that whatever the terminal does before `stty`
    // takes effect (canonical mode, echo) changes nothing in the bytes.
    let text: String = (0..6000)
        .map(|i| format!("line {i:05} of the input\n"))
        .collect();
    let input = dir.path("input");
    std::fs::write(&input, &text).expect("write the input");
    let want = {
        let f = dir.path("want");
        std::fs::write(&f, &text.as_bytes()[..100_000]).expect("write");
        let out = sh(&format!("sha256sum < {}", f.display())).stdout;
        String::from_utf8(out).expect("text")[..64].to_string()
    };
    let r = run(rexec()
        .arg("-tt")
        .arg(d.host())
        .arg("stty -echo -icanon; head -c 100000 | sha256sum")
        .stdin(std::fs::File::open(&input).expect("open the input")));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.out().contains(&want), "{want} in {:?}", r.out());
}
