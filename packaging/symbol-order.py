#!/usr/bin/python3
"""Writes packaging/openclaw-gateway.order: the functions the gateway runs to start, serve and stop.

The release link (packaging/release.mk) hands the file to lld's --symbol-ordering-file, which puts
these functions first and together in .text. Unordered, they lie scattered over 13 MB of code, and
the kernel maps 64 KiB around every page a start touches: about 10 MB of the binary ended up
resident. Together they fit in a few MB, so a start touches fewer pages and takes fewer faults.

The list comes from callgrind, which records every function that ran (not a sample), while the
binary serves what a start and a day's use do:
  - a fallback bind with NOTIFY_SOCKET: READY, /healthz (closed by the server, and kept alive
    and closed by the client, as curl does), WebSocket clients (hello, health),
    a refused duplicate, SIGTERM with clients open;
  - a socket-activated start (systemd-socket-activate): /healthz and a hello.
Order only moves code: a stale or missing list makes the binary slower, never wrong (the link
ignores names that no longer exist). Run it again after a change of dependencies or of the
start-up path:

    packaging/symbol-order.py [--bin PATH_TO_RELEASE_BINARY] [--load PATH_TO_GATEWAY_LOAD]

It needs valgrind (apt install valgrind) and systemd-socket-activate.
"""
import argparse
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "openclaw-gateway.order")
sys.path.insert(0, os.path.join(HERE, "..", "bench"))
from benchlib import defined_functions, free_port, healthz  # noqa: E402


def wait_healthz(port, proc, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the gateway exited with status {proc.returncode} before serving")
        try:
            if healthz(port, timeout=10):
                return
        except OSError:
            time.sleep(0.2)
    sys.exit("the gateway did not answer /healthz")


def healthz_kept_alive(port):
    """/healthz as curl asks for it: HTTP/1.1 without `Connection: close`; the client closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer and (chunk := s.recv(4096)):
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length and (chunk := s.recv(4096)):
            body += chunk
    if not answer.startswith(b"HTTP/1.1 200"):
        sys.exit(f"symbol-order: a kept-alive /healthz was answered {answer[:40]!r}")


def callgrind(binary, out_dir, name, argv_tail, env=None, wrapper=()):
    out = os.path.join(out_dir, f"{name}.%p.cg")
    return subprocess.Popen(
        [*wrapper, "valgrind", "--tool=callgrind", "--demangle=no", "--dump-instr=no",
         "--compress-strings=no", "--compress-pos=no", f"--callgrind-out-file={out}",
         binary, *argv_tail],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def load(tool, *args):
    subprocess.run([tool, *args], check=True, stdout=subprocess.DEVNULL, timeout=300)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=".build-static/release/openclaw-gateway")
    ap.add_argument("--load", default=".build-static/release/gateway-load")
    args = ap.parse_args()
    for tool in ("valgrind", "systemd-socket-activate"):
        if not shutil.which(tool):
            sys.exit(f"symbol-order: {tool} is not installed")

    tmp = tempfile.mkdtemp(prefix="symbol-order-")
    # valgrind cannot read the DWARF 5 the Swift toolchain writes: profile a copy without it.
    binary = os.path.join(tmp, "openclaw-gateway")
    subprocess.run(["strip", "--strip-debug", "-o", binary, args.bin], check=True)
    env = dict(os.environ, OPENCLAW_CONFIG_PATH=os.path.join(tmp, "none.json"))
    for name in ("OPENCLAW_GATEWAY_PORT", "OPENCLAW_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_PASSWORD", "LISTEN_FDS", "LISTEN_PID"):
        env.pop(name, None)

    # 1. fallback bind, READY, clients, a duplicate, SIGTERM with clients open
    port = free_port()
    notify = os.path.join(tmp, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify)
    proc = callgrind(binary, tmp, "bound", ["run", "--port", str(port)], dict(env, NOTIFY_SOCKET=notify))
    sock.settimeout(120)
    while b"READY=1" not in sock.recv(4096):
        pass
    wait_healthz(port, proc)
    healthz_kept_alive(port)
    load(args.load, "hello", "--port", str(port), "--count", "20")
    load(args.load, "rpc", "--port", str(port), "--conns", "8", "--seconds", "2")
    dup = callgrind(binary, tmp, "duplicate", ["run", "--port", str(port)], env)
    if dup.wait(120) != 78:
        sys.exit(f"the duplicate exited {dup.returncode}, not 78")
    holders = subprocess.Popen([args.load, "hold", "--port", str(port), "--conns", "20", "--seconds", "30"],
                               stdout=subprocess.DEVNULL)
    time.sleep(5)
    proc.send_signal(signal.SIGTERM)
    proc.wait(120)
    holders.kill()
    holders.wait()

    # 2. socket activation
    port = free_port()
    activate = callgrind(binary, tmp, "activated", ["run"], env,
                         wrapper=("systemd-socket-activate", "-l", f"127.0.0.1:{port}", "--fdname=gateway"))
    time.sleep(0.5)
    wait_healthz(port, activate)
    load(args.load, "hello", "--port", str(port), "--count", "5")
    activate.send_signal(signal.SIGTERM)
    activate.wait(120)

    functions = set()
    for path in glob.glob(os.path.join(tmp, "*.cg")):
        ours = False
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith("ob="):
                    ours = line[3:].strip() == binary
                elif ours and line.startswith("fn="):
                    functions.add(line[3:].strip().split("'")[0])  # 'N marks a recursion level
    # Only names the binary defines (the profile also names PLT stubs and unknown addresses).
    ordered = sorted(functions & defined_functions(binary))
    with open(OUT, "w") as f:
        f.write("".join(name + "\n" for name in ordered))
    print(f"symbol-order: {len(ordered)} functions -> {os.path.relpath(OUT)}")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
