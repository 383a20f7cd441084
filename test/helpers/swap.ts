/** Swaps the port programs of live ports N times, for tests and benchmarks of the swap
 * itself: run inside the agent's namespace (`nsenter --net=…`) as
 *   bun swap.ts PIN_ROOT N IFNAME[,IFNAME...] [PAUSE_MS] [--on-signal]
 * With --on-signal it loads, prints "ready" and swaps only when it gets SIGUSR1 (a benchmark
 * keeps its start-up cost out of the measured window).
 * Two loads of the port object share the pinned maps (same layout: nothing is pinned or
 * changed), and every round replaces both programs of every port with the other load's, in
 * place, as an upgrade does. Prints {swaps, ms}. */
import { PortDatapath } from "../../src/datapath/port-datapath";
import { getLink } from "../../src/netlink";

const onSignal = process.argv.includes("--on-signal");
const [pinRoot, n, names, pause] = process.argv.slice(2).filter((a) => a !== "--on-signal");
// Loads of their own (not the agent's pinned programs, which both would otherwise take).
const loads = [
  new PortDatapath(pinRoot as string, { programPins: false }),
  new PortDatapath(pinRoot as string, { programPins: false }),
];
for (const dp of loads) dp.open();
const ifindexes = (names as string).split(",").map((name) => {
  const l = getLink(name);
  if (!l) throw new Error(`no link ${name}`);
  return l.index;
});
if (onSignal) {
  console.log("ready");
  await new Promise<void>((resolve) => process.once("SIGUSR1", () => resolve()));
}
const t0 = performance.now();
let swaps = 0;
for (let i = 0; i < Number(n); i++) {
  for (const ifindex of ifindexes) (loads[i % 2] as PortDatapath).attachPort(ifindex, { force: true });
  swaps += ifindexes.length * 2;
  if (pause) await Bun.sleep(Number(pause));
}
console.log(JSON.stringify({ swaps, ms: Math.round(performance.now() - t0) }));
