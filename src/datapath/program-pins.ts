/** The port object's loaded programs, pinned for the next start of the same build. Loading the
 * object runs the verifier over every program (about half a second of an agent's start); a
 * restart of the same binary, finding the programs it would load already loaded and bound to
 * the maps pinned beside them, takes them as they are.
 *
 *   <pin root>/progs/<build>/<program>     <build>: the object's bytes and the map sizes, hashed
 *
 * The pins are taken only when they are whole and current: every program of the object is
 * there, and every pinned map a program uses is the one pinned under maps/ now (a map
 * replaced by an upgrade, or recreated by hand, means the programs must be loaded again).
 * Anything else, and the object is loaded as before; the pins are then written again. */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, rmdirSync } from "node:fs";
import { join } from "node:path";
import { StratumError } from "../errors";
import {
  BpfMap,
  type BpfObject,
  Fd,
  mapFdById,
  mapInfo,
  objGet,
  type ProgramHandle,
  pinFd,
  progInfo,
  progMapIds,
  unpin,
} from "../sys/bpf";
import { objectBytes } from "./objects";

/** What the datapath needs of a loaded object: a BpfObject, or the programs pinned by one. */
export type LoadedPrograms = Pick<BpfObject, "map" | "program" | "programs" | "close">;

export const PROG_DIR = "progs";

/** The build of the port object with these map sizes, as a directory name. */
export function buildStamp(sizes: Record<string, number | undefined>): string {
  const h = createHash("sha256");
  h.update(objectBytes("port"));
  h.update(JSON.stringify(Object.entries(sizes).sort()));
  return h.digest("hex").slice(0, 24);
}

/** A map's name as the kernel keeps it (BPF_OBJ_NAME_LEN: 15 characters). */
const kernelName = (m: string) => m.slice(0, 15);

/** Programs pinned by an earlier load, and the maps pinned beside them. */
export class PinnedPrograms implements LoadedPrograms {
  readonly #progs = new Map<string, { fd: Fd; type: number }>();
  readonly #maps = new Map<string, BpfMap>();
  readonly #mapDir: string;

  private constructor(mapDir: string) {
    this.#mapDir = mapDir;
  }

  /** The programs `names` pinned in `dir`, if every one is there and each pinned map it uses
   * is the one pinned in `mapDir` now (`pinnedIds`: by name); undefined otherwise. */
  static open(
    dir: string,
    names: string[],
    mapDir: string,
    pinnedIds: Map<string, number>,
  ): PinnedPrograms | undefined {
    if (!existsSync(dir)) return undefined;
    const set = new PinnedPrograms(mapDir);
    const byName = new Map<string, number>();
    for (const [m, id] of pinnedIds) byName.set(kernelName(m), id);
    const nameOf = new Map<number, string>();
    try {
      for (const name of names) {
        const path = join(dir, name);
        if (!existsSync(path)) throw new Error(`no pin of ${name}`);
        const fd = new Fd(objGet(path, "program"));
        set.#progs.set(name, { fd, type: progInfo(fd.fd).type });
        for (const id of progMapIds(fd.fd)) {
          let n = nameOf.get(id);
          if (n === undefined) {
            using m = new Fd(mapFdById(id));
            n = mapInfo(m.fd).name;
            nameOf.set(id, n);
          }
          const want = byName.get(n);
          if (want !== undefined && want !== id) throw new Error(`${name} uses another ${n}`);
        }
      }
      return set;
    } catch {
      set.close();
      return undefined;
    }
  }

  program(name: string): ProgramHandle {
    const p = this.#progs.get(name);
    if (!p) throw new StratumError("NOT_FOUND", `no pinned program ${name}`);
    return { name, fd: p.fd.fd, type: p.type };
  }

  programs(): ProgramHandle[] {
    return [...this.#progs].map(([name, p]) => ({ name, fd: p.fd.fd, type: p.type }));
  }

  map(name: string): BpfMap {
    let m = this.#maps.get(name);
    if (!m) {
      m = BpfMap.openPinned(join(this.#mapDir, name));
      this.#maps.set(name, m);
    }
    return m;
  }

  close(): void {
    for (const p of this.#progs.values()) p.fd.close();
    for (const m of this.#maps.values()) m.close();
    this.#progs.clear();
    this.#maps.clear();
  }
}

/** Removes every build's program pins but `keep`'s (and the directories). */
export function clearProgramPins(root: string, keep?: string): void {
  const top = join(root, PROG_DIR);
  if (!existsSync(top)) return;
  for (const b of readdirSync(top)) {
    if (b === keep) continue;
    const d = join(top, b);
    for (const f of readdirSync(d)) unpin(join(d, f));
    rmdirSync(d);
  }
}

/** Pins every program of a loaded object under `stamp`, replacing other builds' pins. Best
 * effort: pins that cannot be written only mean the next start loads the object again. */
export function pinPrograms(root: string, stamp: string, obj: LoadedPrograms): void {
  const dir = join(root, PROG_DIR, stamp);
  try {
    clearProgramPins(root);
    mkdirSync(dir, { recursive: true });
    for (const p of obj.programs()) pinFd(p.fd, join(dir, p.name), `program ${p.name}`);
  } catch {
    try {
      clearProgramPins(root);
    } catch {}
  }
}
