//! systemd's socket activation: started by a `.socket` unit, rexecd finds
//! its listening sockets already open from descriptor 3 on, with
//! `LISTEN_FDS=N` and `LISTEN_PID` set to its own pid (`sd_listen_fds(3)`),
//! and serves on them instead of binding `--listen`. The `listenfd` crate reads the
//! variables, checks that the descriptor is a TCP socket, marks it
//! close-on-exec and removes the variables, so that nothing rexecd starts
//! sees them.

use std::net::TcpListener;

/// The listening sockets systemd passed (one per `ListenStream`), if it
/// passed any. Call before any thread starts: the variables are removed
/// from the environment.
pub fn inherited_listeners() -> Result<Vec<TcpListener>, String> {
    let mut fds = listenfd::ListenFd::from_env();
    let n = fds.len();
    if n > crate::server::MAX_LISTENERS {
        return Err(format!(
            "{n} sockets passed (LISTEN_FDS={n}); rexecd serves on at most {}",
            crate::server::MAX_LISTENERS
        ));
    }
    (0..n)
        .map(|i| match fds.take_tcp_listener(i) {
            Ok(Some(l)) => Ok(l),
            Ok(None) => Err(format!(
                "descriptor {} (LISTEN_FDS={n}): already taken",
                3 + i
            )),
            Err(e) => Err(format!(
                "the socket passed as descriptor {} (LISTEN_FDS={n}): {e}",
                3 + i
            )),
        })
        .collect()
}
