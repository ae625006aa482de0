"""Reloads while running: SIGHUP and a watched openclaw.json. The real binary, real files and a
NOTIFY_SOCKET standing in for systemd."""

import json
import os
import signal
import time

import pytest

from harness import connect_as, free_port, http_get, port_accepts, refused_for, run, ws_connect


def write_config(home, gateway, rename=True):
    """As editors write it: a temporary file renamed over the old one."""
    directory = os.path.join(home, ".openclaw")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "openclaw.json")
    text = gateway if isinstance(gateway, str) else json.dumps({"gateway": gateway})
    temporary = path + ".tmp" if rename else path
    with open(temporary, "w") as f:
        f.write(text)
    if rename:
        os.rename(temporary, path)
    return path


def start(gateways, home, gateway):
    port = free_port()
    write_config(home, {"port": port, **gateway})
    gw = gateways([])
    gw.wait_ready()
    return gw, port


def sighup(gw):
    """SIGHUP, then the reload's messages: (RELOADING=1 message, READY=1 message)."""
    seen = len(gw.notify.messages)
    gw.signal(signal.SIGHUP)
    reloading = gw.notify.wait_for_next("RELOADING=1", seen)
    ready = gw.notify.wait_for_next("READY=1", seen)
    return reloading, ready


def status_of(message):
    return next(line[len("STATUS="):] for line in message.split("\n") if line.startswith("STATUS="))


def origin_status(port, origin):
    head = (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: {origin}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    return http_get(port, "", raw=head.encode())[0]


def test_sighup_changes_the_token_and_ends_sessions_that_used_the_old_one(gateways, home):
    gw, port = start(gateways, home, {"auth": {"token": "old"}})

    async def scenario():
        ws = await ws_connect(port)
        await ws.recv()  # challenge
        await ws.send(json.dumps({"type": "req", "id": "c", "method": "connect", "params": {
            "minProtocol": 4, "maxProtocol": 4, "auth": {"token": "old"},
            "client": {"id": "t", "version": "1", "platform": "linux", "mode": "cli"}}}))
        assert json.loads(await ws.recv())["ok"] is True
        write_config(home, {"port": port, "auth": {"token": "new"}, "reload": {"mode": "off"}})
        reloading, ready = sighup(gw)
        frames = []
        import websockets
        try:
            while True:
                frames.append(json.loads(await ws.recv()))
        except websockets.ConnectionClosed as closed:
            return reloading, ready, frames, closed.rcvd.code, closed.rcvd.reason

    reloading, ready, frames, code, reason = run(scenario())
    _, headers, _ = http_get(port, "/healthz")
    assert headers["x-openclaw-config-generation"] == "2" and headers["x-openclaw-last-reload"] == "applied"
    assert any(line.startswith("MONOTONIC_USEC=") and int(line.split("=")[1]) > 0 for line in reloading.split("\n"))
    assert "applied gateway.auth" in status_of(ready) and "generation 2" in status_of(ready)
    shutdown = [f for f in frames if f.get("event") == "shutdown"]
    assert shutdown and shutdown[0]["payload"]["reason"] == "gateway auth changed"
    assert (code, reason) == (4001, "gateway auth changed")
    assert refused_for(connect_as(port, "old")) == "AUTH_TOKEN_MISMATCH"
    assert connect_as(port, "new")["ok"] is True


def test_a_changed_file_is_taken_up_once_it_settles(gateways, home):
    gw, port = start(gateways, home, {"controlUi": {"allowedOrigins": ["https://a.example"]}, "reload": {"debounceMs": 50}})
    assert origin_status(port, "https://b.example") == 403
    seen = len(gw.notify.messages)
    write_config(home, {"port": port, "controlUi": {"allowedOrigins": ["https://a.example", "https://b.example"]},
                        "reload": {"debounceMs": 50}})
    ready = gw.notify.wait_for_next("READY=1", seen)
    assert status_of(ready).startswith("config reload (file changed): generation 2: applied gateway.controlUi.allowedOrigins")
    assert connect_as(port, origin="https://b.example")["ok"] is True
    assert gw.notify.count("RELOADING=1") == 1  # the rename's several events: one reload


def test_an_invalid_file_keeps_the_last_good_config_serving(gateways, home):
    gw, port = start(gateways, home, {"auth": {"token": "good"}, "reload": {"mode": "off"}})
    path = write_config(home, "{gateway: {port: %d, auth: {token: 'next'}" % port)  # cut short
    _, ready = sighup(gw)
    line = gw.wait_for_log(r"config reload skipped \(invalid config\)")
    assert f"invalid config {path}: not valid JSON5" in line and "still serving generation 1" in line
    assert status_of(ready) in line  # the journal and systemctl status say the same
    assert status_of(ready).startswith(f"config reload skipped (invalid config), still serving generation 1: invalid config {path}")
    assert connect_as(port, "good")["ok"] is True
    assert refused_for(connect_as(port, "next")) == "AUTH_TOKEN_MISMATCH"
    # what `openclaw-gateway status` shows
    import subprocess
    from harness import BIN
    status = subprocess.run([BIN, "status", "--port", str(port)],  # (the broken file is not read for it)
                            env={"PATH": "/usr/bin:/bin", "HOME": home, "OPENCLAW_CONFIG_PATH": home + "/none.json"},
                            capture_output=True, text=True, timeout=30)
    assert "  config: generation 1, last reload: rejected" in status.stdout, status.stdout


def test_a_new_port_needs_a_restart_and_the_listener_stays(gateways, home):
    gw, port = start(gateways, home, {"reload": {"mode": "off"}})
    other = free_port()
    write_config(home, {"port": other, "reload": {"mode": "off"}})
    _, ready = sighup(gw)
    assert "restart needed for gateway.port" in status_of(ready)
    gw.wait_for_log(r"restart needed for gateway\.port")
    assert http_get(port, "/healthz")[0] == 200
    assert not port_accepts(other)
    # asked again: still pending, said again
    _, ready = sighup(gw)
    assert "restart needed for gateway.port" in status_of(ready)


def test_mode_off_ignores_the_file_but_not_sighup(gateways, home):
    gw, port = start(gateways, home, {"auth": {"token": "one"}, "reload": {"mode": "off", "debounceMs": 0}})
    write_config(home, {"port": port, "auth": {"token": "two"}, "reload": {"mode": "off", "debounceMs": 0}})
    gw.notify.drain_for(0.5)  # a watch that fired would have reloaded by now
    assert gw.notify.count("RELOADING=1") == 0
    assert connect_as(port, "one")["ok"] is True
    sighup(gw)
    assert connect_as(port, "two")["ok"] is True


def test_a_reload_with_nothing_changed_says_so(gateways, home):
    gw, _ = start(gateways, home, {"reload": {"mode": "off"}})
    _, ready = sighup(gw)
    assert status_of(ready) == "config reload (SIGHUP): no change, generation 1"


def test_a_hundred_reloads_under_load_lose_nothing(gateways, home):
    # Sessions keep asking while the config is reloaded 100 times (each time a change, applied);
    # new connections keep coming. Each reload waits until the load made progress since the last
    # one (4 answers, 1 new connection), so every reload lands in the middle of it. Not one
    # request unanswered, not one connection refused.
    import asyncio
    import threading

    gw, port = start(gateways, home, {"auth": {"token": "t"}, "reload": {"mode": "off"}})
    done = threading.Event()
    progress = threading.Condition()
    counts = {"answers": 0, "accepted": 0}
    generations = []

    def count(key):
        with progress:
            counts[key] += 1
            progress.notify_all()

    def reloads():
        try:
            for i in range(100):
                with progress:
                    at = dict(counts)
                    assert progress.wait_for(lambda: counts["answers"] >= at["answers"] + 4
                                             and counts["accepted"] >= at["accepted"] + 1, timeout=30), counts
                write_config(home, {"port": port, "auth": {"token": "t"}, "reload": {"mode": "off"},
                                    "controlUi": {"allowedOrigins": [f"https://ui{i}.example"]}})
                _, ready = sighup(gw)
                generations.append(status_of(ready))
        finally:
            done.set()

    async def session():
        ws = await ws_connect(port)
        await ws.recv()
        await ws.send(json.dumps({"type": "req", "id": "c", "method": "connect", "params": {
            "minProtocol": 4, "maxProtocol": 4, "auth": {"token": "t"},
            "client": {"id": "t", "version": "1", "platform": "linux", "mode": "cli"}}}))
        assert json.loads(await ws.recv())["ok"] is True
        n = 0
        while not done.is_set():
            n += 1
            await ws.send(json.dumps({"type": "req", "id": str(n), "method": "health"}))
            while True:
                frame = json.loads(await ws.recv())
                if frame.get("type") == "res":
                    break
            assert frame["id"] == str(n) and frame["ok"] is True
            count("answers")
        await ws.close()

    async def newcomers():
        while not done.is_set():
            reply = await asyncio.get_running_loop().run_in_executor(None, connect_as, port, "t")
            assert reply["ok"] is True, reply
            count("accepted")

    async def scenario():
        thread = threading.Thread(target=reloads)
        thread.start()
        try:
            await asyncio.gather(*[session() for _ in range(4)], newcomers())
        finally:
            done.set()
            thread.join(60)

    run(scenario())
    print(f"100 reloads: {counts['answers']} requests answered, {counts['accepted']} new connections accepted")
    assert len(generations) == 100 and generations[-1].startswith("config reload (SIGHUP): generation 101: applied")
    assert counts["answers"] >= 400 and counts["accepted"] >= 100, counts


def test_the_reload_command_refuses_an_invalid_config_and_asks_the_gateway_otherwise(gateways, home):
    # What the units' ExecReload= runs: `systemctl reload` fails on an invalid file, and then the
    # gateway is not even asked.
    import subprocess
    from harness import BIN

    gw, port = start(gateways, home, {"auth": {"token": "one"}, "reload": {"mode": "off"}})
    env = {"PATH": "/usr/bin:/bin", "HOME": home}
    path = write_config(home, "{gateway: {port: %d, auth: {mode: 'password'}}}" % port)
    refused = subprocess.run([BIN, "reload", "--pid", str(gw.pid)], env=env, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 78
    assert refused.stderr == (f"openclaw-gateway: reload refused: invalid config {path}: gateway.auth.mode is \"password\" "
                              "but no password is set (OPENCLAW_GATEWAY_PASSWORD or gateway.auth.password)\n")
    gw.notify.drain_for(0.3)
    assert gw.notify.count("RELOADING=1") == 0
    assert connect_as(port, "one")["ok"] is True

    write_config(home, {"port": port, "auth": {"token": "two"}, "reload": {"mode": "off"}})
    seen = len(gw.notify.messages)
    asked = subprocess.run([BIN, "reload", "--pid", str(gw.pid)], env=env, capture_output=True, text=True, timeout=30)
    assert asked.returncode == 0 and asked.stderr == ""
    # It returned once the gateway answered: the reload's READY=1 is already here, and the new
    # token is in force, with no wait of ours.
    assert "applied gateway.auth" in status_of(gw.notify.wait_for_next("READY=1", seen, timeout=0.05))
    assert connect_as(port, "two")["ok"] is True

    gone = subprocess.run([BIN, "reload", "--pid", "999999999"], env=env, capture_output=True, text=True, timeout=30)
    assert gone.returncode == 69 and gone.stderr.startswith("openclaw-gateway: cannot signal gateway process 999999999: ")


def test_a_reload_asked_before_the_gateway_reads_signals_waits_instead_of_ending_it(gateways, home):
    # SIGHUP is caught from the first line of main: one sent during start-up (here: once the config
    # was read, before the listener serves) is taken up once the reload service runs, never
    # SIGHUP's default action (the end of the process).
    port = free_port()
    write_config(home, {"port": port, "reload": {"mode": "off"}})
    gw = gateways(["--log-level", "debug"])
    gw.wait_for_log(r"read config ")
    gw.signal(signal.SIGHUP)
    gw.wait_ready()
    gw.notify.wait_for("RELOADING=1")
    assert gw.proc.poll() is None and http_get(port, "/healthz")[0] == 200


def test_the_log_level_follows_the_file_unless_a_flag_or_the_environment_sets_it(gateways, home):
    port = free_port()
    write_config(home, json.dumps({"gateway": {"port": port, "reload": {"mode": "off"}}, "logging": {"level": "warn"}}))
    gw = gateways([])
    gw.wait_ready()
    assert not any("listening on" in line for line in gw.lines)  # info, below warn
    write_config(home, json.dumps({"gateway": {"port": port, "reload": {"mode": "off"}}, "logging": {"level": "info"}}))
    _, ready = sighup(gw)
    assert "applied logging.level" in status_of(ready)
    sighup(gw)  # an info line now shows
    gw.wait_for_log(r"config reload \(SIGHUP\): no change, generation 2")
    write_config(home, json.dumps({"gateway": {"port": port, "reload": {"mode": "off"}}, "logging": {"level": "error"}}))
    sighup(gw)  # said at info, the level before it applies
    gw.wait_for_log(r"generation 3: applied logging.level")
    _, ready = sighup(gw)
    assert status_of(ready) == "config reload (SIGHUP): no change, generation 3"  # in STATUS=, and not in the log:
    assert not any("no change, generation 3" in line for line in gw.lines)

    # OPENCLAW_LOG_LEVEL wins over the file
    other = free_port()
    write_config(home, json.dumps({"gateway": {"port": other}, "logging": {"level": "error"}}))
    gw2 = gateways([], env={"OPENCLAW_LOG_LEVEL": "info"})
    gw2.wait_ready()
    gw2.wait_for_log(r"listening on ")


def test_an_unknown_log_level_in_the_file_is_exit_78(gateways, home):
    path = write_config(home, json.dumps({"logging": {"level": "loud"}}))
    gw = gateways(["--port", str(free_port())], notify=False)
    assert gw.wait() == 78
    assert gw.lines == [f"openclaw-gateway: invalid config {path}: logging.level \"loud\" is not one of "
                        "trace, debug, info, notice, warn, warning, error, fatal, critical, silent"]


def test_null_in_the_allowed_origins_on_a_reload_keeps_the_last_good_config_naming_the_entry(gateways, home):
    gw, port = start(gateways, home, {"controlUi": {"allowedOrigins": ["https://ui.example"]}, "reload": {"mode": "off"}})
    path = write_config(home, {"port": port, "controlUi": {"allowedOrigins": ["https://ui.example", "null"]},
                               "reload": {"mode": "off"}})
    _, ready = sighup(gw)
    assert status_of(ready) == (f"config reload skipped (invalid config), still serving generation 1: invalid config {path}: "
                                "gateway.controlUi.allowedOrigins[1] is \"null\", the origin every sandboxed, data: or file: "
                                "page sends; list the page's real origin instead")
    assert origin_status(port, "null") == 403
    assert connect_as(port, origin="https://ui.example")["ok"] is True


# ---- gateway.reload.mode restart and hybrid: what a reload restarts for, and when it cannot --------
# (the restart itself, exit 75 and systemd starting the gateway again with the sessions carried
# on, is proven under a real systemd: tests/systemd/checks.sh, 11.4)


def test_restart_mode_without_systemd_to_restart_it_serves_on_and_says_why(gateways, home):
    # A NOTIFY_SOCKET but no service manager on a bus: the gateway cannot know it would be started
    # again, so it must not stop; the change is taken up live and the journal says why not.
    gw, port = start(gateways, home, {"auth": {"token": "one"}, "reload": {"mode": "restart"}})
    write_config(home, {"port": port, "auth": {"token": "two"}, "reload": {"mode": "restart"}})
    _, ready = sighup(gw)
    assert "applied gateway.auth" in status_of(ready)
    gw.wait_for_log(r"restart needed for gateway\.auth \(gateway\.reload\.mode restart\), not done: cannot ask systemd about this unit: ")
    assert gw.proc.poll() is None
    assert connect_as(port, "two")["ok"] is True


def test_a_manual_launch_in_restart_mode_takes_the_change_up_live(gateways, home):
    port = free_port()
    write_config(home, {"port": port, "auth": {"token": "one"}, "reload": {"mode": "restart"}})
    gw = gateways([], notify=False)
    gw.wait_for_log(r"listening on")
    write_config(home, {"port": port, "auth": {"token": "two"}, "reload": {"mode": "restart"}})
    gw.signal(signal.SIGHUP)
    gw.wait_for_log(r"config reload \(SIGHUP\): generation 2: applied gateway\.auth")
    assert connect_as(port, "two")["ok"] is True
    assert gw.proc.poll() is None
    assert "not done" not in gw.stderr  # no service manager: nothing to ask


def test_hybrid_mode_does_not_restart_for_a_port_the_socket_unit_decides(gateways, home):
    import socket
    port = free_port()
    write_config(home, {"port": port, "reload": {"mode": "hybrid"}})
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    from harness import activated_argv
    gw = gateways([], argv=activated_argv([], listener.fileno()), pass_fds=(listener.fileno(),),
                  env={"LISTEN_FDS": "1", "LISTEN_FDNAMES": "gateway"})
    listener.close()
    gw.wait_ready()
    write_config(home, {"port": free_port(), "reload": {"mode": "hybrid"}})
    _, ready = sighup(gw)
    assert "restart needed for gateway.port" in status_of(ready)
    gw.wait_for_log(r"gateway\.port not taken up: the listener is systemd's \(its socket unit\), whose ListenStream= decides; "
                    r"a restart would not change it")
    assert http_get(port, "/healthz")[0] == 200
    assert gw.proc.poll() is None


# ---- the limits: flags > environment > the file's env block (upstream's place for environment
# variables, so the file stays valid for upstream's own schema) > defaults; a reload takes them up
# for new connections


def write_file(home, text):
    return write_config(home, text)


def test_a_reload_takes_up_the_connection_cap_and_the_tick_for_new_connections(gateways, home):
    import socket
    port = free_port()
    write_file(home, json.dumps({"gateway": {"port": port, "reload": {"mode": "off"}}}))
    gw = gateways([])
    gw.wait_ready()
    assert connect_as(port)["payload"]["policy"]["tickIntervalMs"] == 15_000
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    try:
        for s in held:  # both set up, before the cap changes
            s.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            assert b" 200 " in s.recv(4096)
        write_file(home, "{gateway: {port: %d, reload: {mode: 'off'}}, env: {OPENCLAW_GATEWAY_MAX_CONNECTIONS: '2', "
                         "vars: {OPENCLAW_GATEWAY_TICK_INTERVAL_MS: 2500}}}" % port)
        _, ready = sighup(gw)
        assert status_of(ready) == ("config reload (SIGHUP): generation 2: applied env.OPENCLAW_GATEWAY_MAX_CONNECTIONS, "
                                    "env.OPENCLAW_GATEWAY_TICK_INTERVAL_MS")
        assert http_get(port, "/healthz")[0] == 503  # a third connection, beyond the new cap
        for s in held:  # the two open ones are served on
            s.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            assert b" 200 " in s.recv(4096)
    finally:
        for s in held:
            s.close()
    for _ in range(50):  # until the two closes have reached the server
        if http_get(port, "/healthz")[0] == 200:
            break
        time.sleep(0.05)
    assert connect_as(port)["payload"]["policy"]["tickIntervalMs"] == 2500
    write_file(home, json.dumps({"gateway": {"port": port, "reload": {"mode": "off"}}}))
    _, ready = sighup(gw)  # removed from the file: the defaults again
    assert connect_as(port)["payload"]["policy"]["tickIntervalMs"] == 15_000


def test_a_flag_beats_the_environment_which_beats_the_file(gateways, home):
    port = free_port()
    write_file(home, json.dumps({"gateway": {"port": port}, "env": {
        "OPENCLAW_GATEWAY_TICK_INTERVAL_MS": "3000", "OPENCLAW_GATEWAY_MAX_PAYLOAD": "300000",
        "OPENCLAW_GATEWAY_MAX_BUFFERED_BYTES": "3000000"}}))
    gw = gateways(["--tick-interval-ms", "1000"], env={"OPENCLAW_GATEWAY_MAX_PAYLOAD": "200000"})
    gw.wait_ready()
    policy = connect_as(port)["payload"]["policy"]
    assert policy == {"tickIntervalMs": 1000, "maxPayload": 200000, "maxBufferedBytes": 3000000}


def test_a_bad_limit_in_the_file_is_exit_78_naming_it_and_in_the_environment_64(gateways, home):
    path = write_file(home, json.dumps({"gateway": {"port": free_port()}, "env": {"OPENCLAW_GATEWAY_MAX_CONNECTIONS": "lots"}}))
    gw = gateways([], notify=False)
    assert gw.wait() == 78
    assert gw.lines == [f"openclaw-gateway: invalid config {path}: env.OPENCLAW_GATEWAY_MAX_CONNECTIONS 'lots' is not "
                        "a whole number of 1 or more"]
    gw = gateways([], notify=False, env={"OPENCLAW_GATEWAY_HEADER_TIMEOUT_MS": "0"})
    assert gw.wait() == 64
    assert gw.lines == ["openclaw-gateway: invalid OPENCLAW_GATEWAY_HEADER_TIMEOUT_MS '0': expected a whole number of 1 or more"]


def test_a_bad_limit_on_a_reload_keeps_the_last_good_one(gateways, home):
    gw, port = start(gateways, home, {"reload": {"mode": "off"}})
    write_file(home, "{gateway: {port: %d, reload: {mode: 'off'}}, env: {OPENCLAW_GATEWAY_TICK_INTERVAL_MS: '-5'}}" % port)
    _, ready = sighup(gw)
    assert "config reload skipped (invalid config)" in status_of(ready)
    assert "env.OPENCLAW_GATEWAY_TICK_INTERVAL_MS '-5'" in status_of(ready)
    assert connect_as(port)["payload"]["policy"]["tickIntervalMs"] == 15_000
