//! The real `rexec` binary against the real `rexecd`, over loopback.

use std::io::Write;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use rexec_tests::*;

#[test]
fn quoting_rules_one_word_is_shell_several_are_argv() {
    let d = Daemon::start(&[]);
    // One word: a shell command string, pipes and all.
    let r = run(rexec().arg(d.host()).arg("printf 'a\\nb\\nc\\n' | wc -l"));
    assert_eq!(r.out().trim(), "3");
    // Several words: each arrives as one argument, unexpanded.
    let r = run(rexec().arg(d.host()).args([
        "--", "printf", "%s|", "my file", "$HOME", "*", "it's", "a\"b",
    ]));
    assert_eq!(r.out(), "my file|$HOME|*|it's|a\"b|");
    assert_eq!(r.code, Some(0));
}

#[test]
fn stdout_and_stderr_stay_apart() {
    let d = Daemon::start(&[]);
    let r = run(rexec()
        .arg(d.host())
        .arg("echo out; echo err >&2; printf '\\377\\000'"));
    assert_eq!(r.stdout, b"out\n\xff\x00");
    assert_eq!(r.stderr, "err\n");
}

#[test]
fn exit_code_rules() {
    let d = Daemon::start(&["--timeout", "1"]);
    let code = |cmd: &str| run(rexec().arg(d.host()).arg(cmd)).code;
    assert_eq!(code("exit 0"), Some(0));
    assert_eq!(code("exit 42"), Some(42));
    assert_eq!(code("kill -TERM $$"), Some(128 + 15));
    assert_eq!(code("kill -KILL $$"), Some(128 + 9));
    let r = run(rexec().arg(d.host()).arg("sleep 30"));
    assert_eq!(r.code, Some(124));
    assert!(r.stderr.contains("timed out"), "{}", r.stderr);
    let r = run(rexec().arg(d.host()).args(["--", "no-such-program-xyz"]));
    assert_eq!(r.code, Some(127));
    assert!(r.stderr.contains("no-such-program-xyz"), "{}", r.stderr);
}

#[test]
fn client_timeout_option() {
    let d = Daemon::start(&[]);
    let r = run(rexec()
        .args(["--timeout", "0.3"])
        .arg(d.host())
        .arg("sleep 30"));
    assert_eq!(r.code, Some(124));
}

#[test]
fn refused_connection_is_255_with_a_clear_message() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = run(rexec().arg(format!("127.0.0.1:{port}")).arg("true"));
    assert_eq!(r.code, Some(255));
    assert!(r.stderr.contains("connection refused"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
}

#[test]
fn wrong_port_speaking_another_protocol_is_255() {
    // A tutorial server takes our hello for a command and answers with a
    // seed reply, which is no rexec frame.
    let d = Daemon::start(&["--protocol", "seed"]);
    let r = run(rexec()
        .args(["--connect-timeout", "1"])
        .arg(d.host())
        .arg("true"));
    assert_eq!(r.code, Some(255));
    assert!(
        r.stderr.contains("does not speak the rexec protocol"),
        "{}",
        r.stderr
    );
    // A server that never answers: the connect timeout applies to the hello.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let r = run(rexec()
        .args(["--connect-timeout", "1"])
        .arg(silent.local_addr().unwrap().to_string())
        .arg("true"));
    assert_eq!(r.code, Some(255));
    // Said as what it most likely is (a hung machine), not as a server of
    // the wrong protocol.
    assert!(
        r.stderr
            .contains("took the connection but said nothing within 1 s")
            && r.stderr.contains("may be hung"),
        "{}",
        r.stderr
    );
    // Something that answers with non-rexec bytes.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n");
        // Held open until rexec gives up and closes.
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let _ = std::io::copy(&mut s, &mut std::io::sink());
    });
    let r = run(rexec().arg(addr.to_string()).arg("true"));
    t.join().unwrap();
    assert_eq!(r.code, Some(255));
    assert!(
        r.stderr.contains("does not speak the rexec protocol"),
        "{}",
        r.stderr
    );
}

#[test]
fn server_limit_is_reported() {
    let d = Daemon::start(&["--max-conns", "1"]);
    let _hold = rexec_client::Session::connect_addr(d.addr, &Default::default()).unwrap();
    let r = run(rexec().arg(d.host()).arg("true"));
    assert_eq!(r.code, Some(255));
    assert!(r.stderr.contains("server limit"), "{}", r.stderr);
}

fn with_stdin(cmd: &mut std::process::Command, input: &[u8]) -> Ran {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    Ran {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn stdin_is_forwarded_with_eof_unless_n() {
    let d = Daemon::start(&[]);
    let r = with_stdin(rexec().arg(d.host()).args(["--", "wc", "-l"]), b"a\nb\n");
    assert_eq!(r.out().trim(), "2");
    let r = with_stdin(
        rexec().arg("-n").arg(d.host()).args(["--", "wc", "-l"]),
        b"a\nb\n",
    );
    assert_eq!(r.out().trim(), "0");
}

#[test]
fn commands_from_a_pipe_run_in_order() {
    let d = Daemon::start(&[]);
    let r = with_stdin(rexec().arg(d.host()), b"echo a\n\necho b\nexit 5\n");
    assert_eq!(r.out(), "a\nb\n");
    assert_eq!(r.code, Some(5), "exit status of the last command");
}

#[test]
fn json_output_has_every_field() {
    let d = Daemon::start(&[]);
    let r = run(rexec()
        .arg("--json")
        .arg(d.host())
        .arg("echo out; echo err >&2; exit 3"));
    assert_eq!(r.code, Some(3));
    let v: serde_json::Value = serde_json::from_str(r.out().trim()).expect("one JSON object");
    assert_eq!(v["command"], "echo out; echo err >&2; exit 3");
    assert_eq!(v["exit_code"], 3);
    assert_eq!(v["signal"], serde_json::Value::Null);
    assert_eq!(v["timed_out"], false);
    assert_eq!(v["truncated"], false);
    assert_eq!(v["stdout"], "out\n");
    assert_eq!(v["stderr"], "err\n");
    assert!(v["duration_ms"].is_u64());
    let r = run(rexec().arg("--json").arg(d.host()).arg("kill -9 $$"));
    let v: serde_json::Value = serde_json::from_str(r.out().trim()).unwrap();
    assert_eq!(v["exit_code"], serde_json::Value::Null);
    assert_eq!(v["signal"], 9);
    assert_eq!(r.code, Some(137));
}

#[test]
fn trace_shows_headers_that_match_the_lengths() {
    let d = Daemon::start(&[]);
    let r = run(rexec()
        .arg("--trace")
        .arg(d.host())
        .arg("head -c 70000 /dev/zero"));
    assert_eq!(r.stdout.len(), 70000);
    let lines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("[trace]"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("send") && l.contains("Exec")),
        "{}",
        r.stderr
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("recv") && l.contains("Exited")),
        "{}",
        r.stderr
    );
    let mut stdout_bytes = 0;
    for l in &lines {
        // "[trace] recv 00 01 00 0a  len=65546  Stdout id=1 data=65536 bytes"
        let words: Vec<&str> = l.split_whitespace().collect();
        let hex: Vec<u8> = words[2..6]
            .iter()
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect();
        let len: u32 = words[6].strip_prefix("len=").unwrap().parse().unwrap();
        assert_eq!(
            u32::from_be_bytes([hex[0], hex[1], hex[2], hex[3]]),
            len,
            "{l}"
        );
        if let (true, Some(d)) = (l.contains("Stdout"), l.split("data=").nth(1)) {
            let data: usize = d.split_whitespace().next().unwrap().parse().unwrap();
            // The payload is the data plus the message's own few bytes.
            assert!(len as usize > data && (len as usize) < data + 16, "{l}");
            stdout_bytes += data;
        }
    }
    assert_eq!(stdout_bytes, 70000);
}

#[test]
fn cwd_and_env_options() {
    let d = Daemon::start(&[]);
    let r = run(rexec()
        .args(["--cwd", "/tmp", "--env", "A=1", "--env", "B=two words"])
        .arg(d.host())
        .arg("pwd; echo $A $B"));
    assert_eq!(r.out(), "/tmp\n1 two words\n");
}

#[test]
fn ipv6_loopback_host_spec() {
    // CI's loopback-only namespace has ::1 (ansible.rs uses it too): a
    // machine without it fails here, saying so, rather than passing.
    assert!(
        TcpListener::bind("[::1]:0").is_ok(),
        "this test needs an IPv6 loopback (::1)"
    );
    let child = std::process::Command::new(bin("rexecd"))
        .args(["--listen", "[::1]:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = scopeguard(child);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.0.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    assert!(addr.starts_with("[::1]:"), "{addr}");
    let r = run(rexec().arg(&addr).arg("echo v6"));
    assert_eq!(r.out(), "v6\n");
    // With an account before it (it was taken for a host list).
    let r = run(rexec().arg(format!("nobody@{addr}")).arg("echo as-named"));
    assert_eq!(r.out(), "as-named\n", "{}", r.stderr);
}

/// Kills (by PID) a child we started when the test ends.
struct Guard(std::process::Child);
fn scopeguard(c: std::process::Child) -> Guard {
    Guard(c)
}
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn demo_detects_contamination_and_framed_replies_match() {
    let r = run_for(rexec().arg("demo"), Duration::from_secs(60));
    assert_eq!(r.code, Some(0), "{}\n{}", r.out(), r.stderr);
    let out = r.out();
    assert!(out.contains("CONTAMINATED"), "{out}");
    assert!(out.contains("MERGED"), "{out}");
    assert!(out.contains("Every framed reply matched"), "{out}");
    assert!(out.contains("exit status: 3"), "{out}");
    // The UDP contrast is part of the whole demo.
    assert!(out.contains("== UDP") && out.contains("truncated"), "{out}");
    // The tutorials' name, both byte orders, and what a frame adds.
    assert!(out.contains("粘包"), "{out}");
    assert!(
        out.contains("fe be 00 00") && out.contains("00 00 be fe"),
        "{out}"
    );
    // How the output is cut into frames depends on timing; the overhead
    // must agree with the first frame's data length: a kind byte, an id
    // byte and the length's varint (1 byte below 251, 3 below 65536).
    let (data, more) = out
        .split_once("counts its output (")
        .and_then(|(_, rest)| rest.split_once(" bytes) plus "))
        .and_then(|(n, rest)| Some((n.parse::<usize>().ok()?, rest.split_once(' ')?.0)))
        .unwrap_or_else(|| panic!("no frame overhead line: {out}"));
    let varint = if data < 251 { 1 } else { 3 };
    assert_eq!(more, (2 + varint).to_string(), "{out}");
    for line in out.lines() {
        assert!(line.chars().count() <= 80, "line over 80 columns: {line}");
    }
}

#[test]
fn demo_udp_shows_datagram_edges_truncation_and_the_size_limit() {
    let r = run_for(rexec().args(["demo", "udp"]), Duration::from_secs(60));
    assert_eq!(r.code, Some(0), "{}\n{}", r.out(), r.stderr);
    let out = r.out();
    for want in [
        "recvfrom(1024) -> 5 bytes \"hello\"",
        "recvfrom(1024) -> 5 bytes \"world\"",
        "recvfrom(1024) -> 1024 bytes; MSG_TRUNC says the datagram had 2000",
        "it was truncated, and its last 976 bytes are gone",
        "The next recvfrom(1024) -> 5 bytes \"after\"",
        "sendto(65507 bytes) -> sent; 65507 bytes came back",
        "sendto(65508 bytes) -> error",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    for line in out.lines() {
        assert!(line.chars().count() <= 80, "line over 80 columns: {line}");
    }
}

#[test]
fn demo_sticky_against_an_external_raw_server() {
    let d = Daemon::start(&["--protocol", "raw"]);
    let r = run_for(
        rexec().args(["demo", "sticky", "--connect", &d.host()]),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{}\n{}", r.out(), r.stderr);
    assert!(r.out().contains(&d.host()));
    assert!(r.out().contains("CONTAMINATED"));
}

#[test]
fn ctrl_c_cancels_the_remote_command_first() {
    let d = Daemon::start(&[]);
    let mut child = rexec()
        .arg(d.host())
        .arg("sleep 300 & echo $!; wait")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let bg: i32 = line.trim().parse().unwrap();
    assert!(alive(bg));
    // SAFETY: SIGINT to the rexec process this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    // The remote shell was stopped (with SIGTERM), and rexec exits as an
    // interrupted local program does (130, as ssh without a pty).
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopping the remote command"));
    assert!(
        wait_until(PATIENCE, || !alive(bg)),
        "remote process {bg} survived Ctrl-C"
    );
}

#[test]
fn a_closed_local_stdout_stops_the_remote_command() {
    let d = Daemon::start(&[]);
    // As in `rexec host yes | head -1`.
    let r = run(std::process::Command::new("/bin/sh").arg("-c").arg(format!(
        "{} {} 'yes rexec-pipe' | head -1",
        bin("rexec").display(),
        d.host()
    )));
    assert_eq!(r.out(), "rexec-pipe\n");
    assert!(
        wait_until(PATIENCE, || children_of(d.pid()).is_empty()),
        "remote `yes` still running: {:?}",
        children_of(d.pid())
    );
    assert!(
        d.wait_log("\"yes rexec-pipe\": signal 15", PATIENCE),
        "{}",
        d.log()
    );
}

#[test]
fn a_command_over_the_frame_limit_gets_a_sentence() {
    let d = Daemon::start(&[]);
    // 15 words of 100 KB: 1.5 MB of argv, over the 1 MiB a request may be.
    let word = "x".repeat(100_000);
    let r = run(rexec()
        .arg(d.host())
        .arg("--")
        .arg("echo")
        .args(std::iter::repeat_n(&word, 15)));
    assert_eq!(r.code, Some(255), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("the command is 1.5 MB; the limit for one request is 1 MiB"),
        "{}",
        r.stderr
    );
}
