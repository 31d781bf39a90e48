//! Port forwarding at the client's end (protocol 8): `-L` listens here and
//! opens a channel per connection (rexecd connects to the target), `-R`
//! asks rexecd to listen and connects here for each connection it
//! accepts, and `-J` carries a whole rexec connection over one channel
//! (jump.rs).
//!
//! The session's reader hands every channel message to the
//! [`Forwarder`] (through the session's `Channels`), which never blocks: each
//! channel has its own two threads (channel.rs) and its own window, so a
//! stalled channel never holds up the others or the command.

pub mod channel;
pub mod jump;
pub mod spec;

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rexec_proto::{ClientMsg, FORWARDING_PROTOCOL, SERVER_CHANNEL, ServerMsg};

use crate::error::ClientError;
use crate::session::{Session, Writer};
use channel::Chan;
use spec::{Spec, Way};

/// Most channels open at once on one connection (the server's limit too).
const MAX_CHANNELS: usize = 4096;
/// How long connecting to a `-R` target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Table {
    chans: HashMap<u32, Arc<Chan>>,
    /// Channels of `-R` being connected here.
    connecting: usize,
    /// The next id for a channel we open.
    next: u32,
    /// `-R` forwards by the id of their `Listen`.
    remote: HashMap<u32, Spec>,
}

/// The channels of one session.
#[derive(Debug)]
pub struct Forwarder {
    writer: Arc<Writer>,
    table: Mutex<Table>,
    /// Who to name in messages (the server's address).
    server: String,
}

/// Attaches a forwarder to `session` and sets up `specs`: `-L` ports
/// listen at once (a port that cannot is an error), `-R` ports are asked
/// for (the server's answer comes while the session is read).
pub fn start(session: &mut Session, specs: &[Spec]) -> Result<Arc<Forwarder>, ClientError> {
    check_server(session)?;
    let fwd = attach(session);
    for spec in specs {
        match spec.way {
            Way::Local => fwd.listen_here(spec.clone())?,
            Way::Remote => fwd.listen_there(spec.clone())?,
        }
    }
    Ok(fwd)
}

/// A forwarder for `session`: its channel messages go there from now on.
pub fn attach(session: &mut Session) -> Arc<Forwarder> {
    let fwd = Arc::new(Forwarder {
        writer: session.writer(),
        table: Mutex::new(Table {
            next: 1,
            ..Table::default()
        }),
        server: session.addr.to_string(),
    });
    session.set_forwarder(Arc::new(Handle(fwd.clone())));
    fwd
}

/// An older server would drop the connection at the first channel
/// message: it is told plainly instead.
pub fn check_server(session: &Session) -> Result<(), ClientError> {
    let server = &session.server;
    if server.protocol < FORWARDING_PROTOCOL {
        return Err(ClientError::Usage(format!(
            "{} does not forward ports: it runs rexecd {} (protocol {}); forwarding needs \
             protocol {FORWARDING_PROTOCOL} (rexecd {} or later)",
            session.addr,
            rexec_proto::text::clean(&server.software, 40),
            server.protocol,
            rexec_proto::SOFTWARE_VERSION
        )));
    }
    Ok(())
}

impl Forwarder {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `-L`: listens here; each connection becomes a channel to the
    /// target, connected from the server's side.
    fn listen_here(self: &Arc<Self>, spec: Spec) -> Result<(), ClientError> {
        let addr = spec.local_address().map_err(ClientError::Usage)?;
        let listener = TcpListener::bind(addr)
            .map_err(|e| ClientError::Usage(format!("{spec}: cannot listen on {addr}: {e}")))?;
        let fwd = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("forward-accept".into())
            .spawn(move || accept_loop(listener, fwd, spec))?;
        Ok(())
    }

    /// `-R`: asks the server to listen.
    fn listen_there(&self, spec: Spec) -> Result<(), ClientError> {
        let id = {
            let mut t = self.lock();
            let id = t.remote.len() as u32 + 1;
            t.remote.insert(id, spec.clone());
            id
        };
        self.writer.send(&ClientMsg::Listen {
            id,
            bind: spec.bind.clone(),
            port: spec.port,
        })?;
        Ok(())
    }

    /// Opens a channel to `host:port` from the server's side, carrying
    /// `sock`; its errors are said on stderr, once each, unless `quiet`
    /// (a caller that reports them itself: `-J`).
    pub fn open(
        self: &Arc<Self>,
        sock: TcpStream,
        host: &str,
        port: u16,
        label: String,
        quiet: bool,
    ) -> Result<Arc<Chan>, ClientError> {
        let id = {
            let mut t = self.lock();
            if t.chans.len() >= MAX_CHANNELS {
                return Err(ClientError::Usage(format!(
                    "{label}: {MAX_CHANNELS} channels are open already"
                )));
            }
            let id = t.next;
            t.next = (t.next % (SERVER_CHANNEL - 1)) + 1;
            id
        };
        let mut chan = Chan::new(id, label, self.writer.clone(), sock);
        chan.quiet = quiet;
        let chan = Arc::new(chan);
        self.lock().chans.insert(id, chan.clone());
        self.writer.send(&ClientMsg::Open {
            id,
            host: host.to_string(),
            port,
        })?;
        chan.start(self.forget())?;
        Ok(chan)
    }

    /// What removes a channel once its threads are done.
    fn forget(self: &Arc<Self>) -> impl Fn(u32) + Send + Sync + 'static {
        let fwd = Arc::downgrade(self);
        move |id| {
            if let Some(f) = fwd.upgrade() {
                f.lock().chans.remove(&id);
            }
        }
    }

    /// Closes every channel: the connection they ran over is gone.
    pub fn close_all(&self, why: &str) {
        let chans: Vec<Arc<Chan>> = self.lock().chans.values().cloned().collect();
        for c in chans {
            c.set_opened(Err(why.to_string()));
            c.close(None);
        }
    }

    /// A channel message from the server (the session's reader calls
    /// this; it never blocks).
    fn handle(self: &Arc<Self>, msg: ServerMsg) {
        let chan = |id: u32| self.lock().chans.get(&id).cloned();
        match msg {
            ServerMsg::ChannelData { id, data } => {
                if let Some(c) = chan(id)
                    && let Err(e) = c.deliver(data)
                {
                    eprintln!("rexec: {}: {e}", c.label);
                }
            }
            ServerMsg::ChannelAck { id, bytes } => {
                if let Some(c) = chan(id) {
                    c.acked(bytes);
                }
            }
            ServerMsg::ChannelEof { id } => {
                if let Some(c) = chan(id) {
                    c.ended();
                }
            }
            ServerMsg::ChannelClose { id, error } => {
                if let Some(c) = chan(id) {
                    if let Some(e) = error.as_deref().filter(|_| !c.quiet) {
                        eprintln!("rexec: {}: {}", c.label, clean(e));
                    }
                    c.set_opened(Err(error.as_deref().map_or("closed".into(), clean)));
                    c.close(None);
                }
            }
            ServerMsg::Opened { id, peer } => {
                if let Some(c) = chan(id) {
                    c.set_opened(Ok(peer));
                }
            }
            ServerMsg::Listening { id, result } => {
                let Some(spec) = self.lock().remote.get(&id).cloned() else {
                    return;
                };
                match result {
                    Ok(port) if spec.port == 0 => {
                        eprintln!("rexec: {spec}: {} listens on port {port}", self.server)
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("rexec: {spec}: {}", clean(&e)),
                }
            }
            ServerMsg::Accepted { listen, id, from } => self.accepted(listen, id, from),
            _ => {}
        }
    }

    /// A connection came to a `-R` port: connect to its target here, on a
    /// thread of its own (the reader never waits).
    fn accepted(self: &Arc<Self>, listen: u32, id: u32, from: String) {
        let refuse = |why: String| {
            let _ = self.writer.send(&ClientMsg::ChannelClose {
                id,
                error: Some(why),
            });
        };
        let spec = {
            let mut t = self.lock();
            let Some(spec) = t.remote.get(&listen).cloned() else {
                return; // not ours: a lying server
            };
            if id & SERVER_CHANNEL == 0 || t.chans.contains_key(&id) {
                return;
            }
            if t.chans.len() + t.connecting >= MAX_CHANNELS {
                drop(t);
                return refuse(format!("{MAX_CHANNELS} channels are open already"));
            }
            t.connecting += 1;
            spec
        };
        let fwd = self.clone();
        let started = std::thread::Builder::new()
            .name("forward-connect".into())
            .spawn(move || {
                let label = format!("{spec} (from {})", clean(&from));
                let reached = connect(&spec.host, spec.host_port);
                fwd.lock().connecting -= 1;
                let sock = match reached {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("rexec: {label}: {e}");
                        let _ = fwd
                            .writer
                            .send(&ClientMsg::ChannelClose { id, error: Some(e) });
                        return;
                    }
                };
                let chan = Arc::new(Chan::new(id, label, fwd.writer.clone(), sock));
                fwd.lock().chans.insert(id, chan.clone());
                if fwd.writer.send(&ClientMsg::Opened { id }).is_ok()
                    && chan.start(fwd.forget()).is_err()
                {
                    chan.close(Some(Some("no thread for the channel".into())));
                }
            });
        if started.is_err() {
            self.lock().connecting -= 1;
            refuse("no thread to connect".into());
        }
    }
}

/// The session's reader hands channel messages over here.
#[derive(Debug)]
struct Handle(Arc<Forwarder>);

impl crate::session::Channels for Handle {
    fn on_message(&self, msg: ServerMsg) {
        self.0.handle(msg);
    }
}

/// Accepts `-L` connections until the forwarder is gone.
fn accept_loop(listener: TcpListener, fwd: Weak<Forwarder>, spec: Spec) {
    let label = spec.to_string();
    for conn in listener.incoming() {
        let Some(f) = fwd.upgrade() else {
            return;
        };
        match conn {
            Ok(sock) => {
                if let Err(e) = f.open(sock, &spec.host, spec.host_port, label.clone(), false) {
                    eprintln!("rexec: {label}: {e}");
                }
            }
            Err(e) => {
                eprintln!("rexec: {label}: accept: {e}");
                // Out of descriptors, say: not a busy loop.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Connects to a `-R` target here.
fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("{host}: {e}"))?;
    let mut last = format!("{host}: no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("connect to {addr}: {e}"),
        }
    }
    Err(last)
}

/// A server's text, safe to print.
fn clean(s: &str) -> String {
    rexec_proto::text::clean(s, 300)
}
