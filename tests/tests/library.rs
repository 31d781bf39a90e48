//! rexec as a library (issue 45): these tests use `rexec_client::Client`
//! and `rexec_server::EmbeddedServer` instead of starting the `rexec` and
//! `rexecd` binaries and reading their output. (The embedded server's
//! file transfers run through the built `rexecd`, named as its helper:
//! a test harness's `main` cannot dispatch to them itself.)

use std::io::{BufRead, BufReader, Write};

use rexec_client::{Client, CopyOptions, Error};
use rexec_server::EmbeddedServer;
use rexec_tests::*;

fn server() -> EmbeddedServer {
    EmbeddedServer::builder()
        .helper(bin("rexecd"))
        .start()
        .expect("an embedded rexecd")
}

#[test]
fn a_command_gives_its_output_and_status() {
    let s = server();
    let c = Client::connect(&s.addr().to_string()).unwrap();
    let out = c.run("echo out; echo err >&2; exit 3").unwrap();
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.status.code(), Some(3));
    assert!(!out.status.success());
    let out = c
        .command("echo $GREETING from $(pwd)")
        .env("GREETING", "hello")
        .current_dir("/")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from /\n");
    assert!(out.status.success(), "{}", out.status);
    // Output past the caller's limit: cut there, the command stopped.
    let out = c
        .command("exec yes")
        .output_limit(1 << 20)
        .output()
        .unwrap();
    assert_eq!(out.stdout.len(), 1 << 20);
    assert!(
        out.status.truncated() && !out.status.success(),
        "{}",
        out.status
    );
    // A whole stdin, given up front.
    let out = c
        .command("tr a-z A-Z")
        .stdin_bytes("shout\n")
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"SHOUT\n");
}

#[test]
fn argv_words_reach_the_program_as_they_are() {
    let s = server();
    let c = Client::connect(&s.addr().to_string()).unwrap();
    let words = ["a b", "'quoted'", "$HOME", "semi;colon", ""];
    let out = c
        .program("printf")
        .arg("[%s]")
        .args(words)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "[a b]['quoted'][$HOME][semi;colon][]"
    );
}

#[test]
fn a_spawned_command_streams_both_ways_and_can_be_killed() {
    let s = server();
    let c = Client::connect(&s.addr().to_string()).unwrap();
    let mut child = c
        .command("while read line; do echo got $line; done")
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    for word in ["one", "two"] {
        writeln!(stdin, "{word}").unwrap();
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, format!("got {word}\n"));
    }
    drop(stdin); // end of input: the loop ends
    assert!(child.wait().unwrap().success());
    // A command that would run on is stopped.
    let mut child = c.command("echo started; exec sleep 600").spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(status.signal().is_some(), "{status}");
}

#[test]
fn many_commands_run_at_once_on_one_connection() {
    let s = server();
    let c = Client::connect(&s.addr().to_string()).unwrap();
    // Each thread's command echoes its own stdin back, in 8 rounds: the
    // answers must never cross.
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let c = c.clone();
            std::thread::spawn(move || {
                let input: Vec<u8> = (0..200_000u32)
                    .flat_map(|n| (n * 31 + i).to_le_bytes())
                    .collect();
                let out = c
                    .command("cat")
                    .stdin_bytes(input.clone())
                    .output()
                    .unwrap();
                assert!(out.status.success());
                assert!(out.stdout == input, "command {i} got another's bytes");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn files_go_up_and_come_back_byte_exact() {
    let s = server();
    let c = Client::connect(&s.addr().to_string()).unwrap();
    let dir = TempDir::new("library-copy");
    let data: Vec<u8> = (0..3_000_000u32).map(|n| (n * 7 % 251) as u8).collect();
    std::fs::write(dir.path("up.bin"), &data).unwrap();
    let remote = dir.path("there.bin");
    c.upload(dir.path("up.bin"), remote.to_str().unwrap())
        .unwrap();
    assert_eq!(std::fs::read(&remote).unwrap(), data);
    c.download(remote.to_str().unwrap(), dir.path("back.bin"))
        .unwrap();
    assert_eq!(std::fs::read(dir.path("back.bin")).unwrap(), data);
    // A tree, with -r.
    std::fs::create_dir_all(dir.path("tree/sub")).unwrap();
    std::fs::write(dir.path("tree/sub/f"), "leaf").unwrap();
    let how = CopyOptions {
        recursive: true,
        preserve: true,
    };
    let copy = dir.path("copy");
    c.upload_with(dir.path("tree"), copy.to_str().unwrap(), how)
        .unwrap();
    assert_eq!(std::fs::read(copy.join("sub/f")).unwrap(), b"leaf");
    // A failure says which file.
    let err = c
        .download(&dir.path("none").to_string_lossy(), dir.path("x"))
        .unwrap_err();
    assert!(
        matches!(err, Error::Copy(ref m) if m.contains("none")),
        "{err}"
    );
}

#[test]
fn errors_say_what_failed() {
    // Nothing listens: a connect error.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = Client::connect(&port.to_string()).unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    // The wrong token: an auth error.
    let s = EmbeddedServer::builder().token("right").start().unwrap();
    let addr = s.addr().to_string();
    let err = Client::builder().token("wrong").connect(&addr).unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    let c = Client::builder().token("right").connect(&addr).unwrap();
    assert!(c.run("true").unwrap().status.success());
    // The server goes away: commands say the connection was lost.
    let mut child = c.command("exec sleep 600").spawn().unwrap();
    drop(s);
    let err = child.wait().unwrap_err();
    assert!(matches!(err, Error::Disconnected(_)), "{err:?}");
    let err = c.run("true").unwrap_err();
    assert!(matches!(err, Error::Disconnected(_)), "{err:?}");
}

#[test]
fn tls_is_pinned_by_fingerprint() {
    let s = EmbeddedServer::builder().tls().start().unwrap();
    let addr = s.addr().to_string();
    let fp = s.fingerprint().unwrap().to_string();
    let c = Client::builder()
        .tls_fingerprint(&fp)
        .connect(&addr)
        .unwrap();
    assert_eq!(c.run("echo sealed").unwrap().stdout, b"sealed\n");
    let wrong = format!("SHA256:{}", "0".repeat(64));
    let err = Client::builder()
        .tls_fingerprint(wrong)
        .connect(&addr)
        .unwrap_err();
    assert!(matches!(err, Error::Trust { .. }), "{err:?}");
}

#[test]
fn detached_jobs_from_the_library() {
    // Jobs outlive their server, so a real rexecd with its own state.
    let dir = TempDir::new("library-jobs");
    let state = dir.path("state").to_string_lossy().into_owned();
    let d = Daemon::start(&["--state-dir", &state]);
    let c = Client::connect(&d.host()).unwrap();
    let job = c.start_job("echo from the job").unwrap();
    let out = c.attach(job).unwrap();
    assert_eq!(out.stdout, b"from the job\n");
    assert!(out.status.success());
    assert!(c.jobs().unwrap().contains(&job.to_string()));
    let long = c.start_job("exec sleep 600").unwrap();
    c.kill_job(long).unwrap();
    assert!(!c.attach(long).unwrap().status.success());
}

#[test]
fn a_command_on_a_terminal_reads_and_writes_it() {
    let s = server();
    let c = Client::connect(&s.addr().to_string()).unwrap();
    let out = c
        .command("test -t 0 && test -t 1 && echo $TERM $(stty size)")
        .pty("xterm-test", 33, 101)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out.status);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "xterm-test 33 101"
    );
}

#[test]
fn handles_go_to_other_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Client>();
    send_sync::<rexec_client::ExitStatus>();
    send_sync::<Error>();
    send::<rexec_client::Child>();
    send::<rexec_client::ChildStdin>();
    send::<rexec_client::ChildStdout>();
    send::<EmbeddedServer>();
    // And they work there: a command started on one thread, finished on
    // another.
    let s = server();
    let c = Client::connect(&s.addr().to_string()).unwrap();
    let child = c.command("echo moved").spawn().unwrap();
    let out = std::thread::spawn(move || {
        let mut child = child;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut text).unwrap();
        (text, child.wait().unwrap())
    })
    .join()
    .unwrap();
    assert_eq!(out.0, "moved\n");
    assert!(out.1.success());
}

mod lying_server {
    use super::*;
    use rexec_proto::{ClientMsg, ServerMsg};
    use rexec_tests::liar::{Liar, Reply, exited, stdout};
    use std::time::Duration;

    /// A liar that answers the login's probe, then `script` for commands.
    fn liar(script: impl Fn(u32) -> Vec<Reply> + Send + 'static) -> Liar {
        Liar::start("liar", move |msg| match msg {
            ClientMsg::Ping { seq } => vec![Reply::Msg(ServerMsg::Pong { seq: *seq })],
            ClientMsg::Exec(e) => script(e.id),
            _ => vec![],
        })
    }

    #[test]
    fn output_for_other_commands_and_unasked_ends_are_ignored() {
        let l = liar(|id| {
            vec![
                stdout(id + 100, b"not yours"),
                exited(id + 100, 9),
                stdout(id, b"yours"),
                exited(id, 0),
            ]
        });
        let c = Client::connect(&l.host()).unwrap();
        let out = c.run("anything").unwrap();
        assert_eq!(out.stdout, b"yours");
        assert!(out.status.success());
    }

    #[test]
    fn output_without_end_is_cut_at_the_limit_and_not_waited_on() {
        let l = liar(|id| {
            vec![Reply::Endless(ServerMsg::Stdout {
                id,
                data: vec![b'x'; 64 * 1024],
            })]
        });
        let c = Client::connect(&l.host()).unwrap();
        let out = c.command("anything").output_limit(1 << 20).output();
        // The liar never says the command ended: the wait for it is
        // bounded, and the error says so; nothing past the limit is kept.
        match out {
            Err(Error::Refused(why)) => assert!(why.contains("did not stop"), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_server_that_never_answers_the_login_probe_is_given_up_on() {
        let l = Liar::start("silent", |_| vec![]);
        let err = Client::builder()
            .connect_timeout(Duration::from_millis(300))
            .connect(&l.host())
            .unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    }
}
