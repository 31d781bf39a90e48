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

/// rexec running on a pseudo-terminal, with what it shows collected.
struct OnPty {
    child: std::process::Child,
    screen: Arc<Mutex<String>>,
    keys: std::fs::File,
}

impl OnPty {
    fn start(host: &str, data: &std::path::Path) -> OnPty {
        let (master, slave) = openpty();
        let mut cmd = std::process::Command::new(bin("rexec"));
        cmd.arg(host)
            .env("XDG_DATA_HOME", data)
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
        let child = cmd.spawn().unwrap();
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
        OnPty {
            child,
            screen,
            keys: std::fs::File::from(master),
        }
    }

    fn type_(&mut self, s: &str) {
        self.keys.write_all(s.as_bytes()).unwrap();
    }

    fn shows(&self, needle: &str, times: usize) -> bool {
        wait_until(Duration::from_secs(10), || {
            self.screen.lock().unwrap().matches(needle).count() >= times
        })
    }

    fn screen(&self) -> String {
        self.screen.lock().unwrap().clone()
    }

    fn exits(&mut self) -> Option<i32> {
        let mut code = None;
        wait_until(Duration::from_secs(10), || {
            code = self
                .child
                .try_wait()
                .unwrap()
                .map(|s| s.code().unwrap_or(-1));
            code.is_some()
        });
        code
    }
}

fn data_dir(tag: &str) -> std::path::PathBuf {
    let data = std::env::temp_dir().join(format!("rexec-pty-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    data
}

#[test]
fn prompt_runs_commands_shows_status_cancels_and_keeps_history() {
    let d = Daemon::start(&[]);
    let data = data_dir("main");
    let mut t = OnPty::start(&d.host(), &data);
    let prompt = format!("rexec {}> ", d.host());
    assert!(t.shows(&prompt, 1), "no prompt: {:?}", t.screen());
    assert!(
        t.screen().contains("runs in a new shell"),
        "{:?}",
        t.screen()
    );
    t.type_("echo hello-pty\r");
    assert!(t.shows("hello-pty\r\n", 1), "{:?}", t.screen());
    t.type_("sh -c 'exit 3'\r");
    assert!(t.shows("[exit 3]", 1), "{:?}", t.screen());
    // A last line without a newline is marked and ended, not overwritten.
    t.type_("printf abc\r");
    assert!(t.shows("abc\x1b[7m%\x1b[0m\r\n", 1), "{:?}", t.screen());
    // Ctrl-C while a command runs stops it, and the prompt comes back.
    assert!(t.shows(&prompt, 4));
    t.type_("sleep 30\r");
    std::thread::sleep(Duration::from_millis(500));
    t.type_("\x03");
    assert!(
        t.shows("stopping the remote command", 1),
        "{:?}",
        t.screen()
    );
    assert!(t.shows("[exit 143]", 1), "{:?}", t.screen());
    assert!(t.shows(&prompt, 5), "{:?}", t.screen());
    t.type_("exit\r");
    assert!(t.exits().is_some(), "did not leave on exit");
    let history = std::fs::read_to_string(data.join("rexec/history")).unwrap_or_default();
    assert!(
        history.contains("echo hello-pty") && history.contains("sleep 30"),
        "{history:?}"
    );
    std::fs::remove_dir_all(&data).unwrap();
}

#[test]
fn history_is_kept_when_ctrl_c_twice_quits() {
    let d = Daemon::start(&[]);
    let data = data_dir("ctrlc");
    let mut t = OnPty::start(&d.host(), &data);
    let prompt = format!("rexec {}> ", d.host());
    assert!(t.shows(&prompt, 1), "no prompt: {:?}", t.screen());
    t.type_("echo kept-1\r");
    assert!(t.shows("kept-1\r\n", 1), "{:?}", t.screen());
    t.type_("sleep 30\r");
    std::thread::sleep(Duration::from_millis(500));
    t.type_("\x03");
    assert!(
        t.shows("stopping the remote command", 1),
        "{:?}",
        t.screen()
    );
    t.type_("\x03");
    assert_eq!(t.exits(), Some(130), "{:?}", t.screen());
    let history = std::fs::read_to_string(data.join("rexec/history")).unwrap_or_default();
    assert!(
        history.contains("echo kept-1") && history.contains("sleep 30"),
        "{history:?}"
    );
    std::fs::remove_dir_all(&data).unwrap();
}
