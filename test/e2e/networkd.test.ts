/** systemd-networkd, end to end. `export networkd` writes the .netdev/.network files that make
 * this node's Stratum interfaces (bridges with their MACs, a VM's multi-queue tap, macvtaps
 * with their MACs and modes on their lower links); a second export changes nothing and removes
 * an earlier export's file for a device that is gone. networkd's own parser takes them: the
 * real systemd-networkd, run in a namespace of its own, makes every device as written. After a
 * "reboot" (the agent stopped, the VMs' devices gone), networkd makes them again and the agent,
 * started again, adopts them: every port ok, a VM on an adopted macvtap gets its lease.
 * `network attach --tap T --adopt` takes a tap made by another, and refuses one that is not. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestAgent } from "../helpers/agent";
import { Netns, run } from "../helpers/netns";
import { TestVm } from "../helpers/vm";

const NETWORKD = "/lib/systemd/systemd-networkd";
const HAVE_NETWORKD = existsSync(NETWORKD);
const NET = "ndn";
let A: TestAgent;
let c1: Netns;
let dir: string;
let mt: any;
let mp: any;
let mx: any;

beforeAll(async () => {
  A = new TestAgent("ndx");
  c1 = new Netns("ndxc1");
  dir = mkdtempSync(join(tmpdir(), "stm-ndx-"));
  await A.start();
  A.json("network", "create", "--name", NET, "--cidr", "10.96.0.0/24", "--gateway", "10.96.0.1");
  A.json("network", "attach", NET, "--name", "c-1", "--netns", c1.name, "--configure");
  A.json("network", "attach", NET, "--name", "vm-t", "--tap", "ndtap2", "--queues", "2");
  mt = A.json("network", "attach", NET, "--name", "vm-m", "--macvtap", "vepa");
  mp = A.json("network", "attach", NET, "--name", "vm-p", "--macvtap", "passthru");
  mx = A.json("network", "attach", NET, "--name", "vm-x", "--xsk");
}, 60_000);

afterAll(() => {
  c1?.destroy();
  A?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const files = (d: string) => readdirSync(d).filter((n) => n.startsWith("50-stratum-"));
const show = (ns: string, dev: string) => run(["ip", "-n", ns, "-d", "link", "show", dev]);

/** Runs the real systemd-networkd in network namespace `ns` with `conf` as its configuration
 * (a private mount namespace: /etc/systemd/network, /run/systemd and /dev/net/tun of its own;
 * /sys read-only, so it does not wait for a udev that is not there) until every device of
 * `want` exists, then ends it by its PID. Returns its log. */
async function runNetworkd(ns: string, conf: string, want: string[]): Promise<string> {
  const priv = mkdtempSync(join(tmpdir(), "stm-nwd-"));
  mkdirSync(join(priv, "run"));
  // The tun device open to the user networkd drops to (it keeps CAP_NET_ADMIN).
  run(["mknod", "-m", "666", join(priv, "tun"), "c", "10", "200"]);
  const script = [
    `mount --bind ${conf} /etc/systemd/network`,
    `mount --bind ${priv}/tun /dev/net/tun`,
    "mkdir -p /run/systemd",
    "mount -t tmpfs tmpfs /run/systemd",
    `exec ip netns exec ${ns} sh -c 'mount -o remount,ro /sys && exec ${NETWORKD}'`,
  ].join(" && ");
  const p = Bun.spawn(["unshare", "-m", "--propagation", "private", "sh", "-c", script], {
    stdout: "pipe",
    stderr: "pipe",
  });
  try {
    const end = Date.now() + 15_000;
    while (Date.now() < end && !want.every((d) => show(ns, d).code === 0)) await Bun.sleep(100);
  } finally {
    p.kill();
    await p.exited;
    rmSync(priv, { recursive: true, force: true });
  }
  return `${await new Response(p.stdout).text()}${await new Response(p.stderr).text()}`;
}

describe("systemd-networkd", () => {
  test("export networkd writes a file per device; a second export changes nothing and removes a gone device's file", () => {
    const out = join(dir, "net");
    mkdirSync(out);
    writeFileSync(join(out, "50-stratum-gone0.netdev"), "[NetDev]\nName=gone0\nKind=tap\n");
    writeFileSync(join(out, "10-operator.network"), "[Match]\nName=eth9\n");
    const r = A.json("export", "networkd", "--dir", out);
    expect(r.removed).toEqual(["50-stratum-gone0.netdev"]);
    const names = files(out).sort();
    expect(names).toEqual(
      [
        "50-stratum-cnv-mgmt-br0.netdev",
        "50-stratum-cnv-user-br0.netdev",
        "50-stratum-cnv-user-mvla.netdev",
        "50-stratum-cnv-user-mvla.network",
        `50-stratum-${mp.interface}.netdev`,
        `50-stratum-${mp.interface}l.netdev`,
        `50-stratum-${mp.interface}l.network`,
        `50-stratum-${mt.interface}.netdev`,
        `50-stratum-${mx.interface}.netdev`,
        "50-stratum-ndtap2.netdev",
      ].sort(),
    );
    expect(readdirSync(out)).toContain("10-operator.network"); // not ours: left alone
    const text = (n: string) => readFileSync(join(out, `50-stratum-${n}`), "utf8");
    const brMac = JSON.parse(A.ns.execOk(["ip", "-j", "link", "show", "cnv-user-br0"]))[0].address;
    expect(text("cnv-user-br0.netdev")).toContain(`MACAddress=${brMac}`);
    expect(text("ndtap2.netdev")).toMatch(/Kind=tap[\s\S]*MultiQueue=yes/);
    expect(text(`${mt.interface}.netdev`)).toMatch(new RegExp(`Kind=macvtap\\nMACAddress=${mt.mac}[\\s\\S]*Mode=vepa`));
    expect(text("cnv-user-mvla.network")).toContain(`MACVTAP=${mt.interface}`);
    expect(text(`${mp.interface}l.network`)).toContain(`MACVTAP=${mp.interface}`);
    expect(text(`${mx.interface}.netdev`)).toMatch(
      new RegExp(`Kind=veth[\\s\\S]*Name=${mx.interface}x\\nMACAddress=${mx.mac}`),
    );
    const again = A.json("export", "networkd", "--dir", out);
    expect(again.files.every((f: any) => f.changed === false)).toBe(true);
    expect(again.removed).toEqual([]);
    // --dry-run writes nothing.
    const dry = join(dir, "dry");
    expect(A.ctl("export", "networkd", "--dir", dry, "--dry-run").code).toBe(0);
    expect(existsSync(dry)).toBe(false);
  });

  test.skipIf(!HAVE_NETWORKD)(
    "systemd-networkd (needs /lib/systemd/systemd-networkd) takes the files and makes every device as written",
    async () => {
      const ns = new Netns("ndxnw");
      try {
        const log = await runNetworkd(ns.name, join(dir, "net"), [
          "cnv-user-br0",
          "ndtap2",
          mt.interface,
          mp.interface,
          "cnv-user-mvlb",
          `${mx.interface}x`,
        ]);
        const j = (dev: string) => JSON.parse(run(["ip", "-n", ns.name, "-d", "-j", "link", "show", dev]).stdout)[0];
        const brMac = JSON.parse(A.ns.execOk(["ip", "-j", "link", "show", "cnv-user-br0"]))[0].address;
        expect({ log, kind: j("cnv-user-br0").linkinfo?.info_kind }).toEqual({ log, kind: "bridge" });
        expect(j("cnv-user-br0").address).toBe(brMac);
        expect(show(ns.name, "ndtap2").stdout).toContain("multi_queue");
        expect(j(mt.interface).address).toBe(mt.mac);
        expect(j(mt.interface).linkinfo.info_data.mode).toBe("vepa");
        expect(j(mt.interface).link).toBe("cnv-user-mvla");
        expect(j(mp.interface).linkinfo.info_data.mode).toBe("passthru");
        expect(j(mp.interface).link).toBe(`${mp.interface}l`);
        expect(j("cnv-user-mvlb").linkinfo.info_kind).toBe("veth");
        expect(j(`${mx.interface}x`).address).toBe(mx.mac);
      } finally {
        ns.destroy();
      }
    },
    30_000,
  );

  test.skipIf(!HAVE_NETWORKD)(
    "after a reboot networkd makes the VMs' devices again and the agent adopts them: every port ok, a VM gets its lease",
    async () => {
      await A.kill("SIGTERM");
      for (const dev of ["ndtap2", mt.interface, "cnv-user-mvla", `${mp.interface}l`])
        A.ns.execOk(["ip", "link", "del", dev]);
      await runNetworkd(A.ns.name, join(dir, "net"), ["ndtap2", mt.interface, mp.interface]);
      const made = JSON.parse(A.ns.execOk(["ip", "-j", "link", "show", mt.interface]))[0].ifindex;
      await A.start();
      const ports = A.json("status").ports;
      for (const p of ports) expect({ ep: p.endpoint, problems: p.problems }).toEqual({ ep: p.endpoint, problems: [] });
      // Adopted, not made again: the macvtap networkd made, with its device node for the VMM.
      const now = A.json("endpoint", "show", "vm-m");
      expect(now.macvtap.device).toBe(`/dev/tap${made}`);
      const vm = new TestVm(now.interface, A.ns.path, now.mac, { device: now.macvtap.device });
      try {
        expect(await vm.dhcp()).toBe(now.ip);
      } finally {
        vm.close();
      }
    },
    60_000,
  );

  test("network attach --tap --adopt takes a tap made by another; refuses what it cannot take, with nothing changed", () => {
    A.ns.execOk(["ip", "tuntap", "add", "dev", "ndadopt", "mode", "tap"]);
    A.ns.execOk(["ip", "tuntap", "add", "dev", "ndadoptq", "mode", "tap", "multi_queue"]);
    A.ns.execOk(["ip", "link", "add", "ndveth", "type", "veth", "peer", "name", "ndveth1"]);
    const before = A.json("endpoint", "list").length;
    const cases: Array<[string[], string]> = [
      [["--tap", "ndnone", "--adopt"], "--adopt: interface ndnone does not exist"],
      [["--tap", "ndveth", "--adopt"], "--adopt: ndveth is a veth of another kind, not a tap"],
      [["--tap", "ndadoptq", "--adopt"], "--adopt: tap ndadoptq is multi-queue: give --queues N"],
      [["--tap", "ndadopt", "--adopt", "--queues", "2"], "--adopt: tap ndadopt is not multi-queue: drop --queues"],
      [["--macvtap", "bridge", "--adopt"], "--adopt applies to --tap endpoints"],
    ];
    for (const [flags, msg] of cases) {
      const r = A.ctl("network", "attach", NET, "--name", "vm-a", ...flags);
      expect({ flags, code: r.code === 0 ? 0 : "refused" }).toEqual({ flags, code: "refused" });
      expect(r.stderr).toContain(msg);
    }
    expect(A.json("endpoint", "list").length).toBe(before);
    const a = A.json("network", "attach", NET, "--name", "vm-a", "--tap", "ndadopt", "--adopt");
    expect(a.interface).toBe("ndadopt");
    const port = A.json("status").ports.find((p: any) => p.endpoint === "vm-a");
    expect({ state: port.state, problems: port.problems }).toEqual({ state: "ok", problems: [] });
    expect(A.ctl("network", "attach", NET, "--name", "vm-b", "--tap", "ndadopt", "--adopt").stderr).toContain(
      "is up or on a bridge already",
    );
  });
});
