#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Host end of the vdev-remote console test: connects to the backend's
console socket, sends a greeting every second (the guest may not have its
hvc open yet) and records what comes back in OUT until the guest's reply
arrives or 300 s pass."""
import socket
import sys
import time

path, out = sys.argv[1], sys.argv[2]
deadline = time.time() + 300
while True:
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        break
    except OSError:
        if time.time() > deadline:
            sys.exit(1)
        time.sleep(0.2)
s.settimeout(1.0)
got = b""
while time.time() < deadline and b"hello from the guest" not in got:
    s.sendall(b"hello from the host\n")
    try:
        data = s.recv(4096)
        if not data:
            break
        got += data
        with open(out, "wb") as f:
            f.write(got)
    except socket.timeout:
        pass
