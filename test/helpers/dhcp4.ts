/** A DHCPv4 client's message, as the server's and the codec's tests send it: BOOTREQUEST from
 * `mac`, a DISCOVER unless `over` says otherwise. */
import { DHCP4, type Dhcp4Message, enc, OPT } from "../../src/dhcp/v4";

export function clientMessage(mac: string, over: Partial<Dhcp4Message> = {}): Dhcp4Message {
  const chaddr = new Uint8Array(16);
  chaddr.set(mac.split(":").map((x) => Number.parseInt(x, 16)));
  return {
    op: 1,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: 0x12345678,
    secs: 0,
    flags: 0,
    ciaddr: "0.0.0.0",
    yiaddr: "0.0.0.0",
    siaddr: "0.0.0.0",
    giaddr: "0.0.0.0",
    chaddr,
    sname: "",
    file: "",
    options: new Map([[OPT.MSG_TYPE, enc.u8(DHCP4.DISCOVER)]]),
    ...over,
  };
}
