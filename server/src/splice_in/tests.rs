use super::*;
use std::io::{Read, Write};
use std::os::fd::AsFd;

/// A loopback connection: (the client's end, rexecd's non-blocking end).
fn socket_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    (client, server)
}

/// A pipe whose write end (the command's stdin, as rexecd holds it)
/// does not block.
fn nonblocking_pipe() -> (std::io::PipeReader, std::io::PipeWriter) {
    let (rx, tx) = std::io::pipe().unwrap();
    rustix::fs::fcntl_setfl(&tx, rustix::fs::OFlags::NONBLOCK).unwrap();
    (rx, tx)
}

#[test]
fn bytes_move_from_a_socket_into_a_pipe_and_each_stop_is_told() {
    let (mut client, server) = socket_pair();
    let (mut rx, tx) = nonblocking_pipe();
    let mut scratch = [0u8; 64];

    // Nothing sent yet.
    assert_eq!(
        socket_to_pipe(&mut Os, server.as_fd(), tx.as_fd(), 10, &mut scratch).unwrap(),
        Err(Moved::SocketEmpty)
    );
    client.write_all(b"hello world").unwrap();
    let mut moved = 0;
    while moved < 5 {
        match socket_to_pipe(&mut Os, server.as_fd(), tx.as_fd(), 5 - moved, &mut scratch).unwrap()
        {
            Ok(n) => moved += n,
            Err(Moved::SocketEmpty) => std::thread::yield_now(),
            Err(other) => panic!("{other:?}"),
        }
    }
    let mut got = [0u8; 5];
    rx.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello", "only the bytes asked for");

    // A full pipe, with bytes waiting in the socket.
    let fill = vec![0u8; rustix::pipe::fcntl_getpipe_size(&tx).unwrap()];
    let mut tx_file = &tx;
    let mut filled = 0;
    while filled < fill.len() {
        match tx_file.write(&fill[filled..]) {
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        socket_to_pipe(&mut Os, server.as_fd(), tx.as_fd(), 6, &mut scratch).unwrap(),
        Err(Moved::PipeFull)
    );

    // The reader went away.
    drop(rx);
    assert_eq!(
        socket_to_pipe(&mut Os, server.as_fd(), tx.as_fd(), 6, &mut scratch).unwrap(),
        Err(Moved::PipeClosed)
    );

    // The client closed: the stream ended.
    let (_rx2, tx2) = std::io::pipe().unwrap();
    let mut rest = [0u8; 6];
    let mut plain = &server;
    loop {
        match plain.read(&mut rest) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
    drop(client);
    loop {
        match socket_to_pipe(&mut Os, server.as_fd(), tx2.as_fd(), 6, &mut scratch).unwrap() {
            Err(Moved::SocketEmpty) => std::thread::yield_now(),
            other => break assert_eq!(other, Err(Moved::Ended)),
        }
    }
}

/// At an urgent mark splice(2) moves nothing though bytes follow it:
/// `EAGAIN` on a non-blocking socket (with `FIONREAD` counting 0), 0 once
/// the stream has ended. Neither is the end, nor an empty socket: the
/// bytes come back read instead, in order, and the real end is still
/// told after them. Before, `EAGAIN` here meant waiting for an event
/// that never came (the connection's frame timed out).
#[test]
fn a_splice_that_stops_at_an_urgent_mark_falls_back_to_a_read() {
    let (mut client, server) = socket_pair();
    let (mut rx, tx) = nonblocking_pipe();
    let mut scratch = [0u8; 64];
    // One move of at most `left` bytes, waiting (boundedly) while the
    // socket is empty for loopback to deliver: bytes that are there
    // must come out.
    let mut step = |left: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match socket_to_pipe(&mut Os, server.as_fd(), tx.as_fd(), left, &mut scratch).unwrap() {
                Err(Moved::SocketEmpty) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(Moved::Read(n)) => break Err((Moved::Read(n), scratch[..n].to_vec())),
                Err(m) => break Err((m, Vec::new())),
                Ok(n) => break Ok(n),
            }
        }
    };
    for end in [false, true] {
        client.write_all(b"before").unwrap();
        rustix::net::send(&client, b"!", rustix::net::SendFlags::OOB).unwrap();
        client.write_all(b"after!").unwrap();
        if end {
            client.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let (mut piped, mut read) = (Vec::new(), Vec::new());
        let mut left = 12;
        while left > 0 {
            match step(left) {
                Ok(n) => {
                    let mut got = vec![0u8; n];
                    rx.read_exact(&mut got).unwrap();
                    piped.extend_from_slice(&got);
                    left -= n;
                }
                Err((Moved::Read(n), bytes)) => {
                    read.extend_from_slice(&bytes);
                    left -= n;
                }
                Err((other, _)) => panic!("{other:?} with {left} bytes to come (end {end})"),
            }
        }
        assert_eq!(piped, b"before", "spliced up to the mark (end {end})");
        assert_eq!(read, b"after!", "read past it (end {end})");
    }
    assert_eq!(
        step(1),
        Err((Moved::Ended, Vec::new())),
        "the real end is still told"
    );
}

/// poll(2) fails with `EINTR` when a signal handler runs during it,
/// with a zero timeout and `SA_RESTART` too, and rexecd catches
/// SIGCHLD, which arrives all the time under load: asking whether the
/// pipe is full must not fail then (it closed the connection in the
/// middle of an upload, the soak's lost stdin).
#[test]
fn a_signal_during_the_pipe_check_is_not_an_error() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};
    let (_rx, tx) = nonblocking_pipe();
    while rustix::io::write(&tx, &[0u8; 4096]).is_ok() {}
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&handled);
    // SAFETY: the handler only increments an atomic (async-signal-safe).
    let handler = unsafe {
        signal_hook::low_level::register(signal_hook::consts::SIGUSR2, move || {
            counter.fetch_add(1, Ordering::Relaxed);
        })
    }
    .unwrap();
    // SAFETY: pthread_self has no preconditions; the thread it names
    // (this one) outlives the sender, which is joined below.
    let me = unsafe { libc::pthread_self() };
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: `me` is alive until this thread is joined.
                assert_eq!(unsafe { libc::pthread_kill(me, libc::SIGUSR2) }, 0);
            }
        })
    };
    // Checks while signals keep arriving: 20,000 of them and 2,000
    // signals handled at least (without the retry, about a fifth of
    // the checks failed here).
    let mut checked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (checked.len() < 20_000 || handled.load(Ordering::Relaxed) < 2_000)
        && Instant::now() < deadline
    {
        checked.push(pipe_full(&mut Os, tx.as_fd()));
    }
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    signal_hook::low_level::unregister(handler);
    assert!(
        handled.load(Ordering::Relaxed) >= 2_000,
        "signals were handled"
    );
    for r in checked {
        assert!(
            r.expect("a signal handled during poll is not an error"),
            "the pipe is full"
        );
    }
}

/// splice(2) refuses a target that is not a pipe (EINVAL): the bytes
/// are read instead, not taken for an error that closes the connection.
#[test]
fn a_target_that_is_not_a_pipe_gets_the_bytes_read_instead() {
    let (mut client, server) = socket_pair();
    let not_a_pipe = tempfile::tempfile().unwrap();
    client.write_all(b"to a file").unwrap();
    let mut scratch = [0u8; 64];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let moved = loop {
        match socket_to_pipe(&mut Os, server.as_fd(), not_a_pipe.as_fd(), 9, &mut scratch) {
            Ok(Err(Moved::SocketEmpty)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
            other => break other.expect("not an error"),
        }
    };
    assert_eq!(moved, Err(Moved::Read(9)));
    assert_eq!(&scratch[..9], b"to a file");
}
