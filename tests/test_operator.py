"""Operator experience: who holds the port, `status`, `--force`, journald-shaped logs."""

import json
import os
import re
import signal
import socket

import pytest

from harness import BIN, DUPLICATE_LINE, close_of, free_port, http_get, port_accepts, run, ws_connect
from test_activation import ACTIVATE


def _conflict(gateways, port, *extra, **kwargs):
    gw = gateways(["--port", str(port), *extra], notify=False, **kwargs)
    assert gw.wait() == 78
    assert gw.lines[0] == DUPLICATE_LINE.format(host="127.0.0.1", port=port), gw.stderr
    return [line for line in gw.lines[1:] if line.startswith("hint: ")]


# ---- 1. conflict hints name the holder --------------------------------------------------------


def test_hint_names_another_gateway_and_offers_force(gateways):
    port = free_port()
    holder = gateways(["--port", str(port)])
    holder.wait_ready()
    hints = _conflict(gateways, port)
    assert hints[0] == f"hint: port {port} is held by pid {holder.pid} (openclaw-gateway)"
    assert "openclaw-gateway --force" in hints[1] and "--port <other>" in hints[1]


def test_hint_names_a_plain_python_listener(gateways):
    port = free_port()
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))
        other.listen(1)
        hints = _conflict(gateways, port)
    assert re.fullmatch(rf"hint: port {port} is held by pid {os.getpid()} \(python3[.0-9]*\), which is not an openclaw-gateway", hints[0]), hints
    assert "--force" not in hints[1]


def test_hint_names_the_process_systemd_socket_activate_passed_the_socket_to(gateways):
    port = free_port()
    activator = gateways([], argv=[ACTIVATE, "-l", f"127.0.0.1:{port}", "--fdname=gateway", BIN], notify=False)
    activator.wait_for_log(rf"Listening on 127\.0\.0\.1:{port}")
    hints = _conflict(gateways, port)
    assert hints[0].startswith(f"hint: port {port} is held by pid {activator.pid} (systemd-socket-activate)"), hints


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the gateway as another user")
def test_hint_when_the_holder_cannot_be_inspected(gateways, tmp_path):
    port = free_port()
    holder = gateways(["--port", str(port)])  # root's process: nobody cannot read its /proc/PID/fd
    holder.wait_ready()
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", BIN, "--port", str(port)]
    # a state directory that does not exist (tmp_path's parents are closed to nobody)
    hints = _conflict(gateways, port, argv=argv, env={"OPENCLAW_STATE_DIR": f"/tmp/openclaw-absent-{port}"})
    assert hints[0] == f"hint: port {port} is held by another process owned by uid 0 that this user cannot inspect"


# ---- 2. status ----------------------------------------------------------------------------------


def _status(gateways, port, *extra):
    gw = gateways(["status", "--port", str(port), *extra], notify=False)
    rc = gw.wait()
    return rc, gw.stdout()


def test_status_of_a_running_gateway(gateways):
    port = free_port()
    holder = gateways(["--port", str(port)])
    holder.wait_ready()
    rc, out = _status(gateways, port)
    assert rc == 0
    assert f"ws://127.0.0.1:{port}: running" in out and f"pid {holder.pid} (openclaw-gateway)" in out
    rc, out = _status(gateways, port, "--json")
    assert rc == 0
    report = json.loads(out)
    assert report["state"] == "running" and report["running"] is True
    assert report["pid"] == holder.pid and report["process"] == "openclaw-gateway"
    assert report["socketActivated"] is False and report["socketUnit"] is None
    assert report["health"] == {"httpStatus": 200, "ok": True, "status": "live", "configGeneration": 1, "lastReload": "none"}
    assert "  config: generation 1, last reload: none" in _status(gateways, port)[1]


def test_status_when_nothing_listens(gateways):
    port = free_port()
    rc, out = _status(gateways, port, "--json")
    assert rc == 3
    report = json.loads(out)
    assert report["state"] == "stopped" and report["pid"] is None and report["health"] is None


def test_status_of_a_port_held_by_something_else(gateways):
    port = free_port()
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))
        other.listen(1)
        rc, out = _status(gateways, port, "--json")
    assert rc == 4
    report = json.loads(out)
    assert report["state"] == "foreign" and report["pid"] == os.getpid() and report["running"] is False


def test_status_of_a_socket_activated_gateway(gateways):
    port = free_port()
    activator = gateways([], argv=[ACTIVATE, "-l", f"127.0.0.1:{port}", "--fdname=gateway", BIN], notify=False)
    activator.wait_for_log(rf"Listening on 127\.0\.0\.1:{port}")
    rc, out = _status(gateways, port, "--json")  # its health request starts the gateway
    assert rc == 0
    report = json.loads(out)
    assert report["pid"] == activator.pid and report["process"] == "openclaw-gateway"


# ---- 3. --force ---------------------------------------------------------------------------------


def test_force_replaces_a_running_gateway(gateways):
    port = free_port()
    old = gateways(["--port", str(port)])
    old.wait_ready()

    async def scenario():
        client = await ws_connect(port)
        new = gateways(["--port", str(port), "--force"])
        code, _, _ = await close_of(client)
        new.wait_ready()
        return new, code

    new, code = run(scenario())
    assert code == 1012
    assert old.wait() == 0  # the old one shut down cleanly
    assert http_get(port, "/healthz")[0] == 200
    new.wait_for_log(rf"--force: stopping pid {old.pid} \(openclaw-gateway\)")


def test_force_never_touches_something_that_is_not_a_gateway(gateways):
    port = free_port()
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))
        other.listen(1)
        hints = _conflict(gateways, port, "--force")
        assert "(--force leaves it alone)" in hints[0]
        # still ours, still listening
        with socket.create_connection(("127.0.0.1", port)):
            pass


def test_force_on_a_free_port_just_binds(gateways):
    port = free_port()
    gw = gateways(["--port", str(port), "--force"])
    gw.wait_ready()


# ---- 4. logs ------------------------------------------------------------------------------------


def test_under_the_journal_every_line_has_a_priority_prefix_and_no_timestamp(gateways):
    port = free_port()
    gw = gateways(["--port", str(port), "--log-level", "debug"], journal=True)
    gw.wait_ready()
    gw.stop()
    assert gw.lines, "no log lines"
    for line in gw.lines:
        assert re.match(r"^<[0-7]>", line), line
        assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", line), line
    assert any(line.startswith("<6>listening on ws://127.0.0.1:") for line in gw.lines)


def test_on_a_terminal_lines_carry_time_and_level(gateways):
    port = free_port()
    gw = gateways(["--port", str(port)])
    gw.wait_ready()
    line = gw.wait_for_log("listening on")
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info: listening on ws://127\.0\.0\.1:", line), line


def test_log_level_from_the_environment(gateways):
    port = free_port()
    gw = gateways(["--port", str(port)], env={"OPENCLAW_LOG_LEVEL": "warning"})
    gw.wait_ready()
    gw.stop()
    assert not any(" info: " in line for line in gw.lines), gw.lines


def test_an_invalid_log_level_is_a_usage_error(gateways):
    gw = gateways(["--log-level", "loud"], notify=False)
    assert gw.wait() == 64
