//! A command on a pseudo-terminal (`rexec -t`, or `rexec HOST` on a
//! terminal): the local terminal in raw mode, restored on every way out
//! (normal end, error, signal, panic); window size changes sent as
//! `Resize`; keys forwarded as bytes (Ctrl-C, Ctrl-Z and Ctrl-D go to the
//! remote program); ssh's escapes at the start of a line: `~.` disconnects,
//! `~?` lists them, `~~` sends one `~`.

use std::io::{self, IsTerminal, Read, Write};
use std::sync::Mutex;

use rexec_proto::{ClientMsg, PtyRequest};
use rustix::termios::{OptionalActions, Termios, tcgetattr, tcgetwinsize, tcsetattr};

use crate::error::ClientError;
use crate::run::{self, EXIT_CONNECTION, Outcome, Sinks};
use crate::session::Session;

/// The terminal settings to put back, while raw mode is on.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

/// Puts the local terminal back as it was (idempotent; any thread).
pub fn restore() {
    let saved = SAVED.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(t) = saved {
        let _ = tcsetattr(io::stdin(), OptionalActions::Now, &t);
    }
}

/// Raw mode on the local terminal for as long as it lives.
#[derive(Debug)]
struct RawMode;

impl RawMode {
    fn on() -> io::Result<RawMode> {
        let saved = tcgetattr(io::stdin())?;
        let mut raw = saved.clone();
        raw.make_raw();
        *SAVED.lock().unwrap_or_else(|p| p.into_inner()) = Some(saved);
        // A panic anywhere must not leave the terminal raw.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        tcsetattr(io::stdin(), OptionalActions::Now, &raw)?;
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}

/// The pty to ask for: this terminal's TERM and size (24x80 when unknown).
pub fn request() -> PtyRequest {
    let (rows, cols) = size().unwrap_or((24, 80));
    PtyRequest {
        term: std::env::var("TERM")
            .ok()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "xterm-256color".into()),
        rows,
        cols,
    }
}

fn size() -> Option<(u16, u16)> {
    let ws = tcgetwinsize(io::stdout())
        .or_else(|_| tcgetwinsize(io::stdin()))
        .ok()?;
    (ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Runs `exec` (which carries a pty request) with the terminal raw when
/// stdin is one, and returns how it ended.
pub fn run(
    session: &mut Session,
    exec: rexec_proto::Exec,
    host: &str,
) -> Result<Outcome, ClientError> {
    let id = exec.id;
    let raw = if io::stdin().is_terminal() {
        Some(RawMode::on()?)
    } else {
        None
    };
    watch_signals(session, id)?;
    let mut sinks = Sinks::terminal()?;
    let input: Box<dyn Read + Send> = match raw {
        Some(_) => Box::new(Escapes::new(io::stdin(), host.to_string())),
        None => Box::new(io::stdin()),
    };
    let outcome = run::run(session, exec, &mut sinks, Some(input));
    drop(raw);
    outcome
}

/// Sends `Resize` when the local window changes, and puts the terminal back
/// before dying of SIGTERM or SIGHUP.
fn watch_signals(session: &Session, id: u32) -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGTERM, SIGWINCH};
    let mut signals = signal_hook::iterator::Signals::new([SIGWINCH, SIGTERM, SIGHUP])?;
    let writer = session.writer();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGWINCH {
                    if let Some((rows, cols)) = size() {
                        let _ = writer.send(&ClientMsg::Resize { id, rows, cols });
                    }
                } else {
                    restore();
                    std::process::exit(128 + sig);
                }
            }
        })?;
    Ok(())
}

/// Stdin from a terminal (in its normal mode, no pty on the server) with
/// ssh's escapes taken out.
pub fn escapes(host: String) -> Box<dyn Read + Send> {
    Box::new(Escapes::new(io::stdin(), host))
}

/// Keys from the local terminal, with ssh's escapes taken out.
struct Escapes<R> {
    inner: R,
    host: String,
    /// The last key sent ended a line (or nothing was sent yet).
    line_start: bool,
    /// A `~` at the start of a line is held back until the next key.
    tilde: bool,
    /// Keys filtered but not yet returned: a held-back `~` and the key after
    /// it are two bytes for a read that may have room for one.
    pending: std::collections::VecDeque<u8>,
}

impl<R: Read> Escapes<R> {
    fn new(inner: R, host: String) -> Self {
        Escapes {
            inner,
            host,
            line_start: true,
            tilde: false,
            pending: std::collections::VecDeque::new(),
        }
    }

    /// Filters `input` into `out`; `Err` when the user disconnected.
    fn filter(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
        for &b in input {
            if self.tilde {
                self.tilde = false;
                match b {
                    b'.' => return Err(()),
                    b'?' => {
                        let _ = write!(
                            io::stderr(),
                            "\r\nSupported escape sequences:\r\n \
                             ~.   - disconnect\r\n \
                             ~?   - this message\r\n \
                             ~~   - send the escape character by typing it twice\r\n\
                             (Note that escapes are only recognized immediately after newline.)\r\n"
                        );
                        continue;
                    }
                    b'~' => {
                        out.push(b'~');
                        self.line_start = false;
                        continue;
                    }
                    other => {
                        out.extend_from_slice(&[b'~', other]);
                        self.line_start = matches!(other, b'\r' | b'\n');
                        continue;
                    }
                }
            }
            if b == b'~' && self.line_start {
                self.tilde = true;
                continue;
            }
            out.push(b);
            self.line_start = matches!(b, b'\r' | b'\n');
        }
        Ok(())
    }
}

impl<R: Read> Read for Escapes<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.pending.is_empty() {
            let mut keys = vec![0u8; buf.len()];
            let n = self.inner.read(&mut keys)?;
            if n == 0 {
                return Ok(0);
            }
            let mut out = Vec::with_capacity(n + 1);
            if self.filter(&keys[..n], &mut out).is_err() {
                restore();
                eprintln!("\r\nrexec: connection to {} closed (~.)", self.host);
                std::process::exit(EXIT_CONNECTION);
            }
            self.pending.extend(out);
        }
        // What does not fit now is returned by the next read, never dropped.
        let n = self.pending.len().min(buf.len());
        for (slot, b) in buf.iter_mut().zip(self.pending.drain(..n)) {
            *slot = b;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(input: &[&[u8]]) -> Result<Vec<u8>, ()> {
        let mut e = Escapes::new(io::empty(), "h".into());
        let mut out = Vec::new();
        for chunk in input {
            e.filter(chunk, &mut out)?;
        }
        Ok(out)
    }

    #[test]
    fn escapes_only_at_the_start_of_a_line() {
        assert_eq!(keys(&[b"ls ~/x\r"]), Ok(b"ls ~/x\r".to_vec()));
        assert_eq!(keys(&[b"~~"]), Ok(b"~".to_vec()));
        assert_eq!(keys(&[b"~a"]), Ok(b"~a".to_vec()));
        assert_eq!(keys(&[b"echo\r", b"~", b"."]), Err(()), "split reads");
        assert_eq!(keys(&[b"x~."]), Ok(b"x~.".to_vec()), "not after a key");
        assert_eq!(keys(&[b"~.",]), Err(()), "at the very start");
    }

    #[test]
    fn keys_that_do_not_fit_one_read_come_with_the_next() {
        // A held-back `~` and the next key are two bytes; read one at a time.
        let mut e = Escapes::new(&b"~a"[..], "h".into());
        let mut got = Vec::new();
        let mut one = [0u8; 1];
        while e.read(&mut one).unwrap() == 1 {
            got.push(one[0]);
        }
        assert_eq!(got, b"~a");
    }
}
