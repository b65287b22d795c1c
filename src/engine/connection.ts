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
 * for good, or a call left unanswered, becomes {@link LmStudioUnreachableError}.
 */
export async function withLmStudio<T>(
  settings: ConnectSettings,
  work: (lms: LmStudio) => Promise<T>,
): Promise<T> {
  const lms = await connect(settings);
  try {
    return await work(lms);
  } catch (error) {
    if (error instanceof LmStudioUnreachableError) throw error; // said already (not answering)
    const reason = unreachableReason(error);
    if (reason !== null) {
      throw new LmStudioUnreachableError(lms.baseUrl, reason, { cause: error });
    }
    throw error;
  } finally {
    await lms.close();
  }
}

/**
 * Why `error` means LM Studio cannot be reached at the address (exit 3), or null: nothing listens,
 * the connection dropped for good, the server accepted the connection but never answered (a call
 * that reaches this level passed its deadline and its retries), a server that is not LM Studio
 * (an HTTP answer instead of a WebSocket), or a secure connection that failed (LM Studio's server
 * speaks plain `ws://`).
 */
export function unreachableReason(error: unknown): string | null {
  const kind = classifyFailure(error);
  const text = messageOf(error);
  if (kind === "unreachable" || kind === "connection-lost") return text;
  if (kind === "timeout") return `it accepted the connection but did not answer (${text})`;
  const status = /Unexpected server response: (\d+)/i.exec(text)?.[1];
  if (status !== undefined) {
    return `the server there is not LM Studio (it answered the connection with HTTP ${status})`;
  }
  if (/\bSSL\b|\bTLS\b|certificate|wrong version number|InvalidContentType/i.test(text)) {
    return `the secure connection failed (${text}); LM Studio's server speaks ws://, not wss://`;
  }
  return null;
}
