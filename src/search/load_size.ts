/**
 * The loadable phase's next size to load: a pure function of the state, the settings and
 * whether the last success is still loaded, so that a resumed search asks exactly what an
 * uninterrupted one would; and what a load or a check of that phase teaches.
 *
 * @module
 */

import {
  EXTRA_LOADABLE_LOADS,
  loadableAllowance,
  planLoads,
  searchCap,
  splitPoint,
} from "./plan.ts";
import { measureLoad } from "./measure.ts";
import type { Attempt, CheckOutcome, NormalState, SearchConfig } from "./types.ts";

/**
 * The next size the loadable bisection loads, between the largest success `state.loadOk` and
 * the smallest failure `state.loadFail`: the cap first, then LM Studio's fitted size when it
 * gave one, then the floor, then the cost-weighted plan ({@link planLoads}).
 * `loadedAtLo`: the instance at the last success is still held (a pass there costs no load).
 */
export function nextLoadSize(
  state: NormalState,
  config: SearchConfig,
  loadedAtLo: boolean,
): number {
  const { minContext, precision } = config;
  const lo = state.loadOk;
  const hi = state.loadFail;
  // The cap first: an honest model costs one load for everything.
  if (hi === null) return searchCap(config);
  const hint = state.fitHint;
  if (hint !== null && hint < hi) {
    if (lo === null && hint < minContext) return minContext;
    // LM Studio fitted the context to what it can hold, so the limit is most likely `hint`.
    // Proving it takes a failure within the precision above it and a load at it; the failure
    // goes first so that the last load is the one that stays loaded for the working phase.
    if (hint > (lo ?? minContext - 1)) return hint + precision < hi ? hint + precision : hint;
  }
  // The floor early: whether the model loads at all (a missing runtime or a broken file fails
  // everywhere: two loads say so), and the first successful load's cost, before planning.
  if (lo === null) {
    // A refusal after load progress (the engine failed on the weights) shows the runtime works
    // and costs about a load: the floor would spend one more, so the bisection starts at once.
    if (state.checks !== false || hi - minContext <= precision) return minContext;
    return splitPoint(minContext, hi, precision);
  }
  const units = Math.ceil((hi - lo) / precision);
  // A model broken at a loaded size needs its loads for the working phase's load bisection.
  const extra = state.saneFail === null ? EXTRA_LOADABLE_LOADS : 0;
  // The floor load is spent on proving the model loads at all, not on the bisection.
  const floor = state.fitHint === null ? 1 : 0;
  const left = loadableAllowance(config) - EXTRA_LOADABLE_LOADS + extra + floor -
    state.loadableLoads;
  const plan = planLoads(units, loadedAtLo, left, state.plan.loadCostRatio);
  if (plan.cost === Infinity) return splitPoint(lo, hi, precision);
  return Math.min(hi - 1, lo + plan.step * precision);
}

/** What a load of the loadable phase proves: the bounds, auto-fit's answer, whether checks hold. */
export function learnLoad(s: NormalState, attempt: Attempt): void {
  if (attempt.outcome === "loaded") {
    s.loadOk = Math.max(s.loadOk ?? 0, attempt.context);
    s.instance = attempt.context;
    return;
  }
  s.loadFail = Math.min(s.loadFail ?? Infinity, attempt.context);
  const fitted = attempt.actual;
  if (fitted !== undefined && fitted < attempt.context) {
    s.fitHint = fitted;
    // Auto-fit gives what the machine holds: any larger request gets the same answer, so only
    // the fitted size itself is left to load (unless a larger one loaded already).
    if (fitted >= (s.loadOk ?? 0)) s.loadFail = Math.min(s.loadFail, fitted + 1);
  }
  if (s.checkOk !== null && s.checkOk >= attempt.context) {
    // A check started here, yet the load failed: the guardrail is not what limits this model
    // (the engine is), so only full loads can tell from now on.
    s.checks = false;
    s.checkOk = null;
  }
}

/** What a check at `context` proves (a refusal bounds the loadable size like a refused load). */
export function learnCheck(s: NormalState, context: number, outcome: CheckOutcome): Attempt {
  const attempt: Attempt = { phase: "loadable", action: "check", context, outcome: "started" };
  if (outcome.kind === "refused") {
    measureLoad(s.costs, outcome);
    s.lastRefusal = outcome.message;
    s.loadFail = Math.min(s.loadFail ?? Infinity, context);
    attempt.outcome = "refused";
    attempt.excerpt = outcome.message;
    return attempt;
  }
  s.checkOk = Math.max(s.checkOk ?? 0, context);
  if (outcome.completed === true) s.costs.checksCompleted = (s.costs.checksCompleted ?? 0) + 1;
  if (outcome.seconds !== undefined) {
    s.costs.checks = (s.costs.checks ?? 0) + 1;
    s.costs.checkSeconds = (s.costs.checkSeconds ?? 0) + outcome.seconds;
  }
  return attempt;
}

/**
 * A size that loaded once may fail every time after (the engine's free memory shrank, or it now
 * fails to allocate there): the search then loads again below it, this many times at most.
 */
export const MAX_RELEARNS = 1;

/**
 * Every search ends within this many requests to LM Studio (loads, checks, `2+2=`, needles)
 * whatever the server answers: the last defence against answers that never settle. A search
 * with consistent answers sent at most 108 over 2,400 random truths (tests/implied_loads_test.ts).
 */
export const MAX_REQUESTS = 1_000;

/**
 * A load at `context` failed (refused or fitted) in the working phase, though the loadable phase
 * found it loads: that success is no longer trusted. The search goes back to the loadable phase
 * below `context` (what loads now), keeping the working bounds that still hold; the second time,
 * it gives up, as the loads are not repeatable.
 */
export function loadLost(s: NormalState, context: number): void {
  s.instance = null;
  s.target = null;
  s.relearns++;
  if (s.relearns > MAX_RELEARNS) {
    return giveUp(
      s,
      `Its loads stopped being repeatable: ${context} tokens failed to load after that ` +
        `size or more had loaded, twice (LM Studio's free memory may be shrinking)`,
    );
  }
  s.phase = "loadable";
  s.loadable = null;
  s.loadFail = Math.min(s.loadFail ?? Infinity, context);
  if (s.loadOk !== null && s.loadOk >= context) s.loadOk = null;
  if (s.checkOk !== null && s.checkOk >= context) s.checkOk = null;
  if (s.fitHint !== null && s.fitHint >= context) s.fitHint = null;
  if (s.workOk !== null && s.workOk >= context) s.workOk = null;
  s.hint = null;
  s.hintBelow = null;
  s.hintChecked = null;
}

/** Ends the search at the request ceiling ({@link MAX_REQUESTS}); true when it did. */
export function outOfRequests(s: NormalState): boolean {
  if (s.requests < MAX_REQUESTS) return false;
  const ceiling = MAX_REQUESTS.toLocaleString("en-US");
  giveUp(
    s,
    `Stopped after ${ceiling} requests to LM Studio: its answers never settled ` +
      `(a size loaded, then failed, or the reverse)`,
  );
  return true;
}

/** The search ends without limits, saying why. */
function giveUp(s: NormalState, reason: string): void {
  s.failure = reason;
  s.loadable = null;
  s.working = null;
  s.instance = null;
  s.target = null;
  s.phase = "done";
}
