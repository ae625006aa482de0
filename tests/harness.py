"""Helpers for the integration tests: the real built binary, real sockets on loopback, a real
NOTIFY_SOCKET, real signals. Nothing here imitates the gateway."""

import asyncio
import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

BIN = os.environ.get("OPENCLAW_GATEWAY_BIN", "")
DUPLICATE_LINE = "GatewayLockError: another gateway instance is already listening on ws://{host}:{port}"
BIND_FAILED_PREFIX = "GatewayLockError: failed to bind gateway socket on ws://{host}:{port}: "


def free_port() -> int:
    """A TCP port that nothing on 127.0.0.1 or [::1] uses right now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6:
                s6.bind(("::1", port))
        except OSError:
            continue
        return port


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        try:
            s.connect((host, port))
            return True
        except (ConnectionRefusedError, socket.timeout, OSError):
            return False


def bind_with_reuseaddr(port: int) -> None:
    """Binds and listens on 127.0.0.1:port the way the next gateway would (SO_REUSEADDR); raises
    OSError(EADDRINUSE) while a listener holds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(1)


def wait_accepted(client: socket.socket, timeout: float = 5.0) -> None:
    """Returns once the server side of `client`'s connection has been accept()ed: while it waits
    in the listen backlog the kernel shows it with inode 0, once accepted with its socket's inode.
    The kernel offers no event for that, so /proc/net/tcp is polled under a deadline."""
    port = client.getsockname()[1]
    peer_port = client.getpeername()[1]
    deadline = time.monotonic() + timeout
    while True:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    local, remote, inode = fields[1], fields[2], fields[9]
                    if int(local.split(":")[1], 16) == peer_port and int(remote.split(":")[1], 16) == port and inode != "0":
                        return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the connection from port {port} was not accepted within {timeout}s")
        time.sleep(0.005)


def http_get(port: int, path: str, method: str = "GET", host: str = "127.0.0.1", raw: bytes | None = None):
    """One HTTP/1.1 request on a fresh connection; returns (status, headers, body)."""
    with socket.create_connection((host, port), timeout=5) as s:
        request = raw or f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers, body


class ProcessExited(Exception):
    """The process being waited for is gone."""


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET: it receives what the gateway
    sends with sd_notify."""

    def __init__(self, directory: str):
        self.path = os.path.join(directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[str] = []

    def wait_for(self, line: str, timeout: float = 15.0, pid: int | None = None) -> str:
        """The first message (seen before or arriving now) that has `line` as one of its lines.
        With `pid`, it stops as soon as that process exits (it would never send it): both are
        waited for as events, the socket and a pidfd, never by sleeping."""
        for message in self.messages:
            if line in message.split("\n"):
                return message
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.sock, selectors.EVENT_READ, "message")
            pidfd = None
            if pid is not None:
                try:
                    pidfd = os.pidfd_open(pid)
                    selector.register(pidfd, selectors.EVENT_READ, "exit")
                except ProcessLookupError:
                    raise ProcessExited(f"the process exited before sending {line!r}; got {self.messages}")
            try:
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(f"no {line!r} on NOTIFY_SOCKET within {timeout}s; got {self.messages}")
                    events = [key.data for key, _ in selector.select(remaining)]
                    if "message" in events:
                        message = self.sock.recv(4096).decode()
                        self.messages.append(message)
                        if line in message.split("\n"):
                            return message
                    elif "exit" in events:
                        raise ProcessExited(f"the process exited without sending {line!r}; got {self.messages}")
            finally:
                if pidfd is not None:
                    os.close(pidfd)

    def wait_for_next(self, line: str, seen: int, timeout: float = 15.0) -> str:
        """The first message with `line` after the first `seen` messages (len(self.messages) taken
        before the event that sends it)."""
        for message in self.messages[seen:]:
            if line in message.split("\n"):
                return message
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            self.sock.settimeout(remaining)
            try:
                message = self.sock.recv(4096).decode()
            except socket.timeout:
                break
            self.messages.append(message)
            if line in message.split("\n"):
                return message
        raise TimeoutError(f"no new {line!r} on NOTIFY_SOCKET within {timeout}s; got {self.messages[seen:]}")

    def count(self, line: str) -> int:
        return sum(1 for m in self.messages if line in m.split("\n"))

    def drain_for(self, seconds: float) -> None:
        """Collects every message that arrives during `seconds`."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self.sock.settimeout(remaining)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                break

    def close(self):
        self.sock.close()


class Gateway:
    """One run of the real binary (or of a launcher that execs it), with stderr collected line by
    line and, unless told otherwise, its own NOTIFY_SOCKET."""

    def __init__(self, args, *, home: str, env: dict | None = None, notify: bool = True,
                 argv: list | None = None, pass_fds=(), cwd: str | None = None, journal: bool = False,
                 preexec_fn=None):
        self.tmp = tempfile.mkdtemp(prefix="gw-")
        self.notify = NotifySocket(self.tmp) if notify else None
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LANG": "C.UTF-8"}
        if self.notify:
            full_env["NOTIFY_SOCKET"] = self.notify.path
        full_env.update(env or {})
        read_end, write_end = os.pipe()
        if journal:
            # what systemd sets when stderr is connected to the journal: our pipe's device:inode
            st = os.fstat(write_end)
            full_env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        self.argv = argv if argv is not None else [BIN, *args]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, env=full_env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=write_end,
                                     pass_fds=pass_fds, cwd=cwd or self.tmp, preexec_fn=preexec_fn)
        os.close(write_end)
        self.proc.stderr = os.fdopen(read_end, "rb")
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self):
        for raw in self.proc.stderr:
            with self._changed:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stderr(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for_log(self, pattern: str, timeout: float = 15.0) -> str:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if regex.search(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (not self._reader.is_alive()):
                    raise TimeoutError(f"no log line matching {pattern!r}; stderr so far:\n" + "\n".join(self.lines))
                self._changed.wait(remaining)

    def wait_ready(self, timeout: float = 15.0) -> str:
        """The READY=1 message (with its STATUS)."""
        assert self.notify, "this gateway has no NOTIFY_SOCKET"
        try:
            return self.notify.wait_for("READY=1", timeout, pid=self.proc.pid)
        except (TimeoutError, ProcessExited):
            if self.proc.poll() is not None:
                self._reader.join(5)  # all of stderr, for the message
            raise AssertionError(f"gateway not READY (exit={self.proc.poll()}); stderr:\n{self.stderr}") from None

    def wait(self, timeout: float = 15.0) -> int:
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc

    def stdout(self) -> str:
        """Everything the process wrote on stdout (after it exits)."""
        return self.proc.stdout.read().decode()

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.notify:
            self.notify.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def activated_argv(args, fd_number: int) -> list:
    """A launcher that moves `fd_number` to fd 3 and execs the gateway with LISTEN_PID set to
    its own pid, the way systemd does (the pid survives exec). LISTEN_FDS / LISTEN_FDNAMES come
    from the environment the test gives."""
    script = f'exec 3<&{fd_number} {fd_number}<&-; export LISTEN_PID=$$; exec "$0" "$@"'
    return ["/bin/bash", "-c", script, BIN, *args]


async def ws_connect(port: int, host: str = "127.0.0.1", **kwargs):
    import websockets
    netloc = f"[{host}]" if ":" in host else host
    return await websockets.connect(f"ws://{netloc}:{port}/", open_timeout=10, close_timeout=10, **kwargs)


def run(coro):
    return asyncio.run(coro)


def connect_as(port, token=None, password=None, **kwargs):
    """Connects with `token` and/or `password`; the hello-ok reply, or the error of the refusal."""
    auth = {k: v for k, v in (("token", token), ("password", password)) if v is not None}

    async def scenario():
        ws = await ws_connect(port, **kwargs)
        await ws.recv()  # challenge
        await ws.send(json.dumps({"type": "req", "id": "c", "method": "connect", "params": {
            "minProtocol": 4, "maxProtocol": 4, "auth": auth,
            "client": {"id": "t", "version": "1", "platform": "linux", "mode": "cli"}}}))
        reply = json.loads(await ws.recv())
        await ws.close()
        return reply
    return run(scenario())


def refused_for(reply):
    """The detail code of a refused connect; None when it was accepted."""
    return None if reply["ok"] else reply["error"]["details"]["code"]


async def close_of(ws):
    """Reads until the server closes; returns (code, reason, frames received before the close)."""
    import websockets
    frames = []
    try:
        while True:
            frames.append(await ws.recv())
    except websockets.ConnectionClosed as closed:
        return (closed.rcvd.code if closed.rcvd else None), (closed.rcvd.reason if closed.rcvd else None), frames
