/** The README and docs/ as a reader meets them: the README stays short; every relative link
 * (and `#anchor`) leads somewhere; every docs page is reachable from docs/README.md; the API
 * page lists exactly the contract's routes; and no page presents a capability that is planned
 * but not built as one that exists, while the README says plainly what does not exist yet.
 * Each check is also run on a bad sample, so it is known to be able to fail. */
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { ROUTES } from "../../src/api/contract";

const ROOT = resolve(import.meta.dir, "../..");
const DOCS = join(ROOT, "docs");
const PAGES = readdirSync(DOCS)
  .filter((f) => f.endsWith(".md"))
  .map((f) => join(DOCS, f));
const FILES = [join(ROOT, "README.md"), ...PAGES];
const read = (path: string): string => readFileSync(path, "utf8");
const name = (path: string): string => relative(ROOT, path);

/** The lines outside fenced code blocks (``` or ~~~), with inline code spans blanked out. */
function prose(text: string): string[] {
  let fenced = false;
  return text.split("\n").map((line) => {
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced;
      return "";
    }
    return fenced ? "" : line.replace(/`[^`]*`/g, "``");
  });
}

/** GitHub's anchor of a heading: its text as rendered, lower case, punctuation dropped,
 * spaces as hyphens; a repeated one gets -1, -2, … */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  let fenced = false;
  for (const line of text.split("\n")) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    const m = fenced ? null : line.match(/^#{1,6}\s+(.*?)\s*#*\s*$/);
    if (!m) continue;
    const slug = (m[1] as string)
      .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
      .replace(/[`*]/g, "")
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, "")
      .replace(/\s/g, "-");
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n ? `${slug}-${n}` : slug);
  }
  return out;
}

/** Every relative link target of a Markdown text (inline links and images). */
function links(text: string): string[] {
  const out: string[] = [];
  for (const line of prose(text))
    for (const m of line.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
      const target = m[1] as string;
      if (!/^[a-z][a-z0-9+.-]*:/i.test(target)) out.push(target);
    }
  return out;
}

/** What is wrong with each relative link of `file` (whose text is `text`): an empty list when
 * every one leads to a file of the repository and, where it names one, an existing anchor. */
function brokenLinks(file: string, text: string): string[] {
  const problems: string[] = [];
  for (const target of links(text)) {
    const [path = "", anchor] = target.split("#", 2);
    const dest = path ? resolve(dirname(file), decodeURIComponent(path)) : file;
    const where = `${name(file)}: ${target}`;
    if (relative(ROOT, dest).startsWith("..")) problems.push(`${where}: leaves the repository`);
    else if (path && !existsSync(dest)) problems.push(`${where}: no such file`);
    else if (anchor !== undefined) {
      if (path && (statSync(dest).isDirectory() || !dest.endsWith(".md")))
        problems.push(`${where}: an anchor into a non-page`);
      else if (!anchors(path ? read(dest) : text).has(anchor)) problems.push(`${where}: no heading with that anchor`);
    }
  }
  return problems;
}

/** Sentences that present a planned capability as one that exists. A page may say these are
 * planned or missing; it may not say they work. */
const CLAIMS: RegExp[] = [
  /\bthe (gateway )?HA heartbeat and the BGP speaker\b/i,
  /\bHA heartbeat (runs|detects|fails over|is sent|takes over)\b/i,
  /\b(VIP|address) takeover (happens|takes place|moves)\b/i,
  /\betcd is the source of truth\b/i,
  /\bload balancer (spreads|balances|forwards|hashes)\b/i,
  /\bxdp_lb (balances|forwards|spreads|runs|is attached)\b/i,
  /\b(gateway nodes?|SNAT) (translates?|masquerades?)\b/i,
  /\bdashboard (shows|serves|displays)\b/i,
];

/** The claims of CLAIMS a text makes, with their line numbers. */
function claims(text: string): string[] {
  const out: string[] = [];
  // A sentence may wrap: judge each line joined with the next.
  const lines = text.split("\n");
  lines.forEach((line, i) => {
    const both = `${line} ${lines[i + 1] ?? ""}`;
    for (const re of CLAIMS) if (re.test(both) && !re.test(lines[i + 1] ?? "")) out.push(`${i + 1}: ${line.trim()}`);
  });
  return out;
}

describe("the README", () => {
  test("is short: at most 180 lines", () => {
    const text = read(join(ROOT, "README.md"));
    const lines = text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
    expect(lines).toBeLessThanOrEqual(180);
  });

  test("says what does not exist yet, naming each planned capability", () => {
    const text = read(join(ROOT, "README.md"));
    const start = text.indexOf("## What does not exist yet");
    expect(start).toBeGreaterThan(-1);
    const section = text.slice(start);
    for (const word of ["load balancer", "apply", "web view"])
      expect({ word, named: section.includes(word) }).toEqual({ word, named: true });
  });

  test("links every docs page", () => {
    const targets = links(read(join(ROOT, "README.md")));
    for (const page of PAGES)
      expect({ page: name(page), linked: targets.includes(`docs/${name(page).slice(5)}`) }).toEqual({
        page: name(page),
        linked: true,
      });
  });
});

describe("docs/", () => {
  test("has the index and one page per capability", () => {
    for (const page of [
      "README",
      "networks",
      "port-security",
      "firewall",
      "microseg",
      "load-balancer",
      "dhcp-dns",
      "egress-caps",
      "observability",
      "operations",
      "cluster",
      "cli",
      "api",
      "benchmarks",
    ])
      expect(existsSync(join(DOCS, `${page}.md`))).toBe(true);
  });

  test("every page is linked from docs/README.md", () => {
    const targets = links(read(join(DOCS, "README.md")));
    for (const page of PAGES.filter((p) => !p.endsWith("/README.md")))
      expect({ page: name(page), linked: targets.includes(name(page).slice(5)) }).toEqual({
        page: name(page),
        linked: true,
      });
  });

  test("every relative link, in the README and in docs/, leads to a file and an anchor that exist", () => {
    const problems = FILES.flatMap((f) => brokenLinks(f, read(f)));
    expect(problems).toEqual([]);
  });

  test("the link check finds a missing file, a missing anchor and a link out of the repository", () => {
    const sample = [
      "[ok](firewall.md#how-rules-apply) [ok](#here) `[code](nowhere.md)`",
      "## Here",
      "[gone](no-such-page.md) [no anchor](firewall.md#no-such-heading) [out](../../etc/passwd)",
      "```",
      "[in a code block](nowhere.md)",
      "```",
    ].join("\n");
    expect(brokenLinks(join(DOCS, "sample.md"), sample)).toEqual([
      "docs/sample.md: no-such-page.md: no such file",
      "docs/sample.md: firewall.md#no-such-heading: no heading with that anchor",
      "docs/sample.md: ../../etc/passwd: leaves the repository",
    ]);
  });

  test("the port-security page keeps the attacker's-view guarantees W1-W5, N1-N2 and L1-L5", () => {
    const page = read(join(DOCS, "port-security.md"));
    expect(page).toContain("### What holds, from where an attacker stands");
    for (const tag of ["W1", "W2", "W3", "W4", "W5", "N1", "N2", "L1", "L2", "L3", "L4", "L5"])
      expect({ tag, present: page.includes(`- **${tag}** `) }).toEqual({ tag, present: true });
  });

  test("the API page lists exactly the contract's routes", () => {
    const page = read(join(DOCS, "api.md"));
    const listed = [...page.matchAll(/^\| (GET|POST|PUT|PATCH|DELETE) \| `([^`]+)` \|/gm)].map(
      (m) => `${m[1]} ${m[2]}`,
    );
    const contract = Object.values(ROUTES).map((r) => `${r.method.toUpperCase()} ${r.path}`);
    expect(listed.sort()).toEqual(contract.sort());
  });
});

describe("no page claims a planned capability as built", () => {
  test("the deny-list catches such claims", () => {
    const sample = [
      "it is the node agent, the CLI, the HTTP API, the DHCP and DNS servers of every network, the gateway",
      "HA heartbeat and the BGP speaker.",
      "SNAT masquerades the traffic. There is no SNAT yet.",
      "The load balancer spreads the connections.",
    ].join("\n");
    expect(claims(sample).length).toBe(3);
  });

  for (const file of FILES)
    test(name(file), () => {
      expect(claims(read(file))).toEqual([]);
    });
});
