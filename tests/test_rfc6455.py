"""RFC 6455 to the letter, with raw frames over a plain socket: one test per rule the gateway must
enforce, each asserting the exact close code (or HTTP status) the RFC names. Sections are cited
beside each test. A client here is connected (hello-ok) before it misbehaves, unless the test is
about the handshake."""

import base64
import json
import os
import socket
import struct

import pytest

from harness import free_port


def start(gateways, *extra):
    port = free_port()
    gw = gateways(["--port", str(port), *extra])
    gw.wait_ready()
    return port


# ---- a raw client -------------------------------------------------------------------------------


def encode(opcode, payload=b"", fin=True, rsv=0, mask=True, length=None):
    """One client frame. `rsv` is the RSV1-3 bits as 0-7; `mask=False` sends it unmasked."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload) if length is None else length
    if n < 126:
        head = struct.pack("!BB", first, (0x80 if mask else 0) | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", first, (0x80 if mask else 0) | 126, n)
    else:
        head = struct.pack("!BBQ", first, (0x80 if mask else 0) | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class Raw:
    def __init__(self, port, key=None, version="13", extra=""):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n{extra}\r\n").encode())
        self.buffer = b""
        head = self._until(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in
                        (line.decode().partition(":") for line in head.split(b"\r\n")[1:] if line)}

    def _until(self, marker):
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buffer)
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _exactly(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buffer)
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def read(self):
        """(fin, opcode, payload) of the next server frame."""
        b0, b1 = self._exactly(2)
        assert b1 & 0x80 == 0, "a server frame must not be masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._exactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._exactly(8))[0]
        return bool(b0 & 0x80), b0 & 0x0F, self._exactly(n)

    def send(self, data):
        self.sock.sendall(data)

    def connect(self):
        _, opcode, payload = self.read()
        assert opcode == 1 and json.loads(payload)["event"] == "connect.challenge"
        self.request({"type": "req", "id": "c", "method": "connect", "params": {
            "minProtocol": 4, "maxProtocol": 4, "scopes": ["operator.read"],
            "client": {"id": "rfc6455", "version": "1", "platform": "linux", "mode": "cli"}}})
        assert self.response("c")["ok"] is True
        return self

    def request(self, message, opcode=1):
        self.send(encode(opcode, json.dumps(message).encode()))

    def response(self, req_id):
        while True:
            _, opcode, payload = self.read()
            if opcode == 1 and json.loads(payload).get("id") == req_id:
                return json.loads(payload)

    def close_code(self):
        """The close frame's code and reason (skipping other frames), then EOF."""
        while True:
            _, opcode, payload = self.read()
            if opcode == 8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                self.sock.settimeout(5)
                try:
                    while self.sock.recv(65536):
                        pass
                except (ConnectionResetError, socket.timeout):
                    pass
                return code, payload[2:].decode(errors="replace")

    def close(self):
        self.sock.close()


@pytest.fixture
def port(gateways):
    return start(gateways)


def connected(port):
    return Raw(port).connect()


# ---- the opening handshake (4.2.1, 4.2.2) -------------------------------------------------------


@pytest.mark.parametrize("key", ["not base64 at all!!!!!!!", base64.b64encode(os.urandom(15)).decode(),
                                 base64.b64encode(os.urandom(17)).decode(), "", "dGhlIHNhbXBsZSBub25jZQ"])
def test_a_key_that_is_not_base64_of_16_bytes_gets_400(port, key):
    # 4.2.1: Sec-WebSocket-Key is a base64-encoded 16-byte nonce.
    raw = Raw(port, key=key)
    assert raw.status == 400
    raw.close()


@pytest.mark.parametrize("version", ["8", "12", "14", "abc"])
def test_another_version_gets_426_naming_13(port, version):
    # 4.2.2: "If this version does not match a version understood by the server, the server MUST
    # abort the WebSocket handshake ... and send ... 426 Upgrade Required" with the versions it speaks.
    raw = Raw(port, version=version)
    assert raw.status == 426 and raw.headers["sec-websocket-version"] == "13"
    raw.close()


def test_a_good_handshake_is_101(port):
    raw = Raw(port)
    assert raw.status == 101
    raw.close()


# ---- masking and reserved bits (5.1, 5.2) -------------------------------------------------------


def test_an_unmasked_client_frame_closes_1002(port):
    # 5.1: "The server MUST close the connection upon receiving a frame that is not masked."
    raw = connected(port)
    raw.send(encode(1, json.dumps({"type": "req", "id": "h", "method": "health"}).encode(), mask=False))
    assert raw.close_code()[0] == 1002


@pytest.mark.parametrize("rsv", [4, 2, 1, 7])
def test_reserved_bits_without_an_extension_close_1002(port, rsv):
    # 5.2: RSV1-3 "MUST be 0 unless an extension is negotiated that defines meanings".
    raw = connected(port)
    raw.send(encode(1, b'{"type":"req","id":"h","method":"health"}', rsv=rsv))
    assert raw.close_code()[0] == 1002


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
def test_a_reserved_opcode_closes_1002(port, opcode):
    # 5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail the WebSocket Connection_."
    raw = connected(port)
    raw.send(encode(opcode, b"x"))
    assert raw.close_code()[0] == 1002


# ---- fragmentation (5.4) ------------------------------------------------------------------------


def test_a_continuation_with_no_message_open_closes_1002(port):
    raw = connected(port)
    raw.send(encode(0, b'{"type":"req"}'))
    assert raw.close_code()[0] == 1002


def test_a_new_message_while_one_is_open_closes_1002(port):
    # 5.4: fragments of one message are not interleaved with another data frame.
    raw = connected(port)
    raw.send(encode(1, b'{"type":"req",', fin=False))
    raw.send(encode(1, b'{"type":"req","id":"x","method":"health"}'))
    assert raw.close_code()[0] == 1002


def test_a_message_of_nearly_1_mib_in_64_byte_fragments_is_answered(port):
    # Work is bounded by bytes and time, not by a fragment count: 15,000+ fragments.
    raw = connected(port)
    message = json.dumps({"type": "req", "id": "big", "method": "health", "params": {"pad": "x" * 1_000_000}}).encode()
    pieces = [message[i:i + 64] for i in range(0, len(message), 64)]
    assert len(pieces) > 15_000
    raw.send(b"".join(encode(1 if i == 0 else 0, p, fin=i == len(pieces) - 1) for i, p in enumerate(pieces)))
    assert raw.response("big")["ok"] is True
    raw.close()


def test_a_message_never_finished_is_failed_in_time(gateways):
    port = start(gateways, "--handshake-timeout-ms", "500")
    raw = connected(port)
    raw.send(encode(1, b'{"type":"req",', fin=False))
    assert raw.close_code()[0] == 1008


# ---- control frames (5.5) -----------------------------------------------------------------------


def test_a_control_frame_over_125_bytes_closes_1002(port):
    # 5.5: "All control frames MUST have a payload length of 125 bytes or less".
    raw = connected(port)
    raw.send(encode(9, b"p" * 126))
    assert raw.close_code()[0] == 1002


def test_a_fragmented_control_frame_closes_1002(port):
    # 5.5: "All control frames ... MUST NOT be fragmented."
    raw = connected(port)
    raw.send(encode(9, b"ping", fin=False))
    assert raw.close_code()[0] == 1002


def test_a_ping_gets_a_pong_with_its_payload(port):
    # 5.5.2/5.5.3: the pong carries "Application data" identical to the ping's.
    raw = connected(port)
    payload = os.urandom(125)
    raw.send(encode(9, payload))
    assert raw.read() == (True, 10, payload)
    raw.close()


def test_a_ping_inside_a_fragmented_message_is_answered_and_the_message_too(port):
    # 5.4: "Control frames MAY be injected in the middle of a fragmented message."
    raw = connected(port)
    raw.send(encode(1, b'{"type":"req","id":"frag",', fin=False))
    raw.send(encode(9, b"mid"))
    assert raw.read() == (True, 10, b"mid")
    raw.send(encode(0, b'"method":"health"}'))
    assert raw.response("frag")["ok"] is True
    raw.close()


# ---- close frames (5.5.1, 7.4) ------------------------------------------------------------------


def test_a_one_byte_close_payload_closes_1002(port):
    # 5.5.1: a close body, if present, starts with a two-byte status code.
    raw = connected(port)
    raw.send(encode(8, b"\x03"))
    assert raw.close_code()[0] == 1002


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
def test_a_close_code_that_may_not_be_sent_closes_1002(port, code):
    # 7.4.1/7.4.2: 1004 is reserved, 1005, 1006 and 1015 never go on the wire, 0-999 and
    # 1016-2999 are not in use, 5000+ is not defined.
    raw = connected(port)
    raw.send(encode(8, struct.pack("!H", code)))
    assert raw.close_code()[0] == 1002


def test_a_close_reason_that_is_not_utf8_closes_1007(port):
    raw = connected(port)
    raw.send(encode(8, struct.pack("!H", 1000) + b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"))
    assert raw.close_code()[0] == 1007


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1011, 1012, 3000, 3999, 4000, 4999])
def test_a_valid_close_code_is_echoed(port, code):
    # 5.5.1: the endpoint "typically echos the status code it received".
    raw = connected(port)
    raw.send(encode(8, struct.pack("!H", code) + b"bye"))
    assert raw.close_code()[0] == code


# ---- UTF-8 (8.1) --------------------------------------------------------------------------------


def test_invalid_utf8_in_a_text_message_closes_1007(port):
    raw = connected(port)
    raw.send(encode(1, b'{"type":"req","id":"\xc0\xaf","method":"health"}'))  # an overlong '/'
    assert raw.close_code()[0] == 1007


def test_invalid_utf8_in_the_json_of_a_binary_message_closes_1007(port):
    raw = connected(port)
    raw.send(encode(2, b'{"type":"req","id":"\xed\xa0\x80","method":"health"}'))  # a surrogate
    assert raw.close_code()[0] == 1007


def test_invalid_utf8_is_refused_as_soon_as_it_is_certain_not_at_the_end(port):
    # 8.1: fail "as soon as" the invalidity is known: the first fragment already cannot be
    # UTF-8 whatever follows, so the close comes before the message is finished.
    raw = connected(port)
    raw.send(encode(1, b'{"id":"\xf4\x90', fin=False))  # above U+10FFFF
    assert raw.close_code()[0] == 1007


def test_a_sequence_split_across_fragments_is_valid(port):
    # "κόσμε" with its second character cut between two fragments.
    raw = connected(port)
    text = json.dumps({"type": "req", "id": "κόσμε", "method": "health"}, ensure_ascii=False).encode()
    cut = text.index("ό".encode()) + 1
    raw.send(encode(1, text[:cut], fin=False))
    raw.send(encode(0, text[cut:]))
    assert raw.response("κόσμε")["ok"] is True
    raw.close()


def test_a_sequence_left_unfinished_at_the_end_of_a_message_closes_1007(port):
    raw = connected(port)
    raw.send(encode(1, b'{"type":"req","id":"x","method":"health"}\xe2\x82'))
    assert raw.close_code()[0] == 1007
