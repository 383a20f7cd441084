/** An agent that finds maps pinned by an earlier build with another layout: it does not
 * reuse them, pins new ones in their place, rebuilds them from its store, and the ports
 * work. */
import { afterAll, expect, test } from "bun:test";
import { PORT_SIZE } from "../../src/datapath/port-maps";
import { TestAgent } from "../helpers/agent";
import { Netns, runOk } from "../helpers/netns";

let A: TestAgent | undefined;
let w: Netns | undefined;
afterAll(() => {
  w?.destroy();
  A?.destroy();
});

test("a pinned map of an older layout is rebuilt, not reused", async () => {
  A = new TestAgent("lay");
  w = new Netns("layw");
  runOk(["mkdir", "-p", `${A.pins.path}/maps`]);
  // stm_ports as an earlier build made it: 16-byte values.
  runOk([
    "bpftool",
    "map",
    "create",
    `${A.pins.path}/maps/stm_ports`,
    "type",
    "hash",
    "key",
    "4",
    "value",
    "16",
    "entries",
    "65536",
    "name",
    "stm_ports",
  ]);
  await A.start();
  expect(A.logText).toContain("pinned maps of another layout (another build): stm_ports;");
  expect(A.logText).toContain("upgrade complete: 1 map(s) replaced (stm_ports)");
  const info = JSON.parse(runOk(["bpftool", "-j", "map", "show", "pinned", `${A.pins.path}/maps/stm_ports`]));
  expect({ key: info.bytes_key, value: info.bytes_value }).toEqual({ key: 4, value: PORT_SIZE });
  A.json("network", "create", "--name", "lay-net", "--cidr", "10.71.0.0/24", "--gateway", "10.71.0.1");
  A.json("network", "attach", "lay-net", "--name", "lay-1", "--netns", w.name, "--configure");
  w.execOk(["ping", "-c", "2", "-i", "0.1", "-W", "2", "10.71.0.1"]);
  // A second start reuses what the first one pinned.
  await A.kill("SIGTERM");
  await A.start();
  expect(A.logText.match(/of another layout/g)?.length).toBe(1);
  w.execOk(["ping", "-c", "1", "-W", "2", "10.71.0.1"]);
}, 30_000);
