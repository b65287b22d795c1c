/**
 * The least work any search must do to prove a model's limits, for the bench to measure the
 * search against, and its price in the LM Studio emulator's virtual time. It knows the truth; a
 * search does not, so no search can beat it (see `best_average.ts` for the least average a search
 * that does not know the truth can reach).
 *
 * What counts as a proof (the rule of our search and of the bench's precision):
 * - loadable L: a real successful load at x, and a failed load (refused, or fitted down) within
 *   the precision above x, unless x is the cap; nothing loads: a failed load at minContext;
 * - working W < x, when a prompt's length sets it (needle cliff, crash): a needle failing on any
 *   instance with a prompt just above W's (above the noisy band's bottom: no needle fails below
 *   it), and a confirming load at the answer r, within the precision below, with a fresh
 *   full-length needle passing there;
 * - working W < x, when the load size sets it (`brokenAbove`: loaded above W every answer is
 *   wrong, even `2+2=`): a load within the precision above r on which `2+2=` fails (the loadable
 *   instance when it is close enough), and the confirming load at r as above;
 * - nothing works: a failing needle (of any length: it is a prompt's limit), or `2+2=` failing on
 *   a load at minContext when it is the load size's;
 * - W >= x: one full-length needle on the loadable instance passes.
 * Among the proofs the truth allows, the cheapest: each limit reported as low as the precision
 * lets it. Every prompt is the first on its instance, so the prompt cache never helps; nor does a
 * check (a load cancelled at its first progress report): refused, it costs what a refused load
 * costs, and a start proves nothing the real load at the answer need not prove again.
 *
 * @module
 */

import type { SearchConfig } from "../../src/search/context_search.ts";
import { searchCap } from "../../src/search/context_search.ts";
import { SANITY_PROMPT } from "../../src/probe/haystack.ts";
import { type ModelProfile, profileTruth } from "../emulator/profile.ts";
import { generateMs, loadMs, prefillMs, refusalMs, TIMING } from "../emulator/timing.ts";
import { countTokens } from "../emulator/tokenizer.ts";

/** The true limits of a model. */
export interface TrueLimits {
  /** True loadable context, or null when nothing at or above minContext loads. */
  loadable: number | null;
  /**
   * True working context, or null when nothing works: a context size (loaded there, a needle
   * prompt filling it up to the reserve passes; one more token of prompt fails).
   */
  working: number | null;
  /** Context at and below which every needle passes (bottom of a noisy band); default working. */
  noisyFloor?: number;
  /** Whether the load size sets the working limit (loaded above it, every answer is wrong). */
  byLoad?: boolean;
}

/** Cost of a search: loads and needle prompt tokens (the sum of prompt lengths). */
export interface SearchCost {
  /** Model loads. */
  loads: number;
  /** Needle prompt tokens sent. */
  promptTokens: number;
}

/** One unavoidable step, in order, so that a caller can price it with its own cost model. */
export type LowerBoundStep =
  | {
    kind: "load";
    context: number;
    /** Whether the load keeps the asked size (false: refused, or fitted down). */
    ok: boolean;
  }
  | {
    kind: "needle";
    /** Context of the instance it runs on (the last successful load). */
    context: number;
    /** Prompt length. */
    promptTokens: number;
    /** Whether the answer holds the needle's value. */
    passes: boolean;
  }
  | {
    /** `2+2=` failing on a broken instance: the shortest proof that a load size does not work. */
    kind: "sanity";
    /** Context of the instance it runs on (the last successful load). */
    context: number;
  };

/** Tokens of the shortest answer that holds a needle's value: its 7 digits. */
export const ANSWER_TOKENS = countTokens("1000000");

/** Tokens of the sanity prompt `2+2=`. */
export const SANITY_TOKENS = countTokens(SANITY_PROMPT);

/** The unavoidable steps of the cheapest proof of `truth` (see the module doc). */
export function lowerBoundSteps(truth: TrueLimits, config: SearchConfig): LowerBoundStep[] {
  const { minContext, reserve, precision } = config;
  const cap = searchCap(config);
  if (cap < minContext) return [];
  const { loadable, working } = truth;
  if (loadable === null || loadable < minContext) {
    return [{ kind: "load", context: minContext, ok: false }];
  }
  const steps: LowerBoundStep[] = [];
  const load = (context: number) => steps.push({ kind: "load", context, ok: true });
  const needle = (context: number, promptTokens: number, passes: boolean) =>
    steps.push({ kind: "needle", context, promptTokens, passes });
  let x = cap;
  if (loadable < cap) {
    x = Math.max(minContext, loadable + 1 - precision);
    steps.push({ kind: "load", context: loadable + 1, ok: false });
  }
  load(x);
  const broken = (context: number) => steps.push({ kind: "sanity", context });
  if (working === null || working < minContext) {
    if (truth.byLoad !== true) needle(x, 1, false);
    else {
      if (x > minContext) load(minContext);
      broken(minContext);
    }
    return steps;
  }
  if (working >= x) {
    needle(x, x - reserve, true);
    return steps;
  }
  let answer: number;
  if (truth.byLoad === true) {
    if (x <= working + precision) answer = Math.max(minContext, x - precision);
    else {
      load(working + 1);
      answer = Math.max(minContext, working + 1 - precision);
    }
    broken(steps.findLast((s) => s.kind === "load")?.context ?? x);
  } else {
    const floor = Math.min(working, truth.noisyFloor ?? working);
    needle(x, floor - reserve + 1, false);
    answer = Math.max(minContext, floor + 1 - precision);
  }
  load(answer);
  needle(answer, answer - reserve, true);
  return steps;
}

/**
 * The unavoidable work of {@link lowerBoundSteps}, counted: loads (failed ones too) and needle
 * prompt tokens (`2+2=` not counted, as a search's `promptTokens` does not count it).
 */
export function lowerBound(truth: TrueLimits, config: SearchConfig): SearchCost {
  const steps = lowerBoundSteps(truth, config);
  let loads = 0;
  let promptTokens = 0;
  for (const step of steps) {
    if (step.kind === "load") loads++;
    else if (step.kind === "needle") promptTokens += step.promptTokens;
  }
  return { loads, promptTokens };
}

/**
 * The true limits of an emulator profile, in the terms of {@link TrueLimits}: a prompt limit
 * (needle cliff, crash) becomes the context it fills up to the reserve.
 */
export function profileLimits(profile: ModelProfile, config: SearchConfig): TrueLimits {
  const truth = profileTruth(profile);
  if (truth.loadable === 0) return { loadable: null, working: null };
  const promptLimit = Math.min(profile.needleFailAbove ?? Infinity, profile.crashAbove ?? Infinity);
  const broken = profile.brokenAbove ?? Infinity;
  const working = Math.min(truth.loadable, broken, promptLimit + config.reserve);
  const limits: TrueLimits = {
    loadable: truth.loadable,
    working: working < config.minContext ? null : working,
  };
  if (broken < truth.loadable && broken === working) limits.byLoad = true;
  const cliff = profile.needleFailAbove;
  if (
    profile.noisyBand !== undefined && cliff !== undefined && limits.byLoad !== true &&
    cliff + config.reserve === working
  ) {
    limits.noisyFloor = cliff - profile.noisyBand + config.reserve;
  }
  return limits;
}

/**
 * Virtual time of a load that does not keep the asked size, as the emulator charges it: a
 * refusal of the profile's kind, or a load fitted down (and its unload).
 */
export function failedLoadMs(profile: ModelProfile, context: number): number {
  const refused = profile.noRuntime === true || context > profile.declaredContext ||
    (profile.loadFailAbove !== undefined && context > profile.loadFailAbove);
  if (!refused && profile.fitAbove !== undefined && context > profile.fitAbove) {
    return loadMs(profile, profile.fitAbove) + TIMING.unloadMs;
  }
  return refusalMs(profile, context);
}

/** Virtual time of a load that keeps the asked size (raised by auto-fit), and its unload. */
export function okLoadMs(profile: ModelProfile, context: number): number {
  return loadMs(profile, Math.max(context, profile.fitUpTo ?? 0)) + TIMING.unloadMs;
}

/** Whether a needle prompt of `promptTokens` kills the engine of `profile`. */
export function crashes(profile: ModelProfile, promptTokens: number): boolean {
  return profile.crashAbove !== undefined && promptTokens > profile.crashAbove;
}

/**
 * Virtual time of one needle prediction on an instance loaded at `context`, as the emulator
 * charges it: the prediction overhead, the prefill of the tokens past `cached`, and the generation
 * of the shortest answer that holds the value (a failing one: as long as the model's wrong answer
 * goes, up to that length; none when the engine crashes after the prefill).
 */
export function needleMs(
  profile: ModelProfile,
  context: number,
  promptTokens: number,
  passes: boolean,
  cached = 0,
): number {
  const base = TIMING.predictOverheadMs + prefillMs(profile, cached, promptTokens);
  if (passes) return base + generateMs(profile, promptTokens, ANSWER_TOKENS);
  if (crashes(profile, promptTokens)) return base;
  const broken = profile.brokenAbove !== undefined && context > profile.brokenAbove;
  const empty = !broken && profile.needleFailMode === "empty";
  return base + (empty ? 0 : generateMs(profile, promptTokens, ANSWER_TOKENS));
}

/**
 * Virtual time of {@link lowerBoundSteps} under the emulator's cost model: loads (with their
 * unloads, except for an instance a crash took), refusals and fitted loads, and each needle's
 * overhead, prefill and shortest answer. Not the token counting of our own probe.
 */
export function lowerBoundMs(profile: ModelProfile, steps: LowerBoundStep[]): number {
  let ms = 0;
  for (const step of steps) {
    if (step.kind === "load") {
      ms += step.ok ? okLoadMs(profile, step.context) : failedLoadMs(profile, step.context);
    } else if (step.kind === "sanity") {
      // The shortest answer that holds the 4 is the 4.
      ms += TIMING.predictOverheadMs + prefillMs(profile, 0, SANITY_TOKENS) +
        generateMs(profile, SANITY_TOKENS, 1);
    } else {
      ms += needleMs(profile, step.context, step.promptTokens, step.passes);
      if (!step.passes && crashes(profile, step.promptTokens)) ms -= TIMING.unloadMs;
    }
  }
  return ms;
}
