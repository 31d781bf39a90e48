"""T13's ends: a sink that counts what each connection sends and answers
the count once the sender has shut down its side (so the count is known
to have arrived end to end, half-close included), a sender, and a holder
of many idle connections.

usage:
  python3 bench/tunnel.py sink               # prints "listening on PORT"
  python3 bench/tunnel.py send BYTES PORT    # exits 0 once the sink says BYTES
  python3 bench/tunnel.py hold N PORT        # N connections, each answered once;
                                             # prints "ready", holds them until stdin ends
"""
import os
import socket
import sys
import threading

CHUNK = 1 << 20


def serve(conn):
    buf = bytearray(CHUNK)
    first = conn.recv(1)
    if first == b"?":  # a holder's connection: answer, then stay idle
        conn.sendall(b"!")
        while conn.recv_into(buf):
            pass
        conn.close()
        return
    got = len(first)
    while True:
        k = conn.recv_into(buf)
        if k == 0:
            break
        got += k
    conn.sendall(got.to_bytes(8, "big"))
    conn.close()


def sink():
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(4096)
    print(f"listening on {ls.getsockname()[1]}", flush=True)
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def send(n, port):
    s = socket.create_connection(("127.0.0.1", port))
    buf = memoryview(bytes(CHUNK))
    left = n
    while left > 0:
        left -= s.send(buf[:min(left, CHUNK)])
    s.shutdown(socket.SHUT_WR)
    answer = b""
    while len(answer) < 8:
        k = s.recv(8 - len(answer))
        if not k:
            break
        answer += k
    if len(answer) != 8 or int.from_bytes(answer, "big") != n:
        sys.exit(f"the sink got {answer!r}, not {n} bytes")


def hold(n, port):
    conns = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"?")
        conns.append(s)
    for s in conns:
        if s.recv(1) != b"!":
            sys.exit("a held connection was not answered")
    print("ready", flush=True)
    sys.stdin.read()


def main():
    what = sys.argv[1]
    if what == "sink":
        sink()
    elif what == "send":
        send(int(sys.argv[2]), int(sys.argv[3]))
    elif what == "hold":
        hold(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
