//! A remote command as `std::process` has a local one: [`Command`] to
//! describe it, [`Child`] to talk to it while it runs, [`Output`] once it
//! has ended.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use rexec_proto::{ClientMsg, Exec, ExecMode, PtyRequest};

use super::demux::{End, Taps};
use super::{Client, Error, ExitStatus};
use crate::session::Writer;

/// A command to run on the server, built as [`std::process::Command`] is:
/// made by [`Client::command`] (through `/bin/sh -c`) or
/// [`Client::program`] (a program and its arguments, no shell), then run
/// with [`Command::output`], [`Command::status`] or [`Command::spawn`].
#[derive(Debug, Clone)]
pub struct Command {
    client: Client,
    exec: Exec,
    stdin: Option<Vec<u8>>,
    output_limit: usize,
}

/// What [`Command::output`] keeps unless told otherwise.
const OUTPUT_LIMIT: usize = 256 << 20;

/// How long a command told to stop (past the output limit) is waited for.
const STOP_WAIT: Duration = Duration::from_secs(10);

impl Command {
    pub(super) fn new(client: &Client, command: String, mode: ExecMode) -> Command {
        Command {
            client: client.clone(),
            exec: Exec {
                command,
                mode,
                ..Exec::default()
            },
            stdin: None,
            output_limit: OUTPUT_LIMIT,
        }
    }

    /// Adds an argument (for [`Client::program`]; quoted so that the
    /// server splits it back into exactly this word).
    pub fn arg(&mut self, arg: impl AsRef<str>) -> &mut Command {
        let quoted = shlex::try_quote(arg.as_ref())
            .map(|q| q.into_owned())
            .unwrap_or_else(|_| arg.as_ref().replace('\0', ""));
        self.exec.command.push(' ');
        self.exec.command.push_str(&quoted);
        self
    }

    /// Adds arguments, as [`Command::arg`].
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for a in args {
            self.arg(a);
        }
        self
    }

    /// Sets an environment variable for the command (the server decides
    /// which it accepts: `--allow-env`).
    pub fn env(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Command {
        self.exec.env.push((key.into(), value.into()));
        self
    }

    /// Runs the command in `dir` on the server (`~` is the account's home).
    pub fn current_dir(&mut self, dir: impl Into<String>) -> &mut Command {
        self.exec.cwd = Some(dir.into());
        self
    }

    /// Asks the server to stop the command after `limit` (its own limit
    /// wins when shorter); the status then says [`ExitStatus::timed_out`].
    pub fn timeout(&mut self, limit: Duration) -> &mut Command {
        self.exec.timeout_ms = Some(u64::try_from(limit.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Runs the command on a pseudo-terminal of `rows` × `cols` with
    /// `TERM=term`: its stdout and stderr are the terminal's, both read
    /// from [`Child::stdout`].
    pub fn pty(&mut self, term: &str, rows: u16, cols: u16) -> &mut Command {
        self.exec.pty = Some(PtyRequest {
            term: term.to_string(),
            rows,
            cols,
        });
        self
    }

    /// Gives the command these bytes as its whole stdin (for
    /// [`Command::output`] and [`Command::status`]; with
    /// [`Command::spawn`], write to [`Child::stdin`] instead).
    pub fn stdin_bytes(&mut self, input: impl Into<Vec<u8>>) -> &mut Command {
        self.stdin = Some(input.into());
        self
    }

    /// Starts the command, with a pipe to its stdin and from its stdout
    /// and stderr. Costs one frame out; returns once it is sent.
    ///
    /// ```
    /// use std::io::{BufRead, BufReader, Write};
    /// # let server = rexec_server::EmbeddedServer::builder().start()?;
    /// # let client = rexec_client::Client::connect(&server.addr().to_string())?;
    /// let mut child = client.command("read name; echo hello $name").spawn()?;
    /// writeln!(child.stdin.take().unwrap(), "lab")?;
    /// let mut line = String::new();
    /// BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
    /// assert_eq!(line, "hello lab\n");
    /// assert!(child.wait()?.success());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spawn(&self) -> Result<Child, Error> {
        let id = self.client.inner.next_id();
        let mut exec = self.exec.clone();
        exec.id = id;
        exec.stdin = true;
        start(&self.client, id, |w| w.send(&ClientMsg::Exec(exec)))
    }

    /// Runs the command to its end and collects its output, as
    /// [`std::process::Command::output`]. Both streams are read at once
    /// (one on a thread of its own), so neither can hold the other up.
    ///
    /// ```
    /// # let server = rexec_server::EmbeddedServer::builder().start()?;
    /// # let client = rexec_client::Client::connect(&server.addr().to_string())?;
    /// let out = client.program("printf").args(["%s-%s", "a b", "c"]).output()?;
    /// assert_eq!(out.stdout, b"a b-c");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn output(&self) -> Result<Output, Error> {
        finish(self.spawn()?, self.stdin.as_deref(), self.output_limit)
    }

    /// Keep at most this many bytes of output (stdout and stderr
    /// together) in [`Command::output`]: past it the command is stopped
    /// and its status says [`ExitStatus::truncated`]. 256 MiB unless set:
    /// a server could send without end.
    pub fn output_limit(&mut self, bytes: usize) -> &mut Command {
        self.output_limit = bytes;
        self
    }

    /// Runs the command to its end, its output dropped; its status.
    pub fn status(&self) -> Result<ExitStatus, Error> {
        self.output().map(|o| o.status)
    }
}

/// Opens command `id`'s queues, then sends its request with `send`.
pub(super) fn start(
    client: &Client,
    id: u32,
    send: impl FnOnce(&Writer) -> io::Result<()>,
) -> Result<Child, Error> {
    let inner = &client.inner;
    let taps = inner.routes.open(id).map_err(Error::disconnected)?;
    if let Err(e) = send(&inner.writer) {
        inner.routes.close(id);
        return Err(Error::disconnected(e.to_string()));
    }
    let Taps {
        stdout,
        stderr,
        end,
    } = taps;
    Ok(Child {
        client: client.clone(),
        id,
        stdin: Some(ChildStdin {
            client: client.clone(),
            id,
        }),
        stdout: Some(ChildStdout(Pipe::new(stdout))),
        stderr: Some(ChildStderr(Pipe::new(stderr))),
        end,
        ended: None,
    })
}

/// Sends request `id` with `send` and collects what it answers, as a
/// command's output.
pub(super) fn collect(
    client: &Client,
    id: u32,
    send: impl FnOnce(&Writer) -> io::Result<()>,
) -> Result<Output, Error> {
    finish(start(client, id, send)?, None, OUTPUT_LIMIT)
}

/// Gives `child` its whole stdin, reads both its streams to their ends
/// (at most `limit` bytes of both together) and waits for it.
fn finish(mut child: Child, input: Option<&[u8]>, limit: usize) -> Result<Output, Error> {
    let mut stdin = child.stdin.take();
    if let (Some(pipe), Some(input)) = (stdin.as_mut(), input) {
        pipe.write_all(input)
            .map_err(|e| Error::disconnected(e.to_string()))?;
    }
    drop(stdin); // end of input
    let cap = Cap {
        taken: Arc::new(AtomicUsize::new(0)),
        limit,
        client: child.client.clone(),
        id: child.id,
    };
    let err_pipe = child.stderr.take();
    let err_cap = cap.clone();
    let errs = std::thread::spawn(move || err_cap.read(err_pipe));
    let (stdout, out_cut) = cap.read(child.stdout.take());
    let (stderr, err_cut) = errs.join().unwrap_or_default();
    if !(out_cut || err_cut) {
        let status = child.wait()?;
        return Ok(Output {
            status,
            stdout,
            stderr,
        });
    }
    // Past the limit: the command was told to stop, what more it sends is
    // dropped, and a server that goes on without end is not waited for.
    let mut status = child.wait_for(STOP_WAIT)?;
    status.truncated = true;
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// The output limit of one [`Command::output`], shared by its two
/// streams' readers.
#[derive(Debug, Clone)]
struct Cap {
    taken: Arc<AtomicUsize>,
    limit: usize,
    client: Client,
    id: u32,
}

impl Cap {
    /// Reads `pipe` to its end while the bytes taken from both pipes stay
    /// within the limit; whether it stopped at the limit. The first to
    /// pass it tells the server to stop the command and ends both pipes.
    fn read<R: Read>(&self, pipe: Option<R>) -> (Vec<u8>, bool) {
        let mut v = Vec::new();
        let Some(mut pipe) = pipe else {
            return (v, false);
        };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => return (v, self.taken.load(Ordering::Relaxed) > self.limit),
                Ok(n) => {
                    let before = self.taken.fetch_add(n, Ordering::Relaxed);
                    let room = self.limit.saturating_sub(before);
                    v.extend_from_slice(&buf[..n.min(room)]);
                    if n > room {
                        let inner = &self.client.inner;
                        let _ = inner.writer.send(&ClientMsg::Cancel { id: self.id });
                        inner.routes.mute(self.id);
                        return (v, true);
                    }
                }
            }
        }
    }
}

/// A finished command: how it ended and all it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// All it wrote to stdout.
    pub stdout: Vec<u8>,
    /// All it wrote to stderr.
    pub stderr: Vec<u8>,
}

/// How a command's end became known.
fn ended(end: End) -> Result<ExitStatus, Error> {
    match end {
        End::Exited(x) => Ok(ExitStatus::from_exited(&x)),
        End::Refused(e) => Err(Error::from_refusal(e)),
        End::Lost(why) => Err(Error::disconnected(why)),
    }
}

/// A running remote command. Take its pipes out (as with
/// [`std::process::Child`]) and [`Child::wait`] for its end.
///
/// Output not read waits in queues of 16 MiB per stream; past that the
/// connection's reader waits too, and so do the other commands of the
/// same [`Client`]: read both streams (or drop the one you do not want,
/// which throws its output away).
#[derive(Debug)]
pub struct Child {
    client: Client,
    id: u32,
    /// The command's stdin; dropping it (or [`ChildStdin::close`]) is its
    /// end of file.
    pub stdin: Option<ChildStdin>,
    /// The command's stdout.
    pub stdout: Option<ChildStdout>,
    /// The command's stderr.
    pub stderr: Option<ChildStderr>,
    end: Receiver<End>,
    ended: Option<Result<ExitStatus, Error>>,
}

impl Child {
    /// The command's number on its connection.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Waits for the command to end. Its stdin is closed first, as
    /// [`std::process::Child::wait`] does, so that a command reading it
    /// can end.
    pub fn wait(&mut self) -> Result<ExitStatus, Error> {
        drop(self.stdin.take());
        if let Some(done) = &self.ended {
            return done.clone();
        }
        let done = match self.end.recv() {
            Ok(end) => ended(end),
            Err(_) => Err(Error::disconnected("the connection's reader ended".into())),
        };
        self.ended = Some(done.clone());
        done
    }

    /// [`Child::wait`], for at most `limit`: for a command told to stop,
    /// from a server that might not.
    fn wait_for(&mut self, limit: Duration) -> Result<ExitStatus, Error> {
        drop(self.stdin.take());
        let done = match self.end.recv_timeout(limit) {
            Ok(end) => ended(end),
            Err(RecvTimeoutError::Timeout) => Err(Error::Refused(format!(
                "the server did not stop command {} within {}s of being told to",
                self.id,
                limit.as_secs()
            ))),
            Err(RecvTimeoutError::Disconnected) => {
                Err(Error::disconnected("the connection's reader ended".into()))
            }
        };
        self.ended = Some(done.clone());
        done
    }

    /// Stops the command (its whole process group, as a Ctrl-C to
    /// `rexec` does); [`Child::wait`] then gives its status.
    pub fn kill(&mut self) -> Result<(), Error> {
        self.client
            .inner
            .writer
            .send(&ClientMsg::Cancel { id: self.id })
            .map_err(|e| Error::disconnected(e.to_string()))
    }
}

/// The command's stdin: each write is one frame to the server.
#[derive(Debug)]
pub struct ChildStdin {
    client: Client,
    id: u32,
}

impl ChildStdin {
    /// The end of the command's input (as dropping it).
    pub fn close(self) {}
}

impl Write for ChildStdin {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Frames of at most 256 KiB, as rexec's own stdin.
        let n = buf.len().min(256 * 1024);
        self.client.inner.writer.send_stdin(self.id, &buf[..n])?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ChildStdin {
    fn drop(&mut self) {
        let _ = self
            .client
            .inner
            .writer
            .send(&ClientMsg::StdinEof { id: self.id });
    }
}

/// Chunks from the reader thread, read as a byte stream.
#[derive(Debug)]
struct Pipe {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Pipe {
    fn new(rx: Receiver<Vec<u8>>) -> Pipe {
        Pipe {
            rx,
            chunk: Vec::new(),
            at: 0,
        }
    }
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(c) => (self.chunk, self.at) = (c, 0),
                // The command ended (or the connection): end of file.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The command's stdout, read as it arrives; end of file once the
/// command has ended.
#[derive(Debug)]
pub struct ChildStdout(Pipe);

/// The command's stderr, as [`ChildStdout`].
#[derive(Debug)]
pub struct ChildStderr(Pipe);

impl Read for ChildStdout {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Read for ChildStderr {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}
