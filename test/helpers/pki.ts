/** A throw-away certificate authority for TLS tests, made with openssl: a CA, a server
 * certificate for 127.0.0.1 and a client certificate, as PEM files in a temporary directory
 * that destroy() (or process exit) removes. The server certificate is also good for client
 * authentication: etcd 3.4's JSON gateway dials the member's own gRPC port with it, and
 * --client-cert-auth rejects that connection unless it carries clientAuth. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runOk } from "./netns";

const live = new Set<TestPki>();
process.on("exit", () => {
  for (const p of [...live]) p.destroy();
});

export interface CertFiles {
  cert: string;
  key: string;
}

export class TestPki {
  readonly dir: string;
  readonly ca: string;
  readonly server: CertFiles;
  readonly client: CertFiles;

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), "stm-pki-"));
    live.add(this);
    const f = (n: string) => join(this.dir, n);
    this.ca = f("ca.pem");
    runOk(
      ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"].concat([
        "-keyout",
        f("ca-key.pem"),
        "-out",
        this.ca,
        "-days",
        "2",
        "-subj",
        "/CN=stratum test CA",
      ]),
    );
    this.server = this.#issue(
      "server",
      "127.0.0.1",
      "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth",
    );
    this.client = this.#issue("client", "stratum-client", "extendedKeyUsage=clientAuth");
  }

  #issue(name: string, cn: string, ext: string): CertFiles {
    const f = (n: string) => join(this.dir, n);
    const key = f(`${name}-key.pem`);
    const cert = f(`${name}.pem`);
    runOk(
      ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"].concat([
        "-keyout",
        key,
        "-out",
        f(`${name}.csr`),
        "-subj",
        `/CN=${cn}`,
      ]),
    );
    writeFileSync(f(`${name}.ext`), `${ext}\n`);
    runOk(
      ["openssl", "x509", "-req", "-in", f(`${name}.csr`), "-CA", this.ca, "-CAkey", f("ca-key.pem")].concat([
        "-CAcreateserial",
        "-out",
        cert,
        "-days",
        "2",
        "-extfile",
        f(`${name}.ext`),
      ]),
    );
    return { cert, key };
  }

  /** A file's PEM text. */
  pem(path: string): string {
    return readFileSync(path, "utf8");
  }

  destroy(): void {
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }
}
