//! Faults (issue 30): a hung or vanished peer never hangs the other side.
//! A server stopped with SIGSTOP stands for a hung machine; the loopback
//! proxy's stall stands for a network that went away (a partition), its
//! socket buffers small enough that a stream backs up at once.

use std::io::Write;
use std::net::TcpStream;
use std::process::Stdio;

use rexec_proto::{ClientMsg, ErrorKind, ServerMsg};
use rexec_tests::proxy::{Mode, Proxy};
use rexec_tests::wire::{frame, hello, read_to_close, send};
use rexec_tests::*;

const SIGSTOP: i32 = 19;
const SIGCONT: i32 = 18;

/// Stops the server while `what` runs on it, and lets it go on when dropped
/// (so that the daemon handle can stop it).
struct Stopped<'a>(&'a Daemon);

impl<'a> Stopped<'a> {
    fn when_running(d: &'a Daemon, what: &str) -> Stopped<'a> {
        assert!(
            wait_until(PATIENCE, || runs_below(d.pid(), what)),
            "{what} never ran"
        );
        d.signal(SIGSTOP);
        Stopped(d)
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.0.signal(SIGCONT);
    }
}

#[test]
fn a_hung_server_is_given_up_after_three_keepalive_periods() {
    let d = Daemon::start(&[]);
    let host = d.host();
    let client = std::thread::spawn(move || {
        run(rexec()
            .args(["--keepalive", "1"])
            .arg(&host)
            .arg("sleep 41; echo done"))
    });
    let _stopped = Stopped::when_running(&d, "sleep 41");
    let r = client.join().unwrap();
    assert_eq!(r.code, Some(255), "{}", r.stderr);
    assert!(
        r.stderr.contains("no answer for 3 s (keepalive)"),
        "{}",
        r.stderr
    );
    assert_eq!(r.out(), "", "no output was invented");
}

/// A client whose network vanishes: its command is stopped as on a
/// disconnect, whether it is quiet or streaming.
fn cut_off_while_running(command: &str, program: &str) {
    let d = Daemon::start(&["--keepalive", "1"]);
    let proxy = Proxy::start(d.addr, Mode::Pass);
    // The client does not probe: only the server's keepalive is tested.
    let mut client = rexec()
        .args(["--keepalive", "0"])
        .arg(proxy.host())
        .arg(command)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rexec");
    assert!(
        wait_until(PATIENCE, || runs_below(d.pid(), program)),
        "{program} never ran"
    );
    proxy.set(Mode::Stall);
    let stopped = wait_until(PATIENCE, || !runs_below(d.pid(), program));
    let _ = client.kill();
    let _ = client.wait();
    assert!(stopped, "{program} still runs for a client that is gone");
    assert!(
        d.wait_log("(keepalive): treating the client as gone", PATIENCE),
        "{}",
        d.log()
    );
}

#[test]
fn a_client_cut_off_during_a_quiet_command_has_it_stopped() {
    cut_off_while_running("sleep 42", "sleep 42");
}

#[test]
fn a_client_cut_off_during_a_stream_has_it_stopped() {
    cut_off_while_running("yes rexec-fault-stream", "yes rexec-fault-stream");
}

#[test]
fn a_quiet_command_outlives_many_keepalive_periods() {
    // Probes both ways keep a live but quiet session going: 3 s of silence
    // from the command is three periods, and nobody gives up.
    let d = Daemon::start(&["--keepalive", "1"]);
    let r = run(rexec()
        .args(["--keepalive", "1", "--trace"])
        .arg(d.host())
        .arg("sleep 4; echo done"));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.out(), "done\n");
    assert!(
        r.stderr.contains("send") && r.stderr.contains("Ping seq=1"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("Pong"), "{}", r.stderr);
}

#[test]
fn probes_keep_a_connection_alive_but_not_busy() {
    // --idle-timeout still closes a connection that only answers probes.
    let d = Daemon::start(&["--idle-timeout", "2", "--keepalive", "1"]);
    let mut sock = TcpStream::connect(d.addr).unwrap();
    send(&mut sock, &hello());
    let mut pinger = sock.try_clone().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let t = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seq = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst)
                && pinger.write_all(&frame(&ClientMsg::Ping { seq })).is_ok()
            {
                seq += 1;
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
        })
    };
    let msgs = read_to_close(&mut sock, PATIENCE);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    t.join().unwrap();
    assert!(
        msgs.iter().any(|m| matches!(m, ServerMsg::Pong { .. })),
        "probes were answered: {msgs:?}"
    );
    assert!(
        matches!(msgs.last(), Some(ServerMsg::Error(e)) if e.kind == ErrorKind::Idle),
        "{msgs:?}"
    );
}

#[test]
fn a_stalled_host_among_three_is_reported_and_the_others_finish() {
    let daemons: Vec<Daemon> = (0..3).map(|_| Daemon::start(&[])).collect();
    let dir = TempDir::new("faults-fanout");
    let mut text = String::new();
    for (i, d) in daemons.iter().enumerate() {
        text.push_str(&format!(
            "[hosts.lab{}]\naddress = \"{}\"\n",
            i + 1,
            d.host()
        ));
    }
    std::fs::write(dir.path("config.toml"), text).unwrap();
    let config = dir.path("config.toml");
    let client = std::thread::spawn(move || {
        run(rexec()
            .env("REXEC_CONFIG", config)
            .args(["--keepalive", "1", "-w", "lab[1-3]"])
            .arg("sleep 2; echo fine"))
    });
    let _stopped = Stopped::when_running(&daemons[2], "sleep 2");
    let r = client.join().unwrap();
    assert_eq!(r.code, Some(255), "{}", r.stderr);
    assert_eq!(r.out().matches("fine").count(), 2, "{}", r.out());
    assert!(
        r.stderr.contains("2 ok, 1 no answer (keepalive) (lab3)"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_reset_mid_frame_is_a_lost_connection_never_success() {
    let d = Daemon::start(&[]);
    let proxy = Proxy::start(d.addr, Mode::Trickle { bytes: 256 });
    let mut client = rexec()
        .arg(proxy.host())
        .arg("head -c 3000000 /dev/zero | tr '\\0' x")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rexec");
    let mut out = client.stdout.take().unwrap();
    let mut err = client.stderr.take().unwrap();
    let got = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reader = {
        let got = got.clone();
        std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut out, &mut buf) {
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&buf[..n]);
                got.store(all.len(), std::sync::atomic::Ordering::SeqCst);
            }
            all
        })
    };
    // Some output has arrived, a frame is on its way (trickling): cut.
    assert!(wait_until(PATIENCE, || got
        .load(std::sync::atomic::Ordering::SeqCst)
        > 10_000));
    proxy.set(Mode::Reset);
    let status = client.wait().expect("wait");
    let stdout = reader.join().unwrap();
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
    assert_eq!(status.code(), Some(255), "{stderr}");
    assert!(stderr.contains("connection lost"), "{stderr}");
    assert!(
        stdout.len() < 3_000_000,
        "all output arrived before the cut"
    );
    assert!(
        stdout.iter().all(|&b| b == b'x'),
        "only the command's own bytes reach stdout, never a frame's"
    );
}

#[test]
fn a_slow_link_delivers_everything_with_keepalive_on_both_sides() {
    // A link slow enough that the server hears nothing but probes from the
    // client for many periods: nobody gives up, nothing is lost.
    let d = Daemon::start(&["--keepalive", "1"]);
    let proxy = Proxy::start(d.addr, Mode::Trickle { bytes: 64 });
    let r = run(rexec()
        .args(["--keepalive", "1"])
        .arg(proxy.host())
        .arg("sleep 2; head -c 200000 /dev/zero | tr '\\0' y"));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stdout.len(), 200_000);
    assert!(r.stdout.iter().all(|&b| b == b'y'));
    assert!(!d.log().contains("keepalive"), "{}", d.log());
}

#[test]
fn a_command_that_does_not_read_its_stdin_for_a_while_is_not_given_up() {
    // Its stdin queue fills and rexecd stops reading the socket (TCP pushes
    // back on the client): the client's silence is then rexecd's own doing,
    // not a sign that it is gone.
    let d = Daemon::start(&["--keepalive", "1"]);
    let dir = TempDir::new("faults-stdin");
    std::fs::write(dir.path("in"), vec![b'z'; 8 << 20]).unwrap();
    let r = run(rexec()
        .args(["--keepalive", "1"])
        .arg(d.host())
        .arg("sleep 4; wc -c")
        .stdin(std::fs::File::open(dir.path("in")).unwrap()));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.out().trim(), (8 << 20).to_string());
    assert!(!d.log().contains("keepalive"), "{}", d.log());
}
