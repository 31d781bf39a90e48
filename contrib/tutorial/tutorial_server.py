#!/usr/bin/env python3
"""The remote-command server of the classic socket tutorials, written here
to behave as theirs does, so that rexec can be checked against it.

What it reproduces, step by step as the tutorials build it:
  * a TCP server; each client gets a thread (socketserver's threading mix-in,
    as in the tutorials' "concurrent" chapter);
  * each command is whatever one recv(1024) returns: two commands sent
    quickly arrive as one, and a command longer than 1024 bytes is split;
  * the command runs in a shell through subprocess, and its stdout and then
    its stderr are the reply;
  * the fix for sticky packets: the reply is prefixed with
    struct.pack('i', n), 4 bytes, a signed int in the machine's byte order
    (little-endian on x86 and most ARM), n being the reply's length.
    With --raw the header is left out: the first, broken version.

Usage: tutorial_server.py [--host 127.0.0.1] [--port 0] [--raw]
The first line on stdout is 'listening on HOST:PORT' (--port 0 picks one).
rexecd --protocol seed speaks the same protocol; this is the reference.
"""
import argparse
import socketserver
import struct
import subprocess
import sys


class CommandHandler(socketserver.BaseRequestHandler):
    """One client: command in, reply out, until it hangs up."""

    def handle(self):
        conn = self.request
        while True:
            try:
                data = conn.recv(1024)
            except ConnectionError:
                return
            if not data:
                return
            proc = subprocess.Popen(data.decode('utf-8', errors='replace'), shell=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            stdout, stderr = proc.communicate()
            try:
                if not self.server.raw:
                    conn.send(struct.pack('i', len(stdout) + len(stderr)))
                conn.sendall(stdout)
                conn.sendall(stderr)
            except ConnectionError:
                return


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--raw', action='store_true', help='no length header (sticky packets)')
    args = ap.parse_args()
    with Server((args.host, args.port), CommandHandler) as server:
        server.raw = args.raw
        host, port = server.server_address[:2]
        print(f'listening on {host}:{port}', flush=True)
        server.serve_forever()


if __name__ == '__main__':
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
