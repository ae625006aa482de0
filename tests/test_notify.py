"""sd_notify: READY only once the port accepts, STOPPING at shutdown, the watchdog."""

import os
import time
import signal
import socket

from harness import activated_argv, free_port, port_accepts


def test_ready_arrives_only_after_the_port_accepts_and_carries_the_status(gateways):
    port = free_port()
    gw = gateways(["--port", str(port)])
    ready = gw.wait_ready()
    # Checked the moment READY arrives: no retry, the listener must already be there.
    assert port_accepts(port)
    assert port_accepts(port, host="::1")
    assert f"STATUS=Listening on ws://127.0.0.1:{port}, ws://[::1]:{port} (bound by this process)" in ready.split("\n")
    assert gw.notify.count("READY=1") == 1


def test_stopping_is_sent_when_shutdown_begins(gateways):
    port = free_port()
    gw = gateways(["--port", str(port)])
    gw.wait_ready()
    gw.signal(signal.SIGTERM)
    stopping = gw.notify.wait_for("STOPPING=1")
    assert any(line.startswith("STATUS=") for line in stopping.split("\n"))
    assert gw.wait() == 0


def test_the_watchdog_is_pinged_at_half_the_interval(gateways):
    port = free_port()
    gw = gateways(["--port", str(port)], env={"WATCHDOG_USEC": "200000"})
    gw.wait_ready()
    gw.notify.drain_for(1.0)
    pings = gw.notify.count("WATCHDOG=1")
    assert 6 <= pings <= 14, f"expected about 10 pings in 1 s at 100 ms, got {pings}"


def test_watchdog_pid_of_another_process_turns_the_pings_off(gateways):
    port = free_port()
    gw = gateways(["--port", str(port)], env={"WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"})
    gw.wait_ready()
    gw.notify.drain_for(0.5)
    assert gw.notify.count("WATCHDOG=1") == 0


def test_watchdog_pid_of_this_process_keeps_them_on(gateways):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        argv = activated_argv([], listener.fileno())
        argv[2] = argv[2].replace("export LISTEN_PID=$$;", "export LISTEN_PID=$$ WATCHDOG_PID=$$;")
        gw = gateways([], argv=argv, pass_fds=(listener.fileno(),),
                      env={"LISTEN_FDS": "1", "LISTEN_FDNAMES": "gateway", "WATCHDOG_USEC": "100000"})
        gw.wait_ready()
    gw.notify.drain_for(0.5)
    assert gw.notify.count("WATCHDOG=1") >= 2


def test_an_unreachable_notify_socket_is_ignored(gateways, tmp_path):
    port = free_port()
    gw = gateways(["--port", str(port)], notify=False, env={"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    gw.wait_for_log(r"listening on ws://127\.0\.0\.1:%d" % port)
    assert port_accepts(port)
    assert gw.stop() == 0


def test_a_long_watchdog_interval_does_not_delay_shutdown(gateways):
    """The watchdog sleeps for half its interval; SIGTERM must not wait for it to wake up."""
    port = free_port()
    gw = gateways(["--port", str(port)], env={"WATCHDOG_USEC": "30000000"})
    gw.wait_ready()
    gw.notify.wait_for("WATCHDOG=1")
    started = time.monotonic()
    gw.signal(signal.SIGTERM)
    gw.notify.wait_for("STOPPING=1", timeout=2)
    assert gw.wait(timeout=5) == 0
    assert time.monotonic() - started < 1.0
