#!/usr/bin/python3
"""Hostile traffic for Stratum's adversarial suite (test/e2e/hostile.test.ts), built with scapy.

One process per position an attacker (or a legitimate peer) stands in: started inside a
network namespace as `hostile.py serve MARKER_BASE`, it reads one JSON request per line on
stdin and answers one JSON line on stdout:

  {"op": "topo", "topo": {...}}                 addresses and MACs of the test's topology
  {"op": "send", "batch": NAME, "iface": DEV, "count": N, "args": {...}}
        builds the batch's frames (the variants an attacker would try), sends each N times
        on DEV and answers {"frames": [...]}: per frame its name, how many were sent, its
        signature (the L3 header fields a capture recognises it by: an IPv4 identification or
        IPv6 flow label unique to the frame, and its addresses; ARP by its fields), that of
        a tunnelled inner frame, the drops it must cause ([where, reason]: an endpoint's
        port or the uplink) and where it must (`deliver`) or may (`maybe`) be seen.
  {"op": "listen", "host": ADDR, "ports": [...]}   TCP listeners that record who connected
  {"op": "accepted"}                                 the peers accepted so far
  {"op": "connect", "host": ADDR, "port": P, "sport": S, "hold": true}
  {"op": "close"}                                    closes held connections

Run it with Debian's /usr/bin/python3 (python3-scapy). Markers: every frame gets the next
number from MARKER_BASE as its IPv4 identification or IPv6 flow label, so a capture counts
exactly the frames of one variant, whatever else crosses the interface.
"""

import json
import logging
import socket
import sys
import threading

logging.getLogger("scapy").setLevel(logging.ERROR)

from scapy.all import (  # noqa: E402
    ARP,
    BOOTP,
    DHCP,
    DHCP6OptClientId,
    DHCP6OptElapsedTime,
    DHCP6OptIA_NA,
    DHCP6OptIAAddress,
    DHCP6OptRapidCommit,
    DHCP6OptServerId,
    DHCP6_Advertise,
    DHCP6_Decline,
    DHCP6_Release,
    DHCP6_Reply,
    DHCP6_Solicit,
    DUID_LL,
    GRE,
    ICMP,
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6MLDMultAddrRec,
    ICMPv6MLQuery,
    ICMPv6MLReport,
    ICMPv6MLReport2,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_Redirect,
    ICMPv6ND_RS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptMTU,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptRDNSS,
    ICMPv6NDOptSrcLLAddr,
    ICMPv6NDOptUnknown,
    ICMPv6PacketTooBig,
    ICMPv6TimeExceeded,
    IP,
    IPerror,
    IPerror6,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    TCP,
    TCPerror,
    UDP,
    VXLAN,
    Dot1Q,
    Ether,
    Raw,
    conf,
    mac2str,
)
from scapy.contrib.geneve import GENEVE  # noqa: E402
from scapy.layers.l2 import Dot1AD  # noqa: E402

conf.verb = 0

BCAST = "ff:ff:ff:ff:ff:ff"
ALL_NODES = "ff02::1"
ALL_NODES_MAC = "33:33:00:00:00:01"
DHCP6_MCAST = "ff02::1:2"
DHCP6_MCAST_MAC = "33:33:00:01:00:02"
PAYLOAD = b"STRATUM-HOSTILE-"


def solicited(addr):
    """The solicited-node multicast address of `addr` and its MAC."""
    b = socket.inet_pton(socket.AF_INET6, addr)
    sn = socket.inet_ntop(socket.AF_INET6, bytes.fromhex("ff0200000000000000000001ff") + b[13:])
    return sn, "33:33:ff:%02x:%02x:%02x" % (b[13], b[14], b[15])


class Frame:
    def __init__(self, name, pkts, drops=(), deliver=(), maybe=(), inner=None):
        self.name = name
        self.pkts = pkts if isinstance(pkts, list) else [pkts]
        # Per packet of the list (fragments: one entry each) or one list for all.
        self.drops = drops
        self.deliver = list(deliver)
        self.maybe = list(maybe)
        self.inner = inner


class Ctx:
    def __init__(self, base):
        self.marker = base
        self.topo = {}

    def m(self):
        self.marker += 1
        return self.marker & 0xFFFF

    def __getattr__(self, k):
        return self.topo[k]


# ---- frame building ------------------------------------------------------------------------


def tags(kind):
    """VLAN tags in front of the L3 header: none, a priority tag (VID 0), 802.1Q, QinQ, three."""
    return {
        "": [],
        "vid0": [Dot1Q(vlan=0, prio=5)],
        "dot1q": [Dot1Q(vlan=81)],
        "qinq": [Dot1AD(vlan=100), Dot1Q(vlan=81)],
        "qinq0": [Dot1AD(vlan=0), Dot1Q(vlan=0)],
        "three": [Dot1AD(vlan=100), Dot1Q(vlan=81), Dot1Q(vlan=82)],
    }[kind]


def l2(src, dst, tag=""):
    p = Ether(src=src, dst=dst)
    for t in tags(tag):
        p = p / t
    return p


def ext_chain(kind):
    """IPv6 extension headers placed in front of the upper-layer header."""
    return {
        "": [],
        "hbh": [IPv6ExtHdrHopByHop()],
        "dst": [IPv6ExtHdrDestOpt()],
        "hbh+dst": [IPv6ExtHdrHopByHop(), IPv6ExtHdrDestOpt()],
        "rh": [IPv6ExtHdrRouting()],
        "hbh+rh+dst": [IPv6ExtHdrHopByHop(), IPv6ExtHdrRouting(), IPv6ExtHdrDestOpt()],
        "atomic": [IPv6ExtHdrFragment(m=0, offset=0, id=0x5A5A)],
        "dst+atomic": [IPv6ExtHdrDestOpt(), IPv6ExtHdrFragment(m=0, offset=0, id=0x5A5B)],
        "seven": [IPv6ExtHdrDestOpt() for _ in range(7)],
    }[kind]


def v6(c, src, dst, upper, ext="", hlim=255, fl=None):
    p = IPv6(src=src, dst=dst, hlim=hlim, fl=c.m() if fl is None else fl)
    for h in ext_chain(ext):
        p = p / h
    return p / upper


def v4(c, src, dst, upper, **kw):
    return IP(src=src, dst=dst, id=c.m(), **kw) / upper


def marked(name):
    return Raw(PAYLOAD + name.encode()[:40])


def frag6(c, eth, src, dst, upper, cut, before=(), after=(), hlim=255):
    """An IPv6 datagram as two fragments: `before` headers unfragmentable (in both), `after`
    headers and `upper` split at byte `cut` of the fragmentable part (a multiple of 8)."""
    whole = IPv6(src=src, dst=dst, hlim=hlim)
    for h in after:
        whole = whole / h
    whole = whole / upper
    body = bytes(whole[IPv6].payload)  # checksums computed over the whole datagram
    nh = whole[IPv6].nh
    fl = c.m()
    ident = 0x1000 + fl
    out = []
    for off, more, chunk in ((0, 1, body[:cut]), (cut // 8, 0, body[cut:])):
        p = IPv6(src=src, dst=dst, hlim=hlim, fl=fl)
        for h in before:
            p = p / h.copy()
        p = p / IPv6ExtHdrFragment(nh=nh, offset=off, m=more, id=ident) / Raw(chunk)
        out.append(eth.copy() / p)
    return out


def frag4(c, eth, src, dst, proto, upper, cut, **kw):
    """An IPv4 datagram as two fragments split at byte `cut` of its payload."""
    whole = IP(src=src, dst=dst, proto=proto, **kw) / upper
    body = bytes(whole[IP].payload)
    ident = c.m()
    return [
        eth.copy() / IP(src=src, dst=dst, proto=proto, id=ident, flags="MF", frag=0, **kw) / Raw(body[:cut]),
        eth.copy() / IP(src=src, dst=dst, proto=proto, id=ident, frag=cut // 8, **kw) / Raw(body[cut:]),
    ]


def na(target, mac, flags="O"):
    return ICMPv6ND_NA(tgt=target, R="R" in flags, S="S" in flags, O="O" in flags) / ICMPv6NDOptDstLLAddr(
        lladdr=mac
    )


def ra(c, mac):
    return (
        ICMPv6ND_RA(routerlifetime=9000, M=0, O=0)
        / ICMPv6NDOptSrcLLAddr(lladdr=mac)
        / ICMPv6NDOptMTU(mtu=1280)
        / ICMPv6NDOptPrefixInfo(prefix=c.rogue_prefix, prefixlen=64, L=1, A=1, validlifetime=9000, preferredlifetime=9000)
        / ICMPv6NDOptRDNSS(dns=[c.rogue_dns6], lifetime=9000)
    )


def bootp(op, mac, xid, msg, ciaddr="0.0.0.0", yiaddr="0.0.0.0", giaddr="0.0.0.0", extra=(), flags=0):
    return BOOTP(
        op=op, chaddr=mac2str(mac) + b"\0" * 10, xid=xid, ciaddr=ciaddr, yiaddr=yiaddr, giaddr=giaddr, flags=flags
    ) / DHCP(options=[("message-type", msg)] + list(extra) + ["end"])


def rogue_offer(c, msg, client_mac, yiaddr, server):
    return bootp(
        2,
        client_mac,
        0x5EED,
        msg,
        yiaddr=yiaddr,
        extra=[
            ("server_id", server),
            ("lease_time", 9000),
            ("subnet_mask", "255.255.255.0"),
            ("router", c.rogue_router4),
            ("name_server", c.rogue_router4),
        ],
    )


def dhcp6_server(kind, client_mac, server_mac):
    cls = DHCP6_Advertise if kind == "advertise" else DHCP6_Reply
    return (
        cls(trid=0x5EED)
        / DHCP6OptClientId(duid=DUID_LL(lladdr=client_mac))
        / DHCP6OptServerId(duid=DUID_LL(lladdr=server_mac))
    )


def solicit(mac):
    return (
        DHCP6_Solicit(trid=0x1234)
        / DHCP6OptClientId(duid=DUID_LL(lladdr=mac))
        / DHCP6OptElapsedTime()
        / DHCP6OptIA_NA(iaid=1)
    )


# ---- batches: the variants, by the position they are sent from ----------------------------

BATCHES = {}


def batch(fn):
    BATCHES[fn.__name__] = fn
    return fn


@batch
def w1_spoof(c, a):
    """W1: a workload sending as anything but its profile, with headers and tags around it."""
    W, V, C = c.W, c.V, c.C
    F = []

    def udp_to(name, src, dst, mac_src=None, mac_dst=None, reason=None, tag=""):
        e = l2(mac_src or W["mac"], mac_dst or V["mac"], tag)
        F.append(Frame(name, e / v4(c, src, dst, UDP(sport=4000, dport=4001) / marked(name)), [("W", reason)]))

    udp_to("mac-spoof: V's MAC as source", W["ip"], V["ip"], mac_src=V["mac"], mac_dst=BCAST, reason="mac-spoof")
    udp_to("mac-spoof: the gateway's MAC as source", W["ip"], V["ip"], mac_src=c.gw_mac, reason="mac-spoof")
    udp_to("ip4-spoof: V's address, to C", V["ip"], C["ip"], mac_dst=C["mac"], reason="ip4-spoof")
    udp_to("ip4-spoof: the gateway's address, to V", c.A["gw4"], V["ip"], reason="ip4-spoof")
    udp_to("ip4-spoof: O's address (another network), to V", c.O["ip"], V["ip"], reason="ip4-spoof")
    udp_to("ip4-spoof: A's broadcast address as source", c.A["bcast"], V["ip"], reason="ip4-spoof")
    F.append(
        Frame(
            "ip4-spoof: 0.0.0.0 to V (not a DHCP client's broadcast)",
            l2(W["mac"], V["mac"]) / v4(c, "0.0.0.0", V["ip"], UDP(sport=68, dport=67) / marked("x")),
            [("W", "ip4-spoof")],
        )
    )
    F.append(
        Frame(
            "ip4-spoof: a later fragment with the gateway's address",
            l2(W["mac"], V["mac"]) / IP(src=c.A["gw4"], dst=V["ip"], proto=17, id=c.m(), frag=4) / marked("frag"),
            [("W", "ip4-spoof")],
        )
    )

    def v6_to(name, src, dst, mac_dst, reason, upper=None, ext=""):
        e = l2(W["mac"], mac_dst)
        F.append(Frame(name, e / v6(c, src, dst, upper or UDP(sport=4000, dport=4001) / marked(name), ext=ext), [("W", reason)]))

    v6_to("ip6-spoof: V's address, to C", V["ip6"], C["ip6"], C["mac"], "ip6-spoof")
    v6_to("ip6-spoof: the gateway's address, to V", c.A["gw6"], V["ip6"], V["mac"], "ip6-spoof")
    v6_to("ip6-spoof: the gateway's link-local, to V's", c.gw_ll, V["ll"], V["mac"], "ip6-spoof")
    v6_to("ip6-spoof: V's link-local, to all nodes", V["ll"], ALL_NODES, ALL_NODES_MAC, "ip6-spoof")
    v6_to("ip6-spoof: O's address behind hop-by-hop", c.O["ip6"], V["ip6"], V["mac"], "ip6-spoof", ext="hbh")
    v6_to("ip6-spoof: :: with UDP", "::", V["ip6"], V["mac"], "ip6-spoof")
    v6_to("ip6-spoof: :: with an echo request", "::", V["ip6"], V["mac"], "ip6-spoof", upper=ICMPv6EchoRequest(data=PAYLOAD))
    F.append(
        Frame(
            "ip6-spoof: a later fragment from ::",
            l2(W["mac"], V["mac"])
            / IPv6(src="::", dst=V["ip6"], fl=c.m())
            / IPv6ExtHdrFragment(nh=17, offset=8, m=0, id=7)
            / marked("frag"),
            [("W", "ip6-spoof")],
        )
    )

    def arp_frame(name, reason, op, psrc, pdst, hwsrc=None, dst=BCAST, tag=""):
        e = l2(W["mac"], dst, tag)
        F.append(Frame(name, e / ARP(op=op, hwsrc=hwsrc or W["mac"], psrc=psrc, pdst=pdst), [("W", reason)]))

    arp_frame("arp-spoof: a reply claiming V's address", "arp-spoof", 2, V["ip"], V["ip"])
    arp_frame("arp-spoof: a gratuitous ARP for the gateway", "arp-spoof", 1, c.A["gw4"], c.A["gw4"])
    arp_frame("arp-spoof: a reply to V claiming the gateway", "arp-spoof", 2, c.A["gw4"], V["ip"], dst=V["mac"])
    arp_frame("arp-spoof: V's MAC as sender hardware address", "arp-spoof", 2, W["ip"], V["ip"], hwsrc=V["mac"])
    arp_frame("arp-spoof: a probe (0.0.0.0) for V's address", "arp-spoof", 1, "0.0.0.0", V["ip"])
    arp_frame("arp-target: a request for the LAN host", "arp-target", 1, W["ip"], c.lan["ip"])

    # NA claiming another's address, behind every header arrangement.
    for target, what in ((V["ip6"], "V's address"), (c.A["gw6"], "the gateway's address"), (c.gw_ll, "the gateway's link-local")):
        for ext in ("", "hbh", "dst", "hbh+dst", "rh", "hbh+rh+dst", "atomic", "dst+atomic"):
            F.append(
                Frame(
                    f"nd-spoof: an NA for {what} behind [{ext or 'nothing'}]",
                    l2(W["mac"], ALL_NODES_MAC) / v6(c, W["ll"], ALL_NODES, na(target, W["mac"]), ext=ext),
                    [("W", "nd-spoof")],
                )
            )
    F.append(
        Frame(
            "nd-spoof: an NA for V's address as the first of two fragments",
            frag6(c, l2(W["mac"], ALL_NODES_MAC), W["ll"], ALL_NODES, na(V["ip6"], W["mac"]) / Raw(b"\0" * 40), 32),
            [[("W", "nd-spoof")], [("W", "fw-fragment")]],
        )
    )
    F.append(
        Frame(
            "nd-spoof: an NA to V's link-local claiming V's",
            l2(W["mac"], V["mac"]) / v6(c, W["ll"], V["ll"], na(V["ll"], W["mac"])),
            [("W", "nd-spoof")],
        )
    )
    F.append(
        Frame(
            "nd-spoof: an NA for its own address with V's MAC as target link-layer address",
            l2(W["mac"], ALL_NODES_MAC) / v6(c, W["ll"], ALL_NODES, na(W["ip6"], V["mac"])),
            [("W", "nd-spoof")],
        )
    )
    sn, snmac = solicited(c.A["gw6"])
    F.append(
        Frame(
            "nd-spoof: an NS with the gateway's MAC as source link-layer address",
            l2(W["mac"], snmac)
            / v6(c, W["ll"], sn, ICMPv6ND_NS(tgt=c.A["gw6"]) / ICMPv6NDOptSrcLLAddr(lladdr=c.gw_mac)),
            [("W", "nd-spoof")],
        )
    )
    sn, snmac = solicited(V["ip6"])
    F.append(
        Frame(
            "nd-spoof: a DAD probe (from ::) for V's address",
            l2(W["mac"], snmac) / v6(c, "::", sn, ICMPv6ND_NS(tgt=V["ip6"])),
            [("W", "nd-spoof")],
        )
    )
    F.append(
        Frame(
            "nd-spoof: an RS with V's MAC, behind hop-by-hop",
            l2(W["mac"], "33:33:00:00:00:02")
            / v6(c, W["ll"], "ff02::2", ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr=V["mac"]), ext="hbh"),
            [("W", "nd-spoof")],
        )
    )
    F.append(
        Frame(
            "ip6-ext-chain: an NA behind seven extension headers",
            l2(W["mac"], ALL_NODES_MAC) / v6(c, W["ll"], ALL_NODES, na(W["ip6"], W["mac"]), ext="seven"),
            [("W", "ip6-ext-chain")],
        )
    )
    for tag in ("vid0", "dot1q", "qinq", "three"):
        udp_to(f"vlan-tagged: UDP to V with tags [{tag}]", W["ip"], V["ip"], reason="vlan-tagged", tag=tag)
        F.append(
            Frame(
                f"vlan-tagged: an NA for the gateway with tags [{tag}]",
                l2(W["mac"], ALL_NODES_MAC, tag) / v6(c, W["ll"], ALL_NODES, na(c.A["gw6"], W["mac"])),
                [("W", "vlan-tagged")],
            )
        )
    return F


@batch
def w2_server(c, a):
    """W2: router, DHCP/DHCPv6 server and VXLAN endpoint from a workload."""
    W, V, C = c.W, c.V, c.C
    F = []
    for ext in ("", "hbh", "dst", "hbh+dst", "rh", "atomic"):
        F.append(
            Frame(
                f"rogue-router: an RA to all nodes behind [{ext or 'nothing'}]",
                l2(W["mac"], ALL_NODES_MAC) / v6(c, W["ll"], ALL_NODES, ra(c, W["mac"]), ext=ext),
                [("W", "rogue-router")],
            )
        )
    # A multicast querier is a router's job: a rogue one steers the bridge's snooping.
    for ext in ("hbh", "dst"):
        F.append(
            Frame(
                f"rogue-router: an MLD query to all nodes behind [{ext}]",
                l2(W["mac"], ALL_NODES_MAC) / v6(c, W["ll"], ALL_NODES, ICMPv6MLQuery(), ext=ext, hlim=1),
                [("W", "rogue-router")],
            )
        )
    for src in (W["ip"], "0.0.0.0"):
        F.append(
            Frame(
                f"rogue-router: an IGMP membership query from {src}",
                l2(W["mac"], "01:00:5e:00:00:01") / v4(c, src, "224.0.0.1", Raw(bytes([0x11, 100, 0xEE, 0x9B, 0, 0, 0, 0])), ttl=1, proto=2),
                [("W", "rogue-router")],
            )
        )
    F.append(
        Frame(
            "rogue-router: an RA unicast to V's link-local and MAC",
            l2(W["mac"], V["mac"]) / v6(c, W["ll"], V["ll"], ra(c, W["mac"])),
            [("W", "rogue-router")],
        )
    )
    F.append(
        Frame(
            "rogue-router: an RA to V's global address",
            l2(W["mac"], V["mac"]) / v6(c, W["ll"], V["ip6"], ra(c, W["mac"])),
            [("W", "rogue-router")],
        )
    )
    F.append(
        Frame(
            "rogue-router: an RA as the first of two fragments",
            frag6(c, l2(W["mac"], ALL_NODES_MAC), W["ll"], ALL_NODES, ra(c, W["mac"]), 16),
            [[("W", "rogue-router")], [("W", "fw-fragment")]],
        )
    )
    F.append(
        Frame(
            "malformed: an RA whose ICMPv6 header is in the second fragment",
            frag6(c, l2(W["mac"], ALL_NODES_MAC), W["ll"], ALL_NODES, ra(c, W["mac"]), 8, after=[IPv6ExtHdrDestOpt()]),
            [[("W", "malformed")], [("W", "fw-fragment")]],
        )
    )
    F.append(
        Frame(
            "rogue-router: an ICMPv6 redirect to V behind destination options",
            l2(W["mac"], V["mac"])
            / v6(
                c,
                W["ll"],
                V["ll"],
                ICMPv6ND_Redirect(tgt=W["ll"], dst=c.lan["ip6"]) / ICMPv6NDOptDstLLAddr(lladdr=W["mac"]),
                ext="dst",
            ),
            [("W", "rogue-router")],
        )
    )
    for code in (0, 1):
        F.append(
            Frame(
                f"rogue-router: an ICMP redirect (code {code}) to V",
                l2(W["mac"], V["mac"])
                / v4(
                    c,
                    W["ip"],
                    V["ip"],
                    ICMP(type=5, code=code, gw=W["ip"])
                    / IPerror(src=V["ip"], dst=c.lan["ip"], proto=17)
                    / UDP(sport=5353, dport=53),
                ),
                [("W", "rogue-router")],
            )
        )
    F.append(
        Frame(
            "rogue-router: an ICMP router advertisement (RFC 1256) to all hosts",
            l2(W["mac"], "01:00:5e:00:00:01") / v4(c, W["ip"], "224.0.0.1", irdp(W["ip"]), ttl=1),
            [("W", "rogue-router")],
        )
    )
    # DHCPv4 server messages.
    offer = rogue_offer(c, "offer", C["mac"], "10.81.0.200", W["ip"])
    ack = rogue_offer(c, "ack", C["mac"], "10.81.0.200", W["ip"])
    F += [
        Frame(
            "rogue-dhcp: an OFFER broadcast",
            l2(W["mac"], BCAST) / v4(c, W["ip"], "255.255.255.255", UDP(sport=67, dport=68) / offer),
            [("W", "rogue-dhcp")],
        ),
        Frame(
            "rogue-dhcp: an ACK unicast to C",
            l2(W["mac"], C["mac"]) / v4(c, W["ip"], C["ip"], UDP(sport=67, dport=68) / ack),
            [("W", "rogue-dhcp")],
        ),
        Frame(
            "rogue-dhcp: an ACK to A's broadcast address",
            l2(W["mac"], BCAST) / v4(c, W["ip"], c.A["bcast"], UDP(sport=67, dport=68) / ack),
            [("W", "rogue-dhcp")],
        ),
        Frame(
            "rogue-dhcp: an ACK from another source port",
            l2(W["mac"], C["mac"]) / v4(c, W["ip"], C["ip"], UDP(sport=1067, dport=68) / ack),
            [("W", "rogue-dhcp")],
        ),
        Frame(
            "rogue-dhcp: a BOOTREPLY to port 67",
            l2(W["mac"], BCAST) / v4(c, W["ip"], "255.255.255.255", UDP(sport=68, dport=67) / offer),
            [("W", "rogue-dhcp")],
        ),
        Frame(
            "rogue-dhcp: a fragmented request (the op byte out of sight)",
            frag4(c, l2(W["mac"], BCAST), W["ip"], "255.255.255.255", 17, UDP(sport=68, dport=67) / bootp(1, W["mac"], 9, "discover"), 8),
            [[("W", "rogue-dhcp")], [("W", "fw-fragment")]],
        ),
    ]
    # DHCPv6 server messages.
    adv = dhcp6_server("advertise", C["mac"], W["mac"])
    rep = dhcp6_server("reply", V["mac"], W["mac"])
    for ext in ("", "hbh", "dst", "atomic"):
        F.append(
            Frame(
                f"rogue-dhcp6: an ADVERTISE to all DHCP agents behind [{ext or 'nothing'}]",
                l2(W["mac"], DHCP6_MCAST_MAC) / v6(c, W["ll"], DHCP6_MCAST, UDP(sport=547, dport=546) / adv, ext=ext),
                [("W", "rogue-dhcp6")],
            )
        )
    F += [
        Frame(
            "rogue-dhcp6: a REPLY to V's link-local",
            l2(W["mac"], V["mac"]) / v6(c, W["ll"], V["ll"], UDP(sport=547, dport=546) / rep),
            [("W", "rogue-dhcp6")],
        ),
        Frame(
            "rogue-dhcp6: a REPLY from another source port",
            l2(W["mac"], V["mac"]) / v6(c, W["ll"], V["ll"], UDP(sport=5470, dport=546) / rep),
            [("W", "rogue-dhcp6")],
        ),
        Frame(
            "rogue-dhcp6: a REPLY to the server port (client to client)",
            l2(W["mac"], DHCP6_MCAST_MAC) / v6(c, W["ll"], DHCP6_MCAST, UDP(sport=546, dport=547) / rep),
            [("W", "rogue-dhcp6")],
        ),
    ]
    # VXLAN (UDP 4789), wherever it is sent and however it is wrapped.
    inner = (
        Ether(src=c.gw_mac, dst=V["mac"])
        / v4(c, c.A["gw4"], V["ip"], UDP(sport=53, dport=9999) / marked("vxlan-inner"))
    )
    vx = VXLAN(vni=81, flags=0x08) / inner
    for dst, mac, what in (
        (V["ip"], V["mac"], "V"),
        (c.A["gw4"], c.gw_mac, "the gateway"),
        (c.A["bcast"], BCAST, "A's broadcast address"),
        (c.lan["ip"], c.gw_mac, "the LAN host, routed"),
        (c.O["ip"], c.gw_mac, "O, routed"),
    ):
        F.append(
            Frame(
                f"rogue-vxlan: VXLAN to {what}",
                l2(W["mac"], mac) / v4(c, W["ip"], dst, UDP(sport=40000, dport=4789) / vx),
                [("W", "rogue-vxlan")],
                inner=inner,
            )
        )
    F.append(
        Frame(
            "rogue-vxlan: VXLAN over IPv6 to V behind destination options",
            l2(W["mac"], V["mac"]) / v6(c, W["ip6"], V["ip6"], UDP(sport=40000, dport=4789) / vx, ext="dst"),
            [("W", "rogue-vxlan")],
            inner=inner,
        )
    )
    F.append(
        Frame(
            "rogue-vxlan: VXLAN as two IPv4 fragments",
            frag4(c, l2(W["mac"], V["mac"]), W["ip"], V["ip"], 17, UDP(sport=40000, dport=4789) / vx, 24),
            [[("W", "rogue-vxlan")], [("W", "fw-fragment")]],
            inner=inner,
        )
    )
    return F


@batch
def w2_tunnels(c, a):
    """W2: tunnels other than VXLAN are ordinary traffic; nothing decapsulates them."""
    W, V, O = c.W, c.V, c.O
    F = []
    for proto in ("geneve", "udp8472", "gpe", "gre"):
        for dst, mac, what in (
            (V["ip"], V["mac"], "V"),
            (c.A["gw4"], c.gw_mac, "the gateway"),
            (c.lan["ip"], c.gw_mac, "the LAN host"),
            (O["ip"], c.gw_mac, "O"),
        ):
            inner = Ether(src=c.gw_mac, dst=V["mac"]) / v4(
                c, c.A["gw4"], V["ip"], UDP(sport=53, dport=9999) / marked(f"{proto}-inner")
            )
            if proto == "geneve":
                outer, name = UDP(sport=40001, dport=6081) / GENEVE(vni=81, proto=0x6558) / inner, "GENEVE (UDP 6081)"
            elif proto == "udp8472":
                outer, name = UDP(sport=40002, dport=8472) / VXLAN(vni=81, flags=0x08) / inner, "VXLAN on UDP 8472"
            elif proto == "gpe":
                outer, name = (
                    UDP(sport=40003, dport=4790) / VXLAN(vni=81, flags=0x0C, NextProtocol=3) / inner,
                    "VXLAN-GPE (UDP 4790)",
                )
            else:
                outer, name = GRE(proto=0x6558) / inner, "GRE/TEB"
            frame = l2(W["mac"], mac) / v4(c, W["ip"], dst, outer)
            if proto == "gre":
                # No rule allows GRE: the default denies it at W's port like any protocol.
                F.append(Frame(f"{name} to {what}: denied at W's port", frame, [("W", "fw-default")], inner=inner))
            elif what == "V":
                # Allowed out of W (UDP 4789-8472), denied into V: ordinary traffic both ways.
                F.append(Frame(f"{name} to V: denied at V's port", frame, [("V", "fw-default")], inner=inner))
            elif what == "the gateway":
                F.append(Frame(f"{name} to the gateway: reaches the node, which decapsulates nothing", frame, [], deliver=["BR"], inner=inner))
            elif what == "the LAN host":
                F.append(Frame(f"{name} to the LAN host: routed like any UDP", frame, [], deliver=["LAN"], maybe=["BR"], inner=inner))
            else:
                F.append(Frame(f"{name} to O: routed like any UDP", frame, [], deliver=["O"], maybe=["BR"], inner=inner))
    return F


def irdp(router):
    """An IPv4 ICMP router advertisement (RFC 1256): one address, preference 16, 1800 s."""
    return ICMP(type=9, code=0, unused=(1 << 24) | (2 << 16) | 1800) / Raw(socket.inet_aton(router) + b"\0\0\0\x10")


@batch
def w2_redirect(c, a):
    """W2 from O, whose network allows everything: ICMP redirects and router advertisements are a
    router's messages."""
    O, V, lan = c.O, c.V, c.lan
    quote = IPerror(src=lan["ip"], dst=O["ip"], proto=17) / UDP(sport=53, dport=53)
    return [
        Frame(
            "an ICMP router advertisement (RFC 1256) from O to the LAN host, routed",
            l2(O["mac"], c.gw_mac) / v4(c, O["ip"], lan["ip"], irdp(O["ip"])),
            [("O", "rogue-router")],
            maybe=["BR"],
        ),
        Frame(
            "an ICMP router advertisement from O to all hosts",
            l2(O["mac"], "01:00:5e:00:00:01") / v4(c, O["ip"], "224.0.0.1", irdp(O["ip"]), ttl=1),
            [("O", "rogue-router")],
            maybe=["BR"],
        ),
        Frame(
            "an ICMP redirect from O to the LAN host, routed",
            l2(O["mac"], c.gw_mac) / v4(c, O["ip"], lan["ip"], ICMP(type=5, code=1, gw=O["ip"]) / quote),
            [("O", "rogue-router")],
            maybe=["BR"],
        ),
        Frame(
            "an ICMP redirect from O to V, routed",
            l2(O["mac"], c.gw_mac) / v4(c, O["ip"], V["ip"], ICMP(type=5, code=0, gw=O["ip"]) / quote),
            [("O", "rogue-router")],
            maybe=["BR"],
        ),
        # Errors a router on the path would send about V's traffic to the LAN: O is no router.
        Frame(
            "an ICMP fragmentation needed from O to V about V's datagram to the LAN host, routed",
            l2(O["mac"], c.gw_mac)
            / v4(c, O["ip"], V["ip"], ICMP(type=3, code=4, nexthopmtu=576) / IPerror(src=V["ip"], dst=lan["ip"], proto=6) / TCPerror(sport=41000, dport=8080)),
            [("O", "rogue-router")],
            maybe=["BR"],
        ),
        Frame(
            "an ICMPv6 packet too big from O to V about V's packet to the LAN host, routed",
            l2(O["mac"], c.gw_mac)
            / v6(c, O["ip6"], V["ip6"], ICMPv6PacketTooBig(mtu=1280) / IPerror6(src=V["ip6"], dst=lan["ip6"], nh=6) / TCPerror(sport=41000, dport=8080), hlim=64),
            [("O", "rogue-router")],
            maybe=["BR"],
        ),
    ]


@batch
def w3_lan(c, a):
    """W3: frames straight to the LAN at L2."""
    W, V = c.W, c.V
    lan = c.lan
    F = [
        Frame(
            "lan-direct: an IPv4 echo request to the LAN host's MAC",
            l2(W["mac"], lan["mac"]) / v4(c, W["ip"], lan["ip"], ICMP(type=8, id=7) / marked("w3")),
            [("uplink", "lan-direct")],
        ),
        Frame(
            "lan-direct: a TCP SYN to the LAN host's MAC (port 8080, allowed)",
            l2(W["mac"], lan["mac"]) / v4(c, W["ip"], lan["ip"], TCP(sport=41234, dport=8080, flags="S")),
            [("uplink", "lan-direct")],
        ),
        Frame(
            "lan-direct: an IPv6 echo request to the LAN host's MAC",
            l2(W["mac"], lan["mac"]) / v6(c, W["ip6"], lan["ip6"], ICMPv6EchoRequest(id=7, data=PAYLOAD), hlim=64),
            [("uplink", "lan-direct")],
        ),
        Frame(
            "lan-direct: an IPv6 echo request to all nodes",
            l2(W["mac"], ALL_NODES_MAC) / v6(c, W["ll"], ALL_NODES, ICMPv6EchoRequest(id=7, data=PAYLOAD), hlim=64),
            # V answers; no rule allows an echo reply that opens no tracked flow (to a group).
            [("uplink", "lan-direct"), ("V", "fw-default")],
            deliver=["V"],
        ),
        Frame(
            "lan-direct: a UDP broadcast (port 5000, allowed out of W)",
            l2(W["mac"], BCAST) / v4(c, W["ip"], c.A["bcast"], UDP(sport=5000, dport=5000) / marked("w3")),
            [("uplink", "lan-direct"), ("V", "fw-default")],
        ),
        Frame(
            "lan-direct: an ARP request for a free address of A (broadcast)",
            l2(W["mac"], BCAST)
            / ARP(op=1, hwsrc=W["mac"], psrc=W["ip"], pdst=c.A["gw4"].rsplit(".", 1)[0] + ".211"),
            [("uplink", "lan-direct")],
            deliver=["V"],
        ),
        Frame(
            # V is a known endpoint: W's own port answers with V's profile MAC (docs/overlay.md).
            "answered at W's port: an ARP request for V (broadcast) reaches neither V nor the LAN",
            l2(W["mac"], BCAST) / ARP(op=1, hwsrc=W["mac"], psrc=W["ip"], pdst=V["ip"]),
            [],
        ),
        Frame(
            # C is a known endpoint: answered at W's port, whatever MAC the request is sent to.
            "answered at W's port: an ARP request for C unicast to the LAN host's MAC never reaches the LAN",
            l2(W["mac"], lan["mac"]) / ARP(op=1, hwsrc=W["mac"], psrc=W["ip"], pdst=c.C["ip"]),
            [],
        ),
        Frame(
            "lan-direct: an ARP request for a free address unicast to the LAN host's MAC",
            l2(W["mac"], lan["mac"])
            / ARP(op=1, hwsrc=W["mac"], psrc=W["ip"], pdst=c.A["gw4"].rsplit(".", 1)[0] + ".212"),
            [("uplink", "lan-direct")],
        ),
        Frame(
            "arp-target: an ARP request for the LAN host",
            l2(W["mac"], BCAST) / ARP(op=1, hwsrc=W["mac"], psrc=W["ip"], pdst=lan["ip"]),
            [("W", "arp-target")],
        ),
    ]
    return F


@batch
def w4_errors(c, a):
    """W4: ICMP errors quoting W's allowed flow with V (W → V:8080), to the flow's peer and to others."""
    W, V, C, O, lan = c.W, c.V, c.C, c.O, c.lan
    f4, f6 = a["sport4"], a["sport6"]
    F = []
    errors4 = (("port unreachable", 3, 3, {}), ("fragmentation needed", 3, 4, {"nexthopmtu": 1000}), ("time exceeded", 11, 0, {}))
    errors6 = (
        ("port unreachable", ICMPv6DestUnreach(code=4)),
        ("packet too big", ICMPv6PacketTooBig(mtu=1280)),
        ("time exceeded", ICMPv6TimeExceeded(code=0)),
    )

    def q4(src, dst, sport, dport):
        return IPerror(src=src, dst=dst, proto=6, id=1) / TCPerror(sport=sport, dport=dport, flags="A", seq=1)

    def q6(src, dst, sport, dport):
        return IPerror6(src=src, dst=dst, nh=6) / TCPerror(sport=sport, dport=dport, flags="A", seq=1)

    targets4 = ((V, "V (the flow's peer)"), (C, "C (denied)"), (O, "O (another network)"), (lan, "the LAN host"))
    for what, t, code, kw in errors4:
        for tgt, who in targets4:
            mac = tgt["mac"] if tgt in (V, C) else c.gw_mac
            frame = l2(W["mac"], mac) / v4(c, W["ip"], tgt["ip"], ICMP(type=t, code=code, **kw) / q4(V["ip"], W["ip"], 8080, f4))
            if tgt is V:
                F.append(Frame(f"IPv4 {what} about the allowed flow, to {who}", frame, [], deliver=["V"]))
            else:
                F.append(Frame(f"IPv4 {what} quoting the allowed flow, to {who}", frame, [("W", "fw-default")]))
    for what, err in errors6:
        for tgt, who in targets4:
            mac = tgt["mac"] if tgt in (V, C) else c.gw_mac
            frame = l2(W["mac"], mac) / v6(c, W["ip6"], tgt["ip6"], err.copy() / q6(V["ip6"], W["ip6"], 8080, f6), hlim=64)
            if tgt is V:
                F.append(Frame(f"ICMPv6 {what} about the allowed flow, to {who}", frame, [], deliver=["V"]))
            else:
                F.append(Frame(f"ICMPv6 {what} quoting the allowed flow, to {who}", frame, [("W", "fw-default")]))
    F += [
        Frame(
            "IPv4 port unreachable quoting the allowed flow, to the gateway",
            l2(W["mac"], c.gw_mac) / v4(c, W["ip"], c.A["gw4"], ICMP(type=3, code=3) / q4(V["ip"], W["ip"], 8080, f4)),
            [("W", "fw-default")],
        ),
        Frame(
            "IPv4 port unreachable to V quoting a flow that was never allowed",
            l2(W["mac"], V["mac"]) / v4(c, W["ip"], V["ip"], ICMP(type=3, code=3) / q4(V["ip"], W["ip"], 7777, f4)),
            [("W", "fw-default")],
        ),
        Frame(
            "IPv4 time exceeded to V quoting the flow the other way round (as if W had routed V's own datagram)",
            l2(W["mac"], V["mac"]) / v4(c, W["ip"], V["ip"], ICMP(type=11, code=0) / q4(W["ip"], V["ip"], f4, 8080)),
            [("W", "rogue-router")],
        ),
        Frame(
            "IPv4 fragmentation needed to V about V's datagram to the LAN host (W is no router on its path)",
            l2(W["mac"], V["mac"]) / v4(c, W["ip"], V["ip"], ICMP(type=3, code=4, nexthopmtu=576) / q4(V["ip"], lan["ip"], 8080, f4)),
            [("W", "rogue-router")],
        ),
        Frame(
            "ICMPv6 packet too big to V about V's packet to the LAN host",
            l2(W["mac"], V["mac"]) / v6(c, W["ip6"], V["ip6"], ICMPv6PacketTooBig(mtu=1280) / q6(V["ip6"], lan["ip6"], 8080, f6), hlim=64),
            [("W", "rogue-router")],
        ),
        Frame(
            "IPv4 time exceeded quoting the allowed flow, with 1000 bytes riding along, to C",
            l2(W["mac"], C["mac"])
            / v4(c, W["ip"], C["ip"], ICMP(type=11, code=0) / q4(V["ip"], W["ip"], 8080, f4) / Raw(PAYLOAD * 60)),
            [("W", "fw-default")],
        ),
        Frame(
            "ICMPv6 packet too big to V quoting a flow that was never allowed",
            l2(W["mac"], V["mac"]) / v6(c, W["ip6"], V["ip6"], ICMPv6PacketTooBig(mtu=1280) / q6(V["ip6"], W["ip6"], 7777, f6), hlim=64),
            [("W", "fw-default")],
        ),
        Frame(
            "IPv4 time exceeded about the allowed flow, with 1000 bytes riding along, to V",
            l2(W["mac"], V["mac"])
            / v4(c, W["ip"], V["ip"], ICMP(type=11, code=0) / q4(V["ip"], W["ip"], 8080, f4) / Raw(PAYLOAD * 60)),
            [],
            deliver=["V"],
        ),
    ]
    return F


@batch
def w5_dhcp(c, a):
    """W5: DHCP messages from W naming addresses that are not its own."""
    W, V, O = c.W, c.V, c.O
    F = []

    def msg(name, src, dst, mac_dst, m, ciaddr="0.0.0.0", chaddr=None, giaddr="0.0.0.0", extra=(), drops=(), flags=0):
        b = bootp(1, chaddr or W["mac"], 0x7700 + len(F), m, ciaddr=ciaddr, giaddr=giaddr, extra=extra, flags=flags)
        F.append(Frame(name, l2(W["mac"], mac_dst) / v4(c, src, dst, UDP(sport=68, dport=67) / b), drops))

    gw = c.A["gw4"]
    for ci, what in ((O["ip"], "O's address"), (c.A["bcast"], "A's broadcast address"), ("255.255.255.255", "255.255.255.255"), (V["ip"], "V's address")):
        msg(f"an INFORM naming {what}, to the gateway", W["ip"], gw, c.gw_mac, "inform", ciaddr=ci)
        msg(f"an INFORM naming {what}, broadcast", W["ip"], "255.255.255.255", BCAST, "inform", ciaddr=ci)
        msg(f"a RENEW (REQUEST) naming {what}, to the gateway", W["ip"], gw, c.gw_mac, "request", ciaddr=ci)
        msg(f"a REBIND (REQUEST) naming {what}, broadcast", W["ip"], "255.255.255.255", BCAST, "request", ciaddr=ci)
    msg("an INFORM from 0.0.0.0 naming O's address", "0.0.0.0", "255.255.255.255", BCAST, "inform", ciaddr=O["ip"])
    msg(
        "an INIT-REBOOT REQUEST asking for O's address",
        W["ip"],
        "255.255.255.255",
        BCAST,
        "request",
        extra=[("requested_addr", O["ip"])],
    )
    msg("dhcp-spoof: an INFORM with V's MAC as chaddr", W["ip"], gw, c.gw_mac, "inform", ciaddr=W["ip"], chaddr=V["mac"], drops=[("W", "dhcp-spoof")])
    msg("dhcp-spoof: a REQUEST relayed (giaddr set)", W["ip"], gw, c.gw_mac, "request", ciaddr=W["ip"], giaddr=W["ip"], drops=[("W", "dhcp-spoof")])
    return F


@batch
def w5_broadcast(c, a):
    """Answers a client asks to have broadcast (RFC 2131's broadcast bit), and a NAK, which always
    is: from W (args who=W) or O."""
    W = c.topo[a.get("who", "W")]
    gw = (c.A if a.get("who", "W") == "W" else c.B)["gw4"]
    other = c.O if W is not c.O else c.V

    def msg(name, m, flags, extra):
        b = bootp(1, W["mac"], 0x7800 + len(F), m, extra=extra, flags=flags)
        F.append(Frame(name, l2(W["mac"], BCAST) / v4(c, "0.0.0.0", "255.255.255.255", UDP(sport=68, dport=67) / b), []))

    F = []
    msg("a DISCOVER asking for a broadcast answer", "discover", 0x8000, [])
    msg("a REQUEST for its own address asking for a broadcast answer", "request", 0x8000, [("requested_addr", W["ip"]), ("server_id", gw)])
    msg("an INIT-REBOOT REQUEST for another network's address (NAKed)", "request", 0, [("requested_addr", other["ip"])])
    return F


@batch
def w5_inform_own(c, a):
    """The control: an INFORM naming W's own address, answered to W."""
    W = c.W
    b = bootp(1, W["mac"], 0x7799, "inform", ciaddr=W["ip"])
    return [Frame("an INFORM naming its own address", l2(W["mac"], c.gw_mac) / v4(c, W["ip"], c.A["gw4"], UDP(sport=68, dport=67) / b), [])]


@batch
def v6_bind(c, a):
    """A DHCPv6 client's exchange (SOLICIT with rapid commit): its binding, for W5's release."""
    V = c.topo[a.get("who", "V")]
    sol = (
        DHCP6_Solicit(trid=0x4321)
        / DHCP6OptClientId(duid=DUID_LL(lladdr=V["mac"]))
        / DHCP6OptElapsedTime()
        / DHCP6OptRapidCommit()
        / DHCP6OptIA_NA(iaid=7)
    )
    return [
        Frame(
            "a SOLICIT with rapid commit",
            l2(V["mac"], DHCP6_MCAST_MAC) / v6(c, V["ll"], DHCP6_MCAST, UDP(sport=546, dport=547) / sol),
            [],
            maybe=["BR", "W", "C"],
        )
    ]


@batch
def w5_release6(c, a):
    """W5: DHCPv6 RELEASE and DECLINE from W naming V's DUID and IAID: V's binding stays."""
    W, V = c.W, c.V
    F = []
    for kind, cls in (("RELEASE", DHCP6_Release), ("DECLINE", DHCP6_Decline)):
        msg = (
            cls(trid=0x4400 + len(F))
            / DHCP6OptClientId(duid=DUID_LL(lladdr=V["mac"]))
            / DHCP6OptServerId(duid=DUID_LL(lladdr=c.gw_mac))
            / DHCP6OptElapsedTime()
            / DHCP6OptIA_NA(iaid=7, ianaopts=[DHCP6OptIAAddress(addr=V["ip6"])])
        )
        F.append(
            Frame(
                f"a {kind} naming V's DUID, IAID and address",
                l2(W["mac"], DHCP6_MCAST_MAC) / v6(c, W["ll"], DHCP6_MCAST, UDP(sport=546, dport=547) / msg),
                [],
                maybe=["BR", "V", "C"],
            )
        )
    return F


@batch
def n1_l2(c, a):
    """N1: O's frames addressed at L2 into network A."""
    O, V, W = c.O, c.V, c.W
    sn, snmac = solicited(V["ip6"])
    return [
        Frame(
            "UDP to V's MAC and address",
            l2(O["mac"], V["mac"]) / v4(c, O["ip"], V["ip"], UDP(sport=4000, dport=8080) / marked("n1")),
            [("V", "other-network")],
        ),
        Frame(
            "TCP SYN to V's MAC (port 8080, allowed in A)",
            l2(O["mac"], V["mac"]) / v4(c, O["ip"], V["ip"], TCP(sport=41000, dport=8080, flags="S")),
            [("V", "other-network")],
        ),
        Frame(
            "IPv6 echo request to V's MAC and link-local",
            l2(O["mac"], V["mac"]) / v6(c, O["ll"], V["ll"], ICMPv6EchoRequest(data=PAYLOAD), hlim=64),
            [("V", "other-network")],
        ),
        Frame(
            "UDP to W's MAC",
            l2(O["mac"], W["mac"]) / v4(c, O["ip"], W["ip"], UDP(sport=4000, dport=4001) / marked("n1")),
            [("W", "other-network")],
        ),
        Frame(
            "UDP broadcast on B's subnet",
            l2(O["mac"], BCAST) / v4(c, O["ip"], c.B["bcast"], UDP(sport=4000, dport=4001) / marked("n1")),
            [("V", "other-network"), ("W", "other-network")],
        ),
        Frame(
            "UDP to 255.255.255.255",
            l2(O["mac"], BCAST) / v4(c, O["ip"], "255.255.255.255", UDP(sport=4000, dport=4001) / marked("n1")),
            [("V", "other-network"), ("W", "other-network")],
        ),
        Frame(
            "IPv6 UDP to all nodes",
            l2(O["mac"], ALL_NODES_MAC) / v6(c, O["ll"], ALL_NODES, UDP(sport=4000, dport=4001) / marked("n1")),
            [("V", "other-network"), ("W", "other-network")],
        ),
        Frame(
            "an NS for V's address to its solicited-node group",
            l2(O["mac"], snmac) / v6(c, O["ll"], sn, ICMPv6ND_NS(tgt=V["ip6"]) / ICMPv6NDOptSrcLLAddr(lladdr=O["mac"])),
            [("V", "other-network"), ("W", "other-network")],
        ),
        Frame(
            "an ARP request for B's gateway (broadcast)",
            l2(O["mac"], BCAST) / ARP(op=1, hwsrc=O["mac"], psrc=O["ip"], pdst=c.B["gw4"]),
            [("V", "other-network"), ("W", "other-network")],
        ),
        Frame(
            "an ARP reply to V's MAC",
            l2(O["mac"], V["mac"]) / ARP(op=2, hwsrc=O["mac"], psrc=O["ip"], hwdst=V["mac"], pdst=O["ip"]),
            [("V", "other-network")],
        ),
    ]


@batch
def n2_routed(c, a):
    """N2: neighbour discovery, MLD and DHCP routed from O through the gateway into default-deny A."""
    O, V = c.O, c.V
    gm = c.gw_mac
    F = []
    for hl in (255, 64):
        F += [
            Frame(
                f"an NS to V (hop limit {hl})",
                l2(O["mac"], gm) / v6(c, O["ip6"], V["ip6"], ICMPv6ND_NS(tgt=V["ip6"]) / ICMPv6NDOptSrcLLAddr(lladdr=O["mac"]), hlim=hl),
                [("V", "nd-outside")],
            ),
            Frame(
                f"an NA to V (hop limit {hl})",
                l2(O["mac"], gm) / v6(c, O["ip6"], V["ip6"], na(O["ip6"], O["mac"]), hlim=hl),
                [("V", "nd-outside")],
            ),
            Frame(
                f"an RS to V (hop limit {hl})",
                l2(O["mac"], gm) / v6(c, O["ip6"], V["ip6"], ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr=O["mac"]), hlim=hl),
                [("V", "nd-outside")],
            ),
            Frame(
                f"an NS with data riding in an unknown option (hop limit {hl})",
                l2(O["mac"], gm)
                / v6(
                    c,
                    O["ip6"],
                    V["ip6"],
                    ICMPv6ND_NS(tgt=V["ip6"]) / ICMPv6NDOptUnknown(type=200, len=4, data=PAYLOAD + b"\0" * 14),
                    hlim=hl,
                ),
                [("V", "nd-outside")],
            ),
            Frame(
                f"an MLDv1 report with 16 extra bytes (hop limit {hl})",
                l2(O["mac"], gm) / v6(c, O["ip6"], V["ip6"], ICMPv6MLReport(mladdr="ff02::1:3") / Raw(PAYLOAD), hlim=hl),
                [("V", "fw-default")],
            ),
            Frame(
                f"an MLDv2 report with extra bytes (hop limit {hl})",
                l2(O["mac"], gm)
                / v6(
                    c,
                    O["ip6"],
                    V["ip6"],
                    ICMPv6MLReport2(records=[ICMPv6MLDMultAddrRec(dst="ff02::1:3")]) / Raw(PAYLOAD),
                    hlim=hl,
                ),
                [("V", "fw-default")],
            ),
            Frame(
                f"an exact MLDv2 report (hop limit {hl})",
                l2(O["mac"], gm)
                / v6(c, O["ip6"], V["ip6"], ICMPv6MLReport2(records=[ICMPv6MLDMultAddrRec(dst="ff02::1:3")]), hlim=hl),
                [("V", "fw-default")],
            ),
            Frame(
                f"an MLD query (hop limit {hl}): a querier's message, dropped at O's port",
                l2(O["mac"], gm) / v6(c, O["ip6"], V["ip6"], ICMPv6MLQuery(), hlim=hl),
                [("O", "rogue-router")],
            ),
        ]
    F += [
        Frame(
            "an RA routed to V (dropped at O's port)",
            l2(O["mac"], gm) / v6(c, O["ip6"], V["ip6"], ra(c, O["mac"])),
            [("O", "rogue-router")],
        ),
        Frame(
            "an RA from O's link-local to all nodes",
            l2(O["mac"], ALL_NODES_MAC) / v6(c, O["ll"], ALL_NODES, ra(c, O["mac"]), ext="hbh"),
            [("O", "rogue-router")],
        ),
    ]
    F += [
        Frame(
            "a DHCP DISCOVER routed to V's port 67",
            l2(O["mac"], gm) / v4(c, O["ip"], V["ip"], UDP(sport=68, dport=67) / bootp(1, O["mac"], 5, "discover")),
            [("V", "fw-default")],
        ),
        Frame(
            "a DHCPv6 SOLICIT routed to V's port 547",
            l2(O["mac"], gm) / v6(c, O["ip6"], V["ip6"], UDP(sport=546, dport=547) / solicit(O["mac"]), hlim=64),
            [("V", "fw-default")],
        ),
        Frame(
            "a DNS query routed to V (only the gateway's DNS is failsafe)",
            l2(O["mac"], gm) / v4(c, O["ip"], V["ip"], UDP(sport=5353, dport=53) / marked("dns")),
            [("V", "fw-default")],
        ),
        Frame("control: an IPv4 echo request routed to V (allowed)", l2(O["mac"], gm) / v4(c, O["ip"], V["ip"], ICMP(type=8, id=9) / marked("n2")), [], deliver=["V"]),
        Frame(
            "control: an IPv6 echo request routed to V (allowed)",
            l2(O["mac"], gm) / v6(c, O["ip6"], V["ip6"], ICMPv6EchoRequest(id=9, data=PAYLOAD), hlim=64),
            [],
            deliver=["V"],
        ),
    ]
    return F


@batch
def n2_link(c, a):
    """N2's failsafe, from within A: the ND every firewall lets through is the link's own, its
    options link-layer addresses and nonces of their usual size, nothing riding in them."""
    W, V = c.W, c.V
    e = l2(W["mac"], V["mac"])
    fat_slla = ICMPv6NDOptUnknown(type=1, len=6, data=mac2str(W["mac"]) + PAYLOAD * 2 + b"\0" * 8)
    fat_tlla = ICMPv6NDOptUnknown(type=2, len=5, data=mac2str(W["mac"]) + PAYLOAD * 2)
    nonce = lambda n: ICMPv6NDOptUnknown(type=14, len=n, data=(PAYLOAD * 20)[: n * 8 - 2])  # noqa: E731
    # A target that is no endpoint of A (its interface id is no profile MAC of A's): an NS for
    # one is answered at W's own port (docs/overlay.md), and would never reach V or the rules.
    tgt = "fe80::99:99ff:fe00:99"
    return [
        Frame(
            "control: an NS to V with an 8-byte nonce (enhanced DAD's)",
            e / v6(c, W["ll"], V["ll"], ICMPv6ND_NS(tgt=tgt) / ICMPv6NDOptSrcLLAddr(lladdr=W["mac"]) / nonce(1)),
            [],
            deliver=["V"],
        ),
        Frame(
            "an NS to V with 198 bytes riding in a nonce option",
            e / v6(c, W["ll"], V["ll"], ICMPv6ND_NS(tgt=tgt) / ICMPv6NDOptSrcLLAddr(lladdr=W["mac"]) / nonce(25)),
            [("W", "fw-default")],
        ),
        Frame(
            "an NS to V whose source link-layer address option is 48 bytes long",
            e / v6(c, W["ll"], V["ll"], ICMPv6ND_NS(tgt=tgt) / fat_slla),
            [("W", "fw-default")],
        ),
        Frame(
            "an NA to V for W's address whose target link-layer address option is 40 bytes long",
            e / v6(c, W["ll"], V["ll"], ICMPv6ND_NA(tgt=W["ip6"], S=1, O=1) / fat_tlla),
            [("W", "fw-default")],
        ),
    ]


@batch
def l1_na(c, a):
    """L1: the LAN claiming local addresses: NAs behind every header and tag, sources, ARP."""
    lan, V, C = c.lan, c.V, c.C
    F = []
    targets = ((V["ip6"], "V's address"), (c.A["gw6"], "the gateway's address"), (c.gw_ll, "the gateway's link-local"), (V["ll"], "V's link-local"), (C["ip6"], "C's SLAAC address"))
    for target, what in targets:
        for ext in ("", "hbh", "dst", "hbh+dst", "rh", "hbh+rh+dst", "atomic", "dst+atomic"):
            for tag in ("", "vid0", "dot1q", "qinq"):
                F.append(
                    Frame(
                        f"an NA for {what} behind [{ext or 'nothing'}], tags [{tag}]",
                        l2(lan["mac"], ALL_NODES_MAC, tag) / v6(c, lan["ll"], ALL_NODES, na(target, lan["mac"]), ext=ext),
                        [("uplink", "local-spoof")],
                    )
                )
        F.append(
            Frame(
                f"an NA for {what} unicast to the node",
                l2(lan["mac"], c.gw_mac) / v6(c, lan["ll"], c.gw_ll, na(target, lan["mac"])),
                [("uplink", "local-spoof")],
            )
        )
        F.append(
            Frame(
                f"an NA for {what} as the first of two fragments",
                frag6(c, l2(lan["mac"], ALL_NODES_MAC), lan["ll"], ALL_NODES, na(target, lan["mac"]) / Raw(b"\0" * 40), 32),
                [[("uplink", "local-spoof")], [("uplink", "fw-fragment")]],
            )
        )
        F.append(
            Frame(
                f"an NA for {what} whose target is in the second fragment",
                frag6(c, l2(lan["mac"], ALL_NODES_MAC), lan["ll"], ALL_NODES, na(target, lan["mac"]), 8),
                [[("uplink", "malformed")], [("uplink", "fw-fragment")]],
            )
        )
        F.append(
            Frame(
                f"an NA for {what} whose ICMPv6 header is in the second fragment",
                frag6(c, l2(lan["mac"], ALL_NODES_MAC), lan["ll"], ALL_NODES, na(target, lan["mac"]), 8, after=[IPv6ExtHdrDestOpt()]),
                [[("uplink", "malformed")], [("uplink", "fw-fragment")]],
            )
        )
    # The ND counterpart of an ARP sender claiming a local MAC: a link-layer address option.
    sn, snmac = solicited(c.node["ip6"])
    for tag in ("", "qinq"):
        F += [
            Frame(
                f"an NS for the node's LAN address with V's MAC as source link-layer address, tags [{tag}]",
                l2(lan["mac"], snmac, tag)
                / v6(c, lan["ip6"], sn, ICMPv6ND_NS(tgt=c.node["ip6"]) / ICMPv6NDOptSrcLLAddr(lladdr=V["mac"])),
                [("uplink", "local-spoof")],
            ),
            Frame(
                f"an NA for the LAN host's own address with the gateway's MAC as target link-layer address, tags [{tag}]",
                l2(lan["mac"], ALL_NODES_MAC, tag) / v6(c, lan["ll"], ALL_NODES, na(lan["ip6"], c.gw_mac), ext="dst"),
                [("uplink", "local-spoof")],
            ),
            Frame(
                f"an RS with V's MAC as source link-layer address, tags [{tag}]",
                l2(lan["mac"], "33:33:00:00:00:02", tag)
                / v6(c, lan["ll"], "ff02::2", ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr=V["mac"])),
                [("uplink", "local-spoof")],
            ),
        ]
    F.append(
        Frame(
            "an NA for the LAN host's own address as two fragments (ND is never fragmented)",
            frag6(c, l2(lan["mac"], ALL_NODES_MAC), lan["ll"], ALL_NODES, na(lan["ip6"], lan["mac"]) / Raw(b"\0" * 40), 32),
            [[("uplink", "malformed")], [("uplink", "fw-fragment")]],
        )
    )
    for tgt, what in (("fd81::77", "an unclaimed address of A"), ("fd82::77", "an unclaimed address of B")):
        for tag in ("", "qinq"):
            F.append(
                Frame(
                    f"an NA for {what}, tags [{tag}]",
                    l2(lan["mac"], ALL_NODES_MAC, tag) / v6(c, lan["ll"], ALL_NODES, na(tgt, lan["mac"]), ext="hbh"),
                    [("uplink", "subnet-spoof")],
                )
            )
    for tag in ("", "vid0", "qinq"):
        F += [
            Frame(
                f"V's MAC as source, tags [{tag}]",
                l2(V["mac"], BCAST, tag) / v4(c, lan["ip"], c.node["ip"], UDP(sport=4000, dport=4001) / marked("l1")),
                [("uplink", "local-spoof")],
            ),
            Frame(
                f"the gateway's MAC as source, tags [{tag}]",
                l2(c.gw_mac, ALL_NODES_MAC, tag) / v6(c, lan["ll"], ALL_NODES, UDP(sport=4000, dport=4001) / marked("l1")),
                [("uplink", "local-spoof")],
            ),
            Frame(
                f"V's address as IPv4 source, tags [{tag}]",
                l2(lan["mac"], c.gw_mac, tag) / v4(c, V["ip"], c.node["ip"], ICMP(type=8) / marked("l1")),
                [("uplink", "local-spoof")],
            ),
            Frame(
                f"the gateway's address as IPv6 source, tags [{tag}]",
                l2(lan["mac"], c.gw_mac, tag) / v6(c, c.A["gw6"], c.node["ip6"], ICMPv6EchoRequest(data=PAYLOAD)),
                [("uplink", "local-spoof")],
            ),
            Frame(
                f"the gateway's link-local as source, tags [{tag}]",
                l2(lan["mac"], ALL_NODES_MAC, tag) / v6(c, c.gw_ll, ALL_NODES, ICMPv6EchoRequest(data=PAYLOAD)),
                [("uplink", "local-spoof")],
            ),
            Frame(
                f"an ARP reply claiming the gateway, tags [{tag}]",
                l2(lan["mac"], BCAST, tag) / ARP(op=2, hwsrc=lan["mac"], psrc=c.A["gw4"], pdst=V["ip"]),
                [("uplink", "local-spoof")],
            ),
            Frame(
                f"an ARP request claiming V's address, tags [{tag}]",
                l2(lan["mac"], BCAST, tag) / ARP(op=1, hwsrc=lan["mac"], psrc=V["ip"], pdst=c.node["ip"]),
                [("uplink", "local-spoof")],
            ),
            Frame(
                f"an ARP with V's MAC as sender hardware address, tags [{tag}]",
                l2(lan["mac"], BCAST, tag) / ARP(op=1, hwsrc=V["mac"], psrc=lan["ip"], pdst=c.node["ip"]),
                [("uplink", "local-spoof")],
            ),
        ]
    return F


@batch
def l2_subnet(c, a):
    """L2: a LAN host using addresses of the networks' subnets that nobody claimed."""
    lan, V = c.lan, c.V
    gm = c.gw_mac
    F = []
    for ip, ip6, net, what in (("10.81.0.77", "fd81::77", c.A, "A"), ("10.82.0.77", "fd82::77", c.B, "B")):
        for tag in ("", "vid0", "qinq"):
            F += [
                Frame(
                    f"a gratuitous ARP for {ip} ({what}), tags [{tag}]",
                    l2(lan["mac"], BCAST, tag) / ARP(op=1, hwsrc=lan["mac"], psrc=ip, pdst=ip),
                    [("uplink", "subnet-spoof")],
                ),
                Frame(
                    f"an ARP request from {ip} for {what}'s gateway, tags [{tag}]",
                    l2(lan["mac"], BCAST, tag) / ARP(op=1, hwsrc=lan["mac"], psrc=ip, pdst=net["gw4"]),
                    [("uplink", "subnet-spoof")],
                ),
            ]
        sn, snmac = solicited(net["gw6"])
        F += [
            Frame(
                f"an ARP reply from {ip} to the node",
                l2(lan["mac"], gm) / ARP(op=2, hwsrc=lan["mac"], psrc=ip, hwdst=gm, pdst=c.node["ip"]),
                [("uplink", "subnet-spoof")],
            ),
            Frame(
                f"an echo request from {ip} to the node's LAN address",
                l2(lan["mac"], gm) / v4(c, ip, c.node["ip"], ICMP(type=8, id=3) / marked("l2")),
                [("uplink", "subnet-spoof")],
            ),
            Frame(
                f"an echo request from {ip} to {what}'s gateway",
                l2(lan["mac"], gm) / v4(c, ip, net["gw4"], ICMP(type=8, id=3) / marked("l2")),
                [("uplink", "subnet-spoof")],
            ),
            Frame(
                f"an NS from {ip6} for {what}'s gateway",
                l2(lan["mac"], snmac) / v6(c, ip6, sn, ICMPv6ND_NS(tgt=net["gw6"]) / ICMPv6NDOptSrcLLAddr(lladdr=lan["mac"])),
                [("uplink", "subnet-spoof")],
            ),
            Frame(
                f"an echo request from {ip6} to the node's LAN address",
                l2(lan["mac"], gm) / v6(c, ip6, c.node["ip6"], ICMPv6EchoRequest(data=PAYLOAD), hlim=64),
                [("uplink", "subnet-spoof")],
            ),
            Frame(
                f"an IPv6 echo from {ip6} behind hop-by-hop, QinQ-tagged",
                l2(lan["mac"], gm, "qinq") / v6(c, ip6, net["gw6"], ICMPv6EchoRequest(data=PAYLOAD), ext="hbh", hlim=64),
                [("uplink", "subnet-spoof")],
            ),
        ]
    F += [
        Frame(
            "a TCP SYN from 10.81.0.77 to V:9090 (allowed from A's subnet), routed",
            l2(lan["mac"], gm) / v4(c, "10.81.0.77", V["ip"], TCP(sport=42000, dport=9090, flags="S")),
            [("uplink", "subnet-spoof")],
        ),
        Frame(
            "a TCP SYN from fd81::77 to V:9090 (allowed from A's subnet), routed",
            l2(lan["mac"], gm) / v6(c, "fd81::77", V["ip6"], TCP(sport=42000, dport=9090, flags="S"), hlim=64),
            [("uplink", "subnet-spoof")],
        ),
        Frame(
            "a TCP SYN from ::ffff:10.81.0.77 (A's subnet, IPv4-mapped) to V:9090, routed",
            l2(lan["mac"], gm) / v6(c, "::ffff:10.81.0.77", V["ip6"], TCP(sport=42001, dport=9090, flags="S"), hlim=64),
            [("uplink", "subnet-spoof")],
        ),
        Frame(
            "a UDP datagram from 10.81.0.77 to V, as two fragments",
            frag4(c, l2(lan["mac"], gm), "10.81.0.77", V["ip"], 17, UDP(sport=42000, dport=9090) / Raw(PAYLOAD * 4), 16),
            [[("uplink", "subnet-spoof")], [("uplink", "subnet-spoof")]],
        ),
    ]
    return F


@batch
def l3_lan(c, a):
    """L3: router advertisements, redirects, ND and DHCP server messages from the LAN, to A and B."""
    lan, V, C, O = c.lan, c.V, c.C, c.O
    gm = c.gw_mac
    F = []
    for ext in ("", "hbh", "dst", "atomic"):
        F.append(
            Frame(
                f"an RA to all nodes behind [{ext or 'nothing'}]",
                l2(lan["mac"], ALL_NODES_MAC) / v6(c, lan["ll"], ALL_NODES, ra(c, lan["mac"]), ext=ext),
                [("V", "lan-direct"), ("C", "lan-direct")],
            )
        )
    for tag in ("vid0", "dot1q", "qinq"):
        F.append(
            Frame(
                f"an RA to all nodes, tags [{tag}]",
                l2(lan["mac"], ALL_NODES_MAC, tag) / v6(c, lan["ll"], ALL_NODES, ra(c, lan["mac"])),
                [("V", "vlan-tagged"), ("C", "vlan-tagged")],
            )
        )
    F += [
        Frame(
            "an RA to V's MAC and link-local",
            l2(lan["mac"], V["mac"]) / v6(c, lan["ll"], V["ll"], ra(c, lan["mac"])),
            [("V", "lan-direct")],
        ),
        Frame(
            "an RA to C's MAC and global address",
            l2(lan["mac"], C["mac"]) / v6(c, lan["ll"], C["ip6"], ra(c, lan["mac"])),
            [("C", "lan-direct")],
        ),
        Frame(
            "an RA routed to V's global address",
            l2(lan["mac"], gm) / v6(c, lan["ip6"], V["ip6"], ra(c, lan["mac"])),
            [("V", "nd-outside")],
        ),
        Frame(
            "an RA routed to V's global address behind hop-by-hop, priority-tagged",
            l2(lan["mac"], gm, "vid0") / v6(c, lan["ip6"], V["ip6"], ra(c, lan["mac"]), ext="hbh"),
            [("V", "nd-outside")],
        ),
        Frame(
            "an RA routed to O's global address (network B, default allow)",
            l2(lan["mac"], gm) / v6(c, lan["ip6"], O["ip6"], ra(c, lan["mac"])),
            [("O", "nd-outside")],
        ),
        Frame(
            "an RA routed to O whose ICMPv6 header is in the second fragment",
            frag6(c, l2(lan["mac"], gm), lan["ip6"], O["ip6"], ra(c, lan["mac"]), 8, after=[IPv6ExtHdrDestOpt()]),
            # The uplink judges the first fragment (no upper-layer header in it) before any routing.
            [[("uplink", "malformed")], [("uplink", "fw-fragment")]],
        ),
        Frame(
            "an NS routed to V",
            l2(lan["mac"], gm) / v6(c, lan["ip6"], V["ip6"], ICMPv6ND_NS(tgt=V["ip6"]) / ICMPv6NDOptSrcLLAddr(lladdr=lan["mac"])),
            [("V", "nd-outside")],
        ),
        Frame(
            "an NA routed to O claiming B's gateway",
            l2(lan["mac"], gm) / v6(c, lan["ip6"], O["ip6"], na(c.B["gw6"], lan["mac"])),
            [("uplink", "local-spoof")],
        ),
        Frame(
            "an NA routed to O about the LAN host",
            l2(lan["mac"], gm) / v6(c, lan["ip6"], O["ip6"], na(lan["ip6"], lan["mac"])),
            [("O", "nd-outside")],
        ),
        Frame(
            "an NS bridged to V's MAC",
            l2(lan["mac"], V["mac"]) / v6(c, lan["ll"], V["ll"], ICMPv6ND_NS(tgt=V["ll"]) / ICMPv6NDOptSrcLLAddr(lladdr=lan["mac"])),
            [("V", "lan-direct")],
        ),
        Frame(
            "an ICMPv6 redirect routed to V",
            l2(lan["mac"], gm)
            / v6(c, lan["ip6"], V["ip6"], ICMPv6ND_Redirect(tgt=lan["ll"], dst=c.lan["ip6"]) / ICMPv6NDOptDstLLAddr(lladdr=lan["mac"])),
            [("V", "redirect")],
        ),
        Frame(
            "an ICMP router advertisement (RFC 1256) routed to O",
            l2(lan["mac"], gm) / v4(c, lan["ip"], O["ip"], irdp(lan["ip"])),
            [("O", "nd-outside")],
        ),
        Frame(
            "an ICMP redirect routed to O",
            l2(lan["mac"], gm)
            / v4(c, lan["ip"], O["ip"], ICMP(type=5, code=1, gw=lan["ip"]) / IPerror(src=O["ip"], dst=lan["ip"], proto=17) / UDP(sport=53, dport=53)),
            [("O", "redirect")],
        ),
    ]
    # DHCPv4 server messages: broadcast, unicast at L2, routed; from port 67 and from another.
    for msg in ("offer", "ack"):
        body = rogue_offer(c, msg, C["mac"], "10.81.0.200", lan["ip"])
        F += [
            Frame(
                f"a DHCP {msg.upper()} broadcast",
                l2(lan["mac"], BCAST) / v4(c, lan["ip"], "255.255.255.255", UDP(sport=67, dport=68) / body),
                [("V", "lan-direct"), ("C", "lan-direct")],
            ),
            Frame(
                f"a DHCP {msg.upper()} broadcast, priority-tagged",
                l2(lan["mac"], BCAST, "vid0") / v4(c, lan["ip"], "255.255.255.255", UDP(sport=67, dport=68) / body),
                [("V", "vlan-tagged"), ("C", "vlan-tagged")],
            ),
            Frame(
                f"a DHCP {msg.upper()} to C's MAC",
                l2(lan["mac"], C["mac"]) / v4(c, lan["ip"], C["ip"], UDP(sport=67, dport=68) / body),
                [("C", "lan-direct")],
            ),
            Frame(
                f"a DHCP {msg.upper()} routed to C",
                l2(lan["mac"], gm) / v4(c, lan["ip"], C["ip"], UDP(sport=67, dport=68) / body),
                [("C", "rogue-dhcp")],
            ),
            Frame(
                f"a DHCP {msg.upper()} routed to V",
                l2(lan["mac"], gm) / v4(c, lan["ip"], V["ip"], UDP(sport=67, dport=68) / body),
                [("V", "rogue-dhcp")],
            ),
            Frame(
                f"a DHCP {msg.upper()} routed to A's broadcast address",
                l2(lan["mac"], gm) / v4(c, lan["ip"], c.A["bcast"], UDP(sport=67, dport=68) / body),
                [],
            ),
            Frame(
                f"a DHCP {msg.upper()} from port 1067 routed to V",
                l2(lan["mac"], gm) / v4(c, lan["ip"], V["ip"], UDP(sport=1067, dport=68) / body),
                [("V", "rogue-dhcp")],
            ),
            Frame(
                f"a DHCP {msg.upper()} from port 1067 routed to O (network B, default allow)",
                l2(lan["mac"], gm) / v4(c, lan["ip"], O["ip"], UDP(sport=1067, dport=68) / rogue_offer(c, msg, O["mac"], "10.82.0.200", lan["ip"])),
                [("O", "rogue-dhcp")],
            ),
        ]
    for kind in ("advertise", "reply"):
        body = dhcp6_server(kind, C["mac"], lan["mac"])
        F += [
            Frame(
                f"a DHCPv6 {kind.upper()} to all DHCP agents",
                l2(lan["mac"], DHCP6_MCAST_MAC) / v6(c, lan["ll"], DHCP6_MCAST, UDP(sport=547, dport=546) / body),
                [("V", "lan-direct"), ("C", "lan-direct")],
            ),
            Frame(
                f"a DHCPv6 {kind.upper()} to all DHCP agents behind destination options",
                l2(lan["mac"], DHCP6_MCAST_MAC) / v6(c, lan["ll"], DHCP6_MCAST, UDP(sport=547, dport=546) / body, ext="dst"),
                [("V", "lan-direct"), ("C", "lan-direct")],
            ),
            Frame(
                f"a DHCPv6 {kind.upper()} to V's MAC and link-local",
                l2(lan["mac"], V["mac"]) / v6(c, lan["ll"], V["ll"], UDP(sport=547, dport=546) / body),
                [("V", "lan-direct")],
            ),
            Frame(
                f"a DHCPv6 {kind.upper()} routed to V",
                l2(lan["mac"], gm) / v6(c, lan["ip6"], V["ip6"], UDP(sport=547, dport=546) / body),
                [("V", "rogue-dhcp6")],
            ),
            Frame(
                f"a DHCPv6 {kind.upper()} from port 5470 routed to O (network B, default allow)",
                l2(lan["mac"], gm) / v6(c, lan["ip6"], O["ip6"], UDP(sport=5470, dport=546) / dhcp6_server(kind, O["mac"], lan["mac"])),
                [("O", "rogue-dhcp6")],
            ),
        ]
    return F


@batch
def l4_tags(c, a):
    """L4: the global firewall judges SYNs from the LAN the same whatever their tags."""
    lan, node = c.lan, c.node
    gm = c.gw_mac
    F = []
    for port, denied in ((a["denied"], True), (a["allowed"], False)):
        for tag in ("", "vid0", "dot1q", "qinq", "qinq0"):
            for fam in (4, 6):
                syn = TCP(sport=43000 + len(F), dport=port, flags="S", seq=1000)
                if fam == 4:
                    frame = l2(lan["mac"], gm, tag) / v4(c, lan["ip"], node["ip"], syn)
                else:
                    frame = l2(lan["mac"], gm, tag) / v6(c, lan["ip6"], node["ip6"], syn, hlim=64)
                F.append(
                    Frame(
                        f"IPv{fam} SYN to port {port} ({'denied' if denied else 'allowed'}), tags [{tag}]",
                        frame,
                        [("uplink", "fw-rule")] if denied else [],
                        maybe=[] if denied else ["BR"],
                    )
                )
        F.append(
            Frame(
                f"IPv4 SYN to port {port} with three tags",
                l2(lan["mac"], gm, "three") / v4(c, lan["ip"], node["ip"], TCP(sport=43100, dport=port, flags="S")),
                [("uplink", "vlan-tagged")],
            )
        )
        F.append(
            Frame(
                f"IPv6 SYN to port {port} behind seven extension headers",
                l2(lan["mac"], gm) / v6(c, lan["ip6"], node["ip6"], TCP(sport=43101, dport=port, flags="S"), ext="seven", hlim=64),
                [("uplink", "ip6-ext-chain")],
            )
        )
    d = a["denied"]
    F += [
        Frame(
            f"IPv6 SYN to port {d} behind hop-by-hop, routing and destination options, QinQ-tagged",
            l2(lan["mac"], gm, "qinq") / v6(c, lan["ip6"], node["ip6"], TCP(sport=43102, dport=d, flags="S"), ext="hbh+rh+dst", hlim=64),
            [("uplink", "fw-rule")],
        ),
        Frame(
            f"IPv6 SYN to port {d} in an atomic fragment, priority-tagged",
            l2(lan["mac"], gm, "vid0") / v6(c, lan["ip6"], node["ip6"], TCP(sport=43103, dport=d, flags="S"), ext="atomic", hlim=64),
            [("uplink", "fw-rule")],
        ),
        Frame(
            f"IPv4 SYN to port {d} as two fragments",
            frag4(c, l2(lan["mac"], gm), lan["ip"], node["ip"], 6, TCP(sport=43104, dport=d, flags="S") / Raw(PAYLOAD * 2), 24),
            [[("uplink", "fw-rule")], [("uplink", "fw-fragment")]],
        ),
        Frame(
            f"IPv6 SYN to port {d} as two fragments, 802.1Q-tagged",
            frag6(c, l2(lan["mac"], gm, "dot1q"), lan["ip6"], node["ip6"], TCP(sport=43105, dport=d, flags="S") / Raw(PAYLOAD * 2), 24, hlim=64),
            [[("uplink", "fw-rule")], [("uplink", "fw-fragment")]],
        ),
    ]
    return F


@batch
def l5_dhcp(c, a):
    """L5: DHCP and DHCPv6 requests from the LAN, naming a claimed profile's MAC."""
    lan, V = c.lan, c.V
    gm = c.gw_mac
    F = []
    disc = UDP(sport=68, dport=67) / bootp(1, V["mac"], 0x4242, "discover")
    req = UDP(sport=68, dport=67) / bootp(1, V["mac"], 0x4243, "request", ciaddr=V["ip"])
    for tag in ("", "vid0", "dot1q", "qinq", "qinq0"):
        F.append(
            Frame(
                f"a DISCOVER with V's MAC, broadcast, tags [{tag}]",
                l2(lan["mac"], BCAST, tag) / v4(c, "0.0.0.0", "255.255.255.255", disc),
                [("uplink", "dhcp-outside")],
            )
        )
    F += [
        Frame("a DISCOVER unicast to the node's LAN address", l2(lan["mac"], gm) / v4(c, lan["ip"], c.node["ip"], disc), [("uplink", "dhcp-outside")]),
        Frame("a REQUEST (renew) for V's lease to A's gateway", l2(lan["mac"], gm) / v4(c, lan["ip"], c.A["gw4"], req), [("uplink", "dhcp-outside")]),
        Frame(
            "a DISCOVER with IP options",
            l2(lan["mac"], BCAST) / IP(src="0.0.0.0", dst="255.255.255.255", id=c.m(), options=[b"\x01\x01\x01\x00"]) / disc,
            [("uplink", "dhcp-outside")],
        ),
        Frame(
            "a DISCOVER as two fragments",
            frag4(c, l2(lan["mac"], BCAST), lan["ip"], "255.255.255.255", 17, disc, 8),
            [[("uplink", "dhcp-outside")], [("uplink", "fw-fragment")]],
        ),
    ]
    sol = UDP(sport=546, dport=547) / solicit(V["mac"])
    for ext in ("", "hbh", "dst", "hbh+dst", "rh", "hbh+rh+dst", "atomic", "dst+atomic"):
        F.append(
            Frame(
                f"a SOLICIT (V's DUID) to all DHCP agents behind [{ext or 'nothing'}]",
                l2(lan["mac"], DHCP6_MCAST_MAC) / v6(c, lan["ll"], DHCP6_MCAST, sol, ext=ext),
                [("uplink", "dhcp-outside")],
            )
        )
    for tag in ("vid0", "qinq"):
        F.append(
            Frame(
                f"a SOLICIT behind hop-by-hop, tags [{tag}]",
                l2(lan["mac"], DHCP6_MCAST_MAC, tag) / v6(c, lan["ll"], DHCP6_MCAST, sol, ext="hbh"),
                [("uplink", "dhcp-outside")],
            )
        )
    F += [
        Frame(
            "a SOLICIT unicast to the gateway's link-local",
            l2(lan["mac"], gm) / v6(c, lan["ll"], c.gw_ll, sol),
            [("uplink", "dhcp-outside")],
        ),
        Frame(
            "a SOLICIT as two fragments",
            frag6(c, l2(lan["mac"], DHCP6_MCAST_MAC), lan["ll"], DHCP6_MCAST, sol, 16, before=[IPv6ExtHdrHopByHop()]),
            [[("uplink", "dhcp-outside")], [("uplink", "fw-fragment")]],
        ),
        Frame(
            "a SOLICIT whose UDP header is in the second fragment",
            frag6(c, l2(lan["mac"], DHCP6_MCAST_MAC), lan["ll"], DHCP6_MCAST, sol, 8, after=[IPv6ExtHdrDestOpt()]),
            [[("uplink", "malformed")], [("uplink", "fw-fragment")]],
        ),
    ]
    return F


@batch
def x_extended(c, a):
    """L3 on a network extended onto the LAN: L2 passes, server and router messages do not."""
    lan, E = c.lan, c.E
    X = c.X
    gm = c.gw_mac
    sn, snmac = solicited(E["ip6"])
    body = rogue_offer(c, "offer", E["mac"], "10.83.0.201", lan["xip"])
    ack = rogue_offer(c, "ack", E["mac"], "10.83.0.201", lan["xip"])
    return [
        Frame(
            "control: an ARP request for E from the LAN's address in X",
            l2(lan["mac"], BCAST) / ARP(op=1, hwsrc=lan["mac"], psrc=lan["xip"], pdst=E["ip"]),
            [],
            deliver=["E"],
        ),
        Frame(
            "control: an NS for E from the LAN's address in X",
            l2(lan["mac"], snmac) / v6(c, lan["xip6"], sn, ICMPv6ND_NS(tgt=E["ip6"]) / ICMPv6NDOptSrcLLAddr(lladdr=lan["mac"])),
            [],
            deliver=["E"],
        ),
        Frame(
            "control: UDP from the LAN's address in X to E",
            l2(lan["mac"], E["mac"]) / v4(c, lan["xip"], E["ip"], UDP(sport=4000, dport=4001) / marked("x")),
            [],
            deliver=["E"],
        ),
        Frame(
            "an RA to all nodes",
            l2(lan["mac"], ALL_NODES_MAC) / v6(c, lan["ll"], ALL_NODES, ra(c, lan["mac"])),
            [("E", "nd-outside")],
        ),
        Frame(
            "an RA to E's MAC and link-local behind hop-by-hop",
            l2(lan["mac"], E["mac"]) / v6(c, lan["ll"], E["ll"], ra(c, lan["mac"]), ext="hbh"),
            [("E", "nd-outside")],
        ),
        Frame(
            "an NS routed to E's global address",
            l2(lan["mac"], gm) / v6(c, lan["ip6"], E["ip6"], ICMPv6ND_NS(tgt=E["ip6"]) / ICMPv6NDOptSrcLLAddr(lladdr=lan["mac"])),
            [("E", "nd-outside")],
        ),
        Frame(
            "an ICMPv6 redirect to E's link-local",
            l2(lan["mac"], E["mac"])
            / v6(c, lan["ll"], E["ll"], ICMPv6ND_Redirect(tgt=lan["ll"], dst=lan["ip6"]) / ICMPv6NDOptDstLLAddr(lladdr=lan["mac"])),
            [("E", "redirect")],
        ),
        Frame(
            "an ICMP redirect to E",
            l2(lan["mac"], E["mac"])
            / v4(c, lan["xip"], E["ip"], ICMP(type=5, code=1, gw=lan["xip"]) / IPerror(src=E["ip"], dst=lan["ip"], proto=17) / UDP(sport=53, dport=53)),
            [("E", "redirect")],
        ),
        Frame(
            "an ICMP router advertisement (RFC 1256) to E",
            l2(lan["mac"], E["mac"]) / v4(c, lan["xip"], E["ip"], irdp(lan["xip"])),
            [("E", "nd-outside")],
        ),
        Frame(
            "a DHCP OFFER broadcast from the LAN's address in X",
            l2(lan["mac"], BCAST) / v4(c, lan["xip"], "255.255.255.255", UDP(sport=67, dport=68) / body),
            [("E", "rogue-dhcp")],
        ),
        Frame(
            "a DHCP ACK to E's MAC and address",
            l2(lan["mac"], E["mac"]) / v4(c, lan["xip"], E["ip"], UDP(sport=67, dport=68) / ack),
            [("E", "rogue-dhcp")],
        ),
        Frame(
            "a DHCP ACK from port 1067 to E",
            l2(lan["mac"], E["mac"]) / v4(c, lan["xip"], E["ip"], UDP(sport=1067, dport=68) / ack),
            [("E", "rogue-dhcp")],
        ),
        Frame(
            "a DHCP ACK broadcast to X's broadcast address",
            l2(lan["mac"], BCAST) / v4(c, lan["xip"], X["bcast"], UDP(sport=67, dport=68) / ack),
            [("E", "rogue-dhcp")],
        ),
        Frame(
            "a DHCPv6 ADVERTISE to all DHCP agents",
            l2(lan["mac"], DHCP6_MCAST_MAC) / v6(c, lan["ll"], DHCP6_MCAST, UDP(sport=547, dport=546) / dhcp6_server("advertise", E["mac"], lan["mac"])),
            [("E", "rogue-dhcp6")],
        ),
        Frame(
            "a DHCPv6 REPLY to E's link-local",
            l2(lan["mac"], E["mac"]) / v6(c, lan["ll"], E["ll"], UDP(sport=547, dport=546) / dhcp6_server("reply", E["mac"], lan["mac"])),
            [("E", "rogue-dhcp6")],
        ),
        Frame(
            "a DHCPv6 REPLY from port 5470 to E's link-local",
            l2(lan["mac"], E["mac"]) / v6(c, lan["ll"], E["ll"], UDP(sport=5470, dport=546) / dhcp6_server("reply", E["mac"], lan["mac"])),
            [("E", "rogue-dhcp6")],
        ),
        Frame(
            "an NA from the LAN claiming E's address",
            l2(lan["mac"], ALL_NODES_MAC) / v6(c, lan["ll"], ALL_NODES, na(E["ip6"], lan["mac"])),
            [("uplink", "local-spoof")],
        ),
    ]


# ---- signatures ----------------------------------------------------------------------------


def addr_hex(fam, a):
    return socket.inet_pton(fam, a).hex()


def sig(pkt):
    """What a capture recognises the frame by: its first L3 header's marker and addresses."""
    p = pkt
    while p is not None and not isinstance(p, (IP, IPv6, ARP)) and p.payload is not None and len(p.payload) > 0:
        p = p.payload
    if isinstance(p, IPv6):
        return {"k": "ip6", "src": addr_hex(socket.AF_INET6, p.src), "dst": addr_hex(socket.AF_INET6, p.dst), "m": p.fl}
    if isinstance(p, IP):
        return {"k": "ip4", "src": addr_hex(socket.AF_INET, p.src), "dst": addr_hex(socket.AF_INET, p.dst), "m": p.id}
    if isinstance(p, ARP):
        return {
            "k": "arp",
            "op": int(p.op),
            "sha": p.hwsrc.lower(),
            "spa": addr_hex(socket.AF_INET, p.psrc),
            "tpa": addr_hex(socket.AF_INET, p.pdst),
        }
    return None


# ---- the server ----------------------------------------------------------------------------


class Server:
    def __init__(self, base):
        self.c = Ctx(base)
        self.socks = {}
        self.held = []
        self.accepted = []
        self.lock = threading.Lock()

    def sock(self, iface):
        if iface not in self.socks:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            s.bind((iface, 0))
            self.socks[iface] = s
        return self.socks[iface]

    def op_topo(self, r):
        self.c.topo = r["topo"]
        return {}

    def op_send(self, r):
        frames = BATCHES[r["batch"]](self.c, r.get("args", {}))
        s = self.sock(r["iface"])
        n = r.get("count", 1)
        out = []
        for f in frames:
            raws = [bytes(p) for p in f.pkts]
            for raw in raws:
                for _ in range(n):
                    s.send(raw)
            drops = f.drops
            if drops and isinstance(drops[0], list):
                per = drops  # one list per packet
            else:
                per = [list(drops)] * len(raws)
            out.append(
                {
                    "name": f.name,
                    "n": n,
                    "pkts": [{"sig": sig(p), "len": len(raw), "drops": d} for p, raw, d in zip(f.pkts, raws, per)],
                    "inner": sig(f.inner) if f.inner is not None else None,
                    "deliver": f.deliver,
                    "maybe": f.maybe,
                }
            )
        return {"frames": out}

    def op_listen(self, r):
        fam = socket.AF_INET6 if ":" in r["host"] else socket.AF_INET
        for port in r["ports"]:
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((r["host"], port))
            s.listen(64)
            threading.Thread(target=self.accept_loop, args=(s, port), daemon=True).start()
        return {}

    def accept_loop(self, s, port):
        while True:
            conn, peer = s.accept()
            with self.lock:
                self.accepted.append({"peer": peer[0], "port": port})
            conn.close()

    def op_accepted(self, r):
        with self.lock:
            return {"accepted": list(self.accepted)}

    def op_connect(self, r):
        fam = socket.AF_INET6 if ":" in r["host"] else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(r.get("timeout", 2))
        if r.get("sport"):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", r["sport"]))
        try:
            s.connect((r["host"], r["port"]))
        except OSError as e:
            s.close()
            return {"connected": False, "error": str(e)}
        local = s.getsockname()
        if r.get("hold"):
            self.held.append(s)
        else:
            s.close()
        return {"connected": True, "local": [local[0], local[1]]}

    def op_close(self, r):
        for s in self.held:
            s.close()
        self.held = []
        return {}

    def serve(self):
        print(json.dumps({"ok": True, "ready": True}), flush=True)
        for line in sys.stdin:
            if not line.strip():
                continue
            r = json.loads(line)
            try:
                res = getattr(self, "op_" + r["op"])(r)
                res["ok"] = True
            except Exception as e:  # reported to the test, which fails with it
                res = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            print(json.dumps(res), flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "serve":
        sys.exit("usage: hostile.py serve [MARKER_BASE]")
    Server(int(sys.argv[2]) if len(sys.argv) > 2 else 0x1000).serve()
