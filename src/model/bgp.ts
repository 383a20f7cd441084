/** The gateway's BGP speaker as the operator sets it: the node's own AS and router id, and its
 * peers (the operator's routers). Every rule a value must pass before it is stored. Pure. */
import { StratumError } from "../errors";
import { formatIp, parseIp } from "./ip";

export interface BgpConfig {
  asn: number;
  /** Dotted quad; null: the node's first IPv4 address toward its first peer is used. */
  routerId: string | null;
  /** Seconds the peers keep this node's routes while its agent restarts (RFC 4724); 0: off. */
  restartTime: number;
  /** Install a default route (IPv4, IPv6) a peer announces, in the main table, proto bgp. */
  importDefault: boolean;
}

export interface BgpPeer {
  name: string;
  address: string;
  asn: number;
  /** Proposed hold time (s): 0 (no keepalives), or 3 and more. */
  holdTime: number;
  /** TCP MD5 (RFC 2385): the file holding the key (absolute path; read when the session
   * starts, never stored), or null. */
  passwordFile: string | null;
}

export const DEFAULT_HOLD_TIME = 90;
export const DEFAULT_RESTART_TIME = 120;
/** RFC 4724: the restart time is 12 bits. */
export const MAX_RESTART_TIME = 4095;
/** RFC 6793's stand-in for a 4-byte AS: no speaker has it as its own. */
const AS_TRANS = 23456;
const PEER_NAME_RE = /^[a-z0-9][a-z0-9-]{0,31}$/;

function asn(v: unknown, what: string): number {
  const n = typeof v === "string" && /^\d+$/.test(v.trim()) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 4_294_967_294 || n === AS_TRANS)
    throw new StratumError(
      "INVALID",
      `${what} ${JSON.stringify(v)}: an AS number is 1 to 4294967294 (not 23456, AS_TRANS); private ones are 64512-65534 and 4200000000-4294967294`,
    );
  return n;
}

export function validateBgpConfig(i: {
  asn: unknown;
  routerId?: unknown;
  restartTime?: unknown;
  importDefault?: unknown;
}): BgpConfig {
  let routerId: string | null = null;
  if (i.routerId !== undefined && i.routerId !== null && i.routerId !== "") {
    const ip = parseIp(String(i.routerId));
    if (ip.family !== 4 || ip.value === 0n)
      throw new StratumError("INVALID", `router id "${i.routerId}": an IPv4 address other than 0.0.0.0`);
    routerId = formatIp(ip);
  }
  const rt = i.restartTime ?? DEFAULT_RESTART_TIME;
  if (typeof rt !== "number" || !Number.isInteger(rt) || rt < 0 || rt > MAX_RESTART_TIME)
    throw new StratumError(
      "INVALID",
      `restart time ${JSON.stringify(rt)}: 0 (no graceful restart) to ${MAX_RESTART_TIME} s`,
    );
  if (i.importDefault !== undefined && typeof i.importDefault !== "boolean")
    throw new StratumError("INVALID", `importDefault: true or false, not ${JSON.stringify(i.importDefault)}`);
  return { asn: asn(i.asn, "AS"), routerId, restartTime: rt, importDefault: i.importDefault === true };
}

export function validateBgpPeer(
  i: { name: unknown; address: unknown; asn: unknown; holdTime?: unknown; passwordFile?: unknown },
  existing: readonly BgpPeer[],
): BgpPeer {
  const name = String(i.name ?? "");
  if (!PEER_NAME_RE.test(name))
    throw new StratumError(
      "INVALID",
      `peer name "${name}": 1 to 32 of a-z, 0-9 and -, starting with a letter or digit`,
    );
  const ip = parseIp(String(i.address ?? ""));
  const address = formatIp(ip);
  const unusable =
    ip.value === 0n ||
    (ip.family === 4 && (ip.value >> 24n === 127n || ip.value >> 28n === 0xen)) ||
    (ip.family === 6 && (ip.value === 1n || ip.value >> 120n === 0xffn));
  if (unusable) throw new StratumError("INVALID", `peer address ${address}: a unicast address of the router`);
  const hold = i.holdTime ?? DEFAULT_HOLD_TIME;
  if (typeof hold !== "number" || !Number.isInteger(hold) || hold < 0 || hold > 65535 || hold === 1 || hold === 2)
    throw new StratumError("INVALID", `hold time ${JSON.stringify(hold)}: 0 (no keepalives) or 3 to 65535 s`);
  if (existing.some((p) => p.name === name)) throw new StratumError("CONFLICT", `a BGP peer named ${name} exists`);
  const same = existing.find((p) => p.address === address);
  if (same) throw new StratumError("CONFLICT", `BGP peer ${same.name} has the address ${address} already`);
  let passwordFile: string | null = null;
  if (i.passwordFile !== undefined && i.passwordFile !== null && i.passwordFile !== "") {
    passwordFile = String(i.passwordFile);
    if (!passwordFile.startsWith("/"))
      throw new StratumError("INVALID", `password file "${passwordFile}": an absolute path (the agent reads it)`);
  }
  return { name, address, asn: asn(i.asn, "peer AS"), holdTime: hold, passwordFile };
}
