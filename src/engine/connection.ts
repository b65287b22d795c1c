/**
 * Opening LM Studio for a command: discovery, the adapter, and the translation of a server that
 * cannot be reached into {@link LmStudioUnreachableError}.
 *
 * @module
 */

import { LmStudioUnreachableError, UsageError } from "../errors.ts";
import { DEFAULT_TIMEOUTS, type LmStudio, type Timeouts } from "../lmstudio/client.ts";
import { discoverServer, LMSTUDIO_PORTS } from "../lmstudio/discovery.ts";
import { classifyFailure, messageOf } from "../lmstudio/failures.ts";

/** Where and how to reach LM Studio. */
export interface ConnectSettings {
  /** An explicit address (`--server`, `LMSTRIX_SERVER`); discovery when undefined or empty. */
  server: string | undefined;
  /** Ports discovery asks (default: the contract's list). */
  discoveryPorts?: readonly number[] | undefined;
  /** Deadlines of calls, over the defaults. */
  timeouts: Partial<Timeouts>;
}

/** Finds LM Studio and opens the adapter; throws {@link LmStudioUnreachableError}. */
export async function connect(settings: ConnectSettings): Promise<LmStudio> {
  const ports = settings.discoveryPorts ?? LMSTUDIO_PORTS;
  let found;
  try {
    found = await discoverServer({ server: settings.server, ports });
  } catch (error) {
    throw new UsageError(messageOf(error), { hint: 'pass --server as "ws://host:port"' });
  }
  if (!found.found) {
    throw new LmStudioUnreachableError(
      found.tried.length === 1 ? found.tried[0]! : `127.0.0.1 (ports ${ports.join(", ")})`,
      found.emulators.length > 0
        ? `only LMStrix's emulator answered (${found.emulators.join(", ")}), ` +
          "and it is used only when named with --server"
        : "no LM Studio server answered the greeting",
    );
  }
  // The SDK loads only when a command talks to LM Studio: `list` and friends start faster.
  const { connectLmStudio } = await import("../lmstudio/client.ts");
  return await connectLmStudio(found.baseUrl, {
    timeouts: { ...DEFAULT_TIMEOUTS, ...settings.timeouts },
  });
}

/**
 * Runs `work` with the adapter and always closes it; a connection that cannot be made or is lost
 * for good becomes {@link LmStudioUnreachableError}.
 */
export async function withLmStudio<T>(
  settings: ConnectSettings,
  work: (lms: LmStudio) => Promise<T>,
): Promise<T> {
  const lms = await connect(settings);
  try {
    return await work(lms);
  } catch (error) {
    const kind = classifyFailure(error);
    if (kind === "unreachable" || kind === "connection-lost") {
      throw new LmStudioUnreachableError(lms.baseUrl, messageOf(error), { cause: error });
    }
    throw error;
  } finally {
    await lms.close();
  }
}
