//! rexecd over loopback: the real binary, driven by the client library or
//! raw sockets.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rexec_client::run::{Outcome, Sinks, run as run_cmd};
use rexec_client::{ConnectOptions, Session};
use rexec_proto::*;
use rexec_tests::wire::{hello, read_until, send};
use rexec_tests::*;

fn connect(d: &Daemon) -> Session {
    Session::connect_addr(d.addr, &ConnectOptions::default()).expect("connect")
}

fn exec_on(s: &mut Session, exec: Exec) -> (Outcome, Vec<u8>, Vec<u8>) {
    let mut sinks = Sinks::capture();
    let o = run_cmd(s, exec, &mut sinks, None).expect("run");
    let Sinks::Capture { stdout, stderr, .. } = sinks else {
        unreachable!()
    };
    (o, stdout, stderr)
}

fn sh(s: &mut Session, id: u32, cmd: &str) -> (Outcome, Vec<u8>, Vec<u8>) {
    exec_on(
        s,
        Exec {
            id,
            command: cmd.into(),
            ..Exec::default()
        },
    )
}

fn raw_connect(d: &Daemon) -> (TcpStream, FrameDecoder) {
    (TcpStream::connect(d.addr).unwrap(), FrameDecoder::new())
}

/// Connects, says hello, starts `command` as `id`, and reads until its first
/// output arrives; returns the socket, its decoder and what was read.
fn run_until_output(
    d: &Daemon,
    id: u32,
    command: &str,
) -> (TcpStream, FrameDecoder, Vec<ServerMsg>) {
    let (mut sock, mut dec) = raw_connect(d);
    send(&mut sock, &hello());
    send(
        &mut sock,
        &ClientMsg::Exec(Exec {
            id,
            command: command.into(),
            ..Exec::default()
        }),
    );
    let seen = read_until(&mut sock, &mut dec, |m| {
        matches!(m, ServerMsg::Stdout { .. })
    });
    (sock, dec, seen)
}

/// The pid in the `Started` among `seen`.
fn started_pid(seen: &[ServerMsg]) -> i32 {
    seen.iter()
        .find_map(|m| match m {
            ServerMsg::Started { pid, .. } => Some(*pid as i32),
            _ => None,
        })
        .expect("a Started message")
}

/// The number printed in the first `Stdout` among `seen` (a pid the command echoed).
fn first_stdout_number(seen: &[ServerMsg]) -> i32 {
    seen.iter()
        .find_map(|m| match m {
            ServerMsg::Stdout { data, .. } => String::from_utf8_lossy(data).trim().parse().ok(),
            _ => None,
        })
        .expect("a Stdout with a number")
}

#[test]
fn large_output_arrives_intact() {
    let d = Daemon::start(&[]);
    let dir = std::env::temp_dir().join(format!("rexec-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("big");
    // 64 MiB of varied bytes, made locally; the server cats the same file.
    let mut data = Vec::with_capacity(64 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < 64 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&file, &data).unwrap();
    let mut s = connect(&d);
    let (o, out, err) = sh(&mut s, 1, &format!("cat {}", file.display()));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        o.exit_code(),
        0,
        "stderr: {}",
        String::from_utf8_lossy(&err)
    );
    assert_eq!(out.len(), data.len());
    assert!(out == data, "64 MiB output differs from the file");
    assert_eq!(o.exited.unwrap().bytes_out, data.len() as u64);
}

#[test]
fn binary_output_stderr_and_exit_codes() {
    let d = Daemon::start(&[]);
    let mut s = connect(&d);
    let (o, out, err) = sh(
        &mut s,
        1,
        r"printf '\377\000\376'; printf 'oops' >&2; exit 7",
    );
    assert_eq!(out, [0xff, 0x00, 0xfe]);
    assert_eq!(err, b"oops");
    assert_eq!(o.exited.as_ref().unwrap().status, ExitStatus::Code(7));
    let (o, _, _) = sh(&mut s, 2, "kill -9 $$");
    assert_eq!(o.exited.as_ref().unwrap().status, ExitStatus::Signal(9));
    assert_eq!(o.exit_code(), 137);
}

#[test]
fn stdin_is_forwarded_and_closed() {
    let d = Daemon::start(&[]);
    let mut s = connect(&d);
    let mut sinks = Sinks::capture();
    let input: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(b"a\nb\nc\n".to_vec()));
    let o = run_cmd(
        &mut s,
        Exec {
            id: 1,
            command: "wc -l".into(),
            ..Exec::default()
        },
        &mut sinks,
        Some(input),
    )
    .unwrap();
    let Sinks::Capture { stdout, .. } = sinks else {
        unreachable!()
    };
    assert_eq!(String::from_utf8_lossy(&stdout).trim(), "3");
    assert_eq!(o.exit_code(), 0);
    // Without stdin the command reads /dev/null and does not hang.
    let (_, out, _) = sh(&mut s, 2, "cat; echo done");
    assert_eq!(out, b"done\n");
}

#[test]
fn stdin_larger_than_the_queue_limit_is_not_lost() {
    let d = Daemon::start(&[]);
    let mut s = connect(&d);
    let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut sinks = Sinks::capture();
    // `sleep` first, so the server has to queue and pause reading the socket.
    let o = run_cmd(
        &mut s,
        Exec {
            id: 1,
            command: "sleep 0.5; wc -c".into(),
            ..Exec::default()
        },
        &mut sinks,
        Some(Box::new(std::io::Cursor::new(data))),
    )
    .unwrap();
    let Sinks::Capture { stdout, .. } = sinks else {
        unreachable!()
    };
    assert_eq!(String::from_utf8_lossy(&stdout).trim(), "5000000");
    assert_eq!(o.exit_code(), 0);
}

#[test]
fn cwd_env_and_argv_mode() {
    let d = Daemon::start(&[]);
    let mut s = connect(&d);
    let (_, out, _) = exec_on(
        &mut s,
        Exec {
            id: 1,
            command: "pwd; echo $GREETING".into(),
            cwd: Some("/tmp".into()),
            env: vec![("GREETING".into(), "hi there".into())],
            ..Exec::default()
        },
    );
    assert_eq!(String::from_utf8_lossy(&out), "/tmp\nhi there\n");
    let (_, out, _) = exec_on(
        &mut s,
        Exec {
            id: 2,
            command: r#"printf '%s|' "my file" '$HOME' '*'"#.into(),
            mode: ExecMode::Argv,
            ..Exec::default()
        },
    );
    assert_eq!(String::from_utf8_lossy(&out), "my file|$HOME|*|");
}

#[test]
fn spawn_errors_keep_the_connection_usable() {
    let d = Daemon::start(&[]);
    let mut s = connect(&d);
    let (o, _, _) = exec_on(
        &mut s,
        Exec {
            id: 1,
            command: "no-such-program-xyz".into(),
            mode: ExecMode::Argv,
            ..Exec::default()
        },
    );
    let e = o.error.clone().expect("error");
    assert_eq!(e.kind, ErrorKind::Spawn);
    assert!(e.message.contains("No such file"), "{}", e.message);
    assert_eq!(o.exit_code(), 127);
    let (o, _, _) = exec_on(
        &mut s,
        Exec {
            id: 2,
            command: "pwd".into(),
            cwd: Some("/no/such/dir".into()),
            ..Exec::default()
        },
    );
    let e = o.error.expect("error");
    assert!(
        e.message.contains("/no/such/dir") && e.message.contains("No such file"),
        "{}",
        e.message
    );
    let (o, _, _) = exec_on(
        &mut s,
        Exec {
            id: 3,
            command: "echo 'unbalanced".into(),
            mode: ExecMode::Argv,
            ..Exec::default()
        },
    );
    assert_eq!(o.error.expect("error").kind, ErrorKind::BadRequest);
    let (o, out, _) = sh(&mut s, 4, "echo still here");
    assert_eq!(out, b"still here\n");
    assert_eq!(o.exit_code(), 0);
}

#[test]
fn timeouts_kill_and_are_reported() {
    let d = Daemon::start(&["--timeout", "1"]);
    let mut s = connect(&d);
    let (o, _, _) = sh(&mut s, 1, "sleep 30");
    let x = o.exited.as_ref().unwrap();
    assert!(x.timed_out);
    assert_eq!(o.exit_code(), 124);
    // A client may ask for less.
    let (o, _, _) = exec_on(
        &mut s,
        Exec {
            id: 2,
            command: "sleep 30".into(),
            timeout_ms: Some(200),
            ..Exec::default()
        },
    );
    assert!(o.exited.unwrap().timed_out);
    // ...but not for more than the server allows: this one still times out at 1 s.
    let (o, _, _) = exec_on(
        &mut s,
        Exec {
            id: 3,
            command: "sleep 30".into(),
            timeout_ms: Some(60_000),
            ..Exec::default()
        },
    );
    let x = o.exited.unwrap();
    assert!(x.timed_out && x.duration_ms < 10_000, "{x:?}");
}

#[test]
fn output_limit_truncates_and_kills() {
    let d = Daemon::start(&["--max-output", "100K"]);
    let mut s = connect(&d);
    let (o, out, _) = sh(&mut s, 1, "yes");
    let x = o.exited.unwrap();
    assert!(x.truncated);
    assert_eq!(out.len(), 100 * 1024);
    assert_eq!(x.bytes_out, 100 * 1024);
}

#[test]
fn cancel_stops_the_whole_process_group() {
    let d = Daemon::start(&[]);
    let (mut sock, mut dec, seen) = run_until_output(&d, 5, "sleep 300 & echo $!; wait");
    let leader = started_pid(&seen);
    let bg: i32 = first_stdout_number(&seen);
    assert!(alive(leader) && alive(bg));
    send(&mut sock, &ClientMsg::Cancel { id: 5 });
    let seen = read_until(&mut sock, &mut dec, |m| matches!(m, ServerMsg::Exited(_)));
    let Some(ServerMsg::Exited(x)) = seen.last() else {
        unreachable!()
    };
    assert_eq!(x.status, ExitStatus::Signal(libc::SIGTERM));
    assert!(
        wait_until(PATIENCE, || !alive(bg) && !alive(leader)),
        "processes survived Cancel"
    );
}

#[test]
fn disconnect_kills_the_process_group_even_if_it_ignores_sigterm() {
    let d = Daemon::start(&[]);
    // The background child ignores SIGTERM: only the SIGKILL after the grace stops it.
    let (sock, _dec, seen) = run_until_output(&d, 1, "(trap '' TERM; sleep 300) & echo $!; wait");
    let bg: i32 = first_stdout_number(&seen);
    assert!(alive(bg));
    drop(sock);
    assert!(
        wait_until(PATIENCE, || !alive(bg)),
        "pid {bg} survived the disconnect"
    );
    assert!(
        d.wait_log("client gone", PATIENCE),
        "no audit line: {}",
        d.log()
    );
}

#[test]
fn exits_are_reported_despite_grandchildren_holding_pipes() {
    let d = Daemon::start(&[]);
    let mut s = connect(&d);
    // The grandchild keeps stdout and stderr open for 30 s after sh exits.
    let (o, out, _) = sh(&mut s, 1, "sleep 30 & echo bye");
    assert_eq!(out, b"bye\n");
    let x = o.exited.unwrap();
    assert_eq!(x.status, ExitStatus::Code(0));
    assert!(x.duration_ms < 10_000, "{x:?}");
    // A child that closes its pipes and keeps running is still waited for.
    let (o, _, _) = sh(&mut s, 2, "exec >&- 2>&-; sleep 0.3; exit 4");
    assert_eq!(o.exited.unwrap().status, ExitStatus::Code(4));
}

#[test]
fn no_zombies_after_many_commands() {
    let d = Daemon::start(&[]);
    let mut s = connect(&d);
    for i in 0..200 {
        let (o, _, _) = sh(&mut s, i, "true");
        assert_eq!(o.exit_code(), 0);
    }
    // Some commands cut short too.
    for i in 200..210 {
        let (o, _, _) = exec_on(
            &mut s,
            Exec {
                id: i,
                command: "sleep 5".into(),
                timeout_ms: Some(50),
                ..Exec::default()
            },
        );
        assert!(o.exited.unwrap().timed_out);
    }
    assert!(
        wait_until(PATIENCE, || d.zombies().is_empty()),
        "zombies: {:?}",
        d.zombies()
    );
    assert!(
        wait_until(PATIENCE, || children_of(d.pid()).is_empty()),
        "children left: {:?}",
        children_of(d.pid())
    );
}

#[test]
fn several_commands_at_once_on_one_connection() {
    let d = Daemon::start(&[]);
    let (mut sock, mut dec) = raw_connect(&d);
    send(&mut sock, &hello());
    for id in 1..=3 {
        send(
            &mut sock,
            &ClientMsg::Exec(Exec {
                id,
                command: format!("sleep 0.{id}; echo {id}"),
                ..Exec::default()
            }),
        );
    }
    // Reusing a running id is refused for that id only.
    send(
        &mut sock,
        &ClientMsg::Exec(Exec {
            id: 2,
            command: "true".into(),
            ..Exec::default()
        }),
    );
    let mut exited = 0;
    let seen = read_until(&mut sock, &mut dec, |m| {
        if matches!(m, ServerMsg::Exited(_)) {
            exited += 1;
        }
        exited == 3
    });
    assert!(seen.iter().any(|m| matches!(
        m,
        ServerMsg::Error(ErrorMsg {
            id: Some(2),
            kind: ErrorKind::BadRequest,
            ..
        })
    )));
    for id in 1..=3u32 {
        assert!(seen.contains(&ServerMsg::Stdout {
            id,
            data: format!("{id}\n").into_bytes()
        }));
    }
}

#[test]
fn a_client_that_stops_reading_does_not_grow_memory_or_stall_others() {
    let d = Daemon::start(&[]);
    let (mut sock, _dec) = raw_connect(&d);
    send(&mut sock, &hello());
    // Endless output to a client that never reads.
    send(
        &mut sock,
        &ClientMsg::Exec(Exec {
            id: 1,
            command: "yes rexec-backpressure".into(),
            ..Exec::default()
        }),
    );
    // Backpressure: `yes` blocks on its full pipe.
    assert!(
        wait_until_stalled(d.pid(), 1, || 0),
        "yes never blocked: its output is being buffered"
    );
    let rss1 = d.rss_kib();
    // Another client is served meanwhile.
    let mut other = connect(&d);
    let (o, out, _) = sh(&mut other, 1, "echo served");
    assert_eq!(out, b"served\n");
    assert_eq!(o.exit_code(), 0);
    // Still blocked, not read into memory while the other was served.
    assert!(leaves_below(d.pid()).into_iter().all(blocked_writing));
    let rss2 = d.rss_kib();
    // Unbounded buffering would have taken hundreds of MiB by now.
    assert!(rss2 < 40 * 1024, "server RSS {rss2} KiB");
    assert!(
        rss2 < rss1 + 4 * 1024,
        "server RSS grew from {rss1} to {rss2} KiB"
    );
}

#[test]
fn fifty_clients_at_once() {
    let d = Daemon::start(&[]);
    let addr = d.addr;
    let threads: Vec<_> = (0..50)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s =
                    Session::connect_addr(addr, &ConnectOptions::default()).expect("connect");
                for j in 0..3 {
                    let (o, out, _) = sh(&mut s, j, &format!("echo client-{i}-{j}"));
                    assert_eq!(o.exit_code(), 0);
                    assert_eq!(String::from_utf8_lossy(&out), format!("client-{i}-{j}\n"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
}

#[test]
fn sigterm_stops_commands_and_exits_zero() {
    let mut d = Daemon::start(&[]);
    let (mut sock, mut dec, seen) = run_until_output(&d, 1, "echo up; sleep 300");
    let pid = started_pid(&seen);
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(PATIENCE).expect("server exits");
    assert!(status.success(), "{status}");
    assert!(!alive(pid));
    // The client heard about both the command and the shutdown: the reason
    // first (issue 12: a client that stops reading at Exited must still
    // learn why the command ended), then the Exited.
    let seen = read_until(&mut sock, &mut dec, |m| {
        matches!(m, ServerMsg::Exited(Exited { id: 1, .. }))
    });
    assert!(
        seen.iter().any(|m| matches!(
            m,
            ServerMsg::Error(ErrorMsg {
                kind: ErrorKind::Shutdown,
                ..
            })
        )),
        "{seen:?}"
    );
}

#[test]
fn protocol_violations_get_an_error_and_a_close() {
    let d = Daemon::start(&[]);
    // Exec before Hello.
    let (mut sock, mut dec) = raw_connect(&d);
    send(
        &mut sock,
        &ClientMsg::Exec(Exec {
            id: 1,
            command: "true".into(),
            ..Exec::default()
        }),
    );
    let seen = read_until(&mut sock, &mut dec, |m| matches!(m, ServerMsg::Error(_)));
    assert!(matches!(
        seen.last(),
        Some(ServerMsg::Error(ErrorMsg {
            kind: ErrorKind::Protocol,
            id: None,
            ..
        }))
    ));
    // Wrong version.
    let (mut sock, mut dec) = raw_connect(&d);
    send(
        &mut sock,
        &ClientMsg::Hello(ClientHello {
            protocol: 99,
            software: "x".into(),
        }),
    );
    let seen = read_until(&mut sock, &mut dec, |m| matches!(m, ServerMsg::Error(_)));
    assert!(matches!(
        seen.last(),
        Some(ServerMsg::Error(ErrorMsg {
            kind: ErrorKind::Version,
            ..
        }))
    ));
    // A length header over the limit.
    let (mut sock, mut dec) = raw_connect(&d);
    sock.write_all(&[0x7f, 0, 0, 0]).unwrap();
    let seen = read_until(&mut sock, &mut dec, |m| matches!(m, ServerMsg::Error(_)));
    let Some(ServerMsg::Error(e)) = seen.last() else {
        unreachable!()
    };
    assert!(e.message.contains("exceeds the limit"), "{}", e.message);
    let mut rest = Vec::new();
    assert_eq!(
        sock.read_to_end(&mut rest).unwrap(),
        0,
        "connection closed after the error"
    );
    // Garbage payload.
    let (mut sock, mut dec) = raw_connect(&d);
    sock.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff]).unwrap();
    let seen = read_until(&mut sock, &mut dec, |m| matches!(m, ServerMsg::Error(_)));
    assert!(matches!(
        seen.last(),
        Some(ServerMsg::Error(ErrorMsg {
            kind: ErrorKind::Protocol,
            ..
        }))
    ));
    // And the server still serves.
    let mut s = connect(&d);
    assert_eq!(sh(&mut s, 1, "echo ok").1, b"ok\n");
}

#[test]
fn connection_and_process_limits() {
    let d = Daemon::start(&["--max-conns", "2", "--max-procs", "1"]);
    let mut a = connect(&d);
    let _b = connect(&d);
    match Session::connect_addr(d.addr, &ConnectOptions::default()) {
        Err(rexec_client::ClientError::Server(e)) => assert_eq!(e.kind, ErrorKind::Limit),
        other => panic!("third connection: {other:?}"),
    }
    // One process at a time.
    a.send(&ClientMsg::Exec(Exec {
        id: 1,
        command: "sleep 0.5".into(),
        ..Exec::default()
    }))
    .unwrap();
    let (o, _, _) = sh(&mut a, 2, "true");
    assert_eq!(
        o.error.as_ref().expect("limit error").kind,
        ErrorKind::Limit
    );
    assert_eq!(o.exit_code(), 255);
}

#[test]
fn idle_connections_are_closed() {
    let d = Daemon::start(&["--idle-timeout", "1"]);
    let (mut sock, mut dec) = raw_connect(&d);
    send(&mut sock, &hello());
    let t = Instant::now();
    let seen = read_until(&mut sock, &mut dec, |m| matches!(m, ServerMsg::Error(_)));
    assert!(matches!(
        seen.last(),
        Some(ServerMsg::Error(ErrorMsg {
            kind: ErrorKind::Idle,
            ..
        }))
    ));
    assert!(t.elapsed() >= Duration::from_millis(900));
    // A running command is not idleness.
    let mut s = connect(&d);
    let (o, _, _) = sh(&mut s, 1, "sleep 1.5; echo fine");
    assert_eq!(o.exit_code(), 0);
}

#[test]
fn seed_protocol_works_with_the_tutorial_client() {
    let d = Daemon::start(&["--protocol", "seed"]);
    // Our own check of the bytes.
    let mut sock = TcpStream::connect(d.addr).unwrap();
    sock.write_all(b"echo hi; echo err >&2").unwrap();
    let mut reply = [0u8; 4 + 7];
    sock.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"\x07\x00\x00\x00hi\nerr\n");
    sock.write_all(b"head -c 3000 /dev/zero").unwrap();
    let mut header = [0u8; 4];
    sock.read_exact(&mut header).unwrap();
    assert_eq!(i32::from_le_bytes(header), 3000);
}

/// The tutorial's client (contrib/tutorial, written to behave as the
/// tutorials' own) reads rexecd's seed replies; the tutorials' own copy in
/// ../shared/peers too when it is there, as a cross-check.
#[test]
#[ignore = "needs python3 (the tutorial's programs): cargo test --test server -- --ignored"]
fn the_tutorial_client_in_contrib_reads_rexecd_seed_replies() {
    assert!(
        have_python(),
        "this test runs the tutorial's Python client: no python3 here"
    );
    let d = Daemon::start(&["--protocol", "seed"]);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let ours = root.join("contrib/tutorial/tutorial_client.py");
    let theirs = root.join("../shared/peers/seed_client.py");
    let want: String = [
        "one\n".to_string(),
        (1..=5000).map(|i| format!("{i}\n")).collect(),
        "two\n".into(),
    ]
    .concat();
    for client in [ours.clone(), theirs]
        .iter()
        .filter(|p| **p == ours || p.exists())
    {
        let r = run(std::process::Command::new("python3")
            .arg(client)
            .arg(d.host())
            .args(["echo one", "seq 1 5000", "echo two"]));
        assert_eq!(r.code, Some(0), "{}: {}", client.display(), r.stderr);
        assert_eq!(r.out(), want, "{}", client.display());
    }
}

/// Whether python3 runs here (the tutorial's programs are Python).
fn have_python() -> bool {
    std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
#[ignore = "needs python3 (the tutorial's programs): cargo test --test server -- --ignored"]
fn the_tutorial_server_in_contrib_answers_as_rexecd_seed_does() {
    assert!(
        have_python(),
        "this test runs the tutorial's Python server: no python3 here"
    );
    let server = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib/tutorial/tutorial_server.py");
    let mut child = std::process::Command::new("python3")
        .arg(&server)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let d = Daemon::start(&["--protocol", "seed"]);
    let reply = |addr: &str, cmd: &[u8]| {
        let mut sock = TcpStream::connect(addr).unwrap();
        sock.write_all(cmd).unwrap();
        let mut header = [0u8; 4];
        sock.read_exact(&mut header).unwrap();
        let mut body = vec![0u8; i32::from_le_bytes(header) as usize];
        sock.read_exact(&mut body).unwrap();
        (header, body)
    };
    for cmd in [&b"echo hi; echo err >&2"[..], b"seq 1 2000", b"exit 3"] {
        assert_eq!(reply(&addr, cmd), reply(&d.host(), cmd), "{cmd:?}");
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn raw_protocol_sends_no_header() {
    let d = Daemon::start(&["--protocol", "raw"]);
    let mut sock = TcpStream::connect(d.addr).unwrap();
    sock.write_all(b"echo hi").unwrap();
    let mut reply = [0u8; 3];
    sock.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"hi\n");
}

#[test]
fn audit_lines_name_peer_command_and_status() {
    let d = Daemon::start(&[]);
    let mut s = connect(&d);
    sh(&mut s, 1, "echo audited; exit 3");
    assert!(
        d.wait_log("\"echo audited; exit 3\": exit 3", PATIENCE),
        "{}",
        d.log()
    );
    assert!(d.log().contains("8 bytes out"), "{}", d.log());
}

#[test]
fn commands_start_in_the_accounts_home_from_the_user_database() {
    // rexecd's own $HOME (whatever started it set) is not the account's.
    let dir = TempDir::new("home");
    let d = Daemon::start_with_env(&[], &[("HOME", dir.0.to_str().unwrap())]);
    // SAFETY: getpwuid returns a pointer to static storage, read at once.
    let home = unsafe {
        let pw = libc::getpwuid(libc::getuid());
        assert!(!pw.is_null(), "this account is in the user database");
        std::ffi::CStr::from_ptr((*pw).pw_dir)
            .to_string_lossy()
            .into_owned()
    };
    let r = run(rexec().arg(d.host()).arg("pwd; echo $HOME"));
    let want_dir = if std::path::Path::new(&home).is_dir() {
        home.clone()
    } else {
        "/".to_string()
    };
    assert_eq!(r.out(), format!("{want_dir}\n{home}\n"), "{}", r.stderr);
}
