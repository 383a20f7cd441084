#!/usr/bin/env python3
"""A stand-in for systemd's notify socket: binds a unix datagram socket (a path, or an
abstract name written '@name'), prints {"bound": true}, then one JSON line per datagram.
On READY=1 it asks the agent's API (GET /v1/status on the unix socket API) at once and
records the status line of the answer, or why there was none. Exits after STOPPING=1, or
after TIMEOUT seconds without a datagram.
usage: notify-listen.py ADDRESS API_SOCKET [TIMEOUT]"""
import json
import socket
import sys

addr, api = sys.argv[1], sys.argv[2]
timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 60


def ask_api():
    try:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(5)
        c.connect(api)
        c.sendall(b"GET /v1/status HTTP/1.1\r\nHost: stratum\r\nConnection: close\r\n\r\n")
        data = b""
        while b"\r\n" not in data:
            chunk = c.recv(4096)
            if not chunk:
                break
            data += chunk
        c.close()
        return data.split(b"\r\n", 1)[0].decode()
    except OSError as e:
        return f"error: {e}"


s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + addr[1:] if addr.startswith("@") else addr)
s.settimeout(timeout)
print(json.dumps({"bound": True}), flush=True)
while True:
    try:
        msg = s.recv(65536).decode()
    except socket.timeout:
        print(json.dumps({"timeout": True}), flush=True)
        break
    fields = msg.split("\n")
    rec = {"msg": fields}
    if "READY=1" in fields:
        rec["api"] = ask_api()
    print(json.dumps(rec), flush=True)
    if "STOPPING=1" in fields:
        break
