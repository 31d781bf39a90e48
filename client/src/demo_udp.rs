//! `rexec demo udp`: the tutorials' UDP echo, for contrast with TCP's
//! sticky packets. A datagram keeps its edges (nothing sticks), but a read
//! too small for it loses the rest, one datagram has a size limit, and off
//! loopback nothing promises delivery or order: why command output goes
//! over TCP, framed.

use std::io::{self, Write};
use std::net::{SocketAddr, UdpSocket};
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::net::RecvFlags;

use crate::error::ClientError;
use crate::trace::show;

/// The tutorials' receive size.
const RECV: usize = 1024;
/// The datagram that does not fit in one `recvfrom(1024)`.
const LONG: usize = 2000;
/// The largest UDP payload over IPv4: 65,535 less the IP (20) and UDP (8)
/// headers.
const MAX_DATAGRAM: usize = 65_507;

/// A UDP echo server on a thread, as the tutorials write it: each datagram
/// received is sent back as it is. It stops when told with an empty one.
struct Echo {
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    fn start() -> io::Result<Echo> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        let addr = sock.local_addr()?;
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                if n == 0 {
                    return;
                }
                let _ = sock.send_to(&buf[..n], from);
            }
        });
        Ok(Echo {
            addr,
            thread: Some(thread),
        })
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        if let Ok(s) = UdpSocket::bind("127.0.0.1:0") {
            let _ = s.send_to(&[], self.addr);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One `recvfrom` into a buffer of `room` bytes: what arrived, and the
/// datagram's real length (`MSG_TRUNC` makes the kernel say it).
fn recv_datagram(sock: &UdpSocket, room: usize) -> io::Result<(Vec<u8>, usize)> {
    let mut buf = vec![0u8; room];
    let (_, real, _) = rustix::net::recvfrom(sock, &mut buf[..], RecvFlags::TRUNC)?;
    buf.truncate(real.min(room));
    Ok((buf, real))
}

/// Runs the UDP part; whether everything happened as it says.
pub fn udp(out: &mut impl Write) -> Result<bool, ClientError> {
    let echo = Echo::start()?;
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut p = |s: String| writeln!(out, "{s}");
    p("== UDP: a datagram keeps its edges, and loses what does not fit ==".into())?;
    p(format!(
        "A UDP echo server, as in the tutorials, on {} (a thread here).",
        echo.addr
    ))?;
    p(String::new())?;

    p("1. Two sendto() calls at once, \"hello\" then \"world\":".into())?;
    sock.send_to(b"hello", echo.addr)?;
    sock.send_to(b"world", echo.addr)?;
    let (a, _) = recv_datagram(&sock, RECV)?;
    let (b, _) = recv_datagram(&sock, RECV)?;
    for d in [&a, &b] {
        p(format!(
            "   recvfrom({RECV}) -> {} bytes {}",
            d.len(),
            show(d, 40)
        ))?;
    }
    let edges = a == b"hello" && b == b"world";
    p(format!(
        "   {}",
        if edges {
            "Each datagram came back whole and alone: with UDP nothing sticks."
        } else {
            "UNEXPECTED: the datagrams did not come back one by one."
        }
    ))?;
    p(String::new())?;

    p(format!(
        "2. One {LONG}-byte datagram, read with recvfrom({RECV}) as the tutorials do:"
    ))?;
    sock.send_to(&vec![b'x'; LONG], echo.addr)?;
    sock.send_to(b"after", echo.addr)?;
    let (first, real) = recv_datagram(&sock, RECV)?;
    let (next, _) = recv_datagram(&sock, RECV)?;
    p(format!(
        "   recvfrom({RECV}) -> {} bytes; MSG_TRUNC says the datagram had {real}:",
        first.len()
    ))?;
    p(format!(
        "   it was truncated, and its last {} bytes are gone for good.",
        real.saturating_sub(first.len())
    ))?;
    p(format!(
        "   The next recvfrom({RECV}) -> {} bytes {}: the next datagram,",
        next.len(),
        show(&next, 20)
    ))?;
    p("   not the rest (with TCP the rest would have waited, and stuck).".into())?;
    let truncated = first.len() == RECV && real == LONG && next == b"after";
    p(String::new())?;

    p(format!(
        "3. One datagram carries at most {MAX_DATAGRAM} bytes over IPv4 (65,535 less"
    ))?;
    p("   the IP and UDP headers):".into())?;
    let fits = sock.send_to(&vec![b'y'; MAX_DATAGRAM], echo.addr);
    let back = recv_datagram(&sock, 65_536).map(|(d, _)| d.len());
    let over = sock.send_to(&vec![b'z'; MAX_DATAGRAM + 1], echo.addr);
    p(format!(
        "   sendto({MAX_DATAGRAM} bytes) -> {}; {} came back",
        if fits.is_ok() { "sent" } else { "FAILED" },
        back.as_ref()
            .map_or("nothing".to_string(), |n| format!("{n} bytes"))
    ))?;
    p(format!(
        "   sendto({} bytes) -> {}",
        MAX_DATAGRAM + 1,
        match &over {
            Ok(_) => "sent (UNEXPECTED)".to_string(),
            Err(e) => format!("error: {e}"),
        }
    ))?;
    let limit = fits.is_ok() && back.ok() == Some(MAX_DATAGRAM) && over.is_err();
    p(String::new())?;

    p("4. So why not UDP for command output? Output is a stream of any length;".into())?;
    p("   a datagram is at most 64 KiB, and off loopback datagrams may be lost,".into())?;
    p("   duplicated or reordered, with nobody to say so. Splitting, numbering,".into())?;
    p("   resending and reordering them is what TCP already does; what TCP".into())?;
    p("   lacks is the edges, and a 4-byte length header per frame gives those".into())?;
    p("   back (rexec demo sticky).".into())?;
    p(String::new())?;
    Ok(edges && truncated && limit)
}
