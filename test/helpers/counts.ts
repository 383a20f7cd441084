/** What the `count` receivers of probe.ts wrote: datagrams by tag, {n, first, last}. */
import { readFileSync } from "node:fs";

export interface TagCount {
  n: number;
  first: number;
  last: number;
}

/** The counts in `file`; none when it is not written yet. */
export function readCounts(file: string): Record<string, TagCount> {
  try {
    return JSON.parse(readFileSync(file, "utf8"));
  } catch {
    return {};
  }
}
