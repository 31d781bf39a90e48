//! rexecd as a service (issue 44): a configuration file, `--check-config`,
//! reload on SIGHUP, a graceful stop on SIGTERM, several listening
//! sockets, and log lines for the journal or as JSON.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use rexec_tests::*;

/// Writes `text` to `name` in `dir` with `mode`; returns its path.
fn write(dir: &TempDir, name: &str, text: &str, mode: u32) -> String {
    let p = dir.path(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p.to_string_lossy().into_owned()
}

/// `rexecd ARGS...` run to its end (for the ones that exit at once).
fn rexecd(args: &[&str]) -> Ran {
    run(Command::new(bin("rexecd")).args(args).stdin(Stdio::null()))
}

/// `rexec --token-file TOKEN HOST COMMAND`.
fn with_token(d: &Daemon, token: &str, command: &str) -> Ran {
    run(rexec()
        .args(["--token-file", token])
        .arg(d.host())
        .arg(command))
}

#[test]
fn settings_come_from_the_file_and_the_command_line_wins() {
    let dir = TempDir::new("cfg");
    let cfg = write(&dir, "rexecd.toml", "# a lab\nmax-output = \"10\"\n", 0o644);
    // From the file: output is cut after 10 bytes.
    let d = Daemon::start(&["--config", &cfg]);
    let r = run(rexec().arg(d.host()).arg("echo 0123456789abcdef"));
    assert_eq!(r.out(), "0123456789", "{}", r.stderr);
    // The command line wins over the file.
    let d = Daemon::start(&["--config", &cfg, "--max-output", "100"]);
    let r = run(rexec().arg(d.host()).arg("echo 0123456789abcdef"));
    assert_eq!(r.out(), "0123456789abcdef\n", "{}", r.stderr);
    assert_eq!(r.code, Some(0));
}

#[test]
fn a_bad_file_is_refused_naming_the_key_and_the_line() {
    let dir = TempDir::new("cfg-bad");
    let cases = [
        ("timeout = 10\n\nbogus = 1\n", ":3: bogus: no such setting"),
        ("timeout = \"ten\"\n", ":1: timeout: invalid value 'ten'"),
        ("login = \"yes\"\n", ":1: login: a switch: true or false"),
        ("timeout = [1, 2]\n", ":1: timeout: takes one value"),
        (
            "listen = \"127.0.0.1:0\"\n[table]\n",
            ":2: table: no such setting",
        ),
        ("timeout = \n", ":1: "),
        ("config = \"other.toml\"\n", ":1: config: no such setting"),
    ];
    for (text, expect) in cases {
        let cfg = write(&dir, "rexecd.toml", text, 0o644);
        for check in [false, true] {
            let mut args = vec!["--config", &cfg, "--listen", "127.0.0.1:0"];
            if check {
                args.push("--check-config");
            }
            let r = rexecd(&args);
            assert_eq!(r.code, Some(2), "{text:?}: {}", r.stderr);
            assert!(
                r.stderr.contains(&format!("{cfg}{expect}")),
                "{text:?}: {}",
                r.stderr
            );
        }
    }
    // A file others may write decides who logs in: refused, as sshd's
    // StrictModes refuses one.
    let cfg = write(&dir, "open.toml", "timeout = 10\n", 0o666);
    let r = rexecd(&["--config", &cfg, "--check-config"]);
    assert_eq!(r.code, Some(2));
    assert!(
        r.stderr.contains("writable by group or others"),
        "{}",
        r.stderr
    );
    // A missing file named on purpose is an error, not the defaults.
    let r = rexecd(&[
        "--config",
        &dir.path("none.toml").to_string_lossy(),
        "--check-config",
    ]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("none.toml"), "{}", r.stderr);
}

#[test]
fn check_config_prints_the_settings_and_where_they_come_from() {
    let dir = TempDir::new("cfg-check");
    let token = write(&dir, "token", "sesame\n", 0o600);
    let cfg = write(
        &dir,
        "rexecd.toml",
        &format!(
            "timeout = 600\ntoken-file = \"{token}\"\nallow-env = [\"A\", \"B_*\"]\nno-shell = true\n"
        ),
        0o644,
    );
    let r = rexecd(&["--config", &cfg, "--check-config", "--max-procs", "9"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let out = r.out();
    assert!(
        out.contains(&format!("timeout = 600  # {cfg}:1\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!("token-file = \"{token}\"  # {cfg}:2\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!("allow-env = [\"A\", \"B_*\"]  # {cfg}:3\n")),
        "{out}"
    );
    assert!(out.contains("max-procs = 9  # command line\n"), "{out}");
    assert!(out.contains("idle-timeout = 600  # default\n"), "{out}");
    assert!(out.ends_with("# the settings are valid\n"), "{out}");
    // What it printed is a configuration file that gives the same.
    let again = write(&dir, "again.toml", &out, 0o644);
    let r2 = rexecd(&["--config", &again, "--check-config"]);
    assert_eq!(r2.code, Some(0), "{}", r2.stderr);
    let settings = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split("  #").next().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(settings(&r2.out()), settings(&out));
    // The files it names are checked as at start: a token others can read.
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = rexecd(&["--config", &cfg, "--check-config"]);
    assert_eq!(r.code, Some(2), "{}", r.out());
    assert!(r.stderr.contains(&token), "{}", r.stderr);
}

#[test]
fn check_config_refuses_a_certificate_and_key_that_do_not_match() {
    let dir = TempDir::new("cfg-tls");
    // Two self-signed identities, made by rexecd itself.
    for state in ["a", "b"] {
        let s = dir.path(state).to_string_lossy().into_owned();
        let r = rexecd(&["--tls", "--state-dir", &s, "--check-config"]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert!(r.out().contains("# tls fingerprint SHA256:"), "{}", r.out());
    }
    let pem = |state: &str, ext: &str| -> String {
        let d = dir.path(state);
        let f = std::fs::read_dir(&d)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(ext))
            .unwrap_or_else(|| panic!("no *{ext} in {}", d.display()));
        f.to_string_lossy().into_owned()
    };
    let (cert_a, key_a, key_b) = (
        pem("a", "tls-cert.pem"),
        pem("a", "tls-key.pem"),
        pem("b", "tls-key.pem"),
    );
    let r = rexecd(&["--cert", &cert_a, "--key", &key_a, "--check-config"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // A key others can read is refused, as sshd refuses a host key.
    std::fs::set_permissions(&key_a, std::fs::Permissions::from_mode(0o640)).unwrap();
    let r = rexecd(&["--cert", &cert_a, "--key", &key_a, "--check-config"]);
    assert_eq!(r.code, Some(2), "{}", r.out());
    assert!(r.stderr.contains("can be read by others"), "{}", r.stderr);
    let r = rexecd(&["--cert", &cert_a, "--key", &key_b, "--check-config"]);
    assert_eq!(r.code, Some(2), "{}", r.out());
    assert!(
        r.stderr.contains(&format!(
            "certificate {cert_a} and key {key_b} do not match"
        )),
        "{}",
        r.stderr
    );
}

/// A rexecd whose `rexecd.toml` in `dir` names a token file holding
/// `secret`; the file's path.
fn token_daemon(dir: &TempDir, secret: &str) -> (Daemon, String) {
    let token = write(dir, "token", &format!("{secret}\n"), 0o600);
    let text = format!("token-file = \"{token}\"\n");
    let cfg = write(dir, "rexecd.toml", &text, 0o644);
    (Daemon::start(&["--config", &cfg]), token)
}

#[test]
fn sighup_reads_the_token_again_and_running_commands_go_on() {
    let dir = TempDir::new("reload");
    let (d, token) = token_daemon(&dir, "first secret");
    let other = write(&dir, "other", "second secret\n", 0o600);
    // A command started before the reload, waiting for its stdin.
    let (mut before, mut out) = waiting_command(&d, &["--token-file", &token]);
    // The token changes, and rexecd is told.
    std::fs::write(&token, "second secret\n").unwrap();
    d.signal(libc::SIGHUP);
    assert!(d.wait_log("reloaded the settings", PATIENCE), "{}", d.log());
    // New connections: the new token only.
    let r = with_token(&d, &other, "echo new");
    assert_eq!(
        (r.code, r.out().as_str()),
        (Some(0), "new\n"),
        "{}",
        r.stderr
    );
    let old = write(&dir, "old", "first secret\n", 0o600);
    let r = with_token(&d, &old, "echo old");
    assert_ne!(r.code, Some(0), "the old token still works: {}", r.out());
    // The command that ran across the reload goes on.
    before.stdin.take().unwrap().write_all(b"more\n").unwrap();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "got more\n");
    assert!(before.wait().unwrap().success());
}

#[test]
fn a_reload_that_fails_keeps_the_old_settings() {
    let dir = TempDir::new("reload-bad");
    let (d, token) = token_daemon(&dir, "kept secret");
    write(&dir, "rexecd.toml", "token-file = 7\nbogus = true\n", 0o644);
    d.signal(libc::SIGHUP);
    assert!(
        d.wait_log("reload failed, the old settings stay", PATIENCE),
        "{}",
        d.log()
    );
    assert!(d.log().contains(":2: bogus"), "{}", d.log());
    let r = with_token(&d, &token, "echo still");
    assert_eq!(
        (r.code, r.out().as_str()),
        (Some(0), "still\n"),
        "{}",
        r.stderr
    );
    // A change that takes a restart is refused whole, saying so.
    write(&dir, "rexecd.toml", "protocol = \"seed\"\n", 0o644);
    d.signal(libc::SIGHUP);
    assert!(
        d.wait_log("--protocol changes only with a restart", PATIENCE),
        "{}",
        d.log()
    );
    let r = with_token(&d, &token, "echo still");
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}

/// Starts `rexec ARGS... HOST 'echo started; read line; echo got $line'`
/// and waits for its first line.
fn waiting_command(
    d: &Daemon,
    args: &[&str],
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut c = rexec()
        .args(args)
        .arg(d.host())
        .arg("echo started; read line; echo got $line")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "started\n");
    (c, out)
}

#[test]
fn sigterm_gives_running_commands_their_grace_and_takes_nothing_new() {
    let mut d = Daemon::start(&["--stop-grace", "600"]);
    let (mut c, mut out) = waiting_command(&d, &[]);
    d.signal(libc::SIGTERM);
    assert!(
        d.wait_log("1 commands have 600s to finish", PATIENCE),
        "{}",
        d.log()
    );
    // No new connection is taken.
    assert!(std::net::TcpStream::connect(d.addr).is_err());
    // The running command finishes in its own time, with its output.
    c.stdin.take().unwrap().write_all(b"done\n").unwrap();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "got done\n");
    let st = c.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut c.stderr.take().unwrap(), &mut err).unwrap();
    assert!(st.success(), "{st}: {err}");
    // Then rexecd ends, without waiting out the grace.
    let st = d.wait_exit(PATIENCE).expect("rexecd still running");
    assert!(st.success(), "{st}");
}

#[test]
fn sigterm_stops_commands_when_the_grace_is_over_or_on_a_second_signal() {
    for (grace, second) in [("1", false), ("600", true)] {
        let mut d = Daemon::start(&["--stop-grace", grace]);
        let (mut c, _out) = waiting_command(&d, &[]);
        d.signal(libc::SIGTERM);
        assert!(d.wait_log("commands have", PATIENCE), "{}", d.log());
        if second {
            d.signal(libc::SIGTERM);
        }
        assert!(d.wait_log("stopping 1 commands", PATIENCE), "{}", d.log());
        let st = d.wait_exit(PATIENCE).expect("rexecd still running");
        assert!(st.success(), "{st}");
        // The client is told, and does not report success.
        let st = c.wait().unwrap();
        assert!(!st.success());
        let mut err = String::new();
        std::io::Read::read_to_string(&mut c.stderr.take().unwrap(), &mut err).unwrap();
        assert!(
            err.contains("shutting down") || err.contains("signal"),
            "{err}"
        );
    }
}

#[test]
fn rexecd_listens_on_every_address_given() {
    let mut child = Command::new(bin("rexecd"))
        .args(["--listen", "127.0.0.1:0", "--listen", "127.0.0.2:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut addrs = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        addrs.push(
            line.trim()
                .strip_prefix("listening on ")
                .unwrap()
                .to_string(),
        );
    }
    assert!(
        addrs[0].starts_with("127.0.0.1:") && addrs[1].starts_with("127.0.0.2:"),
        "{addrs:?}"
    );
    for a in &addrs {
        let r = run(rexec().arg(a).arg("echo here"));
        assert_eq!(r.out(), "here\n", "{a}: {}", r.stderr);
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn json_log_lines_carry_the_audit_facts_as_keys() {
    let d = Daemon::start(&["--log-format", "json"]);
    let r = run(rexec().arg(d.host()).arg("echo hi; exit 3"));
    assert_eq!(r.code, Some(3));
    assert!(d.wait_log("\"event\":\"command\"", PATIENCE), "{}", d.log());
    let line = d
        .log()
        .lines()
        .find(|l| l.contains("\"event\":\"command\""))
        .unwrap()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["command"], "echo hi; exit 3");
    assert_eq!(v["status"], "exit 3");
    assert_eq!(v["level"], "info");
    assert_eq!(v["bytes_out"], 3);
    assert!(
        v["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{line}"
    );
    assert!(v["time"].is_string(), "{line}");
    // Every line is an object.
    for l in d.log().lines() {
        assert!(serde_json::from_str::<serde_json::Value>(l).is_ok(), "{l}");
    }
}

#[test]
fn under_the_journal_lines_carry_a_priority_and_no_time() {
    use std::os::unix::fs::MetadataExt;
    let dir = TempDir::new("journal");
    let log = std::fs::File::create(dir.path("log2")).unwrap();
    let meta = log.metadata().unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let mut child = Command::new(bin("rexecd"))
        .args(["--listen", "127.0.0.1:0"])
        .env("JOURNAL_STREAM", &stream)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // SAFETY: kill(2) on the pid of a child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(dir.path("log2")).unwrap();
    assert!(text.lines().any(|l| l.starts_with("<6>")), "{text}");
    for l in text.lines() {
        assert!(l.starts_with('<') && !l.contains("Z INFO"), "{l}");
    }
}

#[test]
fn systemd_is_told_when_rexecd_is_ready_reloading_and_stopping() {
    let dir = TempDir::new("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(dir.path("notify")).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    let path = dir.path("notify").to_string_lossy().into_owned();
    let mut d = Daemon::start_with_env(&[], &[("NOTIFY_SOCKET", &path)]);
    let next = || {
        let mut buf = [0u8; 1024];
        let n = sock.recv(&mut buf).expect("a notification from rexecd");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = next();
    assert!(ready.contains("READY=1"), "{ready}");
    assert!(
        ready.contains(&format!("STATUS=listening on {}", d.addr)),
        "{ready}"
    );
    // The commands it runs do not see the socket.
    let r = run(rexec().arg(d.host()).arg("echo ${NOTIFY_SOCKET:-none}"));
    assert_eq!(r.out(), "none\n", "{}", r.stderr);
    d.signal(libc::SIGHUP);
    let reloading = next();
    assert!(reloading.contains("RELOADING=1"), "{reloading}");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    let again = next();
    assert!(
        again.contains("READY=1") && again.contains("read again"),
        "{again}"
    );
    d.signal(libc::SIGTERM);
    let stopping = next();
    assert!(stopping.contains("STOPPING=1"), "{stopping}");
    assert!(d.wait_exit(PATIENCE).is_some_and(|s| s.success()));
}
