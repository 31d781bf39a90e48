//! Starting children off the event loop.
//!
//! Starting a process blocks its caller until the child has called `exec`
//! (`posix_spawn` and `vfork` suspend the parent that long, and with many
//! commands starting at once on a busy machine the child may wait for a CPU
//! first). Done on the loop thread, that stalled every other connection:
//! with 32 clients starting short commands, the loop spent most of its time
//! suspended in `clone3`. So the loop prepares a command (its pipes exist
//! and are watched), hands it to one of these threads, and is woken when
//! the child exists.
//!
//! Who fills the queue: `Exec`s, each of which already counts against
//! `--max-procs` (its `Proc` exists while it starts), so the queue is
//! bounded by that.

use std::process::{Child, Command};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use mio::Waker;

use crate::process::{self, CommandError, Pidfd};
use crate::registry::ProcId;

/// A command to start, for the loop's `Proc` `proc`.
#[derive(Debug)]
pub struct Job {
    pub proc: ProcId,
    pub cmd: Command,
}

/// A started command (or why it could not start).
#[derive(Debug)]
pub struct Done {
    pub proc: ProcId,
    pub result: Result<(Child, Option<Pidfd>), CommandError>,
}

/// The spawner threads and their two queues.
pub struct Spawner {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Spawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawner")
            .field("threads", &self.threads.len())
            .finish()
    }
}

impl Spawner {
    /// Starts `threads` spawner threads; each finished start wakes the loop
    /// through `waker`.
    pub fn new(threads: usize, waker: Arc<Waker>) -> std::io::Result<Spawner> {
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let jobs = jobs_rx.clone();
            let done = done_tx.clone();
            let waker = waker.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("spawner-{i}"))
                    .spawn(move || run(&jobs, &done, &waker))?,
            );
        }
        Ok(Spawner {
            jobs: Some(jobs_tx),
            done: done_rx,
            threads: handles,
        })
    }

    /// Queues a start. If no thread is left to take it (they only end when
    /// the spawner is dropped), it is started here and reported at once.
    pub fn submit(&self, job: Job) -> Option<Done> {
        let job = match &self.jobs {
            Some(tx) => match tx.send(job) {
                Ok(()) => return None,
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        Some(Done {
            proc: job.proc,
            result: process::start(job.cmd),
        })
    }

    /// A finished start, if there is one.
    pub fn try_done(&self) -> Option<Done> {
        self.done.try_recv().ok()
    }

    /// Waits up to `limit` for a finished start (shutdown only).
    pub fn wait_done(&self, limit: std::time::Duration) -> Option<Done> {
        self.done.recv_timeout(limit).ok()
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.jobs = None; // the threads see the queue close and return
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn run(jobs: &Mutex<Receiver<Job>>, done: &Sender<Done>, waker: &Waker) {
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else {
                return;
            };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return, // the server is gone
            }
        };
        let result = process::start(job.cmd);
        if done
            .send(Done {
                proc: job.proc,
                result,
            })
            .is_err()
        {
            return;
        }
        if let Err(e) = waker.wake() {
            log::error!("cannot wake the event loop: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};

    use mio::{Poll, Token};

    use super::*;

    /// A start that takes long (here a child that sleeps before `exec`)
    /// keeps a spawner thread busy, not the caller, which is woken when it
    /// is done.
    #[test]
    fn a_slow_start_does_not_hold_up_the_caller() {
        let mut poll = Poll::new().expect("poll");
        let waker = Arc::new(Waker::new(poll.registry(), Token(7)).expect("waker"));
        let spawner = Spawner::new(1, waker).expect("threads");
        let mut cmd = Command::new("true");
        // SAFETY: nanosleep is async-signal-safe and touches only the
        // timespec on this stack.
        unsafe {
            cmd.pre_exec(|| {
                let ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 400_000_000,
                };
                libc::nanosleep(&ts, std::ptr::null_mut());
                Ok(())
            });
        }
        let t = Instant::now();
        assert!(
            spawner
                .submit(Job {
                    proc: ProcId(1),
                    cmd
                })
                .is_none()
        );
        assert!(
            t.elapsed() < Duration::from_millis(200),
            "submit waited for the start: {:?}",
            t.elapsed()
        );
        assert!(
            spawner.try_done().is_none(),
            "started before the child could exec"
        );
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_secs(10)))
            .expect("poll");
        assert!(events.iter().any(|e| e.token() == Token(7)), "not woken");
        let done = spawner.try_done().expect("a finished start");
        assert_eq!(done.proc, ProcId(1));
        let (mut child, _) = done.result.expect("started");
        assert!(t.elapsed() >= Duration::from_millis(350));
        assert!(child.wait().expect("wait").success());
    }
}
