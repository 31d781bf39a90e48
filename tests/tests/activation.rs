//! Socket activation (issue 44): rexecd started as systemd starts it from
//! a socket unit, its listening sockets open from descriptor 3 on with
//! `LISTEN_FDS=N` and `LISTEN_PID` its pid, serves on those sockets. In a
//! file of its own: the test makes a descriptor inheritable, which other
//! tests running beside it in the same process would inherit too.

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};

use rexec_tests::*;

/// Kills the child by pid when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts rexecd through `bash`, which moves descriptor `n` to 3 and sets
/// the variables as systemd would (`$$` is rexecd's pid after `exec`).
fn start_activated(n: i32, fds: &str) -> Killed {
    let moved = if n == 3 {
        String::new()
    } else {
        format!("exec 3<&{n} {n}<&-; ")
    };
    // bash: dash takes only one-digit descriptors in a redirection.
    let child = Command::new("bash")
        .arg("-c")
        .arg(format!("{moved}LISTEN_PID=$$ LISTEN_FDS={fds} exec \"$0\""))
        .arg(bin("rexecd"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rexecd through bash");
    Killed(child)
}

#[test]
fn rexecd_serves_on_the_socket_systemd_passes_as_descriptor_3() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Inheritable, as systemd passes it.
    rustix::io::fcntl_setfd(&listener, rustix::io::FdFlags::empty()).unwrap();
    let mut d = start_activated(listener.as_raw_fd(), "1");
    drop(listener); // rexecd has its own
    let mut out = BufReader::new(d.0.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    // The socket it was given, not --listen's default (127.0.0.1:7070).
    assert_eq!(line.trim(), format!("listening on {addr}"));
    let r = run(rexec()
        .arg(addr.to_string())
        .arg("echo hi; echo ${LISTEN_FDS:-none} ${LISTEN_PID:-none}"));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // And the commands it runs do not see the variables.
    assert_eq!(r.out(), "hi\nnone none\n");
}

#[test]
fn rexecd_serves_on_every_socket_passed() {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let addrs = [a.local_addr().unwrap(), b.local_addr().unwrap()];
    for l in [&a, &b] {
        rustix::io::fcntl_setfd(l, rustix::io::FdFlags::empty()).unwrap();
    }
    // As descriptors 3 and 4, in the order of the unit's ListenStream lines.
    let child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "exec 3<&{} 4<&{}; LISTEN_PID=$$ LISTEN_FDS=2 exec \"$0\"",
            a.as_raw_fd(),
            b.as_raw_fd()
        ))
        .arg(bin("rexecd"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rexecd through bash");
    let mut d = Killed(child);
    drop((a, b));
    let mut out = BufReader::new(d.0.stdout.take().unwrap());
    for addr in addrs {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), format!("listening on {addr}"));
        let r = run(rexec().arg(addr.to_string()).arg("echo here"));
        assert_eq!(r.out(), "here\n", "{addr}: {}", r.stderr);
    }
}

#[test]
fn what_is_not_a_listening_socket_is_refused_plainly() {
    // Nothing listens at 3..5 here.
    let mut d = start_activated(3, "3");
    let status = d.0.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut d.0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("LISTEN_FDS=3") && err.contains("descriptor 3"),
        "{err}"
    );
    // More than rexecd serves on: the count alone is refused.
    let mut d = start_activated(3, "17");
    assert_eq!(d.0.wait().unwrap().code(), Some(2));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut d.0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("LISTEN_FDS=17") && err.contains("at most 16"),
        "{err}"
    );
}
