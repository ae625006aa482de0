#!/usr/bin/env python3
"""`make bench`: the gateway's figures on a release build, side by side with a peer when given.

  bench/bench.py --bin BIN --load GATEWAY_LOAD [--peer PATH] [--wsload PATH] [--floor-server PATH] [--runs 10]
                 [--floor-bind PATH] [--startup-only] [--label TEXT] [--markdown FILE]

Prints one table (median, p10, p90 over repeated runs; with --peer, the peer's median and the
ratio ours/peer, both measured in the same run, alternating) and one `RESULT` line per figure.
The load client is the project's own (`gateway-load`, SwiftNIO) and, with --wsload, also the Go
peer's `wsload` (gorilla), a client we did not write: a server tuned to its own client proves little.
Each load figure comes with the server's CPU per request (or per connection, for churn): its
utime + stime over the run (/proc/PID/stat) divided by what the client got answered. The peer
is only compared with.
With --floor-server (`startup-floor`: SwiftNIO and libsystemd, nothing of the gateway) the start-up
figures are also taken of that floor, to tell the gateway's own cost from the parts'.
--startup-only skips the load figures; with --floor-bind (a built bench/minimal-bind) it needs no
Swift toolchain, which is how bench/in-root.sh runs it in a Debian 12 or 13 root.
A benchmark, not a test: it asserts nothing beyond the runs themselves working.
"""

import argparse
import datetime
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import Notify, build_floor, cpu_seconds, free_port, healthz, quantiles, rss_kib, timed_exit, wait_bindable, ws_client  # noqa: E402

ACTIVATE = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"


class Subject:
    def __init__(self, name, binary, extra):
        self.name, self.binary, self.extra = name, binary, extra

    def argv(self, port, *more):
        return [self.binary, "--port", str(port), *self.extra, *more]


def env_for(tmp, notify=None):
    env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "OPENCLAW_LOG_LEVEL": "warning"}
    if notify:
        env["NOTIFY_SOCKET"] = notify.path
    return env


def start(subject, port, tmp, *more):
    notify = Notify(tmp)
    t0 = time.perf_counter()
    proc = subprocess.Popen(subject.argv(port, *more), env=env_for(tmp, notify), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ready = (notify.wait("READY=1") - t0) * 1000
    return proc, notify, ready


def stop(proc, notify):
    proc.send_signal(signal.SIGTERM)
    proc.wait(15)
    notify.close()


def load(tool, *args):
    out = subprocess.run([tool, *args], capture_output=True, text=True, timeout=300).stdout
    line = [l for l in out.splitlines() if l.startswith("RESULT ")][-1]
    return {k: float(v) for k, v in (item.split("=") for item in line.split()[1:])}


# ---- one run of every figure for one subject ------------------------------------------------------


def startup_figures(subject, tmp, figures, floor, floor_server):
    port = free_port()
    proc, notify, ready = start(subject, port, tmp)
    figures["ready_ms"].append(ready)
    ms, rc = timed_exit(subject.argv(port), env_for(tmp))
    assert rc == 78, (subject.name, rc)
    figures["dup_exit_ms"].append(ms)
    if floor:
        figures["floor_exit_ms"].append(timed_exit([floor, str(port)], env_for(tmp))[0])
    if floor_server:
        floor_proc, floor_notify, floor_ready = start(floor_server, free_port(), tmp)
        figures["floor_ready_ms"].append(floor_ready)
        stop(floor_proc, floor_notify)
    healthz(port)
    time.sleep(0.05)
    figures["idle_rss_kib"].append(rss_kib(proc.pid))
    stop(proc, notify)

    # exec -> first /healthz answer, fallback bind
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen(subject.argv(port), env=env_for(tmp), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            if healthz(port, timeout=1):
                break
        except OSError:
            pass
    figures["first_healthz_ms"].append((time.perf_counter() - t0) * 1000)
    proc.send_signal(signal.SIGTERM)
    proc.wait(15)


def under_activation(subject, tmp, measure):
    """`subject` under systemd-socket-activate, which execs it on the first connection; returns what
    `measure(port)` returns for that first connection."""
    port = free_port()
    argv = [ACTIVATE, "-l", f"127.0.0.1:{port}", "--fdname=gateway", subject.binary, *subject.extra]
    proc = subprocess.Popen(argv, env=env_for(tmp), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    for line in proc.stderr:
        if b"Listening on" in line:
            break
    result = measure(port)
    proc.send_signal(signal.SIGTERM)
    proc.wait(15)
    return result


def timed_healthz(port):
    t0 = time.perf_counter()
    assert healthz(port)
    return (time.perf_counter() - t0) * 1000


def activation_figures(subject, tmp, figures, load_tool, floor_server):
    figures["activated_healthz_ms"].append(under_activation(subject, tmp, timed_healthz))
    figures["activated_hello_ms"].append(
        under_activation(subject, tmp, lambda port: load(load_tool, "hello", "--port", str(port))["hello_ms"]))
    if floor_server:
        figures["floor_activated_healthz_ms"].append(under_activation(floor_server, tmp, timed_healthz))


def sigterm_figures(subject, tmp, figures, clients):
    port = free_port()
    proc, notify, _ = start(subject, port, tmp)
    conns = [ws_client(port) for _ in range(clients)]
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    wait_bindable(port)
    figures["sigterm_port_free_ms"].append((time.perf_counter() - t0) * 1000)
    for c in conns:
        c.close()
    proc.wait(15)
    figures["sigterm_exit_ms"].append((time.perf_counter() - t0) * 1000)
    notify.close()


def measured(pid, tool, *args):
    """A load run and the server's CPU over it: (the tool's RESULT, CPU microseconds used)."""
    before = cpu_seconds(pid)
    r = load(tool, *args)
    return r, (cpu_seconds(pid) - before) * 1e6


def load_figures(subject, tmp, figures, load_tool, hold_conns, wsload=None, seconds=5):
    port = free_port()
    proc, notify, _ = start(subject, port, tmp, "--max-connections", "20000")
    r, cpu = measured(proc.pid, load_tool, "rpc", "--port", str(port), "--conns", "64", "--seconds", str(seconds))
    figures["health_rps"].append(r["rps"])
    figures["health_p50_us"].append(r["p50_us"])
    figures["health_p99_us"].append(r["p99_us"])
    figures["health_cpu_us_per_req"].append(cpu / (r["rps"] * seconds))
    if wsload:
        w, cpu = measured(proc.pid, wsload, "rpc", "-url", f"ws://127.0.0.1:{port}/", "-conns", "64", "-duration", f"{seconds}s")
        figures["wsload_health_rps"].append(w["rps"])
        figures["wsload_health_p50_us"].append(w["p50_us"])
        figures["wsload_health_p99_us"].append(w["p99_us"])
        figures["wsload_health_cpu_us_per_req"].append(cpu / (w["rps"] * seconds))
    count = 2000
    c, cpu = measured(proc.pid, load_tool, "churn", "--port", str(port), "--count", str(count))
    figures["churn_conns_per_s"].append(c["conns_per_s"])
    figures["churn_cpu_us_per_conn"].append(cpu / count)
    idle = rss_kib(proc.pid)
    h = load(load_tool, "hold", "--port", str(port), "--conns", str(hold_conns), "--seconds", "5", "--pid", str(proc.pid))
    figures["rss_10k_idle_kib"].append(h["server_rss_kib"])
    figures["rss_per_conn_kib"].append((h["server_rss_kib"] - idle) / max(1, h["held"]))
    stop(proc, notify)


FIGURES = ["dup_exit_ms", "floor_exit_ms", "ready_ms", "floor_ready_ms", "first_healthz_ms", "activated_healthz_ms",
           "floor_activated_healthz_ms", "activated_hello_ms", "sigterm_port_free_ms", "sigterm_exit_ms", "health_rps", "health_p50_us",
           "health_p99_us", "health_cpu_us_per_req", "wsload_health_rps", "wsload_health_p50_us", "wsload_health_p99_us",
           "wsload_health_cpu_us_per_req", "churn_conns_per_s", "churn_cpu_us_per_conn", "idle_rss_kib", "rss_10k_idle_kib", "rss_per_conn_kib"]


def floor_lines(results, peer):
    """The start-up floor (startup-floor: SwiftNIO's event loops and libsystemd, nothing of the
    gateway) against the gateway and, with a peer, against the peer: a ratio goal below the
    floor's own ratio cannot be met by any gateway built on these parts."""
    out = []
    for figure, floor_figure in (("ready_ms", "floor_ready_ms"), ("activated_healthz_ms", "floor_activated_healthz_ms")):
        ours = statistics.median(results["ours"][figure])
        fl = statistics.median(results["ours"][floor_figure])
        line = f"{figure}: gateway {ours:.2f} ms = floor {fl:.2f} ms + {ours - fl:.2f} ms"
        if peer and results["peer"][figure]:
            line += f"; floor / peer {fl / statistics.median(results['peer'][figure]):.2f}x"
        out.append(line)
    return out


def symbol_order_line(binary):
    """How much of packaging/openclaw-gateway.order the binary still defines
    (packaging/order-coverage.sh, which the package build also runs)."""
    if not shutil.which("nm"):
        return "symbol order: not checked here (no nm)"
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "packaging", "order-coverage.sh")
    return subprocess.run([script, binary], capture_output=True, text=True).stdout.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--load", required=True)
    ap.add_argument("--peer")
    ap.add_argument("--wsload", help="the Go peer's load client (shared/peers/build.sh): the load figures with it too")
    ap.add_argument("--floor-server", help="startup-floor: SwiftNIO + libsystemd and nothing else")
    ap.add_argument("--runs", type=int, default=10, help="runs of the start-up figures")
    ap.add_argument("--load-runs", type=int, default=3, help="runs of the load figures")
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--hold", type=int, default=10000)
    ap.add_argument("--floor-bind", help="a built bench/minimal-bind, instead of compiling it with swiftc")
    ap.add_argument("--startup-only", action="store_true", help="the start-up figures alone, no load runs")
    ap.add_argument("--label", help="where it ran, for the heading (bench/in-root.sh: the root's release)")
    ap.add_argument("--markdown")
    args = ap.parse_args()

    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the gateways inherit it, as under a unit
    tmp = tempfile.mkdtemp(prefix="bench-")
    floor = args.floor_bind or build_floor(tmp)
    floor_server = Subject("floor", args.floor_server, []) if args.floor_server else None
    subjects = [Subject("ours", args.bin, [])]
    if args.peer:
        subjects.append(Subject("peer", args.peer, []))
    results = {s.name: {f: [] for f in FIGURES} for s in subjects}

    for i in range(args.runs):
        for s in (subjects if i % 2 == 0 else subjects[::-1]):
            startup_figures(s, tmp, results[s.name], floor, floor_server)
            activation_figures(s, tmp, results[s.name], args.load, floor_server)
            sigterm_figures(s, tmp, results[s.name], args.clients)
    for i in range(0 if args.startup_only else args.load_runs):
        for s in (subjects if i % 2 == 0 else subjects[::-1]):
            load_figures(s, tmp, results[s.name], args.load, args.hold, wsload=args.wsload)

    head = f"{'figure':<28}{'median':>11}{'p10':>11}{'p90':>11}"
    if args.peer:
        head += f"{'peer':>11}{'ratio':>8}"
    where = f"{platform.node()}{f' ({args.label})' if args.label else ''}"
    load_runs = "no load runs" if args.startup_only else f"{args.load_runs} load runs, {args.hold} held connections"
    lines = [f"openclaw-gateway figures, {datetime.date.today()}, {where}, {os.cpu_count()} cores;"
             f" {args.runs} start-up runs, {load_runs}; {args.clients} clients at SIGTERM", head]
    machine = []
    for f in FIGURES:
        ours = results["ours"][f]
        if not ours:
            continue
        med, p10, p90 = quantiles(ours)
        row = f"{f:<28}{med:>11.2f}{p10:>11.2f}{p90:>11.2f}"
        extra = ""
        if args.peer and results["peer"][f]:
            peer_med = statistics.median(results["peer"][f])
            ratio = med / peer_med if peer_med else float("nan")
            row += f"{peer_med:>11.2f}{ratio:>8.2f}"
            extra = f" peer_median={peer_med:.3f} ratio={ratio:.3f}"
        lines.append(row)
        machine.append(f"RESULT figure={f} median={med:.3f} p10={p10:.3f} p90={p90:.3f} runs={len(ours)}{extra}")
    dup = statistics.median(results["ours"]["dup_exit_ms"])
    fl = statistics.median(results["ours"]["floor_exit_ms"])
    lines.append(f"duplicate refused / minimal static Swift bind-and-exit: {dup / fl:.2f}x")
    if floor_server:
        lines.extend(floor_lines(results, args.peer))
    lines.append(symbol_order_line(args.bin))
    print("\n".join(lines))
    print("\n".join(machine))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("```\n" + "\n".join(lines) + "\n" + "\n".join(machine) + "\n```\n")


if __name__ == "__main__":
    sys.exit(main())
