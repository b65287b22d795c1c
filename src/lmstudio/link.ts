/**
 * What every adapter call goes through: a deadline and an interrupt on each call, failures
 * classified, and the SDK's logger listened to for the replies it drops. Split from `client.ts`,
 * which holds the calls themselves.
 *
 * @module
 */

import { LmStudioReplyUnreadableError } from "../errors.ts";
import { classifyFailure, droppedReplyReason, LmStudioCallError, messageOf } from "./failures.ts";

/**
 * The SDK's logger, kept quiet but listened to: when a reply fails the SDK's schema, the SDK
 * drops it with only a logged warning and the call never settles. Listening lets a caller fail
 * at once, saying what was wrong, instead of waiting for its deadline.
 */
export class SdkWarnings {
  readonly #listeners = new Set<(text: string) => void>();
  readonly logger = {
    info() {},
    error() {},
    debug() {},
    warn: (...parts: unknown[]) => {
      const text = parts.map(String).join(" ");
      for (const listener of this.#listeners) listener(text);
    },
  };

  /** Calls `onDropped` with the reason when the SDK drops a reply of `endpoint`, until `stop`. */
  watch(endpoint: string, onDropped: (reason: string) => void): { stop(): void } {
    const listener = (text: string) => {
      const reason = droppedReplyReason(text, endpoint);
      if (reason !== null) onDropped(reason);
    };
    this.#listeners.add(listener);
    return { stop: () => this.#listeners.delete(listener) };
  }
}

/**
 * One adapter's connection, shared by its loaded models: every call goes through it with a
 * deadline, and it remembers whether LM Studio has answered one (a refusal after an answer is a
 * restart, not a server that was never started).
 */
export class Link {
  /** Whether LM Studio has answered a call on this adapter. */
  answered = false;
  /** The server's address, for the errors that are the server's. */
  readonly #baseUrl: string;

  constructor(baseUrl: string) {
    this.#baseUrl = baseUrl;
  }

  /**
   * Runs `work` with a deadline. On timeout or on `outer` aborting, the inner signal aborts so the
   * SDK cancels its channel, and the caller gets a classified error at once, even if the SDK's own
   * promise never settles.
   */
  async call<T>(
    call: string,
    ms: number,
    outer: AbortSignal | undefined,
    work: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onAbort: (() => void) | undefined;
    const stop = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        controller.abort();
        reject(
          new LmStudioCallError(
            call,
            "timeout",
            `LM Studio did not answer "${call}" within ${formatSeconds(ms)}`,
          ),
        );
      }, ms);
      onAbort = () => {
        controller.abort();
        reject(new LmStudioCallError(call, "aborted", `"${call}" was interrupted`));
      };
      if (outer?.aborted) onAbort();
      else outer?.addEventListener("abort", onAbort, { once: true });
    });
    const running = work(controller.signal);
    // The loser of the race must not surface as an unhandled rejection.
    running.catch(() => {});
    stop.catch(() => {});
    try {
      const result = await Promise.race([running, stop]);
      this.answered = true;
      return result;
    } catch (error) {
      if (error instanceof LmStudioCallError) throw error;
      if (/max payload size exceeded/i.test(messageOf(error))) {
        // The SDK's socket refuses a message over 100 MiB and closes: no reply is that big, and
        // retrying gets the same one. The server is at fault, not a model: exit 3.
        throw new LmStudioReplyUnreadableError(
          this.#baseUrl,
          `it sent a message larger than 100 MiB in answer to "${call}"`,
          {
            cause: error,
            hint: "restart LM Studio; if it persists, check what answers at --server",
          },
        );
      }
      let kind = controller.signal.aborted && outer?.aborted ? "aborted" : classifyFailure(error);
      // A server that answered before and now refuses connections is restarting (or gone): worth
      // retrying with backoff like a dropped connection, not the "start the server" failure.
      if (kind === "unreachable" && this.answered) kind = "connection-lost";
      throw new LmStudioCallError(call, kind, messageOf(error), { cause: error });
    } finally {
      clearTimeout(timer);
      if (onAbort) outer?.removeEventListener("abort", onAbort);
    }
  }
}

function formatSeconds(ms: number): string {
  return ms < 10_000 ? `${Math.round(ms / 100) / 10} s` : `${Math.round(ms / 1000)} s`;
}
