/** A hostile BGP peer for the speaker's tests, run inside the router's namespace: it listens on
 * argv[2]:179 and, for each connection in turn, answers the speaker's OPEN properly (AS
 * argv[3]) and its KEEPALIVE, then sends one attack from the list (argv[4], JSON: hex strings
 * of whole messages or raw bytes) and reports, as one JSON line, what came back before the
 * connection closed: the messages' types and, for a NOTIFICATION, its code and subcode. */
import { decodeMessage, encodeKeepalive, encodeOpen, Framer, MSG } from "../../src/gateway/bgp/codec";

const [address, asn, attacksJson] = [process.argv[2] as string, Number(process.argv[3]), process.argv[4] as string];
const attacks = (JSON.parse(attacksJson) as string[]).map((h) => Buffer.from(h, "hex"));
let next = 0;

const server = Bun.listen({
  hostname: address,
  port: 179,
  socket: {
    open(s) {
      (s as any).data = { framer: new Framer(), got: [] as unknown[], stage: 0, attack: next++ };
    },
    data(s, chunk) {
      const st = (s as any).data;
      let msgs: Buffer[];
      try {
        msgs = st.framer.push(chunk);
      } catch (e) {
        st.got.push({ error: String(e) });
        return;
      }
      for (const raw of msgs) {
        const m = decodeMessage(raw, { as4: true });
        st.got.push(
          m.type === MSG.NOTIFICATION ? { type: m.type, code: m.code, subcode: m.subcode } : { type: m.type },
        );
        if (m.type === MSG.OPEN && st.stage === 0) {
          s.write(
            encodeOpen({
              asn,
              holdTime: 90,
              bgpId: address,
              families: [
                { afi: 1, safi: 1 },
                { afi: 2, safi: 1 },
              ],
            }),
          );
          s.write(encodeKeepalive());
          st.stage = 1;
        } else if (m.type === MSG.KEEPALIVE && st.stage === 1) {
          st.stage = 2;
          const a = attacks[st.attack];
          if (a) s.write(a);
        }
      }
    },
    close(s) {
      const st = (s as any).data;
      process.stdout.write(`${JSON.stringify({ attack: st.attack, got: st.got })}\n`);
      if (st.attack + 1 >= attacks.length) {
        server.stop(true);
        process.exit(0);
      }
    },
  },
});
