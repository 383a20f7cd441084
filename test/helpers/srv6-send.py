"""Sends SRv6 packets (IPv6, a segment routing header with one segment, UDP) from inside a
namespace through a packet socket on DEV, so they leave through that device's tc egress: one
JSON argument {dev, src_mac, dst_mac, src, dst, tag, count, mark}. `mark` sets SO_MARK (the
packets' skb->mark, as a port's stamp would). Run by Debian's /usr/bin/python3 (python3-scapy).
Prints how many it sent."""
import json
import socket
import sys

from scapy.all import UDP, Ether, IPv6, IPv6ExtHdrSegmentRouting, raw

SO_MARK = 36
a = json.loads(sys.argv[1])
pkt = (
    Ether(src=a["src_mac"], dst=a["dst_mac"])
    / IPv6(src=a["src"], dst=a["dst"])
    / IPv6ExtHdrSegmentRouting(addresses=[a["dst"]], segleft=0, tag=int(a.get("tag", 0)))
    / UDP(sport=40000, dport=5000)
    / b"stratum-srv6"
)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((a["dev"], 0))
if a.get("mark"):
    s.setsockopt(socket.SOL_SOCKET, SO_MARK, int(a["mark"]))
n = int(a.get("count", 3))
for _ in range(n):
    s.send(raw(pkt))
print(n)
