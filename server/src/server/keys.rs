//! Keys: whether a key whose signature was good may come in, and for
//! which account (`--authorized-keys`: one file, read at start; `--login`:
//! the account's own file, read by the login thread, login.rs).
//!
//! Every refused key counts in the same penalty as a wrong token
//! (penalty.rs); an accepted key forgets the address's failures, so a
//! user whose agent offers a few other keys first is not slowed down.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use rexec_proto::{ErrorKind, ServerMsg};
use ssh_key::PublicKey;

use super::Server;
use crate::authorized::{self, AuthorizedKeys};
use crate::grant::Grant;
use crate::login::Check;
use crate::protocol::Action;
use crate::registry::ConnId;

impl Server {
    /// A key with a good signature, for the account `user`: checked here
    /// against `--authorized-keys`, or handed to the login thread.
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
            let check = Check {
                conn: id,
                user: user.clone(),
                key,
                peer: peer.ip(),
            };
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.set_who(format!("{} by key {fingerprint}", clip(&user)));
            }
            if !logins.ask(check) {
                self.key_verdict(id, Err("too many logins being checked".into()));
            }
            return;
        }
        let verdict = match &self.cfg.authorized_keys {
            Some(file) => from_file(file, &key, &user, explicit, peer),
            None => Err("no keys are accepted".into()),
        };
        if let (Some(conn), Some(file)) = (self.conns.get_mut(&id), &self.cfg.authorized_keys) {
            conn.set_who(format!("{} by key {fingerprint}", file.account));
        }
        self.key_verdict(id, verdict);
    }

    /// Tells the client its key was refused (`why` goes to the log only),
    /// and counts it against its address.
    pub(super) fn refuse_key(&mut self, id: ConnId, peer: SocketAddr, tries_left: u8, why: String) {
        log::info!("{peer}: key refused ({why})");
        self.door.auth_failures.failed(peer.ip(), Instant::now());
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.queue(&ServerMsg::KeyRefused { tries_left });
            conn.flush();
        }
    }

    /// Takes every verdict the login thread reached.
    pub(super) fn take_logins(&mut self) {
        while let Some(v) = self.door.logins.as_ref().and_then(|l| l.take()) {
            self.key_verdict(v.conn, v.result);
        }
    }

    /// The key is in (with what its line allows), or refused: the reason
    /// is logged; the client hears only that the key was refused.
    fn key_verdict(&mut self, id: ConnId, verdict: Result<Grant, String>) {
        let Some(conn) = self.conns.get_mut(&id) else {
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
                log::info!("{peer}: authenticated: {who}");
                conn.set_grant(grant);
                conn.queue(&ServerMsg::KeyAccepted);
                conn.flush();
                self.door.auth_failures.succeeded(peer.ip());
                self.left_startup(id);
            }
            (Action::KeyRefused { tries_left }, Err(why)) => {
                self.refuse_key(id, peer, tries_left, format!("{who}: {why}"));
            }
            (Action::Fail { kind, message }, verdict) => {
                if let Err(why) = verdict {
                    log::info!("{peer}: key refused ({who}: {why})");
                }
                if kind == ErrorKind::Auth {
                    self.door.auth_failures.failed(peer.ip(), Instant::now());
                }
                self.fail_conn(id, kind, message);
            }
            (other, _) => log::error!("{peer}: unexpected answer to a key check: {other:?}"),
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
    line.options.admits(peer.ip(), SystemTime::now())?;
    Ok(Grant {
        account: None,
        forced: line.options.command.clone(),
        no_pty: line.options.no_pty,
    })
}

/// An account name from the client, for the log.
fn clip(s: &str) -> String {
    rexec_proto::text::clean(s, 40)
}
