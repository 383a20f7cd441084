/** docs/port-security.md's "What holds, from where an attacker stands" is a list of tagged
 * guarantees (W1…, N1…, L1…); test/e2e/hostile.test.ts holds at least one test per tag,
 * named after it. A tag without a test (or a test naming a tag the page lacks) fails here,
 * without root. */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "../..");
const SECTION = "### What holds, from where an attacker stands";

/** The tags of the README's section, in order ("**W1** It sends …"). */
function readmeTags(readme: string): string[] {
  const start = readme.indexOf(SECTION);
  if (start < 0) throw new Error(`no section "${SECTION}"`);
  const rest = readme.slice(start + SECTION.length);
  const end = rest.search(/\n#{1,3} /);
  const body = end < 0 ? rest : rest.slice(0, end);
  return [...body.matchAll(/\*\*([A-Z][0-9]+)\*\*/g)].map((m) => m[1] as string);
}

/** The names of the tests a file declares (`test("…", …)`, any quote). */
function testNames(source: string): string[] {
  return [...source.matchAll(/\btest\(\s*(["'`])((?:\\.|(?!\1)[^\\])*)\1/g)].map((m) => m[2] as string);
}

test("readmeTags and testNames read what they should", () => {
  const readme = `x\n${SECTION}\n\n- **W1** one\n- **L2** two\n\n| a |\n## Firewall\n- **Z9** not here\n`;
  expect(readmeTags(readme)).toEqual(["W1", "L2"]);
  expect(
    testNames(`test("W1: a", () => {});\ntest(\n  'L2: b "quoted"',\n  async () => {});\ntest(\`N1: c\`, f)`),
  ).toEqual(["W1: a", 'L2: b "quoted"', "N1: c"]);
});

/** The guarantees live in the port-security page. */
const SPEC = join(ROOT, "docs/port-security.md");

test("every guarantee of docs/port-security.md has a test in test/e2e/hostile.test.ts named after its tag", () => {
  const tags = readmeTags(readFileSync(SPEC, "utf8"));
  const names = testNames(readFileSync(join(ROOT, "test/e2e/hostile.test.ts"), "utf8"));
  expect(tags.length).toBeGreaterThanOrEqual(12);
  expect(new Set(tags).size).toBe(tags.length);
  const untested = tags.filter((t) => !names.some((n) => n.startsWith(`${t}:`)));
  expect(untested).toEqual([]);
  // And no test claims a tag the page does not have.
  const claimed = names.map((n) => /^([A-Z][0-9]+):/.exec(n)?.[1]).filter((t): t is string => t !== undefined);
  expect(claimed.filter((t) => !tags.includes(t))).toEqual([]);
});
