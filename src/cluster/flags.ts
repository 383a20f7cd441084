/** What a cluster node and `cluster init` are told on their command lines, checked and read
 * the same way for both: etcd's client URLs, the node's name, and the files of etcd's TLS and
 * user (read before anything is asked of etcd). */
import { readFileSync } from "node:fs";
import { StratumError } from "../errors";
import { readError } from "../sys/paths";

/** --cluster's client URLs, each checked. */
export function parseEtcdEndpoints(text: string): string[] {
  const endpoints = text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (!endpoints.length) throw new StratumError("INVALID", "--cluster: give etcd's client URLs (http://HOST:2379)");
  for (const e of endpoints)
    if (!/^https?:\/\/[^/\s]+\/?$/.test(e))
      throw new StratumError(
        "INVALID",
        `--cluster ${e}: not an etcd client URL (http://HOST:PORT or https://HOST:PORT)`,
      );
  return endpoints;
}

/** --node-name: letters, digits, dots and dashes. */
export function checkNodeName(name: string): string {
  if (!/^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/i.test(name))
    throw new StratumError("INVALID", `--node-name ${name}: letters, digits, dots and dashes, up to 63`);
  return name;
}

/** The paths --etcd-ca, --etcd-cert, --etcd-key and --etcd-password-file name, and --etcd-user. */
export interface EtcdCredentialFlags {
  ca?: string;
  cert?: string;
  key?: string;
  user?: string;
  passwordFile?: string;
}

/** The PEM files and the password, read; the flags that go together checked first. */
export function readEtcdCredentials(f: EtcdCredentialFlags): {
  ca?: string;
  cert?: string;
  key?: string;
  username?: string;
  password?: string;
} {
  const read = (path: string | undefined, flag: string) => {
    if (path === undefined) return undefined;
    try {
      return readFileSync(path, "utf8");
    } catch (e) {
      throw readError(e, flag, path);
    }
  };
  if ((f.cert === undefined) !== (f.key === undefined))
    throw new StratumError("INVALID", "--etcd-cert and --etcd-key go together");
  if ((f.user === undefined) !== (f.passwordFile === undefined))
    throw new StratumError("INVALID", "--etcd-user and --etcd-password-file go together");
  return {
    ca: read(f.ca, "--etcd-ca"),
    cert: read(f.cert, "--etcd-cert"),
    key: read(f.key, "--etcd-key"),
    username: f.user,
    password: read(f.passwordFile, "--etcd-password-file")?.trim(),
  };
}
