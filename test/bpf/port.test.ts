/** Port security, network isolation and the uplink filter under BPF_PROG_TEST_RUN: one
 * table of frames, each with the verdict it must get, the drop counter of the expected
 * reason moving by exactly 1 (and no other counter moving), and the frame's bytes
 * unchanged. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { dropReasonCode } from "../../src/datapath/drops";
import { loadObject } from "../../src/datapath/objects";
import {
  decodePort,
  encodeDropKey,
  encodeIface,
  encodeIfindex,
  encodeLocal,
  encodeLocalKey,
  encodePort,
  encodeSubnet,
  encodeSubnetKey,
  type PortConfig,
} from "../../src/datapath/port-maps";
import { linkLocal, profileIp6, profileMac } from "../../src/model/network";
import { ipToBytes } from "../../src/netlink/codec";
import type { BpfMap, BpfObject } from "../../src/sys/bpf";
import { alloc, SK_BUFF } from "../../src/sys/layout";
import { runFixture } from "../helpers/fixture";
import {
  arp,
  bootp,
  dhcp6,
  eth4,
  ethArp,
  ethernet,
  fragHeader,
  hbhRouterAlert,
  IPPROTO,
  icmp,
  icmp6,
  ipv4,
  ipv6,
  lla,
  ndBody,
  optsHeader,
  patch,
  raw6,
  tcp,
  tcp4,
  tcp6,
  udp,
  udp4,
  udp6,
  udp6Behind,
  vlanTag,
} from "../helpers/frames";

/** An IGMP message of `type` (0x11 query, 0x22 v3 report): 8 bytes, group 0. */
function igmp(type: number): Buffer {
  const b = Buffer.alloc(8);
  b[0] = type;
  b[1] = type === 0x11 ? 100 : 0;
  return b;
}

/** The start of a datagram an ICMP error quotes: its IPv4 header and 8 bytes of UDP. */
function quoted4(src: string, dst: string): Buffer {
  return ipv4({ src, dst, proto: IPPROTO.UDP }, udp({ src, dst, sport: 4000, dport: 53 }, new Uint8Array(0))).subarray(
    0,
    28,
  );
}

/** The start of a packet an ICMPv6 error quotes: its IPv6 header and the UDP header. */
function quoted6(src: string, dst: string): Buffer {
  return ipv6({ src, dst, next: IPPROTO.UDP }, udp({ src, dst, sport: 4000, dport: 53 }, new Uint8Array(0)));
}

/** An ICMP message of `type` (code 1) from the gateway to the port, as the host sends it;
 * `options`: with a 4-byte IPv4 option, IHL 6. */
function hostIcmp(type: number, options = false): Buffer {
  const pkt = ipv4(
    { src: GW, dst: ME.ip, proto: IPPROTO.ICMP },
    icmp({ src: GW, dst: ME.ip, type, code: 1 }, new Uint8Array(28)),
  );
  return eth4("02:00:00:00:00:fe", ME.mac, options ? withIpOptions(pkt) : pkt);
}

/** The same IPv4 packet with a 4-byte option (NOPs) in its header: IHL 6. */
function withIpOptions(pkt: Buffer): Buffer {
  const h = Buffer.concat([pkt.subarray(0, 20), Buffer.from([1, 1, 1, 1]), pkt.subarray(20)]);
  h.writeUInt8(0x46, 0);
  h.writeUInt16BE(h.length, 2);
  h.writeUInt16BE(0, 10);
  let sum = 0;
  for (let i = 0; i < 24; i += 2) sum += h.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  h.writeUInt16BE(~sum & 0xffff, 10);
  return h;
}

const TC_NEXT = -1;
const TC_DROP = 2;
const XDP_DROP = 1;
const XDP_PASS = 2;

const PORT = 1; // lo: a test run's device must exist in the caller's namespace
const SAME_NET_PEER = 901;
const OTHER_NET_PEER = 902;
/** A NIC outside the bridge: frames routed in from it. */
const ROUTED = 903;
/** The uplink (in stm_ifaces): frames bridged from it come straight from the LAN. */
const UPLINK = 904;
/** The user bridge: frames the node routed in from a bridge port. */
const BRIDGE = 905;
const LAN_MAC = "02:77:00:00:00:01";
/** The node's bridge (its gateways' MAC). */
const BRIDGE_MAC = "02:00:00:00:00:fe";

// Network A (id 1): the port under test and a peer. Network B (id 2): another tenant.
const ME = {
  mac: profileMac(1, 4),
  ip: "10.20.0.5",
  ip6: profileIp6("fd20::/64", profileMac(1, 4)),
  ll: linkLocal(profileMac(1, 4)),
};
const PEER = {
  mac: profileMac(1, 5),
  ip: "10.20.0.6",
  ip6: profileIp6("fd20::/64", profileMac(1, 5)),
  ll: linkLocal(profileMac(1, 5)),
};
const OTHER = { mac: profileMac(2, 1), ip: "10.30.0.2", ip6: profileIp6("fd30::/64", profileMac(2, 1)) };
const GW = "10.20.0.1";
const GW6 = "fd20::1";
const ATTACKER = "02:66:66:66:66:66";

const netA = (p: { ip: string; mac: string }): PortConfig => ({
  netId: 1,
  ip4: p.ip,
  mac: p.mac,
  cidr4: "10.20.0.0/24",
  gw4: GW,
  ip6: profileIp6("fd20::/64", p.mac),
  cidr6: "fd20::/64",
});

/** The port programs, the uplink's XDP ingress and its tc egress. */
type Prog = "in" | "out" | "xdp" | "upout";
interface Case {
  name: string;
  frame: Buffer;
  /** Drop reason expected; none: the frame passes. */
  drop?: string;
  prog?: Prog;
  /** Egress: the device the frame entered the host on. */
  from?: number;
}

const DHCP_BCAST = { mac: ME.mac, src: "0.0.0.0", dst: "255.255.255.255", sport: 68, dport: 67 };

const ingress: Case[] = [
  // ---- legitimate IPv4 ----
  {
    name: "IPv4 UDP to a peer",
    frame: udp4({ mac: ME.mac, dstMac: PEER.mac, src: ME.ip, dst: PEER.ip, sport: 5000, dport: 53 }),
  },
  { name: "IPv4 TCP SYN", frame: tcp4({ mac: ME.mac, src: ME.ip, dst: PEER.ip }) },
  { name: "IPv4 TCP to the outside world", frame: tcp4({ mac: ME.mac, src: ME.ip, dst: "192.0.2.10", dport: 443 }) },
  {
    name: "IPv4 ICMP echo to the gateway",
    frame: eth4(
      ME.mac,
      "02:00:00:00:00:fe",
      ipv4({ src: ME.ip, dst: GW, proto: IPPROTO.ICMP }, icmp({ src: ME.ip, dst: GW, type: 8 }, new Uint8Array(56))),
    ),
  },
  {
    name: "IPv4 broadcast from the port's address",
    frame: udp4({ mac: ME.mac, src: ME.ip, dst: "10.20.0.255", sport: 137, dport: 137 }),
  },
  {
    name: "DHCPDISCOVER from 0.0.0.0 to broadcast",
    frame: udp4({ ...DHCP_BCAST, payload: bootp(1, { chaddr: ME.mac }) }),
  },
  {
    name: "DHCPREQUEST from 0.0.0.0 to the gateway",
    frame: udp4({ ...DHCP_BCAST, dst: GW, payload: bootp(1, { chaddr: ME.mac }) }),
  },
  {
    name: "DHCP renew from the profile address",
    frame: udp4({ mac: ME.mac, src: ME.ip, dst: GW, sport: 68, dport: 67, payload: bootp(1, { chaddr: ME.mac }) }),
  },
  {
    name: "IPv4 first fragment holding its UDP header",
    frame: eth4(
      ME.mac,
      PEER.mac,
      ipv4(
        { src: ME.ip, dst: PEER.ip, proto: IPPROTO.UDP, id: 7, moreFragments: true },
        udp({ src: ME.ip, dst: PEER.ip, sport: 1, dport: 2 }, new Uint8Array(1472)),
      ),
    ),
  },
  {
    name: "IPv4 non-first fragment (no L4 header)",
    frame: eth4(
      ME.mac,
      PEER.mac,
      ipv4({ src: ME.ip, dst: PEER.ip, proto: IPPROTO.UDP, id: 7, fragOffset: 1480 }, new Uint8Array(100)),
    ),
  },
  {
    name: "IPv4 non-first fragment of 4 bytes",
    frame: eth4(
      ME.mac,
      PEER.mac,
      ipv4({ src: ME.ip, dst: PEER.ip, proto: IPPROTO.TCP, id: 8, fragOffset: 8 }, new Uint8Array(4)),
    ),
  },
  {
    name: "IPv4 with options (IHL 6)",
    frame: (() => {
      const seg = tcp({ src: ME.ip, dst: PEER.ip, sport: 1, dport: 2, flags: 2 });
      const base = ipv4({ src: ME.ip, dst: PEER.ip, proto: IPPROTO.TCP }, seg);
      const h = Buffer.concat([base.subarray(0, 20), Buffer.from([1, 1, 1, 0]), base.subarray(20)]);
      h[0] = 0x46;
      h.writeUInt16BE(h.length, 2);
      return eth4(ME.mac, PEER.mac, h);
    })(),
  },
  {
    name: "IPv4 GRE from the port's address",
    frame: eth4(ME.mac, PEER.mac, ipv4({ src: ME.ip, dst: PEER.ip, proto: 47 }, new Uint8Array(8))),
  },
  {
    name: "IPv4 frame with Ethernet padding",
    frame: Buffer.concat([tcp4({ mac: ME.mac, src: ME.ip, dst: PEER.ip }), Buffer.alloc(6)]),
  },
  // ---- legitimate ARP ----
  {
    name: "ARP request for a peer",
    frame: ethArp(
      ME.mac,
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "request", senderMac: ME.mac, senderIp: ME.ip, targetIp: PEER.ip }),
    ),
  },
  {
    name: "ARP request for the gateway",
    frame: ethArp(
      ME.mac,
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "request", senderMac: ME.mac, senderIp: ME.ip, targetIp: GW }),
    ),
  },
  {
    name: "ARP reply to a peer",
    frame: ethArp(
      ME.mac,
      PEER.mac,
      arp({ op: "reply", senderMac: ME.mac, senderIp: ME.ip, targetMac: PEER.mac, targetIp: PEER.ip }),
    ),
  },
  {
    name: "gratuitous ARP for its own address",
    frame: ethArp(
      ME.mac,
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "request", senderMac: ME.mac, senderIp: ME.ip, targetIp: ME.ip }),
    ),
  },
  {
    name: "ARP probe from 0.0.0.0 (RFC 5227)",
    frame: ethArp(
      ME.mac,
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "request", senderMac: ME.mac, senderIp: "0.0.0.0", targetIp: ME.ip }),
    ),
  },
  // ---- legitimate IPv6 ----
  {
    name: "IPv6 UDP from the profile address",
    frame: udp6({ mac: ME.mac, src: ME.ip6, dst: PEER.ip6, sport: 5000, dport: 53 }),
  },
  { name: "IPv6 TCP from the profile address", frame: tcp6({ mac: ME.mac, src: ME.ip6, dst: "2001:db8::1" }) },
  {
    name: "ICMPv6 echo from the link-local address",
    frame: icmp6({ mac: ME.mac, src: ME.ll, dst: PEER.ll, type: 128, body: new Uint8Array(8) }),
  },
  {
    // For a free address: one for a known endpoint is answered (test/bpf/overlay.test.ts).
    name: "NS with the port's source link-layer address",
    frame: icmp6({
      mac: ME.mac,
      src: ME.ll,
      dst: "ff02::1:ff00:9",
      type: 135,
      body: ndBody(profileIp6("fd20::/64", profileMac(1, 9)), lla(1, ME.mac)),
    }),
  },
  {
    name: "NA for the profile address with its MAC",
    frame: icmp6({ mac: ME.mac, src: ME.ip6, dst: PEER.ll, type: 136, body: ndBody(ME.ip6, lla(2, ME.mac)) }),
  },
  {
    name: "NA for the link-local address",
    frame: icmp6({ mac: ME.mac, src: ME.ll, dst: "ff02::1", type: 136, body: ndBody(ME.ll) }),
  },
  {
    name: "DAD NS from ::",
    frame: icmp6({ mac: ME.mac, src: "::", dst: "ff02::1:ff00:4", type: 135, body: ndBody(ME.ip6) }),
  },
  {
    name: "MLDv2 report from :: behind hop-by-hop",
    frame: icmp6({ mac: ME.mac, src: "::", dst: "ff02::16", type: 143, body: new Uint8Array(4), ext: hbhRouterAlert }),
  },
  {
    name: "router solicitation",
    frame: icmp6({ mac: ME.mac, src: ME.ll, dst: "ff02::2", type: 133, body: lla(1, ME.mac) }),
  },
  {
    name: "IPv6 UDP behind two option headers",
    frame: raw6({
      mac: ME.mac,
      src: ME.ip6,
      dst: PEER.ip6,
      next: 0,
      payload: Buffer.concat([
        optsHeader(60),
        optsHeader(IPPROTO.UDP),
        udp({ src: ME.ip6, dst: PEER.ip6, sport: 1, dport: 2 }, new Uint8Array(8)),
      ]),
    }),
  },
  {
    name: "IPv6 first fragment",
    frame: raw6({
      mac: ME.mac,
      src: ME.ip6,
      dst: PEER.ip6,
      next: 44,
      payload: Buffer.concat([
        fragHeader(IPPROTO.UDP, 0, true),
        udp({ src: ME.ip6, dst: PEER.ip6, sport: 1, dport: 2 }, new Uint8Array(1200)),
      ]),
    }),
  },
  {
    name: "IPv6 non-first fragment",
    frame: raw6({
      mac: ME.mac,
      src: ME.ip6,
      dst: PEER.ip6,
      next: 44,
      payload: Buffer.concat([fragHeader(IPPROTO.UDP, 1232, false), new Uint8Array(300)]),
    }),
  },
  {
    name: "DHCPv6 SOLICIT from the link-local address",
    frame: udp6({ mac: ME.mac, src: ME.ll, dst: "ff02::1:2", sport: 546, dport: 547, payload: dhcp6(1) }),
  },

  {
    name: "RS from :: (no address yet)",
    frame: icmp6({ mac: ME.mac, src: "::", dst: "ff02::2", type: 133, body: new Uint8Array(0) }),
  },
  {
    name: "MLD done from ::",
    frame: icmp6({ mac: ME.mac, src: "::", dst: "ff02::2", type: 132, body: new Uint8Array(16), ext: hbhRouterAlert }),
  },
  {
    name: "IGMPv3 report from 0.0.0.0",
    frame: eth4(ME.mac, "01:00:5e:00:00:16", ipv4({ src: "0.0.0.0", dst: "224.0.0.22", proto: 2 }, new Uint8Array(16))),
  },
  {
    name: "IGMPv3 report from the port's address",
    frame: eth4(ME.mac, "01:00:5e:00:00:16", ipv4({ src: ME.ip, dst: "224.0.0.22", proto: 2 }, igmp(0x22))),
  },
  // A querier is a router's job (a rogue one steers the bridge's snooping).
  {
    name: "IGMP membership query from the port's address",
    frame: eth4(ME.mac, "01:00:5e:00:00:01", ipv4({ src: ME.ip, dst: "224.0.0.1", proto: 2 }, igmp(0x11))),
    drop: "rogue-router",
  },
  {
    name: "IGMP membership query from 0.0.0.0",
    frame: eth4(ME.mac, "01:00:5e:00:00:01", ipv4({ src: "0.0.0.0", dst: "224.0.0.1", proto: 2 }, igmp(0x11))),
    drop: "rogue-router",
  },
  {
    name: "MLD query from the link-local address behind hop-by-hop",
    frame: icmp6({ mac: ME.mac, src: ME.ll, dst: "ff02::1", type: 130, body: new Uint8Array(20), ext: hbhRouterAlert }),
    drop: "rogue-router",
  },
  // ---- MAC spoofing ----
  {
    name: "IPv4 with another endpoint's MAC",
    frame: udp4({ mac: PEER.mac, src: ME.ip, dst: GW, sport: 1, dport: 2 }),
    drop: "mac-spoof",
  },
  { name: "IPv4 with a made-up MAC", frame: tcp4({ mac: ATTACKER, src: ME.ip, dst: PEER.ip }), drop: "mac-spoof" },
  {
    name: "ARP with another source MAC",
    frame: ethArp(
      PEER.mac,
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "request", senderMac: PEER.mac, senderIp: PEER.ip, targetIp: GW }),
    ),
    drop: "mac-spoof",
  },
  {
    name: "IPv6 with another source MAC",
    frame: udp6({ mac: ATTACKER, src: ME.ip6, dst: PEER.ip6, sport: 1, dport: 2 }),
    drop: "mac-spoof",
  },
  // ---- IPv4 source spoofing ----
  { name: "IPv4 from a peer's address", frame: tcp4({ mac: ME.mac, src: PEER.ip, dst: GW }), drop: "ip4-spoof" },
  {
    name: "IPv4 from an address outside the network",
    frame: udp4({ mac: ME.mac, src: "192.0.2.1", dst: PEER.ip, sport: 1, dport: 2 }),
    drop: "ip4-spoof",
  },
  {
    name: "IPv4 from the gateway's address",
    frame: udp4({ mac: ME.mac, src: GW, dst: PEER.ip, sport: 1, dport: 2 }),
    drop: "ip4-spoof",
  },
  { name: "TCP from 0.0.0.0", frame: tcp4({ mac: ME.mac, src: "0.0.0.0", dst: GW }), drop: "ip4-spoof" },
  {
    name: "0.0.0.0 to a DHCP server elsewhere",
    frame: udp4({ ...DHCP_BCAST, dst: "10.20.0.9", payload: bootp(1) }),
    drop: "ip4-spoof",
  },
  { name: "0.0.0.0 UDP from a port other than 68", frame: udp4({ ...DHCP_BCAST, sport: 1068 }), drop: "ip4-spoof" },
  {
    name: "spoofed non-first fragment",
    frame: eth4(
      ME.mac,
      PEER.mac,
      ipv4({ src: PEER.ip, dst: GW, proto: IPPROTO.UDP, id: 9, fragOffset: 8 }, new Uint8Array(40)),
    ),
    drop: "ip4-spoof",
  },
  // ---- ARP inspection ----
  {
    name: "ARP reply claiming a peer's address",
    frame: ethArp(
      ME.mac,
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "reply", senderMac: ME.mac, senderIp: PEER.ip, targetIp: PEER.ip }),
    ),
    drop: "arp-spoof",
  },
  {
    name: "ARP reply claiming the gateway",
    frame: ethArp(
      ME.mac,
      PEER.mac,
      arp({ op: "reply", senderMac: ME.mac, senderIp: GW, targetMac: PEER.mac, targetIp: PEER.ip }),
    ),
    drop: "arp-spoof",
  },
  {
    name: "ARP with a sender MAC that is not the port's",
    frame: ethArp(
      ME.mac,
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "request", senderMac: ATTACKER, senderIp: ME.ip, targetIp: GW }),
    ),
    drop: "arp-spoof",
  },
  {
    name: "gratuitous ARP for a peer's address",
    frame: ethArp(
      ME.mac,
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "request", senderMac: ME.mac, senderIp: PEER.ip, targetIp: PEER.ip }),
    ),
    drop: "arp-spoof",
  },
  {
    name: "ARP reply from 0.0.0.0",
    frame: ethArp(ME.mac, PEER.mac, arp({ op: "reply", senderMac: ME.mac, senderIp: "0.0.0.0", targetIp: PEER.ip })),
    drop: "arp-spoof",
  },
  {
    name: "ARP request for another network's address",
    frame: ethArp(
      ME.mac,
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "request", senderMac: ME.mac, senderIp: ME.ip, targetIp: OTHER.ip }),
    ),
    drop: "arp-target",
  },
  {
    name: "ARP request for another network's gateway",
    frame: ethArp(
      ME.mac,
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "request", senderMac: ME.mac, senderIp: ME.ip, targetIp: "10.30.0.1" }),
    ),
    drop: "arp-target",
  },
  {
    name: "ARP with protocol length 16",
    frame: patch(
      ethArp(ME.mac, "ff:ff:ff:ff:ff:ff", arp({ op: "request", senderMac: ME.mac, senderIp: ME.ip, targetIp: GW })),
      19,
      16,
    ),
    drop: "malformed",
  },
  {
    name: "ARP with opcode 3",
    frame: patch(
      ethArp(ME.mac, "ff:ff:ff:ff:ff:ff", arp({ op: "request", senderMac: ME.mac, senderIp: ME.ip, targetIp: GW })),
      20,
      3,
      2,
    ),
    drop: "malformed",
  },
  {
    name: "truncated ARP",
    frame: ethArp(
      ME.mac,
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "request", senderMac: ME.mac, senderIp: ME.ip, targetIp: GW }).subarray(0, 20),
    ),
    drop: "malformed",
  },
  // ---- IPv6 source spoofing ----
  {
    name: "IPv6 from a peer's address",
    frame: udp6({ mac: ME.mac, src: PEER.ip6, dst: GW6, sport: 1, dport: 2 }),
    drop: "ip6-spoof",
  },
  {
    name: "IPv6 from another link-local address",
    frame: icmp6({ mac: ME.mac, src: PEER.ll, dst: "ff02::1", type: 128, body: new Uint8Array(8) }),
    drop: "ip6-spoof",
  },
  {
    name: "IPv6 from another network's prefix",
    frame: tcp6({ mac: ME.mac, src: OTHER.ip6, dst: PEER.ip6 }),
    drop: "ip6-spoof",
  },
  {
    name: "UDP from ::",
    frame: udp6({ mac: ME.mac, src: "::", dst: "ff02::1:2", sport: 546, dport: 547, payload: dhcp6(1) }),
    drop: "ip6-spoof",
  },
  {
    name: "ICMPv6 echo from ::",
    frame: icmp6({ mac: ME.mac, src: "::", dst: PEER.ll, type: 128, body: new Uint8Array(8) }),
    drop: "ip6-spoof",
  },
  // ---- ND inspection ----
  {
    name: "NA for a peer's address",
    frame: icmp6({ mac: ME.mac, src: ME.ll, dst: "ff02::1", type: 136, body: ndBody(PEER.ip6, lla(2, ME.mac)) }),
    drop: "nd-spoof",
  },
  {
    name: "NA for the gateway",
    frame: icmp6({ mac: ME.mac, src: ME.ll, dst: "ff02::1", type: 136, body: ndBody(GW6, lla(2, ME.mac)) }),
    drop: "nd-spoof",
  },
  {
    name: "NA with another target link-layer address",
    frame: icmp6({ mac: ME.mac, src: ME.ip6, dst: "ff02::1", type: 136, body: ndBody(ME.ip6, lla(2, ATTACKER)) }),
    drop: "nd-spoof",
  },
  {
    name: "NS with another source link-layer address",
    frame: icmp6({
      mac: ME.mac,
      src: ME.ll,
      dst: "ff02::1:ff00:5",
      type: 135,
      body: ndBody(PEER.ip6, lla(1, PEER.mac)),
    }),
    drop: "nd-spoof",
  },
  {
    name: "NS whose second option lies",
    frame: icmp6({
      mac: ME.mac,
      src: ME.ll,
      dst: "ff02::1:ff00:5",
      type: 135,
      body: ndBody(PEER.ip6, Buffer.from([14, 1, 0, 0, 0, 0, 0, 0]), lla(1, ATTACKER)),
    }),
    drop: "nd-spoof",
  },
  {
    name: "NS with a zero-length option",
    frame: icmp6({
      mac: ME.mac,
      src: ME.ll,
      dst: "ff02::1:ff00:5",
      type: 135,
      body: ndBody(PEER.ip6, Buffer.from([1, 0, 0, 0, 0, 0, 0, 0])),
    }),
    drop: "malformed",
  },
  {
    name: "truncated NA",
    frame: icmp6({ mac: ME.mac, src: ME.ll, dst: "ff02::1", type: 136, body: new Uint8Array(8) }),
    drop: "malformed",
  },
  // ---- rogue routers and servers ----
  {
    name: "router advertisement",
    frame: icmp6({ mac: ME.mac, src: ME.ll, dst: "ff02::1", type: 134, body: new Uint8Array(8) }),
    drop: "rogue-router",
  },
  {
    name: "ICMPv6 redirect",
    frame: icmp6({ mac: ME.mac, src: ME.ll, dst: PEER.ll, type: 137, body: new Uint8Array(32) }),
    drop: "rogue-router",
  },
  {
    name: "ICMP redirect (IPv4)",
    frame: eth4(
      ME.mac,
      PEER.mac,
      ipv4(
        { src: ME.ip, dst: PEER.ip, proto: IPPROTO.ICMP },
        icmp({ src: ME.ip, dst: PEER.ip, type: 5, code: 1 }, new Uint8Array(28)),
      ),
    ),
    drop: "rogue-router",
  },
  // ICMP errors: a host reports what it received; about anything else it is a router.
  {
    name: "ICMP port unreachable about a datagram sent to the port: a host's error",
    frame: eth4(
      ME.mac,
      PEER.mac,
      ipv4(
        { src: ME.ip, dst: PEER.ip, proto: IPPROTO.ICMP },
        icmp({ src: ME.ip, dst: PEER.ip, type: 3, code: 3 }, quoted4(PEER.ip, ME.ip)),
      ),
    ),
  },
  {
    name: "ICMP fragmentation needed about a datagram to another host: a router's",
    frame: eth4(
      ME.mac,
      PEER.mac,
      ipv4(
        { src: ME.ip, dst: PEER.ip, proto: IPPROTO.ICMP },
        icmp({ src: ME.ip, dst: PEER.ip, type: 3, code: 4, seq: 1000 }, quoted4(PEER.ip, "192.0.2.9")),
      ),
    ),
    drop: "rogue-router",
  },
  {
    name: "ICMP time exceeded quoting a datagram to a broadcast address",
    frame: eth4(
      ME.mac,
      PEER.mac,
      ipv4(
        { src: ME.ip, dst: PEER.ip, proto: IPPROTO.ICMP },
        icmp({ src: ME.ip, dst: PEER.ip, type: 11 }, quoted4(PEER.ip, "10.20.0.255")),
      ),
    ),
    drop: "rogue-router",
  },
  {
    name: "ICMP destination unreachable without the quoted header",
    frame: eth4(
      ME.mac,
      PEER.mac,
      ipv4(
        { src: ME.ip, dst: PEER.ip, proto: IPPROTO.ICMP },
        icmp({ src: ME.ip, dst: PEER.ip, type: 3, code: 3 }, new Uint8Array(12)),
      ),
    ),
    drop: "malformed",
  },
  {
    name: "ICMPv6 port unreachable about a packet sent to the port's address",
    frame: icmp6({
      mac: ME.mac,
      dstMac: PEER.mac,
      src: ME.ip6,
      dst: PEER.ip6,
      type: 1,
      body: quoted6(PEER.ip6, ME.ip6),
    }),
  },
  {
    name: "ICMPv6 packet too big about a packet to its link-local address",
    frame: icmp6({ mac: ME.mac, dstMac: PEER.mac, src: ME.ll, dst: PEER.ll, type: 2, body: quoted6(PEER.ll, ME.ll) }),
  },
  {
    name: "ICMPv6 packet too big about a packet to a group",
    frame: icmp6({
      mac: ME.mac,
      dstMac: PEER.mac,
      src: ME.ip6,
      dst: PEER.ip6,
      type: 2,
      body: quoted6(PEER.ip6, "ff0e::1"),
    }),
  },
  {
    name: "ICMPv6 packet too big about a packet to another host: a router's",
    frame: icmp6({
      mac: ME.mac,
      dstMac: PEER.mac,
      src: ME.ip6,
      dst: PEER.ip6,
      type: 2,
      body: quoted6(PEER.ip6, "2001:db8::9"),
    }),
    drop: "rogue-router",
  },
  {
    name: "ICMPv6 time exceeded behind a destination-options header, about another host's packet",
    frame: icmp6({
      mac: ME.mac,
      dstMac: PEER.mac,
      src: ME.ip6,
      dst: PEER.ip6,
      type: 3,
      body: quoted6(PEER.ip6, OTHER.ip6),
      ext: optsHeader(IPPROTO.ICMPV6),
      extNext: 60,
    }),
    drop: "rogue-router",
  },
  {
    name: "ICMPv6 destination unreachable without the quoted header",
    frame: icmp6({ mac: ME.mac, dstMac: PEER.mac, src: ME.ip6, dst: PEER.ip6, type: 1, body: new Uint8Array(20) }),
    drop: "malformed",
  },
  {
    name: "ICMP router advertisement (RFC 1256)",
    frame: eth4(
      ME.mac,
      "01:00:5e:00:00:01",
      ipv4(
        { src: ME.ip, dst: "224.0.0.1", proto: IPPROTO.ICMP },
        icmp({ src: ME.ip, dst: "224.0.0.1", type: 9, id: 0x0102, seq: 1800 }, new Uint8Array(8)),
      ),
    ),
    drop: "rogue-router",
  },
  {
    name: "DHCPOFFER from a workload (source port 67)",
    frame: udp4({ mac: ME.mac, src: ME.ip, dst: "255.255.255.255", sport: 67, dport: 68, payload: bootp(2) }),
    drop: "rogue-dhcp",
  },
  {
    name: "BOOTREPLY to port 67 (relay reply)",
    frame: udp4({ mac: ME.mac, src: ME.ip, dst: PEER.ip, sport: 1067, dport: 67, payload: bootp(2) }),
    drop: "rogue-dhcp",
  },
  {
    name: "DHCPDISCOVER naming another client's MAC (chaddr)",
    frame: udp4({ ...DHCP_BCAST, payload: bootp(1, { chaddr: PEER.mac }) }),
    drop: "dhcp-spoof",
  },
  {
    name: "DHCPRELEASE of another client's lease from the profile address",
    frame: udp4({ mac: ME.mac, src: ME.ip, dst: GW, sport: 68, dport: 67, payload: bootp(1, { chaddr: PEER.mac }) }),
    drop: "dhcp-spoof",
  },
  {
    name: "DHCP request relayed by a workload (giaddr set)",
    frame: udp4({ ...DHCP_BCAST, payload: bootp(1, { chaddr: ME.mac, giaddr: ME.ip }) }),
    drop: "dhcp-spoof",
  },
  {
    name: "DHCP request with a non-Ethernet hardware type",
    frame: udp4({ ...DHCP_BCAST, payload: bootp(1, { chaddr: ME.mac, htype: 6 }) }),
    drop: "dhcp-spoof",
  },
  {
    name: "DHCP request cut short before chaddr",
    frame: udp4({ ...DHCP_BCAST, payload: bootp(1, { chaddr: ME.mac }).subarray(0, 30) }),
    drop: "dhcp-spoof",
  },
  {
    name: "UDP to a DHCP client port",
    frame: udp4({ mac: ME.mac, src: ME.ip, dst: PEER.ip, sport: 4000, dport: 68, payload: bootp(2) }),
    drop: "rogue-dhcp",
  },
  {
    name: "DHCPv6 ADVERTISE (source port 547)",
    frame: udp6({ mac: ME.mac, src: ME.ll, dst: PEER.ll, sport: 547, dport: 546, payload: dhcp6(2) }),
    drop: "rogue-dhcp6",
  },
  {
    name: "DHCPv6 REPLY sent to port 547",
    frame: udp6({ mac: ME.mac, src: ME.ll, dst: "ff02::1:2", sport: 546, dport: 547, payload: dhcp6(7) }),
    drop: "rogue-dhcp6",
  },
  {
    name: "DHCPv6 RECONFIGURE",
    frame: udp6({ mac: ME.mac, src: ME.ip6, dst: PEER.ip6, sport: 546, dport: 547, payload: dhcp6(10) }),
    drop: "rogue-dhcp6",
  },
  {
    name: "VXLAN over IPv4",
    frame: udp4({ mac: ME.mac, src: ME.ip, dst: PEER.ip, sport: 50000, dport: 4789, payload: new Uint8Array(64) }),
    drop: "rogue-vxlan",
  },
  {
    name: "VXLAN over IPv6",
    frame: udp6({ mac: ME.mac, src: ME.ip6, dst: PEER.ip6, sport: 50000, dport: 4789, payload: new Uint8Array(64) }),
    drop: "rogue-vxlan",
  },
  {
    name: "ARP probe for a peer's address",
    frame: ethArp(
      ME.mac,
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "request", senderMac: ME.mac, senderIp: "0.0.0.0", targetIp: PEER.ip }),
    ),
    drop: "arp-spoof",
  },
  {
    name: "DAD probe for a peer's address",
    frame: icmp6({ mac: ME.mac, src: "::", dst: "ff02::1:ff00:5", type: 135, body: ndBody(PEER.ip6) }),
    drop: "nd-spoof",
  },
  {
    name: "RS with another source link-layer address",
    frame: icmp6({ mac: ME.mac, src: ME.ll, dst: "ff02::2", type: 133, body: lla(1, PEER.mac) }),
    drop: "nd-spoof",
  },
  {
    name: "NA hiding a forged option behind 8 others",
    frame: icmp6({
      mac: ME.mac,
      src: ME.ll,
      dst: "ff02::1",
      type: 136,
      body: ndBody(
        ME.ll,
        ...Array.from({ length: 8 }, () => Buffer.from([200, 1, 0, 0, 0, 0, 0, 0])),
        lla(2, ATTACKER),
      ),
    }),
    drop: "malformed",
  },
  {
    name: "IGMP from 0.0.0.0 to a unicast address",
    frame: eth4(ME.mac, PEER.mac, ipv4({ src: "0.0.0.0", dst: PEER.ip, proto: 2 }, new Uint8Array(16))),
    drop: "ip4-spoof",
  },
  {
    name: "first fragment of a DHCP message",
    frame: eth4(
      ME.mac,
      "ff:ff:ff:ff:ff:ff",
      ipv4(
        { src: ME.ip, dst: GW, proto: IPPROTO.UDP, id: 5, moreFragments: true },
        udp({ src: ME.ip, dst: GW, sport: 68, dport: 67 }, new Uint8Array(0)),
      ),
    ),
    drop: "rogue-dhcp",
  },
  {
    name: "first fragment of a DHCPv6 message",
    frame: raw6({
      mac: ME.mac,
      src: ME.ll,
      dst: "ff02::1:2",
      next: 44,
      payload: Buffer.concat([
        fragHeader(IPPROTO.UDP, 0, true),
        udp({ src: ME.ll, dst: "ff02::1:2", sport: 546, dport: 547 }, new Uint8Array(0)),
      ]),
    }),
    drop: "rogue-dhcp6",
  },
  // ---- malformed ----
  // (A frame shorter than the IP header itself is refused by BPF_PROG_TEST_RUN; the live
  // attack test sends those.)
  {
    name: "IHL 15 with a 40-byte datagram",
    frame: patch(tcp4({ mac: ME.mac, src: ME.ip, dst: PEER.ip }), 14, 0x4f),
    drop: "malformed",
  },
  { name: "IHL 4", frame: patch(tcp4({ mac: ME.mac, src: ME.ip, dst: PEER.ip }), 14, 0x44), drop: "malformed" },
  {
    name: "IP version 5 under the IPv4 ethertype",
    frame: patch(tcp4({ mac: ME.mac, src: ME.ip, dst: PEER.ip }), 14, 0x55),
    drop: "malformed",
  },
  {
    name: "total length past the frame",
    frame: patch(tcp4({ mac: ME.mac, src: ME.ip, dst: PEER.ip }), 16, 1500, 2),
    drop: "malformed",
  },
  {
    name: "total length shorter than the header",
    frame: patch(tcp4({ mac: ME.mac, src: ME.ip, dst: PEER.ip }), 16, 16, 2),
    drop: "malformed",
  },
  {
    name: "first fragment too short for its TCP header",
    frame: eth4(
      ME.mac,
      PEER.mac,
      ipv4({ src: ME.ip, dst: PEER.ip, proto: IPPROTO.TCP, id: 3, moreFragments: true }, new Uint8Array(8)),
    ),
    drop: "malformed",
  },
  {
    name: "first fragment too short for its UDP header",
    frame: eth4(
      ME.mac,
      PEER.mac,
      ipv4({ src: ME.ip, dst: PEER.ip, proto: IPPROTO.UDP, id: 3, moreFragments: true }, new Uint8Array(4)),
    ),
    drop: "malformed",
  },
  {
    name: "TCP data offset 3",
    frame: patch(tcp4({ mac: ME.mac, src: ME.ip, dst: PEER.ip }), 14 + 20 + 12, 0x30),
    drop: "malformed",
  },
  {
    name: "TCP data offset past the segment",
    frame: patch(tcp4({ mac: ME.mac, src: ME.ip, dst: PEER.ip }), 14 + 20 + 12, 0xf0),
    drop: "malformed",
  },
  {
    name: "ICMP shorter than its header",
    frame: eth4(ME.mac, PEER.mac, ipv4({ src: ME.ip, dst: PEER.ip, proto: IPPROTO.ICMP }, new Uint8Array(4))),
    drop: "malformed",
  },
  {
    name: "IPv6 payload length past the frame",
    frame: patch(tcp6({ mac: ME.mac, src: ME.ip6, dst: PEER.ip6 }), 18, 400, 2),
    drop: "malformed",
  },
  {
    name: "IPv6 TCP header cut short",
    frame: raw6({ mac: ME.mac, src: ME.ip6, dst: PEER.ip6, next: IPPROTO.TCP, payload: new Uint8Array(12) }),
    drop: "malformed",
  },
  {
    name: "IPv6 UDP header cut short",
    frame: raw6({ mac: ME.mac, src: ME.ip6, dst: PEER.ip6, next: IPPROTO.UDP, payload: new Uint8Array(6) }),
    drop: "malformed",
  },
  {
    name: "IPv6 extension header longer than the payload",
    frame: raw6({
      mac: ME.mac,
      src: ME.ip6,
      dst: PEER.ip6,
      next: 60,
      payload: Buffer.from([IPPROTO.UDP, 4, 1, 4, 0, 0, 0, 0]),
    }),
    drop: "malformed",
  },
  {
    name: "IPv6 chain of 7 extension headers",
    frame: udp6Behind(7, { mac: ME.mac, src: ME.ip6, dst: PEER.ip6 }),
    drop: "ip6-ext-chain",
  },
  {
    name: "IPv6 first fragment too short for TCP",
    frame: raw6({
      mac: ME.mac,
      src: ME.ip6,
      dst: PEER.ip6,
      next: 44,
      payload: Buffer.concat([fragHeader(IPPROTO.TCP, 0, true), new Uint8Array(8)]),
    }),
    drop: "malformed",
  },
  // ---- other protocols ----
  {
    name: "802.1Q-tagged frame",
    frame: vlanTag(tcp4({ mac: ME.mac, src: ME.ip, dst: PEER.ip }), 100),
    drop: "vlan-tagged",
  },
  {
    name: "802.1ad-tagged frame",
    frame: patch(vlanTag(tcp4({ mac: ME.mac, src: ME.ip, dst: PEER.ip }), 100), 12, 0x88a8, 2),
    drop: "vlan-tagged",
  },
  {
    name: "LLDP",
    frame: ethernet({ src: ME.mac, dst: "01:80:c2:00:00:0e", type: 0x88cc }, new Uint8Array(40)),
    drop: "ethertype",
  },
  {
    name: "IPX",
    frame: ethernet({ src: ME.mac, dst: "ff:ff:ff:ff:ff:ff", type: 0x8137 }, new Uint8Array(40)),
    drop: "ethertype",
  },
];

const egress: Case[] = [
  {
    name: "from a port of the same network",
    prog: "out",
    from: SAME_NET_PEER,
    frame: udp4({ mac: PEER.mac, dstMac: ME.mac, src: PEER.ip, dst: ME.ip, sport: 1, dport: 2 }),
  },
  {
    name: "broadcast from a port of the same network",
    prog: "out",
    from: SAME_NET_PEER,
    frame: ethArp(
      PEER.mac,
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "request", senderMac: PEER.mac, senderIp: PEER.ip, targetIp: GW }),
    ),
  },
  {
    name: "from a port of another network",
    prog: "out",
    from: OTHER_NET_PEER,
    frame: udp4({ mac: OTHER.mac, dstMac: ME.mac, src: OTHER.ip, dst: ME.ip, sport: 1, dport: 2 }),
    drop: "other-network",
  },
  {
    name: "broadcast from a port of another network",
    prog: "out",
    from: OTHER_NET_PEER,
    frame: ethArp(
      OTHER.mac,
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "request", senderMac: OTHER.mac, senderIp: OTHER.ip, targetIp: "10.30.0.1" }),
    ),
    drop: "other-network",
  },
  {
    name: "IPv6 multicast from a port of another network",
    prog: "out",
    from: OTHER_NET_PEER,
    frame: icmp6({ mac: OTHER.mac, src: linkLocal(OTHER.mac), dst: "ff02::1", type: 128, body: new Uint8Array(8) }),
    drop: "other-network",
  },
  {
    name: "host ARP request from this network's gateway",
    prog: "out",
    from: 0,
    frame: ethArp(
      "02:00:00:00:00:fe",
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "request", senderMac: "02:00:00:00:00:fe", senderIp: GW, targetIp: ME.ip }),
    ),
  },
  {
    name: "host ARP request from another network's gateway",
    prog: "out",
    from: 0,
    frame: ethArp(
      "02:00:00:00:00:fe",
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "request", senderMac: "02:00:00:00:00:fe", senderIp: "10.30.0.1", targetIp: OTHER.ip }),
    ),
    drop: "other-network",
  },
  {
    name: "routed IPv4 to the port's address",
    prog: "out",
    from: 0,
    frame: tcp4({ mac: "02:00:00:00:00:fe", dstMac: ME.mac, src: "192.0.2.7", dst: ME.ip }),
  },
  {
    name: "host ICMP redirect to the port (a shortcut past the gateway)",
    prog: "out",
    from: 0,
    frame: hostIcmp(5),
    drop: "redirect",
  },
  {
    name: "host ICMP redirect behind IPv4 options",
    prog: "out",
    from: 0,
    frame: hostIcmp(5, true),
    drop: "redirect",
  },
  {
    name: "host ICMP unreachable to the port (not a redirect)",
    prog: "out",
    from: 0,
    frame: hostIcmp(3),
  },
  {
    name: "host ICMPv6 redirect to the port",
    prog: "out",
    from: 0,
    frame: icmp6({
      mac: "02:00:00:00:00:fe",
      dstMac: ME.mac,
      src: linkLocal("02:00:00:00:00:fe"),
      dst: ME.ip6,
      type: 137,
      body: new Uint8Array(36),
    }),
    drop: "redirect",
  },
  {
    name: "the node's ICMP redirect to a host on the uplink's LAN (about a workload)",
    prog: "upout",
    frame: eth4(
      "02:00:00:00:00:fe",
      ATTACKER,
      ipv4(
        { src: "192.0.2.1", dst: "192.0.2.9", proto: IPPROTO.ICMP },
        icmp({ src: "192.0.2.1", dst: "192.0.2.9", type: 5, code: 1 }, new Uint8Array(28)),
      ),
    ),
    drop: "redirect",
  },
  {
    name: "a workload's ICMP echo leaving through the uplink",
    prog: "upout",
    frame: eth4(
      "02:00:00:00:00:fe",
      ATTACKER,
      ipv4(
        { src: ME.ip, dst: "192.0.2.9", proto: IPPROTO.ICMP },
        icmp({ src: ME.ip, dst: "192.0.2.9", type: 8 }, new Uint8Array(28)),
      ),
    ),
  },
  {
    name: "host broadcast from another network's gateway",
    prog: "out",
    from: 0,
    frame: udp4({
      mac: "02:00:00:00:00:fe",
      src: "10.30.0.1",
      dst: "255.255.255.255",
      sport: 67,
      dport: 68,
      payload: bootp(2),
    }),
    drop: "other-network",
  },
  {
    name: "host broadcast from this network's gateway",
    prog: "out",
    from: 0,
    frame: udp4({ mac: "02:00:00:00:00:fe", src: GW, dst: "255.255.255.255", sport: 67, dport: 68, payload: bootp(2) }),
  },
  {
    name: "host IPv6 from its link-local address",
    prog: "out",
    from: 0,
    frame: icmp6({ mac: "02:00:00:00:00:fe", src: "fe80::1", dst: "ff02::1", type: 134, body: new Uint8Array(8) }),
  },
  {
    name: "host MLD report from ::",
    prog: "out",
    from: 0,
    frame: icmp6({
      mac: "02:00:00:00:00:fe",
      src: "::",
      dst: "ff02::16",
      type: 143,
      body: new Uint8Array(4),
      ext: hbhRouterAlert,
    }),
  },
  {
    name: "host unicast from ::",
    prog: "out",
    from: 0,
    frame: tcp6({ mac: "02:00:00:00:00:fe", src: "::", dst: OTHER.ip6 }),
    drop: "other-network",
  },
  {
    name: "routed IPv6 to the port's address",
    prog: "out",
    from: 0,
    frame: tcp6({ mac: "02:00:00:00:00:fe", dstMac: ME.mac, src: "2001:db8::9", dst: ME.ip6 }),
  },
  {
    name: "host IPv6 between other prefixes",
    prog: "out",
    from: 0,
    frame: tcp6({ mac: "02:00:00:00:00:fe", src: "fd30::1", dst: OTHER.ip6 }),
    drop: "other-network",
  },
  {
    name: "host frame of an unknown protocol",
    prog: "out",
    from: 0,
    frame: ethernet({ src: "02:00:00:00:00:fe", dst: "ff:ff:ff:ff:ff:ff", type: 0x88cc }, new Uint8Array(40)),
    drop: "other-network",
  },
  {
    name: "link-local from the uplink",
    prog: "out",
    from: 903,
    frame: icmp6({ mac: "02:77:00:00:00:01", src: "fe80::6666", dst: "ff02::1", type: 134, body: new Uint8Array(8) }),
    drop: "other-network",
  },
  {
    name: "IPv6 routed in from another NIC to the port's address",
    prog: "out",
    from: ROUTED,
    frame: tcp6({ mac: "02:77:00:00:00:01", dstMac: ME.mac, src: "2001:db8::7", dst: ME.ip6 }),
  },
  // From the LAN at L2, into a network that is not extended onto it.
  {
    name: "IPv6 bridged straight from the LAN to the port's MAC",
    prog: "out",
    from: UPLINK,
    frame: tcp6({ mac: LAN_MAC, dstMac: ME.mac, src: "2001:db8::7", dst: ME.ip6 }),
    drop: "lan-direct",
  },
  {
    name: "IPv4 bridged straight from the LAN to the port's MAC",
    prog: "out",
    from: UPLINK,
    frame: tcp4({ mac: LAN_MAC, dstMac: ME.mac, src: "192.0.2.9", dst: ME.ip }),
    drop: "lan-direct",
  },
  {
    name: "an ARP request from the LAN for the port's address (broadcast)",
    prog: "out",
    from: UPLINK,
    frame: ethArp(
      LAN_MAC,
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "request", senderMac: LAN_MAC, senderIp: "192.0.2.9", targetIp: ME.ip }),
    ),
    drop: "lan-direct",
  },
  {
    name: "a rogue RA from the LAN, link-local source, unicast to the port's global address",
    prog: "out",
    from: UPLINK,
    frame: icmp6({ mac: LAN_MAC, dstMac: ME.mac, src: "fe80::6666", dst: ME.ip6, type: 134, body: new Uint8Array(12) }),
    drop: "lan-direct",
  },
  // Routed in (from the bridge or another NIC): never router or neighbour messages, never a DHCP server's.
  {
    name: "an RA routed in, its source inside the network's prefix",
    prog: "out",
    from: BRIDGE,
    frame: icmp6({
      mac: "02:00:00:00:00:fe",
      dstMac: ME.mac,
      src: "fd20::99",
      dst: ME.ip6,
      type: 134,
      body: new Uint8Array(12),
    }),
    drop: "nd-outside",
  },
  {
    name: "an RA routed in behind a destination-options header",
    prog: "out",
    from: BRIDGE,
    frame: icmp6({
      mac: "02:00:00:00:00:fe",
      dstMac: ME.mac,
      src: "fd20::99",
      dst: ME.ip6,
      type: 134,
      body: new Uint8Array(12),
      ext: optsHeader(IPPROTO.ICMPV6),
      extNext: 60,
    }),
    drop: "nd-outside",
  },
  {
    name: "an NA routed in for the gateway",
    prog: "out",
    from: BRIDGE,
    frame: icmp6({
      mac: "02:00:00:00:00:fe",
      dstMac: ME.mac,
      src: "fd20::99",
      dst: ME.ip6,
      type: 136,
      body: ndBody(GW6, lla(2, ATTACKER)),
    }),
    drop: "nd-outside",
  },
  {
    name: "an NS routed in from another NIC behind hop-by-hop",
    prog: "out",
    from: ROUTED,
    frame: icmp6({
      mac: "02:00:00:00:00:fe",
      dstMac: ME.mac,
      src: "fd20::99",
      dst: ME.ip6,
      type: 135,
      body: ndBody(ME.ip6, lla(1, ATTACKER)),
      ext: optsHeader(IPPROTO.ICMPV6),
      extNext: 0,
    }),
    drop: "nd-outside",
  },
  {
    name: "the node's own RA (link-local source) passes",
    prog: "out",
    from: 0,
    frame: icmp6({
      mac: "02:00:00:00:00:fe",
      dstMac: ME.mac,
      src: linkLocal("02:00:00:00:00:fe"),
      dst: "ff02::1",
      type: 134,
      body: new Uint8Array(12),
    }),
  },
  {
    name: "a DHCP offer routed in from a server on the LAN",
    prog: "out",
    from: BRIDGE,
    frame: udp4({
      mac: "02:00:00:00:00:fe",
      dstMac: ME.mac,
      src: "10.20.0.99",
      dst: ME.ip,
      sport: 67,
      dport: 68,
      payload: bootp(2, { chaddr: ME.mac }),
    }),
    drop: "rogue-dhcp",
  },
  {
    name: "a DHCPv6 reply routed in from a server on the LAN",
    prog: "out",
    from: BRIDGE,
    frame: udp6({
      mac: "02:00:00:00:00:fe",
      dstMac: ME.mac,
      src: "fd20::99",
      dst: ME.ip6,
      sport: 547,
      dport: 546,
      payload: dhcp6(7),
    }),
    drop: "rogue-dhcp6",
  },
  {
    name: "a DHCP ACK routed in from another source port (clients take any)",
    prog: "out",
    from: BRIDGE,
    frame: udp4({
      mac: "02:00:00:00:00:fe",
      dstMac: ME.mac,
      src: "192.0.2.99",
      dst: ME.ip,
      sport: 1067,
      dport: 68,
      payload: bootp(2, { chaddr: ME.mac }),
    }),
    drop: "rogue-dhcp",
  },
  {
    name: "a DHCPv6 reply routed in from another source port",
    prog: "out",
    from: BRIDGE,
    frame: udp6({
      mac: "02:00:00:00:00:fe",
      dstMac: ME.mac,
      src: "2001:db8::99",
      dst: ME.ip6,
      sport: 5470,
      dport: 546,
      payload: dhcp6(7),
    }),
    drop: "rogue-dhcp6",
  },
  {
    name: "an RA routed in whose ICMPv6 header waits in the second fragment",
    prog: "out",
    from: BRIDGE,
    frame: raw6({
      mac: "02:00:00:00:00:fe",
      dstMac: ME.mac,
      src: "2001:db8::99",
      dst: ME.ip6,
      next: 44,
      payload: Buffer.concat([fragHeader(60, 0, true), optsHeader(IPPROTO.ICMPV6)]),
    }),
    drop: "malformed",
  },
  {
    name: "an ICMP router advertisement routed in",
    prog: "out",
    from: BRIDGE,
    frame: eth4(
      "02:00:00:00:00:fe",
      ME.mac,
      ipv4(
        { src: "192.0.2.99", dst: ME.ip, proto: IPPROTO.ICMP },
        icmp({ src: "192.0.2.99", dst: ME.ip, type: 9, id: 0x0102, seq: 1800 }, new Uint8Array(8)),
      ),
    ),
    drop: "nd-outside",
  },
  {
    name: "the node's own DHCP offer passes",
    prog: "out",
    from: 0,
    frame: udp4({
      mac: "02:00:00:00:00:fe",
      dstMac: ME.mac,
      src: GW,
      dst: ME.ip,
      sport: 67,
      dport: 68,
      payload: bootp(2, { chaddr: ME.mac }),
    }),
  },
  {
    name: "the node's ICMPv6 redirect behind a hop-by-hop header",
    prog: "out",
    from: 0,
    frame: icmp6({
      mac: "02:00:00:00:00:fe",
      dstMac: ME.mac,
      src: linkLocal("02:00:00:00:00:fe"),
      dst: ME.ip6,
      type: 137,
      body: new Uint8Array(36),
      ext: optsHeader(IPPROTO.ICMPV6),
      extNext: 0,
    }),
    drop: "redirect",
  },
  {
    name: "IPv6 from the host behind seven extension headers",
    prog: "out",
    from: 0,
    frame: udp6Behind(7, { mac: "02:00:00:00:00:fe", dstMac: ME.mac, src: GW6, dst: ME.ip6 }),
    drop: "ip6-ext-chain",
  },
];

const uplink: Case[] = [
  {
    name: "uplink: a frame from outside",
    prog: "xdp",
    frame: tcp4({ mac: "02:77:00:00:00:01", dstMac: ME.mac, src: "192.0.2.7", dst: ME.ip }),
  },
  {
    name: "uplink: IPv6 from outside",
    prog: "xdp",
    frame: tcp6({ mac: "02:77:00:00:00:01", dstMac: ME.mac, src: "2001:db8::7", dst: ME.ip6 }),
  },
  {
    name: "uplink: ARP from outside",
    prog: "xdp",
    frame: ethArp(
      "02:77:00:00:00:01",
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "request", senderMac: "02:77:00:00:00:01", senderIp: "192.0.2.200", targetIp: ME.ip }),
    ),
  },
  {
    name: "uplink: an endpoint's MAC from outside",
    prog: "xdp",
    frame: tcp4({ mac: ME.mac, src: "192.0.2.7", dst: PEER.ip }),
    drop: "local-spoof",
  },
  {
    name: "uplink: an endpoint's IPv4 address from outside",
    prog: "xdp",
    frame: tcp4({ mac: "02:77:00:00:00:01", src: ME.ip, dst: PEER.ip }),
    drop: "local-spoof",
  },
  {
    name: "uplink: an endpoint's IPv6 address from outside",
    prog: "xdp",
    frame: tcp6({ mac: "02:77:00:00:00:01", src: ME.ip6, dst: PEER.ip6 }),
    drop: "local-spoof",
  },
  {
    name: "uplink: ARP claiming the gateway",
    prog: "xdp",
    frame: ethArp(
      "02:77:00:00:00:01",
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "reply", senderMac: "02:77:00:00:00:01", senderIp: GW, targetIp: ME.ip }),
    ),
    drop: "local-spoof",
  },
  {
    name: "uplink: VLAN-tagged frame with an endpoint's address",
    prog: "xdp",
    frame: vlanTag(tcp4({ mac: "02:77:00:00:00:01", src: PEER.ip, dst: ME.ip }), 7),
    drop: "local-spoof",
  },
  {
    name: "uplink: blocklisted IPv4 source",
    prog: "xdp",
    frame: tcp4({ mac: "02:77:00:00:00:01", src: "198.51.100.9", dst: ME.ip }),
    drop: "blocklist",
  },
  {
    name: "uplink: blocklisted IPv6 source",
    prog: "xdp",
    frame: tcp6({ mac: "02:77:00:00:00:01", src: "2001:db8:bad::1", dst: ME.ip6 }),
    drop: "blocklist",
  },
  {
    name: "uplink: QinQ frame with an endpoint's address",
    prog: "xdp",
    frame: vlanTag(vlanTag(tcp4({ mac: "02:77:00:00:00:01", src: PEER.ip, dst: ME.ip }), 7), 8),
    drop: "local-spoof",
  },
  {
    name: "uplink: three VLAN tags",
    prog: "xdp",
    frame: vlanTag(vlanTag(vlanTag(tcp4({ mac: "02:77:00:00:00:01", src: "192.0.2.7", dst: ME.ip }), 7), 8), 9),
    drop: "vlan-tagged",
  },
  {
    name: "uplink: NA for an endpoint's address",
    prog: "xdp",
    frame: icmp6({
      mac: "02:77:00:00:00:01",
      src: "fe80::6666",
      dst: "ff02::1",
      type: 136,
      body: ndBody(ME.ip6, lla(2, "02:77:00:00:00:01")),
    }),
    drop: "local-spoof",
  },
  {
    name: "uplink: DHCPDISCOVER from outside → dhcp-outside",
    prog: "xdp",
    frame: udp4({
      mac: "02:77:00:00:00:01",
      src: "0.0.0.0",
      dst: "255.255.255.255",
      sport: 68,
      dport: 67,
      payload: bootp(1, { chaddr: "02:77:00:00:00:01" }),
    }),
    drop: "dhcp-outside",
  },
  {
    name: "uplink: DHCPv6 SOLICIT from outside → dhcp-outside",
    prog: "xdp",
    frame: udp6({
      mac: "02:77:00:00:00:01",
      src: "fe80::6666",
      dst: "ff02::1:2",
      sport: 546,
      dport: 547,
      payload: dhcp6(1),
    }),
    drop: "dhcp-outside",
  },
  {
    name: "uplink: DHCPOFFER from an outside server to the node passes",
    prog: "xdp",
    frame: udp4({
      mac: "02:77:00:00:00:01",
      src: "192.0.2.1",
      dst: "255.255.255.255",
      sport: 67,
      dport: 68,
      payload: bootp(2, { chaddr: "02:77:00:00:00:09" }),
    }),
  },
  {
    name: "uplink: NA for an outside address",
    prog: "xdp",
    frame: icmp6({
      mac: "02:77:00:00:00:01",
      src: "fe80::6666",
      dst: "ff02::1",
      type: 136,
      body: ndBody("2001:db8::7", lla(2, "02:77:00:00:00:01")),
    }),
  },
];

const lan: Case[] = [
  // Gateway only: a workload's frames do not leave through the uplink at L2.
  {
    name: "a workload's frame to a LAN host's MAC, bridged to the uplink",
    prog: "upout",
    from: SAME_NET_PEER,
    frame: tcp4({ mac: PEER.mac, dstMac: LAN_MAC, src: PEER.ip, dst: "192.0.2.9" }),
    drop: "lan-direct",
  },
  {
    name: "a workload's ARP broadcast flooded to the uplink",
    prog: "upout",
    from: SAME_NET_PEER,
    frame: ethArp(
      PEER.mac,
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "request", senderMac: PEER.mac, senderIp: PEER.ip, targetIp: GW }),
    ),
    drop: "lan-direct",
  },
  // The networks' addresses stay off the LAN's wire: the node's own ARP and ND about them.
  {
    name: "the node's ARP request for a workload, flooded to the uplink",
    prog: "upout",
    frame: ethArp(
      BRIDGE_MAC,
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "request", senderMac: BRIDGE_MAC, senderIp: GW, targetIp: ME.ip }),
    ),
    drop: "lan-leak",
  },
  {
    name: "the node's ARP reply for a gateway's address to a LAN host",
    prog: "upout",
    frame: ethArp(
      BRIDGE_MAC,
      LAN_MAC,
      arp({ op: "reply", senderMac: BRIDGE_MAC, senderIp: GW, targetMac: LAN_MAC, targetIp: "192.0.2.9" }),
    ),
    drop: "lan-leak",
  },
  {
    name: "the node's ARP request for a LAN host, from its LAN address",
    prog: "upout",
    frame: ethArp(
      BRIDGE_MAC,
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "request", senderMac: BRIDGE_MAC, senderIp: "192.0.2.1", targetIp: "192.0.2.9" }),
    ),
  },
  {
    name: "the node's NS for a workload's global address",
    prog: "upout",
    frame: icmp6({
      mac: BRIDGE_MAC,
      dstMac: "33:33:ff:00:00:01",
      src: GW6,
      dst: "ff02::1:ff00:1",
      type: 135,
      body: ndBody(ME.ip6, lla(1, BRIDGE_MAC)),
    }),
    drop: "lan-leak",
  },
  {
    name: "the node's NS for a workload's link-local address",
    prog: "upout",
    frame: icmp6({
      mac: BRIDGE_MAC,
      dstMac: "33:33:ff:00:00:01",
      src: "fe80::fe",
      dst: "ff02::1:ff00:1",
      type: 135,
      body: ndBody(ME.ll, lla(1, BRIDGE_MAC)),
    }),
    drop: "lan-leak",
  },
  {
    name: "the node's NA for a gateway's address behind a destination-options header",
    prog: "upout",
    frame: icmp6({
      mac: BRIDGE_MAC,
      dstMac: LAN_MAC,
      src: GW6,
      dst: "2001:db8::9",
      type: 136,
      body: ndBody(GW6, lla(2, BRIDGE_MAC)),
      ext: optsHeader(IPPROTO.ICMPV6),
      extNext: 60,
    }),
    drop: "lan-leak",
  },
  {
    name: "the node's NS for a LAN host, from its link-local address",
    prog: "upout",
    frame: icmp6({
      mac: BRIDGE_MAC,
      dstMac: "33:33:ff:00:00:09",
      src: "fe80::fe",
      dst: "ff02::1:ff00:9",
      type: 135,
      body: ndBody("2001:db8::9", lla(1, BRIDGE_MAC)),
    }),
  },
  {
    name: "the node's ICMPv6 redirect out of the uplink behind a destination-options header",
    prog: "upout",
    frame: icmp6({
      mac: "02:00:00:00:00:fe",
      dstMac: LAN_MAC,
      src: "2001:db8::1",
      dst: "2001:db8::9",
      type: 137,
      body: new Uint8Array(36),
      ext: optsHeader(IPPROTO.ICMPV6),
      extNext: 60,
    }),
    drop: "redirect",
  },
  // The node's DHCP servers serve its workloads only: their broadcast answers stay off the LAN.
  {
    name: "the node's DHCP NAK, broadcast on the bridge, out of the uplink",
    prog: "upout",
    frame: udp4({
      mac: "02:00:00:00:00:fe",
      dstMac: "ff:ff:ff:ff:ff:ff",
      src: GW,
      dst: "255.255.255.255",
      sport: 67,
      dport: 68,
      payload: bootp(2, { chaddr: PEER.mac }),
    }),
    drop: "dhcp-outside",
  },
  {
    name: "a DHCPv6 reply out of the uplink",
    prog: "upout",
    frame: udp6({
      mac: "02:00:00:00:00:fe",
      dstMac: "33:33:00:01:00:02",
      src: linkLocal("02:00:00:00:00:fe"),
      dst: "ff02::1:2",
      sport: 547,
      dport: 546,
      payload: dhcp6(7),
    }),
    drop: "dhcp-outside",
  },
  {
    name: "the node's own DHCP request to a server on the LAN passes",
    prog: "upout",
    frame: udp4({
      mac: "02:00:00:00:00:fe",
      dstMac: "ff:ff:ff:ff:ff:ff",
      src: "0.0.0.0",
      dst: "255.255.255.255",
      sport: 68,
      dport: 67,
      payload: bootp(1, { chaddr: "02:00:00:00:00:fe" }),
    }),
  },
  // From the LAN: addresses of the networks' subnets are spoofs, whatever comes first.
  {
    name: "uplink: IPv4 source inside a network's subnet (an unclaimed address)",
    prog: "xdp",
    frame: tcp4({ mac: LAN_MAC, src: "10.20.0.77", dst: GW }),
    drop: "subnet-spoof",
  },
  {
    name: "uplink: IPv6 source inside a network's prefix",
    prog: "xdp",
    frame: tcp6({ mac: LAN_MAC, src: "fd20::77", dst: GW6 }),
    drop: "subnet-spoof",
  },
  {
    name: "uplink: ARP whose sender claims an address of a network's subnet",
    prog: "xdp",
    frame: ethArp(
      LAN_MAC,
      "ff:ff:ff:ff:ff:ff",
      arp({ op: "reply", senderMac: LAN_MAC, senderIp: "10.20.0.77", targetIp: GW }),
    ),
    drop: "subnet-spoof",
  },
  {
    name: "uplink: priority-tagged (VID 0) frame from a subnet address",
    prog: "xdp",
    frame: vlanTag(tcp4({ mac: LAN_MAC, src: "10.20.0.77", dst: GW }), 0),
    drop: "subnet-spoof",
  },
  {
    name: "uplink: NA for the gateway behind a destination-options header",
    prog: "xdp",
    frame: icmp6({
      mac: LAN_MAC,
      src: "fe80::6666",
      dst: "ff02::1",
      type: 136,
      body: ndBody(GW6, lla(2, LAN_MAC)),
      ext: optsHeader(IPPROTO.ICMPV6),
      extNext: 60,
    }),
    drop: "local-spoof",
  },
  {
    name: "uplink: NA for an endpoint behind hop-by-hop and destination options",
    prog: "xdp",
    frame: icmp6({
      mac: LAN_MAC,
      src: "fe80::6666",
      dst: "ff02::1",
      type: 136,
      body: ndBody(ME.ip6, lla(2, LAN_MAC)),
      ext: Buffer.concat([optsHeader(60), optsHeader(IPPROTO.ICMPV6)]),
      extNext: 0,
    }),
    drop: "local-spoof",
  },
  {
    name: "uplink: NA for an unclaimed address of a network's prefix",
    prog: "xdp",
    frame: icmp6({
      mac: LAN_MAC,
      src: "fe80::6666",
      dst: "ff02::1",
      type: 136,
      body: ndBody("fd20::77", lla(2, LAN_MAC)),
    }),
    drop: "subnet-spoof",
  },
  {
    name: "uplink: VLAN-tagged NA for the gateway",
    prog: "xdp",
    frame: vlanTag(
      icmp6({ mac: LAN_MAC, src: "fe80::6666", dst: "ff02::1", type: 136, body: ndBody(GW6, lla(2, LAN_MAC)) }),
      0,
    ),
    drop: "local-spoof",
  },
  {
    name: "uplink: DHCPv6 SOLICIT behind a destination-options header",
    prog: "xdp",
    frame: raw6({
      mac: LAN_MAC,
      dstMac: "33:33:00:01:00:02",
      src: "fe80::6666",
      dst: "ff02::1:2",
      next: 60,
      payload: Buffer.concat([
        optsHeader(IPPROTO.UDP),
        udp({ src: "fe80::6666", dst: "ff02::1:2", sport: 546, dport: 547 }, dhcp6(1)),
      ]),
    }),
    drop: "dhcp-outside",
  },
  {
    name: "uplink: DHCPv6 SOLICIT as a first fragment",
    prog: "xdp",
    frame: raw6({
      mac: LAN_MAC,
      dstMac: "33:33:00:01:00:02",
      src: "fe80::6666",
      dst: "ff02::1:2",
      next: 44,
      payload: Buffer.concat([
        fragHeader(IPPROTO.UDP, 0, true),
        udp({ src: "fe80::6666", dst: "ff02::1:2", sport: 546, dport: 547 }, dhcp6(1)),
      ]),
    }),
    drop: "dhcp-outside",
  },
  // Fragments from the LAN: the whole header chain and the upper-layer header come first
  // (RFC 7112), and neighbour discovery is never fragmented (RFC 6980).
  {
    name: "uplink: an NA for the gateway in the first of two fragments",
    prog: "xdp",
    frame: raw6({
      mac: LAN_MAC,
      dstMac: "33:33:00:00:00:01",
      src: "fe80::6666",
      dst: "ff02::1",
      next: 44,
      payload: Buffer.concat([
        fragHeader(IPPROTO.ICMPV6, 0, true),
        icmp({ src: "fe80::6666", dst: "ff02::1", type: 136 }, ndBody(GW6, lla(2, LAN_MAC))),
      ]),
    }),
    drop: "local-spoof",
  },
  {
    name: "uplink: an NA whose target waits in the second fragment",
    prog: "xdp",
    frame: raw6({
      mac: LAN_MAC,
      dstMac: "33:33:00:00:00:01",
      src: "fe80::6666",
      dst: "ff02::1",
      next: 44,
      payload: Buffer.concat([
        fragHeader(IPPROTO.ICMPV6, 0, true),
        icmp({ src: "fe80::6666", dst: "ff02::1", type: 136 }, ndBody(GW6, lla(2, LAN_MAC))).subarray(0, 8),
      ]),
    }),
    drop: "malformed",
  },
  {
    name: "uplink: a fragmented RS",
    prog: "xdp",
    frame: raw6({
      mac: LAN_MAC,
      dstMac: "33:33:00:00:00:02",
      src: "fe80::6666",
      dst: "ff02::2",
      next: 44,
      payload: Buffer.concat([
        fragHeader(IPPROTO.ICMPV6, 0, true),
        icmp({ src: "fe80::6666", dst: "ff02::2", type: 133 }, lla(1, LAN_MAC)),
      ]),
    }),
    drop: "malformed",
  },
  {
    name: "uplink: a DHCPv6 request whose UDP header waits in the second fragment",
    prog: "xdp",
    frame: raw6({
      mac: LAN_MAC,
      dstMac: "33:33:00:01:00:02",
      src: "fe80::6666",
      dst: "ff02::1:2",
      next: 44,
      payload: Buffer.concat([fragHeader(60, 0, true), optsHeader(IPPROTO.UDP)]),
    }),
    drop: "malformed",
  },
  {
    name: "uplink: a first fragment holding its UDP header passes",
    prog: "xdp",
    frame: raw6({
      mac: LAN_MAC,
      src: "2001:db8::7",
      dst: "2001:db8::1",
      next: 44,
      payload: Buffer.concat([
        fragHeader(IPPROTO.UDP, 0, true),
        udp({ src: "2001:db8::7", dst: "2001:db8::1", sport: 1, dport: 2 }, new Uint8Array(64)),
      ]),
    }),
  },
  // ND's link-layer address options are its ARP sender: no local MAC in them from outside.
  {
    name: "uplink: an NS with an endpoint's MAC as source link-layer address",
    prog: "xdp",
    frame: icmp6({
      mac: LAN_MAC,
      src: "2001:db8::7",
      dst: "ff02::1:ff00:1",
      type: 135,
      body: ndBody("2001:db8::1", lla(1, ME.mac)),
    }),
    drop: "local-spoof",
  },
  {
    name: "uplink: an NA for a LAN host's own address with an endpoint's MAC, behind destination options",
    prog: "xdp",
    frame: icmp6({
      mac: LAN_MAC,
      src: "fe80::6666",
      dst: "ff02::1",
      type: 136,
      body: ndBody("2001:db8::7", lla(2, PEER.mac)),
      ext: optsHeader(IPPROTO.ICMPV6),
      extNext: 60,
    }),
    drop: "local-spoof",
  },
  {
    name: "uplink: an RS whose endpoint MAC hides behind eight nonce options",
    prog: "xdp",
    frame: icmp6({
      mac: LAN_MAC,
      src: "fe80::6666",
      dst: "ff02::2",
      type: 133,
      body: Buffer.concat([...Array.from({ length: 8 }, () => Buffer.from([14, 1, 1, 2, 3, 4, 5, 6])), lla(1, ME.mac)]),
    }),
    drop: "malformed",
  },
  {
    name: "uplink: a LAN host's NS with its own MAC passes",
    prog: "xdp",
    frame: icmp6({
      mac: LAN_MAC,
      src: "2001:db8::7",
      dst: "ff02::1:ff00:1",
      type: 135,
      body: ndBody("2001:db8::1", lla(1, LAN_MAC)),
    }),
  },
  {
    name: "uplink: a chain of seven extension headers",
    prog: "xdp",
    frame: udp6Behind(7, { mac: LAN_MAC, src: "2001:db8::7", dst: GW6 }),
    drop: "ip6-ext-chain",
  },
  {
    name: "uplink: a LAN host's own traffic to the node passes",
    prog: "xdp",
    frame: tcp4({ mac: LAN_MAC, src: "192.0.2.9", dst: "192.0.2.1" }),
  },
];

let obj: BpfObject;
let drops: BpfMap;
beforeAll(() => {
  obj = loadObject("port");
  drops = obj.map("stm_drops");
  const ports = obj.map("stm_ports");
  ports.update(encodeIfindex(PORT), encodePort(netA(ME)));
  ports.update(encodeIfindex(SAME_NET_PEER), encodePort(netA(PEER)));
  ports.update(
    encodeIfindex(OTHER_NET_PEER),
    encodePort({
      netId: 2,
      ip4: OTHER.ip,
      mac: OTHER.mac,
      cidr4: "10.30.0.0/24",
      gw4: "10.30.0.1",
      ip6: OTHER.ip6,
      cidr6: "fd30::/64",
    }),
  );
  obj.map("stm_ifaces").update(encodeIfindex(UPLINK), encodeIface({ kind: "uplink" }));
  for (const cidr of ["10.20.0.0/24", "fd20::/64", "10.30.0.0/24", "fd30::/64"])
    obj
      .map("stm_subnets")
      .update(encodeSubnetKey(cidr), encodeSubnet({ netId: cidr.includes("20") ? 1 : 2, lan: false }));
  const local = obj.map("stm_local");
  for (const a of [ME.mac, ME.ip, ME.ip6, ME.ll, PEER.mac, PEER.ip, PEER.ip6, GW, GW6])
    local.update(encodeLocalKey(a), encodeLocal(PORT, 1));
  const b4 = Buffer.alloc(8);
  b4.writeUInt32LE(24, 0);
  ipToBytes("198.51.100.0").copy(b4, 4);
  obj.map("stm_block4").update(b4, Buffer.alloc(4));
  const b6 = Buffer.alloc(20);
  b6.writeUInt32LE(48, 0);
  ipToBytes("2001:db8:bad::").copy(b6, 4);
  obj.map("stm_block6").update(b6, Buffer.alloc(4));
});
afterAll(() => obj?.close());

function xdpCtx(len: number): Buffer {
  const b = Buffer.alloc(24); // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
  b.writeUInt32LE(len, 4);
  b.writeUInt32LE(PORT, 12);
  return b;
}

const dropKey = (ifindex: number, reason: string): string =>
  encodeDropKey(ifindex, dropReasonCode(reason)).toString("hex");

function runCase(c: Case) {
  const prog = c.prog ?? "in";
  const name = { in: "stm_port_in", out: "stm_port_out", xdp: "stm_uplink_in", upout: "stm_uplink_out" }[prog];
  const fd = obj.program(name).fd;
  const ctx = prog === "xdp" ? xdpCtx(c.frame.length) : alloc(SK_BUFF, { ifindex: PORT, ingress_ifindex: c.from ?? 0 });
  return runFixture(fd, { name: c.name, input: c.frame, verdict: 0, ctx }, [drops]);
}

const table = [...ingress, ...egress, ...uplink, ...lan];

test("the fixture table has at least 60 cases, every drop reason of the port programs among them", () => {
  expect(table.length).toBeGreaterThanOrEqual(60);
  const reasons = new Set(table.map((c) => c.drop).filter(Boolean));
  for (const r of [
    "other-network",
    "mac-spoof",
    "ip4-spoof",
    "ip6-spoof",
    "arp-spoof",
    "arp-target",
    "nd-spoof",
    "rogue-router",
    "rogue-dhcp",
    "rogue-dhcp6",
    "rogue-vxlan",
    "malformed",
    "ip6-ext-chain",
    "vlan-tagged",
    "ethertype",
    "local-spoof",
    "blocklist",
    "redirect",
    "lan-direct",
    "subnet-spoof",
    "nd-outside",
    "lan-leak",
  ])
    expect({ r, covered: reasons.has(r) }).toEqual({ r, covered: true });
});

describe("port and uplink fixtures", () => {
  for (const c of table) {
    test(`${c.prog ?? "in"}: ${c.name} → ${c.drop ?? "pass"}`, () => {
      const r = runCase(c);
      const xdp = c.prog === "xdp";
      const want = c.drop ? (xdp ? XDP_DROP : TC_DROP) : xdp ? XDP_PASS : TC_NEXT;
      expect(r.retval).toBe(want);
      expect(r.deltas.stm_drops).toEqual(c.drop ? { [dropKey(PORT, c.drop)]: [1n] } : {});
      expect(r.output.toString("hex")).toBe(c.frame.toString("hex"));
    });
  }
});

test("a port without configuration drops in both directions and says why", () => {
  const ports = obj.map("stm_ports");
  const saved = ports.lookup(encodeIfindex(PORT)) as Buffer;
  expect(decodePort(saved)).toEqual(netA(ME));
  ports.delete(encodeIfindex(PORT));
  try {
    for (const prog of ["in", "out"] as const) {
      const r = runCase({ name: "unconfigured", prog, frame: tcp4({ mac: ME.mac, src: ME.ip, dst: PEER.ip }) });
      expect(r.retval).toBe(TC_DROP);
      expect(r.deltas.stm_drops).toEqual({ [dropKey(PORT, "port-unconfigured")]: [1n] });
    }
  } finally {
    ports.update(encodeIfindex(PORT), saved);
  }
});

test("a network extended onto the LAN: its frames cross the uplink at L2; router and DHCP server messages still do not", () => {
  const ports = obj.map("stm_ports");
  const subnets = obj.map("stm_subnets");
  const saved = ports.lookup(encodeIfindex(PORT)) as Buffer;
  const savedPeer = ports.lookup(encodeIfindex(SAME_NET_PEER)) as Buffer;
  ports.update(encodeIfindex(PORT), encodePort({ ...netA(ME), lan: true }));
  ports.update(encodeIfindex(SAME_NET_PEER), encodePort({ ...netA(PEER), lan: true }));
  for (const cidr of ["10.20.0.0/24", "fd20::/64"])
    subnets.update(encodeSubnetKey(cidr), encodeSubnet({ netId: 1, lan: true }));
  try {
    const cases: Case[] = [
      {
        name: "the node's ARP request for a workload goes out to the LAN",
        prog: "upout",
        frame: ethArp(
          BRIDGE_MAC,
          "ff:ff:ff:ff:ff:ff",
          arp({ op: "request", senderMac: BRIDGE_MAC, senderIp: GW, targetIp: ME.ip }),
        ),
      },
      {
        name: "the node's NS for a workload's link-local address goes out to the LAN",
        prog: "upout",
        frame: icmp6({
          mac: BRIDGE_MAC,
          dstMac: "33:33:ff:00:00:01",
          src: "fe80::fe",
          dst: "ff02::1:ff00:1",
          type: 135,
          body: ndBody(ME.ll, lla(1, BRIDGE_MAC)),
        }),
      },
      {
        name: "the node's NS for a workload's global address goes out to the LAN",
        prog: "upout",
        frame: icmp6({
          mac: BRIDGE_MAC,
          dstMac: "33:33:ff:00:00:01",
          src: GW6,
          dst: "ff02::1:ff00:1",
          type: 135,
          body: ndBody(ME.ip6, lla(1, BRIDGE_MAC)),
        }),
      },
      {
        name: "IPv6 from a LAN host",
        prog: "out",
        from: UPLINK,
        frame: tcp6({ mac: LAN_MAC, dstMac: ME.mac, src: "fd20::77", dst: ME.ip6 }),
      },
      {
        name: "IPv4 from a LAN host of the subnet",
        prog: "out",
        from: UPLINK,
        frame: tcp4({ mac: LAN_MAC, dstMac: ME.mac, src: "10.20.0.77", dst: ME.ip }),
      },
      {
        name: "an NS from a LAN host's link-local address",
        prog: "out",
        from: UPLINK,
        frame: icmp6({
          mac: LAN_MAC,
          dstMac: ME.mac,
          src: "fe80::77",
          dst: ME.ip6,
          type: 135,
          body: ndBody(ME.ip6, lla(1, LAN_MAC)),
        }),
      },
      {
        name: "an RA from the LAN",
        prog: "out",
        from: UPLINK,
        frame: icmp6({
          mac: LAN_MAC,
          dstMac: ME.mac,
          src: "fe80::77",
          dst: "ff02::1",
          type: 134,
          body: new Uint8Array(12),
        }),
        drop: "nd-outside",
      },
      {
        name: "a DHCP offer from a LAN server",
        prog: "out",
        from: UPLINK,
        frame: udp4({
          mac: LAN_MAC,
          dstMac: ME.mac,
          src: "10.20.0.77",
          dst: ME.ip,
          sport: 67,
          dport: 68,
          payload: bootp(2, { chaddr: ME.mac }),
        }),
        drop: "rogue-dhcp",
      },
      {
        name: "a DHCP ack from a LAN host's port 1067",
        prog: "out",
        from: UPLINK,
        frame: udp4({
          mac: LAN_MAC,
          dstMac: ME.mac,
          src: "10.20.0.77",
          dst: ME.ip,
          sport: 1067,
          dport: 68,
          payload: bootp(2, { chaddr: ME.mac }),
        }),
        drop: "rogue-dhcp",
      },
      {
        name: "a DHCPv6 reply from a LAN host's port 5470",
        prog: "out",
        from: UPLINK,
        frame: udp6({
          mac: LAN_MAC,
          dstMac: ME.mac,
          src: "fe80::77",
          dst: ME.ll,
          sport: 5470,
          dport: 546,
          payload: dhcp6(7),
        }),
        drop: "rogue-dhcp6",
      },
      {
        name: "a workload's frame to a LAN host",
        prog: "upout",
        from: SAME_NET_PEER,
        frame: tcp4({ mac: PEER.mac, dstMac: LAN_MAC, src: PEER.ip, dst: "10.20.0.77" }),
      },
      {
        name: "uplink: a LAN host of the extended subnet",
        prog: "xdp",
        frame: tcp4({ mac: LAN_MAC, src: "10.20.0.77", dst: ME.ip }),
      },
      {
        name: "uplink: still no claiming an endpoint's address",
        prog: "xdp",
        frame: tcp4({ mac: LAN_MAC, src: PEER.ip, dst: ME.ip }),
        drop: "local-spoof",
      },
      {
        name: "uplink: another network's subnet is still a spoof",
        prog: "xdp",
        frame: tcp4({ mac: LAN_MAC, src: "10.30.0.77", dst: ME.ip }),
        drop: "subnet-spoof",
      },
    ];
    for (const c of cases) {
      const r = runCase(c);
      const xdp = c.prog === "xdp";
      const want = c.drop ? (xdp ? XDP_DROP : TC_DROP) : xdp ? XDP_PASS : TC_NEXT;
      expect({ name: c.name, retval: r.retval }).toEqual({ name: c.name, retval: want });
      expect({ name: c.name, drops: r.deltas.stm_drops }).toEqual({
        name: c.name,
        drops: c.drop ? { [dropKey(PORT, c.drop)]: [1n] } : {},
      });
    }
  } finally {
    ports.update(encodeIfindex(PORT), saved);
    ports.update(encodeIfindex(SAME_NET_PEER), savedPeer);
    for (const cidr of ["10.20.0.0/24", "fd20::/64"])
      subnets.update(encodeSubnetKey(cidr), encodeSubnet({ netId: 1, lan: false }));
  }
});
