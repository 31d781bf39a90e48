//! One connection, many commands: a reader thread owns the session's
//! receiving side and hands each frame to the command it names, through
//! that command's own bounded queues; senders share the session's
//! [`Writer`], which writes each frame whole under its lock.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use rexec_proto::{ErrorMsg, Exited, OutputStream, ServerEvent, ServerMsg};

use crate::session::Session;

/// Output chunks waiting per stream of one command before the reader
/// thread waits for them to be taken (and so, since output has no window
/// of its own in the protocol, every command of the connection waits).
/// With chunks of up to 256 KiB, at most 16 MiB per stream.
const QUEUED_CHUNKS: usize = 64;

/// What the reader thread tells a command.
#[derive(Debug)]
pub(crate) enum End {
    /// The command ended (or, for a job verb, the verb).
    Exited(Exited),
    /// The server refused or failed the command.
    Refused(ErrorMsg),
    /// The connection ended before the command did: why.
    Lost(String),
}

/// A command's queues, on the reader thread's side.
#[derive(Debug)]
struct Route {
    stdout: Option<SyncSender<Vec<u8>>>,
    stderr: Option<SyncSender<Vec<u8>>>,
    end: SyncSender<End>,
}

/// A command's queues, on its handle's side.
#[derive(Debug)]
pub(crate) struct Taps {
    pub stdout: Receiver<Vec<u8>>,
    pub stderr: Receiver<Vec<u8>>,
    pub end: Receiver<End>,
}

/// The commands waiting for frames, and why the connection ended, once
/// it has.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    routes: HashMap<u32, Route>,
    lost: Option<String>,
}

impl Routes {
    /// Queues for command `id`, to be made before its request is sent;
    /// the reason instead when the connection has ended.
    pub(crate) fn open(&self, id: u32) -> Result<Taps, String> {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = &t.lost {
            return Err(why.clone());
        }
        let (out_tx, stdout) = sync_channel(QUEUED_CHUNKS);
        let (err_tx, stderr) = sync_channel(QUEUED_CHUNKS);
        let (end_tx, end) = sync_channel(1);
        t.routes.insert(
            id,
            Route {
                stdout: Some(out_tx),
                stderr: Some(err_tx),
                end: end_tx,
            },
        );
        Ok(Taps {
            stdout,
            stderr,
            end,
        })
    }

    /// Forgets command `id` (its handle went away, or it could not be
    /// sent).
    pub(crate) fn close(&self, id: u32) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        t.routes.remove(&id);
    }

    /// Command `id`'s output is no longer wanted: its pipes end now (its
    /// end is still told).
    pub(crate) fn mute(&self, id: u32) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = t.routes.get_mut(&id) {
            (r.stdout, r.stderr) = (None, None);
        }
    }

    /// A chunk of output for `id`; the queue's sender, so that the send
    /// (which may wait) happens without the table's lock.
    fn output(&self, id: u32, stream: OutputStream) -> Option<SyncSender<Vec<u8>>> {
        let t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let r = t.routes.get(&id)?;
        match stream {
            OutputStream::Stdout => r.stdout.clone(),
            OutputStream::Stderr => r.stderr.clone(),
        }
    }

    /// Command `id` ended: its output queues close, its end is told.
    fn end(&self, id: u32, end: End) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = t.routes.remove(&id) {
            let _ = r.end.try_send(end);
        }
    }

    /// The connection ended: every waiting command is told why, and so is
    /// every later one.
    fn lose(&self, why: String) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        for (_, r) in t.routes.drain() {
            let _ = r.end.try_send(End::Lost(why.clone()));
        }
        t.lost = Some(why);
    }
}

/// Starts the thread that reads `session` until it ends.
pub(crate) fn start(mut session: Session, routes: Arc<Routes>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("rexec-reader".into())
        .spawn(move || {
            let why = loop {
                match session.next_event() {
                    Ok(ev) => {
                        if let Some(why) = route(&routes, ev) {
                            break why;
                        }
                    }
                    Err(e) => break e.to_string(),
                }
            };
            routes.lose(why);
        })?;
    Ok(())
}

/// Hands one frame to its command; the reason when it ends the
/// connection.
fn route(routes: &Routes, ev: ServerEvent<'_>) -> Option<String> {
    match ev {
        ServerEvent::Output { stream, id, data } => {
            if let Some(tx) = routes.output(id, stream) {
                // A handle that dropped this stream: the output is dropped.
                let _ = tx.send(data.to_vec());
            }
        }
        ServerEvent::Msg(ServerMsg::Exited(x)) => routes.end(x.id, End::Exited(x)),
        ServerEvent::Msg(ServerMsg::Error(e)) => match e.id {
            Some(id) => routes.end(id, End::Refused(e)),
            None => return Some(format!("the server closed the connection: {}", e.message)),
        },
        // Started, keepalive answers, and what this client never asks for.
        ServerEvent::Msg(_) => {}
    }
    None
}
