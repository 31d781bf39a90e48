//! systemd's socket activation: started by a `.socket` unit, rexecd finds
//! its listening socket already open as descriptor 3, with `LISTEN_FDS=1`
//! and `LISTEN_PID` set to its own pid (`sd_listen_fds(3)`), and serves on
//! it instead of binding `--listen`. The `listenfd` crate reads the
//! variables, checks that the descriptor is a TCP socket, marks it
//! close-on-exec and removes the variables, so that nothing rexecd starts
//! sees them.

use std::net::TcpListener;

/// The listening socket systemd passed, if it passed one. Call before any
/// thread starts: the variables are removed from the environment.
pub fn inherited_listener() -> Result<Option<TcpListener>, String> {
    let mut fds = listenfd::ListenFd::from_env();
    match fds.len() {
        0 => Ok(None),
        1 => fds
            .take_tcp_listener(0)
            .map_err(|e| format!("the socket passed as descriptor 3 (LISTEN_FDS=1): {e}")),
        n => Err(format!(
            "{n} sockets passed (LISTEN_FDS={n}); rexecd serves on one: give its socket \
             unit one ListenStream"
        )),
    }
}
