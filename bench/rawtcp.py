"""The limit row of T1: a raw two-process TCP stream over loopback, no
framing and no command. The sender writes N bytes of zeros in 1 MiB
writes; the receiver reads into a 1 MiB buffer and discards. Prints
nothing; the caller times it.

usage: python3 bench/rawtcp.py BYTES
"""
import os
import socket
import sys

CHUNK = 1 << 20


def main():
    n = int(sys.argv[1])
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    port = ls.getsockname()[1]
    pid = os.fork()
    if pid == 0:  # the sender
        ls.close()
        s = socket.create_connection(("127.0.0.1", port))
        buf = bytes(CHUNK)
        left = n
        while left > 0:
            left -= s.send(memoryview(buf)[:min(left, CHUNK)])
        s.close()
        os._exit(0)
    conn, _ = ls.accept()
    buf = bytearray(CHUNK)
    got = 0
    while True:
        k = conn.recv_into(buf)
        if k == 0:
            break
        got += k
    os.waitpid(pid, 0)
    if got != n:
        sys.exit(f"received {got} of {n} bytes")


if __name__ == "__main__":
    main()
