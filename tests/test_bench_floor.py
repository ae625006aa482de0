"""startup-floor, the bench's start-up floor (SwiftNIO + libsystemd, nothing of the gateway): it must
serve what `make bench` times, or the floor figures would time a failure."""

import os
import shutil
import socket

import pytest

from harness import BIN, free_port, http_get

FLOOR = os.path.join(os.path.dirname(BIN), "startup-floor")
ACTIVATE = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"

pytestmark = pytest.mark.skipif(not os.access(FLOOR, os.X_OK), reason=f"no startup-floor beside {BIN}")


def test_the_floor_binds_sends_ready_and_answers(gateways):
    port = free_port()
    floor = gateways([], argv=[FLOOR, "--port", str(port)])
    floor.wait_ready()
    status, _, body = http_get(port, "/healthz")
    assert (status, body) == (200, b'{"ok":true}')


def test_the_floor_refuses_a_taken_port_with_78(gateways):
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):  # the port's listener, held by this test
        floor = gateways([], argv=[FLOOR, "--port", str(port)])
        assert floor.wait() == 78


def test_the_floor_serves_the_socket_systemd_passes(gateways):
    port = free_port()
    floor = gateways([], argv=[ACTIVATE, "-l", f"127.0.0.1:{port}", "--fdname=gateway", FLOOR])
    floor.wait_for_log(f"Listening on 127.0.0.1:{port}")
    status, _, body = http_get(port, "/healthz")  # this connection starts the floor
    assert (status, body) == (200, b'{"ok":true}')
