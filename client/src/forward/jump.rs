//! `-J GATEWAY` (ProxyJump): a rexec connection to the target carried
//! over one channel of a connection to a gateway rexecd. The gateway only
//! connects and carries bytes: the hello, TLS and the login are between
//! this client and the target, end to end.
//!
//! The session code speaks over a TCP socket, so the channel's near end
//! is one: a loopback connection this process makes to itself, whose
//! other end the channel carries. Over plain TCP the login names the
//! address the gateway reached (its `Opened`), as the target sees it; a
//! gateway is trusted to say it truly (with TLS nothing is taken on its
//! word: the exporter binds the login to the TLS session).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::addr::{hostport, parse_host};
use crate::error::ClientError;
use crate::session::{ConnectOptions, Jump, Session};

/// How long the gateway may take to reach the target, when no connect
/// timeout is given.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects to `spec` through the gateway `jump`.
pub fn connect(spec: &str, opts: &ConnectOptions, jump: &Jump) -> Result<Session, ClientError> {
    let (host, port) = parse_host(spec).map_err(ClientError::Usage)?;
    let mut gateway = Session::connect(&jump.address, &jump.opts)?;
    super::check_server(&gateway)?;
    let fwd = super::attach(&mut gateway);
    let (near, far) = loopback_pair()?;
    let label = format!("-J {}", jump.address);
    let chan = fwd.open(far, &host, port, label, true)?;
    // The gateway's session is read on a thread of its own from now on:
    // its channel messages go to the forwarder; when it ends, so does
    // the channel, and the target's session sees its end.
    let gateway_addr = gateway.addr;
    std::thread::Builder::new()
        .name("jump-gateway".into())
        .spawn(move || {
            let why = loop {
                if let Err(e) = gateway.next_event() {
                    break e;
                }
            };
            fwd.close_all(&format!("the gateway {gateway_addr}: {why}"));
        })?;
    let peer = chan
        .wait_opened(opts.connect_timeout.unwrap_or(OPEN_TIMEOUT))
        .map_err(|e| {
            ClientError::Unreachable(
                format!("{} through {}", hostport(&host, port), jump.address),
                std::io::Error::other(e),
            )
        })?;
    let addr: SocketAddr = peer.parse().map_err(|_| {
        ClientError::Protocol(format!(
            "the gateway {gateway_addr} says it reached {:?}, which is not an address",
            rexec_proto::text::clean(&peer, 60)
        ))
    })?;
    let inner = ConnectOptions {
        jump: None,
        ..opts.clone()
    };
    Session::over(near, addr, &host, &hostport(&host, port), &inner)
}

/// Two ends of a loopback TCP connection made by this process: the
/// listener takes only the connection whose address is ours (another
/// local program racing to the port gets nothing).
fn loopback_pair() -> Result<(TcpStream, TcpStream), ClientError> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let near = TcpStream::connect(listener.local_addr()?)?;
    let ours = near.local_addr()?;
    for _ in 0..16 {
        let (far, from) = listener.accept()?;
        if from == ours {
            return Ok((near, far));
        }
    }
    Err(ClientError::Usage(
        "cannot make a loopback connection for -J: others keep connecting to it".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn the_loopback_pair_is_one_connection() {
        let (mut a, mut b) = loopback_pair().unwrap();
        a.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        assert_eq!(a.local_addr().unwrap(), b.peer_addr().unwrap());
    }
}
