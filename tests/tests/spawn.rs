//! Commands are started by spawner threads, off the event loop: a command
//! exists (its pipes are watched) before its process does. Whatever the
//! client sends in that moment (stdin, a cancel, its own disconnect) must
//! still reach the command, and `Started` still comes before any output.

use std::io::Write;
use std::net::TcpStream;

use rexec_proto::*;
use rexec_tests::wire::{first_hello, frame, read_until, stdout_of};
use rexec_tests::*;

fn exec(id: u32, command: &str, stdin: bool) -> ClientMsg {
    ClientMsg::Exec(Exec {
        id,
        command: command.into(),
        stdin,
        ..Exec::default()
    })
}

/// A daemon with more connections open than it starts commands inline for
/// (64), so that every start goes through a spawner thread: what these
/// tests look at is what arrives while a start is under way there.
fn busy_daemon() -> (Daemon, Vec<TcpStream>) {
    let d = Daemon::start(&[]);
    let idle = (0..70)
        .map(|_| {
            let mut s = TcpStream::connect(d.addr).expect("connect");
            first_hello(&mut s);
            s
        })
        .collect();
    (d, idle)
}

/// Connects and says hello; returns the socket and a decoder.
fn client(d: &Daemon) -> (TcpStream, FrameDecoder) {
    let mut s = TcpStream::connect(d.addr).expect("connect");
    first_hello(&mut s);
    (s, FrameDecoder::new())
}

/// Several frames in one write, so they arrive while the command starts.
fn send_all(s: &mut TcpStream, msgs: &[ClientMsg]) {
    let bytes: Vec<u8> = msgs.iter().flat_map(frame).collect();
    s.write_all(&bytes).expect("send");
}

#[test]
fn stdin_sent_with_the_exec_reaches_the_command() {
    let (d, _idle) = busy_daemon();
    let (mut s, mut dec) = client(&d);
    send_all(
        &mut s,
        &[
            exec(1, "cat", true),
            ClientMsg::Stdin {
                id: 1,
                data: b"before the process existed\n".to_vec(),
            },
            ClientMsg::StdinEof { id: 1 },
        ],
    );
    let msgs = read_until(&mut s, &mut dec, |m| matches!(m, ServerMsg::Exited(_)));
    let out = stdout_of(&msgs);
    assert_eq!(out, b"before the process existed\n", "{msgs:?}");
    assert!(
        matches!(msgs.last(), Some(ServerMsg::Exited(x)) if x.status == ExitStatus::Code(0)),
        "{msgs:?}"
    );
}

#[test]
fn a_cancel_sent_with_the_exec_stops_the_command() {
    let (d, _idle) = busy_daemon();
    let (mut s, mut dec) = client(&d);
    send_all(
        &mut s,
        &[exec(1, "sleep 30", false), ClientMsg::Cancel { id: 1 }],
    );
    // SIGTERM, not exit 0 after 30 s: the cancel reached it.
    let msgs = read_until(&mut s, &mut dec, |m| matches!(m, ServerMsg::Exited(_)));
    assert!(
        matches!(msgs.last(), Some(ServerMsg::Exited(x)) if x.status == ExitStatus::Signal(15)),
        "{msgs:?}"
    );
}

#[test]
fn started_comes_before_output() {
    let (d, _idle) = busy_daemon();
    let (mut s, mut dec) = client(&d);
    let ids: Vec<u32> = (1..=20).collect();
    let msgs: Vec<ClientMsg> = ids.iter().map(|&i| exec(i, "echo hi", false)).collect();
    send_all(&mut s, &msgs);
    let mut exited = 0;
    let seen = read_until(&mut s, &mut dec, |m| {
        exited += usize::from(matches!(m, ServerMsg::Exited(_)));
        exited == ids.len()
    });
    for id in ids {
        let first = seen.iter().position(|m| match m {
            ServerMsg::Started { id: i, .. } => *i == id,
            ServerMsg::Stdout { id: i, .. } | ServerMsg::Stderr { id: i, .. } => *i == id,
            ServerMsg::Exited(x) => x.id == id,
            _ => false,
        });
        assert!(
            matches!(first.map(|i| &seen[i]), Some(ServerMsg::Started { .. })),
            "command {id}: {seen:?}"
        );
    }
}

#[test]
fn a_client_gone_before_its_command_started_leaves_nothing_running() {
    let (d, _idle) = busy_daemon();
    for _ in 0..5 {
        let (mut s, _) = client(&d);
        send_all(&mut s, &[exec(1, "sleep 30", false)]);
        drop(s);
    }
    // A start still on its way when the client went is stopped and reaped
    // as soon as it exists: no child, zombie or not, is left for good.
    assert!(
        wait_until(PATIENCE, || children_of(d.pid()).is_empty()),
        "commands of closed connections still run: {:?} (zombies {:?})",
        children_of(d.pid()),
        d.zombies()
    );
}

#[test]
fn commands_inherit_no_descriptor_but_their_own() {
    let d = Daemon::start(&[]);
    // A pty session (and a piped command) stay open meanwhile.
    let (mut s, mut dec) = client(&d);
    send_all(
        &mut s,
        &[
            ClientMsg::Exec(Exec {
                id: 1,
                command: "sleep 20".into(),
                pty: Some(PtyRequest {
                    term: "dumb".into(),
                    rows: 24,
                    cols: 80,
                }),
                ..Exec::default()
            }),
            exec(2, "sleep 20", true),
        ],
    );
    let mut started = 0;
    read_until(&mut s, &mut dec, |m| {
        started += usize::from(matches!(m, ServerMsg::Started { .. }));
        started == 2
    });
    // What a new command has open beyond 0, 1 and 2: no terminal of
    // another command's session (its master would let it read that
    // session's screen and type into it), no pipe of another command, no
    // client's socket, nor what rexecd itself inherited (here, cargo's
    // jobserver pipe): commands start from a table of 0, 1 and 2 only.
    let r = run(rexec().arg(d.host()).arg("exec ls -l /proc/self/fd"));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let out = r.out();
    let extra: Vec<&str> = out
        .lines()
        .filter(|l| !l.contains(" 0 -> ") && !l.contains(" 1 -> ") && !l.contains(" 2 -> "))
        .filter(|l| {
            ["/dev/pts", "ptmx", "pipe:", "socket:"]
                .iter()
                .any(|k| l.contains(k))
        })
        .collect();
    assert!(extra.is_empty(), "leaked into a command: {extra:?}\n{out}");
}

#[test]
fn commands_start_with_no_signal_blocked_or_ignored() {
    // The threads that start commands block every signal; their children
    // must not inherit that (a blocked SIGTERM would make cancel wait for
    // the SIGKILL), nor SIGPIPE ignored as Rust programs have it.
    let d = Daemon::start(&[]);
    let r = run(rexec()
        .arg(d.host())
        .arg("exec grep -E '^Sig(Blk|Ign)' /proc/self/status"));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let mask = |name: &str| {
        r.out()
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .unwrap_or_else(|| panic!("no {name} in {}", r.out()))
    };
    assert_eq!(mask("SigBlk:"), 0, "{}", r.out());
    let ignored = mask("SigIgn:");
    for sig in [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGPIPE,
        libc::SIGCHLD,
    ] {
        assert!(
            ignored & (1 << (sig - 1)) == 0,
            "signal {sig} ignored: {}",
            r.out()
        );
    }
}

#[test]
fn a_signal_handled_on_a_spawner_thread_still_reaches_the_loop() {
    // The kernel gives a process's signal to any thread that does not
    // block it (when the main thread already has one pending, say a
    // SIGCHLD). Its handler writes to signal-hook's pipe by number, which
    // must be open in the spawner threads' own descriptor tables too.
    // Aimed at a spawner thread directly (tgkill), so it is certain.
    let mut d = Daemon::start(&[]);
    let r = run(rexec().arg(d.host()).arg("true"));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let tasks = std::fs::read_dir(format!("/proc/{}/task", d.pid())).expect("tasks");
    let spawner: i32 = tasks
        .filter_map(Result::ok)
        .find(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("spawner-"))
        })
        .and_then(|t| t.file_name().to_str()?.parse().ok())
        .expect("a spawner thread");
    // SAFETY: tgkill sends a signal to one thread of the process; no memory.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, d.pid(), spawner, libc::SIGTERM) };
    assert_eq!(r, 0, "tgkill");
    assert!(
        d.wait_exit(PATIENCE).is_some(),
        "rexecd lost a SIGTERM handled on a spawner thread: {}",
        d.log()
    );
}
