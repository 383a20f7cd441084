/** The agent's logging, set up in one place: every consola logger of the process (the global
 * one and each `withTag` of it, made before or after this module loads) reports through one
 * hub, which writes the line and hands the message to the sinks that count it (status's
 * recent problems, the log metrics). The line's form follows where stderr goes: consola's own
 * output on a terminal; one plain line per message with a timestamp and a level elsewhere
 * ("2026-12-06T10:00:00.000Z WARN  dhcp: …"); and, when systemd connected stderr to the
 * journal (JOURNAL_STREAM names stderr's device and inode), the same line led by its syslog
 * priority ("<4>WARN  dhcp: …") and without a timestamp, since journald keeps its own. */
import { fstatSync } from "node:fs";
import { formatWithOptions } from "node:util";
import { type ConsolaReporter, consola, type LogObject } from "consola";

export type LogFormat = "tty" | "plain" | "journal";

/** consola's reporters as they were when this module loaded: the terminal output. */
const originals = [...consola.options.reporters];
const consolaOutput = originals.map((r) => r.log.bind(r));
let output: ConsolaReporter["log"] = (o, ctx) => {
  for (const out of consolaOutput) out(o, ctx);
};
const sinks = new Set<ConsolaReporter>();

const hub: ConsolaReporter = {
  log(o, ctx) {
    output(o, ctx);
    for (const s of sinks) {
      try {
        s.log(o, ctx);
      } catch {}
    }
  },
};

// consola copies its reporter list into each logger withTag() makes, so a reporter added
// later reaches only the logger it was added to. Loggers made from now on get the hub; those
// made before hold consola's original reporters, which from now on hand to the hub (the first
// of them: each message once).
consola.setReporters([hub]);
originals.forEach((r, i) => {
  r.log = i === 0 ? (o, ctx) => hub.log(o, ctx) : () => {};
});

/** Adds a sink that sees every message of every logger; returns its removal. */
export function addLogSink(sink: ConsolaReporter): () => void {
  sinks.add(sink);
  return () => sinks.delete(sink);
}

/** Name and syslog priority of a consola log object's level. */
function level(o: LogObject): [name: string, priority: number] {
  if (o.level <= 0) return o.type === "fatal" ? ["FATAL", 2] : ["ERROR", 3];
  if (o.level === 1) return ["WARN", 4];
  if (o.level <= 3) return ["INFO", 6];
  return ["DEBUG", 7];
}

/** One message as one line (no newline inside: a multi-line message keeps its breaks as "\n"). */
export function formatLine(o: LogObject, format: "plain" | "journal"): string {
  const text = o.args
    .map((a) => (a instanceof Error ? a.message : typeof a === "string" ? a : formatWithOptions({ colors: false }, a)))
    .join(" ")
    .trim()
    .replace(/\r?\n/g, "\\n");
  const [name, priority] = level(o);
  const head = format === "journal" ? `<${priority}>` : `${(o.date ?? new Date()).toISOString()} `;
  return `${head}${name.padEnd(5)} ${o.tag ? `${o.tag}: ` : ""}${text}\n`;
}

/** The form stderr asks for: journal when JOURNAL_STREAM ("DEV:INODE") is stderr's, terminal
 * when it is a TTY, plain lines otherwise. */
export function detectLogFormat(
  env: Record<string, string | undefined> = process.env,
  isTTY = process.stderr.isTTY === true,
  fd = 2,
): LogFormat {
  const js = env.JOURNAL_STREAM;
  if (js) {
    try {
      const st = fstatSync(fd, { bigint: true });
      if (js === `${st.dev}:${st.ino}`) return "journal";
    } catch {}
  }
  return isTTY ? "tty" : "plain";
}

/** Sets the line form of every logger (default: what stderr asks for); `write` receives each line. */
export function configureLogging(
  format: LogFormat = detectLogFormat(),
  write: (line: string) => void = (l) => process.stderr.write(l),
): LogFormat {
  if (format === "tty")
    output = (o, ctx) => {
      for (const out of consolaOutput) out(o, ctx);
    };
  else output = (o) => write(formatLine(o, format));
  return format;
}
