//! The interactive prompt on a real (pseudo-)terminal: line editing via
//! rustyline, output, the exit status shown, Ctrl-C stopping the running
//! command without leaving, history saved, `exit` leaving.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rexec_tests::*;

fn openpty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two new descriptors; we own them from here.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: fresh descriptors from openpty.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

#[test]
fn prompt_runs_commands_shows_status_cancels_and_keeps_history() {
    let d = Daemon::start(&[]);
    let data = std::env::temp_dir().join(format!("rexec-pty-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let (master, slave) = openpty();
    let mut cmd = std::process::Command::new(bin("rexec"));
    cmd.arg(d.host())
        .env("XDG_DATA_HOME", &data)
        .env("TERM", "dumb")
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    // SAFETY: setsid and ioctl are async-signal-safe; the child becomes a
    // session leader with the pty as its controlling terminal, so Ctrl-C on
    // the pty is a real SIGINT.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let screen = Arc::new(Mutex::new(String::new()));
    let mut reader = std::fs::File::from(master.try_clone().unwrap());
    let sink = screen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let mut keys = std::fs::File::from(master);
    let mut type_ = |s: &str| keys.write_all(s.as_bytes()).unwrap();
    let shows = |needle: &str, times: usize| {
        wait_until(Duration::from_secs(10), || {
            screen.lock().unwrap().matches(needle).count() >= times
        })
    };
    let prompt = format!("rexec {}> ", d.host());
    assert!(shows(&prompt, 1), "no prompt: {:?}", screen.lock().unwrap());
    type_("echo hello-pty\r");
    assert!(shows("hello-pty\r\n", 1), "{:?}", screen.lock().unwrap());
    type_("sh -c 'exit 3'\r");
    assert!(shows("[exit 3]", 1), "{:?}", screen.lock().unwrap());
    // Ctrl-C while a command runs stops it, and the prompt comes back.
    assert!(shows(&prompt, 3));
    type_("sleep 30\r");
    std::thread::sleep(Duration::from_millis(500));
    type_("\x03");
    assert!(
        shows("stopping the remote command", 1),
        "{:?}",
        screen.lock().unwrap()
    );
    assert!(shows("[exit 143]", 1), "{:?}", screen.lock().unwrap());
    assert!(shows(&prompt, 4), "{:?}", screen.lock().unwrap());
    type_("exit\r");
    assert!(
        wait_until(Duration::from_secs(10), || child
            .try_wait()
            .unwrap()
            .is_some()),
        "did not leave on exit"
    );
    let history = std::fs::read_to_string(data.join("rexec/history")).unwrap_or_default();
    assert!(
        history.contains("echo hello-pty") && history.contains("sleep 30"),
        "{history:?}"
    );
    std::fs::remove_dir_all(&data).unwrap();
}
