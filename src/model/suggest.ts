/** "Did you mean …?": the candidate nearest to a mistyped word, by edit distance (with
 * transpositions, so `dprot` finds `dport`). Pure. */

/** Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours. */
export function editDistance(a: string, b: string): number {
  // Rows of (b.length + 1) cells in one flat array: d[i][j] is at i * w + j.
  const w = b.length + 1;
  const d = new Array<number>((a.length + 1) * w).fill(0);
  const at = (i: number, j: number) => d[i * w + j] as number;
  for (let i = 0; i <= a.length; i++) d[i * w] = i;
  for (let j = 0; j <= b.length; j++) d[j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, at(i - 2, j - 2) + 1);
      d[i * w + j] = v;
    }
  return at(a.length, b.length);
}

/** `short` spelled out in `long`, in order, from the same first letter ("src" in "source"). */
function abbreviates(short: string, long: string): boolean {
  if (short.length < 3 || short[0] !== long[0]) return false;
  let i = 0;
  for (const ch of long) if (ch === short[i]) i++;
  return i === short.length;
}

/** The same letters in another order. */
function swapped(a: string, b: string): boolean {
  return a.length === b.length && [...a].sort().join("") === [...b].sort().join("");
}

/** The candidate closest to `word`, when it is close enough to be what was meant: a few edits
 * (one for words of up to four letters, else two or a third of the word), a unique candidate
 * the word starts, or a unique candidate the word spells out ("--source" → "src"); undefined
 * otherwise. Ties: one of the word's own letters swapped ("porto" is proto, not port), else the
 * first. */
export function nearest(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(w, c.toLowerCase());
    if (d < bestD || (d === bestD && swapped(w, c.toLowerCase()) && !swapped(w, (best as string).toLowerCase()))) {
      best = c;
      bestD = d;
    }
  }
  if (best === undefined) return undefined;
  if (bestD <= (w.length <= 4 ? 1 : Math.max(2, Math.floor(w.length / 3)))) return best;
  const prefixed = candidates.filter((c) => w.length >= 3 && c.toLowerCase().startsWith(w));
  if (prefixed.length === 1) return prefixed[0];
  // Of the candidates spelled out, the longest ("--dst-port": dport over dst), when only one is.
  const spelled = candidates.filter((c) => abbreviates(c.toLowerCase(), w)).sort((a, b) => b.length - a.length);
  return spelled.length && spelled[0]?.length !== spelled[1]?.length ? spelled[0] : undefined;
}
