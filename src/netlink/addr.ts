/** Interface addresses (IPv4 and IPv6) over rtnetlink. */
import { bytesToIp, decodeIfAddr, encodeIfAddr, ipToBytes, MessageBuilder, parseCidr } from "./codec";
import { NL } from "./constants";
import { type LinkRef, linkIndex } from "./link";
import { type Rtnl, rtnl } from "./rtnl";

export interface Address {
  index: number;
  family: number;
  /** "10.0.0.1/24" or "fd00::1/64". */
  cidr: string;
  ip: string;
  prefixLen: number;
  scope: number;
  flags: number;
  label?: string;
  /** IFA_PROTO: who added it (0: not said). */
  proto: number;
}

/** IFA_PROTO of the addresses Stratum adds: it garbage-collects only its own, never an
 * operator's (the node's own address on the user bridge, for instance). */
export const STRATUM_ADDR_PROTO = 0x53;
/** IFA_PROTO of a gateway group's VIP: added and removed by the HA engine only (the reconcile
 * of the networks' gateway addresses leaves it be). */
export const VIP_ADDR_PROTO = 0x56;

export function decodeAddress(payload: Buffer): Address {
  const { hdr, attrs } = decodeIfAddr(payload);
  const raw = attrs.get(NL.IFA_LOCAL) ?? attrs.get(NL.IFA_ADDRESS);
  const ip = raw ? bytesToIp(raw) : "";
  return {
    index: hdr.index,
    family: hdr.family,
    ip,
    prefixLen: hdr.prefixLen,
    cidr: `${ip}/${hdr.prefixLen}`,
    scope: hdr.scope,
    flags: attrs.u32(NL.IFA_FLAGS) ?? hdr.flags,
    label: attrs.str(NL.IFA_LABEL),
    proto: attrs.u8(NL.IFA_PROTO) ?? 0,
  };
}

function addrMsg(
  type: number,
  flags: number,
  dev: LinkRef,
  cidr: string,
  o: { noDad?: boolean; proto?: number },
  nl: Rtnl,
) {
  const { ip, prefixLen, family } = parseCidr(cidr);
  const index = linkIndex(dev, nl);
  const ifaFlags = o.noDad ? NL.IFA_F_NODAD : 0;
  const b = new MessageBuilder(type, flags, encodeIfAddr({ family, prefixLen, flags: ifaFlags, scope: 0, index }));
  const bytes = ipToBytes(ip);
  b.attr(NL.IFA_LOCAL, bytes);
  b.attr(NL.IFA_ADDRESS, bytes);
  if (ifaFlags) b.u32(NL.IFA_FLAGS, ifaFlags);
  if (o.proto) b.u8(NL.IFA_PROTO, o.proto);
  return b;
}

/** Adds `cidr` to `dev`; `replace` makes it idempotent. `noDad` skips IPv6 duplicate address
 * detection; `proto` tags it (IFA_PROTO) with who added it. */
export function addAddress(
  dev: LinkRef,
  cidr: string,
  o: { replace?: boolean; noDad?: boolean; proto?: number } = {},
  nl: Rtnl = rtnl(),
): void {
  const flags = NL.NLM_F_CREATE | (o.replace ? NL.NLM_F_REPLACE : NL.NLM_F_EXCL);
  nl.do(addrMsg(NL.RTM_NEWADDR, flags, dev, cidr, o, nl), `add address ${cidr} to ${dev}`);
}

export function deleteAddress(dev: LinkRef, cidr: string, nl: Rtnl = rtnl()): void {
  nl.do(addrMsg(NL.RTM_DELADDR, 0, dev, cidr, {}, nl), `delete address ${cidr} from ${dev}`);
}

/** Addresses of every link, or of `dev` only; `family` filters v4/v6. */
export function listAddresses(o: { dev?: LinkRef; family?: number } = {}, nl: Rtnl = rtnl()): Address[] {
  const index = o.dev === undefined ? 0 : linkIndex(o.dev, nl);
  const b = new MessageBuilder(
    NL.RTM_GETADDR,
    0,
    encodeIfAddr({ family: o.family ?? NL.AF_UNSPEC, prefixLen: 0, flags: 0, scope: 0, index: 0 }),
  );
  return nl
    .dump(b, "list addresses")
    .map((m) => decodeAddress(m.payload))
    .filter((a) => (index === 0 || a.index === index) && (o.family === undefined || a.family === o.family));
}
