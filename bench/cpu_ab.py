#!/usr/bin/env python3
"""Server CPU per `health` request, for two or more gateway binaries, alternating runs.

  bench/cpu_ab.py --load gateway-load [--wsload PATH] [--runs 5] [--seconds 5] NAME=BIN NAME=BIN ...

For each run and each binary (in alternating order): start it on a free port, run 64 connections
of `health` round trips with the project's `gateway-load` (and, with --wsload, with the Go peer's
`wsload`, a client we did not write), and read the server's utime + stime from /proc/PID/stat
before and after. CPU per request = (CPU seconds used) / (requests answered). Prints the median
per binary and client, and each binary's ratio to the first. A benchmark: it asserts nothing.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import Notify, cpu_seconds, free_port  # noqa: E402


def result(out):
    line = [l for l in out.splitlines() if l.startswith("RESULT ")][-1]
    return {k: float(v) for k, v in (item.split("=") for item in line.split()[1:])}


def one_run(binary, client, tool, seconds, tmp):
    port = free_port()
    notify = Notify(tmp)
    env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "OPENCLAW_LOG_LEVEL": "warning", "NOTIFY_SOCKET": notify.path}
    proc = subprocess.Popen([binary, "--port", str(port), "--max-connections", "20000"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        notify.wait("READY=1")
        if client == "gateway-load":
            argv = [tool, "rpc", "--port", str(port), "--conns", "64", "--seconds", str(seconds)]
        else:
            argv = [tool, "rpc", "-url", f"ws://127.0.0.1:{port}/", "-conns", "64", "-duration", f"{seconds}s"]
        before = cpu_seconds(proc.pid)
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds * 10 + 60).stdout
        used = cpu_seconds(proc.pid) - before
        r = result(out)
        requests = r["rps"] * seconds
        return {"us_per_req": used / requests * 1e6, "rps": r["rps"], "p99_us": r["p99_us"]}
    finally:
        proc.terminate()
        proc.wait(15)
        notify.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--load", required=True, help="gateway-load")
    ap.add_argument("--wsload", help="the Go peer's wsload (shared/peers/build.sh)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("subjects", nargs="+", help="NAME=BIN")
    args = ap.parse_args()
    subjects = [s.split("=", 1) for s in args.subjects]
    clients = [("gateway-load", args.load)] + ([("wsload", args.wsload)] if args.wsload else [])
    tmp = tempfile.mkdtemp(prefix="cpu-ab-")
    figures = {(name, client): [] for name, _ in subjects for client, _ in clients}
    for i in range(args.runs):
        order = subjects if i % 2 == 0 else subjects[::-1]
        for client, tool in clients:
            for name, binary in order:
                figures[(name, client)].append(one_run(binary, client, tool, args.seconds, tmp))
    print(f"server CPU per health request, 64 connections, {args.runs} alternating runs of {args.seconds} s")
    print(f"{'client':<14}{'binary':<12}{'us/req':>9}{'min':>9}{'max':>9}{'req/s':>10}{'p99 us':>9}{'ratio':>8}")
    for client, _ in clients:
        base = None
        for name, _ in subjects:
            runs = figures[(name, client)]
            cpu = [r["us_per_req"] for r in runs]
            med = statistics.median(cpu)
            base = base or med
            print(f"{client:<14}{name:<12}{med:>9.2f}{min(cpu):>9.2f}{max(cpu):>9.2f}"
                  f"{statistics.median(r['rps'] for r in runs):>10.0f}{statistics.median(r['p99_us'] for r in runs):>9.0f}"
                  f"{med / base:>8.3f}")
            print(f"RESULT client={client} binary={name} us_per_req={med:.3f} ratio={med / base:.4f}")


if __name__ == "__main__":
    sys.exit(main())
