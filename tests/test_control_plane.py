"""The WebSocket control plane with an independent client (Python `websockets`); every frame the
gateway sends is validated against shared/spec/protocol-v4.schema.json."""

import asyncio
import base64
import json
import os
import pathlib
import signal
import socket
import struct
import time

import jsonschema
import pytest

from harness import close_of, free_port, http_get, run, ws_connect

# A copy of shared/spec/protocol-v4.schema.json, so the tests run from any clone;
# test_the_schema_copy_matches_shared catches drift wherever shared/ sits beside the repository.
SCHEMA_PATH = pathlib.Path(__file__).resolve().parent / "spec" / "protocol-v4.schema.json"
SHARED_SCHEMA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "spec" / "protocol-v4.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text())
# The schema's $id is relative, which this jsonschema cannot resolve "#/$defs/…" against; an
# absolute id (in memory only) keeps every rule as written.
SCHEMA["$id"] = "urn:openclaw-gateway:protocol-v4-server-frames"
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def test_the_schema_copy_matches_shared():
    if not SHARED_SCHEMA.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED_SCHEMA} is missing: CI must check the copy against it")
        pytest.skip(f"{SHARED_SCHEMA} is not beside this clone, so the copy cannot be compared")
    assert json.loads(SHARED_SCHEMA.read_text()) == json.loads(SCHEMA_PATH.read_text())


def frame(text):
    """A frame from the gateway, parsed and checked against the protocol schema."""
    data = json.loads(text)
    VALIDATOR.validate(data)
    return data


def connect_request(req_id="c1", token=None, min_protocol=4, max_protocol=4, scopes=("operator.read",), role=None,
                    client_id="pytest"):
    params = {"minProtocol": min_protocol, "maxProtocol": max_protocol,
              "client": {"id": client_id, "version": "1.0", "platform": "linux", "mode": "cli"}}
    if token is not None:
        params["auth"] = {"token": token}
    if scopes is not None:
        params["scopes"] = list(scopes)
    if role is not None:
        params["role"] = role
    return json.dumps({"type": "req", "id": req_id, "method": "connect", "params": params})


async def handshake(port, token=None, **kwargs):
    ws = await ws_connect(port, **kwargs)
    challenge = frame(await ws.recv())
    assert challenge["event"] == "connect.challenge" and challenge["payload"]["nonce"]
    await ws.send(connect_request(token=token))
    hello = frame(await ws.recv())
    assert hello["ok"] is True, hello
    return ws, hello["payload"]


async def request(ws, req_id, method):
    await ws.send(json.dumps({"type": "req", "id": req_id, "method": method}))
    while True:
        reply = frame(await ws.recv())
        if reply["type"] == "res":
            assert reply["id"] == req_id
            return reply


def start(gateways, *extra, env=None):
    port = free_port()
    gw = gateways(["--port", str(port), *extra], env=env)
    gw.wait_ready()
    return gw, port


# ---- 1. the happy path --------------------------------------------------------------------------


def test_handshake_health_status_ticks_and_shutdown(gateways):
    gw, port = start(gateways, "--tick-interval-ms", "200")

    async def scenario():
        ws, hello = await handshake(port)
        assert hello["protocol"] == 4 and hello["snapshot"]["authMode"] == "none"
        assert {"health", "status"} <= set(hello["features"]["methods"])
        assert {"tick", "shutdown"} <= set(hello["features"]["events"])
        assert hello["auth"] == {"role": "operator", "scopes": ["operator.read"]}
        health = await request(ws, "h1", "health")
        assert health["ok"] is True and health["payload"]["status"] == "live"
        status = (await request(ws, "s1", "status"))["payload"]
        assert status["pid"] == gw.pid and status["listener"]["source"] == "bound"
        assert status["urls"][0] == f"ws://127.0.0.1:{port}" and status["connections"] >= 1
        assert status["connId"] == hello["server"]["connId"] and status["profile"] is None
        tick = frame(await asyncio.wait_for(ws.recv(), 2))
        assert tick["event"] == "tick" and tick["payload"]["ts"] > 0
        # and again: each tick schedules the next
        again = frame(await asyncio.wait_for(ws.recv(), 2))
        assert again["event"] == "tick" and again["payload"]["ts"] >= tick["payload"]["ts"] + 150
        gw.signal(signal.SIGTERM)
        code, reason, frames = await close_of(ws)
        events = [frame(f) for f in frames]
        return code, reason, events

    code, reason, events = run(scenario())
    shutdown = [e for e in events if e.get("event") == "shutdown"]
    assert len(shutdown) == 1 and shutdown[0]["payload"]["reason"]
    assert "restartExpectedMs" not in shutdown[0]["payload"] or shutdown[0]["payload"]["restartExpectedMs"] >= 0
    assert (code, reason) == (1012, "service restart")
    assert gw.wait() == 0


def test_when_systemd_cannot_say_it_is_a_restart_sessions_are_closed_not_stored(gateways):
    # NOTIFY_SOCKET is set (a service manager listens) but no D-Bus answers whether a restart job
    # is pending (none runs here): nothing goes into an fd store, the client is closed as always.
    gw, port = start(gateways)

    async def scenario():
        ws, _ = await handshake(port)
        gw.signal(signal.SIGTERM)
        code, reason, frames = await close_of(ws)
        return code, [frame(f).get("event") for f in frames]

    code, events = run(scenario())
    assert code == 1012 and "shutdown" in events
    assert gw.wait() == 0
    gw.notify.drain_for(0.2)
    assert gw.notify.count("FDSTORE=1") == 0
    assert "closing clients: cannot ask systemd whether this is a restart" in gw.stderr


def test_a_command_line_of_lock_flags_only_gets_the_same_defaults_as_a_parsed_one(gateways):
    # `--port N` alone skips ArgumentParser (the early lock); `--log-level info` sends the same
    # start through it. Both must serve with the same policy.
    policies = []
    for extra in ([], ["--log-level", "info"]):
        gw, port = start(gateways, *extra)

        async def scenario():
            ws, hello = await handshake(port)
            await ws.close()
            return hello["policy"]
        policies.append(run(scenario()))
        assert gw.stop() == 0
    assert policies[0] == policies[1] == {"maxPayload": 1048576, "maxBufferedBytes": 4194304, "tickIntervalMs": 15000}


def test_unknown_method_is_invalid_request_and_the_connection_stays(gateways):
    gw, port = start(gateways)

    async def scenario():
        ws, _ = await handshake(port)
        reply = await request(ws, "x1", "no.such.method")
        assert reply["ok"] is False and reply["error"]["code"] == "INVALID_REQUEST"
        assert (await request(ws, "x2", "health"))["ok"] is True
        await ws.close()
    run(scenario())


def test_a_token_is_required_when_configured(gateways):
    gw, port = start(gateways, env={"OPENCLAW_GATEWAY_TOKEN": "s3cret"})

    async def scenario():
        outcomes = {}
        for token in ["wrong", None, "s3cret"]:
            ws = await ws_connect(port)
            frame(await ws.recv())
            await ws.send(connect_request(token=token))
            reply = frame(await ws.recv())
            outcomes[token] = (reply["ok"], reply["payload"]["snapshot"]["authMode"] if reply["ok"] else None)
            await ws.close()
        return outcomes
    # Only the configured token gets hello-ok, and it says the gateway wants one.
    assert run(scenario()) == {"wrong": (False, None), None: (False, None), "s3cret": (True, "token")}


# ---- 2. every rejection -------------------------------------------------------------------------


async def _first_then_close(port, text, **kwargs):
    ws = await ws_connect(port, **kwargs)
    frame(await ws.recv())  # challenge
    await ws.send(text)
    code, reason, frames = await close_of(ws)
    return code, [frame(f) for f in frames]


def test_a_first_frame_other_than_connect_closes_1008(gateways):
    _, port = start(gateways)
    code, _ = run(_first_then_close(port, json.dumps({"type": "req", "id": "1", "method": "health"})))
    assert code == 1008


def test_a_protocol_range_without_4_is_invalid_request_then_1002(gateways):
    _, port = start(gateways)
    code, frames = run(_first_then_close(port, connect_request(min_protocol=5, max_protocol=6)))
    assert code == 1002
    assert frames[0]["ok"] is False and frames[0]["error"]["code"] == "INVALID_REQUEST"


@pytest.mark.parametrize("token,detail,reason", [("wrong", "AUTH_TOKEN_MISMATCH", "token_mismatch"),
                                                  ("", "AUTH_TOKEN_MISSING", "token_missing"),
                                                  (None, "AUTH_TOKEN_MISSING", "token_missing")])
def test_a_wrong_or_missing_token_gets_upstreams_detail_code_then_1008(gateways, token, detail, reason):
    _, port = start(gateways, "--token", "s3cret")

    async def scenario():
        ws = await ws_connect(port)
        frame(await ws.recv())
        await ws.send(connect_request(token=token))
        code, why, frames = await close_of(ws)
        return code, why, [frame(f) for f in frames]
    code, why, frames = run(scenario())
    error = frames[0]["error"]
    assert error["code"] == "INVALID_REQUEST"  # upstream's ErrorCodes have no UNAUTHORIZED
    assert error["details"] == {"code": detail, "authReason": reason, "canRetryWithDeviceToken": False,
                                "recommendedNextStep": "update_auth_credentials" if token == "wrong"
                                else "update_auth_configuration"}
    assert error["message"].startswith("unauthorized: gateway token " + ("mismatch" if token == "wrong" else "missing"))
    assert (code, why) == (1008, error["message"])


def test_failed_tokens_from_one_client_are_rate_limited(gateways):
    # A client behind a proxy on this host (forwarding headers, no trustedProxies): limited, per
    # user owning the socket, after upstream's default of 10 failures.
    _, port = start(gateways, "--token", "s3cret")
    proxied = {"extra_headers": {"X-Forwarded-For": "203.0.113.9"}}
    for _ in range(10):
        run(_first_then_close(port, connect_request(token="guess"), **proxied))
    code, frames = run(_first_then_close(port, connect_request(token="s3cret"), **proxied))  # even the right one
    assert code == 1008
    assert frames[0]["error"]["retryable"] is True and frames[0]["error"]["retryAfterMs"] > 0
    assert frames[0]["error"]["details"]["code"] == "AUTH_RATE_LIMITED"
    assert frames[0]["error"]["details"]["recommendedNextStep"] == "wait_then_retry"


def test_binary_frames_carry_json_like_text_frames_and_answers_stay_text(gateways):
    # Upstream's apps send connect and every request as a binary message (URLSessionWebSocketTask
    # .send(.data)); upstream's server reads both.
    _, port = start(gateways)

    async def scenario():
        ws = await ws_connect(port)
        frame(await ws.recv())
        await ws.send(connect_request(req_id="b1").encode())
        hello = await ws.recv()
        await ws.send(json.dumps({"type": "req", "id": "b2", "method": "status"}).encode())
        status = await ws.recv()
        await ws.close()
        return hello, status
    hello, status = run(scenario())
    assert isinstance(hello, str) and isinstance(status, str)  # text frames back
    assert frame(hello)["payload"]["type"] == "hello-ok" and frame(status)["ok"] is True


def test_invalid_utf8_in_a_binary_frame_closes_1007(gateways):
    _, port = start(gateways)

    async def scenario():
        ws, _ = await handshake(port)
        await ws.send(b'{"type":"req","id":"\xff","method":"health"}')
        return (await close_of(ws))[0]
    assert run(scenario()) == 1007


def test_unreadable_json_closes_1007(gateways):
    _, port = start(gateways)
    assert run(_first_then_close(port, "{not json"))[0] == 1007


def _raw_upgrade(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    assert data.startswith(b"HTTP/1.1 101")
    return s


def _client_frame(opcode, payload, length_override=None):
    """A masked client frame, optionally with a lying 64-bit length."""
    mask = os.urandom(4)
    length = len(payload) if length_override is None else length_override
    if length_override is not None or length >= 65536:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    elif length >= 126:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _read_close_code(s):
    """Reads server frames until a close frame; returns its code."""
    buf = b""
    while True:
        while len(buf) < 2:
            chunk = s.recv(65536)
            if not chunk:
                return None
            buf += chunk
        opcode, length = buf[0] & 0x0F, buf[1] & 0x7F
        offset = 2
        if length == 126:
            length, offset = struct.unpack("!H", buf[2:4])[0], 4
        elif length == 127:
            length, offset = struct.unpack("!Q", buf[2:10])[0], 10
        while len(buf) < offset + length:
            chunk = s.recv(65536)
            if not chunk:
                return None
            buf += chunk
        payload, buf = buf[offset:offset + length], buf[offset + length:]
        if opcode == 0x8:
            return struct.unpack("!H", payload[:2])[0]


def test_invalid_utf8_in_a_text_frame_closes_1007(gateways):
    _, port = start(gateways)
    with _raw_upgrade(port) as s:
        s.sendall(_client_frame(0x1, b'{"id":"\xff\xfe"}'))
        assert _read_close_code(s) == 1007


def test_a_frame_over_64_kib_before_hello_closes_1009(gateways):
    _, port = start(gateways)
    with _raw_upgrade(port) as s:
        s.sendall(_client_frame(0x1, b"x" * (64 * 1024 + 1)))
        assert _read_close_code(s) == 1009


def test_a_frame_over_max_payload_after_hello_closes_1009(gateways):
    _, port = start(gateways, "--max-payload", "200000")

    async def scenario():
        ws, hello = await handshake(port, max_size=None)
        assert hello["policy"]["maxPayload"] == 200000
        await ws.send(json.dumps({"type": "req", "id": "big", "method": "health", "pad": "x" * 150000}))  # fine
        assert (frame(await ws.recv()))["ok"] is True
        await ws.send("x" * 200001)
        return (await close_of(ws))[0]
    assert run(scenario()) == 1009


def test_a_100_mib_length_header_closes_1009_at_once(gateways):
    _, port = start(gateways)
    with _raw_upgrade(port) as s:
        s.sendall(_client_frame(0x1, b"", length_override=100 * 1024 * 1024))
        assert _read_close_code(s) == 1009


def test_no_connect_within_the_handshake_timeout_closes_1008(gateways):
    _, port = start(gateways, "--handshake-timeout-ms", "300")

    async def scenario():
        ws = await ws_connect(port)
        return (await close_of(ws))[0]
    assert run(scenario()) == 1008


def test_a_foreign_origin_is_refused_with_403_before_the_upgrade(gateways):
    _, port = start(gateways)
    raw = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           b"Origin: https://evil.example\r\n\r\n")
    assert http_get(port, "", raw=raw)[0] == 403


def test_the_gateways_own_loopback_origin_and_configured_origins_are_allowed(gateways, home):
    os.makedirs(os.path.join(home, ".openclaw"))
    with open(os.path.join(home, ".openclaw", "openclaw.json"), "w") as f:
        json.dump({"gateway": {"controlUi": {"allowedOrigins": ["https://ui.example"]}}}, f)
    _, port = start(gateways)

    async def scenario():
        for origin in [f"http://127.0.0.1:{port}", f"http://localhost:{port}", "https://ui.example"]:
            ws, _ = await handshake(port, origin=origin)
            await ws.close()
    run(scenario())


def test_beyond_the_connection_cap_is_503(gateways):
    _, port = start(gateways, "--max-connections", "3")
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    try:
        assert http_get(port, "/healthz")[0] == 503
    finally:
        for s in held:
            s.close()


def test_fragmented_messages_are_reassembled(gateways):
    _, port = start(gateways)
    with _raw_upgrade(port) as s:
        text = connect_request().encode()
        first, rest = text[:20], text[20:]
        mask = os.urandom(4)
        # text frame without FIN, then a continuation frame with FIN
        s.sendall(struct.pack("!BB", 0x01, 0x80 | len(first)) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(first)))
        s.sendall(_client_frame(0x0, rest))
        s.settimeout(5)
        data = b""
        while b"hello-ok" not in data:
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk


def test_a_request_whose_headers_never_finish_is_closed_after_the_header_timeout(gateways):
    _, port = start(gateways, "--header-timeout-ms", "300")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        assert s.recv(1024) == b""  # closed by the gateway, well before our 5 s


# ---- 3. hostile input keeps the gateway serving -------------------------------------------------


def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_hostile_input_leaves_the_gateway_serving_with_bounded_memory(gateways):
    gw, port = start(gateways, "--max-buffered-bytes", "65536")

    def still_serving():
        async def fresh():
            ws, _ = await handshake(port)
            await ws.close()
        run(fresh())

    # garbage bytes
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(os.urandom(4096))
    still_serving()
    # an incomplete request that never ends (left open while we go on)
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    still_serving()
    # a 1 MiB header: refused (a 4xx, or a reset when the gateway closes while we still send)
    try:
        code, _, _ = http_get(port, "", raw=b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
        assert code in (400, 431)
    except (ConnectionResetError, BrokenPipeError):
        pass
    still_serving()
    # an upgrade without a key, and a wrong version
    for headers, status in ((b"Sec-WebSocket-Version: 13\r\n", 400),
                            (b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 7\r\n", 426)):
        raw = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + headers + b"\r\n"
        assert http_get(port, "", raw=raw)[0] == status
    still_serving()
    # a 100 MiB frame length header
    with _raw_upgrade(port) as s:
        s.sendall(_client_frame(0x1, b"", length_override=100 * 1024 * 1024))
        assert _read_close_code(s) == 1009
    still_serving()
    # a client that never reads while the server sends: it is dropped, memory stays bounded
    s = _raw_upgrade(port)
    s.sendall(_client_frame(0x1, connect_request().encode()))
    request = _client_frame(0x1, json.dumps({"type": "req", "id": "r", "method": "status"}).encode())
    dropped = False
    try:
        for _ in range(200000):
            s.sendall(request)
        # A fast server takes every request into the socket buffers and drops the client just
        # after the last send returns; keep sending (still never reading) until a send fails.
        for _ in range(100):
            time.sleep(0.05)
            s.sendall(request)
    except (BrokenPipeError, ConnectionResetError):
        dropped = True
    assert dropped, "a client that never reads must be dropped"
    s.close()
    slow.close()
    still_serving()
    assert _rss_kib(gw.pid) < 64 * 1024


# ---- 4. soak ------------------------------------------------------------------------------------


def test_soak_200_clients_doing_health_for_10_seconds(gateways):
    gw, port = start(gateways, "--tick-interval-ms", "1000")

    async def client(index, deadline):
        ws, _ = await handshake(port)
        count = 0
        while asyncio.get_running_loop().time() < deadline:
            count += 1
            reply = await request(ws, f"{index}-{count}", "health")
            assert reply["ok"] is True
        await ws.close()
        assert ws.close_code == 1000
        return count

    async def scenario():
        deadline = asyncio.get_running_loop().time() + 10
        return await asyncio.gather(*(client(i, deadline) for i in range(200)))

    counts = run(scenario())
    assert len(counts) == 200 and min(counts) > 0
    assert gw.proc.poll() is None


def test_the_gateway_raises_its_soft_file_limit_to_the_hard_limit(gateways):
    import resource

    def low_soft_limit():
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    port = free_port()
    gw = gateways(["--port", str(port)], preexec_fn=low_soft_limit)
    gw.wait_ready()
    with open(f"/proc/{gw.pid}/limits") as f:
        line = next(l for l in f if l.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    assert soft == hard and soft != "256", line
