/** Runs one scenario module inside whatever namespace this process was started in and
 * prints `{ok, result}` or `{ok: false, error}` as its last line. Started by Netns.scenario(). */
export {};

const [file, json] = process.argv.slice(2);
try {
  const mod = await import(file as string);
  const result = await mod.default(JSON.parse(json ?? "{}"));
  process.stdout.write(`\n${JSON.stringify({ ok: true, result })}\n`);
} catch (e) {
  const err = e as Error & { detail?: string };
  process.stdout.write(
    `\n${JSON.stringify({ ok: false, error: `${err.message}${err.detail ? `\n${err.detail}` : ""}` })}\n`,
  );
  process.exitCode = 1;
}
