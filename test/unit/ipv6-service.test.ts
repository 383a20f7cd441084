/** The IPv6 service's behaviour without sockets: it accepts state before it starts, and a start
 * that cannot happen fails with a StratumError that says where, leaving nothing open. (Its traffic
 * is tested against real kernels in test/e2e/ipv6-service.test.ts.) */
import { describe, expect, test } from "bun:test";
import { Ipv6Service } from "../../src/dhcp/ipv6-service";
import { StratumError } from "../../src/errors";
import { linkLocal, profileIp6 } from "../../src/model/network";

const NET = {
  name: "net1",
  cidr6: "fd00:77::/64",
  gateway6: "fd00:77::1",
  mtu: 1400,
  dnsZone: "net1.internal",
  leaseTime: 3600,
};
const MAC = "02:00:01:00:00:05";

describe("Ipv6Service", () => {
  test("takes networks and bindings before it starts, and reports zero counters", () => {
    const svc = new Ipv6Service({ bridge: "stm-none0", log: () => {} });
    svc.update(
      [NET],
      [{ endpoint: "web-1", network: "net1", mac: MAC, ip6: profileIp6(NET.cidr6, MAC), linkLocal: linkLocal(MAC) }],
    );
    expect(svc.stats()).toEqual({
      raSent: 0,
      rsReceived: 0,
      rsIgnored: 0,
      dhcp6: { received: 0, replies: {}, ignored: 0, malformed: 0, relayRefused: 0 },
    });
    expect(svc.leases()).toEqual([]);
    svc.close();
    svc.close();
  });

  test("a missing bridge fails start() with SYS and the bridge's name", async () => {
    const svc = new Ipv6Service({ bridge: "stm-none0", log: () => {} });
    const err = await svc.start().then(
      () => null,
      (e) => e,
    );
    expect(err).toBeInstanceOf(StratumError);
    expect(err.code).toBe("SYS");
    expect(err.errnoName).toBe("ENODEV");
    expect(err.message).toContain("start IPv6 address service on stm-none0");
    svc.close();
  });
});
