"""Sends forged VXLAN packets (the overlay tests' attacker on the underlay): one JSON argument,
{outer: {src, dst}, vni, inner: {src_mac, dst_mac, src_ip, dst_ip}, count, kind: "icmp"|"arp",
gbp: a VXLAN-GBP group policy id (the G flag set; absent: none)}.
Run by Debian's /usr/bin/python3 (python3-scapy) inside the sending namespace; the outer
source must be an address of that namespace. Prints how many packets it sent."""
import json
import sys

from scapy.all import ARP, ICMP, IP, UDP, VXLAN, Ether, IPv6, ICMPv6EchoRequest, conf, send

conf.verb = 0
a = json.loads(sys.argv[1])
o, i = a["outer"], a["inner"]
outer = (IPv6(src=o["src"], dst=o["dst"]) if ":" in o["dst"] else IP(src=o["src"], dst=o["dst"])) / UDP(
    sport=a.get("sport", 40000), dport=4789
)
eth = Ether(src=i["src_mac"], dst=i["dst_mac"])
if a.get("kind") == "arp":
    inner = eth / ARP(op=1, hwsrc=i["src_mac"], psrc=i["src_ip"], pdst=i["dst_ip"])
elif ":" in i["dst_ip"]:
    inner = eth / IPv6(src=i["src_ip"], dst=i["dst_ip"]) / ICMPv6EchoRequest(id=0x5354, data=b"forged")
else:
    inner = eth / IP(src=i["src_ip"], dst=i["dst_ip"]) / ICMP(id=0x5354) / b"forged"
if "gbp" in a:
    pkt = outer / VXLAN(flags=0x88, gpid=int(a["gbp"]), vni=a["vni"]) / inner
else:
    pkt = outer / VXLAN(flags=0x08, vni=a["vni"]) / inner
n = int(a.get("count", 3))
send(pkt, count=n)
print(n)
