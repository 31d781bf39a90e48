//! Running one command over a session: send `Exec`, forward stdin, deliver
//! output as it arrives, and wait for `Exited`.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rexec_proto::{
    ClientMsg, ErrorKind, ErrorMsg, Exec, ExitStatus, Exited, OutputStream, ServerEvent, ServerMsg,
};

use crate::error::ClientError;
use crate::session::{Session, Writer};
use crate::splice::Splicer;

/// Exit code for connection, protocol and auth failures (as ssh).
pub const EXIT_CONNECTION: i32 = 255;
/// Exit code for a command killed at its time limit (as timeout(1)).
pub const EXIT_TIMED_OUT: i32 = 124;
/// Exit code for a command that could not be started (as a shell's
/// "command not found").
pub const EXIT_SPAWN: i32 = 127;
/// Exit code for a command whose output the server cut at its limit, however
/// the command itself ended (as a writer whose reader went away: 128 +
/// SIGPIPE). A cut output never looks like success.
pub const EXIT_TRUNCATED: i32 = 141;
/// Exit code when this process's stdout went away (`rexec HOST yes |
/// head -1`): what a local writer killed by SIGPIPE gives its shell, as
/// ssh's does; quietly, the remote command stopped.
pub const EXIT_BROKEN_PIPE: i32 = 141;

/// Where output goes.
#[derive(Debug)]
pub enum Sinks {
    /// Straight to this process's stdout and stderr, chunk by chunk, with one
    /// unbuffered write each (duplicates of fds 1 and 2: std's line-buffered
    /// stdout would split a chunk at its last newline into two writes).
    Terminal {
        /// This process's stdout.
        stdout: std::fs::File,
        /// This process's stderr.
        stderr: std::fs::File,
        /// Large stdout frames go to `stdout` through this, zero-copy, when
        /// stdout is a pipe or a file (splice.rs).
        splice: Option<Splicer>,
        /// Local stdout broke (e.g. `| head`): the rest is discarded.
        stdout_broken: bool,
        /// The last chunk shown did not end with a newline.
        mid_line: bool,
    },
    /// Kept in memory (for `--json`, `-b`, the demo and tests), at most
    /// `limit` bytes of both together: a server could send without end.
    Capture {
        /// The command's stdout so far.
        stdout: Vec<u8>,
        /// Its stderr so far.
        stderr: Vec<u8>,
        /// Most bytes kept, of both together.
        limit: usize,
        /// More arrived than `limit`: the rest was dropped, and the command
        /// is reported as truncated.
        cut: bool,
    },
    /// Whole lines, each prefixed (`lab3: `), to this process's stdout and
    /// stderr; several hosts write at once without mixing within a line.
    Prefixed {
        /// Put before each line (`lab3: `).
        prefix: String,
        /// A partial stdout line, kept until its newline.
        stdout: Vec<u8>,
        /// A partial stderr line.
        stderr: Vec<u8>,
    },
}

impl Sinks {
    /// Straight to this process's stdout and stderr.
    pub fn terminal() -> io::Result<Self> {
        use std::os::fd::AsFd;
        Ok(Sinks::Terminal {
            splice: Splicer::new(io::stdout().as_fd()),
            stdout: io::stdout().as_fd().try_clone_to_owned()?.into(),
            stderr: io::stderr().as_fd().try_clone_to_owned()?.into(),
            stdout_broken: false,
            mid_line: false,
        })
    }

    /// Kept in memory, up to [`CAPTURE_LIMIT`].
    pub fn capture() -> Self {
        Self::capture_at_most(CAPTURE_LIMIT)
    }

    /// Kept in memory, at most `limit` bytes of stdout and stderr together.
    pub fn capture_at_most(limit: usize) -> Self {
        Sinks::Capture {
            stdout: Vec::new(),
            stderr: Vec::new(),
            limit,
            cut: false,
        }
    }

    /// Whether output was dropped at the capture limit.
    pub fn was_cut(&self) -> bool {
        matches!(self, Sinks::Capture { cut: true, .. })
    }

    /// Whether this process's stdout went away while output was written to
    /// it.
    pub fn stdout_went_away(&self) -> bool {
        match self {
            Sinks::Terminal { stdout_broken, .. } => *stdout_broken,
            Sinks::Prefixed { .. } => stdout_broken(),
            Sinks::Capture { .. } => false,
        }
    }

    /// Lines prefixed with `name: `.
    pub fn prefixed(name: &str) -> Self {
        Sinks::Prefixed {
            prefix: format!("{name}: "),
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    /// Writes out a last line that had no newline (prefixed sinks).
    pub fn finish(&mut self) {
        if let Sinks::Prefixed {
            prefix,
            stdout,
            stderr,
        } = self
        {
            for (buf, err) in [(stdout, false), (stderr, true)] {
                if !buf.is_empty() {
                    buf.push(b'\n');
                    write_lines(prefix, buf, err);
                }
            }
        }
    }

    /// Whether the output shown on the terminal ended in the middle of a
    /// line (the next prompt would overwrite it).
    pub fn ends_mid_line(&self) -> bool {
        matches!(self, Sinks::Terminal { mid_line: true, .. })
    }

    /// Delivers a chunk; `false` when local stdout is broken and the remote
    /// command should be stopped.
    fn deliver(&mut self, stream: OutputStream, data: &[u8]) -> bool {
        if let (Sinks::Terminal { mid_line, .. }, Some(last)) = (&mut *self, data.last()) {
            *mid_line = *last != b'\n';
        }
        match self {
            Sinks::Prefixed {
                prefix,
                stdout,
                stderr,
            } => {
                let (buf, err) = match stream {
                    OutputStream::Stdout => (stdout, false),
                    OutputStream::Stderr => (stderr, true),
                };
                buf.extend_from_slice(data);
                write_lines(prefix, buf, err);
                if buf.len() > LINE_MAX {
                    // A line without end: shown in pieces rather than held.
                    buf.push(b'\n');
                    write_lines(prefix, buf, err);
                }
                // Once stdout is gone (`| head`), every host's command is
                // stopped, as one host's is.
                !stdout_broken()
            }
            Sinks::Capture {
                stdout,
                stderr,
                limit,
                cut,
            } => {
                let room = limit.saturating_sub(stdout.len() + stderr.len());
                let keep = &data[..room.min(data.len())];
                match stream {
                    OutputStream::Stdout => stdout.extend_from_slice(keep),
                    OutputStream::Stderr => stderr.extend_from_slice(keep),
                }
                if keep.len() < data.len() {
                    *cut = true;
                }
                !*cut
            }
            Sinks::Terminal {
                stdout,
                stderr,
                stdout_broken,
                ..
            } => match stream {
                OutputStream::Stdout if *stdout_broken => true,
                OutputStream::Stdout => {
                    if stdout.write_all(data).is_err() {
                        *stdout_broken = true;
                        return false;
                    }
                    true
                }
                OutputStream::Stderr => {
                    // Nowhere to report a failing stderr; the command goes on.
                    let _ = stderr.write_all(data);
                    true
                }
            },
        }
    }
}

/// Most output kept in memory per command (per host with -w) for `--json`
/// and `-b` unless `--capture-limit` says otherwise.
pub const CAPTURE_LIMIT: usize = 64 << 20;

/// Longest unterminated line held for a prefixed (`-w`) sink before it is
/// shown as a line of its own.
const LINE_MAX: usize = 1 << 20;

/// After a cancel, the most output a command may still send before the
/// connection is given up: a server that does not stop is cut off.
const AFTER_CANCEL_MAX: u64 = 64 << 20;

/// Writes the whole lines at the front of `buf`, each after `prefix` and
/// with its control characters escaped, in one write while holding the
/// stream's lock, and keeps the rest.
fn write_lines(prefix: &str, buf: &mut Vec<u8>, to_stderr: bool) {
    let Some(last) = buf.iter().rposition(|&b| b == b'\n') else {
        return;
    };
    let mut out = Vec::with_capacity(last + 1 + prefix.len() * 4);
    for line in buf[..=last].split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(prefix.as_bytes());
        // Among other hosts' lines, a `\r` or an escape sequence could
        // forge another host's line or rewrite the screen.
        out.extend_from_slice(&rexec_proto::text::escape_controls(line));
    }
    buf.drain(..=last);
    if to_stderr {
        // Nowhere to report a failing stderr.
        let _ = io::stderr().lock().write_all(&out);
    } else if io::stdout().lock().write_all(&out).is_err() {
        STDOUT_BROKEN.store(true, Ordering::SeqCst);
    }
}

/// Local stdout broke while hosts wrote to it (`rexec -w ... | head`).
static STDOUT_BROKEN: AtomicBool = AtomicBool::new(false);

/// Says this process's stdout went away (a write to it failed).
pub fn note_stdout_broken() {
    STDOUT_BROKEN.store(true, Ordering::SeqCst);
}

/// Whether this process's stdout broke under `-w`: every host's command is
/// then stopped and no further host is started.
pub fn stdout_broken() -> bool {
    STDOUT_BROKEN.load(Ordering::SeqCst)
}

/// How a command ended, as far as the client knows.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The command's number on its connection.
    pub id: u32,
    /// Its process id on the server, once it started.
    pub pid: Option<u32>,
    /// `Exited`, unless the command could not start.
    pub exited: Option<Exited>,
    /// The `Error` for this command, when it could not start.
    pub error: Option<ErrorMsg>,
    /// How long it took, as seen from here.
    pub duration: Duration,
    /// rexec dropped output at its capture limit (`--capture-limit`).
    pub cut: bool,
    /// This process's stdout went away, so the command was stopped.
    pub stdout_broken: bool,
}

impl Outcome {
    /// The process exit code `rexec` uses for this command: the remote code;
    /// 128+N for signal N; 124 for a timeout; 141 when the output was cut at
    /// the server's limit; 127 when it could not start; 255 for other server
    /// refusals.
    pub fn exit_code(&self) -> i32 {
        match (&self.exited, &self.error) {
            _ if self.stdout_broken => EXIT_BROKEN_PIPE,
            _ if self.cut => EXIT_TRUNCATED,
            (Some(x), _) if x.timed_out => EXIT_TIMED_OUT,
            (Some(x), _) if x.truncated => EXIT_TRUNCATED,
            (Some(x), _) => x.status.shell_code(),
            (None, Some(e)) if e.kind == ErrorKind::Spawn => EXIT_SPAWN,
            _ => EXIT_CONNECTION,
        }
    }

    /// The signal that killed it, if any.
    pub fn signal(&self) -> Option<i32> {
        match self.exited.as_ref()?.status {
            s if !s.is_possible() => None,
            ExitStatus::Signal(s) => Some(s),
            ExitStatus::Code(_) => None,
        }
    }

    /// Prints the `--json` object for this command on stdout.
    pub fn print_json(&self, command: &str, sinks: &Sinks) {
        self.print_json_for(None, command, sinks)
    }

    /// The `--json` line, naming the host with -w.
    pub fn print_json_for(&self, host: Option<&str>, command: &str, sinks: &Sinks) {
        let (stdout, stderr): (&[u8], &[u8]) = match sinks {
            Sinks::Capture { stdout, stderr, .. } => (stdout, stderr),
            Sinks::Terminal { .. } | Sinks::Prefixed { .. } => (b"", b""),
        };
        let x = self.exited.as_ref();
        let error = self
            .error
            .as_ref()
            .map(|e| serde_json::json!({"kind": e.kind.name(), "message": e.message}));
        print_json_object(JsonResult {
            host,
            command,
            // A cut output has the fixed status, whatever the race between
            // the kill and the command's own exit gave.
            exit_code: x.and_then(|x| match x.status {
                _ if x.truncated || self.cut => Some(EXIT_TRUNCATED),
                s if !s.is_possible() => Some(s.shell_code()),
                ExitStatus::Code(c) => Some(c),
                ExitStatus::Signal(_) => None,
            }),
            signal: self
                .signal()
                .filter(|_| !x.is_some_and(|x| x.truncated) && !self.cut),
            timed_out: x.is_some_and(|x| x.timed_out),
            truncated: x.is_some_and(|x| x.truncated) || self.cut,
            stdout,
            stderr,
            duration_ms: x.map_or(self.duration.as_millis() as u64, |x| x.duration_ms),
            error,
        });
    }

    /// Explains on stderr what the exit status alone would not.
    pub fn report(&self) {
        if self.cut {
            eprintln!(
                "rexec: more output than --capture-limit keeps in memory; the rest was dropped and the command stopped"
            );
        }
        if let Some(e) = &self.error {
            eprintln!("rexec: {}: {}", e.kind, e.message);
        }
        if let Some(x) = &self.exited {
            if !x.status.is_possible() {
                eprintln!(
                    "rexec: the server reported {:?}, which no process can end with; exiting 255",
                    x.status
                );
            }
            if x.timed_out {
                eprintln!("rexec: the command timed out and was killed");
            }
            if x.truncated {
                eprintln!(
                    "rexec: output cut at {} bytes by the server's limit; the command was killed",
                    x.bytes_out
                );
            }
        }
    }
}

/// What `--json` prints for one command.
struct JsonResult<'a> {
    /// With -w: the host it ran on.
    host: Option<&'a str>,
    command: &'a str,
    exit_code: Option<i32>,
    signal: Option<i32>,
    timed_out: bool,
    truncated: bool,
    stdout: &'a [u8],
    stderr: &'a [u8],
    duration_ms: u64,
    error: Option<serde_json::Value>,
}

/// Prints one JSON object on a line. Output that is not UTF-8 is shown with
/// replacement characters in `stdout`/`stderr`, and given exactly, base64
/// encoded, in `stdout_b64`/`stderr_b64`.
fn print_json_object(r: JsonResult<'_>) {
    use base64::Engine;
    let mut obj = serde_json::json!({
        "host": r.host,
        "command": r.command,
        "exit_code": r.exit_code,
        "signal": r.signal,
        "timed_out": r.timed_out,
        "truncated": r.truncated,
        "stdout": String::from_utf8_lossy(r.stdout),
        "stderr": String::from_utf8_lossy(r.stderr),
        "duration_ms": r.duration_ms,
        "error": r.error,
    });
    if r.host.is_none()
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("host");
    }
    for (name, bytes) in [("stdout_b64", r.stdout), ("stderr_b64", r.stderr)] {
        if std::str::from_utf8(bytes).is_err() {
            obj[name] = base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into();
        }
    }
    let mut out = io::stdout().lock();
    if writeln!(out, "{obj}").and_then(|()| out.flush()).is_err() {
        // `rexec --json ... | head -c 10`: the reader has what it wanted.
        std::process::exit(EXIT_BROKEN_PIPE);
    }
}

/// The `--json` line for a command that never ran or whose connection
/// failed: the error's kind and message, so a script reading stdout always
/// gets a line.
pub fn print_json_failure(
    host: Option<&str>,
    command: &str,
    err: &ClientError,
    duration: Duration,
) {
    print_json_object(JsonResult {
        host,
        command,
        exit_code: None,
        signal: None,
        timed_out: false,
        truncated: false,
        stdout: b"",
        stderr: b"",
        duration_ms: duration.as_millis().try_into().unwrap_or(u64::MAX),
        error: Some(serde_json::json!({"kind": err.kind_name(), "message": err.to_string()})),
    });
}

/// The exit status after Ctrl-C stopped the command (128 + SIGINT).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Whether Ctrl-C was pressed to stop the command.
pub fn interrupted() -> bool {
    PRESSES.load(Ordering::SeqCst) > 0
}

/// What Ctrl-C says instead of "stopping the remote command" (an attach
/// stops following, and the job runs on).
static CTRL_C_NOTE: Mutex<Option<String>> = Mutex::new(None);

/// Makes Ctrl-C say `note` when it stops what runs.
pub fn on_ctrl_c_say(note: String) {
    *CTRL_C_NOTE.lock().unwrap_or_else(|p| p.into_inner()) = Some(note);
}

/// The commands Ctrl-C should cancel (one, or one per host with -w).
static CURRENT: Mutex<Vec<(Arc<Writer>, u32)>> = Mutex::new(Vec::new());
static PRESSES: AtomicU32 = AtomicU32::new(0);

fn running(add: bool, writer: &Arc<Writer>, id: u32) {
    let mut cur = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
    if add {
        if cur.is_empty() {
            PRESSES.store(0, Ordering::SeqCst);
        }
        cur.push((writer.clone(), id));
    } else {
        cur.retain(|(w, i)| !(Arc::ptr_eq(w, writer) && *i == id));
    }
}

/// Handles Ctrl-C for the whole process: the first press while commands
/// run sends each a `Cancel` (the remote process groups stop and their
/// `Exited` come back); a second press, or one with nothing running, quits
/// with 130.
pub fn install_ctrl_c() -> io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT])?;
    std::thread::Builder::new()
        .name("ctrl-c".into())
        .spawn(move || {
            for _ in signals.forever() {
                let current = CURRENT.lock().unwrap_or_else(|p| p.into_inner()).clone();
                if current.is_empty() || PRESSES.fetch_add(1, Ordering::SeqCst) > 0 {
                    std::process::exit(130);
                }
                match CTRL_C_NOTE
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_deref()
                {
                    Some(note) => eprintln!("\n{note}"),
                    None => eprintln!(
                        "\nrexec: stopping the remote command{} (Ctrl-C again to quit)",
                        if current.len() > 1 { "s" } else { "" }
                    ),
                }
                for (w, id) in current {
                    let _ = w.send(&ClientMsg::Cancel { id });
                }
            }
        })?;
    Ok(())
}

/// Runs `exec` and waits for it to end. When `stdin` is given it is
/// forwarded from a separate thread, end of file included.
pub fn run(
    session: &mut Session,
    exec: Exec,
    sinks: &mut Sinks,
    stdin: Option<Box<dyn Read + Send>>,
) -> Result<Outcome, ClientError> {
    request(session, exec, None, sinks, stdin)
}

/// Runs a job verb (protocol 6) as [`run`] runs a command: its output is
/// the verb's answer (the job's, for an attach), its exit status the
/// verb's.
pub fn run_job(
    session: &mut Session,
    exec: Exec,
    verb: rexec_proto::JobVerb,
    sinks: &mut Sinks,
    stdin: Option<Box<dyn Read + Send>>,
) -> Result<Outcome, ClientError> {
    let server = &session.server;
    if server.protocol < rexec_proto::JOBS_PROTOCOL {
        return Err(ClientError::Usage(format!(
            "this server has no detached jobs: it runs rexecd {} (protocol {}); jobs need protocol {} (rexecd {} or later)",
            rexec_proto::text::clean(&server.software, 40),
            server.protocol,
            rexec_proto::JOBS_PROTOCOL,
            rexec_proto::SOFTWARE_VERSION
        )));
    }
    request(session, exec, Some(verb), sinks, stdin)
}

fn request(
    session: &mut Session,
    mut exec: Exec,
    verb: Option<rexec_proto::JobVerb>,
    sinks: &mut Sinks,
    stdin: Option<Box<dyn Read + Send>>,
) -> Result<Outcome, ClientError> {
    let id = exec.id;
    exec.stdin = stdin.is_some();
    let started = Instant::now();
    let msg = match verb {
        Some(verb) => ClientMsg::Job { exec, verb },
        None => ClientMsg::Exec(exec),
    };
    let mut payload = Vec::new();
    rexec_proto::payload::encode_into(&msg, &mut payload);
    let size = payload.len();
    if size > rexec_proto::DEFAULT_MAX_FRAME {
        // The server would refuse the frame and close the connection: say
        // what is too big instead.
        return Err(ClientError::Usage(format!(
            "the command is {:.1} MB; the limit for one request is {} MiB \
             (send a long script on stdin instead: rexec HOST < script.sh)",
            size as f64 / 1e6,
            rexec_proto::DEFAULT_MAX_FRAME >> 20
        )));
    }
    session.send(&msg)?;
    if let Some(input) = stdin {
        forward_stdin(session.writer(), id, input)?;
    }
    let writer = session.writer();
    running(true, &writer, id);
    let result = wait(session, id, sinks, started);
    running(false, &writer, id);
    result
}

fn wait(
    session: &mut Session,
    id: u32,
    sinks: &mut Sinks,
    started: Instant,
) -> Result<Outcome, ClientError> {
    let mut outcome = Outcome {
        id,
        pid: None,
        exited: None,
        error: None,
        duration: Duration::ZERO,
        cut: false,
        stdout_broken: false,
    };
    let mut cancelled = false;
    // Output that arrived after the cancel.
    let mut after_cancel = 0u64;
    loop {
        if let Sinks::Terminal {
            splice: Some(splice),
            stdout_broken: broken @ false,
            ..
        } = sinks
            && session.splice_output(id, splice)?
        {
            if splice.broken() {
                *broken = true;
                cancelled = true;
                session.send(&ClientMsg::Cancel { id })?;
            }
            continue;
        }
        let ev = session.next_event()?;
        match ev {
            ServerEvent::Output {
                stream,
                id: i,
                data,
            } if i == id => {
                if cancelled {
                    after_cancel += data.len() as u64;
                    if after_cancel > AFTER_CANCEL_MAX {
                        // A server that does not stop: cut it off.
                        break;
                    }
                }
                if !sinks.deliver(stream, data) && !cancelled {
                    cancelled = true;
                    session.send(&ClientMsg::Cancel { id })?;
                }
            }
            ServerEvent::Output { .. } => {}
            ServerEvent::Msg(ServerMsg::Started { id: i, pid }) if i == id => {
                outcome.pid = Some(pid)
            }
            ServerEvent::Msg(ServerMsg::Exited(x)) if x.id == id => {
                outcome.exited = Some(x);
                break;
            }
            ServerEvent::Msg(ServerMsg::Error(e)) if e.id == Some(id) => {
                outcome.error = Some(e);
                break;
            }
            ServerEvent::Msg(ServerMsg::Error(e)) if e.id.is_none() => {
                return Err(ClientError::Server(e));
            }
            ServerEvent::Msg(ServerMsg::Hello(_)) => {
                return Err(ClientError::Protocol("unexpected second Hello".into()));
            }
            ServerEvent::Msg(_) => {}
        }
    }
    outcome.duration = started.elapsed();
    outcome.cut = sinks.was_cut();
    outcome.stdout_broken = sinks.stdout_went_away();
    Ok(outcome)
}

fn forward_stdin(writer: Arc<Writer>, id: u32, mut input: Box<dyn Read + Send>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            // Large reads (from a file) make chunks that rexecd splices
            // into the command's pipe rather than copies.
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if writer.send_stdin(id, &buf[..n]).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        eprintln!("rexec: reading stdin: {e}");
                        break;
                    }
                }
            }
            let _ = writer.send(&ClientMsg::StdinEof { id });
        })?;
    Ok(())
}
