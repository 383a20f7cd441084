/** Swaps the port programs of live ports N times, for tests and benchmarks of the swap
 * itself: run inside the agent's namespace (`nsenter --net=…`) as
 *   bun swap.ts PIN_ROOT N IFNAME[,IFNAME...] [PAUSE_MS]
 * Two loads of the port object share the pinned maps (same layout: nothing is pinned or
 * changed), and every round replaces both programs of every port with the other load's, in
 * place, as an upgrade does. Prints {swaps, ms}. */
import { PortDatapath } from "../../src/agent/datapath";
import { getLink } from "../../src/netlink";

const [pinRoot, n, names, pause] = process.argv.slice(2);
const loads = [new PortDatapath(pinRoot as string), new PortDatapath(pinRoot as string)];
for (const dp of loads) dp.open();
const ifindexes = (names as string).split(",").map((name) => {
  const l = getLink(name);
  if (!l) throw new Error(`no link ${name}`);
  return l.index;
});
const t0 = performance.now();
let swaps = 0;
for (let i = 0; i < Number(n); i++) {
  for (const ifindex of ifindexes) (loads[i % 2] as PortDatapath).attachPort(ifindex, { force: true });
  swaps += ifindexes.length * 2;
  if (pause) await Bun.sleep(Number(pause));
}
console.log(JSON.stringify({ swaps, ms: Math.round(performance.now() - t0) }));
