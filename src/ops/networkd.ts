/** `export networkd`: the systemd-networkd files that recreate this node's Stratum interfaces
 * (docs/networks.md#systemd-networkd), for hosts whose links networkd manages. networkd makes
 * the devices; the agent wires them (programs before anything is up, bridge, FDB entries), as
 * it does at every start: it adopts a device of the right kind that is already there. So the
 * files create devices only: `.netdev` files, and a `.network` file only where networkd needs
 * one to make a stacked device (a macvtap lower link lists its macvtaps). Nothing else of the
 * node is networkd's: no addresses, no bridge membership. Pure: the caller gives the state. */
import {
  bridgeLinkNames,
  type MacvtapMode,
  MGMT_BRIDGE,
  macvtapLowerNames,
  USER_BRIDGE,
  userBridgeName,
  userBridgeNumber,
  xskVmEnd,
} from "../model/topology";
import { listLinks, type Rtnl } from "../netlink";
import { bridgeMac } from "../netlink/bridge-mac";
import { localEndpoints, type Store } from "../store/store";

export interface NetworkdState {
  /** The user bridge and its extensions, the management bridge: name and MAC. */
  bridges: Array<{ name: string; mac: string }>;
  /** veth pairs: the links between user bridges, the macvtap lower links, AF_XDP VMs' pairs
   * (the VM end with the profile MAC). */
  pairs: Array<{ name: string; peer: string; peerMac?: string; endpoint?: string }>;
  taps: Array<{ name: string; endpoint: string; queues: number }>;
  /** Each macvtap lower link's outer end with the macvtaps on it. */
  lowers: Array<{ outer: string; macvtaps: Array<{ name: string; endpoint: string; mac: string; mode: MacvtapMode }> }>;
}

export interface NetworkdFile {
  name: string;
  text: string;
}

/** Every file this node's interfaces need, named 50-stratum-<device>.<kind> (sorted). */
export const NETWORKD_PREFIX = "50-stratum-";

const HEADER = [
  "# Written by `cenvero-str-ctl export networkd`: a device of this node's Stratum fabric. networkd",
  "# creates it; the Stratum agent wires it (its programs before it is up, its bridge, its FDB",
  "# entries). Written again by the next export: edit the node, not this file.",
];

function file(name: string, sections: Array<[string, Array<[string, string]>]>, what: string): NetworkdFile {
  const lines = [...HEADER, `# ${what}`];
  for (const [section, keys] of sections) {
    lines.push("", `[${section}]`);
    for (const [k, v] of keys) lines.push(`${k}=${v}`);
  }
  return { name, text: `${lines.join("\n")}\n` };
}

export function networkdFiles(s: NetworkdState): NetworkdFile[] {
  const out: NetworkdFile[] = [];
  for (const b of s.bridges)
    out.push(
      file(
        `${NETWORKD_PREFIX}${b.name}.netdev`,
        [
          [
            "NetDev",
            [
              ["Name", b.name],
              ["Kind", "bridge"],
              ["MACAddress", b.mac],
            ],
          ],
          ["Bridge", [["STP", "no"]]],
        ],
        `bridge ${b.name}`,
      ),
    );
  for (const p of s.pairs)
    out.push(
      file(
        `${NETWORKD_PREFIX}${p.name}.netdev`,
        [
          [
            "NetDev",
            [
              ["Name", p.name],
              ["Kind", "veth"],
            ],
          ],
          ["Peer", [["Name", p.peer], ...(p.peerMac ? ([["MACAddress", p.peerMac]] as Array<[string, string]>) : [])]],
        ],
        p.endpoint
          ? `AF_XDP pair of endpoint ${p.endpoint}: its port ${p.name}, its VM end ${p.peer}`
          : `veth pair ${p.name} / ${p.peer}`,
      ),
    );
  for (const t of s.taps)
    out.push(
      file(
        `${NETWORKD_PREFIX}${t.name}.netdev`,
        [
          [
            "NetDev",
            [
              ["Name", t.name],
              ["Kind", "tap"],
            ],
          ],
          [
            "Tap",
            [...(t.queues > 1 ? ([["MultiQueue", "yes"]] as Array<[string, string]>) : []), ["VNetHeader", "yes"]],
          ],
        ],
        `tap of endpoint ${t.endpoint}${t.queues > 1 ? ` (${t.queues} queues: its VMM opens them)` : ""}`,
      ),
    );
  for (const l of s.lowers) {
    if (!l.macvtaps.length) continue;
    for (const m of l.macvtaps)
      out.push(
        file(
          `${NETWORKD_PREFIX}${m.name}.netdev`,
          [
            [
              "NetDev",
              [
                ["Name", m.name],
                ["Kind", "macvtap"],
                ["MACAddress", m.mac],
              ],
            ],
            ["MACVTAP", [["Mode", m.mode]]],
          ],
          `macvtap of endpoint ${m.endpoint} (${m.mode} mode), on ${l.outer}`,
        ),
      );
    out.push(
      file(
        `${NETWORKD_PREFIX}${l.outer}.network`,
        [
          ["Match", [["Name", l.outer]]],
          [
            "Network",
            [
              ["LinkLocalAddressing", "no"],
              ["IPv6AcceptRA", "no"],
              ["ConfigureWithoutCarrier", "yes"],
              ["KeepConfiguration", "yes"],
              ...l.macvtaps.map((m): [string, string] => ["MACVTAP", m.name]),
            ],
          ],
        ],
        `macvtap lower link ${l.outer}: the macvtaps on it`,
      ),
    );
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** This node's state as `networkdFiles` takes it: its bridges as the kernel has them (the
 * extensions there are), the links between them, and the VMs' taps and macvtaps of this node
 * (a container's veth is made with its namespace: not networkd's). */
export function networkdState(store: Store, nl: Rtnl): NetworkdState {
  const links = listLinks(nl);
  const have = new Set(links.map((l) => l.name));
  const extensions = links
    .map((l) => userBridgeNumber(l.name))
    .filter((n): n is number => n !== undefined && n > 0)
    .sort((a, b) => a - b);
  const bridges = [USER_BRIDGE, MGMT_BRIDGE, ...extensions.map(userBridgeName)].map((name) => ({
    name,
    mac: bridgeMac(name),
  }));
  const pairs: NetworkdState["pairs"] = extensions.map((n) => {
    const l = bridgeLinkNames(n);
    return { name: l.main, peer: l.ext };
  });
  const eps = localEndpoints(store).filter((e) => have.has(e.hostIf));
  const taps = eps
    .filter((e) => e.kind === "tap")
    .map((e) => ({ name: e.hostIf, endpoint: e.name, queues: e.queues ?? 1 }));
  for (const e of eps.filter((x) => x.kind === "xsk"))
    pairs.push({ name: e.hostIf, peer: xskVmEnd(e.hostIf), peerMac: e.mac, endpoint: e.name });
  const lowers = new Map<string, NetworkdState["lowers"][number]>();
  for (const e of eps.filter((x) => x.kind === "macvtap")) {
    const names = macvtapLowerNames(e);
    if (!lowers.has(names.outer)) {
      lowers.set(names.outer, { outer: names.outer, macvtaps: [] });
      pairs.push({ name: names.outer, peer: names.inner });
    }
    lowers.get(names.outer)?.macvtaps.push({
      name: e.hostIf,
      endpoint: e.name,
      mac: e.mac,
      mode: e.macvtapMode ?? "bridge",
    });
  }
  return { bridges, pairs, taps, lowers: [...lowers.values()] };
}
