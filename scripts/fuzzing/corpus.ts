/** Fuzz corpus for the node's DHCPv4, DHCPv6 and DNS servers: valid seed packets of every
 * message the servers answer, generic mutators (bit flips, byte sets, truncation, extension,
 * chunk insert/delete/duplicate, splices, length fields made larger than the rest) and
 * structure-aware generators for the classic parser attacks (DNS compression-pointer loops,
 * oversized names, DHCP option overload with nested overload or no END, thousands of tiny
 * options, nesting past the limit), plus plain random bytes. Everything is a pure function
 * of the seed: `mutatedPackets(kind, seed, count)` yields the same packets on every run. */
import { parseIp } from "../../src/model/ip";

export type Kind = "dhcp4" | "dhcp6" | "dns";
export const KINDS: readonly Kind[] = ["dhcp4", "dhcp6", "dns"];

/** Who the packets are about: the attached endpoint and its network. */
export interface Target {
  /** The endpoint's MAC: chaddr, DUID and link-local of the seeds. */
  mac: string;
  ip4: string;
  ip6: string;
  gateway4: string;
  gateway6: string;
  /** The network's DNS zone ("fz.internal") and the endpoint's name in it. */
  zone: string;
  host: string;
  /** ciaddr of the DHCPv4 seeds that want an answer back (the fuzzer listens there). */
  ciaddr: string;
  /** The DHCPv6 server's DUID, so REQUEST/RENEW/RELEASE seeds are addressed to it. */
  serverDuid?: Uint8Array;
  /** Longest packet to yield (a tap frame holds 1452 bytes of UDP payload). */
  maxLen: number;
}

export const DEFAULT_TARGET: Target = {
  mac: "02:00:01:00:00:01",
  ip4: "10.90.0.2",
  ip6: "fd90::1ff:fe00:1",
  gateway4: "10.90.0.1",
  gateway6: "fd90::1",
  zone: "fz.internal",
  host: "ep",
  ciaddr: "127.0.0.1",
  maxLen: 65507,
};

// ---- deterministic PRNG (sfc32 seeded through splitmix32) --------------------------------------

export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  constructor(seed: number | string) {
    let h = 0;
    if (typeof seed === "string") {
      h = 0x811c9dc5;
      for (let i = 0; i < seed.length; i++) h = Math.imul(h ^ seed.charCodeAt(i), 0x01000193);
    } else h = (Math.floor(seed) >>> 0) ^ (Math.floor(seed / 2 ** 32) >>> 0);
    const next = (): number => {
      h = (h + 0x9e3779b9) | 0;
      let z = h;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.#a = next();
    this.#b = next();
    this.#c = next();
    this.#d = next();
    for (let i = 0; i < 12; i++) this.u32();
  }

  u32(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#c = (this.#c + t) | 0;
    return t >>> 0;
  }
  /** Uniform in [0, n). */
  int(n: number): number {
    return Math.floor((this.u32() / 4294967296) * n);
  }
  /** Uniform in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.u32() / 4294967296 < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)] as T;
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const v = this.u32();
      b[i] = v;
      if (i + 1 < n) b[i + 1] = v >>> 8;
      if (i + 2 < n) b[i + 2] = v >>> 16;
      if (i + 3 < n) b[i + 3] = v >>> 24;
    }
    return b;
  }
  /** Small sizes more often than large ones: 0..max, log-uniform-ish. */
  size(max: number): number {
    const bits = this.int(Math.ceil(Math.log2(max + 1)) + 1);
    return Math.min(max, this.int(2 ** bits));
  }
}

// ---- a byte builder that remembers its length fields ---------------------------------------------

/** A length field of a seed: mutators make it larger than what follows. */
export interface Field {
  off: number;
  width: 1 | 2;
}

export interface Seed {
  name: string;
  bytes: Uint8Array;
  fields: Field[];
}

class B {
  readonly a: number[] = [];
  readonly fields: Field[] = [];
  readonly #open = new Map<number, 1 | 2>();
  get pos(): number {
    return this.a.length;
  }
  u8(...xs: number[]): this {
    for (const x of xs) this.a.push(x & 0xff);
    return this;
  }
  u16(x: number): this {
    this.a.push((x >>> 8) & 0xff, x & 0xff);
    return this;
  }
  u32(x: number): this {
    this.a.push((x >>> 24) & 0xff, (x >>> 16) & 0xff, (x >>> 8) & 0xff, x & 0xff);
    return this;
  }
  raw(b: ArrayLike<number>): this {
    for (let i = 0; i < b.length; i++) this.a.push((b[i] as number) & 0xff);
    return this;
  }
  zeros(n: number): this {
    for (let i = 0; i < n; i++) this.a.push(0);
    return this;
  }
  /** A length field filled in by `end` with the byte count written in between. */
  len(width: 1 | 2): number {
    const off = this.a.length;
    this.fields.push({ off, width });
    this.#open.set(off, width);
    this.zeros(width);
    return off;
  }
  end(off: number): this {
    const width = this.#open.get(off) as 1 | 2;
    this.#open.delete(off);
    const n = this.a.length - off - width;
    if (width === 1) this.a[off] = Math.min(n, 255);
    else {
      this.a[off] = (n >>> 8) & 0xff;
      this.a[off + 1] = n & 0xff;
    }
    return this;
  }
  /** A field whose value is set by hand but is a length all the same (counts, rdlength). */
  mark(width: 1 | 2, value: number): this {
    this.fields.push({ off: this.a.length, width });
    return width === 1 ? this.u8(value) : this.u16(value);
  }
  set(off: number, bytes: ArrayLike<number>, fields: Field[] = []): this {
    for (let i = 0; i < bytes.length; i++) this.a[off + i] = (bytes[i] as number) & 0xff;
    for (const f of fields) if (f.off + f.width <= bytes.length) this.fields.push({ off: off + f.off, width: f.width });
    return this;
  }
  seed(name: string): Seed {
    return { name, bytes: Uint8Array.from(this.a), fields: this.fields };
  }
  out(): Uint8Array {
    return Uint8Array.from(this.a);
  }
}

const macBytes = (mac: string): number[] => mac.split(":").map((x) => Number.parseInt(x, 16));
const ip4Bytes = (ip: string): number[] => ip.split(".").map(Number);
function ip6Bytes(ip: string): number[] {
  const v = parseIp(ip).value;
  const out: number[] = [];
  for (let i = 15; i >= 0; i--) out.push(Number((v >> BigInt(8 * i)) & 0xffn));
  return out;
}
const ascii = (s: string): number[] => Array.from(s, (c) => c.charCodeAt(0) & 0xff);

// ---- DHCPv4 -------------------------------------------------------------------------------------

const DHCP_COOKIE = [99, 130, 83, 99];

interface D4 {
  op?: number;
  htype?: number;
  hlen?: number;
  xid?: number;
  flags?: number;
  ciaddr?: string;
  yiaddr?: string;
  giaddr?: string;
  chaddr: number[];
  sname?: B;
  file?: B;
  cookie?: boolean;
  options: (b: B) => void;
}

function opt4(b: B, code: number, value: ArrayLike<number>): B {
  b.u8(code);
  const l = b.len(1);
  b.raw(value);
  return b.end(l);
}

function dhcp4(o: D4): B {
  const b = new B();
  b.u8(o.op ?? 1, o.htype ?? 1, o.hlen ?? 6, 0);
  b.u32(o.xid ?? 0x3903f326);
  b.u16(0).u16(o.flags ?? 0);
  b.raw(ip4Bytes(o.ciaddr ?? "0.0.0.0"));
  b.raw(ip4Bytes(o.yiaddr ?? "0.0.0.0"));
  b.raw(ip4Bytes("0.0.0.0"));
  b.raw(ip4Bytes(o.giaddr ?? "0.0.0.0"));
  const ch = new Array(16).fill(0);
  o.chaddr.forEach((x, i) => {
    ch[i] = x;
  });
  b.raw(ch);
  b.zeros(64 + 128);
  if (o.sname) b.set(44, o.sname.a.slice(0, 64), o.sname.fields);
  if (o.file) b.set(108, o.file.a.slice(0, 128), o.file.fields);
  b.raw(o.cookie === false ? [0, 0, 0, 0] : DHCP_COOKIE);
  o.options(b);
  return b;
}

const PRL = [1, 3, 6, 12, 15, 26, 28, 42, 51, 54, 58, 59, 119, 121];

function dhcp4Seeds(t: Target): Seed[] {
  const mac = macBytes(t.mac);
  const cid = [1, ...mac];
  const common = (b: B, type: number) => {
    opt4(b, 53, [type]);
    opt4(b, 61, cid);
    opt4(b, 57, [0x05, 0xdc]);
    opt4(b, 55, PRL);
    opt4(b, 12, ascii(`${t.host}-host`));
  };
  const seeds: Seed[] = [];
  const add = (name: string, o: D4) => seeds.push(dhcp4(o).seed(name));
  add("discover", {
    chaddr: mac,
    ciaddr: t.ciaddr,
    options: (b) => {
      common(b, 1);
      b.u8(255);
    },
  });
  add("discover-broadcast", {
    chaddr: mac,
    flags: 0x8000,
    options: (b) => {
      common(b, 1);
      opt4(b, 50, ip4Bytes(t.ip4));
      b.u8(255);
    },
  });
  add("request-selecting", {
    chaddr: mac,
    ciaddr: t.ciaddr,
    options: (b) => {
      common(b, 3);
      opt4(b, 50, ip4Bytes(t.ip4));
      opt4(b, 54, ip4Bytes(t.gateway4));
      b.u8(255);
    },
  });
  add("request-wrong-address", {
    chaddr: mac,
    options: (b) => {
      common(b, 3);
      opt4(b, 50, [10, 90, 0, 200]);
      b.u8(255);
    },
  });
  add("request-renewing", {
    chaddr: mac,
    ciaddr: t.ip4,
    options: (b) => {
      common(b, 3);
      b.u8(255);
    },
  });
  add("inform", {
    chaddr: mac,
    ciaddr: t.ciaddr,
    options: (b) => {
      common(b, 8);
      b.u8(255);
    },
  });
  add("release", {
    chaddr: mac,
    ciaddr: t.ip4,
    options: (b) => {
      opt4(b, 53, [7]);
      opt4(b, 54, ip4Bytes(t.gateway4));
      opt4(b, 61, cid);
      b.u8(255);
    },
  });
  add("decline", {
    chaddr: mac,
    options: (b) => {
      opt4(b, 53, [4]);
      opt4(b, 50, ip4Bytes(t.ip4));
      opt4(b, 54, ip4Bytes(t.gateway4));
      b.u8(255);
    },
  });
  add("relay-agent-82", {
    chaddr: mac,
    ciaddr: t.ciaddr,
    options: (b) => {
      common(b, 1);
      b.u8(82);
      const l = b.len(1);
      opt4(b, 1, ascii("eth0/1/2"));
      opt4(b, 2, mac);
      b.end(l);
      b.u8(255);
    },
  });
  add("relayed-giaddr", {
    chaddr: mac,
    giaddr: "10.90.0.254",
    options: (b) => {
      common(b, 1);
      b.u8(255);
    },
  });
  add("unknown-mac", {
    chaddr: [0x02, 0xde, 0xad, 0xbe, 0xef, 0x01],
    ciaddr: t.ciaddr,
    options: (b) => {
      common(b, 1);
      b.u8(255);
    },
  });
  add("bootp", { chaddr: mac, options: (b) => b.u8(255) });
  add("bootreply", {
    op: 2,
    chaddr: mac,
    options: (b) => {
      opt4(b, 53, [2]);
      b.u8(255);
    },
  });
  add("small-max-size", {
    chaddr: mac,
    ciaddr: t.ciaddr,
    options: (b) => {
      opt4(b, 53, [1]);
      opt4(b, 57, [0, 1]);
      opt4(
        b,
        55,
        Array.from({ length: 255 }, (_, i) => i + 1),
      );
      b.u8(255);
    },
  });
  add("long-option-split", {
    chaddr: mac,
    ciaddr: t.ciaddr,
    options: (b) => {
      opt4(b, 53, [1]);
      opt4(b, 12, ascii("x".repeat(255)));
      opt4(b, 12, ascii("y".repeat(100)));
      opt4(b, 55, [1, 3]);
      opt4(b, 55, [6, 121]);
      b.u8(255);
    },
  });
  // Option overload (52): options continue in file (1), sname (2) or both (3).
  for (const v of [1, 2, 3]) {
    const file = new B();
    opt4(file, 53, [1]);
    opt4(file, 61, cid);
    file.u8(255);
    const sname = new B();
    opt4(sname, 12, ascii("in-sname"));
    opt4(sname, 55, PRL);
    sname.u8(255);
    add(`overload-${v}`, {
      chaddr: mac,
      ciaddr: t.ciaddr,
      file: v & 1 ? file : undefined,
      sname: v & 2 ? sname : undefined,
      options: (b) => {
        opt4(b, 52, [v]);
        if (!(v & 1)) opt4(b, 53, [1]);
        b.u8(255);
      },
    });
  }
  add("overload-no-end", {
    chaddr: mac,
    ciaddr: t.ciaddr,
    file: (() => {
      const f = new B();
      opt4(f, 53, [3]);
      opt4(f, 50, ip4Bytes(t.ip4));
      opt4(f, 12, ascii("z".repeat(128 - 2 - 3 - 6 - 2)));
      return f;
    })(),
    options: (b) => opt4(b, 52, [1]),
  });
  add("no-end", {
    chaddr: mac,
    ciaddr: t.ciaddr,
    options: (b) => common(b, 1),
  });
  return seeds;
}

/** Structure-aware DHCPv4 packets: overload tricks, tiny-option floods, lengths past the end. */
function dhcp4Special(r: Rng, t: Target): Uint8Array {
  const mac = r.chance(0.8) ? macBytes(t.mac) : Array.from(r.bytes(6));
  const ciaddr = r.chance(0.5) ? t.ciaddr : t.ip4;
  const type = r.pick([1, 3, 8, 1, 3, 7, 4, r.int(256)]);
  switch (r.int(8)) {
    case 0: {
      // Overload whose file/sname hold another 52, or run past their field, or have no END.
      const area = (size: number): B => {
        const a = new B();
        while (a.pos < size - 3) {
          const what = r.int(6);
          if (what === 0) opt4(a, 52, [r.range(0, 4)]);
          else if (what === 1) opt4(a, 53, [type]);
          else if (what === 2) a.u8(r.int(256), r.range(size - a.pos - 1, 255));
          else if (what === 3) a.u8(0);
          else opt4(a, r.int(256), r.bytes(r.int(Math.min(40, size - a.pos - 2))));
        }
        if (r.chance(0.3)) a.u8(255);
        return a;
      };
      return dhcp4({
        chaddr: mac,
        ciaddr,
        file: area(128),
        sname: area(64),
        options: (b) => {
          opt4(b, 52, r.chance(0.8) ? [r.range(0, 4)] : Array.from(r.bytes(r.range(0, 3))));
          if (r.chance(0.3)) opt4(b, 52, [r.range(1, 3)]);
          if (r.chance(0.5)) opt4(b, 53, [type]);
          if (r.chance(0.5)) b.u8(255);
        },
      }).out();
    }
    case 1: {
      // Thousands of tiny options: same code (reassembled, RFC 3396) or all different.
      const n = r.range(500, 5000);
      const code = r.pick([12, 55, 61, 81, 119, 121, 43, 60, r.int(256)]);
      const same = r.chance(0.5);
      return dhcp4({
        chaddr: mac,
        ciaddr,
        options: (b) => {
          opt4(b, 53, [type]);
          for (let i = 0; i < n; i++) {
            const c = same ? code : r.range(1, 254);
            if (c === 52 || c === 255) continue;
            b.u8(c, r.int(2));
            if (b.a[b.a.length - 1]) b.u8(r.range(0x21, 0x7e));
          }
          if (r.chance(0.5)) b.u8(255);
        },
      }).out();
    }
    case 2: {
      // PAD floods and END in odd places.
      return dhcp4({
        chaddr: mac,
        ciaddr,
        options: (b) => {
          b.zeros(r.size(60000));
          opt4(b, 53, [type]);
          if (r.chance(0.5)) b.zeros(r.size(2000));
          if (r.chance(0.5)) b.u8(255);
          if (r.chance(0.5)) b.raw(r.bytes(r.size(300)));
        },
      }).out();
    }
    case 3: {
      // An option whose length runs past the end of the packet.
      return dhcp4({
        chaddr: mac,
        ciaddr,
        options: (b) => {
          opt4(b, 53, [type]);
          b.u8(r.pick([12, 55, 61, 50, 54, 57, 82, 52, 119, 121]), r.range(1, 255));
          b.raw(r.bytes(r.int(20)));
        },
      }).out();
    }
    case 4: {
      // Random option soup after a valid header.
      return dhcp4({
        chaddr: mac,
        ciaddr,
        htype: r.chance(0.9) ? 1 : r.int(256),
        hlen: r.chance(0.9) ? 6 : r.int(256),
        flags: r.chance(0.5) ? 0 : r.u32() & 0xffff,
        options: (b) => {
          const n = r.range(1, 40);
          for (let i = 0; i < n; i++) {
            const c = r.chance(0.3) ? r.pick([50, 51, 52, 53, 54, 55, 57, 61, 82, 12, 81, 119, 121]) : r.int(256);
            const v = r.bytes(r.size(64));
            b.u8(c, r.chance(0.9) ? v.length : r.int(256)).raw(v);
          }
          if (r.chance(0.5)) b.u8(255);
        },
      }).out();
    }
    case 5: {
      // Hostile option values: requested/server addresses of the wrong size, bad types, bad 57.
      return dhcp4({
        chaddr: mac,
        ciaddr: r.chance(0.5) ? ciaddr : r.pick(["0.0.0.0", "255.255.255.255", "127.0.0.1", t.ip4, "224.0.0.1"]),
        flags: r.pick([0, 0x8000, 0xffff]),
        options: (b) => {
          opt4(b, 53, r.chance(0.8) ? [type] : Array.from(r.bytes(r.int(3))));
          opt4(b, 50, Array.from(r.bytes(r.pick([0, 3, 4, 5, 16]))));
          opt4(b, 54, r.chance(0.5) ? ip4Bytes(t.gateway4) : Array.from(r.bytes(r.pick([0, 4, 8]))));
          opt4(b, 57, Array.from(r.bytes(r.pick([0, 1, 2, 2, 4]))));
          opt4(b, 55, Array.from(r.bytes(r.size(255))));
          opt4(b, 12, Array.from(r.bytes(r.size(255))));
          b.u8(255);
        },
      }).out();
    }
    case 6: {
      // Short and header-only packets, bad magic cookie.
      const base = dhcp4({ chaddr: mac, cookie: r.chance(0.5), options: (b) => opt4(b, 53, [type]) }).out();
      return base.subarray(0, r.int(base.length + 1));
    }
    default: {
      // Relay-agent option with sub-options whose lengths lie.
      return dhcp4({
        chaddr: mac,
        ciaddr,
        options: (b) => {
          opt4(b, 53, [type]);
          b.u8(82);
          const l = b.len(1);
          const n = r.range(0, 10);
          for (let i = 0; i < n; i++) b.u8(r.int(256), r.int(256)).raw(r.bytes(r.size(30)));
          b.end(l);
          if (r.chance(0.5)) b.u8(255);
        },
      }).out();
    }
  }
}

// ---- DHCPv6 -------------------------------------------------------------------------------------

function opt6(b: B, code: number, body: (b: B) => void): B {
  b.u16(code);
  const l = b.len(2);
  body(b);
  return b.end(l);
}

const duidLl = (mac: number[]): number[] => [0, 3, 0, 1, ...mac];

function ia6(b: B, t: Target, iaid: number, withAddr: boolean, status = false): void {
  opt6(b, 3, (x) => {
    x.u32(iaid).u32(0).u32(0);
    if (withAddr)
      opt6(x, 5, (y) => {
        y.raw(ip6Bytes(t.ip6)).u32(3600).u32(7200);
        if (status)
          opt6(y, 13, (z) => {
            z.u16(0).raw(ascii("ok"));
          });
      });
  });
}

function dhcp6Seeds(t: Target): Seed[] {
  const mac = macBytes(t.mac);
  const sid = t.serverDuid ? Array.from(t.serverDuid) : [0, 3, 0, 1, 2, 0, 0, 0, 0, 0xfe];
  const seeds: Seed[] = [];
  const msg = (name: string, type: number, body: (b: B) => void) => {
    const b = new B();
    b.u8(type).u8(0x12, 0x34, 0x56);
    body(b);
    seeds.push(b.seed(name));
  };
  const cid = (b: B, duid = duidLl(mac)) => opt6(b, 1, (x) => x.raw(duid));
  const srv = (b: B) => opt6(b, 2, (x) => x.raw(sid));
  const elapsed = (b: B) => opt6(b, 8, (x) => x.u16(0));
  const oro = (b: B) => opt6(b, 6, (x) => x.u16(23).u16(24).u16(32));
  msg("solicit", 1, (b) => {
    cid(b);
    elapsed(b);
    oro(b);
    ia6(b, t, 1, false);
  });
  msg("solicit-rapid", 1, (b) => {
    cid(b);
    elapsed(b);
    oro(b);
    ia6(b, t, 7, true, true);
    opt6(b, 14, () => {});
  });
  msg("solicit-llt", 1, (b) => {
    cid(b, [0, 1, 0, 1, 0x2b, 0x3c, 0x4d, 0x5e, ...mac]);
    ia6(b, t, 2, true);
    opt6(b, 4, (x) => x.u32(9));
    opt6(b, 25, (x) => {
      x.u32(3).u32(0).u32(0);
      opt6(x, 26, (y) => y.u32(0).u32(0).u8(56).zeros(16));
    });
  });
  msg("request", 3, (b) => {
    cid(b);
    srv(b);
    elapsed(b);
    ia6(b, t, 1, true);
    oro(b);
  });
  msg("request-stale-addr", 3, (b) => {
    cid(b);
    srv(b);
    opt6(b, 3, (x) => {
      x.u32(1).u32(0).u32(0);
      opt6(x, 5, (y) => y.raw(ip6Bytes("fd90::99")).u32(0).u32(0));
      opt6(x, 5, (y) => y.raw(ip6Bytes(t.ip6)).u32(0).u32(0));
    });
  });
  msg("renew", 5, (b) => {
    cid(b);
    srv(b);
    ia6(b, t, 1, true);
  });
  msg("rebind", 6, (b) => {
    cid(b);
    ia6(b, t, 1, true);
  });
  msg("confirm", 4, (b) => {
    cid(b);
    ia6(b, t, 1, true);
  });
  msg("release", 8, (b) => {
    cid(b);
    srv(b);
    ia6(b, t, 1, true);
  });
  msg("decline", 9, (b) => {
    cid(b);
    srv(b);
    ia6(b, t, 1, true);
  });
  msg("information-request", 11, (b) => {
    cid(b);
    elapsed(b);
    oro(b);
  });
  msg("information-request-bare", 11, (b) => oro(b));
  msg("information-request-with-ia", 11, (b) => {
    cid(b);
    ia6(b, t, 1, false);
  });
  msg("solicit-with-domain-list", 1, (b) => {
    cid(b);
    opt6(b, 24, (x) => x.u8(3).raw(ascii("foo")).u8(7).raw(ascii("example")).u8(0));
    opt6(b, 23, (x) => x.raw(ip6Bytes(t.gateway6)));
    opt6(b, 7, (x) => x.u8(255));
    opt6(b, 32, (x) => x.u32(600));
    opt6(b, 39, (x) => x.u8(0).raw([3, ...ascii("web"), 0]));
  });
  msg("solicit-other-server", 1, (b) => {
    cid(b);
    opt6(b, 2, (x) => x.raw([0, 3, 0, 1, 2, 9, 9, 9, 9, 9]));
    ia6(b, t, 1, false);
  });
  msg("advertise", 2, (b) => {
    cid(b);
    srv(b);
    ia6(b, t, 1, true);
  });
  {
    // RELAY-FORW carrying a SOLICIT and an interface id.
    const b = new B();
    b.u8(12, 0).raw(ip6Bytes("fd90::fe")).raw(ip6Bytes(t.ip6));
    opt6(b, 18, (x) => x.raw(ascii("eth0")));
    opt6(b, 9, (x) => {
      x.u8(1, 0xaa, 0xbb, 0xcc);
      cid(x);
      ia6(x, t, 1, false);
    });
    seeds.push(b.seed("relay-forw"));
  }
  return seeds;
}

export const GRANT_FLOOD = "dhcp6-grant-flood";

/** A message the server grants leases for (SOLICIT with rapid commit, REQUEST/RENEW naming
 * the server, REBIND), from the endpoint's DUID, with as many IA_NAs of fresh IAIDs as fit:
 * every IA_NA answered is a lease the server keeps, so this is the one input that makes the
 * DHCPv6 server hold state in proportion to what a client sends. */
function dhcp6GrantFlood(r: Rng, t: Target): Uint8Array {
  const b = new B();
  const form = r.int(4);
  b.u8([1, 3, 5, 6][form] as number).raw(r.bytes(3));
  opt6(b, 1, (x) => x.raw(duidLl(macBytes(t.mac))));
  if ((form === 1 || form === 2) && t.serverDuid) opt6(b, 2, (x) => x.raw(t.serverDuid as Uint8Array));
  if (form === 0) opt6(b, 14, () => {});
  const room = Math.floor((Math.min(t.maxLen, 65000) - b.pos) / 16);
  const n = r.chance(0.6) ? room : r.range(1, room);
  for (let i = 0; i < n; i++) opt6(b, 3, (x) => x.u32(r.u32()).u32(0).u32(0));
  return b.out();
}

function dhcp6Special(r: Rng, t: Target): Uint8Array {
  const mac = macBytes(t.mac);
  const b = new B();
  const type = r.pick([1, 3, 5, 6, 8, 9, 11, 4, 12, 13, r.int(256)]);
  if (type === 12 || type === 13) b.u8(type, r.int(256)).raw(r.bytes(32));
  else b.u8(type).raw(r.bytes(3));
  if (r.chance(0.7)) opt6(b, 1, (x) => x.raw(r.chance(0.8) ? duidLl(mac) : r.bytes(r.size(200))));
  if (r.chance(0.3) && t.serverDuid) opt6(b, 2, (x) => x.raw(t.serverDuid as Uint8Array));
  switch (r.int(7)) {
    case 0: {
      // Nesting past the limit: IA_NA → IAADDR → IA_NA → … and IA_PD → IAPREFIX → …
      const depth = r.range(2, 12);
      const nest = (x: B, d: number): void => {
        if (d === 0) return;
        const code = r.pick([3, 5, 25, 26, 4, 13]);
        opt6(x, code, (y) => {
          if (code === 3 || code === 25) y.u32(r.u32()).u32(0).u32(0);
          else if (code === 5) y.raw(ip6Bytes(t.ip6)).u32(1).u32(2);
          else if (code === 26) y.u32(1).u32(2).u8(64).zeros(16);
          else if (code === 4) y.u32(r.u32());
          else y.u16(0);
          nest(y, d - 1);
        });
      };
      nest(b, depth);
      break;
    }
    case 1: {
      // Thousands of tiny options, or many IA_NAs (each one a grant when answered).
      const many = r.chance(0.5);
      const n = r.range(100, 4000);
      for (let i = 0; i < n; i++) {
        if (many) opt6(b, 3, (x) => x.u32(r.u32()).u32(0).u32(0));
        else b.u16(r.chance(0.5) ? r.int(65536) : r.pick([14, 8, 6, 20, 99])).u16(0);
      }
      if (r.chance(0.5)) opt6(b, 14, () => {});
      break;
    }
    case 2: {
      // Option lengths past the end, at the top or inside an IA.
      if (r.chance(0.5))
        b.u16(r.pick([1, 2, 3, 5, 6, 9, 24, 39]))
          .u16(r.range(1, 65535))
          .raw(r.bytes(r.size(40)));
      else
        opt6(b, 3, (x) => {
          x.u32(1).u32(0).u32(0);
          x.u16(5).u16(r.range(25, 65535)).raw(ip6Bytes(t.ip6));
        });
      break;
    }
    case 3: {
      // Domain lists with compression pointers, long labels, names over 255 bytes.
      opt6(b, r.pick([24, 39, 24]), (x) => {
        if (type === 39) x.u8(0);
        const n = r.range(1, 12);
        for (let i = 0; i < n; i++) {
          const kind = r.int(4);
          if (kind === 0) x.u8(0xc0, r.int(256));
          else if (kind === 1) x.u8(63).raw(ascii("a".repeat(63)));
          else if (kind === 2) x.u8(r.range(64, 255));
          else x.u8(3).raw(ascii("abc"));
        }
        if (r.chance(0.5)) x.u8(0);
      });
      break;
    }
    case 4: {
      // ORO of odd or huge length, status codes that are not UTF-8, wrong fixed sizes.
      opt6(b, 6, (x) => x.raw(r.bytes(r.size(2000))));
      opt6(b, 13, (x) => x.raw(r.bytes(r.size(100))));
      opt6(b, r.pick([7, 8, 14, 32, 23]), (x) => x.raw(r.bytes(r.size(40))));
      break;
    }
    case 5: {
      // Relay messages inside relay messages (never unwrapped: refused as relayed).
      const depth = r.range(1, 40);
      const wrap = (x: B, d: number): void => {
        if (d === 0) {
          x.u8(1, 1, 2, 3);
          opt6(x, 1, (y) => y.raw(duidLl(mac)));
          return;
        }
        x.u8(12, d).raw(r.bytes(32));
        opt6(x, 9, (y) => wrap(y, d - 1));
      };
      const inner = new B();
      wrap(inner, depth);
      return inner.out();
    }
    default: {
      // Random option soup with plausible codes.
      const n = r.range(1, 30);
      for (let i = 0; i < n; i++) {
        const v = r.bytes(r.size(80));
        b.u16(r.chance(0.6) ? r.range(1, 40) : r.int(65536))
          .u16(r.chance(0.9) ? v.length : r.int(65536))
          .raw(v);
      }
    }
  }
  return b.out();
}

// ---- DNS ----------------------------------------------------------------------------------------

function name(b: B, n: string): B {
  if (n !== "" && n !== ".")
    for (const l of n.split(".")) {
      b.mark(1, l.length);
      b.raw(ascii(l));
    }
  return b.u8(0);
}

function header(b: B, id: number, flags: number, qd: number, an: number, ns: number, ar: number): B {
  return b.u16(id).u16(flags).mark(2, qd).mark(2, an).mark(2, ns).mark(2, ar);
}

function question(b: B, n: string, type: number, klass = 1): B {
  return name(b, n).u16(type).u16(klass);
}

function opt(
  b: B,
  o: { udp?: number; do?: boolean; version?: number; ext?: number; options?: Array<[number, ArrayLike<number>]> } = {},
): B {
  b.u8(0)
    .u16(41)
    .u16(o.udp ?? 1232);
  b.u8(o.ext ?? 0, o.version ?? 0).u16(o.do ? 0x8000 : 0);
  const l = b.len(2);
  for (const [code, data] of o.options ?? []) {
    b.u16(code);
    const ol = b.len(2);
    b.raw(data);
    b.end(ol);
  }
  return b.end(l);
}

function rr(b: B, owner: (b: B) => void, type: number, rdata: ArrayLike<number>, ttl = 300): B {
  owner(b);
  b.u16(type).u16(1).u32(ttl);
  const l = b.len(2);
  b.raw(rdata);
  return b.end(l);
}

function reverse4(ip: string): string {
  return `${ip.split(".").reverse().join(".")}.in-addr.arpa`;
}
function reverse6(ip: string): string {
  const hex = ip6Bytes(ip)
    .map((x) => x.toString(16).padStart(2, "0"))
    .join("");
  return `${hex.split("").reverse().join(".")}.ip6.arpa`;
}

/** Names the zone answers, and some it does not. */
function dnsNames(t: Target): Array<[string, number]> {
  return [
    [`${t.host}.${t.zone}`, 1],
    [`${t.host}.${t.zone}`, 28],
    [`${t.host.toUpperCase()}.${t.zone.replace(/^./, (c) => c.toUpperCase())}`, 1],
    [reverse4(t.ip4), 12],
    [reverse6(t.ip6), 12],
    [`_http._tcp.${t.zone}`, 33],
    [`${t.host}.${t.zone}`, 16],
    [t.zone, 6],
    [t.zone, 2],
    [t.zone, 15],
    [`${t.host}.${t.zone}`, 255],
    [`nosuch.${t.zone}`, 1],
    ["www.example.com", 1],
    [`gateway.${t.zone}`, 1],
  ];
}

function dnsSeeds(t: Target): Seed[] {
  const seeds: Seed[] = [];
  const q = (label: string, f: (b: B) => void) => {
    const b = new B();
    f(b);
    seeds.push(b.seed(label));
  };
  for (const [n, ty] of dnsNames(t)) {
    q(`q-${n}-${ty}`, (b) => question(header(b, 0x1234, 0x0100, 1, 0, 0, 0), n, ty));
    q(`q-edns-${n}-${ty}`, (b) => {
      question(header(b, 0x4321, 0x0100, 1, 0, 0, 1), n, ty);
      opt(b, { udp: 1232, do: ty === 1 });
    });
  }
  const ep = `${t.host}.${t.zone}`;
  q("edns-options", (b) => {
    question(header(b, 7, 0x0120, 1, 0, 0, 1), ep, 1);
    opt(b, {
      udp: 4096,
      do: true,
      options: [
        [10, [1, 2, 3, 4, 5, 6, 7, 8]],
        [8, [0, 1, 24, 0, 10, 90, 0]],
        [12, new Array(40).fill(0)],
      ],
    });
  });
  q("edns-version-1", (b) => {
    question(header(b, 8, 0x0100, 1, 0, 0, 1), ep, 1);
    opt(b, { version: 1 });
  });
  q("edns-tiny-udp", (b) => {
    question(header(b, 9, 0x0100, 1, 0, 0, 1), `_http._tcp.${t.zone}`, 33);
    opt(b, { udp: 0 });
  });
  q("question-with-pointer", (b) => {
    header(b, 10, 0x0100, 1, 0, 0, 0);
    b.mark(1, 3).raw(ascii("www")).u8(0xc0, 12).u16(1).u16(1);
  });
  q("two-questions", (b) => {
    header(b, 11, 0x0100, 2, 0, 0, 0);
    question(b, ep, 1);
    b.mark(1, 3).raw(ascii("www")).u8(0xc0, 12).u16(28).u16(1);
  });
  q("answer-in-query", (b) => {
    question(header(b, 12, 0x0100, 1, 1, 1, 1), ep, 1);
    rr(b, (x) => x.u8(0xc0, 12), 1, ip4Bytes(t.ip4));
    rr(b, (x) => name(x, t.zone), 6, [0, 0, ...new Array(20).fill(1)]);
    opt(b);
  });
  q("additional-a", (b) => {
    question(header(b, 13, 0x0100, 1, 0, 0, 2), ep, 28);
    rr(b, (x) => x.u8(0xc0, 12), 1, ip4Bytes(t.ip4));
    opt(b, { do: true });
  });
  q("qr-set", (b) => question(header(b, 14, 0x8180, 1, 0, 0, 0), ep, 1));
  q("notify-opcode", (b) => question(header(b, 15, 0x2000, 1, 0, 0, 0), t.zone, 6));
  q("update-opcode", (b) => question(header(b, 16, 0x2800, 1, 0, 0, 0), t.zone, 6));
  q("axfr", (b) => question(header(b, 17, 0, 1, 0, 0, 0), t.zone, 252));
  q("ixfr", (b) => question(header(b, 18, 0, 1, 0, 1, 0), t.zone, 251));
  q("chaos", (b) => question(header(b, 19, 0, 1, 0, 0, 0), "version.bind", 16, 3));
  q("class-any", (b) => question(header(b, 20, 0x0100, 1, 0, 0, 0), ep, 1, 255));
  q("qtype-opt", (b) => question(header(b, 21, 0x0100, 1, 0, 0, 0), ep, 41));
  q("root", (b) => question(header(b, 22, 0x0100, 1, 0, 0, 0), "", 2));
  q("no-question", (b) => header(b, 23, 0x0100, 0, 0, 0, 0));
  q("long-name", (b) =>
    question(
      header(b, 24, 0x0100, 1, 0, 0, 0),
      `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(50)}.${t.zone}`.slice(0, 240),
      1,
    ),
  );
  return seeds;
}

function dnsSpecial(r: Rng, t: Target): Uint8Array {
  const b = new B();
  const ep = `${t.host}.${t.zone}`;
  const id = r.u32() & 0xffff;
  switch (r.int(9)) {
    case 0: {
      // A compression pointer to itself, in the question or in a record's owner.
      if (r.chance(0.4)) {
        header(b, id, 0x0100, 1, 0, 0, 0);
        if (r.chance(0.5)) b.u8(0xc0, 12);
        else b.u8(3).raw(ascii("abc")).u8(0xc0, 16);
        b.u16(1).u16(1);
      } else {
        question(header(b, id, 0x0100, 1, r.range(1, 3), 0, 1), ep, 1);
        const p = b.pos;
        b.u8(0xc0 | (p >> 8), p & 0xff)
          .u16(1)
          .u16(1)
          .u32(0)
          .u16(4)
          .raw([1, 2, 3, 4]);
        opt(b);
      }
      break;
    }
    case 1: {
      // Two names pointing at each other.
      question(header(b, id, 0x0100, 1, 2, 0, 0), ep, 1);
      const p1 = b.pos;
      const p2 = p1 + 2 + 10 + 4;
      b.u8(0xc0 | (p2 >> 8), p2 & 0xff)
        .u16(1)
        .u16(1)
        .u32(0)
        .u16(4)
        .raw([1, 2, 3, 4]);
      b.u8(0xc0 | (p1 >> 8), p1 & 0xff)
        .u16(1)
        .u16(1)
        .u32(0)
        .u16(4)
        .raw([5, 6, 7, 8]);
      break;
    }
    case 2: {
      // A pointer forward (past itself, or past the end), then a label chain back.
      question(header(b, id, 0x0100, 1, 1, 0, r.int(2)), ep, 1);
      const p = b.pos;
      const to = r.chance(0.5) ? p + 2 + r.int(64) : 0x3fff - r.int(100);
      b.u8(0xc0 | ((to >> 8) & 0x3f), to & 0xff)
        .u16(1)
        .u16(1)
        .u32(0)
        .u16(4)
        .raw([1, 2, 3, 4]);
      b.u8(1)
        .raw(ascii("x"))
        .u8(0xc0, p & 0xff);
      break;
    }
    case 3: {
      // A long chain of pointers, each one step back (pure pointers, or a label then a
      // pointer): more jumps than any name needs. The chain is the rdata of a first record;
      // the second record's owner starts at its far end.
      question(header(b, id, 0x0100, 1, 2, 0, 0), ep, 1);
      b.u8(0).u16(99).u16(1).u32(0);
      const rdl = b.len(2);
      const start = b.pos;
      b.u8(1).raw(ascii("a")).u8(0);
      let prev = start;
      const n = r.range(60, 400);
      const labels = r.chance(0.5);
      for (let i = 0; i < n; i++) {
        const here = b.pos;
        if (labels) b.u8(1).raw(ascii("b"));
        b.u8(0xc0 | ((prev >> 8) & 0x3f), prev & 0xff);
        prev = here;
      }
      b.end(rdl);
      b.u8(0xc0 | ((prev >> 8) & 0x3f), prev & 0xff)
        .u16(1)
        .u16(1)
        .u32(0)
        .u16(0);
      break;
    }
    case 4: {
      // Oversized names: many 63-byte labels (over 255 in all), or label lengths past the end.
      header(b, id, 0x0100, 1, 0, 0, r.int(2));
      const n = r.range(3, 40);
      for (let i = 0; i < n; i++) {
        const len = r.chance(0.8) ? 63 : r.range(1, 63);
        b.u8(len).raw(ascii("q".repeat(len)));
      }
      if (r.chance(0.7)) b.u8(0).u16(1).u16(1);
      else b.u8(r.range(1, 63));
      break;
    }
    case 5: {
      // Reserved label types (0x40, 0x80) and lengths past the end.
      header(b, id, 0x0100, 1, 0, 0, 0);
      b.u8(r.pick([0x40, 0x41, 0x7f, 0x80, 0xbf, 63, 62]));
      b.raw(r.bytes(r.size(20)));
      break;
    }
    case 6: {
      // rdlength past the end, huge record counts, OPT in the wrong place or twice.
      const an = r.chance(0.5) ? r.range(1, 65535) : 1;
      question(header(b, id, 0x0100, 1, an, r.int(3), r.range(1, 65535)), ep, 1);
      const what = r.int(5);
      if (what === 0) b.u8(0).u16(1).u16(1).u32(0).u16(r.range(5, 65535)).raw([1, 2, 3, 4]);
      else if (what === 1) opt(b).raw(opt(new B()).a);
      else if (what === 2) b.u8(3).raw(ascii("abc")).u8(0).u16(41).u16(512).u32(0).u16(0);
      else if (what === 3) b.u8(0).u16(41).u16(1232).u32(0).u16(8).u16(10).u16(r.range(5, 1000)).raw([1, 2, 3, 4]);
      else opt(b, { udp: r.pick([0, 1, 511, 65535]), version: r.int(256), ext: r.int(256), do: r.chance(0.5) });
      break;
    }
    case 7: {
      // Random names under the zone (NXDOMAIN, cached per network) or outside it.
      const labels = r.range(1, 4);
      const parts: string[] = [];
      for (let i = 0; i < labels; i++)
        parts.push(
          Array.from({ length: r.range(1, 20) }, () =>
            String.fromCharCode(r.pick([r.range(97, 122), r.range(48, 57), 45])),
          ).join(""),
        );
      const n = r.chance(0.8) ? `${parts.join(".")}.${t.zone}` : parts.join(".");
      question(
        header(b, id, r.pick([0, 0x0100, 0x0110, 0x0130]), 1, 0, 0, r.int(2)),
        n,
        r.pick([1, 28, 12, 33, 16, 255, 5, 6, r.int(65536)]),
      );
      if (b.a[11]) opt(b, { udp: r.pick([512, 1232, 4096]), do: r.chance(0.5) });
      break;
    }
    default: {
      // A big query (TCP-sized): additional records to pad, with names and random rdata.
      question(header(b, id, 0x0100, 1, 0, 0, 0), ep, 16);
      const n = r.range(1, 60);
      for (let i = 0; i < n; i++) rr(b, (x) => x.u8(0xc0, 12), r.pick([1, 16, 99, 41, 6]), r.bytes(r.size(1000)));
      b.a[11] = n;
      break;
    }
  }
  return b.out();
}

// ---- generic mutators ---------------------------------------------------------------------------

const INTERESTING8 = [0x00, 0xff, 0xc0, 0x3f, 0x40, 0x80, 0x7f, 0x01, 0x3e, 0xfe];
const INTERESTING16 = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x3fff, 0x7fff, 0x8000, 0xc00c, 0xfffe, 0xffff];

/** Makes one of the seed's length fields larger than what follows it (or zero, or random). */
function mutateLength(r: Rng, s: Seed): Uint8Array {
  const b = s.bytes.slice();
  const f = s.fields.length
    ? r.pick(s.fields)
    : { off: r.int(Math.max(1, b.length - 1)), width: r.pick([1, 2] as const) };
  if (f.off + f.width > b.length) return b;
  const max = f.width === 1 ? 0xff : 0xffff;
  const cur = f.width === 1 ? (b[f.off] as number) : ((b[f.off] as number) << 8) | (b[f.off + 1] as number);
  const rest = b.length - f.off - f.width;
  const v = r.pick([
    max,
    Math.min(max, rest + 1),
    Math.min(max, cur + 1),
    Math.min(max, cur + r.range(1, 64)),
    Math.min(max, rest + r.range(2, 1000)),
    0,
    Math.max(0, cur - 1),
    r.int(max + 1),
  ]);
  if (f.width === 1) b[f.off] = v;
  else {
    b[f.off] = v >>> 8;
    b[f.off + 1] = v & 0xff;
  }
  return b;
}

type Mutator = (r: Rng, b: Uint8Array, other: () => Uint8Array) => Uint8Array;

export const MUTATORS: Record<string, Mutator> = {
  flipBits(r, b) {
    const out = b.slice();
    if (!out.length) return out;
    const n = r.range(1, 8);
    for (let i = 0; i < n; i++) {
      const at = r.int(out.length);
      out[at] = (out[at] as number) ^ (1 << r.int(8));
    }
    return out;
  },
  setBytes(r, b) {
    const out = b.slice();
    if (!out.length) return out;
    const n = r.range(1, 4);
    for (let i = 0; i < n; i++) out[r.int(out.length)] = r.chance(0.8) ? r.pick(INTERESTING8) : r.int(256);
    return out;
  },
  setU16(r, b) {
    const out = b.slice();
    if (out.length < 2) return out;
    const at = r.int(out.length - 1);
    const v = r.pick(INTERESTING16);
    out[at] = v >>> 8;
    out[at + 1] = v & 0xff;
    return out;
  },
  truncate(r, b) {
    return b.slice(0, r.int(b.length + 1));
  },
  extend(r, b) {
    const n = r.size(1500);
    const tail = r.chance(0.5) ? r.bytes(n) : new Uint8Array(n).fill(r.pick(INTERESTING8));
    const out = new Uint8Array(b.length + n);
    out.set(b);
    out.set(tail, b.length);
    return out;
  },
  insert(r, b) {
    const at = r.int(b.length + 1);
    const chunk = r.bytes(r.size(64));
    const out = new Uint8Array(b.length + chunk.length);
    out.set(b.subarray(0, at));
    out.set(chunk, at);
    out.set(b.subarray(at), at + chunk.length);
    return out;
  },
  remove(r, b) {
    if (!b.length) return b.slice();
    const at = r.int(b.length);
    const n = Math.min(b.length - at, r.size(64) + 1);
    const out = new Uint8Array(b.length - n);
    out.set(b.subarray(0, at));
    out.set(b.subarray(at + n), at);
    return out;
  },
  duplicate(r, b) {
    if (!b.length) return b.slice();
    const from = r.int(b.length);
    const n = Math.min(b.length - from, r.size(128) + 1);
    const at = r.int(b.length + 1);
    const times = r.chance(0.2) ? r.range(2, 50) : 1;
    const out = new Uint8Array(b.length + n * times);
    out.set(b.subarray(0, at));
    for (let i = 0; i < times; i++) out.set(b.subarray(from, from + n), at + i * n);
    out.set(b.subarray(at), at + n * times);
    return out;
  },
  splice(r, b, other) {
    const o = other();
    const cut1 = r.int(b.length + 1);
    const cut2 = r.int(o.length + 1);
    const out = new Uint8Array(cut1 + o.length - cut2);
    out.set(b.subarray(0, cut1));
    out.set(o.subarray(cut2), cut1);
    return out;
  },
};
const MUTATOR_LIST = Object.values(MUTATORS);

// ---- the streams ----------------------------------------------------------------------------------

export function seedPackets(kind: Kind, target: Partial<Target> = {}): Seed[] {
  const t = { ...DEFAULT_TARGET, ...target };
  return kind === "dhcp4" ? dhcp4Seeds(t) : kind === "dhcp6" ? dhcp6Seeds(t) : dnsSeeds(t);
}

/** How a packet was made (for reports: the recipe of a packet that broke something). */
export type Recipe = "seed" | "mutated" | "length" | "special" | "random";

export interface Packet {
  bytes: Uint8Array;
  recipe: Recipe;
  /** Seed name, or the special generator's kind. */
  from: string;
}

/** `count` packets of `kind`, the same for the same seed and target. */
export function* corpus(
  kind: Kind,
  seed: number | string,
  count: number,
  target: Partial<Target> = {},
): Generator<Packet> {
  const t = { ...DEFAULT_TARGET, ...target };
  const r = new Rng(`${kind}/${seed}`);
  const seeds = seedPackets(kind, t);
  const special = kind === "dhcp4" ? dhcp4Special : kind === "dhcp6" ? dhcp6Special : dnsSpecial;
  const other = () => r.pick(seeds).bytes;
  for (let i = 0; i < count; i++) {
    const x = r.u32() / 4294967296;
    let p: Packet;
    if (x < 0.03) {
      const s = r.pick(seeds);
      p = { bytes: s.bytes, recipe: "seed", from: s.name };
    } else if (x < 0.08) {
      p = { bytes: r.bytes(r.range(0, 1500)), recipe: "random", from: "random" };
    } else if (x < 0.33) {
      // DHCPv6: two in nine of the special ones are the lease flood (see dhcp6GrantFlood).
      if (kind === "dhcp6" && r.int(9) < 2) p = { bytes: dhcp6GrantFlood(r, t), recipe: "special", from: GRANT_FLOOD };
      else p = { bytes: special(r, t), recipe: "special", from: `${kind}-special` };
    } else {
      const s = r.pick(seeds);
      let b: Uint8Array;
      let recipe: Recipe = "mutated";
      if (r.chance(0.3)) {
        b = mutateLength(r, s);
        recipe = "length";
        if (r.chance(0.5)) b = r.pick(MUTATOR_LIST)(r, b, other);
      } else {
        b = s.bytes;
        const n = r.chance(0.6) ? 1 : r.range(2, 5);
        for (let k = 0; k < n; k++) b = r.pick(MUTATOR_LIST)(r, b, other);
      }
      p = { bytes: b, recipe, from: s.name };
    }
    if (p.bytes.length > t.maxLen) p.bytes = p.bytes.subarray(0, t.maxLen);
    yield p;
  }
}

/** The packets alone. */
export function* mutatedPackets(
  kind: Kind,
  seed: number | string,
  count: number,
  target: Partial<Target> = {},
): Generator<Uint8Array> {
  for (const p of corpus(kind, seed, count, target)) yield p.bytes;
}

// ---- valid probes (liveness) ------------------------------------------------------------------------

/** A DNS query for `qname` type `qtype` with ID `id` (recursion desired, no EDNS). */
export function dnsQuery(id: number, qname: string, qtype: number): Uint8Array {
  return question(header(new B(), id, 0x0100, 1, 0, 0, 0), qname, qtype).out();
}

/** A DHCPDISCOVER from `mac` with the given xid and ciaddr (the OFFER goes there). */
export function dhcpDiscover(mac: string, xid: number, ciaddr: string): Uint8Array {
  return dhcp4({
    chaddr: macBytes(mac),
    xid,
    ciaddr,
    options: (b) => {
      opt4(b, 53, [1]);
      opt4(b, 61, [1, ...macBytes(mac)]);
      opt4(b, 55, [1, 3, 6]);
      b.u8(255);
    },
  }).out();
}

/** A DHCPv6 SOLICIT from `mac`'s DUID-LL with one IA_NA. */
export function dhcp6Solicit(mac: string, xid: number): Uint8Array {
  const b = new B();
  b.u8(1, (xid >>> 16) & 0xff, (xid >>> 8) & 0xff, xid & 0xff);
  opt6(b, 1, (x) => x.raw(duidLl(macBytes(mac))));
  opt6(b, 8, (x) => x.u16(0));
  opt6(b, 3, (x) => x.u32(1).u32(0).u32(0));
  return b.out();
}

export const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
