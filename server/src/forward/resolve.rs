//! Names of forwarding targets, looked up off the loop: `getaddrinfo` may
//! ask DNS and wait for seconds, and the loop never waits. A few threads
//! take lookups from a bounded queue and send the answers back with a
//! wake-up, as the login threads do (auth/login/pool.rs). An IP address
//! needs no lookup and never comes here.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use crate::registry::ChanId;

/// Threads doing lookups.
const THREADS: usize = 2;
/// Lookups waiting for a thread; past that, a channel is refused.
const QUEUE: usize = 256;

/// A lookup's answer: the addresses, or why none.
pub type Answer = (ChanId, Result<Vec<SocketAddr>, String>);

/// The lookup threads, started on first use.
pub struct Resolver {
    wake: Arc<dyn Fn() + Send + Sync>,
    asks: Option<SyncSender<(ChanId, String, u16)>>,
    answers: Option<Receiver<Answer>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("started", &self.asks.is_some())
            .finish()
    }
}

impl Resolver {
    /// Lookups whose answers wake the loop through `waker`.
    pub fn waking(waker: Arc<mio::Waker>) -> Resolver {
        Resolver::new(Arc::new(move || {
            if let Err(e) = waker.wake() {
                log::error!("cannot wake the server for a name looked up: {e}");
            }
        }))
    }

    /// `wake` wakes the loop when an answer is ready.
    pub fn new(wake: Arc<dyn Fn() + Send + Sync>) -> Resolver {
        Resolver {
            wake,
            asks: None,
            answers: None,
        }
    }

    /// Asks for `host:port`'s addresses for channel `chan`; `Err` when too
    /// many lookups wait already.
    pub fn ask(&mut self, chan: ChanId, host: String, port: u16) -> Result<(), String> {
        if self.asks.is_none() {
            self.start()?;
        }
        let Some(asks) = &self.asks else {
            return Err("no thread to look names up".into());
        };
        match asks.try_send((chan, host, port)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(format!(
                "{QUEUE} name lookups wait already; give an address instead of a name"
            )),
            Err(TrySendError::Disconnected(_)) => Err("the name lookup threads are gone".into()),
        }
    }

    /// The answers that came, each once.
    pub fn answers(&mut self) -> Vec<Answer> {
        match &self.answers {
            Some(rx) => rx.try_iter().collect(),
            None => Vec::new(),
        }
    }

    fn start(&mut self) -> Result<(), String> {
        let (ask_tx, ask_rx) = mpsc::sync_channel::<(ChanId, String, u16)>(QUEUE);
        let (answer_tx, answer_rx) = mpsc::channel::<Answer>();
        let ask_rx = Arc::new(Mutex::new(ask_rx));
        for n in 0..THREADS {
            let (asks, answers, wake) = (ask_rx.clone(), answer_tx.clone(), self.wake.clone());
            std::thread::Builder::new()
                .name(format!("rexecd-resolve-{n}"))
                .spawn(move || {
                    loop {
                        let next = asks.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok((chan, host, port)) = next else {
                            return; // the server is gone
                        };
                        let found = (host.as_str(), port)
                            .to_socket_addrs()
                            .map(|a| a.collect::<Vec<_>>())
                            .map_err(|e| format!("{host}: {e}"));
                        if answers.send((chan, found)).is_err() {
                            return;
                        }
                        wake();
                    }
                })
                .map_err(|e| format!("cannot start a name lookup thread: {e}"))?;
        }
        self.asks = Some(ask_tx);
        self.answers = Some(answer_rx);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_comes_back_with_a_wake_up() {
        let (woke, woken) = std::sync::mpsc::channel();
        let woke = Mutex::new(woke);
        let mut r = Resolver::new(Arc::new(move || {
            let _ = woke.lock().unwrap().send(());
        }));
        // A numeric name: getaddrinfo answers it without asking anyone.
        r.ask(ChanId(4), "127.0.0.1".into(), 80).unwrap();
        // The wake-up comes once the answer is there (or the test fails).
        woken
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("no wake-up in 30 s");
        let answers = r.answers();
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].0, ChanId(4));
        assert_eq!(answers[0].1, Ok(vec!["127.0.0.1:80".parse().unwrap()]));
    }
}
