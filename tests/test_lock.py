"""The lock is the listener: duplicates, races, crashes and shutdown, on the real binary."""

import os
import signal
import socket
import subprocess
import time

import pytest

from harness import (BIN, BIND_FAILED_PREFIX, DUPLICATE_LINE, bind_with_reuseaddr, close_of, free_port,
                     http_get, port_accepts, run, wait_accepted, ws_connect)


def test_second_instance_fails_with_the_exact_line_and_78_in_well_under_a_second(gateways):
    port = free_port()
    first = gateways(["--port", str(port)])
    first.wait_ready()

    second = gateways(["--port", str(port)], notify=False)
    rc = second.wait()
    elapsed = time.monotonic() - second.started

    assert rc == 78
    assert second.lines[0] == DUPLICATE_LINE.format(host="127.0.0.1", port=port)
    assert elapsed < 0.5, f"duplicate took {elapsed:.3f}s to be refused"
    assert http_get(port, "/healthz")[0] == 200  # the first one is untouched


def test_a_port_held_by_an_unrelated_listener_gives_the_same_line(gateways):
    port = free_port()
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))
        other.listen(1)
        gw = gateways(["--port", str(port)], notify=False)
        assert gw.wait() == 78
        assert gw.lines[0] == DUPLICATE_LINE.format(host="127.0.0.1", port=port)


def test_an_address_that_cannot_be_bound_gives_the_bind_failed_line(gateways):
    port = free_port()
    gw = gateways(["--bind", "192.0.2.1", "--token", "t", "--port", str(port)], notify=False)
    assert gw.wait() == 78
    assert gw.lines[0] == BIND_FAILED_PREFIX.format(host="192.0.2.1", port=port) + "bind(): Cannot assign requested address"


@pytest.mark.parametrize("round_", range(4))
def test_eight_instances_started_at_once_leave_exactly_one_serving(gateways, round_):
    port = free_port()
    racers = [gateways(["--port", str(port)]) for _ in range(8)]
    exits = {}
    # Everyone but the winner exits on its own; the winner serves until told to stop.
    deadline = time.monotonic() + 20
    while len(exits) < 7 and time.monotonic() < deadline:
        for gw in racers:
            if gw.pid not in exits:
                try:
                    exits[gw.pid] = gw.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    pass
    assert len(exits) == 7, f"expected 7 refused instances, got exits {exits}"
    assert set(exits.values()) == {78}
    losers = [gw for gw in racers if gw.pid in exits]
    for gw in losers:
        assert gw.lines[0] == DUPLICATE_LINE.format(host="127.0.0.1", port=port)
    (winner,) = [gw for gw in racers if gw.pid not in exits]
    winner.wait_ready()
    assert http_get(port, "/healthz")[0] == 200
    assert winner.stop() == 0


def _files_under(path):
    found = set()
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            found.add(os.path.join(root, name))
    return found


def _runtime_entries():
    entries = set()
    for d in ("/run", "/var/run", "/dev/shm", "/var/lock"):
        try:
            entries |= {os.path.join(d, e) for e in os.listdir(d)}
        except OSError:
            pass
    return entries


def test_sigkill_with_a_client_connected_then_an_immediate_restart_binds(gateways, home, tmp_path):
    port = free_port()
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    home_before = _files_under(home)
    runtime_before = _runtime_entries()

    async def scenario():
        for _ in range(5):
            gw = gateways(["--port", str(port)], cwd=str(workdir))
            gw.wait_ready()
            client = await ws_connect(port)
            gw.signal(signal.SIGKILL)
            assert gw.wait() == -signal.SIGKILL
            # At once, with the dead gateway's connection still around on the port:
            nxt = gateways(["--port", str(port)], cwd=str(workdir))
            nxt.wait_ready()
            assert http_get(port, "/healthz")[0] == 200
            nxt.signal(signal.SIGKILL)
            nxt.wait()
            await client.close_transport() if hasattr(client, "close_transport") else client.transport.abort()

    run(scenario())
    # No lock file, no PID file, anywhere the gateway could have put one.
    assert _files_under(home) == home_before
    assert _files_under(workdir) == set()
    assert {e for e in _runtime_entries() - runtime_before if "openclaw" in e or "gateway" in e} == set()


def test_sigterm_frees_the_port_at_once_closes_clients_with_1012_and_exits_0(gateways):
    port = free_port()
    gw = gateways(["--port", str(port)])
    gw.wait_ready()

    async def scenario():
        clients = [await ws_connect(port) for _ in range(5)]
        gw.signal(signal.SIGTERM)
        codes = []
        for ws in clients:
            code, reason, _ = await close_of(ws)
            codes.append((code, reason))
            # The listener was closed before the first close frame went out: the port is free
            # for the next gateway while this one is still finishing.
            bind_with_reuseaddr(port)
        return codes

    codes = run(scenario())
    assert codes == [(1012, "service restart")] * 5
    gw.notify.wait_for("STOPPING=1")
    assert gw.wait() == 0


def test_sigint_is_a_clean_shutdown_too(gateways):
    port = free_port()
    gw = gateways(["--port", str(port)])
    gw.wait_ready()
    gw.signal(signal.SIGINT)
    assert gw.wait() == 0
    assert not port_accepts(port)


def test_a_client_that_ignores_the_close_handshake_does_not_hold_up_exit(gateways):
    port = free_port()
    gw = gateways(["--port", str(port)])
    gw.wait_ready()
    # A raw TCP client that upgrades and then never reads or answers anything.
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert b"101" in s.recv(4096).split(b"\r\n")[0]
    started = time.monotonic()
    gw.signal(signal.SIGTERM)
    assert gw.wait(timeout=12) == 0
    assert time.monotonic() - started < 10
    s.close()


def test_a_duplicate_is_refused_before_any_thread_exists(gateways, tmp_path):
    """No event loop, thread pool or task is started before the lock: under strace, the refused
    instance never calls clone()."""
    port = free_port()
    gateways(["--port", str(port)]).wait_ready()
    trace = tmp_path / "trace"
    gw = gateways([], argv=["strace", "-f", "-qq", "-o", str(trace), "-e", "trace=clone,clone3,bind,exit_group",
                            BIN, "--port", str(port)], notify=False)
    assert gw.wait() == 78
    calls = trace.read_text()
    assert "EADDRINUSE" in calls and "exit_group(78)" in calls
    assert "clone" not in calls, calls


def test_a_request_sent_as_shutdown_begins_is_still_answered(gateways):
    """A client connected just before SIGTERM, whose request the gateway has not read yet, gets its
    answer (a restart under load must not fail it)."""
    port = free_port()
    gw = gateways(["--port", str(port)])
    gw.wait_ready()
    s = socket.create_connection(("127.0.0.1", port))
    wait_accepted(s)  # in the backlog, closing the listener would reset it: not this test's case
    gw.signal(signal.SIGTERM)
    gw.wait_for_log("stopped listening")  # connections are being asked to finish right now
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    data = b""
    s.settimeout(5)
    while chunk := s.recv(4096):
        data += chunk
    s.close()
    assert data.startswith(b"HTTP/1.1 200"), data
    assert gw.wait() == 0


def test_the_event_loop_threads_leave_sigterm_and_sigint_to_the_lifecycle(gateways):
    """The loops start on the main thread: they must not inherit its open signal mask, or a
    SIGTERM could land on a loop instead of the shutdown handler's thread."""
    gw = gateways(["--port", str(free_port())])
    gw.wait_ready()
    loops = {}
    for task in os.listdir(f"/proc/{gw.pid}/task"):
        with open(f"/proc/{gw.pid}/task/{task}/comm") as f:
            name = f.read().strip()
        if name.startswith("NIO-ELT"):
            with open(f"/proc/{gw.pid}/task/{task}/status") as f:
                blocked = int(next(l for l in f if l.startswith("SigBlk:")).split()[1], 16)
            loops[name] = blocked
    assert loops, "no event loop threads found"
    for name, blocked in loops.items():
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            assert blocked & (1 << (sig - 1)), f"{name} takes {sig.name}"
        assert not blocked & (1 << (signal.SIGSEGV - 1)), f"{name} blocks SIGSEGV"
    assert gw.stop() == 0


@pytest.mark.parametrize("max_connections", [None, 5000])
def test_the_fd_table_is_grown_for_every_connection_before_the_loops_start(gateways, max_connections):
    """Grown later, with the loops' threads sharing it, each doubling of the kernel's fd table waits
    for an RCU grace period: a restart receiving 1,000 sessions spent 61 ms in recvmsg. So it holds
    twice the connection cap (a connection, and its duplicate at a handover) from the start."""
    args = ["--port", str(free_port())]
    if max_connections:
        args += ["--max-connections", str(max_connections)]
    gw = gateways(args)
    gw.wait_ready()
    with open(f"/proc/{gw.pid}/status") as f:
        fd_size = int(next(l for l in f if l.startswith("FDSize:")).split()[1])
    with open(f"/proc/{gw.pid}/limits") as f:
        soft = int(next(l for l in f if l.startswith("Max open files")).split()[3])
    wanted = min(2 * (max_connections or 1024) + 64, soft)
    assert fd_size >= wanted, f"FDSize {fd_size}, wanted at least {wanted} (soft limit {soft})"
    assert gw.stop() == 0
