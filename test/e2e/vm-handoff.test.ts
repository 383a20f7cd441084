/** `endpoint handoff`, end to end: the agent opens a VM's queues and sends the descriptors to
 * the VMM's unix socket (SCM_RIGHTS; test/helpers/vmm-receive.py plays the VMM, with no
 * privilege of its own needed for the queues). Every queue of a multi-queue tap arrives, each
 * names the tap and carries the virtio-net header unless asked not to, and each works as the
 * guest's (ARP with the gateway through the port's programs); a macvtap's device is opened
 * once per queue asked. Refused, with nothing sent: a container's endpoint, more queues than a
 * tap has, a tap whose one queue a VMM holds already, a socket nobody listens on. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestAgent } from "../helpers/agent";
import { Netns } from "../helpers/netns";
import { TestVm } from "../helpers/vm";

const NET = "hon";
const GW = "10.95.0.1";
let A: TestAgent;
let c1: Netns;
let dir: string;
const IFF_VNET_HDR = 0x4000;
const IFF_MULTI_QUEUE = 0x0100;

beforeAll(async () => {
  A = new TestAgent("hof");
  c1 = new Netns("hofc1");
  dir = mkdtempSync(join(tmpdir(), "stm-hof-"));
  await A.start();
  A.json("network", "create", "--name", NET, "--cidr", "10.95.0.0/24", "--gateway", GW);
  A.json("network", "attach", NET, "--name", "c-1", "--netns", c1.name, "--configure");
}, 60_000);

afterAll(() => {
  c1?.destroy();
  A?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Starts the VMM's side on a fresh socket; resolves with what it printed once handed. */
async function vmm(ip: string): Promise<{ socket: string; result: () => Promise<any>; kill: () => void }> {
  const socket = join(dir, `vmm-${Math.random().toString(36).slice(2, 8)}.sock`);
  const p = Bun.spawn(["python3", join(import.meta.dir, "../helpers/vmm-receive.py"), socket, ip, GW], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const reader = p.stdout.getReader();
  let buf = "";
  while (!buf.includes("ready\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`vmm-receive.py ended: ${await new Response(p.stderr).text()}`);
    buf += new TextDecoder().decode(value);
  }
  return {
    socket,
    kill: () => p.kill(),
    result: async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (value) buf += new TextDecoder().decode(value);
        if (done) break;
      }
      await p.exited;
      const line = buf.split("\n").find((l) => l.startsWith("{"));
      if (!line) throw new Error(`vmm-receive.py printed nothing: ${await new Response(p.stderr).text()}`);
      return JSON.parse(line);
    },
  };
}

describe("endpoint handoff", () => {
  test("every queue of a multi-queue tap reaches the VMM, with the virtio-net header, and each works", async () => {
    const ep = A.json("network", "attach", NET, "--name", "vm-mq", "--tap", "hoftap4", "--queues", "4");
    const v = await vmm(ep.ip);
    const r = A.json("endpoint", "handoff", "vm-mq", "--socket", v.socket);
    expect(r).toEqual({
      endpoint: "vm-mq",
      kind: "tap",
      interface: "hoftap4",
      socket: v.socket,
      queues: 4,
      vnetHdr: true,
    });
    const got = await v.result();
    expect(got.about).toMatchObject({ endpoint: "vm-mq", network: NET, mac: ep.mac, ip: ep.ip, queues: 4 });
    expect(got.fds.map((f: any) => f.name)).toEqual(["hoftap4", "hoftap4", "hoftap4", "hoftap4"]);
    for (const f of got.fds) {
      expect(f.flags & IFF_VNET_HDR).toBe(IFF_VNET_HDR);
      expect(f.flags & IFF_MULTI_QUEUE).toBe(IFF_MULTI_QUEUE);
    }
    // The gateway answered an ARP request sent on each of the four queues.
    expect(got.replies).toBe(4);
  });

  test("a macvtap's device, opened once per queue asked, without the header when asked", async () => {
    const ep = A.json("network", "attach", NET, "--name", "vm-mv", "--macvtap", "bridge");
    const v = await vmm(ep.ip);
    const out = A.ctl("endpoint", "handoff", "vm-mv", "--socket", v.socket, "--queues", "2", "--no-vnet-hdr");
    expect(out.code).toBe(0);
    expect(out.stdout.trim()).toBe(`handed 2 queue(s) of ${ep.interface} (macvtap) to ${v.socket}`);
    const got = await v.result();
    expect(got.fds.map((f: any) => f.name)).toEqual([ep.interface, ep.interface]);
    for (const f of got.fds) expect(f.flags & IFF_VNET_HDR).toBe(0);
    expect(got.replies).toBe(2);
  });

  test("refused, with nothing sent: a container, too many queues, a queue held already, nobody listening", async () => {
    const ep = A.json("network", "attach", NET, "--name", "vm-1q", "--tap", "hoftap1");
    const held = new TestVm("hoftap1", A.ns.path, ep.mac);
    try {
      const v = await vmm(ep.ip);
      const cases: Array<[string[], string]> = [
        [["c-1"], "endpoint c-1 is a container's veth: only a VM's queues are handed over"],
        [["vm-mq", "--queues", "5"], "--queues 5: tap hoftap4 has 4 queue(s); give 1 to 4"],
        [["vm-1q"], "hand the queues of vm-1q to"],
        [["nope"], "endpoint nope does not exist"],
      ];
      for (const [args, msg] of cases) {
        const r = A.ctl("endpoint", "handoff", ...args, "--socket", v.socket);
        expect({ args, code: r.code === 0 ? 0 : "refused" }).toEqual({ args, code: "refused" });
        expect(r.stderr).toContain(msg);
      }
      // The VMM's side got nothing: it still waits.
      v.kill();
      const gone = A.ctl("endpoint", "handoff", "vm-mq", "--socket", join(dir, "nobody.sock"));
      expect(gone.code).not.toBe(0);
      expect(gone.stderr).toContain("connect to");
    } finally {
      held.close();
    }
  });
});
