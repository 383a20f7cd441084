/** The agent's logging: every consola logger (made before or after the logging module loaded,
 * tagged or not) reaches the sinks that count warnings and errors, exactly once; lines off a
 * terminal are one per message with a timestamp and a level, and for the journal led by the
 * syslog priority instead of the timestamp; the journal is recognised by JOURNAL_STREAM
 * naming stderr's device and inode. */
import { afterEach, describe, expect, test } from "bun:test";
import { closeSync, fstatSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { consola, type LogObject } from "consola";

// A logger made before the logging module loads, as a module imported early would make it.
const early = consola.withTag("dhcp");
const { addLogSink, configureLogging, detectLogFormat, formatLine } = await import("../../src/agent/logging");
const { RecentLog } = await import("../../src/observe/runtime");

const obj = (o: Partial<LogObject>): LogObject =>
  ({ level: 3, type: "info", tag: "", args: [], date: new Date("2026-12-06T10:00:00.000Z"), ...o }) as LogObject;

afterEach(() => {
  configureLogging("tty");
});

describe("lines", () => {
  test("plain: timestamp, level, tag, message; journal: syslog priority, no timestamp", () => {
    const warn = obj({ level: 1, type: "warn", tag: "dhcp", args: ["not serving: bind 0.0.0.0:67: EADDRINUSE"] });
    expect(formatLine(warn, "plain")).toBe(
      "2026-12-06T10:00:00.000Z WARN  dhcp: not serving: bind 0.0.0.0:67: EADDRINUSE\n",
    );
    expect(formatLine(warn, "journal")).toBe("<4>WARN  dhcp: not serving: bind 0.0.0.0:67: EADDRINUSE\n");
    const cases: Array<[Partial<LogObject>, string]> = [
      [{ level: 0, type: "fatal" }, "<2>FATAL "],
      [{ level: 0, type: "error" }, "<3>ERROR "],
      [{ level: 1, type: "warn" }, "<4>WARN  "],
      [{ level: 2, type: "log" }, "<6>INFO  "],
      [{ level: 3, type: "info" }, "<6>INFO  "],
      [{ level: 3, type: "success" }, "<6>INFO  "],
      [{ level: 4, type: "debug" }, "<7>DEBUG "],
      [{ level: 5, type: "trace" }, "<7>DEBUG "],
    ];
    for (const [o, head] of cases) expect(formatLine(obj({ ...o, args: ["x"] }), "journal")).toBe(`${head}x\n`);
  });

  test("one line per message: breaks kept as \\n, an Error by its message, objects inspected", () => {
    const line = formatLine(
      obj({ tag: "agent", args: ["first\nsecond\r\nthird", new Error("boom"), { a: 1 }] }),
      "plain",
    );
    expect(line).toBe("2026-12-06T10:00:00.000Z INFO  agent: first\\nsecond\\nthird boom { a: 1 }\n");
    expect(line.split("\n")).toHaveLength(2);
    expect(formatLine(obj({ args: ["untagged"] }), "plain")).toBe("2026-12-06T10:00:00.000Z INFO  untagged\n");
  });

  test("the journal is stderr's only when JOURNAL_STREAM names its device and inode", () => {
    const dir = mkdtempSync(join(tmpdir(), "stm-log-"));
    const fd = openSync(join(dir, "journal"), "w");
    try {
      const st = fstatSync(fd, { bigint: true });
      expect(detectLogFormat({ JOURNAL_STREAM: `${st.dev}:${st.ino}` }, false, fd)).toBe("journal");
      expect(detectLogFormat({ JOURNAL_STREAM: `${st.dev}:${st.ino + 1n}` }, false, fd)).toBe("plain");
      expect(detectLogFormat({ JOURNAL_STREAM: `${st.dev}:${st.ino + 1n}` }, true, fd)).toBe("tty");
      expect(detectLogFormat({}, false, fd)).toBe("plain");
      expect(detectLogFormat({}, true, fd)).toBe("tty");
    } finally {
      closeSync(fd);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("every logger counts", () => {
  test("loggers made before and after the set-up write their lines and reach the sinks, once each", () => {
    const lines: string[] = [];
    expect(configureLogging("plain", (l) => lines.push(l))).toBe("plain");
    const recent = new RecentLog(10);
    const remove = addLogSink(recent.reporter);
    try {
      const late = consola.withTag("addressing");
      const nested = late.withTag("dns");
      early.warn("port 67 is taken");
      late.warn("dns: not serving");
      nested.error(new Error("bind failed"));
      consola.create({ level: 3 }).info("plain info"); // (bun test runs consola at warn level)
      expect(recent.totals).toEqual({ warn: 2, error: 1 });
      expect(recent.list().map((p) => `${p.level} ${p.tag} ${p.message}`)).toEqual([
        "warn dhcp port 67 is taken",
        "warn addressing dns: not serving",
        "error addressing:dns bind failed",
      ]);
      expect(lines).toHaveLength(4);
      for (const l of lines) expect(l).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z (ERROR|WARN |INFO ) \S.*\n$/);
      expect(lines[0]).toEndWith(" WARN  dhcp: port 67 is taken\n");
      // No glyph-only levels, no blank lines.
      expect(lines.join("")).not.toMatch(/[✔ℹ⚠✖]|\n\n/);
    } finally {
      remove();
    }
    early.warn("after the sink went");
    expect(recent.totals.warn).toBe(2);
  });

  test("the journal form writes priorities", () => {
    const lines: string[] = [];
    configureLogging("journal", (l) => lines.push(l));
    consola.withTag("agent").warn("drift repaired: change link stm0 (up)");
    expect(lines).toEqual(["<4>WARN  agent: drift repaired: change link stm0 (up)\n"]);
  });
});
