/** The address and name servers take one changed endpoint into the network's list they keep
 * (withEndpoint) instead of reading the network again: the list must come out as the store
 * would list it (by name), whatever the change. Checked against a naive rebuild; and the DHCPv4
 * server told of that endpoint alone answers as one told of every endpoint. */
import { expect, test } from "bun:test";
import fc from "fast-check";
import { Dhcp4Server } from "../../src/dhcp/server4";
import { encodeDhcp4 } from "../../src/dhcp/v4";
import { type NetworkSpec, profileMac, validateNetwork } from "../../src/model/network";
import { withEndpoint } from "../../src/services/addressing";
import { SqliteStore } from "../../src/store/sqlite";
import type { Endpoint } from "../../src/store/store";
import { clientMessage } from "../helpers/dhcp4";

const ep = (name: string, ip = "10.0.0.2"): Endpoint =>
  ({ name, network: "n", ip, mac: "02:00:00:01:00:02", hostIndex: 1, kind: "tap", hostIf: name }) as Endpoint;

test("withEndpoint: replace, add or remove one endpoint, the list stays by name, the input untouched", () => {
  const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,6}$/);
  fc.assert(
    fc.property(fc.uniqueArray(name, { maxLength: 40 }), name, fc.boolean(), (names, changed, present) => {
      const list = [...names].sort().map((n) => ep(n));
      const copy = list.map((e) => e.name);
      const e = present ? ep(changed, "10.0.0.99") : null;
      const out = withEndpoint(list, changed, e);
      const want = [...names.filter((n) => n !== changed), ...(present ? [changed] : [])].sort();
      expect(out.map((x) => x.name)).toEqual(want);
      if (present) expect(out.find((x) => x.name === changed)?.ip).toBe("10.0.0.99");
      expect(list.map((x) => x.name)).toEqual(copy);
    }),
    { numRuns: 500 },
  );
});

test("the DHCPv4 server told of one endpoint at a time answers as one told of every endpoint each time", () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ index: fc.integer({ min: 2, max: 12 }), attach: fc.boolean() }), { maxLength: 30 }),
      (ops) => {
        const store = new SqliteStore(":memory:");
        store.createNetwork(validateNetwork({ name: "n", cidr: "10.30.0.0/24", gateway: "10.30.0.1" } as NetworkSpec));
        const id = store.getNetwork("n")?.id as number;
        const full = new Dhcp4Server({ store, bridge: "none" });
        const one = new Dhcp4Server({ store, bridge: "none" });
        const nets = () => store.listNetworks();
        full.update(nets(), []);
        one.update(nets(), []);
        const discover = (mac: string) => encodeDhcp4(clientMessage(mac, { xid: 7 }));
        for (const op of ops) {
          const name = `e${op.index}`;
          const before = store.getEndpoint(name) ?? undefined;
          if (op.attach && !before)
            store.claimEndpoint({
              name,
              network: "n",
              ip: `10.30.0.${op.index + 1}`,
              mac: profileMac(id, op.index),
              hostIndex: op.index,
              kind: "tap",
              hostIf: `t${op.index}`,
            });
          else if (!op.attach && before) store.releaseEndpoint(name);
          else continue;
          full.update(nets(), store.listEndpoints());
          one.updateEndpoint(nets(), before, store.getEndpoint(name) ?? undefined);
          for (let i = 2; i <= 12; i++) {
            const q = discover(profileMac(id, i));
            expect(JSON.stringify(one.handle(q)?.out)).toBe(JSON.stringify(full.handle(q)?.out));
          }
        }
        store.close();
      },
    ),
    { numRuns: 100 },
  );
});
