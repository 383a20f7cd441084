/** The blocklist's mark (firewall-service.ts BlockMark) as a file in the state directory,
 * replaced whole. It holds, besides what the service writes, what ties it to this boot and
 * this store: BPF map ids start again at every boot, so a mark from before a reboot could
 * otherwise name the new, empty tries; a store file put back from a backup is another file.
 * A mark that cannot be removed stops the change it comes before. */
import { readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import type { BlockMark } from "../services/firewall-service";

/** This boot and the store file `dbPath` (its device and inode), as one line. */
export function markContext(dbPath: string): string {
  let boot = "";
  try {
    boot = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    // Without a boot id a mark is never trusted (a fresh random one each time).
    boot = `no-boot-id-${Math.random()}`;
  }
  const st = statSync(dbPath, { throwIfNoEntry: false });
  return `${boot} ${st ? `${st.dev}:${st.ino}` : "no-store"}`;
}

export function fileBlockMark(path: string, dbPath: string, context = () => markContext(dbPath)): BlockMark {
  return {
    read: () => {
      let text: string;
      try {
        text = readFileSync(path, "utf8");
      } catch {
        return undefined;
      }
      const nl = text.indexOf("\n");
      return nl >= 0 && text.slice(0, nl) === context() ? text.slice(nl + 1) : undefined;
    },
    write: (v) => {
      writeFileSync(`${path}.next`, `${context()}\n${v}`, { mode: 0o600 });
      renameSync(`${path}.next`, path);
    },
    clear: () => {
      try {
        unlinkSync(path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      }
    },
  };
}
