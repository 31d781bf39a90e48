//! Throwaway accounts for `rexecd --login` tests: made with useradd under
//! names no real account has, removed with their homes when dropped (even
//! when the test fails). Only root can make them: tests skip otherwise.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::{PATIENCE, TempDir, wait_until};

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The name of the account the tests run as.
pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Returns from the test, saying it is skipped, unless it runs as root.
#[macro_export]
macro_rules! needs_root {
    () => {
        if !$crate::account::is_root() {
            eprintln!("skipped: this test makes accounts with useradd and needs root");
            return;
        }
    };
}

/// A throwaway account, removed with its home when dropped.
#[derive(Debug)]
pub struct Account {
    pub name: String,
    pub home: PathBuf,
    pub uid: u32,
}

impl Account {
    /// Makes an account whose login shell is `shell`.
    pub fn new(shell: &str) -> Account {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("rxt{}x{n}", std::process::id());
        let home = PathBuf::from("/home").join(&name);
        std::fs::create_dir_all("/home").unwrap();
        // One useradd at a time from this process (they lock /etc/passwd);
        // another process holding the lock makes it fail: try again.
        static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
        // In a supplementary group too, where the system has `users`.
        let users = Command::new("getent")
            .args(["group", "users"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let groups: &[&str] = if users { &["-G", "users"] } else { &[] };
        let made = (0..50).any(|_| {
            let ok = Command::new("useradd")
                .args(["-m", "-s", shell])
                .args(groups)
                .arg("-d")
                .arg(&home)
                .arg(&name)
                .status()
                .expect("useradd")
                .success();
            if !ok {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            ok
        });
        assert!(made, "useradd {name}");
        let uid = std::fs::metadata(&home).unwrap().uid();
        Account { name, home, uid }
    }

    /// Puts `lines` in the account's ~/.ssh/authorized_keys, owned by it,
    /// with the modes sshd expects.
    pub fn authorize(&self, lines: &str) {
        let ssh = self.home.join(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        let file = ssh.join("authorized_keys");
        std::fs::write(&file, lines).unwrap();
        for (p, mode) in [(&ssh, 0o700), (&file, 0o600)] {
            std::os::unix::fs::chown(p, Some(self.uid), Some(self.uid)).unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        let _ = Command::new("userdel")
            .args(["-r", "-f"])
            .arg(&self.name)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Makes an Ed25519 key pair in `dir` with ssh-keygen (mode 600, no
/// passphrase): the private key's path and the public line.
pub fn ed25519_key(dir: &TempDir, name: &str) -> (PathBuf, String) {
    let path = dir.path(name);
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen (openssh-client)");
    assert!(ok.success(), "ssh-keygen");
    let public = std::fs::read_to_string(format!("{}.pub", path.display())).unwrap();
    (path, public)
}

/// An ssh-agent for the test, stopped when dropped.
#[derive(Debug)]
pub struct Agent {
    child: Child,
    pub sock: PathBuf,
}

impl Agent {
    pub fn start(dir: &TempDir) -> Agent {
        let sock = dir.path("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent (openssh-client)");
        assert!(wait_until(PATIENCE, || sock.exists()), "no agent socket");
        Agent { child, sock }
    }

    pub fn add(&self, key: &Path) {
        let ok = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.sock)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "ssh-add");
    }
}

impl Agent {
    /// Adds an encrypted key, giving ssh-add its passphrase as a desktop
    /// would (SSH_ASKPASS), with no terminal.
    pub fn add_locked(&self, key: &Path, passphrase: &str, dir: &TempDir) {
        let askpass = dir.path("askpass.sh");
        std::fs::write(&askpass, format!("#!/bin/sh\necho '{passphrase}'\n")).unwrap();
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
        let ok = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.sock)
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "ssh-add with a passphrase");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
