//! What an attacker who can connect could do before the hardening of
//! issue 11, each against the real rexecd: clients that never read, errors
//! that echo, half-closes, slow frames, connect/close churn, forged log
//! lines, environment tricks under --no-shell.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use rexec_proto::*;
use rexec_tests::wire::{frame, hello, read_to_close, send, stdout_of};
use rexec_tests::*;

fn exec(id: u32, command: &str) -> ClientMsg {
    ClientMsg::Exec(Exec {
        id,
        command: command.into(),
        ..Exec::default()
    })
}

fn errors(msgs: &[ServerMsg]) -> Vec<&ErrorMsg> {
    msgs.iter()
        .filter_map(|m| match m {
            ServerMsg::Error(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn exit_code(msgs: &[ServerMsg]) -> Option<ExitStatus> {
    msgs.iter().find_map(|m| match m {
        ServerMsg::Exited(x) => Some(x.status),
        _ => None,
    })
}

#[test]
fn a_client_that_never_reads_its_replies_is_pushed_back_on() {
    let d = Daemon::start(&[]);
    let mut sock = TcpStream::connect(d.addr).unwrap();
    send(&mut sock, &hello());
    send(&mut sock, &exec(1, "sleep 30"));
    // The same id again and again: every one is an error reply, which this
    // client never reads. The server must stop reading it, so our writes
    // block long before 64 MB are sent.
    let flood: Vec<u8> = (0..1000).flat_map(|_| frame(&exec(1, "true"))).collect();
    sock.set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut sent = 0usize;
    while sent < 64 << 20 {
        match sock.write_all(&flood) {
            Ok(()) => sent += flood.len(),
            Err(_) => break, // timed out: pushed back
        }
    }
    assert!(
        sent < 64 << 20,
        "the server kept reading a client that never reads"
    );
    let rss = d.rss_kib();
    assert!(rss < 48 * 1024, "rexecd grew to {rss} KiB");
    // The log says the first few errors and then counts the rest.
    let lines = d.log().matches("already running").count();
    assert!(lines <= 12, "{lines} error lines logged for one connection");
    assert!(d.log().contains("the rest are counted"), "{}", d.log());
    drop(sock);
    assert!(d.wait_log("not logged", PATIENCE), "{}", d.log());
}

#[test]
fn errors_do_not_echo_unbounded_client_text() {
    let d = Daemon::start(&[]);
    let mut sock = TcpStream::connect(d.addr).unwrap();
    send(&mut sock, &hello());
    let name = format!("{}=", "\n".repeat(100_000));
    send(
        &mut sock,
        &ClientMsg::Exec(Exec {
            id: 1,
            command: "true".into(),
            env: vec![(name, "x".into())],
            ..Exec::default()
        }),
    );
    send(
        &mut sock,
        &ClientMsg::Exec(Exec {
            id: 2,
            command: "true".into(),
            cwd: Some(format!("/no/such/{}", "d".repeat(100_000))),
            ..Exec::default()
        }),
    );
    sock.shutdown(Shutdown::Write).unwrap();
    let msgs = read_to_close(&mut sock, PATIENCE);
    let errs = errors(&msgs);
    assert_eq!(errs.len(), 2, "{msgs:?}");
    for e in errs {
        assert!(e.message.len() < 600, "{} bytes", e.message.len());
        assert!(!e.message.contains('\n'), "{}", e.message);
    }
}

#[test]
fn control_characters_cannot_forge_log_lines() {
    let d = Daemon::start(&[]);
    let r = run(rexec()
        .arg(d.host())
        .args(["--cwd", "/nope\nFORGED ran \"rm -rf /\": exit 0"])
        .arg("true"));
    assert_eq!(r.code, Some(127), "{}", r.stderr);
    // The shell runs the second line as a command; the audit line must
    // still be one line.
    let r = run(rexec().arg(d.host()).arg("echo hi\nFORGED2 line"));
    assert_eq!(r.out(), "hi\n", "{}", r.stderr);
    assert!(d.wait_log("FORGED2", PATIENCE));
    // Every line that shows the text is a whole log record of ours, with
    // its timestamp and level: no line of the log was written by a client.
    for line in d.log().lines().filter(|l| l.contains("FORGED")) {
        assert!(
            line.starts_with('[') && line.contains(" rexec_server"),
            "a client wrote a log line of its own: {line:?}"
        );
    }
}

#[test]
fn half_close_delivers_output_and_stdin_eof() {
    let d = Daemon::start(&[]);
    let mut sock = TcpStream::connect(d.addr).unwrap();
    send(&mut sock, &hello());
    send(
        &mut sock,
        &ClientMsg::Exec(Exec {
            id: 1,
            command: "cat; sleep 0.3; echo done".into(),
            stdin: true,
            ..Exec::default()
        }),
    );
    send(
        &mut sock,
        &ClientMsg::Stdin {
            id: 1,
            data: b"abc\n".to_vec(),
        },
    );
    // No more input, and no StdinEof: the end of the stream says it.
    sock.shutdown(Shutdown::Write).unwrap();
    let msgs = read_to_close(&mut sock, PATIENCE);
    assert_eq!(stdout_of(&msgs), b"abc\ndone\n", "{msgs:?}");
    assert_eq!(exit_code(&msgs), Some(ExitStatus::Code(0)), "{msgs:?}");
}

#[test]
fn the_error_for_a_huge_frame_arrives_while_the_client_is_still_sending() {
    let d = Daemon::start(&[]);
    let mut sock = TcpStream::connect(d.addr).unwrap();
    let mut w = frame(&hello());
    w.extend_from_slice(&(8u32 << 20).to_be_bytes());
    w.extend(std::iter::repeat_n(b'x', 6 << 20));
    let mut writer = sock.try_clone().unwrap();
    let t = std::thread::spawn(move || writer.write_all(&w).is_ok());
    let msgs = read_to_close(&mut sock, PATIENCE);
    let wrote_all = t.join().unwrap();
    assert!(
        matches!(errors(&msgs).last(), Some(e) if e.kind == ErrorKind::Limit),
        "no Limit error read: {msgs:?}"
    );
    assert!(
        wrote_all,
        "the server reset the connection under the client"
    );
}

#[test]
fn trickled_bytes_are_not_activity() {
    // Only the idle timeout can close it (not the frame timeout).
    let d = Daemon::start(&["--idle-timeout", "2", "--frame-timeout", "3600"]);
    let mut sock = TcpStream::connect(d.addr).unwrap();
    send(&mut sock, &hello());
    // A frame that promises 1000 bytes, then one byte every 200 ms: each
    // byte used to count as activity and keep the connection forever.
    let mut writer = sock.try_clone().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let t = std::thread::spawn(move || {
        let _ = writer.write_all(&1000u32.to_be_bytes());
        let started = Instant::now();
        while !stop.load(std::sync::atomic::Ordering::SeqCst)
            && started.elapsed() < 2 * PATIENCE
            && writer.write_all(&[3]).is_ok()
        {
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    // Closed for idleness while the trickle goes on (were the bytes
    // activity, it would stay open as long as they come, and
    // read_to_close give up first).
    let msgs = read_to_close(&mut sock, PATIENCE);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    t.join().unwrap();
    assert!(
        matches!(errors(&msgs).last(), Some(e) if e.kind == ErrorKind::Idle && e.message.contains("without a command")),
        "{msgs:?}"
    );
}

#[test]
fn a_frame_must_complete_within_the_frame_timeout() {
    let d = Daemon::start(&["--idle-timeout", "0", "--frame-timeout", "1"]);
    let mut sock = TcpStream::connect(d.addr).unwrap();
    let mut w = frame(&hello());
    w.extend_from_slice(&100u32.to_be_bytes());
    w.extend_from_slice(&[0; 10]);
    sock.write_all(&w).unwrap();
    // With no idle timeout, only the frame timeout closes it.
    let msgs = read_to_close(&mut sock, PATIENCE);
    let e = errors(&msgs);
    assert!(
        matches!(e.last(), Some(e) if e.kind == ErrorKind::Idle && e.message.contains("frame")),
        "{msgs:?}"
    );
}

#[test]
fn connect_close_churn_leaves_no_timers_behind() {
    let d = Daemon::start(&[]);
    // Every connection arms an idle and a handshake timer; before, they
    // stayed in the heap for ten minutes after the connection was gone, so
    // connect/close churn grew the server without bound.
    let before = d.rss_kib();
    for _ in 0..3000 {
        if let Ok(s) = TcpStream::connect(d.addr) {
            drop(s);
        }
    }
    assert!(
        d.wait_log("stale timers dropped", PATIENCE),
        "the timers of closed connections were never dropped"
    );
    let after = d.rss_kib();
    assert!(
        after < before + 2048,
        "RSS grew from {before} to {after} KiB over 3,000 connections"
    );
}

#[test]
fn spawn_errors_name_the_program_without_a_shell() {
    let d = Daemon::start(&["--no-shell"]);
    let r = run(rexec().arg(d.host()).arg("no-such-program-xyz --flag"));
    assert_eq!(r.code, Some(127), "{}", r.stderr);
    assert!(
        r.stderr.contains("no-such-program-xyz") && !r.stderr.contains("/bin/sh"),
        "{}",
        r.stderr
    );
}

#[test]
fn limit_errors_say_server_limit_once() {
    let d = Daemon::start(&["--max-procs", "1"]);
    let mut sock = TcpStream::connect(d.addr).unwrap();
    send(&mut sock, &hello());
    send(&mut sock, &exec(1, "sleep 5"));
    send(&mut sock, &exec(2, "true"));
    let msgs = rexec_tests::wire::read_until(&mut sock, &mut FrameDecoder::new(), |m| {
        matches!(m, ServerMsg::Error(_))
    });
    let e = errors(&msgs)[0];
    assert_eq!(e.kind, ErrorKind::Limit);
    assert!(!e.message.contains("server limit"), "{}", e.message);
    let shown = format!("{}: {}", e.kind, e.message);
    assert_eq!(shown.matches("server limit").count(), 1, "{shown}");
}

#[test]
fn without_a_shell_clients_cannot_set_loader_variables() {
    let d = Daemon::start(&["--no-shell", "--allow", "env", "--allow-env", "MY_*"]);
    for var in ["LD_PRELOAD=/tmp/p.so", "GCONV_PATH=/tmp", "BASH_ENV=/tmp/x"] {
        let r = run(rexec().arg(d.host()).args(["--env", var, "env"]));
        let name = var.split('=').next().unwrap();
        assert_eq!(r.code, Some(255), "{var}: {}", r.stderr);
        assert!(
            r.stderr.contains("forbidden") && r.stderr.contains(name),
            "{var}: {}",
            r.stderr
        );
        assert!(r.stdout.is_empty());
    }
    let r =
        run(rexec()
            .arg(d.host())
            .args(["--env", "LANG=C.UTF-8", "--env", "MY_SETTING=1", "env"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.out().contains("LANG=C.UTF-8\n") && r.out().contains("MY_SETTING=1\n"),
        "{}",
        r.out()
    );
}

/// rexec with `token` in its environment.
fn with_token(token: &str) -> std::process::Command {
    let mut c = rexec();
    c.env("REXEC_TOKEN", token);
    c
}

#[test]
fn silent_connections_from_one_address_cannot_keep_token_holders_out() {
    let d = Daemon::start_with_env(
        &["--max-conns", "24", "--max-startups", "8"],
        &[("REXEC_TOKEN", "s3cret")],
    );
    // 40 connections from 127.0.0.2 that never say a word: before, they
    // filled the whole table until the handshake timeout.
    let attacker: Vec<TcpStream> = (0..40)
        .filter_map(|_| connect_from(std::net::Ipv4Addr::new(127, 0, 0, 2), d.addr).ok())
        .collect();
    assert!(attacker.len() >= 24, "only {} connected", attacker.len());
    // (Connections that never said a hello may be closed for a newcomer at
    // once, young or not: no wait for the grace a login in progress gets.)
    for i in 0..5 {
        let r = run(with_token("s3cret").arg(d.host()).arg("echo in"));
        assert_eq!(r.out(), "in\n", "attempt {i}: {}", r.stderr);
    }
    assert!(d.log().contains("waiting to authenticate"), "{}", d.log());
}

#[test]
fn a_right_answer_gets_in_after_many_wrong_ones() {
    // Before, the penalty grew to the handshake timeout and the timer that
    // started at accept fired before the held-back hello: refused forever.
    let d = Daemon::start_with_env(&["--handshake-timeout", "2"], &[("REXEC_TOKEN", "s3cret")]);
    for _ in 0..4 {
        let r = run(with_token("wrong").arg(d.host()).arg("true"));
        assert_eq!(r.code, Some(255));
    }
    let r = run(with_token("s3cret").arg(d.host()).arg("echo in"));
    assert_eq!(r.out(), "in\n", "{}", r.stderr);
}

#[test]
fn parallel_guesses_are_as_slow_as_sequential_ones() {
    let d = Daemon::start_with_env(&[], &[("REXEC_TOKEN", "s3cret")]);
    let r = run(with_token("wrong").arg(d.host()).arg("true"));
    assert_eq!(r.code, Some(255));
    // Four guesses at once: each hello is held back one step after the
    // previous one (250, 500, 750, 1000 ms at least), not all after 250 ms.
    let started = Instant::now();
    let guesses: Vec<_> = (0..4)
        .map(|_| {
            let host = d.host();
            std::thread::spawn(move || run(with_token("wrong").arg(host).arg("true")).code)
        })
        .collect();
    for g in guesses {
        assert_eq!(g.join().unwrap(), Some(255));
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(950),
        "four parallel guesses took only {took:?}"
    );
}

#[test]
fn silence_is_not_a_wrong_answer() {
    let d = Daemon::start_with_env(&["--handshake-timeout", "1"], &[("REXEC_TOKEN", "s3cret")]);
    let mut sock = TcpStream::connect(d.addr).unwrap();
    let msgs = read_to_close(&mut sock, PATIENCE);
    assert!(
        matches!(errors(&msgs).last(), Some(e) if e.message.contains("no hello")),
        "{msgs:?}"
    );
    let r = run(with_token("s3cret").arg(d.host()).arg("echo in"));
    assert_eq!(r.out(), "in\n", "{}", r.stderr);
    assert!(
        !d.log().contains("held back"),
        "a silent connection counted as a failure: {}",
        d.log()
    );
}

#[test]
fn the_token_is_not_readable_from_the_servers_proc_environ() {
    let d = Daemon::start_with_env(&[], &[("REXEC_TOKEN", "topsecret-4711")]);
    let environ = std::fs::read(format!("/proc/{}/environ", d.pid())).unwrap();
    let text = String::from_utf8_lossy(&environ);
    assert!(
        !text.contains("topsecret-4711"),
        "the token is in /proc/PID/environ"
    );
    // And a command run as the same user cannot read it there either.
    let r = run(with_token("topsecret-4711")
        .arg(d.host())
        .arg("tr '\\0' '\\n' < /proc/$PPID/environ"));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(!r.out().contains("topsecret-4711"), "{}", r.out());
}

#[test]
fn user_runs_commands_as_another_account() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: --user needs the tests to run as root");
        let r = run(std::process::Command::new(bin("rexecd")).args(["--user", "nobody"]));
        assert_eq!(r.code, Some(2));
        assert!(r.stderr.contains("root"), "{}", r.stderr);
        return;
    }
    let r = run(std::process::Command::new(bin("rexecd")).args(["--user", "no-such-user-xyz"]));
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("no such user"), "{}", r.stderr);
    let d = Daemon::start_with_env(&["--user", "nobody"], &[("REXEC_TOKEN", "s3cret")]);
    let r = run(with_token("s3cret")
        .arg(d.host())
        .arg("id -u; id -g; id -G; echo $HOME $USER $LOGNAME"));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let nobody = std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("nobody:"))
        .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
        .expect("a nobody account");
    let (uid, gid, home) = (&nobody[2], &nobody[3], &nobody[5]);
    assert_eq!(
        r.out(),
        format!("{uid}\n{gid}\n{gid}\n{home} nobody nobody\n"),
        "root's groups must be dropped too"
    );
    // The server's own files are out of reach.
    let r = run(with_token("s3cret")
        .arg(d.host())
        .arg(format!("cat /proc/{}/environ", d.pid())));
    assert_ne!(r.code, Some(0), "read rexecd's environment as nobody");
    // A home that does not exist (nobody's is /nonexistent): said, as sshd
    // does, and the command starts in /.
    if !std::path::Path::new(home).is_dir() {
        let r = run(with_token("s3cret").arg(d.host()).arg("pwd"));
        assert_eq!(r.out(), "/\n", "{}", r.stderr);
        assert!(
            r.stderr
                .contains(&format!("could not chdir to home directory {home}")),
            "{}",
            r.stderr
        );
    }
}

#[test]
fn clients_that_never_read_stay_within_the_memory_budget() {
    let d = Daemon::start(&["--max-buffer", "8M"]);
    let base = d.rss_kib();
    // 48 clients start a large output each and never read it: before, each
    // held its own 1 MiB queue and more (60 MiB and up), whatever the total.
    // Plain output is now spliced from the pipe to the socket and never
    // queued at all, so half of them ask for a pty, whose output is copied
    // through rexecd's memory: the budget must hold those back. Their
    // receive windows are small, so the kernel does not take megabytes of
    // it off rexecd's hands first.
    let socks: Vec<TcpStream> = (0..48)
        .map(|i| {
            let mut s = connect_small_window(d.addr).unwrap();
            send(&mut s, &hello());
            let pty = (i % 2 == 0).then(|| PtyRequest {
                term: "dumb".into(),
                rows: 24,
                cols: 80,
            });
            send(
                &mut s,
                &ClientMsg::Exec(Exec {
                    id: i,
                    command: "head -c 8000000 /dev/zero".into(),
                    pty,
                    ..Exec::default()
                }),
            );
            s
        })
        .collect();
    if !d.wait_log("held back", PATIENCE) {
        let pid = d.pid();
        let out = std::process::Command::new("sh").arg("-c").arg(format!("for t in /proc/{pid}/task/*; do echo $t $(cat $t/comm) $(cat $t/wchan); done; ps -eo pid,ppid,stat,wchan:25,cmd | grep -E \"head -c\" | grep -v grep | head -60; ls -l /proc/{pid}/fd | wc -l; ss -tn | grep {} | head -60", d.addr.port())).output().unwrap();
        panic!(
            "DIAG {} LOG {}",
            String::from_utf8_lossy(&out.stdout),
            d.log()
        );
    }
    // Every command has filled what it can and blocked (or, its 8 MB all
    // taken by pipe and socket buffers, finished).
    let finished = || d.log().matches("ran \"head -c 8000000").count();
    assert!(
        wait_until_stalled(d.pid(), 48, finished),
        "the 48 commands did not all block or finish: {} finished; {:?}",
        finished(),
        leaves_below(d.pid())
            .into_iter()
            .map(|p| (
                p,
                std::fs::read_to_string(format!("/proc/{p}/syscall")).unwrap_or_default()
            ))
            .collect::<Vec<_>>()
    );
    let rss = d.rss_kib();
    // Without the budget this is over 50 MiB; with it, 8 MiB of queues plus
    // one chunk per connection, and what the allocator keeps.
    assert!(
        rss < base + 32 * 1024,
        "RSS {rss} KiB with 48 non-readers (from {base} KiB)"
    );
    // Everyone else is still served.
    let r = run(rexec().arg(d.host()).arg("echo still here"));
    assert_eq!(r.out(), "still here\n", "{}", r.stderr);
    drop(socks);
}

#[test]
fn stdin_floods_stay_within_the_memory_budget() {
    let d = Daemon::start(&["--max-buffer", "8M", "--max-procs", "64"]);
    let base = d.rss_kib();
    let mut sock = TcpStream::connect(d.addr).unwrap();
    send(&mut sock, &hello());
    for id in 0..40 {
        send(
            &mut sock,
            &ClientMsg::Exec(Exec {
                id,
                command: "sleep 30".into(),
                stdin: true,
                ..Exec::default()
            }),
        );
    }
    // 1 MiB of stdin for each of 40 commands that never read it.
    sock.set_write_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let chunk = vec![b'x'; (1 << 20) - 64];
    let mut sent = 0;
    for id in 0..40 {
        let f = frame(&ClientMsg::Stdin {
            id,
            data: chunk.clone(),
        });
        if sock.write_all(&f).is_err() {
            break;
        }
        sent += 1;
    }
    // The write that timed out (3 s) shows that rexecd stopped reading: what
    // it holds, it holds now.
    let rss = d.rss_kib();
    assert!(
        rss < base + 16 * 1024,
        "RSS {rss} KiB after {sent} MiB of stdin (from {base} KiB)"
    );
    assert!(sent < 40, "all 40 MiB of stdin were taken in");
}

#[test]
fn seed_replies_fit_the_memory_budget_and_say_when_cut() {
    let d = Daemon::start(&["--protocol", "seed", "--max-buffer", "8M"]);
    let mut sock = TcpStream::connect(d.addr).unwrap();
    sock.write_all(b"head -c 3000000 /dev/zero").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut header = [0u8; 4];
    std::io::Read::read_exact(&mut sock, &mut header).unwrap();
    let n = i32::from_le_bytes(header) as usize;
    let mut reply = vec![0u8; n];
    std::io::Read::read_exact(&mut sock, &mut reply).unwrap();
    assert!(n < 3_000_000, "{n} bytes: no cap below the budget");
    let text = String::from_utf8_lossy(&reply[2 << 20..]);
    assert!(text.contains("output cut at 2097152 bytes"), "{text}");
}

/// Kills the given pids when dropped (processes a test made the server start).
struct Reap(Vec<i32>);
impl Drop for Reap {
    fn drop(&mut self) {
        for &p in &self.0 {
            // SAFETY: kill(2) on pids this test had the server start.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
}

fn pids(text: &str) -> Vec<i32> {
    text.split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

#[test]
fn the_time_limit_bounds_background_jobs_too() {
    let d = Daemon::start(&["--timeout", "2"]);
    let r = run(rexec()
        .arg(d.host())
        .arg("for i in 1 2 3; do sleep 1234 & echo $!; done"));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let jobs = Reap(pids(&r.out()));
    assert_eq!(jobs.0.len(), 3, "{}", r.out());
    // Exit 0, not 124: the command itself was reported when it ended, not
    // held until the time limit by the jobs holding its pipes.
    assert!(jobs.0.iter().all(|&p| alive(p)), "the jobs run on after it");
    assert!(
        wait_until(PATIENCE, || jobs.0.iter().all(|&p| !alive(p))),
        "background jobs outlived --timeout"
    );
    assert!(d.log().contains("left processes"), "{}", d.log());
}

#[test]
fn without_a_time_limit_a_background_job_survives_like_with_ssh() {
    let d = Daemon::start(&[]);
    let r = run(rexec()
        .arg(d.host())
        .arg("nohup sleep 30 >/dev/null 2>&1 & echo $!"));
    let job = Reap(pids(&r.out()));
    assert_eq!(job.0.len(), 1, "{}", r.out());
    // Everything rexecd does about a command (the pipe grace, leftovers,
    // the reap) is done by the time its audit line is written.
    assert!(d.wait_log("ran \"nohup sleep 30", PATIENCE), "{}", d.log());
    assert!(alive(job.0[0]), "a nohup job started on purpose was killed");
}

#[test]
fn contain_ends_everything_a_command_started() {
    let d = Daemon::start(&["--contain"]);
    // setsid and nohup: new session, no hangup, still ended.
    let r = run(rexec().arg(d.host()).arg(
        "setsid sleep 1234 >/dev/null 2>&1 & echo $!; \
         nohup sleep 1235 >/dev/null 2>&1 & echo $!; exit 3",
    ));
    assert_eq!(r.code, Some(3), "the command's own status: {}", r.stderr);
    let jobs = Reap(pids(&r.out()));
    assert_eq!(jobs.0.len(), 2, "{}", r.out());
    assert!(
        wait_until(PATIENCE, || jobs.0.iter().all(|&p| !alive(p))),
        "escaped processes survived --contain"
    );
    // A signal death is still reported as one.
    let r = run(rexec().arg(d.host()).arg("kill -9 $$"));
    assert_eq!(r.code, Some(137), "{}", r.stderr);
}

#[test]
fn contain_ends_escapees_on_disconnect_and_when_rexecd_is_killed() {
    for kill_server in [false, true] {
        let mut d = Daemon::start(&["--contain"]);
        let mut sock = TcpStream::connect(d.addr).unwrap();
        send(&mut sock, &hello());
        send(
            &mut sock,
            &exec(1, "setsid sleep 1234 >/dev/null 2>&1 & echo $!; sleep 300"),
        );
        let msgs = rexec_tests::wire::read_until(&mut sock, &mut FrameDecoder::new(), |m| {
            matches!(m, ServerMsg::Stdout { .. })
        });
        let job = Reap(pids(&String::from_utf8_lossy(&stdout_of(&msgs))));
        assert_eq!(job.0.len(), 1, "{msgs:?}");
        assert!(alive(job.0[0]));
        if kill_server {
            d.signal(libc::SIGKILL);
            d.wait_exit(PATIENCE);
        } else {
            drop(sock);
        }
        assert!(
            wait_until(PATIENCE, || !alive(job.0[0])),
            "a setsid process survived (server killed: {kill_server})"
        );
    }
}

#[test]
fn contain_counts_what_commands_started_against_max_procs() {
    let d = Daemon::start(&["--contain", "--max-procs", "6"]);
    let mut sock = TcpStream::connect(d.addr).unwrap();
    send(&mut sock, &hello());
    // One command, but with its supervisor, its shell and six background
    // sleeps it is nine processes: over the limit of six.
    send(
        &mut sock,
        &exec(
            1,
            "for i in 1 2 3 4 5 6; do sleep 30 & done; echo started; wait",
        ),
    );
    rexec_tests::wire::read_until(&mut sock, &mut FrameDecoder::new(), |m| {
        matches!(m, ServerMsg::Stdout { .. })
    });
    let r = run(rexec().arg(d.host()).arg("echo more"));
    assert_eq!(r.code, Some(255), "{}", r.stderr);
    assert!(
        r.stderr.contains("processes running") && r.stderr.contains("--max-procs 6"),
        "{}",
        r.stderr
    );
    // Once they are gone, there is room again.
    drop(sock);
    assert!(
        wait_until(PATIENCE, || {
            run(rexec().arg(d.host()).arg("echo more")).code == Some(0)
        }),
        "no room after the command ended"
    );
}

#[test]
fn idle_connections_do_not_keep_a_read_buffer_each() {
    // (Many at once are waiting to authenticate for a moment.)
    let d = Daemon::start(&["--max-startups", "2000"]);
    let before = d.rss_kib();
    // 900 clients that said hello and then nothing: before, each kept the
    // 64 KiB buffer its hello was read into (11 KiB of it resident).
    let socks: Vec<TcpStream> = (0..900)
        .filter_map(|_| {
            let mut s = TcpStream::connect(d.addr).ok()?;
            send(&mut s, &hello());
            Some(s)
        })
        .collect();
    assert!(socks.len() >= 800, "only {} connected", socks.len());
    assert!(wait_until(PATIENCE, || d
        .log()
        .matches("hello accepted")
        .count()
        >= socks.len()));
    let after = d.rss_kib();
    assert!(
        after < before + 5 * 1024,
        "RSS grew from {before} to {after} KiB for {} idle connections",
        socks.len()
    );
}
