//! A slow reader loses nothing (issue 29).
//!
//! A command that exits while the last of its output still waits in its
//! pipe (held back because the client reads slowly) must have all of it
//! delivered. rexecd waits half a second for the pipes of an exited command
//! (a background grandchild may hold them open forever; server.rs tests
//! that such a command is still reported); that wait once ran while the
//! command's own bytes sat in the pipe, and cut up to a full pipe of them,
//! with exit 0.
//!
//! Each test puts a proxy (rexec_tests::proxy) between rexec and rexecd
//! that trickles the output, so that rexecd's writes back up into the
//! command's pipe, and stalls it entirely before the command's last writes
//! and until well past the grace period after it exited; then it lets
//! everything through. Every byte must arrive, and the exit status be 0.

use std::time::Duration;

use rexec_tests::proxy::{Mode, Proxy};
use rexec_tests::*;

/// Far more than the pipe and the proxy's buffers hold.
const SIZE: usize = 8 << 20;
/// Three times rexecd's pipe grace period (0.5 s).
const PAST_GRACE: Duration = Duration::from_millis(1500);
/// What the proxy forwards per millisecond while the command runs.
const TRICKLE: Mode = Mode::Trickle { bytes: 8 << 10 };

/// The command: writes `size` zero bytes, touches `ready`, waits for `go`
/// to exist, then writes more zero bytes without blocking until its pipe
/// (or terminal) stays full, so that it exits with its pipe full whatever
/// the timing; the total goes to `count` just before it exits.
const WRITER: &str = r#"
import os, sys, time, fcntl
size, ready, go, count = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
block = bytes(65536)
left = size
while left:
    left -= os.write(1, block[:min(left, len(block))])
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.005)
fcntl.fcntl(1, fcntl.F_SETFL, fcntl.fcntl(1, fcntl.F_GETFL) | os.O_NONBLOCK)
total, full_since = size, None
while True:
    try:
        total += os.write(1, block[:4096])
        full_since = None
    except BlockingIOError:
        now = time.monotonic()
        full_since = full_since or now
        if now - full_since > 0.1:
            break
        time.sleep(0.01)
with open(count + ".tmp", "w") as f:
    f.write(str(total))
os.rename(count + ".tmp", count)
"#;

/// Runs `rexec` in the background while `between` plays the network; then
/// lets traffic pass and returns what rexec did.
fn with_rexec(proxy: &Proxy, args: &[String], between: impl FnOnce()) -> Ran {
    let mut cmd = rexec();
    cmd.args(args);
    let ran = std::thread::scope(|s| {
        let ran = s.spawn(move || run_for(&mut cmd, Duration::from_secs(120)));
        between();
        proxy.set(Mode::Pass);
        ran.join()
    });
    ran.expect("rexec ran")
}

fn wait_for(what: &str, f: impl FnMut() -> bool) {
    assert!(
        wait_until(Duration::from_secs(60), f),
        "{what} did not happen"
    );
}

/// `rexec ARGS HOST WRITER` through a trickling proxy, stalled before the
/// writer's last bytes and until past the grace period: the whole output,
/// exit 0.
fn assert_whole_output(what: &str, daemon: &Daemon, args: &[&str]) {
    assert!(
        std::process::Command::new("python3")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success()),
        "these tests need python3 (for the command that fills its pipe)"
    );
    let dir = TempDir::new("slow-reader");
    let script = dir.path("writer.py");
    std::fs::write(&script, WRITER).expect("write the writer");
    let [ready, go, count] = ["ready", "go", "count"].map(|n| dir.path(n));
    let proxy = Proxy::start(daemon.addr, TRICKLE);
    let mut argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    argv.push(proxy.host());
    argv.push(format!(
        "python3 {} {SIZE} {} {} {}",
        script.display(),
        ready.display(),
        go.display(),
        count.display()
    ));
    let r = with_rexec(&proxy, &argv, || {
        wait_for("the first writes", || ready.exists());
        proxy.set(Mode::Stall);
        std::fs::write(&go, "").expect("touch go");
        wait_for("the writer's end", || count.exists());
        std::thread::sleep(PAST_GRACE);
    });
    let want: usize = std::fs::read_to_string(&count)
        .expect("the count")
        .parse()
        .expect("a number");
    assert_eq!(
        r.stdout.len(),
        want,
        "{what}: {} of {want} bytes arrived (exit {:?}); stderr: {}",
        r.stdout.len(),
        r.code,
        r.stderr
    );
    assert!(r.stdout.iter().all(|&b| b == 0), "{what}: wrong bytes");
    assert_eq!(r.code, Some(0), "{what}: {}", r.stderr);
}

#[test]
fn spliced_output_reaches_a_slow_reader_whole() {
    let d = Daemon::start(&[]);
    assert_whole_output("spliced", &d, &[]);
}

#[test]
fn copied_output_reaches_a_slow_reader_whole() {
    let d = Daemon::start(&["--no-splice"]);
    assert_whole_output("copied", &d, &[]);
}

#[test]
fn tls_output_reaches_a_slow_reader_whole() {
    let dir = TempDir::new("slow-tls");
    let state = dir.path("state").display().to_string();
    let d = Daemon::start(&["--tls", "--state-dir", &state]);
    let fp = d.fingerprint.clone().expect("fingerprint");
    assert_whole_output("TLS", &d, &["--fingerprint", &fp]);
}

#[test]
fn pty_output_reaches_a_slow_reader_whole() {
    let d = Daemon::start(&[]);
    // Zero bytes pass a terminal unchanged (only newlines are translated).
    assert_whole_output("pty", &d, &["-tt"]);
}

#[test]
fn a_download_reaches_a_slow_reader_whole() {
    let d = Daemon::start(&[]);
    let dir = TempDir::new("slow-get");
    let src = dir.path("big");
    let data: Vec<u8> = (0..SIZE as u32).map(|i| (i * 7 + i / 4093) as u8).collect();
    std::fs::write(&src, &data).expect("write the file");
    let proxy = Proxy::start(d.addr, TRICKLE);
    let dest = dir.path("copy");
    let args = [
        "cp".to_string(),
        format!("{}:{}", proxy.host(), src.display()),
        dest.display().to_string(),
    ];
    // The transfer is a helper process, rexecd's only child: it has exited
    // once it was seen and is gone.
    let seen = std::cell::Cell::new(false);
    let helper_exited = || {
        let running = !children_of(d.pid()).is_empty();
        seen.set(seen.get() || running);
        seen.get() && !running
    };
    // The helper's last writes wait in its pipe (the proxy trickles); it
    // exits, and the proxy stalls past the grace period.
    let r = with_rexec(&proxy, &args, || {
        wait_for("the transfer's end", helper_exited);
        proxy.set(Mode::Stall);
        std::thread::sleep(PAST_GRACE);
    });
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let got = std::fs::read(&dest).expect("the copy");
    assert_eq!(got.len(), SIZE, "bytes copied");
    assert!(got == data, "the copy differs");
}
