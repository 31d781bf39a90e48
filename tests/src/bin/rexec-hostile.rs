//! Hostile neighbours for `bench/run`'s fairness row, speaking the protocol
//! by hand over loopback:
//!
//! - `rexec-hostile nonreader ADDR`: says hello, starts `yes`, never reads;
//!   runs until killed.
//! - `rexec-hostile flood ADDR SECONDS`: says hello, starts one command,
//!   then sends `Exec` frames for the same id (each answered with an error)
//!   as fast as the server takes them for SECONDS, discarding the replies;
//!   prints how many it has sent so far, once a second. Each costs the server a message, no process,
//!   so what is measured is the event loop's fairness.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rexec_proto::{ClientMsg, Exec};
use rexec_tests::wire::{frame, hello};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, addr) = match (args.get(1), args.get(2)) {
        (Some(m), Some(a)) => (m.as_str(), a.as_str()),
        _ => {
            eprintln!("usage: rexec-hostile nonreader ADDR | flood ADDR SECONDS");
            std::process::exit(2);
        }
    };
    let mut sock = TcpStream::connect(addr).unwrap_or_else(|e| {
        eprintln!("rexec-hostile: {addr}: {e}");
        std::process::exit(1);
    });
    let exec = |id: u32, command: &str| {
        frame(&ClientMsg::Exec(Exec {
            id,
            command: command.into(),
            ..Exec::default()
        }))
    };
    let mut first = frame(&hello());
    match mode {
        "nonreader" => {
            first.extend(exec(1, "yes"));
            let _ = sock.write_all(&first);
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        "flood" => {
            let secs: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
            first.extend(exec(1, "sleep 600"));
            let _ = sock.write_all(&first);
            let mut reader = sock.try_clone().expect("clone the socket");
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
            });
            let until = Instant::now() + Duration::from_secs(secs);
            let mut sent = 0u32;
            let mut said = Instant::now();
            while Instant::now() < until {
                if said.elapsed() >= Duration::from_secs(1) {
                    println!("{sent}");
                    said = Instant::now();
                }
                let batch: Vec<u8> = (0..100).flat_map(|_| exec(1, "true")).collect();
                if sock.write_all(&batch).is_err() {
                    break;
                }
                sent = sent.wrapping_add(100);
            }
            println!("{sent}");
        }
        _ => {
            eprintln!("rexec-hostile: unknown mode {mode}");
            std::process::exit(2);
        }
    }
}
