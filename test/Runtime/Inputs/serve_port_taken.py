#!/usr/bin/env python3
"""Runs `optrun serve ARTIFACT` on a port another socket listens on and
prints its exit code and stderr.

usage: serve_port_taken.py OPTRUN ARTIFACT
"""
import socket
import subprocess
import sys

taken = socket.socket()
taken.bind(("127.0.0.1", 0))
taken.listen()
port = taken.getsockname()[1]
result = subprocess.run([sys.argv[1], "serve", sys.argv[2], "--port", str(port)],
                        capture_output=True, text=True, timeout=60)
print("exit %d: %s" % (result.returncode, result.stderr.strip()))
