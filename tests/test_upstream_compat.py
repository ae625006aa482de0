"""What upstream OpenClaw's own clients ask of a gateway (packages/gateway-client, the macOS/iOS
apps' Swift models, `openclaw gateway probe` / `openclaw status`), with an independent client
(Python `websockets`). Every frame is validated against the protocol schema."""

import asyncio
import hashlib
import json
import pathlib

from harness import run, ws_connect
from test_control_plane import connect_request, frame, start


async def connected(port, **kwargs):
    ws = await ws_connect(port)
    frame(await ws.recv())
    await ws.send(connect_request(**kwargs))
    hello = frame(await ws.recv())
    assert hello["ok"] is True, hello
    return ws, hello["payload"]


async def call(ws, req_id, method, params=None):
    message = {"type": "req", "id": req_id, "method": method}
    if params is not None:
        message["params"] = params
    await ws.send(json.dumps(message).encode())  # binary, as the apps send it
    while True:
        reply = frame(await ws.recv())
        if reply.get("type") == "res" and reply["id"] == req_id:
            return reply


def test_probe_gets_health_status_presence_and_config_together(gateways):
    # upstream's probe.ts: mode probe, scopes [operator.read], the four requests at once.
    _, port = start(gateways)

    async def scenario():
        ws, hello = await connected(port, scopes=["operator.read"], client_id="cli")
        assert hello["auth"] == {"role": "operator", "scopes": ["operator.read"]}
        for req_id, method in (("h", "health"), ("s", "status"), ("p", "system-presence"), ("c", "config.get")):
            await ws.send(json.dumps({"type": "req", "id": req_id, "method": method, "params": {}}).encode())
        replies = {}
        while len(replies) < 4:
            reply = frame(await ws.recv())
            if reply.get("type") == "res":
                replies[reply["id"]] = reply
        await ws.close()
        return [replies[k] for k in "hspc"]
    health, status, presence, config = run(scenario())
    assert all(r["ok"] for r in (health, status, presence, config))
    assert health["payload"]["ok"] is True and health["payload"]["ts"] > 0 and health["payload"]["durationMs"] >= 0
    summary = status["payload"]
    for key in ("heartbeat", "channelSummary", "queuedSystemEvents", "sessions", "runtimeVersion"):
        assert key in summary, key
    assert summary["sessions"]["count"] == 0 and summary["channelSummary"] == []  # nothing invented
    assert isinstance(presence["payload"], list)


def test_system_presence_lists_the_gateway_and_each_client_until_it_goes(gateways):
    _, port = start(gateways)

    async def scenario():
        first, _ = await connected(port, client_id="first-client")
        second, hello = await connected(port, client_id="second-client")
        in_hello = [e.get("host") for e in hello["snapshot"]["presence"]]
        both = (await call(first, "p1", "system-presence"))["payload"]
        await second.close()
        await asyncio.sleep(0.2)
        after = (await call(first, "p2", "system-presence"))["payload"]
        await first.close()
        return in_hello, both, after
    in_hello, both, after = run(scenario())
    assert both[0]["mode"] == "gateway" and both[0]["reason"] == "self"
    clients = {e["host"]: e for e in both[1:]}
    assert set(clients) == {"first-client", "second-client"} and in_hello[1:] == ["second-client", "first-client"]
    entry = clients["first-client"]
    assert entry["mode"] == "cli" and entry["platform"] == "linux" and entry["version"] == "1.0"
    assert entry["roles"] == ["operator"] and entry["scopes"] == ["operator.read"] and entry["reason"] == "connect"
    assert "ip" not in entry  # a loopback client, as upstream leaves it out
    assert [e.get("host") for e in after[1:]] == ["first-client"]


def test_config_get_is_the_file_read_with_secrets_redacted(gateways, home):
    state = pathlib.Path(home) / ".openclaw"
    state.mkdir()
    text = json.dumps({"gateway": {"auth": {"token": "file-t0ken-XYZ"}, "port": 1},
                       "channels": {"x": {"botToken": "bot-S3CRET", "apiKey": "${API_KEY}"}},
                       "agents": {"defaults": {"maxTokens": 4096}}}, indent=2)
    (state / "openclaw.json").write_text(text)
    _, port = start(gateways, env={"OPENCLAW_GATEWAY_TOKEN": "env-token"})

    async def scenario():
        ws, _ = await connected(port, token="env-token")
        reply = await call(ws, "c", "config.get", {})
        await ws.close()
        return reply
    reply = run(scenario())
    wire = json.dumps(reply)
    assert "file-t0ken-XYZ" not in wire and "bot-S3CRET" not in wire and "env-token" not in wire
    snapshot = reply["payload"]
    assert snapshot["path"] == str(state / "openclaw.json") and snapshot["exists"] and snapshot["valid"]
    assert snapshot["hash"] == hashlib.sha256(text.encode()).hexdigest()
    config = snapshot["config"]
    assert config["gateway"]["auth"]["token"] == "__OPENCLAW_REDACTED__"
    assert config["channels"]["x"]["botToken"] == "__OPENCLAW_REDACTED__"
    assert config["channels"]["x"]["apiKey"] == "${API_KEY}"  # a reference, not a secret
    assert config["agents"]["defaults"]["maxTokens"] == 4096 and config["gateway"]["port"] == 1
    assert json.loads(snapshot["raw"]) == config  # the raw text, redacted in place
    assert snapshot["issues"] == [] and snapshot["warnings"] == [] and snapshot["legacyIssues"] == []


def test_without_a_read_scope_only_health_answers(gateways):
    _, port = start(gateways)

    async def scenario():
        ws, hello = await connected(port, scopes=None)  # declares no scopes: none are granted
        replies = [await call(ws, m, m) for m in ("health", "status", "system-presence", "config.get")]
        await ws.close()
        return hello, replies
    hello, (health, *rest) = run(scenario())
    assert hello["auth"]["scopes"] == [] and health["ok"] is True
    for reply in rest:
        assert reply["error"] == {"code": "INVALID_REQUEST", "message": "missing scope: operator.read"}


def test_an_unknown_role_is_refused_and_a_node_gets_health_only(gateways):
    _, port = start(gateways)

    async def scenario():
        ws = await ws_connect(port)
        frame(await ws.recv())
        await ws.send(connect_request(role="superuser"))
        refused = frame(await ws.recv())
        node, hello = await connected(port, role="node", scopes=["operator.admin"])
        health = await call(node, "h", "health")
        status = await call(node, "s", "status")
        await node.close()
        return refused, hello, health, status
    refused, hello, health, status = run(scenario())
    assert refused["error"]["code"] == "INVALID_REQUEST" and "role" in refused["error"]["message"]
    assert hello["auth"] == {"role": "node", "scopes": []}
    assert health["ok"] is True and status["error"]["message"] == "unauthorized role: node"


def test_a_protocol_mismatch_carries_upstreams_numbers(gateways):
    _, port = start(gateways)

    async def scenario():
        ws = await ws_connect(port)
        frame(await ws.recv())
        await ws.send(connect_request(min_protocol=3, max_protocol=3))
        return frame(await ws.recv())
    error = run(scenario())["error"]
    assert error["code"] == "INVALID_REQUEST" and error["message"] == "protocol mismatch"
    assert error["details"] == {"code": "PROTOCOL_MISMATCH", "expectedProtocol": 4, "clientMinProtocol": 3,
                                "clientMaxProtocol": 3, "minimumProbeProtocol": 4}


def connect_ui(client_id, mode):
    return json.dumps({"type": "req", "id": "c", "method": "connect", "params": {
        "minProtocol": 4, "maxProtocol": 4, "role": "operator", "scopes": ["operator.read"],
        "client": {"id": client_id, "version": "1.0", "platform": "macos", "mode": mode}}})


def test_presence_events_follow_clients_coming_and_going(gateways):
    # upstream's broadcastPresenceSnapshot: a `presence` event with the whole list and the state
    # versions; here at most one per second, to app and UI clients (not to a CLI run or a probe).
    _, port = start(gateways)

    async def ui(client_id, mode="ui"):
        ws = await ws_connect(port)
        frame(await ws.recv())
        await ws.send(connect_ui(client_id, mode))
        hello = frame(await ws.recv())
        assert hello["ok"] is True
        return ws, hello["payload"]


    async def next_presence(ws, deadline=5):
        while True:
            event = frame(await asyncio.wait_for(ws.recv(), deadline))
            if event.get("event") == "presence":
                return event

    async def scenario():
        watcher, hello = await ui("watcher")
        assert "presence" in hello["features"]["events"]
        cli, _ = await connected(port, client_id="cli-run")  # mode cli
        visitor, _ = await ui("visitor", mode="webchat")
        arrived = await next_presence(watcher)
        cli_events = []  # what the CLI run got of the same broadcast: nothing
        try:
            while True:
                cli_events.append(frame(await asyncio.wait_for(cli.recv(), 0.5)).get("event"))
        except asyncio.TimeoutError:
            pass
        await visitor.close()
        await cli.close()
        left = await next_presence(watcher)
        await watcher.close()
        return arrived, left, cli_events
    arrived, left, cli_events = run(scenario())
    assert "presence" not in cli_events
    assert [e.get("host") for e in arrived["payload"]["presence"][1:]] == ["visitor", "cli-run", "watcher"]
    assert [e.get("host") for e in left["payload"]["presence"][1:]] == ["watcher"]
    assert left["stateVersion"]["presence"] > arrived["stateVersion"]["presence"]
    assert left["seq"] == arrived["seq"] + 1
