#!/usr/bin/env python3
"""Client side of the end-to-end checks, run inside the container (python3 stdlib only).

  probe.py health PORT [HOST]          GET /healthz -> prints the status code and body
  probe.py websocket PORT              RFC 6455 handshake -> prints 101 when accepted (key checked)
  probe.py hammer PORT SECONDS [MS]    a new connection + GET /healthz every MS (10) ms for SECONDS;
                                       prints "attempts=N failures=M" and exits 1 on any failure
"""

import base64
import hashlib
import os
import socket
import sys
import time


def health(port, host="127.0.0.1", timeout=5.0):
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode()


def websocket(port):
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    lines = data.decode("latin-1").split("\r\n")
    expected = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    accept = [l.split(":", 1)[1].strip() for l in lines if l.lower().startswith("sec-websocket-accept:")]
    status = int(lines[0].split()[1])
    return status if accept == [expected] else -status


def hammer(port, seconds, every_ms=10):
    attempts = failures = 0
    errors = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        attempts += 1
        try:
            status, _ = health(port, timeout=10)
            if status != 200:
                raise RuntimeError(f"status {status}")
        except Exception as e:  # refused, reset, timeout, bad status: all count
            failures += 1
            errors[type(e).__name__ + ": " + str(e)] = errors.get(type(e).__name__ + ": " + str(e), 0) + 1
        time.sleep(max(0.0, every_ms / 1000 - (time.monotonic() - started)))
    print(f"attempts={attempts} failures={failures}" + (f" errors={errors}" if errors else ""))
    return failures == 0


def main():
    cmd, port = sys.argv[1], int(sys.argv[2])
    if cmd == "health":
        status, body = health(port, sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1")
        print(status, body)
        return 0 if status == 200 else 1
    if cmd == "websocket":
        status = websocket(port)
        print(status)
        return 0 if status == 101 else 1
    if cmd == "hammer":
        return 0 if hammer(port, float(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) > 4 else 10) else 1
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
