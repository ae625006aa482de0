#!/usr/bin/env python3
"""Server instructions per `health` request, counted by callgrind: repeatable whatever else the
machine does, where CPU time on these shared machines varies by 20 % between runs.

  bench/instructions_per_request.py [--requests 3000] [--binary-frames] NAME=BIN NAME=BIN ...

For each binary: run it under `valgrind --tool=callgrind` twice, once answering one WebSocket
client that connects and sends `--requests` health requests one after another (text frames, or
binary ones), once answering the same client with 100 requests; the difference of the two totals
over the difference of the counts is the cost of one request, start-up and shutdown cancelled out.
Prints it per binary and the ratio to the first. A benchmark: it asserts nothing.
"""

import argparse
import json
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import Notify, free_port, ws_upgrade  # noqa: E402


def frame(payload, opcode):
    key = os.urandom(4)
    n = len(payload)
    head = struct.pack("!BB", 0x80 | opcode, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_frame(sock, buf):
    while len(buf) < 2:
        buf += sock.recv(65536)
    n = buf[1] & 0x7F
    at = 2
    if n == 126:
        while len(buf) < 4:
            buf += sock.recv(65536)
        n, at = struct.unpack("!H", buf[2:4])[0], 4
    while len(buf) < at + n:
        buf += sock.recv(65536)
    return buf[at:at + n], buf[at + n:]


def client(port, requests, opcode):
    sock, buf = ws_upgrade(port, timeout=120)
    _, buf = read_frame(sock, buf)  # challenge
    connect = {"type": "req", "id": "c", "method": "connect", "params": {
        "minProtocol": 4, "maxProtocol": 4, "scopes": ["operator.read"],
        "client": {"id": "bench", "version": "1", "platform": "linux", "mode": "cli"}}}
    sock.sendall(frame(json.dumps(connect).encode(), opcode))
    _, buf = read_frame(sock, buf)
    for i in range(requests):
        sock.sendall(frame(json.dumps({"type": "req", "id": f"h{i}", "method": "health"}).encode(), opcode))
        payload, buf = read_frame(sock, buf)
        assert b'"ok":true' in payload, payload
    sock.close()


def instructions(binary, requests, opcode, tmp):
    port = free_port()
    out = os.path.join(tmp, f"callgrind.{os.getpid()}.{requests}")
    notify = Notify(tmp)
    env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "OPENCLAW_LOG_LEVEL": "warning", "NOTIFY_SOCKET": notify.path}
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        notify.wait("READY=1", timeout=120)
        client(port, requests, opcode)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        notify.close()
    with open(out) as f:
        total = next(int(m.group(1)) for line in f if (m := re.match(r"^(?:summary|totals): (\d+)", line)))
    os.unlink(out)
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--binary-frames", action="store_true", help="send requests as binary frames (as upstream's apps do)")
    ap.add_argument("subjects", nargs="+", help="NAME=BIN")
    args = ap.parse_args()
    opcode = 2 if args.binary_frames else 1
    tmp = tempfile.mkdtemp(prefix="instr-")
    base = None
    subjects = []
    for name, binary in (s.split("=", 1) for s in args.subjects):
        # valgrind cannot read the DWARF 5 the Swift toolchain writes: count a copy without it.
        stripped = os.path.join(tmp, f"{name}-openclaw-gateway")
        subprocess.run(["strip", "--strip-debug", "-o", stripped, binary], check=True)
        subjects.append((name, stripped))
    print(f"server instructions per health request (callgrind; {args.requests} vs 100 requests, one connection,"
          f" {'binary' if opcode == 2 else 'text'} frames)")
    for name, binary in subjects:
        many = instructions(binary, args.requests, opcode, tmp)
        few = instructions(binary, 100, opcode, tmp)
        per = (many - few) / (args.requests - 100)
        base = base or per
        print(f"{name:<12}{per:>12.0f} instructions/request   ratio {per / base:.4f}")
        print(f"RESULT binary={name} instructions_per_request={per:.0f} ratio={per / base:.4f}")


if __name__ == "__main__":
    sys.exit(main())
