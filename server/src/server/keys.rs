//! Keys: whether a key whose signature was good may come in, and for
//! which account (`--authorized-keys`: one file, read at start; `--login`:
//! the account's own file, read by the login threads, login.rs).
//!
//! Every refused key counts in the same penalty as a wrong token
//! (penalty.rs); an accepted key forgets the address's failures, so a
//! user whose agent offers a few other keys first is not slowed down.
//!
//! A refusal is answered at the same time whatever its reason (a bad
//! signature, an unknown account, root, a bad file, a key not listed, a
//! check that took too long): [`refusal_due`]. Otherwise the time to
//! refuse tells which accounts exist (issue 40: 277 µs for an unknown one,
//! 377 µs for an existing one). A check that takes longer than
//! [`check_limit`] (a home on an NFS server that went away) is given up on
//! and the key refused; its late answer is ignored.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use rexec_proto::ServerMsg;
use ssh_key::PublicKey;

use super::Server;
use crate::auth::authorized::{self, AuthorizedKeys};
use crate::auth::grant::Grant;
use crate::auth::login::Check;
use crate::protocol::Action;
use crate::registry::ConnId;
use crate::timer::Timer;

/// The shortest time from a key's arrival to its refusal.
pub const REFUSAL_FLOOR: Duration = Duration::from_millis(50);
/// The longest a key check may take, unless the handshake timeout is
/// shorter (then half of it, so that the refusal comes first).
const CHECK_LIMIT: Duration = Duration::from_secs(5);

/// When a refusal of a key that arrived at `asked` is answered, decided at
/// `now`: [`REFUSAL_FLOOR`] after it arrived, or twice, four times... that
/// when the check took longer (as OpenSSH pads a failed login), so that
/// the time says nothing of why.
pub fn refusal_due(asked: Instant, now: Instant) -> Instant {
    let took = now.saturating_duration_since(asked);
    let mut wait = REFUSAL_FLOOR;
    while wait < took {
        wait *= 2;
    }
    asked + wait
}

/// How long a key check may take with this handshake timeout.
pub fn check_limit(handshake: Duration) -> Duration {
    CHECK_LIMIT.min(handshake / 2)
}

/// The key logins in progress, by connection.
#[derive(Debug, Default)]
pub(super) struct KeyWaits(HashMap<ConnId, KeyWait>);

/// One connection's key being decided.
#[derive(Debug)]
struct KeyWait {
    /// Which key (the connection's count): a late verdict for an earlier
    /// one is ignored.
    seq: u64,
    /// When it arrived.
    asked: Instant,
    /// Its check is out (login threads).
    checking: bool,
    /// The refusal, decided, waiting for its time.
    refusal: Option<Action>,
}

impl KeyWaits {
    /// Whether the connection's key is still being decided or answered: it
    /// may send nothing meanwhile.
    pub(super) fn busy(&self, id: ConnId) -> bool {
        self.0.contains_key(&id)
    }

    pub(super) fn forget(&mut self, id: ConnId) {
        self.0.remove(&id);
    }
}

impl Server {
    /// A key arrived (`AuthKey`) on connection `id` at `now`.
    pub(super) fn key_arrived(&mut self, id: ConnId, now: Instant) {
        let seq = self.door.key_waits.0.get(&id).map_or(1, |w| w.seq + 1);
        self.door.key_waits.0.insert(
            id,
            KeyWait {
                seq,
                asked: now,
                checking: false,
                refusal: None,
            },
        );
    }

    /// A key with a good signature, for the account `user`: checked here
    /// against `--authorized-keys`, or handed to the login threads.
    pub(super) fn check_key(
        &mut self,
        id: ConnId,
        peer: SocketAddr,
        user: String,
        explicit: bool,
        key: PublicKey,
    ) {
        let fingerprint = authorized::fingerprint(&key);
        if let Some(logins) = &self.door.logins {
            let Some(wait) = self.door.key_waits.0.get_mut(&id) else {
                return;
            };
            let (seq, due) = (
                wait.seq,
                wait.asked + check_limit(self.cfg.handshake_timeout),
            );
            let check = Check {
                conn: id,
                seq,
                user: user.clone(),
                key,
                peer: peer.ip(),
                wall: self.wall.at(wait.asked),
            };
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.set_who(format!("{} by key {fingerprint}", clip(&user)));
            }
            wait.checking = logins.ask(check);
            if wait.checking {
                self.timers.at(due, Timer::KeyCheck { conn: id, seq });
            } else {
                self.key_verdict(id, Err("too many logins being checked".into()));
            }
            return;
        }
        let wall = self.wall.at(self.now);
        let verdict = match &self.cfg.authorized_keys {
            Some(file) => from_file(file, &key, &user, explicit, peer, wall),
            None => Err("no keys are accepted".into()),
        };
        if let (Some(conn), Some(file)) = (self.conns.get_mut(&id), &self.cfg.authorized_keys) {
            conn.set_who(format!("{} by key {fingerprint}", file.account));
        }
        self.key_verdict(id, verdict);
    }

    /// Takes every verdict the login threads reached.
    pub(super) fn take_logins(&mut self) {
        while let Some(v) = self.door.logins.as_ref().and_then(|l| l.take()) {
            let current = self.door.key_waits.0.get(&v.conn);
            if current.is_some_and(|w| w.seq == v.seq && w.checking) {
                self.key_verdict(v.conn, v.result);
            }
        }
    }

    /// The check of key `seq` on `id` is due: still out, it is given up on.
    pub(super) fn key_check_due(&mut self, id: ConnId, seq: u64) {
        let current = self.door.key_waits.0.get(&id);
        if current.is_some_and(|w| w.seq == seq && w.checking) {
            if let Some(logins) = &self.door.logins {
                logins.cancel(id);
            }
            let secs = check_limit(self.cfg.handshake_timeout).as_secs_f32();
            self.key_verdict(
                id,
                Err(format!(
                    "the check took longer than {secs} s (is the home directory stuck?)"
                )),
            );
        }
    }

    /// The key is in (with what its line allows), or refused: the reason
    /// is logged; the client hears only that the key was refused, at the
    /// time [`refusal_due`] says.
    fn key_verdict(&mut self, id: ConnId, verdict: Result<Grant, String>) {
        let Some(wait) = self.door.key_waits.0.get_mut(&id) else {
            return;
        };
        wait.checking = false;
        let Some(conn) = self.conns.get_mut(&id) else {
            self.door.key_waits.forget(id);
            return; // gone while its key was checked
        };
        let peer = conn.peer();
        let who = conn.who().unwrap_or_default();
        let Some(proto) = conn.protocol() else {
            return;
        };
        let action = proto.key_checked(verdict.is_ok());
        match (action, verdict) {
            (Action::KeyAccepted, Ok(grant)) => {
                log::info!(
                    event = "login",
                    peer:% = peer,
                    account = &*who;
                    "{peer}: authenticated: {who}"
                );
                conn.set_grant(grant);
                conn.queue(&ServerMsg::KeyAccepted);
                conn.flush();
                self.door.key_waits.forget(id);
                self.door.auth_failures.succeeded(peer.ip());
                self.left_startup(id);
            }
            (refusal, Err(why)) => {
                log::info!(
                    event = "refused",
                    peer:% = peer,
                    account = &*who,
                    why = why.as_str();
                    "{peer}: key refused ({who}: {why})"
                );
                self.refuse_key(id, refusal);
            }
            (other, Ok(_)) => log::error!("{peer}: unexpected answer to a key check: {other:?}"),
        }
    }

    /// Refuses the connection's key (`KeyRefused`, or the `Fail` of the
    /// last try): counted against its address now, answered at the time
    /// [`refusal_due`] says.
    pub(super) fn refuse_key(&mut self, id: ConnId, refusal: Action) {
        let now = self.now;
        let Some(wait) = self.door.key_waits.0.get_mut(&id) else {
            return;
        };
        let due = refusal_due(wait.asked, now);
        wait.refusal = Some(refusal);
        if let Some(conn) = self.conns.get(&id) {
            self.door.auth_failures.failed(conn.peer().ip(), now);
        }
        self.timers.at(due, Timer::KeyAnswer(id));
    }

    /// A refusal's time came: send it.
    pub(super) fn answer_refusal(&mut self, id: ConnId) {
        let Some(refusal) = self.door.key_waits.0.remove(&id).and_then(|w| w.refusal) else {
            return;
        };
        match refusal {
            Action::KeyRefused { tries_left } => {
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.queue(&ServerMsg::KeyRefused { tries_left });
                    conn.flush();
                }
            }
            Action::Fail { kind, message } => self.fail_conn(id, kind, message),
            other => log::error!("not a refusal: {other:?}"),
        }
    }
}

/// `--authorized-keys`: the key must be listed, its options must let the
/// client in, and an account named explicitly must be rexecd's.
fn from_file(
    file: &AuthorizedKeys,
    key: &PublicKey,
    user: &str,
    explicit: bool,
    peer: SocketAddr,
    wall: SystemTime,
) -> Result<Grant, String> {
    let line = file
        .find(key)
        .ok_or_else(|| format!("the key is not in {}", file.source.display()))?;
    if explicit && user != file.account {
        return Err(format!(
            "account {} asked for; keys here run as {}",
            clip(user),
            file.account
        ));
    }
    line.options.admits(peer.ip(), wall)?;
    Ok(Grant {
        account: None,
        forced: line.options.command.clone(),
        no_pty: line.options.no_pty,
        forwarding: line.options.forwarding.clone(),
    })
}

/// An account name from the client, for the log.
fn clip(s: &str) -> String {
    rexec_proto::text::clean(s, 40)
}

#[cfg(test)]
mod tests;
