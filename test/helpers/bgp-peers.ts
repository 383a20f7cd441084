/** Real BGP implementations from Debian (BIRD 2, FRR's bgpd, GoBGP) as peers of the gateway's
 * speaker in tests: each runs in the router's namespace, passive, with the speaker's address as
 * its neighbour, IPv4 and IPv6 unicast, graceful restart on, importing everything; each tells
 * which routes it has from the speaker and whether the session is up. */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { until } from "./lab";
import { type Netns, run } from "./netns";

export interface PeerSite {
  /** The router's namespace and its address (its router id). */
  rt: Netns;
  routerAddress: string;
  /** The speaker's address (the neighbour) and AS; the router's AS. */
  speakerAddress: string;
  speakerAs: number;
  peerAs: number;
  /** A directory for configuration, sockets and logs. */
  dir: string;
  /** TCP MD5 key the router asks of the speaker (FRR only). */
  password?: string;
  /** BIRD only: announce a default route of each family to the speaker (the IPv6 one with this
   * next hop, the router's IPv6 address). */
  exportDefault?: { nextHop6: string };
  /** BIRD only: a second session, "stratum6", over IPv6 between these addresses. */
  v6Session?: { router: string; speaker: string };
}

/** A BGP implementation in the router's namespace: passive, AS 65000, our AS 65001 as its
 * neighbour, IPv4 and IPv6 unicast, graceful restart on, importing everything. */
export interface Peer {
  name: string;
  start(): Promise<void>;
  /** Prefix → next hop, of the routes it has from us (stale ones included). */
  routes(): Record<string, string>;
  established(): boolean;
  proc?: ReturnType<typeof Bun.spawn>;
  stop(): Promise<void>;
}

/** The routes BIRD (its control socket `ctl`) has from its BGP protocol `protocol`: prefix →
 * first next hop. */
export function birdRoutes(ctl: string, protocol: string): Record<string, string> {
  const out: Record<string, string> = {};
  let last = "";
  const head = new RegExp(`^(\\S+/\\d+)\\s+unicast \\[${protocol}\\s`);
  for (const line of run(["birdc", "-s", ctl, "show", "route", "protocol", protocol]).stdout.split("\n")) {
    const m = head.exec(line);
    if (m) {
      last = m[1] as string;
      out[last] = "";
    } else if (last && /^\s+via /.test(line) && out[last] === "") out[last] = line.trim().split(/\s+/)[1] ?? "";
  }
  return out;
}

function spawnIn(ns: Netns, cmd: string[]): ReturnType<typeof Bun.spawn> {
  return Bun.spawn(["ip", "netns", "exec", ns.name, ...cmd], { stdout: "ignore", stderr: "pipe" });
}

async function ended(p: ReturnType<typeof Bun.spawn> | undefined): Promise<void> {
  if (!p) return;
  p.kill("SIGCONT");
  p.kill("SIGKILL");
  await p.exited;
}

export function bird(site: PeerSite): Peer {
  const ctl = () => join(site.dir, "bird.ctl");
  const birdc = (...cmd: string[]) => run(["birdc", "-s", ctl(), ...cmd]).stdout;
  const peer: Peer = {
    name: "BIRD 2",
    async start() {
      writeFileSync(
        join(site.dir, "bird.conf"),
        `router id ${site.routerAddress};
log "${join(site.dir, "bird.log")}" all;
protocol device {}
${site.exportDefault ? "protocol static { ipv4; route 0.0.0.0/0 blackhole; }\nprotocol static { ipv6; route ::/0 blackhole; }\n" : ""}protocol bgp stratum {
  local ${site.routerAddress} as ${site.peerAs};
  neighbor ${site.speakerAddress} as ${site.speakerAs};
  passive on;
  error wait time 1, 2;
  graceful restart on;
  ipv4 { import all; export ${site.exportDefault ? "where net = 0.0.0.0/0" : "none"}; };
  ipv6 { import all; export ${site.exportDefault ? `where net = ::/0; next hop address ${site.exportDefault.nextHop6}` : "none"}; };
}
${
  site.v6Session
    ? `protocol bgp stratum6 {
  local ${site.v6Session.router} as ${site.peerAs};
  neighbor ${site.v6Session.speaker} as ${site.speakerAs};
  passive on;
  error wait time 1, 2;
  ipv4 { import all; export none; };
  ipv6 { import all; export none; };
}
`
    : ""
}`,
      );
      peer.proc = spawnIn(site.rt, ["bird", "-f", "-c", join(site.dir, "bird.conf"), "-s", ctl()]);
      await until("BIRD answers", () => birdc("show", "status").includes("Daemon is up"), 10_000);
    },
    routes: () => birdRoutes(ctl(), "stratum"),
    established: () => /BGP state:\s+Established/.test(birdc("show", "protocols", "all", "stratum")),
    stop: () => ended(peer.proc),
  };
  return peer;
}

export function frr(site: PeerSite): Peer {
  const vty = () => join(site.dir, "frr");
  const vtysh = (...cmds: string[]) =>
    run(["vtysh", "--vty_socket", vty(), "-d", "bgpd", ...cmds.flatMap((c) => ["-c", c])]).stdout;
  const peer: Peer = {
    name: "FRR",
    async start() {
      mkdirSync(vty(), { recursive: true });
      writeFileSync(
        join(vty(), "bgpd.conf"),
        `frr defaults traditional
hostname router
log file ${join(vty(), "bgpd.log")}
router bgp ${site.peerAs}
 bgp router-id ${site.routerAddress}
 no bgp ebgp-requires-policy
 bgp graceful-restart
 neighbor ${site.speakerAddress} remote-as ${site.speakerAs}
 neighbor ${site.speakerAddress} passive
 neighbor ${site.speakerAddress} timers connect 1
${site.password ? ` neighbor ${site.speakerAddress} password ${site.password}\n` : ""} address-family ipv6 unicast
  neighbor ${site.speakerAddress} activate
 exit-address-family
`,
      );
      // bgpd alone (-Z: no zebra), as root (-S), its vty socket in the test's directory.
      peer.proc = spawnIn(site.rt, [
        "/usr/lib/frr/bgpd",
        "-Z",
        "-S",
        "-f",
        join(vty(), "bgpd.conf"),
        "-i",
        join(vty(), "bgpd.pid"),
        "--vty_socket",
        vty(),
        "-z",
        join(vty(), "zserv.api"),
      ]);
      await until("bgpd answers", () => vtysh("show bgp summary").includes("local AS number"), 10_000);
    },
    routes() {
      const out: Record<string, string> = {};
      for (const fam of ["ipv4", "ipv6"]) {
        const j = JSON.parse(vtysh(`show bgp ${fam} unicast json`) || "{}");
        for (const [prefix, paths] of Object.entries<any>(j.routes ?? {}))
          out[prefix] = paths[0]?.nexthops?.[0]?.ip ?? "";
      }
      return out;
    },
    established: () =>
      JSON.parse(vtysh(`show bgp neighbors ${site.speakerAddress} json`) || "{}")[site.speakerAddress]?.bgpState ===
      "Established",
    stop: () => ended(peer.proc),
  };
  return peer;
}

export function gobgp(site: PeerSite): Peer {
  const cli = (...args: string[]) => site.rt.exec(["gobgp", "-u", "127.0.0.1", "-p", "50051", ...args]).stdout;
  const fams = ["ipv4-unicast", "ipv6-unicast"]
    .map(
      (f) => `  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "${f}"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true`,
    )
    .join("\n");
  const peer: Peer = {
    name: "GoBGP",
    async start() {
      writeFileSync(
        join(site.dir, "gobgpd.toml"),
        `[global.config]
  as = ${site.peerAs}
  router-id = "${site.routerAddress}"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "${site.speakerAddress}"
    peer-as = ${site.speakerAs}
  [neighbors.transport.config]
    passive-mode = true
  [neighbors.graceful-restart.config]
    enabled = true
${fams}
`,
      );
      peer.proc = spawnIn(site.rt, [
        "gobgpd",
        "-f",
        join(site.dir, "gobgpd.toml"),
        "-t",
        "toml",
        "--api-hosts",
        "127.0.0.1:50051",
      ]);
      await until("gobgpd answers", () => cli("global").includes(`AS:        ${site.peerAs}`), 10_000);
    },
    routes() {
      const out: Record<string, string> = {};
      for (const a of ["ipv4", "ipv6"]) {
        const j = JSON.parse(cli("global", "rib", "-a", a, "-j") || "{}");
        for (const [prefix, paths] of Object.entries<any>(j))
          out[prefix] =
            paths[0]?.attrs?.find((x: any) => x.type === 3)?.nexthop ??
            paths[0]?.attrs?.find((x: any) => x.type === 14)?.nexthop ??
            "";
      }
      return out;
    },
    established: () => /BGP state\s*[:=]\s*established/i.test(cli("neighbor", site.speakerAddress)),
    stop: () => ended(peer.proc),
  };
  return peer;
}
