//! systemd's readiness protocol (sd_notify(3)): under a unit of
//! `Type=notify`, rexecd says when it serves (`READY=1`, so that
//! `systemctl start` returns then, and a start that fails is seen as
//! failed), when it reads its settings again (`RELOADING=1`, then
//! `READY=1`, so that `systemctl reload` waits for the outcome) and when
//! it is stopping. Each is one datagram to `NOTIFY_SOCKET`, sent by the
//! `sd-notify` crate; without that variable nothing is sent. A failure
//! to send is logged and changes nothing else.

use sd_notify::NotifyState;

/// Serving, with a line for `systemctl status`.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Reading the settings again (SIGHUP); `ready` follows.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        // The time lets systemd match the reload to the request.
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// Shutting down (SIGTERM), with what it waits for.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

fn send(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        log::warn!("cannot tell systemd ({states:?}): {e}");
    }
}
