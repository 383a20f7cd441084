/** Runs one BgpSession of the gateway's speaker in this process (started inside a namespace by
 * the BGP peer tests), driven by JSON lines on stdin and answering with JSON lines on stdout:
 *   {"op":"routes","prefixes":["10.20.0.0/24", …]}  announce exactly these (next hops from argv)
 *   {"op":"status"}                                   the session's status
 *   {"op":"stop","withdraw":false}                    end the session (graceful restart keeps
 *                                                     the routes at the peer unless withdraw)
 * argv[2]: JSON {local: LocalSpeaker, peer: PeerConfig (md5Key as a string), nextHop4, nextHop6, prefixes}. */
import { parsePrefix, prefixToString } from "../../src/gateway/bgp/codec";
import { BgpSession } from "../../src/gateway/bgp/session";

const cfg = JSON.parse(process.argv[2] as string);
if (cfg.peer.md5Key) cfg.peer.md5Key = Buffer.from(cfg.peer.md5Key);
let prefixes: string[] = cfg.prefixes ?? [];
const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
const s = new BgpSession(
  cfg.local,
  cfg.peer,
  () => ({ prefixes: prefixes.map(parsePrefix), nextHop4: cfg.nextHop4, nextHop6: cfg.nextHop6 }),
  (line) => process.stderr.write(`${line}\n`),
);
s.start();
let buf = "";
for await (const chunk of Bun.stdin.stream()) {
  buf += new TextDecoder().decode(chunk);
  let i = buf.indexOf("\n");
  while (i >= 0) {
    const line = buf.slice(0, i).trim();
    buf = buf.slice(i + 1);
    i = buf.indexOf("\n");
    if (!line) continue;
    const m = JSON.parse(line);
    if (m.op === "routes") {
      prefixes = m.prefixes;
      s.sync();
      out({ ok: true, announced: s.announced().map(prefixToString) });
    } else if (m.op === "status") out(s.status());
    else if (m.op === "stop") {
      await s.stop({ withdraw: m.withdraw === true });
      out({ ok: true, state: s.state });
      process.exit(0);
    }
  }
}
