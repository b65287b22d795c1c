/**
 * What the probes' own timings teach the search about this model ({@link MeasuredCosts}): the
 * cost of a load and of a refusal, the prefill speed, and whether the server keeps the prompt
 * prefix. The plan (`choosePlan` in `plan.ts`) is read from these after every attempt.
 *
 * @module
 */

import { addPrefillSample, fitPrefillCurve, prefillSeconds } from "./prefill_curve.ts";
import type { Answer, LoadOutcome, MeasuredCosts } from "./types.ts";

/**
 * A prompt that extends the previous one by at least this share of its tokens tells whether the
 * cache works: with less shared, a cached and an uncached prefill cost about the same.
 */
const CACHE_TEST_SHARED = 0.3;

/** Counts a timed load or refusal towards the measured ratio of their costs. */
export function measureLoad(costs: MeasuredCosts, outcome: LoadOutcome): void {
  if (outcome.seconds === undefined) return;
  if (outcome.kind === "refused") {
    costs.refusals++;
    costs.refusalSeconds += outcome.seconds;
  } else {
    costs.loads++;
    costs.loadSeconds += outcome.seconds;
  }
}

/**
 * Learns from a needle's timings: a cold prompt (nothing cached) gives the seconds per token;
 * a prompt that extends the previous one by enough tells whether the server reused the shared
 * prefix (its time is nearer what the new tokens cost than what the whole prompt costs, both
 * priced with the prefill curve known so far); every timing whose prefilled positions are known
 * refits the curve ({@link fitPrefillCurve}). `cached`: the tokens the server could have kept
 * from the previous prompt.
 */
export function measurePrefill(
  costs: MeasuredCosts,
  promptTokens: number,
  cached: number,
  answer: Answer,
): void {
  const seconds = answer.prefillSeconds;
  if (seconds === undefined || seconds <= 0 || answer.crashed === true) return;
  if (answer.seconds !== undefined && answer.seconds >= seconds) {
    costs.needlesTimed = (costs.needlesTimed ?? 0) + 1;
    costs.needleExtraSeconds = (costs.needleExtraSeconds ?? 0) + answer.seconds - seconds;
  }
  if (cached === 0) {
    costs.coldSecondsPerToken = seconds / promptTokens;
    // The speed at the working size: the longest cold prompt that passed (the confirmation's
    // fresh probe at the result, when there is one).
    if (answer.pass && promptTokens >= (costs.prefillMeasuredAt ?? 0)) {
      costs.prefillTokensPerSec = Math.round(promptTokens / seconds);
      costs.prefillMeasuredAt = promptTokens;
    }
    return learnCurve(costs, 0, promptTokens, seconds);
  }
  const curve = costs.prefillCurve ?? null;
  if (costs.promptCache === null) {
    if (curve === null || cached < CACHE_TEST_SHARED * promptTokens) return;
    const whole = curve.overheadSeconds + prefillSeconds(curve, 0, promptTokens);
    const fresh = curve.overheadSeconds + prefillSeconds(curve, cached, promptTokens);
    costs.promptCache = seconds < (whole + fresh) / 2;
  }
  if (!costs.promptCache) {
    // Every prompt was cold after all: it measures the speed as well as a cold one.
    costs.coldSecondsPerToken = seconds / promptTokens;
  }
  learnCurve(costs, costs.promptCache ? cached : 0, promptTokens, seconds);
}

/** Adds the timing of positions [from, to) and refits the curve. */
function learnCurve(costs: MeasuredCosts, from: number, to: number, seconds: number): void {
  const samples = costs.prefillSamples ?? [];
  addPrefillSample(samples, [from, to, seconds]);
  costs.prefillSamples = samples;
  costs.prefillCurve = fitPrefillCurve(samples);
}
