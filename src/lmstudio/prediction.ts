/**
 * Reading a prediction's answer with bounds: LMStrix stops reading at the `maxTokens` it asked
 * for and cancels the prediction, keeps a bounded share of the text, and gives every prediction a
 * deadline with a ceiling.
 *
 * A server that ignores `maxTokens` (or a model that never stops where the server does not
 * enforce it) would otherwise stream for as long as the deadline allows, and the SDK collects
 * every fragment: a test process went from 260 MB to 1.1 GB in 90 s. Counting the tokens as they
 * arrive and cancelling at the limit ends the stream within one fragment of it; what a server
 * sends before the cancel lands is not kept beyond {@linkcode keptChars}.
 *
 * @module
 */

import type { LLMPredictionFragment, OngoingPrediction } from "@lmstudio/sdk";
import type { CompleteOptions, Completion, Timeouts } from "./client.ts";

/**
 * The longest any prediction may take: a prompt's allowance per token (15 ms, a slow laptop's
 * prefill) gives a 128k prompt 34 minutes and a 1M prompt over four hours; no answer LMStrix
 * reads is worth waiting longer than this. A base deadline set higher (`--timeout`) wins.
 */
export const PREDICT_CEILING_MS = 40 * 60_000;

/** How long a cancelled prediction may take to send its statistics before LMStrix moves on. */
export const CANCEL_GRACE_MS = 5_000;

/** Characters kept per token asked for: a token is a few characters, never this many. */
const CHARS_PER_TOKEN = 32;

/** The deadline of a prediction with a prompt of `promptTokens`: base + per token, capped. */
export function predictionDeadlineMs(timeouts: Timeouts, promptTokens: number): number {
  const ms = timeouts.predictBaseMs + promptTokens * timeouts.predictPerTokenMs;
  return Math.min(ms, Math.max(timeouts.predictBaseMs, PREDICT_CEILING_MS));
}

/** The most characters of an answer of at most `maxTokens` tokens that are kept. */
export function keptChars(maxTokens: number | false): number {
  return maxTokens === false ? Infinity : Math.max(1024, maxTokens * CHARS_PER_TOKEN);
}

/**
 * Reads the prediction `start` begins (with the signal it is given) up to `options.maxTokens`
 * tokens, telling `options.onText` each fragment; at the limit it cancels the prediction and
 * waits at most {@linkcode CANCEL_GRACE_MS} for the statistics, then stops the call.
 */
export async function collectPrediction(
  start: (signal: AbortSignal) => OngoingPrediction,
  signal: AbortSignal,
  options: Pick<CompleteOptions, "maxTokens" | "onText">,
): Promise<Completion> {
  const stop = new AbortController();
  const prediction = start(AbortSignal.any([signal, stop.signal]));
  const limit = options.maxTokens === false ? Infinity : options.maxTokens;
  const keep = keptChars(options.maxTokens);
  let text = "";
  let tokens = 0;
  let received = 0;
  let cut = false;
  for await (const fragment of prediction as AsyncIterable<LLMPredictionFragment>) {
    tokens += fragment.tokensCount > 0 ? fragment.tokensCount : 1;
    received += fragment.content.length;
    if (text.length < keep) text += fragment.content.slice(0, keep - text.length);
    options.onText?.(fragment.content);
    if (tokens >= limit || received > keep) {
      cut = true;
      break;
    }
  }
  if (cut) void prediction.cancel();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const grace = new Promise<undefined>((resolve) => {
    if (cut) timer = setTimeout(() => resolve(undefined), CANCEL_GRACE_MS);
  });
  try {
    const result = await Promise.race([prediction.result(), grace]);
    if (result === undefined) {
      stop.abort(); // The server streams on after the cancel: stop listening to it.
      return { text, promptTokens: undefined };
    }
    const stats = result.stats;
    return {
      text: cut ? text : result.content.slice(0, keep),
      promptTokens: stats.promptTokensCount,
      timeToFirstTokenSec: stats.timeToFirstTokenSec,
      stats: { ...stats },
    };
  } catch (error) {
    // A cancel we made may end the prediction with an error: the text read is the answer.
    if (cut && !signal.aborted) return { text, promptTokens: undefined };
    throw error;
  } finally {
    clearTimeout(timer);
  }
}
