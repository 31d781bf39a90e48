//! The client against a lying server (issue 21): a server may be
//! compromised or buggy, and nothing it sends may make `rexec` write
//! outside what the user asked for, keep unbounded memory, or paint the
//! user's terminal. `rexec_tests::liar` plays the server.

use std::os::unix::fs::PermissionsExt;

use rexec_proto::{ClientMsg, ServerMsg};
use rexec_tests::liar::{Liar, Reply, exited, stdout};
use rexec_tests::*;

/// A Get's whole answer: header (size, mode, mtime), the bytes, and their
/// digest (BLAKE3: the liar speaks this build's protocol).
fn get_reply(id: u32, data: &[u8], mode: u32) -> Vec<Reply> {
    let mut out = Vec::new();
    out.extend_from_slice(&(data.len() as u64).to_be_bytes());
    out.extend_from_slice(&mode.to_be_bytes());
    out.extend_from_slice(&1_000_000_000i64.to_be_bytes());
    out.extend_from_slice(data);
    let mut hash = rexec_proto::Checksum::Blake3.hasher();
    hash.update(data);
    out.extend_from_slice(&hash.finalize());
    vec![
        Reply::Msg(ServerMsg::Started { id, pid: 4242 }),
        stdout(id, &out),
        exited(id, 0),
    ]
}

/// A liar that lists `names` (each a kind byte and a path) for any List
/// and serves "pwned\n" (mode `mode`) for any Get.
fn lying_files(names: &'static [&'static str], mode: u32) -> Liar {
    Liar::start("rexecd 0.1.0", move |msg| match msg {
        ClientMsg::List { id, .. } => {
            let listing: Vec<u8> = names.iter().flat_map(|n| n.bytes().chain([0])).collect();
            vec![
                Reply::Msg(ServerMsg::Started { id: *id, pid: 4242 }),
                stdout(*id, &listing),
                exited(*id, 0),
            ]
        }
        ClientMsg::Get { id, .. } => get_reply(*id, b"pwned\n", mode),
        _ => vec![],
    })
}

#[test]
fn a_listing_that_climbs_out_of_the_target_is_refused() {
    let dir = TempDir::new("liar-climb");
    std::fs::create_dir(dir.path("dest")).unwrap();
    std::fs::create_dir(dir.path("outside")).unwrap();
    // dest/data/../../outside/PWNED is dir/outside/PWNED.
    let liar = lying_files(&["fok.txt", "f../../outside/PWNED"], 0o644);
    let r = run(rexec().args([
        "cp",
        "-r",
        &format!("{}:/srv/data", liar.host()),
        &dir.path("dest").display().to_string(),
    ]));
    assert_ne!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("refused"), "{}", r.stderr);
    assert!(
        !dir.path("outside/PWNED").exists(),
        "written outside the target"
    );
    assert_eq!(
        std::fs::read(dir.path("dest/data/ok.txt")).unwrap(),
        b"pwned\n",
        "the honest entry before it was copied"
    );
}

#[test]
fn a_symlink_in_the_destination_does_not_lead_out() {
    let dir = TempDir::new("liar-link");
    std::fs::create_dir_all(dir.path("dest/data")).unwrap();
    std::fs::create_dir(dir.path("outside")).unwrap();
    std::os::unix::fs::symlink(dir.path("outside"), dir.path("dest/data/sub")).unwrap();
    let liar = lying_files(&["fsub/PWNED"], 0o644);
    let r = run(rexec().args([
        "cp",
        "-r",
        &format!("{}:/srv/data", liar.host()),
        &dir.path("dest").display().to_string(),
    ]));
    assert_ne!(r.code, Some(0), "{}", r.stderr);
    assert!(
        !dir.path("outside/PWNED").exists(),
        "followed a symlink out"
    );
}

#[test]
fn modes_from_the_wire_never_set_special_bits() {
    let dir = TempDir::new("liar-mode");
    let liar = lying_files(&[], 0o4777);
    // rexec inherits this process's umask.
    let umask = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
        .unwrap();
    for (flag, want) in [("-p", 0o777), ("", 0o777 & !umask)] {
        let dest = dir.path(&format!("file{flag}"));
        let mut cmd = rexec();
        cmd.arg("cp");
        if !flag.is_empty() {
            cmd.arg(flag);
        }
        let r = run(cmd.arg(format!("{}:/srv/x", liar.host())).arg(&dest));
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, want, "cp {flag}: mode {mode:o}");
    }
}

/// A liar that answers every command with output that never ends.
fn endless_output() -> Liar {
    Liar::start("rexecd 0.1.0", |msg| match msg {
        ClientMsg::Exec(e) => vec![
            Reply::Msg(ServerMsg::Started {
                id: e.id,
                pid: 4242,
            }),
            Reply::Endless(ServerMsg::Stdout {
                id: e.id,
                data: vec![b'y'; 60_000],
            }),
        ],
        _ => vec![],
    })
}

/// Runs `cmd` to its end; returns its exit code, stdout, stderr and peak
/// resident memory in KiB (wait4's rusage, for this child alone).
// The child is reaped by wait4 itself, which std's wait cannot replace (it
// gives no rusage).
#[allow(clippy::zombie_processes)]
fn run_measured(cmd: &mut std::process::Command) -> (Option<i32>, String, String, i64) {
    use std::io::Read;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    let _ = out.read_to_string(&mut stdout);
    let mut status = 0;
    // SAFETY: rusage is plain integers, for which zero is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 fills the status and the rusage we pass, for our child.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4");
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, stdout, t.join().unwrap(), usage.ru_maxrss)
}

#[test]
fn json_output_is_held_up_to_the_capture_limit_and_cut_there() {
    let liar = endless_output();
    let (code, stdout, stderr, peak_kib) =
        run_measured(rexec().args(["--json", "--capture-limit", "8M", &liar.host(), "true"]));
    assert_eq!(code, Some(141), "{stderr}");
    eprintln!("rexec --json against endless output: peak RSS {peak_kib} KiB");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(v["truncated"], true, "{v}");
    assert_eq!(v["stdout"].as_str().map(str::len), Some(8 << 20));
    // 8 MiB kept, as a Vec and then as JSON text; not the endless rest.
    assert!(peak_kib < 64 * 1024, "rexec peaked at {peak_kib} KiB");
}

#[test]
fn an_endless_host_is_cut_off_and_the_others_are_printed() {
    let good: Vec<Daemon> = (0..2).map(|_| Daemon::start(&[])).collect();
    let evil = endless_output();
    let dir = TempDir::new("liar-fanout");
    let config = dir.path("config.toml");
    std::fs::write(
        &config,
        format!(
            "[hosts.good1]\naddress = \"{}\"\n[hosts.evil]\naddress = \"{}\"\n[hosts.good2]\naddress = \"{}\"\n",
            good[0].host(),
            evil.host(),
            good[1].host()
        ),
    )
    .unwrap();
    let (code, stdout, stderr, peak_kib) =
        run_measured(rexec().env("REXEC_CONFIG", &config).args([
            "-w",
            "good1,evil,good2",
            "-b",
            "--capture-limit",
            "4M",
            "echo fine",
        ]));
    assert_eq!(code, Some(141), "{stderr}");
    eprintln!("rexec -w -b with an endless host: peak RSS {peak_kib} KiB");
    assert!(
        stdout.contains("good[1-2] (2)\n---------------\nfine\n"),
        "{stdout:?}"
    );
    assert!(
        stderr.contains("2 ok") && stderr.contains("1 truncated (evil)"),
        "{stderr}"
    );
    assert!(peak_kib < 64 * 1024, "rexec peaked at {peak_kib} KiB");
}

#[test]
fn nothing_a_server_says_reaches_the_terminal_raw() {
    use rexec_proto::{ErrorKind, ErrorMsg};
    let liar = Liar::start("rexecd\x1b]0;pwned\x07", |msg| match msg {
        ClientMsg::Exec(e) if e.command == "fail" => vec![Reply::Msg(ServerMsg::Error(ErrorMsg {
            id: Some(e.id),
            kind: ErrorKind::Spawn,
            message: "\x1b[2J\x1b[Hall gone".into(),
        }))],
        ClientMsg::Exec(e) => vec![
            Reply::Msg(ServerMsg::Started {
                id: e.id,
                pid: 4242,
            }),
            stdout(e.id, b"x\rgood1: forged\n\x1b[31mred\x1b[0m\n"),
            exited(e.id, 0),
        ],
        _ => vec![],
    });
    // An error message, and the hello's software in --trace.
    let r = run(rexec().args(["--trace", &liar.host(), "fail"]));
    assert_eq!(r.code, Some(127), "{}", r.stderr);
    assert!(r.stderr.contains("all gone"), "{}", r.stderr);
    assert!(r.stderr.contains("software=rexecd"), "{}", r.stderr);
    assert!(
        !r.stderr.contains('\x1b') && !r.stderr.contains('\x07'),
        "{:?}",
        r.stderr
    );
    // Several hosts: no line can pretend to be another host's.
    let good = Daemon::start(&[]);
    let dir = TempDir::new("liar-lines");
    let config = dir.path("config.toml");
    std::fs::write(
        &config,
        format!(
            "[hosts.good1]\naddress = \"{}\"\n[hosts.evil]\naddress = \"{}\"\n",
            good.host(),
            liar.host()
        ),
    )
    .unwrap();
    let r = run(rexec()
        .env("REXEC_CONFIG", &config)
        .args(["-w", "evil,good1", "echo fine"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let out = r.out();
    assert!(out.contains("evil: x\\rgood1: forged\n"), "{out:?}");
    assert!(out.contains("evil: \\x1b[31mred\\x1b[0m\n"), "{out:?}");
    assert!(!out.contains('\r') && !out.contains('\x1b'), "{out:?}");
    assert!(out.contains("good1: fine\n"), "{out:?}");
    // One host alone: its output is the command's, byte for byte (as ssh).
    let r = run(rexec().args([&liar.host(), "echo"]));
    assert_eq!(r.stdout, b"x\rgood1: forged\n\x1b[31mred\x1b[0m\n");
}

/// An exit status no process can have (256 is 0 to exit(2); a signal of
/// -2^31 overflowed 128 + N) makes rexec exit 255 and say so, never 0.
#[test]
fn impossible_exit_statuses_exit_255_never_success() {
    use rexec_proto::{ExitStatus, Exited};
    for status in [
        ExitStatus::Code(256),
        ExitStatus::Code(i32::MIN),
        ExitStatus::Signal(i32::MIN),
        ExitStatus::Signal(128),
    ] {
        let liar = Liar::start("rexecd 0.1.0", move |msg| match msg {
            ClientMsg::Exec(e) => vec![
                Reply::Msg(ServerMsg::Started {
                    id: e.id,
                    pid: 4242,
                }),
                Reply::Msg(ServerMsg::Exited(Exited {
                    id: e.id,
                    status,
                    timed_out: false,
                    truncated: false,
                    duration_ms: 1,
                    bytes_out: 0,
                })),
            ],
            _ => vec![],
        });
        let r = run(rexec().args([&liar.host(), "true"]));
        assert_eq!(r.code, Some(255), "{status:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("which no process can end with"),
            "{status:?}: {}",
            r.stderr
        );
        let r = run(rexec().args(["--json", &liar.host(), "true"]));
        assert_eq!(r.code, Some(255), "{status:?}: {}", r.stderr);
        assert!(r.out().contains("\"exit_code\":255"), "{}", r.out());
    }
}
