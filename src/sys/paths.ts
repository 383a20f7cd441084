/** Directories and files a command must be able to write, checked before it changes anything.
 * A read-only mount (EROFS), a missing permission (EACCES) or an immutable file (EPERM)
 * becomes one line that names the path and what to do, with code PERMISSION; a path whose
 * parent is a file is INVALID. Nothing here retries or falls back. `hint` says what the
 * user can do instead ("give the agent another --state-dir"). */
import { accessSync, constants, mkdirSync, statSync } from "node:fs";
import { type ErrorCode, StratumError } from "../errors";

interface FsError {
  code?: string;
  path?: string;
  message?: string;
}

/** The one-line error for a failed filesystem call on `path` (`head` says what was tried). */
export function pathError(e: unknown, head: string, path: string, hint: string): StratumError {
  const f = (e ?? {}) as FsError;
  // Where it failed, when that is another path (a parent mkdir could not make).
  const at = f.path && f.path !== path ? ` at ${f.path}` : "";
  const fail = (code: ErrorCode, why: string, remedy?: string) =>
    new StratumError(
      code,
      `${head}: ${why}${remedy ? `: ${remedy}${hint ? `, or ${hint}` : ""}` : hint ? `: ${hint}` : ""}`,
      { cause: e },
    );
  switch (f.code) {
    case "EROFS":
      return fail("PERMISSION", `read-only filesystem (EROFS)${at}`, "remount it read-write");
    case "EACCES":
      return fail("PERMISSION", `permission denied (EACCES)${at}`, "run as root, or as the owner of the path");
    case "EPERM":
      return fail("PERMISSION", `operation not permitted (EPERM)${at}`, "is it immutable? (lsattr; chattr -i)");
    case "ENOTDIR":
      return fail("INVALID", `a parent is not a directory (ENOTDIR)${at}`);
    case "ENOENT":
      return fail("INVALID", `a parent does not exist and cannot be made there (ENOENT)${at}`);
    case "EEXIST":
      return fail("INVALID", `it exists and is not a directory${at}`);
    case "ENOSPC":
      return fail("SYS", `no space left on the device (ENOSPC)${at}`);
    default:
      return fail("SYS", f.code ? `${f.code}${at} (${f.message ?? ""})` : String(f.message ?? e));
  }
}

/** The one-line error for a file a flag names that could not be read (a certificate, a
 * password file): what is wrong with it, and which flag to fix. */
export function readError(e: unknown, flag: string, path: string): StratumError {
  const code = ((e ?? {}) as FsError).code;
  const why =
    code === "ENOENT"
      ? "no such file"
      : code === "EACCES"
        ? "not readable by this user (EACCES)"
        : code === "EISDIR"
          ? "a directory, not a file"
          : `cannot read it (${code ?? String(e)})`;
  return new StratumError(
    code === "EACCES" ? "PERMISSION" : "INVALID",
    `${flag} ${path}: ${why}: give ${flag} a readable file`,
    {
      cause: e,
    },
  );
}

/** Creates `dir` (and its parents) if needed and proves this process may create files in it. */
export function writableDir(dir: string, what: string, hint: string, mode = 0o700): void {
  try {
    mkdirSync(dir, { recursive: true, mode });
  } catch (e) {
    throw pathError(e, `cannot create ${what} ${dir}`, dir, hint);
  }
  if (!statSync(dir).isDirectory())
    throw new StratumError("INVALID", `${what} ${dir} is not a directory${hint ? `: ${hint}` : ""}`);
  try {
    // access() honours read-only mounts and immutable flags even for root, who ignores mode bits.
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch (e) {
    throw pathError(e, `${what} ${dir} is not writable`, dir, hint);
  }
}

/** Proves an existing file may be written (a file that does not exist passes: its directory decides). */
export function writableFile(path: string, what: string, hint: string): void {
  try {
    accessSync(path, constants.R_OK | constants.W_OK);
  } catch (e) {
    if ((e as FsError).code === "ENOENT") return;
    throw pathError(e, `${what} ${path} is not writable`, path, hint);
  }
}
