"""Socket activation: sockets passed by systemd-socket-activate, and LISTEN_* that must be refused."""

import os
import shutil
import socket
import subprocess

import pytest

from harness import (BIN, BIND_FAILED_PREFIX, DUPLICATE_LINE, Gateway, activated_argv, free_port,
                     http_get, port_accepts, run, ws_connect)

ACTIVATE = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"


def activate(gateways, listen, extra_args=(), fdname="gateway"):
    """The gateway under systemd-socket-activate, which execs it on the first connection."""
    argv = [ACTIVATE]
    for address in listen:
        argv += ["-l", address]
    if fdname:
        argv.append(f"--fdname={fdname}")
    argv += ["-E", "NOTIFY_SOCKET", BIN, *extra_args]
    gw = gateways([], argv=argv)
    for address in listen:
        gw.wait_for_log(r"Listening on " + address.replace("[", r"\[").replace("]", r"\]"))
    return gw


def test_the_gateway_adopts_fd_3_and_serves_health_and_websocket(gateways):
    port = free_port()
    gw = activate(gateways, [f"127.0.0.1:{port}"])
    status, _, body = http_get(port, "/healthz")  # this connection starts the gateway
    assert status == 200 and b'"status":"live"' in body
    ready = gw.wait_ready()
    assert f"STATUS=Listening on ws://127.0.0.1:{port} (socket from systemd: gateway)" in ready.split("\n")
    gw.wait_for_log(r"listening on ws://127\.0\.0\.1:%d \(socket from systemd: gateway\)" % port)

    async def upgrade():
        ws = await ws_connect(port)
        await (await ws.ping())
        await ws.close()
    run(upgrade())
    assert gw.stop() == 0


def test_both_loopback_sockets_are_served(gateways):
    port = free_port()
    gw = activate(gateways, [f"127.0.0.1:{port}", f"[::1]:{port}"])
    assert http_get(port, "/healthz", host="::1")[0] == 200
    ready = gw.wait_ready()
    assert f"ws://127.0.0.1:{port}, ws://[::1]:{port}" in ready
    assert http_get(port, "/readyz", host="127.0.0.1")[0] == 200


def test_a_manual_launch_beside_an_activated_gateway_fails_the_same_way(gateways):
    port = free_port()
    gw = activate(gateways, [f"127.0.0.1:{port}"])
    assert http_get(port, "/healthz")[0] == 200
    gw.wait_ready()
    manual = gateways(["--port", str(port)], notify=False)
    assert manual.wait() == 78
    assert manual.lines[0] == DUPLICATE_LINE.format(host="127.0.0.1", port=port)


def test_without_a_gateway_name_every_passed_socket_is_served(gateways):
    port = free_port()
    gw = activate(gateways, [f"127.0.0.1:{port}"], fdname=None)
    assert http_get(port, "/health")[0] == 200
    assert "socket from systemd" in gw.wait_ready()


def test_a_passed_socket_wins_over_port_and_the_port_is_logged_as_ignored(gateways):
    port, other = free_port(), free_port()
    gw = activate(gateways, [f"127.0.0.1:{port}"], extra_args=["--port", str(other)])
    assert http_get(port, "/healthz")[0] == 200
    gw.wait_ready()
    line = gw.wait_for_log("ignored")
    assert str(port) in line and str(other) in line
    assert not port_accepts(other)


# ---- LISTEN_* that are not ours or not usable ----------------------------------------------


def test_listen_pid_of_another_process_is_ignored_and_the_gateway_binds_itself(gateways):
    port = free_port()
    gw = gateways(["--port", str(port)], env={"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "gateway"})
    assert "(bound by this process)" in gw.wait_ready()
    assert http_get(port, "/healthz")[0] == 200


def test_an_unparsable_listen_pid_is_ignored(gateways):
    port = free_port()
    gw = gateways(["--port", str(port)], env={"LISTEN_PID": "me", "LISTEN_FDS": "1"})
    assert "(bound by this process)" in gw.wait_ready()


def _refused(gw, port):
    rc = gw.wait()
    assert rc == 78, gw.stderr
    assert gw.lines[0].startswith(BIND_FAILED_PREFIX.format(host="127.0.0.1", port=port)), gw.stderr
    assert not port_accepts(port), "nothing may be bound on --port when the passed fd is refused"
    return gw.lines[0]


def _with_fd3(gateways, port, fd, env=None):
    env = {"LISTEN_FDS": "1", "LISTEN_FDNAMES": "gateway", **(env or {})}
    return gateways([], argv=activated_argv(["--port", str(port)], fd), env=env, pass_fds=(fd,), notify=False)


def test_a_regular_file_as_fd_3_is_refused(gateways, tmp_path):
    port = free_port()
    path = tmp_path / "not-a-socket"
    path.write_text("x")
    with open(path) as f:
        line = _refused(_with_fd3(gateways, port, f.fileno()), port)
    assert "passed fd 3 (gateway) is not a socket (a regular file)" in line


def test_a_udp_socket_as_fd_3_is_refused(gateways):
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        line = _refused(_with_fd3(gateways, port, udp.fileno()), port)
    assert "is a datagram (UDP) socket" in line


def test_a_connected_tcp_socket_as_fd_3_is_refused(gateways):
    port = free_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname()) as conn:
            line = _refused(_with_fd3(gateways, port, conn.fileno()), port)
    assert "is a TCP socket that is not listening" in line


@pytest.mark.parametrize("listen_fds,reason", [
    ("abc", "LISTEN_FDS=abc is not a number of sockets (1 or more)"),
    ("0", "LISTEN_FDS=0 is not a number of sockets (1 or more)"),
    ("-2", "LISTEN_FDS=-2 is not a number of sockets (1 or more)"),
    ("99999999999999", "LISTEN_FDS=99999999999999 is not a number of sockets (1 or more)"),
    ("4", "LISTEN_FDS=4 but fd 4 is not open"),
])
def test_garbage_listen_fds_is_a_clear_error_never_a_crash(gateways, listen_fds, reason):
    port = free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        gw = _with_fd3(gateways, port, listener.fileno(), env={"LISTEN_FDS": listen_fds, "LISTEN_FDNAMES": ""})
        line = _refused(gw, port)
    assert line == BIND_FAILED_PREFIX.format(host="127.0.0.1", port=port) + reason


def test_listen_fdnames_that_do_not_match_listen_fds_are_refused(gateways):
    port = free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        line = _refused(_with_fd3(gateways, port, listener.fileno(), env={"LISTEN_FDNAMES": "gateway:extra"}), port)
    assert "LISTEN_FDNAMES names 2 sockets but LISTEN_FDS=1" in line


def test_listen_pid_of_this_process_without_listen_fds_is_refused(gateways):
    port = free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        gw = gateways([], argv=activated_argv(["--port", str(port)], listener.fileno()),
                      pass_fds=(listener.fileno(),), notify=False)
        line = _refused(gw, port)
    assert "LISTEN_FDS is not set" in line


def test_a_passed_listener_is_served_through_the_launcher_too(gateways):
    """The launcher above is a faithful stand-in: with a good fd 3 the gateway serves it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        gw = gateways([], argv=activated_argv([], listener.fileno()),
                      env={"LISTEN_FDS": "1", "LISTEN_FDNAMES": "gateway"}, pass_fds=(listener.fileno(),))
        assert "socket from systemd: gateway" in gw.wait_ready()
    # our copy is closed; the gateway's copy serves
    assert http_get(port, "/healthz")[0] == 200
    # the listen backlog was restored after adoption (NIO sets 128)
    assert _listen_backlog(port) >= min(4096, int(open("/proc/sys/net/core/somaxconn").read()))
    assert gw.stop() == 0


def _listen_backlog(port):
    """The backlog of the listener on 127.0.0.1:port, from the kernel (ss shows it as Send-Q)."""
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[3].startswith("127.0.0.1:"):
            return int(fields[2])
    raise AssertionError(f"no listener on {port}: {out}")
