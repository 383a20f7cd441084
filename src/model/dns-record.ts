/** The user's DNS records of a network's zone and every rule one must pass before it is
 * stored: owner inside the zone, valid labels, a value of its type, a TTL in range, and no
 * clash with CNAMEs, endpoints' own addresses or the server's built-in names. Pure. */
import { StratumError } from "../errors";
import { formatIp, parseIp } from "./ip";

export const DNS_RECORD_TYPES = ["A", "AAAA", "CNAME", "TXT", "SRV", "MX"] as const;
export type DnsRecordType = (typeof DNS_RECORD_TYPES)[number];

export interface DnsRecordSpec {
  name: string;
  type: string;
  value: string;
  ttl?: number;
}

/** Validated: `name` is the owner relative to the zone, lower-case, "@" for the apex; `value` canonical text
 *  (A/AAAA canonical IP; CNAME/MX-exchange/SRV-target as absolute names without trailing dot, lower-case;
 *  TXT the text; SRV "priority weight port target"; MX "preference exchange"). */
export interface DnsRecord {
  name: string;
  type: DnsRecordType;
  value: string;
  ttl: number;
}

export const DEFAULT_DNS_TTL = 300;
/** A week: longer TTLs only make mistakes outlive their fix. */
export const MAX_DNS_TTL = 604800;
/** Names the server itself answers in every zone (the NS host and the gateway): they carry the
 * gateway's addresses, so user A/AAAA/CNAME records there would contradict them. */
export const RESERVED_DNS_NAMES = ["ns", "gateway"] as const;
/** TXT text is split into 255-byte strings on the wire; this bounds the whole value so one
 * record cannot push every answer of its name to TCP. */
export const MAX_TXT_BYTES = 4000;

const LABEL_RE = /^[a-z0-9_-]{1,63}$/;
const MAX_NAME = 253;

function checkLabels(abs: string, what: string, fix: string): void {
  if (abs.length > MAX_NAME)
    throw new StratumError("INVALID", `${what} "${abs}" is longer than ${MAX_NAME} characters: ${fix}`);
  for (const label of abs.split("."))
    if (!LABEL_RE.test(label))
      throw new StratumError(
        "INVALID",
        label === ""
          ? `${what} "${abs}" has an empty label: ${fix}`
          : `${what} "${abs}": label "${label}" must be 1-63 letters, digits, '-' or '_'`,
      );
}

/** The owner `name` relative to `zone` ("@" for the apex). Accepts "api", "_http._tcp",
 * "api.<zone>" and "api.<zone>." (a name that already ends in the zone is not appended to it
 * again: nobody means "api.app-net.internal.app-net.internal"). */
export function relativeOwner(zone: string, name: string): string {
  const z = zone.toLowerCase().replace(/\.$/, "");
  const n = name.trim().toLowerCase();
  const fix = `give a name relative to zone ${z} (like "api" or "_http._tcp", "@" for the apex)`;
  if (n === "") throw new StratumError("INVALID", `DNS record name is empty: ${fix}`);
  if (n === "@" || n === z || n === `${z}.`) return "@";
  let rel: string;
  if (n.endsWith(`.${z}.`)) rel = n.slice(0, -(z.length + 2));
  else if (n.endsWith(".")) throw new StratumError("INVALID", `DNS record name "${name}" is outside zone ${z}: ${fix}`);
  else if (n.endsWith(`.${z}`)) rel = n.slice(0, -(z.length + 1));
  else rel = n;
  checkLabels(`${rel}.${z}`, "DNS record name", fix);
  return rel;
}

/** A target name (CNAME, MX exchange, SRV target) as an absolute name without the trailing
 * dot. "web" (one label) is relative to the zone, "@" the apex; a name with a dot is taken
 * as absolute ("example.com"), with or without the trailing dot. "." only where `rootOk`
 * (the null MX of RFC 7505, the "no service" SRV target of RFC 2782). */
function targetName(zone: string, raw: string, what: string, rootOk: boolean): string {
  const n = raw.trim().toLowerCase();
  if (n === ".") {
    if (rootOk) return ".";
    throw new StratumError("INVALID", `${what} "." is not a host name: give a name like "web" or "example.com"`);
  }
  if (n === "") throw new StratumError("INVALID", `${what} is empty: give a name like "web" or "example.com"`);
  const abs = n === "@" ? zone : n.endsWith(".") ? n.slice(0, -1) : n.includes(".") ? n : `${n}.${zone}`;
  checkLabels(abs, what, `give a host name like "web" (in ${zone}) or "example.com"`);
  return abs;
}

function u16(text: string | undefined, what: string, usage: string): number {
  if (text === undefined || !/^\d{1,5}$/.test(text) || Number(text) > 65535)
    throw new StratumError("INVALID", `${what} "${text ?? ""}" is not a number 0-65535: the value is ${usage}`);
  return Number(text);
}

function canonicalValue(zone: string, type: DnsRecordType, raw: string): string {
  const v = raw.trim();
  switch (type) {
    case "A":
    case "AAAA": {
      const fam = type === "A" ? 4 : 6;
      let ip: ReturnType<typeof parseIp> | undefined;
      try {
        ip = parseIp(v);
      } catch {}
      if (!ip || ip.family !== fam)
        throw new StratumError("INVALID", `${type} record value "${raw}" is not an IPv${fam} address`);
      return formatIp(ip);
    }
    case "CNAME":
      return targetName(zone, v, "CNAME target", false);
    case "TXT": {
      // TXT keeps the text as given (spaces and case matter to whoever reads it).
      const bytes = Buffer.byteLength(raw);
      if (bytes > MAX_TXT_BYTES)
        throw new StratumError("INVALID", `TXT record value is ${bytes} bytes: at most ${MAX_TXT_BYTES}`);
      return raw;
    }
    case "SRV": {
      const usage = `"priority weight port target", e.g. "10 5 8080 web"`;
      const f = v.split(/\s+/);
      if (f.length !== 4) throw new StratumError("INVALID", `SRV record value "${raw}" must be ${usage}`);
      const [p, w, port] = [
        u16(f[0], "SRV priority", usage),
        u16(f[1], "SRV weight", usage),
        u16(f[2], "SRV port", usage),
      ];
      return `${p} ${w} ${port} ${targetName(zone, f[3] as string, "SRV target", true)}`;
    }
    case "MX": {
      const usage = `"preference exchange", e.g. "10 mail"`;
      const f = v.split(/\s+/);
      if (f.length !== 2) throw new StratumError("INVALID", `MX record value "${raw}" must be ${usage}`);
      return `${u16(f[0], "MX preference", usage)} ${targetName(zone, f[1] as string, "MX exchange", true)}`;
    }
  }
}

/** Validates a record of `zone` against the zone's records and the network's endpoint names. */
export function validateDnsRecord(
  zone: string,
  spec: DnsRecordSpec,
  existing: DnsRecord[],
  endpointNames: string[],
): DnsRecord {
  const z = zone.toLowerCase().replace(/\.$/, "");
  const type = String(spec.type ?? "")
    .trim()
    .toUpperCase() as DnsRecordType;
  if (!(DNS_RECORD_TYPES as readonly string[]).includes(type))
    throw new StratumError(
      "INVALID",
      `DNS record type "${spec.type}" is not supported: use one of ${DNS_RECORD_TYPES.join(", ")}`,
    );
  const name = relativeOwner(z, String(spec.name ?? ""));
  const ttl = spec.ttl ?? DEFAULT_DNS_TTL;
  if (!Number.isInteger(ttl) || ttl < 0 || ttl > MAX_DNS_TTL)
    throw new StratumError("INVALID", `DNS record TTL ${ttl} is outside 0-${MAX_DNS_TTL} seconds`);
  const value = canonicalValue(z, type, String(spec.value ?? ""));
  const owner = name === "@" ? z : `${name}.${z}`;

  if (type === "CNAME" && name === "@")
    throw new StratumError(
      "INVALID",
      `a CNAME cannot be at the zone apex (${z} holds the SOA and NS records): use A/AAAA records there`,
    );
  if (type === "CNAME" && value === owner)
    throw new StratumError("INVALID", `CNAME ${owner} points to itself: give another target`);

  const builtIn = (RESERVED_DNS_NAMES as readonly string[]).includes(name);
  const endpoint = endpointNames.some((e) => e.toLowerCase() === name);
  if ((builtIn || endpoint) && (type === "A" || type === "AAAA" || type === "CNAME"))
    throw new StratumError(
      "INVALID",
      builtIn
        ? `${owner} is the server's own name for the gateway: choose another name for the ${type} record`
        : `${owner} is endpoint ${name}'s own name (its A/AAAA come from the endpoint): choose another name for the ${type} record`,
    );

  const same = existing.filter((r) => r.name === name);
  if (same.some((r) => r.type === type && r.value === value))
    throw new StratumError("INVALID", `${owner} already has this ${type} record (${value})`);
  const cname = same.find((r) => r.type === "CNAME");
  if (cname)
    throw new StratumError(
      "INVALID",
      `${owner} is a CNAME to ${cname.value}: a CNAME cannot share its name with other records; delete it first or choose another name`,
    );
  if (type === "CNAME" && same.length)
    throw new StratumError(
      "INVALID",
      `${owner} already has ${[...new Set(same.map((r) => r.type))].join("/")} records: a CNAME cannot share its name with other records; delete them first or choose another name`,
    );
  return { name, type, value, ttl };
}
