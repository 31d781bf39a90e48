//! Helpers for loopback integration tests that start the real `rexecd` and
//! `rexec` binaries (built by `cargo test --workspace` / `cargo build`).
//!
//! Every server is started on `127.0.0.1:0`, learns its port from the
//! `listening on` line, and is stopped by PID when the test's handle drops.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a test waits for something that should happen. Generous: a
/// wait that succeeds returns as soon as it does, so a long deadline costs
/// nothing when things work, and CI's two cores are shared by test binaries
/// running side by side. Claims about speed belong in bench/, not here.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The path of a workspace binary, next to the test executable's directory.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

/// A running `rexecd`, stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    /// The TLS fingerprint printed on the second line (with --tls/--cert).
    pub fingerprint: Option<String>,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    /// Starts `rexecd --listen 127.0.0.1:0 ARGS...` with info logging.
    pub fn start(args: &[&str]) -> Daemon {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::start_at("127.0.0.1:0", args, env)
    }

    /// Starts `rexecd --listen LISTEN ARGS...` (`[::1]:0` for IPv6).
    pub fn start_at(listen: &str, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::start_from(Command::new(bin("rexecd")), listen, args, env)
    }

    /// Starts rexecd with `signals` (shell names: `HUP INT QUIT`) ignored,
    /// as `nohup` or `&` in a script leave them: through `sh -c 'trap ""
    /// ...; exec rexecd ...'`, so the daemon's pid is rexecd's.
    pub fn start_ignoring(signals: &str, args: &[&str]) -> Daemon {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(format!("trap '' {signals}; exec \"$0\" \"$@\""))
            .arg(bin("rexecd"));
        Self::start_from(sh, "127.0.0.1:0", args, &[])
    }

    fn start_from(mut cmd: Command, listen: &str, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut child = cmd
            .args(["--listen", listen])
            .args(args)
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rexecd");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("address");
        let fingerprint = args
            .iter()
            .any(|a| *a == "--tls" || *a == "--cert")
            .then(|| {
                let mut line = String::new();
                out.read_line(&mut line).expect("read the fingerprint line");
                line.trim()
                    .strip_prefix("tls fingerprint ")
                    .unwrap_or_else(|| panic!("unexpected second line {line:?}"))
                    .to_string()
            });
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let mut err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Daemon {
            child,
            addr,
            fingerprint,
            log,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// `127.0.0.1:PORT`, for the client's command line.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle` (up to `limit`).
    pub fn wait_log(&self, needle: &str, limit: Duration) -> bool {
        wait_until(limit, || self.log().contains(needle))
    }

    /// Sends a signal to the server.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the PID of a child we started.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits for the server to exit; `None` if it is still running at the limit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The server's resident memory in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// Zombie children of the server.
    pub fn zombies(&self) -> Vec<i32> {
        children_of(self.pid())
            .into_iter()
            .filter(|&p| proc_state(p) == Some('Z'))
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGTERM);
            if self.wait_exit(Duration::from_secs(5)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// Polls `f` every 20 ms until it is true or `limit` passes.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A field of /proc/PID/status in KiB (0 when unreadable).
pub fn proc_status_kib(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// The state letter of a process (R, S, Z, ...), `None` when it is gone.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    after.chars().next()
}

/// True while the process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    matches!(proc_state(pid), Some(s) if s != 'Z')
}

/// Whether process `pid` is blocked writing to its stdout or stderr: its
/// pipe (or terminal, or socket) is full and nobody reads it. Linux's
/// `/proc/PID/syscall` (readable by the process's owner) names the call.
pub fn blocked_writing(pid: i32) -> bool {
    let write = if cfg!(target_arch = "aarch64") {
        "64"
    } else {
        "1"
    };
    std::fs::read_to_string(format!("/proc/{pid}/syscall")).is_ok_and(|s| {
        let mut f = s.split_whitespace();
        f.next() == Some(write) && matches!(f.next(), Some("0x1" | "0x2"))
    })
}

/// The processes at the bottom of `pid`'s tree: for each command of a
/// server, the program doing the work (a shell may wait above it).
pub fn leaves_below(pid: i32) -> Vec<i32> {
    children_of(pid)
        .into_iter()
        .flat_map(|c| {
            let below = leaves_below(c);
            if below.is_empty() { vec![c] } else { below }
        })
        .collect()
}

/// Waits until `count` commands of the server `server_pid` have started and
/// each is blocked writing its output or has finished (`finished` says how
/// many have): what they will hold is then all held.
pub fn wait_until_stalled(server_pid: i32, count: usize, finished: impl Fn() -> usize) -> bool {
    wait_until(PATIENCE, || {
        let running = leaves_below(server_pid);
        running.iter().all(|&p| blocked_writing(p)) && running.len() + finished() == count
    })
}

/// PIDs whose parent is `ppid`.
pub fn children_of(ppid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let after = &s[s.rfind(')')? + 2..];
                    after.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(ppid)
        })
        .collect()
}

/// Whether a process below `ancestor` (its child, grandchild, ...) runs
/// with exactly this command line (arguments joined by spaces): a test
/// waits for this before it acts on the command, instead of sleeping.
pub fn runs_below(ancestor: i32, cmdline: &str) -> bool {
    let mut below = vec![ancestor];
    let mut i = 0;
    while i < below.len() {
        below.extend(children_of(below[i]));
        i += 1;
    }
    below[1..].iter().any(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            let args: Vec<&[u8]> = c.split(|&b| b == 0).filter(|a| !a.is_empty()).collect();
            args.join(&b' ') == cmdline.as_bytes()
        })
    })
}

/// A `rexec` command with stdin from /dev/null unless the test sets it,
/// isolated from REXEC_TLS / REXEC_TOKEN and from every other command's
/// known hosts: the user's, and those of the other commands of its test
/// process, since a TLS daemon's port recorded there and given by the
/// kernel to a later plaintext daemon would turn TLS on for that one (the
/// client then rightly refuses it as a downgrade).
pub fn rexec() -> Command {
    static COMMANDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let mut c = Command::new(bin("rexec"));
    // No keys from the user running the tests: no agent, and a HOME with
    // no ~/.ssh (a test that wants keys sets its own).
    // One for every run (not one per test process, which would leave a
    // directory behind each time).
    let home = std::env::temp_dir().join("rexec-test-home");
    let _ = std::fs::create_dir_all(&home);
    // Written only when the command trusts a TLS daemon.
    let n = COMMANDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let kh = home.join(format!("known_hosts-{}-{n}", std::process::id()));
    c.stdin(Stdio::null())
        .env_remove("RUST_LOG")
        .env_remove("REXEC_TLS")
        .env_remove("REXEC_TOKEN")
        .env_remove("SSH_AUTH_SOCK")
        .env("HOME", home)
        .env("REXEC_KNOWN_HOSTS", kh);
    c
}

/// Output of a finished command, with text helpers.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Ran {
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs a command to completion, killing it if it takes longer than `limit`.
pub fn run_for(cmd: &mut Command, limit: Duration) -> Ran {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let st = child.wait().expect("wait");
            panic!("command did not finish within {limit:?} ({st})");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ran {
        code: status.code(),
        stdout: t_out.join().unwrap_or_default(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned(),
    }
}

/// Runs with a limit of two minutes (a command that hangs fails the test
/// instead of hanging it).
pub fn run(cmd: &mut Command) -> Ran {
    run_for(cmd, 2 * PATIENCE)
}

/// A private temporary directory, removed on drop. Its name carries the
/// test's tag, the process id and a counter, so tests running at once do
/// not meet; it has no characters a shell would trip on.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("rexec-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("create a temporary directory");
        TempDir(d)
    }

    /// A path inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Connects to `dst` from the loopback address `src` (e.g. 127.0.0.2), so a
/// test can play clients from different addresses on one machine.
pub fn connect_from(
    src: std::net::Ipv4Addr,
    dst: SocketAddr,
) -> std::io::Result<std::net::TcpStream> {
    raw_connect(Some(src), dst, None)
}

/// Connects to `dst` with a 4 KiB receive buffer set before the handshake,
/// so the window a client that never reads offers stays small, and the
/// kernel cannot absorb megabytes of what the server sends it.
pub fn connect_small_window(dst: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    raw_connect(None, dst, Some(4096))
}

fn raw_connect(
    src: Option<std::net::Ipv4Addr>,
    dst: SocketAddr,
    rcvbuf: Option<libc::c_int>,
) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(dst) = dst else {
        return Err(std::io::ErrorKind::Unsupported.into());
    };
    let sin = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: socket(2) returns a new descriptor or -1; from here the
    // TcpStream owns it and closes it on every path.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket that nothing else owns.
    let sock = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    if let Some(size) = rcvbuf {
        // SAFETY: SO_RCVBUF reads one c_int from the pointer given.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&raw const size).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    if let Some(src) = src {
        let from = sin(src, 0);
        // SAFETY: a valid sockaddr_in of the length given.
        if unsafe { libc::bind(fd, (&raw const from).cast(), len) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    let to = sin(*dst.ip(), dst.port());
    // SAFETY: a valid sockaddr_in of the length given.
    if unsafe { libc::connect(fd, (&raw const to).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(sock)
}

pub mod account;
pub mod liar;
pub mod proxy;
pub mod puts;

/// Speaking the protocol by hand over a raw socket, for tests that must
/// send what a well-behaved client never would.
pub mod wire {
    use std::io::Write;
    use std::net::TcpStream;
    use std::time::Duration;

    use rexec_proto::{
        ClientHello, ClientMsg, FrameDecoder, PROTOCOL_VERSION, ServerMsg, encode_frame,
    };

    /// One frame's bytes.
    pub fn frame(msg: &ClientMsg) -> Vec<u8> {
        let mut w = Vec::new();
        encode_frame(msg, &mut w);
        w
    }

    /// A client hello for the current protocol version.
    pub fn hello() -> ClientMsg {
        ClientMsg::Hello(ClientHello {
            protocol: PROTOCOL_VERSION,
            software: "test".into(),
        })
    }

    /// Every `Stdout` chunk among `msgs`, joined.
    pub fn stdout_of(msgs: &[ServerMsg]) -> Vec<u8> {
        msgs.iter()
            .filter_map(|m| match m {
                ServerMsg::Stdout { data, .. } => Some(data.as_slice()),
                _ => None,
            })
            .flatten()
            .copied()
            .collect()
    }

    /// Writes one frame.
    pub fn send(sock: &mut TcpStream, msg: &ClientMsg) {
        sock.write_all(&frame(msg)).expect("send a frame");
    }

    /// Reads frames until `pred` matches one (up to [`crate::PATIENCE`]);
    /// returns all read.
    pub fn read_until(
        sock: &mut TcpStream,
        dec: &mut FrameDecoder,
        mut pred: impl FnMut(&ServerMsg) -> bool,
    ) -> Vec<ServerMsg> {
        sock.set_read_timeout(Some(crate::PATIENCE))
            .expect("set a read timeout");
        let mut seen = Vec::new();
        loop {
            while let Some(m) = dec.next_message::<ServerMsg>().expect("valid frames") {
                let done = pred(&m);
                seen.push(m);
                if done {
                    return seen;
                }
            }
            let n = dec.read_from(sock).expect("read (timed out?)");
            assert!(
                n > 0,
                "server closed before the expected frame; got {seen:?}"
            );
        }
    }

    /// Reads messages until the server closes the connection (a reset counts
    /// as closing); panics if it does neither within `limit`.
    pub fn read_to_close(sock: &mut TcpStream, limit: Duration) -> Vec<ServerMsg> {
        sock.set_read_timeout(Some(limit))
            .expect("set a read timeout");
        let mut dec = FrameDecoder::new();
        let mut out = Vec::new();
        loop {
            match dec.read_from(sock) {
                Ok(0) => return out,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
                Err(e) => panic!("server neither answered nor closed: {e}; got {out:?}"),
            }
            while let Some(m) = dec.next_message::<ServerMsg>().expect("valid frames") {
                out.push(m);
            }
        }
    }

    /// Logs in by hand with `key` as `user` on a fresh connection to
    /// `addr` (plain TCP), the signature made by `signer` (another key
    /// than `key` makes a bad one): the server's answer, and how long
    /// after the key was sent it came.
    pub fn offer_key(
        addr: std::net::SocketAddr,
        key: &ssh_key::PrivateKey,
        signer: &ssh_key::PrivateKey,
        user: &str,
    ) -> (ServerMsg, Duration) {
        use signature::Signer;
        let mut sock = TcpStream::connect(addr).expect("connect");
        let challenge = first_hello(&mut sock).challenge.expect("a challenge");
        let binding = rexec_proto::auth::address_binding(addr);
        let data = rexec_proto::keyauth::signed_data(user, true, &binding, &challenge);
        let signature = signer.try_sign(&data).expect("sign");
        let msg = ClientMsg::AuthKey {
            user: user.into(),
            explicit: true,
            public_key: key.public_key().to_bytes().expect("public key"),
            signature: rexec_proto::keyauth::encode_signature(signature),
        };
        let sent = std::time::Instant::now();
        send(&mut sock, &msg);
        let mut dec = FrameDecoder::new();
        // (The server's AuthMethods, right after its hello, may come first.)
        let mut seen = read_until(&mut sock, &mut dec, |m| {
            !matches!(m, ServerMsg::AuthMethods { .. })
        });
        (seen.pop().expect("an answer"), sent.elapsed())
    }

    /// Sends the client's hello and returns the server's (up to
    /// [`crate::PATIENCE`]).
    pub fn first_hello(sock: &mut TcpStream) -> rexec_proto::ServerHello {
        send(sock, &hello());
        sock.set_read_timeout(Some(crate::PATIENCE))
            .expect("set a read timeout");
        let mut dec = FrameDecoder::new();
        loop {
            assert!(
                dec.read_from(sock).expect("read the hello") > 0,
                "closed before hello"
            );
            if let Some(ServerMsg::Hello(h)) = dec.next_message().expect("valid frames") {
                return h;
            }
        }
    }
}

/// `rexec` on a pseudo-terminal, as a person at a terminal runs it: the
/// child is a session leader with the pty as its controlling terminal (so
/// Ctrl-C is a real SIGINT and window changes a real SIGWINCH), and what it
/// shows is collected.
pub mod onpty {
    use std::io::{Read, Write};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Mutex};

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

    /// A program running on a pty of its own.
    #[derive(Debug)]
    pub struct OnPty {
        pub child: std::process::Child,
        screen: Arc<Mutex<String>>,
        keys: std::fs::File,
        /// Kept to look at the terminal's settings after the program.
        slave: OwnedFd,
    }

    impl OnPty {
        /// Starts `cmd` (typically `bin("rexec")` with its arguments) on a
        /// new pty of 33 rows and 101 columns.
        pub fn start(mut cmd: Command) -> OnPty {
            let (master, slave) = openpty();
            set_size(&master, 33, 101);
            cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
                .stdout(Stdio::from(slave.try_clone().unwrap()))
                .stderr(Stdio::from(slave.try_clone().unwrap()));
            // SAFETY: setsid and ioctl are async-signal-safe.
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
                slave,
            }
        }

        /// Types `s` on the terminal.
        pub fn type_(&mut self, s: &str) {
            self.keys.write_all(s.as_bytes()).unwrap();
        }

        /// Waits (up to [`crate::PATIENCE`]) until `needle` was shown
        /// `times` times.
        pub fn shows(&self, needle: &str, times: usize) -> bool {
            crate::wait_until(crate::PATIENCE, || {
                self.screen.lock().unwrap().matches(needle).count() >= times
            })
        }

        pub fn screen(&self) -> String {
            self.screen.lock().unwrap().clone()
        }

        /// The exit code, once the program ended (up to
        /// [`crate::PATIENCE`]).
        pub fn exits(&mut self) -> Option<i32> {
            let mut code = None;
            crate::wait_until(crate::PATIENCE, || {
                code = self
                    .child
                    .try_wait()
                    .unwrap()
                    .map(|s| s.code().unwrap_or(-1));
                code.is_some()
            });
            code
        }

        /// Changes the window size, as a terminal emulator does.
        pub fn resize(&self, rows: u16, cols: u16) {
            set_size(&self.keys, rows, cols);
        }

        /// Whether the terminal is in its normal (cooked, echoing) mode.
        pub fn cooked(&self) -> bool {
            // SAFETY: termios is plain integers, for which zero is valid.
            let mut t: libc::termios = unsafe { std::mem::zeroed() };
            // SAFETY: tcgetattr fills the termios we pass.
            let rc = unsafe { libc::tcgetattr(self.slave.as_raw_fd(), &mut t) };
            rc == 0 && t.c_lflag & libc::ICANON != 0 && t.c_lflag & libc::ECHO != 0
        }
    }

    impl Drop for OnPty {
        fn drop(&mut self) {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }

    fn set_size(fd: &impl AsRawFd, rows: u16, cols: u16) {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads the winsize we pass.
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
}
