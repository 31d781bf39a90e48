#!/usr/bin/env python3
"""The remote-command client of the classic socket tutorials, written here
to behave as theirs does, so that rexec can be checked against it.

What it reproduces: for each command, send it, read the 4-byte header
(struct.unpack('i', ...)), then call recv(1024) until that many bytes have
come, and print them. (--bufsize changes the 1024, for comparisons.) The
header is read with one recv(4) and each chunk with one recv, exactly as in
the tutorials: correct here only because the server sends nothing the
client has not asked for yet.

Usage: tutorial_client.py HOST:PORT CMD [CMD ...] [--bufsize 1024]
Against rexecd --protocol seed or tutorial_server.py.
"""
import argparse
import socket
import struct
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('addr', help='HOST:PORT')
    ap.add_argument('commands', nargs='+')
    ap.add_argument('--bufsize', type=int, default=1024)
    args = ap.parse_args()
    host, port = args.addr.rsplit(':', 1)
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.connect((host.strip('[]'), int(port)))
    out = sys.stdout.buffer
    for command in args.commands:
        client.send(command.encode('utf-8'))
        header = client.recv(4)
        if len(header) < 4:
            sys.exit('tutorial_client: the server closed the connection')
        total = struct.unpack('i', header)[0]
        received = 0
        while received < total:
            data = client.recv(args.bufsize)
            if not data:
                sys.exit('tutorial_client: the server closed the connection mid-reply')
            received += len(data)
            out.write(data)
        out.flush()
    client.close()


if __name__ == '__main__':
    main()
