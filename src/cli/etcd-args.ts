/** The flags of etcd's TLS and user, the same on `agent` and `cluster init`. */
import type { EtcdCredentialFlags } from "../cluster/flags";

export const etcdArgs = {
  "etcd-ca": { type: "string", description: "CA certificate (PEM) that signed etcd's", valueHint: "FILE" },
  "etcd-cert": { type: "string", description: "Client certificate (PEM) for etcd", valueHint: "FILE" },
  "etcd-key": { type: "string", description: "Key (PEM) of --etcd-cert", valueHint: "FILE" },
  "etcd-user": { type: "string", description: "etcd user (with --etcd-password-file)", valueHint: "USER" },
  "etcd-password-file": {
    type: "string",
    description: "File holding the etcd user's password",
    valueHint: "FILE",
  },
} as const;

/** What those flags say, as the credential reader takes it. */
export function etcdCredentialFlags(args: {
  "etcd-ca"?: string;
  "etcd-cert"?: string;
  "etcd-key"?: string;
  "etcd-user"?: string;
  "etcd-password-file"?: string;
}): EtcdCredentialFlags {
  return {
    ca: args["etcd-ca"],
    cert: args["etcd-cert"],
    key: args["etcd-key"],
    user: args["etcd-user"],
    passwordFile: args["etcd-password-file"],
  };
}
