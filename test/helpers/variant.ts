/** Another build of Stratum for upgrade tests: the port object compiled with other -D
 * settings (table sizes: STM_CT_MAX, STM_PROFILES_MAX), the other objects as well, and a
 * second compiled binary embedding them, made from this tree's sources in a temporary
 * directory. `remove()` deletes it. */
import { copyFileSync, cpSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BUN, ROOT, runOk } from "./netns";

export interface Variant {
  binary: string;
  remove(): void;
}

export function buildVariant(tag: string, defines: string[]): Variant {
  const dir = mkdtempSync(join(tmpdir(), `stm-variant-${tag}-`));
  try {
    // The datapath objects as scripts/build makes them (its units linked), with `defines`.
    runOk(["bash", join(ROOT, "scripts/build"), "bpf"], {
      env: { STM_BPF_OUT: join(dir, "build/bpf"), STM_BPF_DEFINES: defines.map((d) => `-D${d}`).join(" ") },
    });
    cpSync(join(ROOT, "src"), join(dir, "src"), { recursive: true });
    cpSync(join(ROOT, "bpf/include"), join(dir, "bpf/include"), { recursive: true }); // the drop reasons, as text
    for (const f of ["package.json", "tsconfig.json"]) copyFileSync(join(ROOT, f), join(dir, f));
    symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
    const binary = join(dir, "cenvero-str-ctl");
    // The flags of scripts/build: the same kind of binary as dist/ (consola behaves the same, for one).
    // Outside the test's environment: bun inlines NODE_ENV at build time (test would quiet the log).
    runOk([
      "env",
      "-u",
      "NODE_ENV",
      BUN,
      "build",
      "--compile",
      "--minify-syntax",
      "--sourcemap=inline",
      join(dir, "src/main.ts"),
      "--outfile",
      binary,
    ]);
    return { binary, remove: () => rmSync(dir, { recursive: true, force: true }) };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}
