//! What a new user hit (issue 12): results scripts can trust, and the rough
//! edges, each against the real binaries.

use rexec_tests::*;

#[test]
fn truncated_output_never_exits_zero() {
    let d = Daemon::start(&["--max-output", "1K"]);
    // The command may finish writing and exit 0 before the kill lands:
    // whichever wins, the status is the same.
    for _ in 0..20 {
        let r = run(rexec().arg(d.host()).arg("seq 1 1000"));
        assert_eq!(r.code, Some(141), "{}", r.stderr);
        assert_eq!(r.stdout.len(), 1024);
        assert!(r.stderr.contains("output cut"), "{}", r.stderr);
    }
    for _ in 0..5 {
        let r = run(rexec().arg("--json").arg(d.host()).arg("seq 1 1000"));
        assert_eq!(r.code, Some(141), "{}", r.stderr);
        let v: serde_json::Value = serde_json::from_str(r.out().trim()).unwrap();
        assert_eq!(v["exit_code"], 141, "{v}");
        assert_eq!(v["truncated"], true, "{v}");
    }
}

#[test]
fn a_server_that_shuts_down_says_so() {
    let mut d = Daemon::start(&[]);
    let host = d.host();
    let client = std::thread::spawn(move || run(rexec().arg(host).arg("echo up; sleep 30")));
    assert!(wait_until(PATIENCE, || runs_below(d.pid(), "sleep 30")));
    d.signal(libc::SIGTERM);
    let r = client.join().unwrap();
    d.wait_exit(PATIENCE).expect("rexecd exits");
    assert_eq!(r.code, Some(255), "{}", r.stderr);
    assert!(
        r.stderr.contains("server shutting down") && r.stderr.contains("stopped command"),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr.matches("shutting down").count(),
        1,
        "the cause once: {}",
        r.stderr
    );
}

#[test]
fn commands_start_in_the_home_directory_and_cwd_takes_a_tilde() {
    // The account's home is the user database's (server.rs tests that
    // rexecd's own $HOME does not count); `~` in --cwd is that home.
    let d = Daemon::start(&[]);
    let r = run(rexec().arg(d.host()).arg("pwd"));
    let h = r.out().trim_end().to_string();
    assert!(h.starts_with('/'), "{}", r.stderr);
    let r = run(rexec().arg(d.host()).args(["--cwd", "~", "pwd"]));
    assert_eq!(r.out(), format!("{h}\n"), "{}", r.stderr);
    let r = run(rexec().arg(d.host()).args(["--cwd", "~/nope", "pwd"]));
    assert_eq!(r.code, Some(127));
    assert!(r.stderr.contains(&format!("{h}/nope")), "{}", r.stderr);
}

#[test]
fn spawn_errors_name_the_program_that_was_tried() {
    let d = Daemon::start(&[]);
    let r = run(rexec().arg(d.host()).args(["--", "my prog", "arg"]));
    assert_eq!(r.code, Some(127));
    assert!(
        r.stderr.contains("cannot start command: my prog:"),
        "{}",
        r.stderr
    );
}

#[test]
fn listen_without_a_port_uses_the_default_one() {
    let mut child = std::process::Command::new(bin("rexecd"))
        .args(["--listen", "127.0.0.1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Either it listens on 7070, or 7070 is taken on this machine and it
    // says so: both show the port it chose.
    let mut first = String::new();
    let _ = std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    );
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let said = format!("{first}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("127.0.0.1:7070"), "{said}");
}

#[test]
fn json_always_prints_a_line_and_keeps_bytes_exact() {
    // Nothing listens on this port (it was free a moment ago).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = run(rexec()
        .arg("--json")
        .arg(format!("127.0.0.1:{port}"))
        .arg("true"));
    assert_eq!(r.code, Some(255));
    let v: serde_json::Value = serde_json::from_str(r.out().trim()).expect("one JSON line");
    assert_eq!(v["error"]["kind"], "refused", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("refused"),
        "{v}"
    );
    assert_eq!(v["exit_code"], serde_json::Value::Null);

    let d = Daemon::start(&[]);
    let r = run(rexec()
        .arg("--json")
        .arg(d.host())
        .arg("printf '\\377\\376ok'; printf 'fine' >&2"));
    let v: serde_json::Value = serde_json::from_str(r.out().trim()).unwrap();
    assert_eq!(v["stdout_b64"], "//5vaw==", "{v}");
    assert_eq!(v["stderr"], "fine");
    assert!(
        v.get("stderr_b64").is_none(),
        "valid UTF-8 needs no base64: {v}"
    );
    let r = run(rexec()
        .arg("--json")
        .arg(d.host())
        .args(["--", "no-such-program-xyz", "arg"]));
    let v: serde_json::Value = serde_json::from_str(r.out().trim()).unwrap();
    assert_eq!(v["error"]["kind"], "spawn", "{v}");
}
