/** "Did you mean …?": the candidate nearest to a mistyped word by edit distance, when it is
 * near enough to be what was meant. Shared by the API (unknown keys and query parameters)
 * and the CLI (unknown commands and flags). Pure. */

/** Edit distance (insertions, deletions, substitutions; a swap of two neighbours counts
 * one), case-insensitive: "defaultActoin" is one edit from "defaultAction". */
export function editDistance(a: string, b: string): number {
  const s = a.toLowerCase();
  const t = b.toLowerCase();
  if (s === t) return 0;
  // Three rows of the Damerau (optimal string alignment) table.
  let prev2: number[] = [];
  let prev = Array.from({ length: t.length + 1 }, (_, j) => j);
  for (let i = 1; i <= s.length; i++) {
    const cur = [i];
    for (let j = 1; j <= t.length; j++) {
      const cost = s[i - 1] === t[j - 1] ? 0 : 1;
      let d = Math.min((prev[j] as number) + 1, (cur[j - 1] as number) + 1, (prev[j - 1] as number) + cost);
      if (i > 1 && j > 1 && s[i - 1] === t[j - 2] && s[i - 2] === t[j - 1])
        d = Math.min(d, (prev2[j - 2] as number) + 1);
      cur.push(d);
    }
    prev2 = prev;
    prev = cur;
  }
  return prev[t.length] as number;
}

/** The candidate nearest to `word`, or undefined when none is plausibly meant: the distance
 * must be at most a third of the longer word (at least 1, at most 3), so "netwrk" finds
 * "network" but "x" finds nothing in a list of long names. Ties go to the earlier candidate. */
export function nearest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    if (c === word) return c;
    const d = editDistance(word, c);
    const limit = Math.min(3, Math.max(1, Math.floor(Math.max(word.length, c.length) / 3)));
    if (d <= limit && d < bestD) {
      best = c;
      bestD = d;
    }
  }
  return best;
}
