//! A test author's program: a real rexecd on a free loopback port, a
//! client of it, and checks of what a command does on "the remote side".
//!
//! cargo run -p rexec-client --example test_author

use std::io::{BufRead, BufReader, Write};

use rexec_client::{Client, Error};
use rexec_server::EmbeddedServer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Copies run by starting this program again: let those runs through.
    rexec_server::run_helper_if_asked();
    let server = EmbeddedServer::builder().token("for tests").start()?;
    let addr = server.addr().to_string();

    // A wrong token is an error of its own kind.
    match Client::builder().token("wrong").connect(&addr) {
        Err(Error::Auth { .. }) => println!("a wrong token is refused"),
        other => return Err(format!("expected an auth error, got {other:?}").into()),
    }
    let client = Client::builder().token("for tests").connect(&addr)?;

    // The program under test, fed line by line, answered line by line.
    let mut child = client
        .command("while read n; do echo $((n * n)); done")
        .spawn()?;
    let mut input = child.stdin.take().ok_or("no stdin")?;
    let mut output = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    for n in 1..=3 {
        writeln!(input, "{n}")?;
        let mut line = String::new();
        output.read_line(&mut line)?;
        assert_eq!(line.trim(), (n * n).to_string());
    }
    drop(input);
    assert!(child.wait()?.success());

    // Several commands at once on the one connection.
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let client = client.clone();
            std::thread::spawn(move || client.run(&format!("echo {i}")))
        })
        .collect();
    for (i, w) in workers.into_iter().enumerate() {
        let out = w.join().map_err(|_| "a worker panicked")??;
        assert_eq!(out.stdout, format!("{i}\n").into_bytes());
    }
    println!("all checks passed");
    Ok(())
}
