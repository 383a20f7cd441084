/** The blocklist's mark file: what the service writes comes back only in the same boot and for
 * the same store file; removing an absent mark is fine, a mark that cannot be removed is not. */
import { afterEach, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileBlockMark, markContext } from "../../src/agent/block-mark";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function dir(): string {
  const d = mkdtempSync(join(tmpdir(), "stm-mark-"));
  dirs.push(d);
  return d;
}

test("a mark reads back in the same boot for the same store, not after a reboot or for another store", () => {
  const d = dir();
  const db = join(d, "stratum.db");
  writeFileSync(db, "x");
  let boot = "boot-1";
  const mark = fileBlockMark(join(d, "blocklist.mark"), db, () => `${boot} ${markContext(db).split(" ")[1]}`);
  expect(mark.read()).toBeUndefined();
  mark.write('{"id4":7}');
  expect(mark.read()).toBe('{"id4":7}');
  boot = "boot-2"; // map ids start again at every boot
  expect(mark.read()).toBeUndefined();
  boot = "boot-1";
  // The store put back from a backup: another file (made while the old one exists, so it has
  // its own inode), moved into place.
  writeFileSync(`${db}.backup`, "x");
  renameSync(`${db}.backup`, db);
  const again = fileBlockMark(join(d, "blocklist.mark"), db);
  expect(again.read()).toBeUndefined();
  mark.clear();
  mark.clear(); // absent: fine
  expect(mark.read()).toBeUndefined();
});

test("the real context names this boot and the store's inode", () => {
  const d = dir();
  const db = join(d, "stratum.db");
  writeFileSync(db, "x");
  expect(markContext(db)).toMatch(/^[0-9a-f-]{36} \d+:\d+$/);
});

test("a mark that cannot be removed stops the change", () => {
  const d = dir();
  const path = join(d, "blocklist.mark");
  mkdirSync(path); // a directory where the file should be: unlink fails with EISDIR
  const mark = fileBlockMark(path, join(d, "stratum.db"));
  expect(() => mark.clear()).toThrow();
});
