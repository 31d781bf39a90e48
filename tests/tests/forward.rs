//! Port forwarding and jump hosts (issue 43): `rexec -L`, `-R`, `-N` and
//! `-J` against real rexecds on loopback, with targets played by this
//! test: echo servers, a server that answers after the end of what it is
//! sent (half-close), one that floods a reader that never reads, a port
//! where nothing listens, and the policy that refuses.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use rexec_tests::*;

/// A `rexec` running in the background (-N), killed when dropped; its
/// stderr is collected line by line.
struct Tunnel {
    child: Child,
    stderr: Arc<std::sync::Mutex<String>>,
}

impl Tunnel {
    fn start(mut cmd: std::process::Command) -> Tunnel {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rexec");
        let stderr = Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Tunnel { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for `needle` on stderr.
    fn says(&self, needle: &str) -> bool {
        wait_until(PATIENCE, || self.stderr().contains(needle))
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on now (the kernel's pick, let go).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Connects to `port` once something listens there.
fn connect_when_up(port: u16) -> TcpStream {
    let mut sock = None;
    assert!(
        wait_until(PATIENCE, || {
            sock = TcpStream::connect(("127.0.0.1", port)).ok();
            sock.is_some()
        }),
        "nothing listens on {port}"
    );
    sock.unwrap()
}

/// A target that echoes every connection back, until its end.
fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            std::thread::spawn(move || {
                let mut r = c.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut c);
                let _ = c.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// Data of `n` bytes that differs with `seed` (a mix-up shows).
fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect()
}

/// Sends `data` through `sock` (then its end) while reading back what
/// comes, to the end; returns what came.
fn round_trip(sock: TcpStream, data: Vec<u8>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut w = sock.try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            w.write_all(&data).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = Vec::new();
        let mut r = sock;
        r.read_to_end(&mut got).unwrap();
        sender.join().unwrap();
        got
    })
}

const FOUR_MIB: usize = 4 << 20;

/// Gives a running `read line; echo got $line` its line: what it printed,
/// and how it exited.
fn answer(child: &mut Child, line: &str) -> (String, Option<i32>) {
    let mut stdin = child.stdin.take().expect("stdin piped");
    stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
    drop(stdin);
    let mut out = String::new();
    let mut stdout = child.stdout.take().expect("stdout piped");
    stdout.read_to_string(&mut out).unwrap();
    (out, child.wait().unwrap().code())
}

#[test]
fn dash_l_carries_eight_connections_of_four_mib_byte_exact() {
    let d = Daemon::start(&[]);
    let target = echo_server();
    let port = free_port();
    let mut cmd = rexec();
    cmd.args(["-N", "-L", &format!("{port}:{target}"), &d.host()]);
    let _t = Tunnel::start(cmd);
    let first = connect_when_up(port);
    let mut runs = vec![round_trip(first, pattern(FOUR_MIB, 0))];
    for seed in 1..8u8 {
        let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
        runs.push(round_trip(sock, pattern(FOUR_MIB, seed)));
    }
    for (seed, run) in runs.into_iter().enumerate() {
        let got = run.join().unwrap();
        assert!(
            got == pattern(FOUR_MIB, seed as u8),
            "connection {seed}: {} bytes came back, not the {FOUR_MIB} sent",
            got.len()
        );
    }
    assert!(
        d.wait_log(&format!("channel 8 to {target}"), PATIENCE),
        "each channel has its audit line:\n{}",
        d.log()
    );
}

#[test]
fn dash_r_carries_eight_connections_back_to_the_client() {
    let d = Daemon::start(&[]);
    let target = echo_server();
    let mut cmd = rexec();
    cmd.args(["-N", "-R", &format!("0:{target}"), &d.host()]);
    let t = Tunnel::start(cmd);
    assert!(t.says("listens on port "), "{}", t.stderr());
    let line = t.stderr();
    let port: u16 = line
        .split("listens on port ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    let runs: Vec<_> = (0..8u8)
        .map(|seed| {
            let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
            round_trip(sock, pattern(FOUR_MIB, seed))
        })
        .collect();
    for (seed, run) in runs.into_iter().enumerate() {
        let got = run.join().unwrap();
        assert!(
            got == pattern(FOUR_MIB, seed as u8),
            "connection {seed}: {} bytes came back",
            got.len()
        );
    }
    assert!(d.log().contains("listening on 127.0.0.1:"), "{}", d.log());
}

#[test]
fn half_close_gets_the_answer_after_the_end() {
    // The target answers only once it has read everything: the client
    // shuts its sending side and must still get the answer.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            let mut all = Vec::new();
            c.read_to_end(&mut all).unwrap();
            let _ = c.write_all(format!("got {} bytes", all.len()).as_bytes());
        }
    });
    let d = Daemon::start(&[]);
    let port = free_port();
    let mut cmd = rexec();
    cmd.args(["-N", "-L", &format!("{port}:{target}"), &d.host()]);
    let _t = Tunnel::start(cmd);
    let mut sock = connect_when_up(port);
    sock.write_all(&[7u8; 300_000]).unwrap();
    sock.shutdown(Shutdown::Write).unwrap();
    let mut answer = String::new();
    sock.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "got 300000 bytes");
}

#[test]
fn a_stalled_channel_slows_neither_another_channel_nor_the_command() {
    // Target one floods whoever connects; its reader never reads.
    let flood = TcpListener::bind("127.0.0.1:0").unwrap();
    let flood_addr = flood.local_addr().unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let blocked = Arc::new(AtomicBool::new(false));
    let (w, b) = (written.clone(), blocked.clone());
    std::thread::spawn(move || {
        let (mut c, _) = flood.accept().unwrap();
        c.set_nonblocking(true).unwrap();
        let chunk = vec![1u8; 64 * 1024];
        loop {
            match c.write(&chunk) {
                Ok(n) => {
                    w.fetch_add(n, Ordering::SeqCst);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    b.store(true, Ordering::SeqCst);
                    std::thread::yield_now();
                }
                Err(_) => return,
            }
        }
    });
    let echo = echo_server();
    let d = Daemon::start(&[]);
    let (p1, p2) = (free_port(), free_port());
    let mut cmd = rexec();
    cmd.args([
        "-L",
        &format!("{p1}:{flood_addr}"),
        "-L",
        &format!("{p2}:{echo}"),
        &d.host(),
        "read line; echo got $line",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped());
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let stalled = connect_when_up(p1);
    // The whole way from the flood to the stalled reader fills up: the
    // flood's socket, rexecd's window, ours, the local socket.
    assert!(
        wait_until(PATIENCE, || blocked.load(Ordering::SeqCst)),
        "the flood never stalled ({} bytes written)",
        written.load(Ordering::SeqCst)
    );
    let before = written.load(Ordering::SeqCst);
    // Another channel carries 4 MiB both ways meanwhile...
    let other = TcpStream::connect(("127.0.0.1", p2)).unwrap();
    let got = round_trip(other, pattern(FOUR_MIB, 9)).join().unwrap();
    assert!(got == pattern(FOUR_MIB, 9), "{} bytes came back", got.len());
    // ...and the command on the same connection still hears us.
    assert_eq!(answer(&mut child, "hello"), ("got hello\n".into(), Some(0)));
    // The stalled channel held at most its buffers: nothing was read
    // from the flood beyond what they hold (two windows, a few sockets).
    assert!(
        written.load(Ordering::SeqCst) - before < 64 << 20,
        "the flood went on: {} bytes",
        written.load(Ordering::SeqCst)
    );
    drop(stalled);
}

#[test]
fn a_target_that_refuses_is_reported_once_and_the_connection_closed() {
    let d = Daemon::start(&[]);
    let nobody = free_port();
    let port = free_port();
    let mut cmd = rexec();
    cmd.args(["-N", "-L", &format!("{port}:127.0.0.1:{nobody}"), &d.host()]);
    let t = Tunnel::start(cmd);
    let mut sock = connect_when_up(port);
    let mut rest = Vec::new();
    // Closed, not left hanging: the end of the stream (or a reset).
    let _ = sock.read_to_end(&mut rest);
    assert!(rest.is_empty());
    assert!(t.says("refused"), "{}", t.stderr());
    let said = t.stderr();
    assert_eq!(said.matches("refused").count(), 1, "once: {said}");
    assert!(said.contains(&format!("127.0.0.1:{nobody}")), "{said}");
}

#[test]
fn forwarding_off_refuses_both_ways_naming_forwarding() {
    let d = Daemon::start(&["--forwarding", "no"]);
    let echo = echo_server();
    let port = free_port();
    let mut cmd = rexec();
    cmd.args([
        "-N",
        "-L",
        &format!("{port}:{echo}"),
        "-R",
        &format!("0:{echo}"),
        &d.host(),
    ]);
    let t = Tunnel::start(cmd);
    assert!(
        t.says("remote port forwarding (-R) is off"),
        "{}",
        t.stderr()
    );
    let mut sock = connect_when_up(port);
    let _ = sock.write_all(b"x");
    let mut rest = Vec::new();
    let _ = sock.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing comes through");
    assert!(
        t.says("forwarding to a target (-L) is off"),
        "{}",
        t.stderr()
    );
    assert!(t.stderr().contains("--forwarding"));
}

/// A key file (ed25519, no passphrase) and an authorized_keys file with
/// `options` before it, in `dir`.
fn key_with_options(dir: &TempDir, options: &str) -> (String, String) {
    use ssh_key::rand_core::OsRng;
    let key = ssh_key::PrivateKey::random(&mut OsRng, ssh_key::Algorithm::Ed25519).unwrap();
    let path = dir.path("id_ed25519");
    key.write_openssh_file(&path, ssh_key::LineEnding::LF)
        .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let auth = dir.path("authorized_keys");
    let line = format!("{options} {}\n", key.public_key().to_openssh().unwrap());
    std::fs::write(&auth, line).unwrap();
    std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o600)).unwrap();
    (path.display().to_string(), auth.display().to_string())
}

#[test]
fn restrict_and_permitopen_refuse_what_they_should() {
    let echo = echo_server();
    // restrict: no forwarding at all (and commands still run).
    let dir = TempDir::new("fwd-restrict");
    let (key, auth) = key_with_options(&dir, "restrict");
    let d = Daemon::start(&["--authorized-keys", &auth]);
    let port = free_port();
    let mut cmd = rexec();
    cmd.args(["-i", &key, "-N", "-L", &format!("{port}:{echo}"), &d.host()]);
    let t = Tunnel::start(cmd);
    let mut sock = connect_when_up(port);
    let _ = sock.read_to_end(&mut Vec::new());
    assert!(
        t.says("port forwarding is off for this key"),
        "{}",
        t.stderr()
    );
    drop(t);

    // permitopen: that target only.
    let dir = TempDir::new("fwd-permitopen");
    let allowed = format!("permitopen=\"{echo}\"");
    let (key, auth) = key_with_options(&dir, &allowed);
    let d = Daemon::start(&["--authorized-keys", &auth]);
    let (ok_port, no_port) = (free_port(), free_port());
    let other = format!("127.0.0.1:{}", free_port());
    let mut cmd = rexec();
    cmd.args([
        "-i",
        &key,
        "-N",
        "-L",
        &format!("{ok_port}:{echo}"),
        "-L",
        &format!("{no_port}:{other}"),
        &d.host(),
    ]);
    let t = Tunnel::start(cmd);
    let sock = connect_when_up(ok_port);
    let got = round_trip(sock, pattern(100_000, 3)).join().unwrap();
    assert!(got == pattern(100_000, 3), "the permitted target works");
    let mut sock = connect_when_up(no_port);
    let _ = sock.read_to_end(&mut Vec::new());
    assert!(t.says("is not in this key's permitopen"), "{}", t.stderr());
}

#[test]
fn dash_j_runs_a_command_on_a_target_through_a_gateway() {
    let gateway = Daemon::start(&[]);
    let target = Daemon::start(&[]);
    let ran = run(rexec().args([
        "-J",
        &gateway.host(),
        &target.host(),
        "echo through; echo err >&2",
    ]));
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(ran.out(), "through\n");
    assert!(ran.stderr.contains("err"), "{}", ran.stderr);
    assert!(
        gateway.wait_log(&format!("to {}", target.host()), PATIENCE),
        "the gateway carried it:\n{}",
        gateway.log()
    );
    // The target ran it, for a client that came from the gateway.
    assert!(
        target.wait_log("ran \"echo through", PATIENCE),
        "{}",
        target.log()
    );
}

#[test]
fn dash_j_logs_in_to_the_target_end_to_end() {
    // The target asks for a token the gateway never sees in the clear
    // form it could replay: the login names the target's address.
    let dir = TempDir::new("fwd-jump-token");
    let token = dir.path("token");
    std::fs::write(&token, "a-token-for-the-target-only\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let token = token.display().to_string();
    let gateway = Daemon::start(&[]);
    let target = Daemon::start(&["--token-file", &token]);
    let ran = run(rexec().args([
        "--token-file",
        &token,
        "-J",
        &gateway.host(),
        &target.host(),
        "echo in",
    ]));
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(ran.out(), "in\n");
    // A target nobody listens at: said plainly, exit 255.
    let nobody = format!("127.0.0.1:{}", free_port());
    let ran = run(rexec().args(["-J", &gateway.host(), &nobody, "true"]));
    assert_eq!(ran.code, Some(255));
    assert!(ran.stderr.contains("refused"), "{}", ran.stderr);
    assert!(ran.stderr.contains(&nobody), "{}", ran.stderr);
}

#[test]
fn an_older_server_is_told_plainly_it_does_not_forward() {
    // A server that speaks protocol 7: its hello says so, and rexec
    // stops before sending a message it could not decode.
    use rexec_proto::*;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut buf = [0u8; 256];
        let _ = c.read(&mut buf);
        let mut out = Vec::new();
        encode_frame(
            &ServerMsg::Hello(ServerHello {
                protocol: 7,
                software: "0.old".into(),
                challenge: None,
            }),
            &mut out,
        );
        c.write_all(&out).unwrap();
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
    });
    let ran = run(rexec().args([
        "-N",
        "-L",
        &format!("{}:127.0.0.1:1", free_port()),
        &addr.to_string(),
    ]));
    assert_eq!(ran.code, Some(255));
    assert!(
        ran.stderr.contains("does not forward ports"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("protocol 7"), "{}", ran.stderr);
}

/// The uid that owns the loopback socket whose local port is `local` and
/// remote port `remote`, from /proc/net/tcp.
fn socket_owner(local: u16, remote: u16) -> Option<u32> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let port = |a: &str| u16::from_str_radix(a.rsplit(':').next()?, 16).ok();
        (port(f.get(1)?)? == local && port(f.get(2)?)? == remote)
            .then(|| f.get(7)?.parse().ok())
            .flatten()
    })
}

#[test]
fn under_login_the_sockets_are_the_accounts_and_low_ports_are_refused() {
    needs_root!();
    use rexec_tests::account::{Account, ed25519_key};
    let dir = TempDir::new("fwd-login");
    let (key, public) = ed25519_key(&dir, "k");
    let alice = Account::new("/bin/sh");
    alice.authorize(&public);
    let d = Daemon::start(&["--login"]);
    let at = format!("{}@{}", alice.name, d.host());
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let tport = target.local_addr().unwrap().port();
    let port = free_port();
    let mut cmd = rexec();
    cmd.env_remove("SSH_AUTH_SOCK").arg("-i").arg(&key);
    cmd.args([
        "-N",
        "-L",
        &format!("{port}:127.0.0.1:{tport}"),
        "-R",
        "80:127.0.0.1:1",
        &at,
    ]);
    let t = Tunnel::start(cmd);
    let _local = connect_when_up(port);
    let (_far, from) = target.accept().unwrap();
    // The connection rexecd made for alice is alice's socket.
    assert_eq!(socket_owner(from.port(), tport), Some(alice.uid));
    // And alice may not listen below 1024, though rexecd runs as root.
    assert!(t.says("port 80 is privileged"), "{}", t.stderr());
    assert!(t.stderr().contains(&alice.name), "{}", t.stderr());
}

#[test]
fn cp_goes_through_a_gateway_too() {
    let gateway = Daemon::start(&[]);
    let target = Daemon::start(&[]);
    let dir = TempDir::new("fwd-cp-jump");
    let src = dir.path("data.bin");
    std::fs::write(&src, pattern(3 << 20, 5)).unwrap();
    let dest = dir.path("copied.bin");
    let ran = run(rexec()
        .args(["cp", "-J", &gateway.host()])
        .arg(&src)
        .arg(format!("{}:{}", target.host(), dest.display())));
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(std::fs::read(&dest).unwrap() == pattern(3 << 20, 5));
    assert!(
        gateway.wait_log(&format!("to {}", target.host()), PATIENCE),
        "{}",
        gateway.log()
    );
}

#[test]
fn a_hosts_jump_and_forwards_come_from_the_config_file() {
    let gateway = Daemon::start(&[]);
    let target = Daemon::start(&[]);
    let echo = echo_server();
    let port = free_port();
    let dir = TempDir::new("fwd-config");
    let config = dir.path("config.toml");
    std::fs::write(
        &config,
        format!(
            // Names under .invalid, mapped here: never a name to look up.
            "[hosts.\"gw.invalid\"]\naddress = \"{}\"\n\n[hosts.\"lab.invalid\"]\naddress = \"{}\"\n\
             jump = \"gw.invalid\"\nforward = [\"L {port}:{echo}\"]\n",
            gateway.host(),
            target.host()
        ),
    )
    .unwrap();
    let mut child = rexec()
        .env("REXEC_CONFIG", &config)
        .args(["lab.invalid", "read line; echo got $line"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The forward works while the command runs...
    let sock = connect_when_up(port);
    let got = round_trip(sock, pattern(1 << 20, 7)).join().unwrap();
    assert!(got == pattern(1 << 20, 7), "{} bytes came back", got.len());
    // ...and the command went through the gateway.
    assert_eq!(answer(&mut child, "x"), ("got x\n".into(), Some(0)));
    assert!(
        gateway.wait_log(&format!("to {}", target.host()), PATIENCE),
        "{}",
        gateway.log()
    );
}

#[test]
fn forwarding_with_many_hosts_or_nothing_to_forward_is_refused_plainly() {
    let ran = run(rexec().args(["-w", "127.0.0.1,127.0.0.2", "-L", "1:127.0.0.1:1", "true"]));
    assert_eq!(ran.code, Some(2));
    assert!(ran.stderr.contains("not with -w"), "{}", ran.stderr);
    let ran = run(rexec().args(["-N", "127.0.0.1:1"]));
    assert_eq!(ran.code, Some(2));
    assert!(ran.stderr.contains("give -L or -R"), "{}", ran.stderr);
    let ran = run(rexec().args(["-N", "-L", "1:127.0.0.1:1", "127.0.0.1:1", "ls"]));
    assert_eq!(ran.code, Some(2));
    assert!(ran.stderr.contains("-N runs no command"), "{}", ran.stderr);
    let ran = run(rexec().args(["-N", "-L", "8888:localhost", "127.0.0.1:1"]));
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr.contains("[BIND:]PORT:HOST:HOSTPORT"),
        "{}",
        ran.stderr
    );
}

#[test]
fn dash_w_goes_through_one_gateway() {
    let gateway = Daemon::start(&[]);
    let (a, b) = (Daemon::start(&[]), Daemon::start(&[]));
    // A host list has no ports: the hosts are named in a config file of
    // the test's own, under .invalid (never a name to look up).
    let dir = TempDir::new("fwd-w-jump");
    let config = dir.path("config.toml");
    std::fs::write(
        &config,
        format!(
            "[hosts.\"gw.invalid\"]\naddress = \"{}\"\n[hosts.\"a.invalid\"]\naddress = \"{}\"\n\
             [hosts.\"b.invalid\"]\naddress = \"{}\"\n",
            gateway.host(),
            a.host(),
            b.host()
        ),
    )
    .unwrap();
    let ran = run(rexec().env("REXEC_CONFIG", &config).args([
        "-J",
        "gw.invalid",
        "-w",
        "a.invalid,b.invalid",
        "echo hi",
    ]));
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(ran.out().matches("hi").count(), 2, "{}", ran.out());
    for d in [&a, &b] {
        assert!(
            gateway.wait_log(&format!("to {}", d.host()), PATIENCE),
            "{}",
            gateway.log()
        );
    }
}

#[test]
fn dash_l_over_tls_and_with_trace_copies_byte_exact() {
    // Over TLS (and with --trace) a channel's bytes are copied, not
    // spliced: the other way through the same code.
    let dir = TempDir::new("fwd-tls");
    let state = dir.path("state").display().to_string();
    let d = Daemon::start(&["--tls", "--state-dir", &state]);
    let fp = d.fingerprint.clone().unwrap();
    let target = echo_server();
    for trace in [false, true] {
        let port = free_port();
        let mut cmd = rexec();
        cmd.args([
            "--fingerprint",
            &fp,
            "-N",
            "-L",
            &format!("{port}:{target}"),
            &d.host(),
        ]);
        if trace {
            cmd.arg("--trace");
        }
        let _t = Tunnel::start(cmd);
        let runs: Vec<_> = (0..3u8)
            .map(|seed| {
                let sock = if seed == 0 {
                    connect_when_up(port)
                } else {
                    TcpStream::connect(("127.0.0.1", port)).unwrap()
                };
                round_trip(sock, pattern(FOUR_MIB, seed + 20))
            })
            .collect();
        for (seed, run) in runs.into_iter().enumerate() {
            let got = run.join().unwrap();
            assert!(
                got == pattern(FOUR_MIB, seed as u8 + 20),
                "trace {trace}: {} bytes",
                got.len()
            );
        }
    }
}
