/** Another build of Stratum for upgrade tests: the port object compiled with other -D
 * settings (table sizes: STM_CT_MAX, STM_PROFILES_MAX), the other objects as built, and a
 * second compiled binary embedding them, made from this tree's sources in a temporary
 * directory. `remove()` deletes it. */
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
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
    mkdirSync(join(dir, "build/bpf"), { recursive: true });
    for (const f of readdirSync(join(ROOT, "build/bpf")))
      if (f.endsWith(".o")) copyFileSync(join(ROOT, "build/bpf", f), join(dir, "build/bpf", f));
    const arch = process.arch === "arm64" ? "arm64" : "x86";
    runOk([
      "clang",
      "-O2",
      "-g",
      "-target",
      "bpf",
      `-D__TARGET_ARCH_${arch}`,
      ...defines.map((d) => `-D${d}`),
      "-Wall",
      "-Werror",
      "-Wno-unused-function",
      "-I",
      join(ROOT, "build/include"),
      "-I",
      join(ROOT, "bpf/include"),
      "-c",
      join(ROOT, "bpf/port.bpf.c"),
      "-o",
      join(dir, "build/bpf/port.bpf.o"),
    ]);
    runOk(["llvm-strip", "-g", join(dir, "build/bpf/port.bpf.o")]);
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
