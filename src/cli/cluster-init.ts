/** `cluster init`: with the agent stopped, uploads this node's state into an empty etcd as a
 * new cluster (src/cluster/init.ts) and makes the state directory a copy of it; the agent
 * then starts with --cluster. Refused while an agent uses the state directory: the agent of
 * this network namespace (its @stratum-agent marker), the one answering --api-socket, and
 * the lock every agent holds on its state directory (taken here for the whole upload). */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { type CommandMeta, defineCommand } from "citty";
import { DEFAULT_API_SOCKET } from "../api/api-client";
import { checkNodeName, parseEtcdEndpoints, readEtcdCredentials } from "../cluster/flags";
import { initCluster } from "../cluster/init";
import { StratumError } from "../errors";
import { describeAgent, netnsAgent } from "../ops/netns-owner";
import { SqliteStore } from "../store/sqlite";
import { closeFd, lockDirectory } from "../sys/os";
import { etcdArgs, etcdCredentialFlags } from "./etcd-args";
import { DEFAULT_STATE_DIR } from "./local-paths";
import { outputArg, parseFormat, printData } from "./output";

/** The state directory of the agent answering at `socket`, if one does (root only: mode 0600). */
async function socketAgentStateDir(socket: string): Promise<string | undefined> {
  if (!existsSync(socket)) return undefined;
  try {
    const r = await fetch("http://stratum/v1/status", {
      unix: socket,
      signal: AbortSignal.timeout(2000),
    } as RequestInit);
    const body = (await r.json()) as { stateDir?: unknown };
    return typeof body.stateDir === "string" ? body.stateDir : "";
  } catch {
    return undefined;
  }
}

/** Refuses while an agent uses `stateDir`; returns the fd of the state directory's lock. */
async function claimStateDir(stateDir: string, apiSocket: string): Promise<number> {
  const stop = "stop it first (systemctl stop cenvero-stratum), then run cluster init again; nothing was uploaded";
  const live = netnsAgent(2000);
  if (live) {
    const same = !live.identity || resolve(live.identity.stateDir) === resolve(stateDir);
    throw new StratumError(
      "INVALID",
      same
        ? `an agent is running on the state directory ${stateDir} (${describeAgent(live)}): ${stop}`
        : `an agent runs in this network namespace (${describeAgent(live)}): cluster init uploads the state of this node with its agent stopped: ${stop}`,
    );
  }
  const served = await socketAgentStateDir(apiSocket);
  if (served !== undefined && (served === "" || resolve(served) === resolve(stateDir)))
    throw new StratumError("INVALID", `an agent is serving ${apiSocket} on the state directory ${stateDir}: ${stop}`);
  const lock = lockDirectory(stateDir);
  if (lock === undefined)
    throw new StratumError(
      "INVALID",
      `another process holds the state directory ${stateDir} (an agent, perhaps in another network namespace, or another cluster init): ${stop}`,
    );
  return lock;
}

export const clusterInitCommand = defineCommand({
  meta: {
    name: "init",
    description:
      "Make a new cluster from this node's state (agent stopped): upload its networks, endpoints, rules, blocklist and DNS records into an empty etcd, ids kept, then start the agent with --cluster",
    examples: [
      "systemctl stop cenvero-stratum",
      "cenvero-str-ctl cluster init --cluster http://10.0.0.2:2379,http://10.0.0.3:2379 --node-name node-a",
      "# then add --cluster, --node-name and --node-address to the agent's line and start it again",
      "cenvero-str-ctl cluster init --cluster https://10.0.0.2:2379 --node-name node-a --etcd-ca /etc/stratum/etcd-ca.pem --etcd-cert /etc/stratum/node-a.pem --etcd-key /etc/stratum/node-a-key.pem -o json",
      "# an earlier init stopped half-way (its keys are not a cluster): delete them and upload again",
      "cenvero-str-ctl cluster init --cluster http://10.0.0.2:2379 --node-name node-a --force-clean-partial",
    ],
  } as CommandMeta,
  args: {
    cluster: {
      type: "string",
      required: true,
      description:
        "The etcd client URLs of the new cluster, comma-separated: etcd must hold nothing under /stratum/v1/",
      valueHint: "URL[,URL…]",
    },
    "node-name": {
      type: "string",
      required: true,
      description: "This node's name in the cluster (the agent's --node-name): every endpoint of the state runs on it",
      valueHint: "NAME",
    },
    "state-dir": {
      type: "string",
      default: DEFAULT_STATE_DIR,
      description: "The agent's state directory, whose state is uploaded",
      valueHint: "DIR",
    },
    ...etcdArgs,
    "force-clean-partial": {
      type: "boolean",
      description:
        "etcd holds keys under /stratum/v1/ but no cluster (an init that stopped half-way): delete them first",
    },
    ...outputArg,
  },
  async run({ args }) {
    const fmt = parseFormat(args.output);
    const endpoints = parseEtcdEndpoints(args.cluster);
    const nodeName = checkNodeName(args["node-name"]);
    const credentials = readEtcdCredentials(etcdCredentialFlags(args));
    const stateDir = args["state-dir"];
    const dbPath = join(stateDir, "stratum.db");
    if (!existsSync(dbPath))
      throw new StratumError(
        "NOT_FOUND",
        `no state database at ${dbPath}: nothing to upload (use --state-dir; a node without state joins by starting its agent with --cluster)`,
      );
    // The global --api-socket (else the environment's, else the default): its agent must not be on this state.
    const apiSocket =
      (typeof args["api-socket"] === "string" && args["api-socket"]) ||
      process.env.STRATUM_API_SOCKET ||
      DEFAULT_API_SOCKET;
    const lock = await claimStateDir(stateDir, apiSocket);
    // Progress goes to stderr when stdout carries a document.
    const say = (line: string) => (fmt === "table" ? process.stdout : process.stderr).write(`${line}\n`);
    try {
      const store = new SqliteStore(dbPath);
      try {
        const quarantined = store.quarantinedRows();
        if (quarantined)
          say(`note: ${quarantined} quarantined row(s) stay in this node's quarantine table and are not uploaded`);
        const r = await initCluster(store, {
          endpoints,
          nodeName,
          ...credentials,
          forceCleanPartial: !!args["force-clean-partial"],
          progress: say,
        });
        if (fmt !== "table") {
          const { keys: _keys, ...summary } = r;
          return printData(fmt, summary);
        }
        say(
          `cluster ${r.clusterId} created from this node's state at etcd revision ${r.revision}: ${r.networks} network(s), ${r.endpoints} endpoint(s) on node ${nodeName}, ${r.rules} firewall rule(s), ${r.blocklist} blocklisted prefix(es), ${r.dnsRecords} DNS record(s)`,
        );
        say(
          `now start the agent with --cluster ${endpoints.join(",")} --node-name ${nodeName} --node-address ADDR (this node's underlay address)`,
        );
      } finally {
        store.close();
      }
    } finally {
      closeFd(lock);
    }
  },
});
