#!/usr/bin/env python3
"""SIGHUP -> READY=1: how long a reload takes, as systemd sees it (the gateway's RELOADING=1 ...
READY=1 on a NOTIFY_SOCKET), idle and with sessions connected. Prints medians and spreads; not
a test.

    python3 bench/reload_latency.py --bin .build/release/openclaw-gateway [--reloads 200] [--sessions 200]
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import Notify, free_port, quantiles, ws_upgrade  # noqa: E402


def write_config(home, port, i):
    directory = os.path.join(home, ".openclaw")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "openclaw.json")
    with open(path + ".tmp", "w") as f:
        json.dump({"gateway": {"port": port, "reload": {"mode": "off"},
                               "controlUi": {"allowedOrigins": [f"https://ui{i}.example"]}}}, f)
    os.rename(path + ".tmp", path)


def measure(binary, reloads, sessions):
    tmp = tempfile.mkdtemp(prefix="reload-bench-")
    port = free_port()
    write_config(tmp, port, 0)
    notify = Notify(tmp)
    env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "OPENCLAW_LOG_LEVEL": "warning", "NOTIFY_SOCKET": notify.path}
    proc = subprocess.Popen([binary, "run"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        notify.wait("READY=1")
        held = [ws_upgrade(port, timeout=10)[0] for _ in range(sessions)]
        times = []
        for i in range(1, reloads + 1):
            write_config(tmp, port, i)  # each reload applies a change
            t0 = time.perf_counter()
            os.kill(proc.pid, signal.SIGHUP)
            times.append((notify.wait("READY=1") - t0) * 1000)
        for s in held:
            s.close()
        return times
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        notify.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--reloads", type=int, default=200)
    ap.add_argument("--sessions", type=int, default=200)
    args = ap.parse_args()
    for sessions in (0, args.sessions):
        median, p10, p90 = quantiles(measure(args.bin, args.reloads, sessions))
        print(f"SIGHUP -> READY=1, {sessions} session(s) open, {args.reloads} reloads: "
              f"median {median:.2f} ms (p10 {p10:.2f}, p90 {p90:.2f})")


if __name__ == "__main__":
    main()
