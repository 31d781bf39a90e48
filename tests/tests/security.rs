//! Authentication, safe defaults and the command policy, over loopback.

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use rexec_client::{ClientError, ConnectOptions, Session};
use rexec_proto::auth::Token;
use rexec_proto::*;
use rexec_tests::wire::{first_hello, frame, read_to_close};
use rexec_tests::*;

/// Writes `secret` to a token file in `dir` with `mode`; returns its path.
fn token_file(dir: &TempDir, secret: &str, mode: u32) -> String {
    let f = dir.path("token");
    std::fs::write(&f, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
    f.display().to_string()
}

fn opts(token: Option<&str>) -> ConnectOptions {
    ConnectOptions {
        token: token.map(|t| Token::new(t).unwrap()),
        ..Default::default()
    }
}

#[test]
fn only_token_holders_run_commands() {
    let dir = TempDir::new("auth");
    let tf = token_file(&dir, "correct horse", 0o600);
    let d = Daemon::start(&["--token-file", &tf]);

    // The right token, from the environment or a file.
    let r = run(rexec()
        .env("REXEC_TOKEN", "correct horse")
        .arg(d.host())
        .arg("echo in"));
    assert_eq!(r.out(), "in\n", "{}", r.stderr);
    let r = run(rexec()
        .args(["--token-file", &tf])
        .arg(d.host())
        .arg("echo in"));
    assert_eq!(r.out(), "in\n", "{}", r.stderr);

    // A wrong token, and none.
    let r = run(rexec()
        .env("REXEC_TOKEN", "battery staple")
        .arg(d.host())
        .arg("echo in"));
    assert_eq!(r.code, Some(255));
    assert!(r.stderr.contains("auth failed"), "{}", r.stderr);
    assert!(r.stdout.is_empty());
    let r = run(rexec()
        .env_remove("REXEC_TOKEN")
        .arg(d.host())
        .arg("echo in"));
    assert_eq!(r.code, Some(255));
    // (Since protocol 7 the server says it takes a token only, and the
    // message says just that; it said "a key or a token" when it could
    // not know.)
    assert!(
        r.stderr.contains("requires a token: give --token-file"),
        "{}",
        r.stderr
    );

    assert!(
        d.wait_log("auth failed", PATIENCE),
        "failures are logged: {}",
        d.log()
    );
    assert!(d.log().contains("127.0.0.1:"), "with the peer address");
    assert!(
        d.log().contains("(token) ran \"echo in\""),
        "the audit line says how the client got in: {}",
        d.log()
    );
}

#[test]
fn nothing_runs_before_authentication_and_answers_do_not_replay() {
    let dir = TempDir::new("replay");
    let tf = token_file(&dir, "s3cret", 0o600);
    let marker = dir.0.join("ran");
    let d = Daemon::start(&["--token-file", &tf]);
    let token = Token::new("s3cret").unwrap();

    // An Exec instead of the hello: refused, and nothing ran.
    let mut sock = TcpStream::connect(d.addr).unwrap();
    let h = first_hello(&mut sock);
    assert_eq!(h.challenge.as_ref().map(|c| c.len()), Some(auth::NONCE_LEN));
    let exec = ClientMsg::Exec(Exec {
        id: 1,
        command: format!("touch {}", marker.display()),
        ..Exec::default()
    });
    sock.write_all(&frame(&exec)).unwrap();
    let msgs = read_to_close(&mut sock, PATIENCE);
    assert!(
        matches!(
            msgs.last(),
            Some(ServerMsg::Error(ErrorMsg {
                kind: ErrorKind::Auth,
                id: None,
                ..
            }))
        ),
        "{msgs:?}"
    );

    // A correct answer on one connection...
    let mut a = TcpStream::connect(d.addr).unwrap();
    let nonce_a = first_hello(&mut a).challenge.unwrap();
    let answer_a = token.answer(b"", &nonce_a).to_vec();
    // ...replayed on another connection, whose nonce differs, fails.
    let mut b = TcpStream::connect(d.addr).unwrap();
    let nonce_b = first_hello(&mut b).challenge.unwrap();
    assert_ne!(nonce_a, nonce_b, "every connection gets its own nonce");
    let mut w = frame(&ClientMsg::Auth { answer: answer_a });
    w.extend(frame(&exec));
    b.write_all(&w).unwrap();
    let msgs = read_to_close(&mut b, PATIENCE);
    assert!(
        matches!(
            msgs.last(),
            Some(ServerMsg::Error(ErrorMsg {
                kind: ErrorKind::Auth,
                ..
            }))
        ),
        "{msgs:?}"
    );
    // The server is done with the connection (it closed it); a command it
    // had started would have been said (Started) before the error, and
    // would be running or have run.
    assert!(
        !msgs.iter().any(|m| matches!(m, ServerMsg::Started { .. })),
        "{msgs:?}"
    );
    assert!(children_of(d.pid()).is_empty(), "a command is running");
    assert!(!marker.exists(), "a command ran without authentication");
}

#[test]
fn silent_connections_are_closed_after_the_handshake_timeout() {
    let d = Daemon::start(&["--handshake-timeout", "1"]);
    let mut sock = TcpStream::connect(d.addr).unwrap();
    let t = Instant::now();
    let msgs = read_to_close(&mut sock, PATIENCE);
    assert!(t.elapsed() >= Duration::from_millis(900));
    assert!(
        matches!(
            msgs.last(),
            Some(ServerMsg::Error(ErrorMsg {
                kind: ErrorKind::Protocol,
                ..
            }))
        ),
        "{msgs:?}"
    );
    // Half a header, then silence: the same.
    let mut sock = TcpStream::connect(d.addr).unwrap();
    sock.write_all(&[0, 0]).unwrap();
    let msgs = read_to_close(&mut sock, PATIENCE);
    assert!(matches!(msgs.last(), Some(ServerMsg::Error(_))), "{msgs:?}");
}

#[test]
fn repeated_failures_slow_that_address_down_without_blocking_others() {
    let dir = TempDir::new("slow");
    let tf = token_file(&dir, "tok", 0o600);
    let d = Daemon::start(&["--token-file", &tf]);
    let mut good = Session::connect_addr(d.addr, &opts(Some("tok"))).unwrap();
    for _ in 0..4 {
        match Session::connect_addr(d.addr, &opts(Some("wrong"))).map(|mut s| {
            rexec_client::run::run(
                &mut s,
                Exec {
                    id: 1,
                    command: "true".into(),
                    ..Exec::default()
                },
                &mut rexec_client::run::Sinks::capture(),
                None,
            )
        }) {
            Ok(Err(ClientError::Server(e))) | Err(ClientError::Server(e)) => {
                assert_eq!(e.kind, ErrorKind::Auth)
            }
            other => panic!("wrong token accepted: {other:?}"),
        }
    }
    // The next hello for this address is held back (250 ms, then 500 ms a
    // failure: the step stops at 0.5 s so that a token holder among
    // guessers still gets in)...
    let t = Instant::now();
    let mut sock = TcpStream::connect(d.addr).unwrap();
    let waiter = std::thread::spawn(move || {
        first_hello(&mut sock);
        t.elapsed()
    });
    // ...while an authenticated client is served as usual meanwhile.
    let mut sinks = rexec_client::run::Sinks::capture();
    let o = rexec_client::run::run(
        &mut good,
        Exec {
            id: 1,
            command: "echo served".into(),
            ..Exec::default()
        },
        &mut sinks,
        None,
    )
    .unwrap();
    let served_after = t.elapsed();
    assert_eq!(o.exit_code(), 0);
    let held = waiter.join().unwrap();
    assert!(held >= Duration::from_millis(450), "hello after {held:?}");
    assert!(
        served_after < held,
        "the loop was blocked: served after {served_after:?}, hello after {held:?}"
    );
}

#[test]
fn world_readable_token_files_are_refused_on_both_sides() {
    let dir = TempDir::new("perm");
    let tf = token_file(&dir, "tok", 0o644);
    let r = run(std::process::Command::new(bin("rexecd")).args([
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        &tf,
    ]));
    assert_eq!(r.code, Some(2));
    assert!(
        r.stderr.contains(&format!("chmod 600 {tf}")),
        "{}",
        r.stderr
    );
    let r = run(rexec().args(["--token-file", &tf, "127.0.0.1:1", "true"]));
    assert_eq!(r.code, Some(255));
    assert!(r.stderr.contains("chmod 600"), "{}", r.stderr);
}

#[test]
fn non_loopback_without_a_token_is_refused() {
    // Refused before binding anything.
    let r = run(std::process::Command::new(bin("rexecd"))
        .args(["--listen", "0.0.0.0:0"])
        .env_remove("REXEC_TOKEN"));
    assert_eq!(r.code, Some(2));
    assert!(
        r.stderr.contains("--insecure") && r.stderr.contains("--token-file"),
        "{}",
        r.stderr
    );
}

#[test]
fn children_get_a_clean_environment() {
    let d = Daemon::start_with_env(
        &[],
        &[("REXEC_TOKEN", "topsecret"), ("SERVER_SECRET", "hunter2")],
    );
    let mut s = Session::connect_addr(d.addr, &opts(Some("topsecret"))).unwrap();
    let mut sinks = rexec_client::run::Sinks::capture();
    let exec = Exec {
        id: 1,
        command: "env".into(),
        env: vec![("ASKED".into(), "yes".into())],
        ..Exec::default()
    };
    rexec_client::run::run(&mut s, exec, &mut sinks, None).unwrap();
    let rexec_client::run::Sinks::Capture { stdout, .. } = sinks else {
        unreachable!()
    };
    let env = String::from_utf8_lossy(&stdout);
    assert!(
        !env.contains("topsecret") && !env.contains("REXEC_TOKEN"),
        "{env}"
    );
    assert!(!env.contains("hunter2"), "{env}");
    assert!(
        env.contains("ASKED=yes") && env.contains("PATH=/usr/local/sbin:"),
        "{env}"
    );
}

#[test]
fn no_shell_and_allow_list() {
    let d = Daemon::start(&["--no-shell", "--allow", "echo,printf"]);
    // No shell: $HOME and ; are plain words for echo.
    let r = run(rexec().arg(d.host()).arg("echo $HOME; ls"));
    assert_eq!(r.out(), "$HOME; ls\n", "{}", r.stderr);
    // A program not on the list, however it is spelled.
    for cmd in ["ls /", "/bin/../bin/ls /", "sh -c 'echo pwned'"] {
        let r = run(rexec().arg(d.host()).arg(cmd));
        assert_eq!(r.code, Some(255), "{cmd}");
        assert!(
            r.stderr.contains("forbidden") && r.stderr.contains("not an allowed program"),
            "{cmd}: {}",
            r.stderr
        );
        assert!(r.stdout.is_empty());
    }
    assert!(
        d.wait_log("refused \"ls /\"", PATIENCE),
        "audit line: {}",
        d.log()
    );
    // --allow without --no-shell makes no sense and is refused.
    let r = run(std::process::Command::new(bin("rexecd")).args(["--allow", "ls"]));
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("--no-shell"), "{}", r.stderr);
}

#[test]
fn options_before_a_subcommand_apply_to_it() {
    // `rexec --token-file T cp ...` (as the Ansible plugin writes it) once
    // took `cp` for the host, and looked it up in DNS.
    let dir = TempDir::new("opts-first");
    let tf = token_file(&dir, "s3cret", 0o600);
    let d = Daemon::start(&["--token-file", &tf]);
    std::fs::write(dir.path("a"), "payload").unwrap();
    let dest = format!("{}:{}", d.host(), dir.path("b").display());
    let r = run(rexec()
        .args(["--token-file", &tf, "--connect-timeout", "30", "cp"])
        .arg(dir.path("a"))
        .arg(&dest));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(dir.path("b")).unwrap(), "payload");
    // A run option before a subcommand is refused by the subcommand, and
    // its name is still not a host.
    let r = run(rexec().args(["-n", "cp", "x", "y:z"]));
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(!r.stderr.contains("resolve"), "{}", r.stderr);
}

#[test]
fn an_allowed_link_does_not_allow_what_it_points_to() {
    // --allow DIR/rb, a symlink to sh: a client could run `sh -c ...`
    // (any name that resolved to the same file passed).
    let dir = TempDir::new("allow-link");
    let link = dir.path("rb");
    std::os::unix::fs::symlink("/bin/sh", &link).unwrap();
    let marker = dir.path("ran");
    let d = Daemon::start(&["--no-shell", "--allow", &link.display().to_string()]);
    let r = run(rexec()
        .arg(d.host())
        .arg(format!("sh -c 'touch {}'", marker.display())));
    assert_eq!(r.code, Some(255), "{}", r.stderr);
    assert!(r.stderr.contains("not an allowed program"), "{}", r.stderr);
    assert!(!marker.exists(), "sh ran");
    // The entry itself runs, under its own name.
    let r = run(rexec()
        .arg(d.host())
        .arg(format!("{} -c 'echo $0'", link.display())));
    assert_eq!(r.out(), format!("{}\n", link.display()), "{}", r.stderr);
}

#[test]
fn a_token_holder_gets_in_among_guessers_from_its_own_address() {
    // Four parallel wrong-token guessers on 127.0.0.1, the holder's own
    // address: the holder was refused ("too many failed authentications")
    // in 30 of 30 tries.
    let dir = TempDir::new("guessers");
    let tf = token_file(&dir, "s3cret", 0o600);
    let d = Daemon::start(&["--token-file", &tf]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let guessers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, addr) = (stop.clone(), d.addr);
            std::thread::spawn(move || {
                let mut tries = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let Ok(mut s) = TcpStream::connect(addr) else {
                        continue;
                    };
                    let _ = first_hello(&mut s);
                    rexec_tests::wire::send(
                        &mut s,
                        &ClientMsg::Auth {
                            answer: vec![0; 32],
                        },
                    );
                    let _ = read_to_close(&mut s, PATIENCE);
                    tries += 1;
                }
                tries
            })
        })
        .collect();
    let (mut ok, mut worst) = (0, Duration::ZERO);
    for _ in 0..20 {
        let t = Instant::now();
        let r = run(rexec()
            .args(["--token-file", &tf, "--connect-timeout", "10"])
            .arg(d.host())
            .arg("echo in"));
        worst = worst.max(t.elapsed());
        if r.out() == "in\n" {
            ok += 1;
        } else {
            eprintln!("refused: {}", r.stderr);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let tries: usize = guessers.into_iter().map(|g| g.join().unwrap()).sum();
    eprintln!("token holder among 4 guessers: {ok}/20 in, slowest {worst:?}, {tries} guesses");
    assert!(ok >= 19, "the holder got in {ok} times of 20");
    assert!(tries > 0, "the guessers never guessed");
}

#[test]
fn a_login_in_progress_is_never_the_startup_closed_for_a_newcomer() {
    // 200 addresses each keep a connection that said hello and nothing
    // more; with --max-startups full, each newcomer closed the oldest of the
    // busiest address, and about one real login in ten was that one.
    let dir = TempDir::new("startups");
    let tf = token_file(&dir, "s3cret", 0o600);
    let d = Daemon::start(&["--token-file", &tf]);
    let hello_only = |n: u8| {
        let mut s = connect_from(std::net::Ipv4Addr::new(127, 0, 1, n), d.addr).ok()?;
        s.write_all(&frame(&rexec_tests::wire::hello())).ok()?;
        Some(s)
    };
    let held: Vec<TcpStream> = (1..=200).filter_map(hello_only).collect();
    // Let them age past the grace a handshake gets (0.5 s).
    std::thread::sleep(Duration::from_millis(1000));
    let mut ok = 0;
    for i in 0..20u8 {
        // Newcomers keep arriving while the holder logs in.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flood = {
            let stop = stop.clone();
            let addr = d.addr;
            std::thread::spawn(move || {
                let mut opened = Vec::new();
                let mut n = 0u8;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) && opened.len() < 2 {
                    n = n.wrapping_add(1).max(1);
                    if let Ok(mut s) = connect_from(std::net::Ipv4Addr::new(127, 0, 2, n), addr) {
                        let _ = s.write_all(&frame(&rexec_tests::wire::hello()));
                        opened.push(s);
                    }
                }
                opened
            })
        };
        let r = run(rexec()
            .args(["--token-file", &tf])
            .arg(d.host())
            .arg(format!("echo {i}")));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(flood.join().unwrap());
        if r.out() == format!("{i}\n") {
            ok += 1;
        } else {
            eprintln!("login {i}: {}", r.stderr);
        }
    }
    assert_eq!(ok, 20, "logins closed in the middle of their handshake");
    drop(held);
}
