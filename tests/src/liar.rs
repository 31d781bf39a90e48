//! A lying rexec server for the client's hardening tests: it speaks the
//! protocol correctly enough to be believed, and answers each request with
//! whatever the test scripts: a listing that climbs out of the target, a
//! setuid mode, output that never ends, escape sequences.
//!
//! It listens on 127.0.0.1 only, serves one connection at a time, and its
//! thread ends when the test drops the [`Liar`] (the listener closes).

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rexec_proto::{
    ClientMsg, ExitStatus, Exited, FrameDecoder, PROTOCOL_VERSION, ServerHello, ServerMsg,
    encode_frame,
};

/// What the liar sends in answer to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Msg(ServerMsg),
    /// This message again and again, until the client goes away.
    Endless(ServerMsg),
}

/// The usual end of a command: `Exited` with this exit code.
pub fn exited(id: u32, code: i32) -> Reply {
    Reply::Msg(ServerMsg::Exited(Exited {
        id,
        status: ExitStatus::Code(code),
        timed_out: false,
        truncated: false,
        duration_ms: 1,
        bytes_out: 0,
    }))
}

/// `Stdout` for a command.
pub fn stdout(id: u32, data: &[u8]) -> Reply {
    Reply::Msg(ServerMsg::Stdout {
        id,
        data: data.to_vec(),
    })
}

/// A running liar; it stops when dropped.
#[derive(Debug)]
pub struct Liar {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Liar {
    /// Starts a liar whose hello says `software`, and which answers every
    /// request after the hello with `answer(request)`.
    pub fn start(
        software: &str,
        answer: impl FnMut(&ClientMsg) -> Vec<Reply> + Send + 'static,
    ) -> Liar {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the liar");
        let addr = listener.local_addr().expect("the liar's address");
        let stop = Arc::new(AtomicBool::new(false));
        let halt = stop.clone();
        let software = software.to_string();
        std::thread::spawn(move || {
            let mut answer = answer;
            for sock in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(sock) = sock {
                    serve(sock, &software, &mut answer);
                }
            }
        });
        Liar { addr, stop }
    }

    /// `127.0.0.1:PORT`, for the client's command line.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(mut sock: TcpStream, software: &str, answer: &mut impl FnMut(&ClientMsg) -> Vec<Reply>) {
    let mut dec = FrameDecoder::new();
    loop {
        match dec.read_from(&mut sock) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while let Ok(Some(msg)) = dec.next_message::<ClientMsg>() {
            let replies = match &msg {
                ClientMsg::Hello(_) => vec![Reply::Msg(ServerMsg::Hello(ServerHello {
                    protocol: PROTOCOL_VERSION,
                    software: software.to_string(),
                    challenge: None,
                }))],
                other => answer(other),
            };
            for r in replies {
                let ok = match r {
                    Reply::Msg(m) => send(&mut sock, &m),
                    Reply::Endless(m) => {
                        let mut frame = Vec::new();
                        encode_frame(&m, &mut frame);
                        while sock.write_all(&frame).is_ok() {}
                        false
                    }
                };
                if !ok {
                    return;
                }
            }
        }
    }
}

fn send(sock: &mut TcpStream, msg: &ServerMsg) -> bool {
    let mut frame = Vec::new();
    encode_frame(msg, &mut frame);
    sock.write_all(&frame).is_ok()
}
