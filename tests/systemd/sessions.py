#!/usr/bin/env python3
"""Live WebSocket sessions across restarts, for the end-to-end checks (python3 stdlib only).

  sessions.py soak PORT --clients N --every-ms MS [--during CMD] [--times K] [--gap S]
      N clients each connect (challenge, connect, hello-ok), ask `status` (the pid before), then
      send a `health` request every MS ms. Once all N are connected, CMD runs K times, S seconds
      apart; once every client had 3 requests answered that it sent after CMD, each asks `status`
      again and closes normally. Prints one JSON line: closes, lost and duplicated responses,
      connId changes, clients whose pid did not change, the pids seen, the longest wait for a
      response. Exit 0 when every one of the N kept its connId, saw the pid change (when CMD
      ran; with --same-pid: saw it stay, for a reload), and no client saw a close or a lost,
      duplicated or unanswered response.
      With --procs P the N clients are spread over P worker processes (one Python process cannot
      keep thousands of clients busy): each reports when its clients are live, CMD runs once all
      are, and the verdict is over the N together.
  sessions.py stop PORT --clients N --during CMD
      N connected clients; CMD runs once; each must get the `shutdown` event and close 1012
      within 12 s. Exit 0 when all did.
  sessions.py stalled PORT --clients N --during CMD [--requests R] [--stall-s S]
      N connected clients and one that sends R requests and then stops reading for S seconds
      after CMD began: exit 0 when it still gets all R answers, the `shutdown` event and 1012,
      CMD takes under S + 4 s (no grace period spent), and the N were carried on.
  sessions.py halfframe PORT --during CMD
      A connected client sends a whole request and half of a `health` request frame in one write;
      once the whole one is answered (so the half was read), CMD runs, then it sends the rest:
      exit 0 when the answer comes once, from the new process, and nothing was closed.
"""

import argparse
import asyncio
import base64
import fcntl
import json
import os
import random
import resource
import socket
import struct
import sys
import termios
import time


class Closed(Exception):
    pass


def frame(opcode, payload):
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n <= 0xFFFF:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Client:
    def __init__(self, port):
        self.port = port
        self.reader = self.writer = None

    async def open(self, sock=None):
        if sock is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        else:
            self.reader, self.writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write(f"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(f"no upgrade: {head[:40]!r}")
        challenge = await self.read()
        assert challenge.get("event") == "connect.challenge", challenge
        self.send({"type": "req", "id": "connect", "method": "connect", "params": {
            "minProtocol": 4, "maxProtocol": 4,
            "client": {"id": "e2e", "version": "1", "platform": "linux", "mode": "cli"},
            "role": "operator", "scopes": ["operator.read"]}})
        hello = await self.read()
        assert hello.get("ok") is True, hello
        return hello["payload"]["server"]["connId"]

    def send(self, message):
        self.writer.write(frame(0x1, json.dumps(message).encode()))

    async def read(self):
        """The next text frame as JSON; raises Closed(code or 'eof')."""
        while True:
            try:
                b0, b1 = await self.reader.readexactly(2)
            except (asyncio.IncompleteReadError, ConnectionError):
                raise Closed("eof")
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            payload = await self.reader.readexactly(n)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise Closed(struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else "no code")
            if opcode == 0x1:
                return json.loads(payload)

    async def close(self):
        try:
            self.writer.write(frame(0x8, struct.pack("!H", 1000)))
            await asyncio.wait_for(self.read(), 2)
        except (Closed, asyncio.TimeoutError, ConnectionError):
            pass
        self.writer.close()


async def run_commands(command, times, gap):
    for i in range(times):
        await asyncio.sleep(gap)
        proc = await asyncio.create_subprocess_shell(command)
        if await proc.wait() != 0:
            raise RuntimeError(f"{command!r} failed")


async def soak(args):
    """Every client records the pid and connId it saw before CMD and after; the verdict is per
    client: each of the N must have kept its connId and (when CMD ran) seen the pid change.
    maxWaitMs is the longest wait for a response in the whole run, the connect burst included;
    pauseMs the longest for a request in flight when CMD began or sent after: what CMD cost."""
    stats = {"clients": args.clients, "sent": 0, "answered": 0, "lost": 0, "duplicated": 0, "closes": {},
             "connIdChanged": 0, "pidUnchanged": 0, "bothStatuses": 0, "pidsBefore": set(), "pidsAfter": set(),
             "maxWaitMs": 0.0, "pauseMs": 0.0, "errors": {}}
    stop = asyncio.Event()
    connected = asyncio.Event()   # every client is past hello-ok and has its status-0 answer
    settled = asyncio.Event()     # after CMD, every client has had answers from the new process
    warm = asyncio.Event()        # every client has had two answers to health: the connect burst is over
    warmed = set()
    command = {"began": None}     # when CMD began: requests in flight then or sent later measure it
    opened = 0
    # at most this many handshakes at once: thousands at once time out in the handshake (1008)
    connecting = asyncio.Semaphore(64)
    after = {"marker": None, "clients": set()}
    finished = 0

    def one_finished():
        nonlocal finished
        finished += 1
        if finished == args.clients:  # some failed: nobody waits for them
            connected.set()
            warm.set()
            settled.set()

    async def one(i):
        nonlocal opened
        client = Client(args.port)
        before = None
        try:
            async with connecting:
                conn_id = await client.open()
            client.send({"type": "req", "id": "status-0", "method": "status"})
            pending = {}
            seen = set()
            n = 0
            answered_after = 0

            async def sender():
                nonlocal n
                # Each client's requests at its own phase: started together, they would go out in
                # bunches, and a restart between two bunches would find no request in flight.
                await asyncio.sleep(random.random() * args.every_ms / 1000)
                while not stop.is_set():
                    n += 1
                    rid = f"{i}-{n}"
                    pending[rid] = time.monotonic()
                    client.send({"type": "req", "id": rid, "method": "health"})
                    stats["sent"] += 1
                    await asyncio.sleep(args.every_ms / 1000)
                client.send({"type": "req", "id": "status-1", "method": "status"})

            send_task = None
            try:
                while True:
                    message = await client.read()
                    rid = message.get("id")
                    if message.get("type") != "res":
                        continue
                    if rid in seen:
                        stats["duplicated"] += 1
                        continue
                    seen.add(rid)
                    if rid == "status-0":
                        before = message["payload"]["pid"]
                        stats["pidsBefore"].add(before)
                        opened += 1
                        if opened == args.clients:
                            connected.set()
                        send_task = asyncio.create_task(sender())
                    elif rid == "status-1":
                        after_pid = message["payload"]["pid"]
                        stats["pidsAfter"].add(after_pid)
                        stats["bothStatuses"] += 1
                        if message["payload"]["connId"] != conn_id:
                            stats["connIdChanged"] += 1
                        if (args.during or args.worker) and after_pid == before:
                            stats["pidUnchanged"] += 1
                        break
                    elif rid in pending:
                        sent_at = pending.pop(rid)
                        stats["answered"] += 1
                        now = time.monotonic()
                        stats["maxWaitMs"] = max(stats["maxWaitMs"], (now - sent_at) * 1000)
                        if command["began"] is not None:
                            stats["pauseMs"] = max(stats["pauseMs"], (now - sent_at) * 1000)
                        elif len(seen) >= 3 and i not in warmed:  # status-0 and two health
                            warmed.add(i)
                            if len(warmed) == args.clients:
                                warm.set()
                        if after["marker"] is not None and sent_at > after["marker"]:
                            answered_after += 1
                            if answered_after == 3:
                                after["clients"].add(i)
                                if len(after["clients"]) == args.clients:
                                    settled.set()
            finally:
                if send_task:
                    send_task.cancel()
            stats["lost"] += len(pending)
            await client.close()
        except Closed as closed:
            stats["closes"][str(closed)] = stats["closes"].get(str(closed), 0) + 1
        except Exception as e:  # refused, reset, protocol: all count
            key = f"{type(e).__name__}: {e}"
            stats["errors"][key] = stats["errors"].get(key, 0) + 1
        finally:
            one_finished()

    tasks = [asyncio.create_task(one(i)) for i in range(args.clients)]
    try:
        await asyncio.wait_for(connected.wait(), args.connect_timeout)  # every session is live before CMD runs
    except asyncio.TimeoutError:
        stats["errors"][f"not every client connected within {args.connect_timeout:g} s"] = args.clients - opened
    try:
        await asyncio.wait_for(warm.wait(), 30)
    except asyncio.TimeoutError:
        stats["errors"]["the connect burst did not settle within 30 s"] = args.clients - len(warmed)
    if args.worker:
        # the parent runs CMD: say the clients are live, then wait for it to begin and to end
        print("warm", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)
        command["began"] = time.monotonic()
        await loop.run_in_executor(None, sys.stdin.readline)
    else:
        command["began"] = time.monotonic()
        if args.during:
            await run_commands(args.during, args.times, args.gap)
    # load goes on until every client was answered (3 requests sent after CMD finished)
    after["marker"] = time.monotonic()
    try:
        await asyncio.wait_for(settled.wait(), 30)
    except asyncio.TimeoutError:
        stats["errors"]["not every client was answered after the command"] = args.clients - len(after["clients"])
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    stats["pidsBefore"] = sorted(stats["pidsBefore"])
    stats["pidsAfter"] = sorted(stats["pidsAfter"])
    stats["maxWaitMs"] = round(stats["maxWaitMs"], 1)
    stats["pauseMs"] = round(stats["pauseMs"], 1)
    print(json.dumps(stats))
    if args.worker:
        return 0
    return verdict(stats, args)


def verdict(stats, args):
    good = (not stats["closes"] and not stats["errors"] and stats["lost"] == 0 and stats["duplicated"] == 0
            and stats["connIdChanged"] == 0 and stats["bothStatuses"] == args.clients and len(stats["pidsAfter"]) == 1
            and stats["sent"] > 0 and stats["answered"] == stats["sent"])
    if args.during:
        # a restart: every client saw the new pid; a reload (--same-pid): every client saw the same one
        good = good and stats["pidUnchanged"] == (args.clients if args.same_pid else 0)
    return 0 if good else 1


async def soak_in_processes(args):
    """soak with the clients spread over args.procs workers (this script, --worker), CMD run here
    once every worker's clients are live; their figures merged into one verdict."""
    shares = [args.clients // args.procs + (1 if k < args.clients % args.procs else 0) for k in range(args.procs)]
    workers = []
    for share in shares:
        workers.append(await asyncio.create_subprocess_exec(
            sys.executable, os.path.abspath(__file__), "soak", str(args.port), "--clients", str(share),
            "--every-ms", str(args.every_ms), "--connect-timeout", str(args.connect_timeout), "--worker", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE))
    for worker in workers:
        line = await asyncio.wait_for(worker.stdout.readline(), 120)
        if line.strip() != b"warm":
            raise RuntimeError(f"a worker did not get its clients live: {line[:200]!r}")
    for worker in workers:
        worker.stdin.write(b"begin\n")
        await worker.stdin.drain()
    began = time.monotonic()
    if args.during:
        await run_commands(args.during, args.times, args.gap)
    commandSeconds = time.monotonic() - began
    for worker in workers:
        worker.stdin.write(b"after\n")
        await worker.stdin.drain()
    merged = None
    for worker in workers:
        out, _ = await worker.communicate()
        stats = json.loads(out.decode().strip().splitlines()[-1])
        if merged is None:
            merged = stats
            continue
        for key, value in stats.items():
            if key in ("maxWaitMs", "pauseMs"):
                merged[key] = max(merged[key], value)
            elif key in ("pidsBefore", "pidsAfter"):
                merged[key] = sorted(set(merged[key]) | set(value))
            elif isinstance(value, dict):
                for k, v in value.items():
                    merged[key][k] = merged[key].get(k, 0) + v
            else:
                merged[key] += value
    merged["processes"] = args.procs
    merged["commandSeconds"] = round(commandSeconds, 2)
    print(json.dumps(merged))
    return verdict(merged, args)


async def stop_clients(args):
    results = {"clients": args.clients, "shutdownEvent": 0, "close1012": 0, "other": {}}

    async def one(client):
        got_event = False
        try:
            while True:
                message = await client.read()
                if message.get("event") == "shutdown":
                    got_event = True
        except Closed as closed:
            if got_event:
                results["shutdownEvent"] += 1
            if closed.args[0] == 1012:
                results["close1012"] += 1
            else:
                results["other"][str(closed)] = results["other"].get(str(closed), 0) + 1

    clients = [Client(args.port) for _ in range(args.clients)]
    await asyncio.gather(*(c.open() for c in clients))
    tasks = [asyncio.create_task(one(c)) for c in clients]
    started = time.monotonic()
    await run_commands(args.during, 1, 0)
    await asyncio.wait_for(asyncio.gather(*tasks), 12)
    results["seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps(results))
    return 0 if results["shutdownEvent"] == results["close1012"] == args.clients else 1


async def halfframe(args):
    """The order is proved, not assumed: a whole `before` request and the first half of `half`
    go out in one write (one segment on loopback), so the old process answering `before` read the
    half frame too; then CMD; then the rest. `half` must be answered once, by the new process (a
    `status` sent after it answers with the new pid, and after `half`)."""
    client = Client(args.port)
    await client.open()
    client.send({"type": "req", "id": "pid-before", "method": "status"})
    old_pid = None
    while old_pid is None:
        message = await client.read()
        if message.get("id") == "pid-before":
            old_pid = message["payload"]["pid"]
    whole = frame(0x1, json.dumps({"type": "req", "id": "half", "method": "health"}).encode())
    before = frame(0x1, json.dumps({"type": "req", "id": "before", "method": "health"}).encode())
    client.writer.write(before + whole[:len(whole) // 2])
    await client.writer.drain()
    while (await client.read()).get("id") != "before":
        pass
    await run_commands(args.during, 1, 0)
    client.writer.write(whole[len(whole) // 2:] + frame(0x1, json.dumps({"type": "req", "id": "pid-after", "method": "status"}).encode()))
    answers = []
    new_pid = None
    try:
        while new_pid is None:
            message = await asyncio.wait_for(client.read(), 10)
            if message.get("type") == "res":
                answers.append(message["id"])
                if message["id"] == "pid-after":
                    new_pid = message["payload"]["pid"]
    except (asyncio.TimeoutError, Closed) as e:
        print(json.dumps({"answers": answers, "error": repr(e)}))
        return 1
    print(json.dumps({"answers": answers, "oldPid": old_pid, "newPid": new_pid}))
    return 0 if answers == ["half", "pid-after"] and new_pid != old_pid else 1


async def stalled(args):
    """A client that stops reading while the server still has output queued for it cannot be
    handed over; the restart closes it as a stop would (the `shutdown` event, close 1012, after
    every answer it was owed) without holding the restart up for the grace period, and the
    others are carried on. The stalled client, with a small receive buffer, sends --requests
    `health` requests in one write and reads nothing until --stall-s after CMD began; the
    server's output for it is then over what the two sockets' buffers hold, so some stays queued
    in the server past the handover's flush timeout (2 s)."""
    clients = [Client(args.port) for _ in range(args.clients)]
    conn_ids = await asyncio.gather(*(c.open() for c in clients))
    pids = {}
    for i, c in enumerate(clients):
        c.send({"type": "req", "id": "pid", "method": "status"})
        while (message := await c.read()).get("id") != "pid":
            pass
        pids[i] = message["payload"]["pid"]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", args.port))
    sock.setblocking(False)
    slow = Client(args.port)
    await slow.open(sock=sock)
    request = b"".join(frame(0x1, json.dumps({"type": "req", "id": f"h{n}", "method": "health"}).encode())
                       for n in range(args.requests))
    slow.writer.write(request)
    await slow.writer.drain()
    # every request reached the server's socket (nothing unacknowledged here), and it had time to answer
    while fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0") != b"\0\0\0\0":
        await asyncio.sleep(0.05)
    await asyncio.sleep(1)
    result = {"requests": args.requests, "answered": 0, "shutdownEvent": False, "close": None, "carried": 0}
    began = time.monotonic()
    command = asyncio.create_task(run_commands(args.during, 1, 0))
    await asyncio.sleep(args.stall_s)
    try:
        while True:
            message = await asyncio.wait_for(slow.read(), 15)
            if message.get("type") == "res" and message.get("id", "").startswith("h"):
                result["answered"] += 1
            elif message.get("event") == "shutdown":
                result["shutdownEvent"] = True
    except Closed as closed:
        result["close"] = closed.args[0]
        slow.writer.write(frame(0x8, struct.pack("!H", 1012)))
    except asyncio.TimeoutError:
        result["close"] = "timeout"
    slow.writer.close()
    await command
    result["commandSeconds"] = round(time.monotonic() - began, 2)
    for i, c in enumerate(clients):
        c.send({"type": "req", "id": "after", "method": "status"})
        try:
            while (message := await asyncio.wait_for(c.read(), 10)).get("id") != "after":
                pass
        except (Closed, asyncio.TimeoutError):
            continue
        if message["payload"]["pid"] != pids[i] and message["payload"]["connId"] == conn_ids[i]:
            result["carried"] += 1
    print(json.dumps(result))
    ok = (result["answered"] == args.requests and result["shutdownEvent"] and result["close"] == 1012
          and result["carried"] == args.clients and result["commandSeconds"] < args.stall_s + 4)
    return 0 if ok else 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["soak", "stop", "halfframe", "stalled"])
    parser.add_argument("port", type=int)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--every-ms", type=float, default=20)
    parser.add_argument("--during")
    parser.add_argument("--times", type=int, default=1)
    parser.add_argument("--gap", type=float, default=1.0)
    parser.add_argument("--same-pid", action="store_true", help="CMD must not change the pid (a reload)")
    parser.add_argument("--connect-timeout", type=float, default=60, help="soak: seconds for every client to connect")
    parser.add_argument("--procs", type=int, default=1, help="soak: worker processes the clients are spread over")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=20000, help="stalled: requests the stalled client sends")
    parser.add_argument("--stall-s", type=float, default=3, help="stalled: seconds it reads nothing after CMD began")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    run = {"soak": soak_in_processes if args.procs > 1 and not args.worker else soak, "stop": stop_clients,
           "halfframe": halfframe, "stalled": stalled}[args.mode]
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
