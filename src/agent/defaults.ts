/** The agent's defaults the CLI shows in its help: here, so that the CLI does not load the agent
 * (src/agent/daemon.ts and everything it imports) to print them. */

/** Seconds between full reconcile passes. */
export const DEFAULT_RECONCILE_INTERVAL = 30;
