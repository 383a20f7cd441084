/** A VM on a macvtap (docs/networks.md#vms-on-a-macvtap): a macvtap with the profile's MAC on a
 * macvtap lower link (the node's shared one, or a passthru VM's own), its character device
 * /dev/tap<ifindex> made for the VMM to open (the kernel names it; without udev nobody makes the
 * node). The port's programs sit on the macvtap itself, the other way round from a tap's. */
import { existsSync, readFileSync, rmSync, statSync } from "node:fs";
import { StratumError } from "../errors";
import { macvtapLowerNames } from "../model/topology";
import { createMacvtap, deleteLinkIfExists, type Link, type Rtnl } from "../netlink";
import type { Endpoint, StoredNetwork } from "../store/store";
import { makedev, mknodChar } from "../sys/os";
import type { MacvtapLowers } from "./backend";
import type { Undo } from "./undo";

/** The character device a VMM opens for macvtap `ifindex`. */
export const macvtapDevice = (ifindex: number): string => `/dev/tap${ifindex}`;

/** Makes /dev/tap<ifindex> of macvtap `name` (from its sysfs major:minor) unless it is there
 * and right (a node left by another macvtap of that ifindex, in another namespace, is not). */
export function ensureMacvtapDevice(name: string, ifindex: number): string {
  const path = macvtapDevice(ifindex);
  const mm = deviceNumbers(name, ifindex);
  const [major, minor] = mm.split(":").map(Number) as [number, number];
  if (existsSync(path)) {
    const st = statSync(path);
    if (st.isCharacterDevice() && st.rdev === makedev(major, minor)) return path;
    rmSync(path, { force: true });
  }
  mknodChar(path, major, minor);
  return path;
}

/** "major:minor" of macvtap `name`'s character device, from sysfs. sysfs shows the devices of
 * the network namespace it was mounted in: an agent in another one (a test's) reads a sysfs of
 * its own, mounted in a private mount namespace of a helper process. */
function deviceNumbers(name: string, ifindex: number): string {
  const rel = `class/net/${name}/macvtap/tap${ifindex}/dev`;
  try {
    return readFileSync(`/sys/${rel}`, "utf8").trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  const r = Bun.spawnSync(
    ["unshare", "-m", "--propagation", "private", "sh", "-c", `mount -t sysfs sysfs /sys && cat /sys/${rel}`],
    { stdout: "pipe", stderr: "pipe" },
  );
  const out = r.stdout.toString().trim();
  if (r.exitCode !== 0 || !/^\d+:\d+$/.test(out))
    throw new StratumError("INTERNAL", `macvtap ${name}: /sys/${rel}: ${r.stderr.toString().trim() || "not found"}`);
  return out;
}

export function removeMacvtapDevice(ifindex: number): void {
  rmSync(macvtapDevice(ifindex), { force: true });
}

/** Plugs a macvtap endpoint's device: its lower link made or repaired first, then the macvtap
 * (down) and its device node. */
export function plugMacvtap(ep: Endpoint, n: StoredNetwork, nl: Rtnl, undo: Undo, bridges: MacvtapLowers): Link {
  const names = macvtapLowerNames(ep);
  const lower = bridges.ensureMacvtapLower(names);
  if (names.own) undo.push(`delete ${names.outer}`, () => bridges.removeMacvtapLower(names));
  const link = createMacvtap(ep.hostIf, lower.outer.index, { mac: ep.mac, mtu: n.mtu, mode: ep.macvtapMode }, nl);
  undo.push(`delete ${ep.hostIf}`, () => deleteLinkIfExists(ep.hostIf, nl));
  ensureMacvtapDevice(ep.hostIf, link.index);
  undo.push(`remove ${macvtapDevice(link.index)}`, () => removeMacvtapDevice(link.index));
  return link;
}
