/**
 * Finds the LM Studio server: an explicit address, or the greeting endpoint on the known ports.
 *
 * The SDK can discover the server itself, but with no server running its rejection escapes as an
 * unhandled promise and ends the process, so LMStrix probes the greeting itself and always hands
 * the SDK an explicit `baseUrl`.
 */

/** Ports LM Studio listens on, in the order the contract lists them. */
export const LMSTUDIO_PORTS: readonly number[] = [1234, 41343, 52993, 16141, 39414, 22931];

/** How to look for the server; everything has a production default. */
export interface DiscoveryOptions {
  /** `--server` or `LMSTRIX_SERVER`; skips discovery when set. */
  server?: string | undefined;
  /** Host probed for the greeting. */
  host?: string;
  /** Ports probed, in order of preference. */
  ports?: readonly number[];
  /** Time allowed for each greeting request, in milliseconds. */
  timeoutMs?: number;
  /** HTTP client, injectable for tests. */
  fetch?: typeof fetch;
}

/**
 * The outcome of discovery: the WebSocket base URL, or every address that was tried, with those
 * where LMStrix's own LM Studio emulator answered (never adopted without an explicit address).
 */
export type DiscoveryResult =
  | { found: true; baseUrl: string }
  | { found: false; tried: string[]; emulators: string[] };

/**
 * Field by which LMStrix's LM Studio emulator marks its greeting. Discovery never adopts a server
 * that sends it: a test emulator left running would otherwise have its fake models scanned into
 * the user's real LM Studio home. `--server` or `LMSTRIX_SERVER` still reaches it.
 */
export const EMULATOR_GREETING_MARK = "lmstrixEmulator";

/** What answered a greeting: LM Studio, LMStrix's emulator, or nothing that greets. */
export type Greeting = "lmstudio" | "emulator" | null;

/** Normalises a user-given server address to the `ws://host:port` form the SDK wants. */
export function normaliseServerUrl(server: string): string {
  const trimmed = server.trim().replace(/\/+$/, "");
  const withScheme = /^[a-z]+:\/\//i.test(trimmed) ? trimmed : `ws://${trimmed}`;
  const url = new URL(withScheme);
  if (url.protocol === "http:") url.protocol = "ws:";
  if (url.protocol === "https:") url.protocol = "wss:";
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new TypeError(`Unsupported scheme "${url.protocol}" in server address "${server}"`);
  }
  return `${url.protocol}//${url.host}`;
}

/** The HTTP origin of a `ws://` base URL, for the greeting and for REST calls. */
export function httpOrigin(baseUrl: string): string {
  return baseUrl.replace(/^ws/, "http");
}

/** Asks `GET <origin>/lmstudio-greeting` and tells who answered it. */
export async function greets(
  origin: string,
  timeoutMs: number,
  fetchImpl: typeof fetch = fetch,
): Promise<Greeting> {
  try {
    const response = await fetchImpl(`${origin}/lmstudio-greeting`, {
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!response.ok) {
      await response.body?.cancel();
      return null;
    }
    const body = await response.json() as Record<string, unknown>;
    if (body.lmstudio !== true) return null;
    return body[EMULATOR_GREETING_MARK] === true ? "emulator" : "lmstudio";
  } catch {
    return null;
  }
}

/**
 * Resolves the server: an explicit address is used as given (its reachability is checked by the
 * first call); otherwise the first port where LM Studio itself answers the greeting wins.
 */
export async function discoverServer(options: DiscoveryOptions = {}): Promise<DiscoveryResult> {
  if (options.server !== undefined && options.server !== "") {
    return { found: true, baseUrl: normaliseServerUrl(options.server) };
  }
  const host = options.host ?? "127.0.0.1";
  const ports = options.ports ?? LMSTUDIO_PORTS;
  const timeoutMs = options.timeoutMs ?? 1500;
  const origins = ports.map((port) => `http://${host}:${port}`);
  // All ports are asked at once; the earliest port in the list that answers wins.
  const answers = await Promise.all(
    origins.map((origin) => greets(origin, timeoutMs, options.fetch)),
  );
  const index = answers.indexOf("lmstudio");
  const port = ports[index];
  if (index >= 0 && port !== undefined) return { found: true, baseUrl: `ws://${host}:${port}` };
  const emulators = origins.filter((_, i) => answers[i] === "emulator");
  return { found: false, tried: origins, emulators };
}
