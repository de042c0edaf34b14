#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""TCP transfers whose bytes are checked, for the virtio-net tests.

The server side runs on the host (in the test's network namespace), the
client side in the guest (guests see the host's root file system):

  tcp-check.py serve ADDR PORT LOG     accept connections until killed
  tcp-check.py sink HOST PORT BYTES    send BYTES random bytes, check the
                                       server's count and SHA-256 of them
  tcp-check.py source HOST PORT BYTES  receive BYTES random bytes, check
                                       them against the SHA-256 sent first

A connection starts with one line, `SINK\\n` or `SOURCE N\\n`. SINK: the
server reads until EOF and answers `COUNT SHA256\\n`. SOURCE: it sends the
SHA-256 of N random bytes (64 hex digits and a newline), then the bytes,
then closes. The server appends one line per connection to LOG:
`sink COUNT SHA256`, `source N SHA256` or `error WHY`.
Clients exit 0 when the bytes check out and print the time and rate
(including the server's random-number generation for SOURCE), 1 otherwise
(the reason on stderr); every socket operation times out after 60 s.
"""

import hashlib
import os
import socket
import sys
import threading
import time

TIMEOUT = 60
CHUNK = 65536


def log_line(path, line):
    with open(path, "a", encoding="ascii") as f:
        f.write(line + "\n")


def read_line(conn):
    line = b""
    while not line.endswith(b"\n"):
        b = conn.recv(1)
        if not b:
            break
        line += b
        if len(line) > 100:
            break
    return line.decode("ascii", "replace").strip()


def handle(conn, log):
    try:
        conn.settimeout(TIMEOUT)
        cmd = read_line(conn).split()
        if cmd == ["SINK"]:
            h, n = hashlib.sha256(), 0
            while True:
                b = conn.recv(CHUNK)
                if not b:
                    break
                h.update(b)
                n += len(b)
            conn.sendall(f"{n} {h.hexdigest()}\n".encode())
            log_line(log, f"sink {n} {h.hexdigest()}")
        elif len(cmd) == 2 and cmd[0] == "SOURCE" and cmd[1].isdigit():
            data = os.urandom(int(cmd[1]))
            sha = hashlib.sha256(data).hexdigest()
            conn.sendall(f"{sha}\n".encode())
            conn.sendall(data)
            log_line(log, f"source {len(data)} {sha}")
        else:
            log_line(log, f"error bad command {cmd!r}")
    except OSError as e:
        log_line(log, f"error {e}")
    finally:
        conn.close()


def serve(addr, port, log):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(8)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=handle, args=(conn, log), daemon=True).start()


def connect(host, port):
    c = socket.create_connection((host, port), timeout=TIMEOUT)
    c.settimeout(TIMEOUT)
    return c


def rate(count, start):
    secs = max(time.monotonic() - start, 1e-6)
    return f"in {secs:.2f} s, {count / secs / 1e6:.2f} MB/s"


def sink(host, port, count):
    start = time.monotonic()
    c = connect(host, port)
    c.sendall(b"SINK\n")
    h, left = hashlib.sha256(), count
    while left > 0:
        b = os.urandom(min(CHUNK, left))
        c.sendall(b)
        h.update(b)
        left -= len(b)
    c.shutdown(socket.SHUT_WR)
    answer = read_line(c)
    want = f"{count} {h.hexdigest()}"
    if answer != want:
        sys.exit(f"server counted {answer!r}, sent {want!r}")
    print(f"sent {count} bytes {rate(count, start)}, server's SHA-256 matches")


def source(host, port, count):
    start = time.monotonic()
    c = connect(host, port)
    c.sendall(f"SOURCE {count}\n".encode())
    sha = read_line(c)
    h, n = hashlib.sha256(), 0
    while True:
        b = c.recv(CHUNK)
        if not b:
            break
        h.update(b)
        n += len(b)
    if n != count or h.hexdigest() != sha:
        sys.exit(f"received {n} bytes with SHA-256 {h.hexdigest()}, expected {count} with {sha}")
    print(f"received {count} bytes {rate(count, start)}, SHA-256 matches")


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("serve", "sink", "source"):
        sys.exit(__doc__)
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    try:
        if mode == "serve":
            serve(host, port, sys.argv[4])
        elif mode == "sink":
            sink(host, port, int(sys.argv[4]))
        else:
            source(host, port, int(sys.argv[4]))
    except OSError as e:
        sys.exit(f"{mode}: {e}")


if __name__ == "__main__":
    main()
