"""HTTP on the gateway's port: probes, wrong methods and paths, malformed requests."""

import socket

import pytest

from harness import free_port, http_get, run, ws_connect


@pytest.fixture
def port(gateways):
    port = free_port()
    gateways(["--port", str(port)]).wait_ready()
    return port


@pytest.mark.parametrize("path,status", [("/healthz", "live"), ("/health", "live"), ("/readyz", "ready"), ("/ready", "ready")])
def test_probes_answer_json(port, path, status):
    code, headers, body = http_get(port, path)
    assert code == 200
    assert headers["content-type"] == "application/json"
    assert body == ('{"ok":true,"status":"%s"}' % status).encode()


def test_head_has_headers_but_no_body(port):
    code, headers, body = http_get(port, "/healthz", method="HEAD")
    assert code == 200 and body == b"" and headers["content-length"] == "27"


def test_other_methods_on_a_probe_are_405(port):
    code, headers, _ = http_get(port, "/healthz", method="POST")
    assert code == 405 and headers["allow"] == "GET, HEAD"


def test_other_paths_are_404(port):
    assert http_get(port, "/nope")[0] == 404


def test_the_websocket_path_without_an_upgrade_is_426(port):
    assert http_get(port, "/")[0] == 426


def test_malformed_requests_get_400_and_the_gateway_keeps_serving(port):
    code, _, _ = http_get(port, "", raw=b"\x00\x01garbage\r\n\r\n")
    assert code == 400
    assert http_get(port, "/healthz")[0] == 200


def test_keep_alive_serves_several_requests_on_one_connection(port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while data.count(b"HTTP/1.1 200") < 2:
            chunk = s.recv(4096)
            assert chunk
            data += chunk
    assert b'"status":"ready"' in data


def test_a_websocket_upgrade_on_slash_stays_open_and_answers_pings(port):
    async def scenario():
        ws = await ws_connect(port)
        for _ in range(3):
            await (await ws.ping())
        await ws.close()
        return ws.close_code
    assert run(scenario()) == 1000


UPGRADE = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n%s\r\n")


@pytest.mark.parametrize("headers,status", [
    (b"Sec-WebSocket-Version: 13\r\n", 400),  # no key
    (b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n", 426),  # old version
])
def test_a_broken_websocket_handshake_is_refused_and_closed(port, headers, status):
    code, response_headers, _ = http_get(port, "", raw=UPGRADE % headers)  # returns only at EOF
    assert code == status
    assert response_headers["sec-websocket-version"] == "13"
    assert http_get(port, "/healthz")[0] == 200
