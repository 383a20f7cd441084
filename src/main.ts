/** Entry point of cenvero-str-ctl: the CLI (and, in later versions, the agent). */
import { runCli } from "./cli/run";

process.exitCode = await runCli(process.argv.slice(2));
