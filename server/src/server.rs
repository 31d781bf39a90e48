//! The event loop's owner and router.
//!
//! One [`Server`] owns everything: the listener, every [`Connection`] and
//! every [`Proc`] (a pipe event touches both, so one owner is right). This
//! file holds only its state, [`Server::bind`], [`Server::run`] and the two
//! routers, for events and for timers, each arm a single call. The
//! behaviour lives in `impl Server` blocks in the child modules, in the order
//! bytes flow:
//!
//! | room | what it does |
//! |---|---|
//! | `accept` | accept, admit, the hello (held back after failed auth) |
//! | `input` | socket reads → messages → actions; closing; idleness |
//! | `keys` | a signed key: allowed in, for which account (login thread) |
//! | `command` | Exec → spawn; stdin to the child; cancel; time limits |
//! | `transfer` | Put, Get, List → a transfer helper and its typed request |
//! | `jobs` | Job → a job helper (start, list, attach, kill, clean) |
//! | `forward` | Open, Listen, channel data → forwarded connections |
//! | `listen` | `-R`: ports listened on for a client, their accepts |
//! | `deadlines` | a connection's timers: frame, idle, keepalive |
//! | `output` | child pipes → frames → socket; backpressure |
//! | `reap` | child exit → `Exited`; the audit line |
//! | `tutorial` | the seed/raw protocols' reads and replies |
//! //! | `reload` | SIGHUP: the settings read again and swapped in |
//! | `shutdown` | SIGTERM: a grace for commands, then stop, flush, return |

mod accept;
mod budget;
mod command;
mod deadlines;
mod ending;
mod forward;
mod held;
mod input;
mod jobs;
mod keys;
mod listen;
mod output;
mod penalty;
#[cfg(test)]
mod played;
mod reap;
mod reload;
mod shutdown;

pub use reload::Loader;
mod stdin_splice;
mod transfer;
mod tutorial;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use std::os::fd::AsRawFd;

use mio::event::Event;
use mio::net::TcpListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Token, Waker};
use rustls::crypto::SecureRandom;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::config::Config;
use crate::connection::Connection;
use crate::process::Proc;
use crate::registry::{ConnId, ProcId, Registry, Slot};
use crate::spawner::Spawner;
use crate::timer::{Timer, Timers};

use penalty::AuthFailures;

const SIGNALS: Token = Token(1);
const WAKER: Token = Token(2);
/// A spawner thread finished starting a command.
const SPAWNED: Token = Token(3);
/// Pipes left to fill are read again (coalesce.rs).
const COALESCE: Token = Token(4);
/// The listening sockets: one per address (`--listen`, or the sockets
/// systemd passed), with the tokens from here on.
const FIRST_LISTENER: usize = 5;
/// Most listening sockets.
pub const MAX_LISTENERS: usize = 16;
const FIRST_DYNAMIC: usize = FIRST_LISTENER + MAX_LISTENERS;

/// How soon the loop looks at the memory budget again while connections
/// wait for it.
const BUDGET_LOOK: Duration = Duration::from_millis(10);
/// Threads that start commands: two starts proceed at once while the loop
/// goes on serving.
const SPAWNER_THREADS: usize = 2;
/// Largest chunk read from a child pipe, and so the largest copied output
/// frame.
const PIPE_CHUNK: usize = 64 * 1024;

/// Stops a running [`Server`] from another thread.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
}

impl ServerHandle {
    /// Asks the server to shut down as on SIGTERM: stop accepting, stop the
    /// running commands, flush, return from [`Server::run`].
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            log::error!("cannot wake the server for shutdown: {e}");
        }
    }
}

/// The rexecd server. [`Server::bind`], then [`Server::run`].
///
/// It owns the tables (connections, commands, poll registrations, timers)
/// and routes events between them; each connection and each command owns
/// its own state and says what happened (connection.rs, process.rs).
pub struct Server {
    cfg: Config,
    registry: Registry,
    conns: HashMap<ConnId, Connection>,
    procs: HashMap<ProcId, Proc>,
    timers: Timers,
    /// Connections that used their share of a loop turn with input left.
    backlog: Backlog,
    /// Where child output and socket input are read into.
    scratch: Box<[u8]>,
    /// The listener and who may come in (accept.rs).
    door: Door,
    /// The memory budget and kernel pipe memory (budget.rs).
    budget: Budget,
    /// The threads that start commands (spawner.rs).
    spawner: Spawner,
    /// Fast commands' pipes left to fill a moment (coalesce.rs).
    coalesce: crate::coalesce::Coalesce,
    /// Forwarded ports: channels and listeners (forward.rs).
    forwards: crate::forward::Forwards,
    /// Forwarding targets' names, looked up off the loop.
    resolver: crate::forward::resolve::Resolver,
    ids: Ids,
    /// Signals, the stop handle, and the shutdown's progress (shutdown.rs).
    stop: Stop,
    /// SIGHUP's reading of the settings (reload.rs).
    reloads: reload::Reloads,
    /// The time of this loop turn: the clock is read once per turn, after
    /// the poll, and everything decided in the turn is decided at it.
    now: Instant,
    /// The wall clock, read at start: `now`'s wall time is derived from it
    /// (an `authorized_keys` expiry-time).
    wall: crate::timer::Wall,
}

/// The way in: the listener, and what admission keeps track of.
struct Door {
    /// One per address; empty once shutdown began.
    listeners: Vec<TcpListener>,
    local_addrs: Vec<SocketAddr>,
    /// The source of auth challenges (the TLS provider's, from the kernel).
    random: &'static dyn SecureRandom,
    auth_failures: AuthFailures,
    /// Connections waiting to authenticate (counted against max_startups).
    startups: usize,
    /// accept() is failing (out of descriptors); logged once per episode.
    accept_failing: bool,
    /// Kept in reserve for refusing a connection when out of descriptors.
    spare_fd: Option<std::os::fd::OwnedFd>,
    /// With `--login`: the threads that check accounts' keys (login.rs).
    logins: Option<crate::auth::login::Logins>,
    /// Keys being decided, and refusals waiting for their time (keys.rs).
    key_waits: keys::KeyWaits,
}

/// What the memory budget (`--max-buffer`) keeps track of.
#[derive(Debug)]
struct Budget {
    /// Bytes held in queues, all connections together (recounted by
    /// `check_budget`, estimated in between).
    held: usize,
    checked: Instant,
    /// A connection is held back, or paused a pipe, for memory: the budget
    /// is recounted every 10 ms until none is.
    waiting: bool,
    /// Output pipes grown to `splice::BIG_PIPE` (kernel memory, at most
    /// 64 at once).
    big_pipes: usize,
}

/// The next ids handed out.
#[derive(Debug)]
struct Ids {
    conn: u64,
    proc: u64,
    /// For the tutorial protocols' commands, which carry none.
    tutorial: u32,
}

/// Stopping: by signal or by [`ServerHandle`].
struct Stop {
    signals: Option<Signals>,
    handle: ServerHandle,
    begun: bool,
    /// The running commands were told to stop (the grace is over).
    stopping: bool,
    /// Set when shutdown stops waiting for commands and flushes.
    deadline: Option<Instant>,
}

/// Connections deferred to the next loop turn, each at most once.
#[derive(Debug, Default)]
struct Backlog {
    queue: VecDeque<ConnId>,
    queued: HashSet<ConnId>,
}

impl Backlog {
    fn push(&mut self, id: ConnId) {
        if self.queued.insert(id) {
            self.queue.push_back(id);
        }
    }

    /// The connections deferred so far; they may be deferred again.
    fn take(&mut self) -> Vec<ConnId> {
        self.queued.clear();
        self.queue.drain(..).collect()
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addrs", &self.door.local_addrs)
            .field("connections", &self.conns.len())
            .field("commands", &self.procs.len())
            .field("registered", &self.registry.len())
            .field("shutting_down", &self.stop.begun)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds a listening socket for each address. Nothing is accepted
    /// until [`Server::run`]. An address that cannot be bound is an error
    /// naming it.
    pub fn bind(cfg: Config) -> io::Result<Server> {
        let listeners = cfg
            .addresses()
            .map(|a| {
                TcpListener::bind(a).map_err(|e| io::Error::new(e.kind(), format!("{a}: {e}")))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Server::serving(cfg, listeners)
    }

    /// Serves on sockets already listening: the ones systemd passed
    /// (socket activation, activation.rs).
    pub fn from_listeners(
        cfg: Config,
        listeners: Vec<std::net::TcpListener>,
    ) -> io::Result<Server> {
        let listeners = listeners
            .into_iter()
            .map(|l| l.set_nonblocking(true).map(|()| TcpListener::from_std(l)))
            .collect::<io::Result<Vec<_>>>()?;
        Server::serving(cfg, listeners)
    }

    /// A server with no listener, for the router's unit tests: its
    /// clients are played in memory and admitted by hand (played.rs).
    #[cfg(test)]
    pub(crate) fn unbound(cfg: Config) -> io::Result<Server> {
        Server::serving(cfg, Vec::new())
    }

    fn serving(cfg: Config, mut listeners: Vec<TcpListener>) -> io::Result<Server> {
        let started = Instant::now();
        crate::process::keep_inherited_from_commands();
        let registry = Registry::new(FIRST_DYNAMIC)?;
        let local_addrs = accept::watch_listeners(&registry, &mut listeners, cfg.listen)?;
        let waker = Arc::new(Waker::new(registry.mio(), WAKER)?);
        let logins = match cfg.login {
            true => {
                let waker = waker.clone();
                Some(crate::auth::login::Logins::start(
                    cfg.permit_root_login,
                    move || {
                        if let Err(e) = waker.wake() {
                            log::error!("cannot wake the server for a login: {e}");
                        }
                    },
                ))
            }
            false => None,
        };
        let signals = if cfg.handle_signals {
            let mut s = Signals::new([SIGINT, SIGTERM, SIGCHLD, SIGHUP])?;
            registry
                .mio()
                .register(&mut s, SIGNALS, Interest::READABLE)?;
            Some(s)
        } else {
            None
        };
        // After the signal handlers: see Spawner::new.
        let listening: Vec<_> = listeners.iter().map(AsRawFd::as_raw_fd).collect();
        let spawner = Spawner::new(SPAWNER_THREADS, &listening)?;
        if let Some(fd) = spawner.fd() {
            registry
                .mio()
                .register(&mut SourceFd(&fd.as_raw_fd()), SPAWNED, Interest::READABLE)?;
        }
        let resolver = crate::forward::resolve::Resolver::waking(waker.clone());
        let coalesce = crate::coalesce::Coalesce::new()?;
        registry.mio().register(
            &mut SourceFd(&coalesce.fd().as_raw_fd()),
            COALESCE,
            Interest::READABLE,
        )?;
        Ok(Server {
            cfg,
            registry,
            conns: HashMap::new(),
            procs: HashMap::new(),
            timers: Timers::default(),
            backlog: Backlog::default(),
            scratch: vec![0; PIPE_CHUNK].into_boxed_slice(),
            door: Door {
                listeners,
                local_addrs,
                random: rustls::crypto::ring::default_provider().secure_random,
                auth_failures: AuthFailures::default(),
                startups: 0,
                accept_failing: false,
                spare_fd: accept::spare_descriptor(),
                logins,
                key_waits: keys::KeyWaits::default(),
            },
            budget: Budget {
                held: 0,
                checked: started,
                waiting: false,
                big_pipes: 0,
            },
            spawner,
            coalesce,
            forwards: crate::forward::Forwards::new(),
            resolver,
            ids: Ids {
                conn: 1,
                proc: 1,
                tutorial: 0,
            },
            stop: Stop {
                signals,
                handle: ServerHandle {
                    waker,
                    stop: Arc::new(AtomicBool::new(false)),
                },
                begun: false,
                stopping: false,
                deadline: None,
            },
            reloads: reload::Reloads::new(),
            now: started,
            wall: crate::timer::Wall::new(started, SystemTime::now()),
        })
    }

    /// The address actually bound (with the real port when 0 was asked);
    /// the first, when there are several.
    pub fn local_addr(&self) -> SocketAddr {
        self.door.local_addrs[0]
    }

    /// Every address listened on, in the order given.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.door.local_addrs
    }

    /// A handle that stops the server from another thread.
    pub fn handle(&self) -> ServerHandle {
        self.stop.handle.clone()
    }

    /// Serves until shut down (SIGINT, SIGTERM or [`ServerHandle::shutdown`]).
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            // (The time of the last turn: a timer may fire as late as that
            // turn took.)
            let timeout = if !self.backlog.is_empty() {
                Some(Duration::ZERO) // deferred input: look at events, then serve it
            } else if self.budget.waiting {
                // Connections wait for memory: look again soon even if
                // nothing happens (check_budget).
                let t = self.timers.timeout(self.now);
                Some(t.map_or(BUDGET_LOOK, |t| t.min(BUDGET_LOOK)))
            } else {
                self.timers.timeout(self.now)
            };
            let polled = self.registry.poll(&mut events, timeout);
            // The one reading of the clock in the loop.
            self.now = Instant::now();
            if let Err(e) = polled {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                self.on_event(ev);
            }
            self.run_backlog();
            // Starts that finished while this turn ran go out now, not a
            // turn later (a turn is long when a client floods us).
            self.take_spawned();
            self.fire_timers();
            self.check_budget(self.now);
            if self.stop.begun && self.shutdown_done() {
                log::info!("shut down");
                return Ok(());
            }
        }
    }

    fn on_event(&mut self, ev: &Event) {
        match ev.token() {
            Token(t) if (FIRST_LISTENER..FIRST_DYNAMIC).contains(&t) => {
                self.accept(t - FIRST_LISTENER)
            }
            SIGNALS => self.on_signals(),
            SPAWNED => self.take_spawned(),
            COALESCE => self.release_pipes(),
            WAKER => {
                // A login checked (keys.rs), a name looked up
                // (forward.rs), settings read again (reload.rs), or a
                // stop asked for.
                self.take_logins();
                self.take_resolved();
                self.take_reloaded();
                if self.stop.handle.stop.load(Ordering::SeqCst) && !self.stop.begun {
                    self.begin_shutdown();
                }
            }
            token => match self.registry.slot(token) {
                Some(Slot::Conn(id)) => self.on_conn_event(id, ev.into()),
                Some(Slot::Pipe(proc, stream)) => self.pump(proc, stream),
                Some(Slot::Stdin(proc)) => self.write_stdin(proc),
                Some(Slot::Pidfd(proc)) => self.reap(proc),
                Some(Slot::Channel(ch)) => self.on_channel_event(ch),
                Some(Slot::Listener(l)) => self.accept_forwarded(l),
                None => {} // a source closed since this event was queued
            },
        }
    }

    /// Timers are never cancelled: each handler checks that it still applies.
    fn fire_timers(&mut self) {
        let now = self.now;
        while let Some(t) = self.timers.pop_due(now) {
            match t {
                Timer::ProcTimeout(proc) => self.time_out(proc),
                Timer::KillGroup(pgid) => self.kill_after_grace(pgid),
                Timer::GroupDeadline { pgid, at } => self.check_leftovers(pgid, at, now),
                Timer::PipeGrace(proc) => self.check_pipe_grace(proc),
                Timer::ConnIdle(id) => self.check_idle(id, now),
                Timer::Keepalive(id) => self.check_keepalive(id, now),
                Timer::SendHello(id) => self.send_hello(id),
                Timer::Handshake(id) => self.check_handshake(id, now),
                Timer::KeyCheck { conn, seq } => self.key_check_due(conn, seq),
                Timer::KeyAnswer(id) => self.answer_refusal(id),
                Timer::ConnCloseDeadline(id) => self.close_if_closing(id),
                Timer::FrameDeadline(id) => self.check_frame(id, now),
                Timer::AcceptRetry => self.accept_all(),
                Timer::ReapSweep => self.reap_sweep(),
                Timer::StopGrace => self.stop_commands(),
                Timer::ShutdownDeadline => self.stop.deadline = Some(now),
                Timer::ChannelConnect(ch) => self.channel_connect_due(ch),
            }
        }
    }
}
