#!/usr/bin/env python3
"""Holds TCP ports on 127.0.0.1 and [::1] the way a running gateway (make run, the installed .deb)
would, for as long as it runs: CI runs the tests with the default ports taken, so that no test can
depend on them being free. Prints "held" once every port is bound, then waits to be killed.

  hold-ports.py PORT [PORT ...]
"""

import signal
import socket
import sys

signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})  # for sigwait below
held = []
for port in map(int, sys.argv[1:]):
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.bind((host, port))
            s.listen(16)
            held.append(s)
        except OSError as e:  # already held by something else: just as good
            print(f"{host}:{port} already held ({e.strerror})", file=sys.stderr)
            s.close()
print("held", flush=True)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
