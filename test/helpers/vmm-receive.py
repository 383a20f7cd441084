"""A VMM's side of `endpoint handoff`, for tests: listens on a unix stream socket (argv[1]),
takes one message with its descriptors (SCM_RIGHTS), names each (TUNGETIFF), then uses them
as the guest's queues: on each it asks the gateway (argv[3]) for its MAC by ARP, from the
endpoint's address (argv[2]), and counts the replies read on any of them. Prints one line of
JSON: the message, each descriptor's interface and flags, the replies."""
import fcntl
import json
import os
import select
import socket
import struct
import sys
import time

path, ip, gateway = sys.argv[1], sys.argv[2], sys.argv[3]
TUNGETIFF = 0x800454D2
VNET_HDR_LEN = 10

srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(1)
print("ready", flush=True)
srv.settimeout(20)
conn, _ = srv.accept()
msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 300)
conn.close()
about = json.loads(msg.decode())
named = []
for fd in fds:
    ifr = fcntl.ioctl(fd, TUNGETIFF, b"\0" * 40)
    named.append({"name": ifr[:16].split(b"\0")[0].decode(), "flags": struct.unpack("H", ifr[16:18])[0]})

mac = bytes.fromhex(about["mac"].replace(":", ""))
hdr = b"\0" * VNET_HDR_LEN if about["vnetHdr"] else b""
arp = (
    b"\xff" * 6 + mac + b"\x08\x06"
    + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
    + mac + socket.inet_aton(ip) + b"\0" * 6 + socket.inet_aton(gateway)
)
replies = 0
for fd in fds:
    os.set_blocking(fd, False)
for fd in fds:
    os.write(fd, hdr + arp)
    deadline = time.time() + 2
    got = False
    while time.time() < deadline and not got:
        r, _, _ = select.select(fds, [], [], 0.1)
        for rfd in r:
            try:
                f = os.read(rfd, 65536)[len(hdr):]
            except BlockingIOError:
                continue
            if len(f) >= 42 and f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x02" and f[28:32] == socket.inet_aton(gateway):
                got = True
    replies += got
print(json.dumps({"about": about, "fds": named, "replies": replies}), flush=True)
