/** The web view's counter history (src/web/history.ts): rates between consecutive samples per
 * endpoint and per network; an endpoint missing at either end, or whose counters went down,
 * counts nothing for that interval; only the last `keep` samples are kept. */
import { expect, test } from "bun:test";
import { CounterHistory, type CounterSample } from "../../src/web/history";

function history(samples: CounterSample[][], keep = 121) {
  let i = 0;
  const h = new CounterHistory(async () => samples[i++] ?? [], { keep });
  return h;
}

const row = (endpoint: string, network: string, from: number, to: number, drops: Record<string, number> = {}) => ({
  endpoint,
  network,
  fromPackets: from,
  toPackets: to,
  drops,
});

test("rates per endpoint and per network, from counters 5 s apart", async () => {
  const h = history([
    [row("a", "n", 100, 50, { "ip4-spoof": 1 }), row("b", "n", 0, 0)],
    [row("a", "n", 600, 150, { "ip4-spoof": 11 }), row("b", "n", 50, 0)],
  ]);
  await h.sample(1_000_000);
  await h.sample(1_005_000);
  const r = h.rates();
  expect(r.at).toEqual([1005]);
  expect(r.endpoints.a).toEqual({ network: "n", sent: [100], received: [20], dropped: [2] });
  expect(r.networks.n).toEqual({ sent: [110], received: [20], dropped: [2] });
  expect(r.totals.a).toEqual({ sent: 600, received: 150, drops: { "ip4-spoof": 11 } });
});

test("an endpoint attached meanwhile, or whose counters went down, counts nothing for that interval", async () => {
  const h = history([
    [row("a", "n", 100, 0)],
    [row("a", "n", 10, 0), row("c", "n", 500, 0)],
    [row("a", "n", 20, 0), row("c", "n", 510, 0)],
  ]);
  for (const t of [0, 1000, 2000]) await h.sample(t);
  const r = h.rates();
  expect(r.endpoints.a?.sent).toEqual([0, 10]);
  expect(r.endpoints.c?.sent).toEqual([0, 10]);
  expect(r.networks.n?.sent).toEqual([0, 20]);
});

test("only the last `keep` samples are kept", async () => {
  const h = history(
    Array.from({ length: 10 }, (_, i) => [row("a", "n", i * 10, 0)]),
    4,
  );
  for (let t = 0; t < 10; t++) await h.sample(t * 1000);
  expect(h.rates().at).toEqual([7, 8, 9]);
});

test("endpoints gone from every kept sample are forgotten; the others' rates stay right", async () => {
  const many = Array.from({ length: 1100 }, (_, i) => row(`e${i}`, "n", i, 0));
  const h = history([many, [row("e5", "n", 15, 0)], [row("e5", "n", 25, 0)], [row("e5", "n", 45, 0)]], 2);
  for (const t of [0, 1000, 2000, 3000]) await h.sample(t);
  const r = h.rates();
  expect(Object.keys(r.endpoints)).toEqual(["e5"]);
  expect(r.endpoints.e5?.sent).toEqual([20]);
  expect(Object.keys(r.totals)).toEqual(["e5"]);
});
