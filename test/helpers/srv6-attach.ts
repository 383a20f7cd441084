/** Attaches the SRv6 carrier (bpf/srv6.bpf.c, in the port object) to a device of the namespace
 * it runs in, with the given addresses as the cluster's nodes, until it is killed (its links go
 * with it): `ip netns exec NS bun srv6-attach.ts DEV NODE_ADDR...`. Prints "ready". */
import { loadObject } from "../../src/datapath/objects";
import { encodeVtep, encodeVtepKey } from "../../src/datapath/port-maps";
import { getLink } from "../../src/netlink";
import { BPF_ATTACH, linkCreate } from "../../src/sys/bpf";

const [dev, ...nodes] = process.argv.slice(2);
const link = getLink(dev as string);
if (!link) throw new Error(`no device ${dev}`);
const obj = loadObject("port");
for (const n of nodes) obj.map("stm_vteps").update(encodeVtepKey(n), encodeVtep({ self: false }));
const fds = [
  linkCreate(obj.program("stm_srv6_in").fd, link.index, BPF_ATTACH.TCX_INGRESS),
  linkCreate(obj.program("stm_srv6_out").fd, link.index, BPF_ATTACH.TCX_EGRESS),
];
console.log("ready", fds.length);
setInterval(() => {}, 1 << 30);
