//! Many hosts at once (issue 14): several rexecd on loopback, named in a
//! test config file, reached with -w host lists.

use std::net::TcpListener;

use rexec_tests::*;

/// Three servers (lab1-lab3), an address nothing listens on (lab4), one
/// that accepts and never answers (lab5), and the config naming them.
struct Lab {
    _daemons: Vec<Daemon>,
    _silent: TcpListener,
    dir: TempDir,
}

impl Lab {
    fn new() -> Lab {
        let daemons: Vec<Daemon> = (0..3).map(|_| Daemon::start(&[])).collect();
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let refused = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let dir = TempDir::new("fanout");
        let mut text = String::new();
        for (i, d) in daemons.iter().enumerate() {
            text.push_str(&format!(
                "[hosts.lab{}]\naddress = \"{}\"\n",
                i + 1,
                d.host()
            ));
        }
        text.push_str(&format!("[hosts.lab4]\naddress = \"{refused}\"\n"));
        text.push_str(&format!(
            "[hosts.lab5]\naddress = \"{}\"\n",
            silent.local_addr().unwrap()
        ));
        text.push_str("[groups]\nup = \"lab[1-3]\"\nall = \"@up,lab[4-5]\"\n");
        std::fs::write(dir.path("config.toml"), text).unwrap();
        Lab {
            _daemons: daemons,
            _silent: silent,
            dir,
        }
    }

    fn rexec(&self) -> std::process::Command {
        let mut c = rexec();
        c.env("REXEC_CONFIG", self.dir.path("config.toml"));
        c
    }
}

#[test]
fn output_is_prefixed_per_host_with_a_summary() {
    let lab = Lab::new();
    let r = run(lab.rexec().args(["-w", "@up", "echo one; echo two >&2"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for h in ["lab1", "lab2", "lab3"] {
        assert!(r.out().contains(&format!("{h}: one\n")), "{}", r.out());
        assert!(r.stderr.contains(&format!("{h}: two\n")), "{}", r.stderr);
    }
    assert!(r.stderr.contains("rexec: 3 ok"), "{}", r.stderr);
    // Every line is whole: a prefix then the text, never two hosts mixed.
    for line in r.out().lines() {
        assert!(
            line.starts_with("lab") && line.ends_with(": one"),
            "{line:?}"
        );
    }
}

#[test]
fn exit_status_is_the_highest_or_255_when_a_host_is_down() {
    let lab = Lab::new();
    let r = run(lab.rexec().args([
        "-w",
        "lab[1-3]",
        "case $PPID in *) exit $(( 1$(date +%N) % 1 + 3 ));; esac",
    ]));
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(r.stderr.contains("3 failed"), "{}", r.stderr);
    let r = run(lab.rexec().args(["-w", "lab1,lab4", "true"]));
    assert_eq!(r.code, Some(255), "{}", r.stderr);
    assert!(
        r.stderr.contains("1 ok") && r.stderr.contains("1 unreachable (lab4: connection refused"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_dead_host_is_given_up_after_the_connect_timeout() {
    // lab5 accepts and never answers: without the connect timeout covering
    // the hello, the run would hang (and `run` fail the test).
    let lab = Lab::new();
    let r = run(lab
        .rexec()
        .args(["--connect-timeout", "1", "-w", "@all", "echo up"]));
    assert_eq!(r.code, Some(255), "{}", r.stderr);
    assert!(r.stderr.contains("3 ok"), "{}", r.stderr);
    assert!(
        r.stderr.contains("2 unreachable") && r.stderr.contains("lab5: "),
        "{}",
        r.stderr
    );
}

#[test]
fn gather_folds_identical_outputs() {
    let lab = Lab::new();
    let r = run(lab.rexec().args(["-w", "lab[1-3]", "-b", "echo same"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.out(),
        "---------------\nlab[1-3] (3)\n---------------\nsame\n",
        "{}",
        r.stderr
    );
}

#[test]
fn json_is_one_line_per_host_and_exclusions_apply() {
    let lab = Lab::new();
    let r = run(lab
        .rexec()
        .args(["--json", "-w", "@all", "-x", "lab2,lab5", "echo j"]));
    let lines: Vec<serde_json::Value> = r
        .out()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut hosts: Vec<&str> = lines.iter().map(|v| v["host"].as_str().unwrap()).collect();
    hosts.sort();
    assert_eq!(hosts, ["lab1", "lab3", "lab4"], "{}", r.out());
    for v in &lines {
        match v["host"].as_str() {
            Some("lab4") => assert_eq!(v["error"]["kind"], "refused", "{v}"),
            _ => assert_eq!(
                (v["exit_code"].clone(), v["stdout"].clone()),
                (0.into(), "j\n".into())
            ),
        }
    }
}

#[test]
fn hosts_lists_the_config_and_errors_name_file_and_line() {
    let lab = Lab::new();
    let r = run(lab.rexec().arg("hosts"));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.out()
            .contains("@all\t@up,lab[4-5]\t= lab1,lab2,lab3,lab4,lab5"),
        "{}",
        r.out()
    );
    let bad = lab.dir.path("bad.toml");
    std::fs::write(&bad, "[hosts.x]\naddress = \"a\"\nport = 1\n").unwrap();
    let r = run(rexec().env("REXEC_CONFIG", &bad).args(["x", "true"]));
    assert_eq!(r.code, Some(2));
    assert!(
        r.stderr.contains(&format!("{}:3:1", bad.display())) && r.stderr.contains("port"),
        "{}",
        r.stderr
    );
    // A named host is reached through its entry.
    let r = run(lab.rexec().args(["lab2", "echo named"]));
    assert_eq!(r.out(), "named\n", "{}", r.stderr);
}

#[test]
fn a_closed_stdout_stops_every_host_like_one_host() {
    // `rexec -w lab1 yes | head -1` never exited and spun a CPU.
    let lab = Lab::new();
    let r = run(std::process::Command::new("bash").arg("-c").arg(format!(
        "REXEC_CONFIG={} {} -w @up yes | head -1; echo \"status ${{PIPESTATUS[0]}}\" >&2",
        lab.dir.path("config.toml").display(),
        bin("rexec").display()
    )));
    assert_eq!(r.out().lines().count(), 1, "{}", r.out());
    // Each host's yes was stopped, as a single host's is, and rexec ends
    // as a writer whose reader went away: 141, quietly (issue 41; it was
    // 143, the remote command's SIGTERM, with a summary of failures).
    assert_eq!(r.stderr, "status 141\n");
    for d in &lab._daemons {
        assert!(
            wait_until(PATIENCE, || children_of(d.pid()).is_empty()),
            "a host's command runs on"
        );
    }
}

#[test]
fn a_host_list_without_w_gets_a_hint_not_a_lookup() {
    let lab = Lab::new();
    for list in ["@up", "lab[1-2]", "lab1,lab2"] {
        let r = run(lab.rexec().args([list, "true"]));
        assert_eq!(r.code, Some(2), "{list}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!("rexec -w {list}")),
            "{list}: {}",
            r.stderr
        );
    }
    // A bracketed IPv6 address is a host, not a list.
    let r = run(lab.rexec().args(["[::1]:1", "true"]));
    assert!(!r.stderr.contains("host list"), "{}", r.stderr);
}

#[test]
fn the_summary_folds_identical_failures_and_names_timeouts() {
    let lab = Lab::new();
    let r = run(lab.rexec().args(["-w", "@up", "exit 3"]));
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(r.stderr.contains("3 failed (lab[1-3]: 3)"), "{}", r.stderr);
    let r = run(lab
        .rexec()
        .args(["-w", "@up", "--timeout", "1", "sleep 30"]));
    assert_eq!(r.code, Some(124), "{}", r.stderr);
    assert!(r.stderr.contains("3 timed out (lab[1-3])"), "{}", r.stderr);
}

#[test]
fn stdin_goes_to_every_host_as_with_clush() {
    // Every host's `wc -l` printed 0: stdin was dropped under -w.
    let lab = Lab::new();
    let input = lab.dir.path("input");
    std::fs::write(&input, "a\nb\n").unwrap();
    let r = run(lab
        .rexec()
        .args(["-w", "@up", "wc -l"])
        .stdin(std::fs::File::open(&input).unwrap()));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for h in ["lab1", "lab2", "lab3"] {
        assert!(r.out().contains(&format!("{h}: 2\n")), "{}", r.out());
    }
    // -n: none.
    let r = run(lab
        .rexec()
        .args(["-n", "-w", "@up", "wc -l"])
        .stdin(std::fs::File::open(&input).unwrap()));
    assert!(r.out().contains("lab1: 0\n"), "{}", r.out());
}

#[test]
fn w_may_be_given_more_than_once() {
    let lab = Lab::new();
    let r = run(lab
        .rexec()
        .args(["-w", "lab1", "-w", "lab[2-3]", "echo hi"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("3 ok"), "{}", r.stderr);
}

/// With -w every word from the command on is the command's, options too,
/// as with clush and pdsh: `wc -l` (the README's example, which failed with
/// "a value is required for '--user'"), `head -n 1` (ran `head 1`, -n read
/// as rexec's --no-stdin), `grep -n` (silently lost -n), `-l` and `-i`.
#[test]
fn options_after_the_command_are_the_commands() {
    let lab = Lab::new();
    let dir = TempDir::new("fanout-words");
    let file = dir.path("f.txt");
    std::fs::write(&file, "first\nsecond\n").unwrap();
    let f = file.display().to_string();
    let per_host = |r: &Ran, text: &str| {
        for h in ["lab1", "lab2"] {
            assert!(
                r.out().contains(&format!("{h}: {text}\n")),
                "{h}: {text:?} in {}{}",
                r.out(),
                r.stderr
            );
        }
    };
    let r = run(lab
        .rexec()
        .args(["-w", "lab[1-2]", "wc", "-l"])
        .stdin(std::fs::File::open(&file).unwrap()));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    per_host(&r, "2");
    let r = run(lab.rexec().args(["-w", "lab[1-2]", "head", "-n", "1", &f]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    per_host(&r, "first");
    let r = run(lab
        .rexec()
        .args(["-w", "lab[1-2]", "grep", "-n", "second", &f]));
    per_host(&r, "2:second");
    let r = run(lab
        .rexec()
        .args(["-w", "lab[1-2]", "grep", "-i", "-l", "FIRST", &f]));
    per_host(&r, &f);
}

/// Runs `cmd` with its stdout read up to the first newline and then closed
/// (as `| head -1`): its exit code and its stderr.
fn head_1(cmd: &mut std::process::Command) -> (Option<i32>, String) {
    use std::io::{BufRead, Read};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("a line");
    assert!(!line.is_empty(), "no output");
    drop(out);
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    (child.wait().expect("wait").code(), err)
}

/// `rexec ... yes | head -1` ends as ssh's does: exit 141 (a writer whose
/// reader went away), quietly, the remote commands stopped. It exited 143
/// with "0 ok, 4 failed (lab[1-4]: 143)".
#[test]
fn a_reader_that_goes_away_ends_rexec_quietly_with_141() {
    let lab = Lab::new();
    let (code, err) = head_1(lab.rexec().args(["-w", "lab[1-2]", "yes"]));
    assert_eq!((code, err.as_str()), (Some(141), ""));
    let (code, err) = head_1(lab.rexec().args(["-w", "lab[1-2]", "-b", "seq 200000"]));
    assert_eq!((code, err.as_str()), (Some(141), ""));
    let (code, err) = head_1(lab.rexec().args(["lab1", "yes"]));
    assert_eq!((code, err.as_str()), (Some(141), ""));
    // A second host's JSON line (1.3 MB each) meets a closed pipe.
    let (code, err) = head_1(lab.rexec().args(["--json", "-w", "lab[1-2]", "seq 200000"]));
    assert_eq!((code, err.as_str()), (Some(141), ""));
    // The man page is small enough to be written whole before a reader
    // could go away: its stdout is a pipe nobody reads from the start.
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = lab
        .rexec()
        .arg("man")
        .stdout(writer)
        .output()
        .expect("rexec man");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!((out.status.code(), err.as_ref()), (Some(141), ""));
}
