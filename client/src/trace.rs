//! `--trace`: every frame on stderr as it is sent or received, so a learner
//! sees the framing on a real connection.

use std::io::Write;

use rexec_proto::{ClientMsg, HEADER_LEN, ServerEvent, ServerMsg};

/// Formats the 4 header bytes of a frame as hex.
pub fn header_hex(header: &[u8]) -> String {
    header
        .iter()
        .take(HEADER_LEN)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn line(dir: &str, payload_len: usize, what: &str) -> String {
    let header = (payload_len as u32).to_be_bytes();
    format!(
        "[trace] {dir} {}  len={payload_len:<6} {what}",
        header_hex(&header)
    )
}

/// The trace line for a frame the client sends.
pub fn sent(msg: &ClientMsg, payload_len: usize) -> String {
    let what = match msg {
        ClientMsg::Exec(e) => format!("Exec id={} command={} bytes", e.id, e.command.len()),
        ClientMsg::Job { exec, verb } => format!(
            "Job id={} {verb:?} command={} bytes",
            exec.id,
            exec.command.len()
        ),
        ClientMsg::Stdin { id, data } => format!("Stdin id={id} data={} bytes", data.len()),
        ClientMsg::StdinEof { id } | ClientMsg::Cancel { id } => {
            format!("{} id={id}", msg.kind_name())
        }
        ClientMsg::Hello(h) => format!("Hello protocol={}", h.protocol),
        ClientMsg::Auth { answer } => format!("Auth answer={} bytes", answer.len()),
        ClientMsg::Resize { id, rows, cols } => format!("Resize id={id} {rows}x{cols}"),
        ClientMsg::Put(p) => format!(
            "Put id={} dest={} bytes size={}",
            p.id,
            p.dest.len(),
            p.size
        ),
        ClientMsg::PutEnd { id, .. } => format!("PutEnd id={id}"),
        ClientMsg::Get { id, path } => format!("Get id={id} path={} bytes", path.len()),
        ClientMsg::List { id, path } => format!("List id={id} path={} bytes", path.len()),
        ClientMsg::Tree { id, path, op } => {
            format!("Tree id={id} path={} bytes op={op:?}", path.len())
        }
        ClientMsg::Ping { seq } | ClientMsg::Pong { seq } => {
            format!("{} seq={seq}", msg.kind_name())
        }
        ClientMsg::AuthKey {
            user, public_key, ..
        } => {
            format!("AuthKey user={user} key={} bytes", public_key.len())
        }
        ClientMsg::Open { id, host, port } => format!("Open id={id} to={host}:{port}"),
        ClientMsg::Listen { id, bind, port } => format!("Listen id={id} on={bind}:{port}"),
        ClientMsg::ChannelData { id, data } => {
            format!("ChannelData id={id} data={} bytes", data.len())
        }
        ClientMsg::ChannelAck { id, bytes } => format!("ChannelAck id={id} bytes={bytes}"),
        ClientMsg::ChannelEof { id } | ClientMsg::Opened { id } => {
            format!("{} id={id}", msg.kind_name())
        }
        ClientMsg::ChannelClose { id, .. } => format!("ChannelClose id={id}"),
    };
    line("send", payload_len, &what)
}

/// The trace line for a frame the client received.
pub fn received(ev: &ServerEvent<'_>, payload_len: usize) -> String {
    let what = match ev {
        ServerEvent::Output { stream, id, data } => {
            format!("{stream:?} id={id} data={} bytes", data.len())
        }
        ServerEvent::Msg(m) => match m {
            ServerMsg::Hello(h) => format!("Hello protocol={} software={}", h.protocol, h.software),
            ServerMsg::Started { id, pid } => format!("Started id={id} pid={pid}"),
            ServerMsg::Exited(x) => format!("Exited id={} status={:?}", x.id, x.status),
            ServerMsg::Error(e) => format!("Error id={:?} kind={:?}", e.id, e.kind),
            ServerMsg::Ping { seq } | ServerMsg::Pong { seq } => {
                format!("{} seq={seq}", m.kind_name())
            }
            other => other.kind_name().to_string(),
        },
    };
    line("recv", payload_len, &what)
}

/// Writes a trace line to stderr, ignoring failures (tracing must never
/// break the command).
pub fn emit(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Shows a byte string on one line: escaped, and cut in the middle if long.
#[cfg(feature = "demo")]
pub fn show(bytes: &[u8], room: usize) -> String {
    let esc = |b: &[u8]| b.escape_ascii().to_string();
    let all = esc(bytes);
    if all.len() <= room {
        return format!("\"{all}\"");
    }
    let half = room.saturating_sub(5) / 2;
    let head = esc(&bytes[..half.min(bytes.len())]);
    let tail = esc(&bytes[bytes.len().saturating_sub(half)..]);
    format!(
        "\"{}...{}\"",
        &head[..half.min(head.len())],
        &tail[tail.len().saturating_sub(half)..]
    )
}

#[cfg(all(test, feature = "demo"))]
mod show_tests {
    use super::show;

    #[test]
    fn show_keeps_short_strings_and_cuts_long_ones() {
        assert_eq!(show(b"hi\n", 20), "\"hi\\n\"");
        let long = show(&[b'x'; 500], 30);
        assert!(long.contains("..."), "{long}");
        assert!(long.len() <= 34, "{long}");
    }
}
