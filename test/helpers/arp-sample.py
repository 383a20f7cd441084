"""Samples who answers ARP for an address (the gateway HA tests' split-brain probe): every
INTERVAL ms it broadcasts one ARP request for TARGET from IFACE and collects the replies for
WINDOW ms, then prints one JSON line {"t": ms since start, "macs": [responders]}. Runs until
killed, or for SECONDS when given. Plain AF_PACKET sockets, no scapy: a sample every 50 ms
stays cheap. Usage: arp-sample.py IFACE TARGET [INTERVAL_MS WINDOW_MS SECONDS]"""
import json
import socket
import struct
import sys
import time

iface, target = sys.argv[1], sys.argv[2]
interval = int(sys.argv[3]) / 1000 if len(sys.argv) > 3 else 0.05
window = int(sys.argv[4]) / 1000 if len(sys.argv) > 4 else 0.03
seconds = float(sys.argv[5]) if len(sys.argv) > 5 else float("inf")

s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((iface, 0))
mac = s.getsockname()[4]
src_ip = None
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
    import fcntl

    src_ip = fcntl.ioctl(u.fileno(), 0x8915, struct.pack("256s", iface.encode()[:15]))[20:24]
tip = socket.inet_aton(target)
req = b"\xff" * 6 + mac + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + src_ip + b"\x00" * 6 + tip
start = time.monotonic()
sys.stdout.reconfigure(line_buffering=True)
while time.monotonic() - start < seconds:
    t0 = time.monotonic()
    s.send(req)
    macs = set()
    while True:
        left = window - (time.monotonic() - t0)
        if left <= 0:
            break
        s.settimeout(left)
        try:
            f = s.recv(128)
        except socket.timeout:
            break
        if len(f) >= 42 and f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x02" and f[28:32] == tip:
            macs.add(f[22:28].hex(":"))
    print(json.dumps({"t": round((t0 - start) * 1000), "macs": sorted(macs)}))
    rest = interval - (time.monotonic() - t0)
    if rest > 0:
        time.sleep(rest)
