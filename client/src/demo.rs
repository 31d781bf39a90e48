//! `rexec demo`: rexec end to end against an embedded server,
//! `rexec demo sticky`: why TCP needs message framing, shown on a real
//! connection, and `rexec demo udp` (demo_udp.rs): how UDP differs.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use rexec_proto::{
    ClientMsg, Exec, HEADER_LEN, MAX_FRAME_LIMIT, ServerEvent, ServerMsg, parse_frame,
};
use rexec_server::{Config, Protocol, Server, ServerHandle};

use crate::error::ClientError;
use crate::run::{self, Sinks};
use crate::session::{ConnectOptions, Session};
use crate::trace::{header_hex, show};

/// The tutorials' receive size.
const RECV: usize = 1024;
/// A command whose output is tens of KB: `seq 1 10000`, 48,894 bytes.
const BIG: &str = "seq 1 10000";
const SMALL: &str = "echo hello";
const FIRST: &str = "echo one";
const SECOND: &str = "echo two";

/// A part of the demo that can be run alone (`rexec demo PART`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoPart {
    /// The tutorials' sticky-packet cases, then the same over rexec's frames.
    Sticky,
    /// The tutorials' UDP echo: datagrams keep their edges, and a read too
    /// small for one loses the rest.
    Udp,
}

/// A rexecd running on a thread of this process, on a free loopback port.
#[derive(Debug)]
pub struct Embedded {
    pub addr: SocketAddr,
    handle: ServerHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Embedded {
    pub fn start(protocol: Protocol) -> io::Result<Embedded> {
        let server = Server::bind(Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            protocol,
            handle_signals: false,
            ..Config::default()
        })?;
        let addr = server.local_addr();
        let handle = server.handle();
        let thread = std::thread::Builder::new()
            .name(format!("rexecd-{protocol:?}"))
            .spawn(move || server.run())?;
        Ok(Embedded {
            addr,
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the sticky demo observed; the demo succeeds when the raw protocol
/// went wrong in both ways and the framed protocol got every reply right.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StickyReport {
    /// The reply to the small command began with the big one's leftovers.
    pub receiver_contaminated: bool,
    /// Two sends arrived as one read and ran as one garbled command.
    pub sender_merged: bool,
    /// Every reply over rexec frames was exactly what was expected.
    pub framed_exact: bool,
}

impl StickyReport {
    pub fn ok(&self) -> bool {
        self.receiver_contaminated && self.sender_merged && self.framed_exact
    }
}

pub fn main(part: Option<DemoPart>, connect: Option<&str>) -> i32 {
    let mut out = io::stdout().lock();
    let res = match part {
        None => basics(&mut out).and_then(|ok| {
            let sticky = sticky(&mut out, connect)?.ok();
            Ok(ok & sticky & crate::demo_udp::udp(&mut out)?)
        }),
        Some(DemoPart::Sticky) => sticky(&mut out, connect).map(|r| r.ok()),
        Some(DemoPart::Udp) => crate::demo_udp::udp(&mut out),
    };
    match res {
        Ok(true) => 0,
        Ok(false) => {
            eprintln!("rexec demo: something did not go as described above");
            1
        }
        Err(e) => {
            eprintln!("rexec demo: {e}");
            1
        }
    }
}

/// The output of `seq 1 10000`.
fn expected_big() -> Vec<u8> {
    (1..=10000)
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        .into_bytes()
}

/// Part 1: a few commands end to end against an embedded server.
fn basics(out: &mut impl Write) -> Result<bool, ClientError> {
    let server = Embedded::start(Protocol::Native)?;
    let w = |out: &mut dyn Write, s: String| writeln!(out, "{s}");
    w(
        out,
        format!(
            "rexec demo: an embedded rexecd is listening on {}\n",
            server.addr
        ),
    )?;
    let mut session = Session::connect_addr(server.addr, &ConnectOptions::default())?;
    let commands = [
        ("echo \"hello from $(uname -s)\"", 0),
        ("ls /no/such/dir", 2),
        ("echo to-stdout; echo to-stderr >&2; exit 3", 3),
    ];
    let mut ok = true;
    for (i, (cmd, want)) in commands.iter().enumerate() {
        let exec = Exec {
            id: i as u32 + 1,
            command: cmd.to_string(),
            ..Exec::default()
        };
        let mut sinks = Sinks::capture();
        let outcome = run::run(&mut session, exec, &mut sinks, None)?;
        let Sinks::Capture { stdout, stderr, .. } = &sinks else {
            unreachable!()
        };
        w(out, format!("$ {cmd}"))?;
        for (name, bytes) in [("stdout", stdout), ("stderr", stderr)] {
            for line in String::from_utf8_lossy(bytes).lines() {
                w(out, format!("  {name}: {line}"))?;
            }
        }
        let code = outcome.exit_code();
        w(out, format!("  exit status: {code}\n"))?;
        ok &= code == *want;
    }
    Ok(ok)
}

/// Waits until at least `want` bytes are waiting in the socket (or a few
/// seconds pass), so that what one `recv` returns does not depend on timing.
fn wait_for_bytes(s: &TcpStream, want: usize) -> io::Result<usize> {
    let mut buf = vec![0u8; want];
    let deadline = Instant::now() + Duration::from_secs(5);
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut seen = 0;
    while Instant::now() < deadline {
        match s.peek(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                seen = n;
                if n >= want {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(seen)
}

/// One `recv(1024)`, as the tutorials' client does.
fn recv_once(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut buf = [0u8; RECV];
    loop {
        match s.read(&mut buf) {
            Ok(n) => return Ok(buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Part 2: the two sticky-packet cases over the raw protocol, then the same
/// commands over rexec's frames.
pub fn sticky(out: &mut impl Write, connect: Option<&str>) -> Result<StickyReport, ClientError> {
    let mut report = StickyReport::default();
    let embedded;
    let raw_addr: SocketAddr = match connect {
        Some(a) => crate::addr::parse_host(a)
            .map_err(ClientError::Usage)
            .and_then(|(h, p)| {
                std::net::ToSocketAddrs::to_socket_addrs(&(h.as_str(), p))
                    .map_err(|e| ClientError::Resolve(e.to_string()))?
                    .next()
                    .ok_or_else(|| ClientError::Resolve(a.to_string()))
            })?,
        None => {
            embedded = Embedded::start(Protocol::Raw)?;
            embedded.addr
        }
    };
    let mut p = |s: String| writeln!(out, "{s}");
    p("== Sticky packets (粘包): TCP is a byte stream, not a message stream ==".into())?;
    p(format!(
        "Server speaking the tutorials' raw protocol (no header): {raw_addr}"
    ))?;
    p(String::new())?;

    report.receiver_contaminated = receiver_case(out, raw_addr)?;
    report.sender_merged = sender_case(out, raw_addr)?;
    report.framed_exact = framed_case(out)?;
    Ok(report)
}

/// Case 1: the receiver reads a fixed 1024 bytes, and a large reply's rest
/// is read as the next reply. True when that was seen.
fn receiver_case(out: &mut impl Write, raw_addr: SocketAddr) -> Result<bool, ClientError> {
    let mut p = |s: String| writeln!(out, "{s}");
    // Case 1: the receiver reads a fixed 1024 bytes.
    let big = expected_big();
    let mut s = TcpStream::connect(raw_addr)?;
    s.set_nodelay(true)?;
    p("1. Receiver side: the client reads each reply with one recv(1024).".into())?;
    s.write_all(BIG.as_bytes())?;
    wait_for_bytes(&s, big.len())?;
    let got1 = recv_once(&mut s)?;
    p(format!(
        "   send {BIG:?}: expected {} bytes, received {}",
        big.len(),
        got1.len()
    ))?;
    p(format!("     arrived: {}", show(&got1, 60)))?;
    s.write_all(SMALL.as_bytes())?;
    wait_for_bytes(&s, big.len() - got1.len() + 6)?;
    let got2 = recv_once(&mut s)?;
    p(format!(
        "   send {SMALL:?}: expected 6 bytes \"hello\\n\", received {}",
        got2.len()
    ))?;
    p(format!("     arrived: {}", show(&got2, 60)))?;
    let contaminated = got2 != b"hello\n" && big[got1.len()..].starts_with(&got2);
    if contaminated {
        p(format!(
            "   CONTAMINATED: that reply is bytes {}..{} of the previous output;",
            got1.len(),
            got1.len() + got2.len()
        ))?;
        p("   \"hello\" is still waiting behind the leftovers.".into())?;
    } else {
        p("   (no contamination seen this time)".into())?;
    }
    drop(s);
    p(String::new())?;

    Ok(contaminated)
}

/// Case 2: two small commands sent back to back arrive in one read and
/// run as one. True when that was seen.
fn sender_case(out: &mut impl Write, raw_addr: SocketAddr) -> Result<bool, ClientError> {
    let mut p = |s: String| writeln!(out, "{s}");
    // Case 2: the sender sends two small commands back to back.
    p("2. Sender side: two commands sent back to back, with two send() calls.".into())?;
    let mut s = TcpStream::connect(raw_addr)?;
    s.set_nodelay(true)?;
    // Keep the server busy (it reads the next command only when this one is
    // done) so that both sends are waiting in its socket when it next reads.
    s.write_all(b"sleep 1")?;
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(FIRST.as_bytes())?;
    s.write_all(SECOND.as_bytes())?;
    let merged_out = b"oneecho two\n";
    wait_for_bytes(&s, merged_out.len())?;
    let got = recv_once(&mut s)?;
    p(format!(
        "   send {FIRST:?}, send {SECOND:?}: expected \"one\\n\" and \"two\\n\""
    ))?;
    p(format!("     arrived: {}", show(&got, 60)))?;
    let merged = got == merged_out;
    if merged {
        p("   MERGED: the server's one recv(1024) returned \"echo oneecho two\"".into())?;
        p("   and ran it as a single command.".into())?;
    } else {
        p("   (the sends were not merged this time)".into())?;
    }
    drop(s);
    p(String::new())?;

    Ok(merged)
}

/// The fix: the same commands over rexec's frames, glued into one write.
/// True when every reply came back exact.
fn framed_case(out: &mut impl Write) -> Result<bool, ClientError> {
    let big = expected_big();
    let mut p = |s: String| writeln!(out, "{s}");
    // The fix: frames.
    p("3. The same commands over rexec's frames: [4-byte big-endian length][message].".into())?;
    let n = big.len() as u32;
    let order = if cfg!(target_endian = "little") {
        "little-endian"
    } else {
        "big-endian"
    };
    p("   (The tutorials' fix, struct.pack('i', n), writes n in the machine's byte".into())?;
    p(format!(
        "   order, {order} here: {n} is {}; rexec's header is",
        header_hex(&n.to_ne_bytes())
    ))?;
    p(format!(
        "   big-endian (network order): {}.)",
        header_hex(&n.to_be_bytes())
    ))?;
    let native = Embedded::start(Protocol::Native)?;
    let mut session = Session::connect_addr(native.addr, &ConnectOptions::default())?;
    let cmds = [BIG, SMALL, FIRST, SECOND];
    let msgs: Vec<ClientMsg> = cmds
        .iter()
        .enumerate()
        .map(|(i, c)| {
            ClientMsg::Exec(Exec {
                id: i as u32 + 1,
                command: c.to_string(),
                ..Exec::default()
            })
        })
        .collect();
    let wire = session.writer().send_glued(&msgs)?;
    let mut headers = Vec::new();
    let mut rest = wire.as_slice();
    while let Ok(Some((_, used))) = parse_frame(rest, MAX_FRAME_LIMIT) {
        headers.push(header_hex(&rest[..HEADER_LEN]));
        rest = &rest[used..];
    }
    p(format!(
        "   {} Exec frames sent in ONE write of {} bytes; headers:",
        cmds.len(),
        wire.len()
    ))?;
    p(format!("     {}", headers.join(" | ")))?;
    let Replies {
        outputs,
        frame_headers,
        first_frame,
    } = collect_replies(&mut session, cmds.len())?;
    let expected: [&[u8]; 4] = [&big, b"hello\n", b"one\n", b"two\n"];
    let mut framed_exact = true;
    for (i, (cmd, want)) in cmds.iter().zip(expected).enumerate() {
        let id = i as u32 + 1;
        let got = outputs.get(&id).map(Vec::as_slice).unwrap_or_default();
        let exact = got == want;
        framed_exact &= exact;
        let hs = frame_headers.get(&id).cloned().unwrap_or_default();
        let shown = match hs.len() {
            0 => "-".to_string(),
            1 => hs[0].clone(),
            n => format!("{} +{} more", hs[0], n - 1),
        };
        p(format!(
            "   {:<12} {:>6} bytes {}  Stdout frame {}",
            format!("{cmd:?}"),
            got.len(),
            if exact { "exact" } else { "WRONG" },
            shown
        ))?;
    }
    if let Some(&(len, data)) = first_frame.get(&1) {
        p(format!(
            "   A Stdout frame's length counts its output ({data} bytes) plus {} more:",
            len - data
        ))?;
        p("   the message kind, the command id and the output's length (varints).".into())?;
    }
    p(String::new())?;
    if framed_exact {
        p("Every framed reply matched: the length header tells the receiver where each".into())?;
        p("message ends, however TCP splits or glues the bytes.".into())?;
    }
    Ok(framed_exact)
}

/// What came back for the framed commands, by id.
#[derive(Default)]
struct Replies {
    outputs: HashMap<u32, Vec<u8>>,
    frame_headers: HashMap<u32, Vec<String>>,
    /// The first output frame of each command: (payload length, data length).
    first_frame: HashMap<u32, (usize, usize)>,
}

/// Reads frames until `count` commands have exited.
fn collect_replies(session: &mut Session, count: usize) -> Result<Replies, ClientError> {
    let mut r = Replies::default();
    let mut exited = 0;
    while exited < count {
        let (len, ev) = session.next_frame()?;
        match ev {
            ServerEvent::Output { id, data, .. } => {
                r.first_frame.entry(id).or_insert((len, data.len()));
                r.outputs.entry(id).or_default().extend_from_slice(data);
                r.frame_headers
                    .entry(id)
                    .or_default()
                    .push(header_hex(&(len as u32).to_be_bytes()));
            }
            ServerEvent::Msg(ServerMsg::Exited(_)) => exited += 1,
            ServerEvent::Msg(ServerMsg::Error(e)) => return Err(ClientError::Server(e)),
            ServerEvent::Msg(_) => {}
        }
    }
    Ok(r)
}
