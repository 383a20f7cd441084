/** Removes Stratum from a node: every endpoint's host interface (its programs go with it),
 * the uplink's filter (the NIC itself is the operator's: it only leaves the bridge), every
 * pinned link (uplink, counters), both bridges (and the gateway addresses on them), every pin
 * and the pin root itself; the store and the API socket only with `purge`. The agent must be
 * stopped: the pin root's lock proves it. No other agent may run in this network namespace
 * either (its @stratum-agent marker proves it, owner.ts): the bridges, ports and gateway
 * addresses are the namespace's, whatever the pin root. Ports go down before they go, so none passes a
 * frame without its programs on the way out. A plan is made first (what `--dry-run`
 * prints), then carried out step by step; a step that fails is reported and the rest still
 * run, so a second uninstall finishes what the first could not. */

import { Database } from "bun:sqlite";
import { existsSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { removeMacvtapDevice } from "../backends";
import { requirePrivilege } from "../datapath/probe";
import { StratumError } from "../errors";
import { bridgeLinkNumber, MACVTAP_LOWER, MGMT_BRIDGE, USER_BRIDGE, userBridgeNumber } from "../model/topology";
import {
  type Address,
  deleteLinkIfExists,
  listAddresses,
  listLinks,
  type Rtnl,
  rtnl,
  STRATUM_ADDR_PROTO,
  setLink,
  VIP_ADDR_PROTO,
} from "../netlink";
import { Fd, linkDetach, objGet, unpin } from "../sys/bpf";
import { closeFd, lockDirectory } from "../sys/os";
import { describeAgent, netnsAgent } from "./netns-owner";

export interface UninstallOptions {
  pinRoot: string;
  stateDir: string;
  apiSocket?: string;
  purge?: boolean;
  dryRun?: boolean;
}

export interface UninstallStep {
  /** What the step removes, in words: "interface stm1a2b3c4d5e (endpoint web-1)". */
  what: string;
  kind: "interface" | "uplink" | "link" | "bridge" | "pin" | "state";
  done: boolean;
  error?: string;
}

export interface UninstallReport {
  dryRun: boolean;
  steps: UninstallStep[];
  /** What is left alone, and why (the store without --purge, the operator's addresses that leave with a bridge). */
  notes: string[];
}

const AGENT_IFNAME = /^stm[0-9a-f]{10}$/;

/** What Stratum pins under its pin root: maps, a cut-short upgrade's staged maps, links,
 * the counting programs. Anything else there is someone else's. */
const PIN_DIRS = ["maps", "maps-next", "links", "counter", "progs", "xsk"];

/** Host interfaces of the endpoints the store holds, quarantined rows included (a tap's name
 * is the operator's choice: only the store tells it from a NIC), read without opening the
 * store for writing: nothing is migrated, a --dry-run changes nothing. */
function storedPorts(dbPath: string): Map<string, string> {
  const ports = new Map<string, string>();
  if (!existsSync(dbPath)) return ports;
  const db = new Database(dbPath, { readonly: true });
  try {
    for (const r of db.query("SELECT name, host_if FROM endpoints").all() as Array<{ name: string; host_if: string }>)
      ports.set(r.host_if, `endpoint ${r.name}`);
    const q = db.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'quarantine'").get();
    if (q)
      for (const r of db.query("SELECT row FROM quarantine WHERE table_name = 'endpoints'").all() as Array<{
        row: string;
      }>) {
        try {
          const e = JSON.parse(r.row) as { name?: unknown; host_if?: unknown };
          if (typeof e.host_if === "string") ports.set(e.host_if, `quarantined endpoint ${String(e.name)}`);
        } catch {}
      }
  } finally {
    db.close();
  }
  return ports;
}

/** The kind of BPF object a pinned fd is: link, map or program (from /proc/self/fdinfo). */
function pinnedKind(fd: number): "link" | "map" | "prog" | "other" {
  const info = readFileSync(`/proc/self/fdinfo/${fd}`, "utf8");
  if (/^link_type:/m.test(info)) return "link";
  if (/^map_type:/m.test(info)) return "map";
  if (/^prog_type:/m.test(info)) return "prog";
  return "other";
}

/** Every file under `dir`, deepest first, then the directories (bottom-up), then `dir`. */
function walk(dir: string): { files: string[]; dirs: string[] } {
  const files: string[] = [];
  const dirs: string[] = [];
  const rec = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) rec(p);
      else files.push(p);
    }
    dirs.push(d);
  };
  rec(dir);
  return { files, dirs };
}

export function uninstall(o: UninstallOptions, nl: Rtnl = rtnl()): UninstallReport {
  const report: UninstallReport = { dryRun: !!o.dryRun, steps: [], notes: [] };
  // Without the capabilities the pin root (bpffs, mode 0700) looks empty and every step fails.
  requirePrivilege("uninstall");
  const live = netnsAgent();
  if (live) {
    const same = live.identity && resolve(live.identity.pinRoot) === resolve(o.pinRoot);
    throw new StratumError(
      same ? "INVALID" : "CONFLICT",
      same
        ? `an agent is running on pin root ${o.pinRoot}: stop it first (systemctl stop cenvero-stratum; it is pid ${live.pid}); nothing was changed`
        : `another agent runs in this network namespace (${describeAgent(live)}): the bridges, ports and gateway addresses uninstall would remove are its too; stop it first, or run uninstall in the network namespace of the agent that used ${o.pinRoot}; nothing was changed`,
    );
  }
  let lock: number | undefined;
  if (existsSync(o.pinRoot)) {
    lock = lockDirectory(o.pinRoot);
    if (lock === undefined)
      throw new StratumError(
        "INVALID",
        `an agent is running on pin root ${o.pinRoot}: stop it first (systemctl stop cenvero-stratum); nothing was changed`,
      );
  }
  try {
    plan(o, nl, report);
    if (!o.dryRun) carryOut(report);
  } finally {
    if (lock !== undefined) closeFd(lock);
  }
  return report;
}

interface Planned extends UninstallStep {
  run: () => void;
}

function plan(o: UninstallOptions, nl: Rtnl, report: UninstallReport): void {
  const steps: Planned[] = [];
  const add = (kind: UninstallStep["kind"], what: string, run: () => void) =>
    steps.push({ kind, what, done: false, run });

  // Endpoints the store knows, and any interface of the agent's naming left on the bridge.
  const dbPath = join(o.stateDir, "stratum.db");
  const ports = storedPorts(dbPath);
  const links = listLinks(nl);
  const user = links.find((l) => l.name === USER_BRIDGE);
  // cnv-user-br0 and its extensions (cnv-user-br1 …), whose links' ends are Stratum's too.
  const userBridges = new Set(links.filter((l) => userBridgeNumber(l.name) !== undefined).map((l) => l.index));
  const linkEnds = links.filter((l) => bridgeLinkNumber(l.name) !== undefined);
  for (const l of links)
    if (l.master !== undefined && userBridges.has(l.master) && AGENT_IFNAME.test(l.name) && !ports.has(l.name))
      ports.set(l.name, "left on the bridge by an earlier agent");
  for (const [name, why] of ports) {
    const l = links.find((x) => x.name === name);
    if (!l) continue;
    add("interface", `interface ${name} (${why})`, () => {
      setLink(name, { up: false }, nl); // down first: never a moment without its programs while it goes
      deleteLinkIfExists(name, nl);
      // A VM's macvtap: the device node the agent made for its VMM.
      if (l.kind === "macvtap") removeMacvtapDevice(l.index);
    });
  }
  // The macvtap lower links: the shared one, and a passthru VM's own (named for its port).
  const lowers = links.filter(
    (l) =>
      l.name === MACVTAP_LOWER.outer ||
      l.name === MACVTAP_LOWER.inner ||
      (l.name.length > 1 && ports.has(l.name.slice(0, -1)) && /[lb]$/.test(l.name)),
  );
  // One step a pair: its outer end (the inner goes with it), or an inner end left alone.
  const outerOf = (name: string) => (name === MACVTAP_LOWER.inner ? MACVTAP_LOWER.outer : `${name.slice(0, -1)}l`);
  for (const l of lowers)
    if (
      l.name === MACVTAP_LOWER.outer ||
      (l.name !== MACVTAP_LOWER.inner && l.name.endsWith("l")) ||
      !lowers.some((x) => x.name === outerOf(l.name))
    )
      add("interface", `macvtap lower link ${l.name}`, () => {
        setLink(l.name, { up: false }, nl);
        deleteLinkIfExists(l.name, nl);
      });

  // Pinned links (the uplink's XDP and tcx links, counters): detach, remembering the uplink.
  // Only what Stratum pins: its own directories under the pin root, nothing else there.
  const pinned = { files: [] as string[], dirs: [] as string[] };
  for (const d of PIN_DIRS) {
    const w = existsSync(join(o.pinRoot, d)) ? walk(join(o.pinRoot, d)) : { files: [], dirs: [] };
    pinned.files.push(...w.files);
    pinned.dirs.push(...w.dirs);
  }
  const linkPins: string[] = [];
  for (const p of pinned.files) {
    try {
      using fd = new Fd(objGet(p));
      if (pinnedKind(fd.fd) === "link") linkPins.push(p);
    } catch {}
  }
  const uplinks = links.filter(
    (l) =>
      user &&
      l.master === user.index &&
      !AGENT_IFNAME.test(l.name) &&
      !ports.has(l.name) &&
      !lowers.includes(l) &&
      bridgeLinkNumber(l.name) === undefined,
  );
  for (const l of uplinks)
    add("uplink", `uplink ${l.name} from ${USER_BRIDGE} (the NIC itself stays)`, () =>
      setLink(l.name, { master: null }, nl),
    );
  for (const p of linkPins)
    add("link", `pinned link ${p.slice(o.pinRoot.length + 1)} and its program`, () => {
      using fd = new Fd(objGet(p, "link"));
      linkDetach(fd.fd);
    });

  // The links between the user bridges (one end takes the other), down first.
  for (const l of linkEnds)
    if (l.name.endsWith("a") || !linkEnds.some((x) => x.name === `${l.name.slice(0, -1)}a`))
      add("interface", `link ${l.name} between user bridges`, () => {
        setLink(l.name, { up: false }, nl);
        deleteLinkIfExists(l.name, nl);
      });
  // Bridges, and with them the gateway addresses; an operator's own address goes too: say so.
  const extensions = links.filter((l) => (userBridgeNumber(l.name) ?? 0) > 0).map((l) => l.name);
  for (const br of [...extensions, USER_BRIDGE, MGMT_BRIDGE]) {
    const l = links.find((x) => x.name === br);
    if (!l) continue;
    const theirs = listAddresses({ dev: l.index }, nl).filter(
      (a: Address) => a.proto !== STRATUM_ADDR_PROTO && a.proto !== VIP_ADDR_PROTO && a.scope === 0,
    );
    for (const a of theirs)
      report.notes.push(`address ${a.cidr} on ${br} is not Stratum's and goes with the bridge: put it on the uplink`);
    add("bridge", `bridge ${br}`, () => deleteLinkIfExists(br, nl));
  }

  // Pins (maps, programs, links), then the directories, then the pin root once empty.
  for (const p of pinned.files) add("pin", `pin ${p}`, () => unpin(p));
  for (const d of pinned.dirs) add("pin", `directory ${d}`, () => rmdirSync(d));
  if (existsSync(o.pinRoot)) {
    const others = readdirSync(o.pinRoot).filter((e) => !PIN_DIRS.includes(e));
    if (others.length)
      report.notes.push(
        `${o.pinRoot} also holds ${others.join(", ")}, not Stratum's: left there, and the pin root with them`,
      );
    else add("pin", `directory ${o.pinRoot}`, () => rmdirSync(o.pinRoot));
  }

  if (o.purge) {
    for (const f of ["stratum.db", "stratum.db-wal", "stratum.db-shm"]) {
      const p = join(o.stateDir, f);
      if (existsSync(p)) add("state", `state ${p}`, () => rmSync(p, { force: true }));
    }
    if (existsSync(o.stateDir))
      add("state", `directory ${o.stateDir} (if empty)`, () => {
        if (readdirSync(o.stateDir).length === 0) rmdirSync(o.stateDir);
      });
    if (o.apiSocket && existsSync(o.apiSocket) && statSync(o.apiSocket).isSocket())
      add("state", `API socket ${o.apiSocket}`, () => rmSync(o.apiSocket as string, { force: true }));
  } else if (existsSync(dbPath)) {
    report.notes.push(`the store ${dbPath} stays (--purge removes it): an agent started again restores every network`);
  }
  report.steps = steps;
}

function carryOut(report: UninstallReport): void {
  for (const s of report.steps as Planned[]) {
    try {
      s.run();
      s.done = true;
    } catch (e) {
      s.error = (e as Error).message;
    }
  }
}

/** The report without the steps' closures (for JSON). */
export function plainReport(r: UninstallReport): UninstallReport {
  return {
    dryRun: r.dryRun,
    steps: r.steps.map(({ what, kind, done, error }) => ({ what, kind, done, ...(error ? { error } : {}) })),
    notes: r.notes,
  };
}
