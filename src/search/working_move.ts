/**
 * The working phase's decision: the next move as a pure function of the search state and its
 * settings ({@link nextWorkingMove}), carried out by the run loop in `context_search.ts`.
 *
 * @module
 */

import { climbStep, fullProbeFirst, jumpSize, promptPrices, splitPoint } from "./plan.ts";
import { prefillSeconds } from "./prefill_curve.ts";
import { gridState, planWorking, workingPrices } from "./working_plan.ts";
import type { NormalState, SearchConfig, SearchState, SearchTarget } from "./types.ts";

/** Below a failure, an interval of at most this many precisions is walked down, not bisected. */
const NARROW_STEPS = 4;

/**
 * The working phase's next move, decided from the state and the settings alone, so that it can
 * be tested directly and a resumed search decides exactly as an uninterrupted one:
 * - `done`: both bounds met (or nothing works at minContext loaded there);
 * - `run-target`: a load-level test is under way: go on with it;
 * - `set-target`: start a load-level test (load at `target.context`, `2+2=`, full-length needle);
 * - `prompt`: a needle of `size - reserve` tokens on the instance, without a load (`recheck`:
 *   the current hint again, at another depth).
 * `set-target` and `prompt` also give the hint and the instance the move rests on, which the run
 * stores: a hint outside the bounds is dropped, and a scan with no healthy instance picks one.
 */
export type WorkingMove =
  | { kind: "done"; working: number | null }
  | { kind: "run-target"; target: SearchTarget }
  | {
    kind: "set-target";
    target: SearchTarget;
    hint: number | null;
    instance: number | null;
  }
  | {
    kind: "prompt";
    size: number;
    recheck: boolean;
    hint: number | null;
    instance: number | null;
  };

/** Decides the working phase's next move (see {@link WorkingMove}). */
export function nextWorkingMove(state: NormalState, config: SearchConfig): WorkingMove {
  const { minContext, precision } = config;
  const top = state.loadable ?? minContext;
  const lo = state.workOk;
  const hi = state.workFail;
  const done = doneMove(state, config);
  if (done !== null) return done;
  if (state.target !== null) return { kind: "run-target", target: state.target };
  const hint = hintWithin(state, config);
  const s: NormalState = { ...state, hint };
  const target = (context: number, extra: Partial<SearchTarget> = {}): WorkingMove => ({
    kind: "set-target",
    target: { context, fresh: false, ...extra },
    hint,
    instance: s.instance,
  });
  if (s.distrustPrompts || s.backoff > 0) {
    // Load-level tests only: every size is loaded and probed at its full length.
    return target(loadLevelSize(s, config, lo, hi, top), {
      fresh: s.distrustPrompts,
      backoff: s.backoff > 0,
    });
  }
  const sanityTest = sanitySize(s, config, hi);
  if (sanityTest !== null) return target(sanityTest, { sanityOnly: true });
  const instance = scanInstance(s);
  if (instance !== null) s.instance = instance;
  const pass = Math.max(lo ?? 0, hint ?? 0) || null;
  if (instance === null || (pass !== null && instance <= pass)) {
    // No instance above the pass. Without a cache every test pays its whole prompt anyway: the
    // plan's next size, made as a load-level test there (a needle would need a reload first).
    const planned = cacheUsable(s) ? null : plannedStep(s, config, pass, hi, top);
    if (planned !== null) {
      return planned.size === top ? target(top) : target(planned.size, { fresh: true });
    }
    return target(loadLevelSize(s, config, lo, hi, top));
  }
  const prompt = (size: number, recheck: boolean): WorkingMove => ({
    kind: "prompt",
    size,
    recheck,
    hint,
    instance,
  });
  if (hint !== null && hi !== null && hi - hint <= precision) {
    // One pass may be luck (a noisy band): ask again at another depth on the same instance,
    // which costs only the question as the text is cached, before paying for a reload.
    if (s.hintChecked !== hint && promptsUsable(s, config, hint) && recheckIsCheap(s)) {
      return prompt(hint, true);
    }
    // Found by prompts on a larger instance: confirm by a load there, with a new haystack.
    return target(hint, { fresh: true, backoff: true });
  }
  const planned = cacheUsable(s) ? null : plannedStep(s, config, pass, hi, instance);
  if (planned !== null) {
    const x = planned.size;
    if (x === instance) return target(x);
    if (!promptsUsable(s, config, x)) return target(x);
    return planned.load ? target(x, { fresh: true }) : prompt(x, false);
  }
  const x = hi === null || hi > instance
    ? climbSize(s, config, pass, instance)
    : narrowSize(s, config, pass, hi);
  // The full length of the loaded instance: a load-level test without a reload.
  if (x === instance) return target(x);
  if (!promptsUsable(s, config, x)) return target(x);
  // A pass that would end the scan, where a load costs less than the prompt: test it loaded.
  if (finalByLoad(s, config, pass, x, hi)) return target(x, { fresh: true });
  return prompt(x, false);
}

/**
 * The end of the working phase, or null: the bounds meet (within the precision, or at the
 * loadable context), or nothing works even loaded at `minContext`.
 */
function doneMove(state: NormalState, config: SearchConfig): WorkingMove | null {
  const lo = state.workOk;
  const hi = state.workFail;
  const top = state.loadable ?? config.minContext;
  if (lo !== null && (lo >= top || (hi !== null && hi - lo <= config.precision))) {
    return { kind: "done", working: lo };
  }
  if (lo === null && state.workFailLoaded !== null && state.workFailLoaded <= config.minContext) {
    return { kind: "done", working: null };
  }
  return null;
}

/** The prompt-level pass still strictly between the bounds, or null (a hint outside is dropped). */
function hintWithin(state: NormalState, config: SearchConfig): number | null {
  const { hint, workOk: lo, workFail: hi } = state;
  if (hint === null) return null;
  const outside = hint <= (lo ?? config.minContext - 1) || (hi !== null && hint >= hi);
  return outside ? null : hint;
}

/** `2+2=` health at load size `x` implied by earlier answers (monotone), or null if unknown. */
export function saneAt(s: SearchState, x: number): boolean | null {
  if (s.saneOk !== null && x <= s.saneOk) return true;
  if (s.saneFail !== null && x >= s.saneFail) return false;
  return null;
}

/**
 * The instance the prompt-level scan runs on: the latest load when `2+2=` passed there, else a
 * size known to answer it (reloaded by the next prompt step); null when none is. A new instance
 * need only hold the prompts still to ask, all below the smallest failure: after a crash (or a
 * resume) the smaller load is the cheaper one.
 */
function scanInstance(s: SearchState): number | null {
  if (s.instance !== null && saneAt(s, s.instance) === true) return s.instance;
  if (s.saneOk === null) return null;
  return Math.min(s.saneOk, s.workFail ?? Infinity);
}

/**
 * Next load size whose `2+2=` health is worth knowing, or null. Only for a model broken when
 * loaded large, while no needle failed below the broken size: the health limit is then the
 * working limit unless a needle says otherwise, and health costs a load and `2+2=` while a
 * needle costs its whole prompt on every new instance. So the health limit is bisected first,
 * and needles run once, on the largest healthy instance.
 */
function sanitySize(s: SearchState, config: SearchConfig, hi: number | null): number | null {
  const { minContext, precision } = config;
  if (s.saneFail === null || hi === null || hi < s.saneFail) return null;
  const saneLo = Math.max(s.saneOk ?? 0, s.workOk ?? 0, s.hint ?? 0) || null;
  if (saneLo === null) {
    return s.saneFail - minContext <= precision
      ? minContext
      : splitPoint(minContext, s.saneFail, precision);
  }
  if (s.saneFail - saneLo <= precision) return null;
  return splitPoint(saneLo, s.saneFail, precision);
}

/**
 * Next prompt length (as a context size) of the scan on an instance loaded at `instance`, above
 * the largest pass so far (`pass`, or minContext when none), with no failure known below the
 * instance. Climbing keeps the prompt cache useful: each probe extends the previous prompt, so
 * the scan prefills each position once, up to the first failure, whatever the number of probes,
 * and a model working at its full size costs what one full-length probe costs plus the small
 * probes' overhead. Probing the full length first would prefill the whole instance even when the
 * model stops working far below it, and prefill grows faster than linearly with the position.
 * The step balances a probe's fixed cost (question, answer, counting) against the overshoot past
 * the limit, which the failing probe prefills for nothing and the narrowing below it walks back:
 * see {@link climbStep}. Without a prompt cache every probe pays for its whole prompt: the scan
 * grows by half instead ({@link jumpSize}), unless one full-length probe is expected to cost less
 * than the passes on the way ({@link fullProbeFirst}: likely where the instance is as large as
 * loads or health allow, see {@link atLimit}). Close to the instance size it probes the instance
 * size itself, which needs no confirming reload.
 */
function climbSize(
  s: NormalState,
  config: SearchConfig,
  pass: number | null,
  instance: number,
): number {
  const { minContext, precision } = config;
  const from = pass ?? minContext;
  const prices = promptPrices(s.costs);
  if (!cacheUsable(s)) {
    return fullProbeFirst(from, instance, precision, atLimit(s, config, instance), prices)
      ? instance
      : jumpSize(from, instance, precision);
  }
  const x = from + climbStep(from, precision, prices);
  return x > instance - precision ? instance : x;
}

/**
 * Without a prompt cache, the next test as the least expected cost plans it (`working_plan.ts`),
 * with the costs measured so far: a needle on the instance, or a confirming load; null where it
 * cannot plan (nothing timed yet, bounds off its grid, a grid too large), and the scan's rules
 * decide instead.
 */
function plannedStep(
  s: NormalState,
  config: SearchConfig,
  pass: number | null,
  hi: number | null,
  instance: number,
): { size: number; load: boolean } | null {
  const grid = { ...config, top: instance };
  const prices = workingPrices(s.costs, grid, atLimit(s, config, instance));
  if (prices === null) return null;
  const at = gridState(prices, pass, hi, s.workOk !== null && s.workOk === pass);
  const step = planWorking(prices, at.lo, at.hi, at.confirmed);
  const size = step === null ? undefined : prices.sizes[step.index];
  return size === undefined || step === null ? null : { size, load: step.load };
}

/**
 * Whether asking about a size again on the instance costs only the question (the cache holds
 * the text): not without a cache, and not once a crash has taken an instance, as the scan goes on
 * a new one where the recheck would cost a whole prefill.
 */
function recheckIsCheap(s: NormalState): boolean {
  return cacheUsable(s) && s.costs.crashes === 0;
}

/**
 * Whether the uncached scan's probe at `x` is better made as a load-level test (load at `x`, the
 * full-length needle with a new seed) than as a prompt on the larger instance. A pass at `x`
 * would end the scan (the failure above is within the precision), and a pass found by a prompt
 * is then confirmed by a load at `x` and a fresh full-length probe: the load-level test is that
 * confirmation at once. It saves the load and the whole prompt when it passes, and costs one load
 * more when it fails (the confirmation of the pass below follows either way). The limit is as
 * likely above the probe as below it, so it pays when a load takes less than the prompt's
 * prefill, both as measured on this model (mean successful load; the fitted prefill curve, else
 * the seconds per token of the latest cold prompt).
 * Not with a prompt cache, where the prompt costs only its question, nor before a prompt passed
 * (a load-level pass would then contradict the prompts' failures, see the distrust rule).
 */
function finalByLoad(
  s: NormalState,
  config: SearchConfig,
  pass: number | null,
  x: number,
  hi: number | null,
): boolean {
  const { costs } = s;
  if (cacheUsable(s) || pass === null || !s.promptPassed) return false;
  if (hi === null || hi - x > config.precision) return false;
  if (costs.loads === 0 || costs.coldSecondsPerToken === null) return false;
  const loadSeconds = costs.loadSeconds / costs.loads;
  const prompt = x - config.reserve;
  const curve = costs.prefillCurve ?? null;
  const prefill = curve === null
    ? costs.coldSecondsPerToken * prompt
    : curve.overheadSeconds + prefillSeconds(curve, 0, prompt);
  return loadSeconds < prefill;
}

/**
 * Whether the instance is as large as the model allows: loads were refused or fitted just above
 * it, or `2+2=` failed there. Then its full length is the likely working limit.
 */
function atLimit(s: NormalState, config: SearchConfig, instance: number): boolean {
  const { precision } = config;
  const loadLimit = s.loadFail !== null && s.loadFail - instance <= precision;
  const healthLimit = s.saneFail !== null && s.saneFail - instance <= precision;
  return loadLimit || healthLimit;
}

/** Whether the plan builds on the prompt cache (it works, or it has not been seen yet). */
function cacheUsable(s: NormalState): boolean {
  return s.plan.prompts !== "jump";
}

/**
 * Next size between the largest pass (`pass`, or minContext) and the smallest failure `hi` on
 * the loaded instance. Every probe below the last prompt reuses its prefix, so stepping down by
 * the precision from the failure costs no prefill; a pass ends the search for the prompt-level
 * limit there. A wide interval is bisected instead, to keep the number of probes logarithmic.
 * Where every probe pays for its whole prompt (no cache), the midpoint, not the high split, as a
 * shorter probe is also a cheaper one (on a log scale where the interval spans more than a factor
 * two). After a crash (with a cache), one precision above the pass: each probe above the boundary
 * would crash and cost a reload, each below it keeps the cache.
 */
function narrowSize(s: NormalState, config: SearchConfig, pass: number | null, hi: number): number {
  const { minContext, precision } = config;
  if (pass === null && hi - minContext <= precision) return minContext;
  const lo = pass ?? minContext;
  if (s.costs.crashes > 0 && cacheUsable(s)) {
    // A crash took the instance and its cache: approach the boundary from below, where passing
    // probes keep the cache and cost only their new tokens, so that a second crash settles it.
    return Math.max(lo + 1, Math.min(hi - 1, lo + precision));
  }
  if (!cacheUsable(s)) {
    // Across more than a factor two, the middle on a log scale: a limit is as likely between 8k
    // and 16k as between 16k and 32k, so that is where it splits the chances, and the lower
    // probe is also the cheaper one.
    const middle = hi > 2 * lo ? Math.sqrt(lo * hi) : (lo + hi) / 2;
    return Math.max(lo + 1, Math.min(hi - 1, Math.round(middle)));
  }
  if (hi - lo <= NARROW_STEPS * precision) return Math.max(lo + 1, hi - precision);
  return splitPoint(lo, hi, precision);
}

/** Next load-level test when prompts on a larger instance cannot be used or trusted. */
function loadLevelSize(
  s: SearchState,
  config: SearchConfig,
  lo: number | null,
  hi: number | null,
  top: number,
): number {
  const { minContext, precision } = config;
  if (hi === null) return top;
  if (s.backoff > 0) {
    // A confirmation failed: step down from the failure by the precision, doubling the step on
    // each further failure, so that a quality cliff far below costs a logarithmic number of loads.
    const x = hi - precision * 2 ** (s.backoff - 1);
    if (lo === null) return Math.max(x, minContext);
    if (x > lo) return x;
  }
  if (lo === null && hi - minContext <= precision) return minContext;
  return splitPoint(lo ?? minContext, hi, precision);
}

/** Whether the size `x` can be judged by a prompt on the current instance, without a load. */
function promptsUsable(s: SearchState, config: SearchConfig, x: number): boolean {
  // Reporting null needs a failure while loaded at minContext itself.
  if (x <= config.minContext && s.workOk === null) return false;
  return !s.distrustPrompts && s.instance !== null && s.instance > x &&
    saneAt(s, s.instance) === true;
}
