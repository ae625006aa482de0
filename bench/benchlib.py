"""Helpers shared by bench/bench.py and packaging/symbol-order.py: ports, /healthz, NOTIFY_SOCKET,
timing, RSS, the floor program, the functions a binary defines."""

import base64
import os
import socket
import statistics
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthz(port, timeout=5):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data.startswith(b"HTTP/1.1 200")


def defined_functions(binary):
    """The names of the functions `binary` defines (its symbol table, through nm)."""
    nm = subprocess.run(["nm", "--defined-only", binary], check=True, capture_output=True, text=True).stdout
    return {fields[2] for fields in map(str.split, nm.splitlines()) if len(fields) == 3 and fields[1] in "tTwW"}


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


def timed_exit(argv, env):
    t0 = time.perf_counter()
    rc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL).returncode
    return (time.perf_counter() - t0) * 1000, rc


def ws_upgrade(port, timeout=None):
    """A WebSocket connection to the gateway: the socket, and what came after the 101's head (the
    challenge may already be there)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    assert data.startswith(b"HTTP/1.1 101"), data[:100]
    return s, data.split(b"\r\n\r\n", 1)[1]


def ws_client(port):
    return ws_upgrade(port)[0]


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


def wait_bindable(port):
    """Waits until 127.0.0.1:port can be bound the way the next gateway would (SO_REUSEADDR),
    trying every 0.1 ms. Not a spin: on two cores a spinning waiter holds one of them, and the
    figure then measured where the scheduler put the threads of the process being timed: two
    builds whose shutdowns differ by a few thread hops gave medians of 0.75 and 2.4 ms with p90s
    up to 8 ms, and 0.87 and 0.94 ms (p90 1.2 and 1.7 ms) waited for this way (20 runs each)."""
    while True:
        try:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))
                s.listen(1)
            return
        except OSError:
            time.sleep(0.0001)


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of a process so far (/proc/PID/stat), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK
