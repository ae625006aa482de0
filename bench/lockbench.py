#!/usr/bin/env python3
"""Figures for the lock (issue 2), on a release build. Prints a table of medians (with p10/p90)
and one machine-readable `RESULT` line per figure. A benchmark, not a test: it asserts nothing.

  bench/lockbench.py --bin .build/release/openclaw-gateway [--runs 30]

Figures:
  dup_exit_ms      exec -> exit(78) of a second instance while a gateway holds the port
  floor_exit_ms    the same for a minimal static Swift program that binds and exits (the floor)
  ready_ms         exec -> READY=1 on NOTIFY_SOCKET (fallback bind)
  port_free_ms     SIGTERM -> 127.0.0.1:port bindable again (SO_REUSEADDR), 100 WebSocket clients open
  exit_ms          SIGTERM -> process exit, same run
  idle_rss_kib     VmRSS of a gateway that has served one request and idles
"""

import argparse
import base64
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quantiles(values):
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))]
    return statistics.median(values), pick(0.1), pick(0.9)


class Notify:
    def __init__(self, directory):
        self.path = os.path.join(directory, f"notify-{os.getpid()}-{time.monotonic_ns()}.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def wait(self, line, timeout=10):
        self.sock.settimeout(timeout)
        while True:
            message = self.sock.recv(4096).decode()
            if line in message.split("\n"):
                return time.perf_counter()

    def close(self):
        self.sock.close()
        os.unlink(self.path)


def start(binary, port, tmp, extra_env=None):
    notify = Notify(tmp)
    env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "NOTIFY_SOCKET": notify.path, "OPENCLAW_LOG_LEVEL": "warning"}
    env.update(extra_env or {})
    t0 = time.perf_counter()
    proc = subprocess.Popen([binary, "--port", str(port)], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t1 = notify.wait("READY=1")
    return proc, notify, (t1 - t0) * 1000


def timed_exit(argv, env):
    t0 = time.perf_counter()
    rc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL).returncode
    return (time.perf_counter() - t0) * 1000, rc


def ws_client(port):
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    assert data.startswith(b"HTTP/1.1 101"), data[:100]
    return s


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def build_floor(tmp):
    out = os.path.join(tmp, "minimal-bind")
    subprocess.run(["swiftc", "-O", "-static-stdlib", "-o", out, os.path.join(HERE, "minimal-bind", "main.swift")],
                   check=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--clients", type=int, default=100)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="lockbench-")
    floor = build_floor(tmp)
    figures = {k: [] for k in ("dup_exit_ms", "floor_exit_ms", "ready_ms", "port_free_ms", "exit_ms", "idle_rss_kib")}
    env = {"PATH": "/usr/bin:/bin", "HOME": tmp}

    for _ in range(args.runs):
        port = free_port()
        proc, notify, ready = start(args.bin, port, tmp)
        figures["ready_ms"].append(ready)
        # Alternate the two duplicate figures so drift hits both alike.
        ms, rc = timed_exit([args.bin, "--port", str(port)], env)
        assert rc == 78, rc
        figures["dup_exit_ms"].append(ms)
        ms, rc = timed_exit([floor, str(port)], env)
        assert rc == 78, rc
        figures["floor_exit_ms"].append(ms)
        # one request, then idle RSS
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while s.recv(4096):
                pass
        time.sleep(0.05)
        figures["idle_rss_kib"].append(rss_kib(proc.pid))
        clients = [ws_client(port) for _ in range(args.clients)]
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        while True:
            try:
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind(("127.0.0.1", port))
                    s.listen(1)
                break
            except OSError:
                pass
        figures["port_free_ms"].append((time.perf_counter() - t0) * 1000)
        for c in clients:  # answer the close handshake the way clients do: by closing
            c.close()
        proc.wait()
        figures["exit_ms"].append((time.perf_counter() - t0) * 1000)
        notify.close()

    print(f"openclaw-gateway lock figures: {args.runs} runs, {args.clients} clients for SIGTERM; {args.bin}")
    print(f"{'figure':<16}{'median':>10}{'p10':>10}{'p90':>10}")
    for name, values in figures.items():
        med, p10, p90 = quantiles(values)
        print(f"{name:<16}{med:>10.2f}{p10:>10.2f}{p90:>10.2f}")
    dup = statistics.median(figures["dup_exit_ms"])
    floor_ms = statistics.median(figures["floor_exit_ms"])
    print(f"duplicate / floor ratio: {dup / floor_ms:.2f}x")
    for name, values in figures.items():
        med, p10, p90 = quantiles(values)
        print(f"RESULT figure={name} median={med:.3f} p10={p10:.3f} p90={p90:.3f} runs={len(values)}")
    print(f"RESULT figure=dup_over_floor ratio={dup / floor_ms:.3f}")


if __name__ == "__main__":
    sys.exit(main())
