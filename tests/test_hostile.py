"""A hostile page or neighbour on the same host: DNS rebinding (a foreign name in Host) and an
allowlist that names the `null` origin. Real sockets on loopback, the real binary."""

import json
import os
import re
import socket
import subprocess
import time

import pytest

from harness import connect_as, free_port, http_get, refused_for, run, ws_connect


def start(gateways, *args, env=None):
    port = free_port()
    gw = gateways(["--port", str(port), *args], env=env)
    gw.wait_ready()
    return gw, port


def raw_get(port, host_header, path="/healthz", extra=b"", address="127.0.0.1"):
    head = f"GET {path} HTTP/1.1\r\n".encode() + (f"Host: {host_header}\r\n".encode() if host_header is not None else b"")
    return http_get(port, "", host=address, raw=head + extra + b"Connection: close\r\n\r\n")


def upgrade_head(port, host_header):
    """Status and headers of a WebSocket upgrade request (read up to the end of the head: a 101
    leaves the connection open)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: {host_header}\r\n".encode() + UPGRADE + b"\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    lines = data.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers


UPGRADE = b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"


def test_a_foreign_host_gets_421_on_healthz_and_on_the_upgrade(gateways):
    # After DNS rebinding a page on evil.example talks to 127.0.0.1 with its own name as Host.
    _, port = start(gateways)
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}"):
        status, _, body = raw_get(port, host)
        assert status == 421 and b"host not allowed" in body, (host, status)
        status, headers = upgrade_head(port, host)
        assert status == 421, (host, status)
        assert "sec-websocket-accept" not in headers


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}", "127.0.0.1", "localhost"])
def test_loopback_names_and_addresses_for_this_port_are_served(gateways, host):
    _, port = start(gateways)
    assert raw_get(port, host.format(port=port))[0] == 200
    status, headers = upgrade_head(port, host.format(port=port))
    assert status == 101 and headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_an_ipv6_literal_over_ipv6_is_served_and_another_port_is_not(gateways):
    _, port = start(gateways)
    assert raw_get(port, f"[::1]:{port}", address="::1")[0] == 200
    assert raw_get(port, f"127.0.0.1:{port + 1}")[0] == 421  # the right address, another port
    assert raw_get(port, f"192.0.2.1:{port}")[0] == 421  # an address, but not a loopback one


def test_websocket_clients_and_http_1_0_without_host_still_work(gateways):
    _, port = start(gateways)

    async def scenario():
        ws = await ws_connect(port)  # sends Host: 127.0.0.1:port
        await ws.close()
    run(scenario())
    assert http_get(port, "", raw=b"GET /healthz HTTP/1.0\r\n\r\n")[0] == 200


def test_a_configured_name_is_served_on_a_lan_bind_and_a_foreign_one_is_not(gateways, home):
    state = os.path.join(home, ".openclaw")
    os.makedirs(state)
    with open(os.path.join(state, "openclaw.json"), "w") as f:
        json.dump({"gateway": {"controlUi": {"allowedOrigins": ["https://gateway.example.net"]}}}, f)
    _, port = start(gateways, "--bind", "lan", env={"OPENCLAW_GATEWAY_TOKEN": "t"})
    assert raw_get(port, f"gateway.example.net:{port}")[0] == 200
    assert raw_get(port, f"evil.example:{port}")[0] == 421


def test_null_in_the_allowed_origins_is_refused_at_start_naming_the_entry(gateways, home):
    state = os.path.join(home, ".openclaw")
    os.makedirs(state)
    path = os.path.join(state, "openclaw.json")
    with open(path, "w") as f:
        json.dump({"gateway": {"controlUi": {"allowedOrigins": ["https://ui.example", "null"]}}}, f)
    gw = gateways(["--port", str(free_port())], notify=False)
    assert gw.wait() == 78
    assert gw.lines == [f"openclaw-gateway: invalid config {path}: gateway.controlUi.allowedOrigins[1] is \"null\", "
                        "the origin every sandboxed, data: or file: page sends; list the page's real origin instead"]


# ---- the failed-token limiter (upstream's gateway.auth.rateLimit) --------------------------------


def test_a_local_attackers_failures_do_not_stop_the_right_secret(gateways):
    _, port = start(gateways, "--token", "s3cret")
    for _ in range(15):  # more than upstream's 10, from the same loopback address as the owner
        assert refused_for(connect_as(port, "guess")) == "AUTH_TOKEN_MISMATCH"
    assert connect_as(port, "s3cret")["ok"] is True


def write_config(home, gateway):
    state = os.path.join(home, ".openclaw")
    os.makedirs(state, exist_ok=True)
    path = os.path.join(state, "openclaw.json")
    with open(path, "w") as f:
        json.dump({"gateway": gateway}, f)
    return path


def via(*chain):
    return {"extra_headers": {"X-Forwarded-For": ", ".join(chain)}}


def test_untrusted_forwarding_headers_are_limited_whatever_client_they_claim(gateways):
    # No gateway.trustedProxies: the header is anyone's to write, so it names no client. Its
    # failures count for the user behind the socket, and changing the claimed client dodges nothing.
    _, port = start(gateways, "--token", "s3cret")
    for _ in range(10):
        connect_as(port, "guess", **via("203.0.113.9"))
    locked = connect_as(port, "s3cret", **via("203.0.113.9"))
    assert refused_for(locked) == "AUTH_RATE_LIMITED" and locked["error"]["retryAfterMs"] > 200_000
    assert refused_for(connect_as(port, "s3cret", **via("203.0.113.10"))) == "AUTH_RATE_LIMITED"
    assert connect_as(port, "s3cret")["ok"] is True  # the owner's CLI, directly


def test_a_trusted_proxy_names_the_client_and_a_forged_entry_does_not(gateways, home):
    # A proxy on this host appends the address it saw; the attacker at .9 writes the victim's
    # address (.10) in front of it. Only the entry the trusted proxy appended counts.
    write_config(home, {"trustedProxies": ["127.0.0.1"], "auth": {"rateLimit": {"maxAttempts": 3}}})
    _, port = start(gateways, "--token", "s3cret")
    for _ in range(3):
        assert refused_for(connect_as(port, "guess", **via("203.0.113.10", "203.0.113.9"))) == "AUTH_TOKEN_MISMATCH"
    assert refused_for(connect_as(port, "s3cret", **via("203.0.113.9"))) == "AUTH_RATE_LIMITED"
    assert connect_as(port, "s3cret", **via("203.0.113.10"))["ok"] is True
    # a proxy chain: entries that are trusted proxies themselves are skipped
    assert refused_for(connect_as(port, "s3cret", **via("203.0.113.9", "127.0.0.1"))) == "AUTH_RATE_LIMITED"
    assert connect_as(port, "s3cret")["ok"] is True


def test_an_invalid_trusted_proxy_is_refused_at_start_naming_the_entry(gateways, home):
    path = write_config(home, {"trustedProxies": ["10.0.0.0/8", "10.0.0.0/33"]})
    gw = gateways(["--port", str(free_port())], notify=False)
    assert gw.wait() == 78
    assert gw.lines == [f"openclaw-gateway: invalid config {path}: gateway.trustedProxies[1] '10.0.0.0/33' is not "
                        "an IP address or CIDR range (such as 127.0.0.1 or 10.0.0.0/8)"]


# Runs as another user: connects `count` times with a wrong token, as a page or a proxy would,
# and prints the detail codes. Standard library and Debian's python3-websockets only.
ATTACKER = """
import asyncio, json, sys, websockets
port, count, origin, forwarded = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] or None, sys.argv[4] or None
async def attempt():
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    async with websockets.connect(f"ws://127.0.0.1:{port}/", origin=origin, extra_headers=headers, open_timeout=10) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "req", "id": "c", "method": "connect", "params": {
            "minProtocol": 4, "maxProtocol": 4, "auth": {"token": "guess"},
            "client": {"id": "t", "version": "1", "platform": "linux", "mode": "cli"}}}))
        return json.loads(await ws.recv())["error"]["details"]["code"]
async def main():
    return [await attempt() for _ in range(count)]
print(json.dumps(asyncio.run(main())))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the attacker as another user")
def test_another_users_failures_never_stop_the_owner_whatever_they_forge(gateways, home):
    # The attacker is another local user who knows everything but the secret: the allowed
    # Origin, the owner's claimed address, and that loopback is not exempt here.
    write_config(home, {"controlUi": {"allowedOrigins": ["https://ui.example"]},
                        "auth": {"rateLimit": {"maxAttempts": 3, "exemptLoopback": False}}})
    _, port = start(gateways, "--token", "s3cret")
    cases = [("", ""), ("https://ui.example", ""), ("", "203.0.113.10"), ("https://ui.example", "203.0.113.10")]
    for (origin, forwarded), mismatches in zip(cases, [3, 3, 3, 0]):
        out = subprocess.run(["/usr/bin/python3", "-c", ATTACKER, str(port), "5", origin, forwarded],
                             user=65534, group=65534, cwd="/", env={"PATH": "/usr/bin:/bin"},
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        # The attacker itself is locked out: its failures did count. (A page counts per origin and
        # user, forwarding headers or not: the last case was locked out by the second.)
        assert json.loads(out.stdout) == ["AUTH_TOKEN_MISMATCH"] * mismatches + ["AUTH_RATE_LIMITED"] * (5 - mismatches)
    for origin, forwarded in cases:
        kwargs = {"origin": origin} if origin else {}
        if forwarded:
            kwargs |= via(forwarded)
        assert connect_as(port, "s3cret", **kwargs)["ok"] is True, (origin, forwarded)


def test_browser_pages_are_limited_per_origin_even_on_loopback(gateways, home):
    state = os.path.join(home, ".openclaw")
    os.makedirs(state)
    with open(os.path.join(state, "openclaw.json"), "w") as f:
        json.dump({"gateway": {"controlUi": {"allowedOrigins": ["https://a.example", "https://b.example"]},
                               "auth": {"rateLimit": {"maxAttempts": 3}}}}, f)
    _, port = start(gateways, "--token", "s3cret")
    for _ in range(3):
        connect_as(port, "guess", origin="https://a.example")
    assert refused_for(connect_as(port, "s3cret", origin="https://a.example")) == "AUTH_RATE_LIMITED"
    assert connect_as(port, "s3cret", origin="https://b.example")["ok"] is True
    assert connect_as(port, "s3cret")["ok"] is True


def test_exempt_loopback_false_limits_loopback_too(gateways, home):
    state = os.path.join(home, ".openclaw")
    os.makedirs(state)
    with open(os.path.join(state, "openclaw.json"), "w") as f:
        json.dump({"gateway": {"auth": {"rateLimit": {"exemptLoopback": False, "maxAttempts": 3, "lockoutMs": 1500}}}}, f)
    _, port = start(gateways, "--token", "s3cret")
    for _ in range(3):
        connect_as(port, "guess")
    locked = connect_as(port, "s3cret")
    assert refused_for(locked) == "AUTH_RATE_LIMITED" and 0 < locked["error"]["retryAfterMs"] <= 1500


def test_a_rate_limit_that_is_not_a_positive_number_is_refused(gateways, home):
    state = os.path.join(home, ".openclaw")
    os.makedirs(state)
    path = os.path.join(state, "openclaw.json")
    with open(path, "w") as f:
        json.dump({"gateway": {"auth": {"rateLimit": {"maxAttempts": 0}}}}, f)
    gw = gateways(["--port", str(free_port())], notify=False)
    assert gw.wait() == 78
    assert gw.lines == [f"openclaw-gateway: invalid config {path}: gateway.auth.rateLimit.maxAttempts 0 is not a positive number"]


# ---- every refusal in the log -----------------------------------------------------------------


REFUSAL = re.compile(r'refused (\w+) peer=127\.0\.0\.1:(\d+) reason="([^"]+)"(?: (\w+)=(\S+))?')


def refusals(gw):
    return [m.groups() for m in map(REFUSAL.search, gw.lines) if m]


def test_every_refusal_kind_is_one_line_with_peer_reason_and_detail(gateways, home):
    gw, port = start(gateways, "--token", "s3cret", "--max-connections", "2")
    # origin
    status, _, _ = http_get(port, "", raw=b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://evil.example\r\n" + UPGRADE + b"\r\n")
    assert status == 403
    # Host
    assert raw_get(port, "evil.example")[0] == 421
    # auth: a wrong and a missing token
    assert refused_for(connect_as(port, "guess")) == "AUTH_TOKEN_MISMATCH"
    assert refused_for(connect_as(port, "")) == "AUTH_TOKEN_MISSING"
    # lockout: a proxied client past the limit
    for _ in range(10):
        connect_as(port, "guess", extra_headers={"X-Forwarded-For": "203.0.113.7"})
    assert refused_for(connect_as(port, "s3cret", extra_headers={"X-Forwarded-For": "203.0.113.7"})) == "AUTH_RATE_LIMITED"
    # the connection cap
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    try:
        assert http_get(port, "/healthz")[0] == 503
    finally:
        for s in held:
            s.close()
    gw.wait_for_log(r"refused cap ")
    seen = refusals(gw)
    kinds = [kind for kind, *_ in seen]
    assert kinds.count("origin") == 1 and kinds.count("host") == 1 and kinds.count("lockout") == 1 and kinds.count("cap") == 1
    assert kinds.count("auth") == 12  # 2 direct, 10 proxied
    details = {(kind, name, value) for kind, _, _, name, value in seen}
    assert ("origin", "origin", "https://evil.example") in details and ("host", "host", "evil.example") in details
    assert ("auth", "code", "AUTH_TOKEN_MISSING") in details and ("lockout", "code", "AUTH_RATE_LIMITED") in details
    assert ("cap", "max", "2") in details
    assert all(int(peer_port) > 0 for _, peer_port, *_ in seen)


def test_a_flood_of_refusals_is_logged_at_a_bounded_rate(gateways):
    gw, port = start(gateways)
    for _ in range(100):
        assert raw_get(port, "evil.example")[0] == 421
    logged = len(refusals(gw))
    assert 20 <= logged < 40, logged  # a burst of 20, then 10 a second
    time.sleep(1.2)  # the limit refills with time: nothing to wait for but the clock
    assert raw_get(port, "evil.example")[0] == 421
    line = gw.wait_for_log(r"earlier refusals not logged")
    assert re.search(r"\((\d+) earlier refusals not logged: rate limit\)", line)
