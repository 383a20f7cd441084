/** The API client a command uses, chosen by the global flags: --api-url (with
 * --api-token-file) for the agent's TCP listener, else --api-socket, else the environment. */
import { ApiClient } from "../api/api-client";

export interface ApiFlags {
  "api-socket"?: unknown;
  "api-url"?: unknown;
  "api-token-file"?: unknown;
}

const str = (v: unknown) => (typeof v === "string" && v !== "" ? v : undefined);

export function client(args: ApiFlags): ApiClient {
  return new ApiClient({
    socket: str(args["api-socket"]),
    url: str(args["api-url"]),
    tokenFile: str(args["api-token-file"]),
  });
}
