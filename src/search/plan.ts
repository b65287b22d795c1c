/**
 * The search's cost model and plan: what it measured of a model's costs ({@link noCosts}), the
 * plan those call for ({@link choosePlan}), and the arithmetic of the loadable bisection (the
 * split point, the load planner weighted by the measured cost ratio, the climbing step). Pure.
 *
 * @module
 */

import { DEFAULT_DOUBLING_TOKENS, describeCurve, type PrefillCurve } from "./prefill_curve.ts";
import type { MeasuredCosts, SearchConfig, SearchPlan } from "./types.ts";

/**
 * What one needle probe costs beyond the prefill of its new prompt tokens (the question, the
 * answer's generation, counting tokens, the round trip), in prompt tokens at the start of the
 * context, until the run has timed needles whole: generating ten tokens takes about as long as
 * prefilling several hundred. Measured, it is the fitted overhead and the mean time beyond the
 * first token, over the fitted speed ({@link probeCostTokens}).
 */
const PROBE_COST_TOKENS = 1000;

/** Bounds of the measured probe cost, in tokens: a timing gone wrong must not rule the plan. */
const PROBE_COST_RANGE = [50, 100_000] as const;

/**
 * How the search prices prompts: the depth at which attention has doubled a token's prefill
 * cost (the fitted curve's, else {@link DEFAULT_DOUBLING_TOKENS}) and a probe's fixed cost in
 * tokens at the start of the context ({@link PROBE_COST_TOKENS} until measured).
 */
export interface PromptPrices {
  doublingTokens: number;
  probeTokens: number;
}

/**
 * The prompt prices the measured costs give (the defaults where nothing was measured), each
 * rounded to a quarter power of two: within 10 % is all a price needs, and a plan that changes
 * only when a cost changes by that much, not with the noise of a clock, repeats from run to run.
 */
export function promptPrices(costs?: MeasuredCosts): PromptPrices {
  const curve: PrefillCurve | null = costs?.prefillCurve ?? null;
  const rounded = (x: number) => Math.round(2 ** (Math.round(Math.log2(x) * 4) / 4));
  return {
    doublingTokens: curve?.doublingMeasured === true
      ? rounded(curve.doublingTokens)
      : DEFAULT_DOUBLING_TOKENS,
    probeTokens: costs === undefined ? PROBE_COST_TOKENS : probeCostTokens(costs, rounded),
  };
}

/** A probe's fixed cost in tokens at the start of the context, measured where it was timed. */
function probeCostTokens(costs: MeasuredCosts, rounded: (x: number) => number): number {
  const curve = costs.prefillCurve ?? null;
  const timed = costs.needlesTimed ?? 0;
  if (curve === null || timed === 0 || curve.secondsPerToken <= 0) return PROBE_COST_TOKENS;
  const seconds = curve.overheadSeconds + (costs.needleExtraSeconds ?? 0) / timed;
  const tokens = seconds / curve.secondsPerToken;
  return rounded(Math.min(PROBE_COST_RANGE[1], Math.max(PROBE_COST_RANGE[0], tokens)));
}

/**
 * What a load that succeeds costs, in loads that LM Studio refuses, until the run has timed one
 * of each (or where the probe does not time its loads): loading the weights takes seconds, a
 * guardrail refusal a fraction of one. After a refused cap the floor load times a success, so
 * the bisection that follows plans with the measured ratio instead.
 */
const LOAD_COST_RATIO = 25;

/**
 * Below this measured ratio refusals are not worth aiming for: an engine failure reads the weights
 * and costs about what a success costs (ratio near 1), and leaning on refusals would only spend
 * more loads. The planner then weighs both alike, which makes it a plain bisection.
 */
const LEAN_RATIO = 3;

/** Largest ratio the planner weighs: beyond it a success costs "many refusals" all the same. */
const MAX_LOAD_COST_RATIO = 128;

/**
 * Load times below this many seconds count as this much: a guardrail refusal takes a few tenths
 * of a second, and below that the clock measures the round trip and the process, not LM Studio's
 * work. It also keeps the plan the same from run to run where every load is that quick (a tiny
 * model, a test server), which a ratio of two noisy milliseconds would not.
 */
const MIN_TIMED_SECONDS = 0.5;

/** Loads the loadable phase may spend beyond a plain bisection, to make fewer of them succeed. */
export const EXTRA_LOADABLE_LOADS = 2;

/** Largest interval, in precisions, that the load planner plans exactly (else it bisects). */
const PLAN_UNITS = 200;

/** Largest context the search may load: `min(declared, maxContext)`. */
export function searchCap(config: SearchConfig): number {
  return Math.min(config.declared, config.maxContext ?? config.declared);
}

/** Load budget the search keeps for a well-behaved model: `2*ceil(log2(declared/precision)) + 3`. */
export function loadBudget(config: SearchConfig): number {
  const ratio = Math.max(1, config.declared / config.precision);
  return 2 * Math.ceil(Math.log2(ratio)) + 3;
}

/** Costs of a model nothing is known of yet. */
export function noCosts(): MeasuredCosts {
  return {
    loads: 0,
    loadSeconds: 0,
    refusals: 0,
    refusalSeconds: 0,
    promptCache: null,
    coldSecondsPerToken: null,
    prefillTokensPerSec: null,
    prefillMeasuredAt: null,
    crashes: 0,
    checks: 0,
    checkSeconds: 0,
    checksCompleted: 0,
    prefillSamples: [],
    prefillCurve: null,
    needlesTimed: 0,
    needleExtraSeconds: 0,
  };
}

/**
 * The plan the measured costs call for: the load planner weighs a success by the measured ratio
 * of a successful load's seconds to a refused one's (the prior until both were timed), and
 * prompts climb on the cache unless the cache was seen not to work. `checks`: the loadable
 * bisection runs on checks (refusals came before loading and the probe has checks).
 */
export function choosePlan(costs: MeasuredCosts, checks = false): SearchPlan {
  const pay = checks && checksPay(costs);
  const measured = costs.loads > 0 && costs.refusals > 0 && costs.refusalSeconds > 0;
  const mean = (total: number, n: number) => Math.max(MIN_TIMED_SECONDS, total / n);
  const raw = measured
    ? mean(costs.loadSeconds, costs.loads) / mean(costs.refusalSeconds, costs.refusals)
    : LOAD_COST_RATIO;
  // Powers of two: a plan that changes only when the costs change by a factor, not with noise.
  const ratio = Math.min(MAX_LOAD_COST_RATIO, 2 ** Math.round(Math.log2(Math.max(1, raw))));
  return {
    loadCostRatio: ratio < LEAN_RATIO ? 1 : ratio,
    refusals: ratio < LEAN_RATIO ? "bisect" : "lean",
    prompts: costs.promptCache === false ? "jump" : "climb",
    promptCache: costs.promptCache,
    checks: pay,
  };
}

/**
 * A started check should cost about what a refusal costs, plus the wait for LM Studio's first
 * progress report: far less than a load. Where it costs more than this many refusals (a server
 * that finishes the load despite the cancel, a first report that comes late), checks stop.
 */
const CHECK_COST_REFUSALS = 8;

/**
 * Checks LM Studio may load all the same before they stop, when they are most of the checks:
 * now and then a cancel comes a moment too late; two in a row say the server does not honour
 * the cancel, and each check costs a load.
 */
const MAX_CHECKS_COMPLETED = 2;

/**
 * Whether checks are worth their price, from what was measured: a started check against a load
 * that succeeded when one was timed above {@link MIN_TIMED_SECONDS} (it must cost less than
 * half), else against a refusal; and
 * not where LM Studio loads what it was asked to cancel ({@link MAX_CHECKS_COMPLETED}).
 */
export function checksPay(costs: MeasuredCosts): boolean {
  const checks = costs.checks ?? 0;
  const completed = costs.checksCompleted ?? 0;
  if (completed >= MAX_CHECKS_COMPLETED && completed * 2 > checks) return false;
  if (checks === 0) return true;
  const check = Math.max(MIN_TIMED_SECONDS, (costs.checkSeconds ?? 0) / checks);
  const load = costs.loads > 0 ? costs.loadSeconds / costs.loads : 0;
  // A load too quick for the clock to tell (a tiny model, a test server) says nothing either way.
  if (load > MIN_TIMED_SECONDS) return check * 2 < load;
  if (costs.refusals === 0) return true;
  const refusal = Math.max(MIN_TIMED_SECONDS, costs.refusalSeconds / costs.refusals);
  return check <= CHECK_COST_REFUSALS * refusal;
}

/** A plan in a few words, for `show`: `lean on refusals (a load costs 16x); climb prompts`. */
export function describePlan(plan: SearchPlan): string {
  const loads = plan.checks === true
    ? "bisect with checks (loads stopped as they start)"
    : plan.refusals === "lean"
    ? `lean on refusals (a load costs ${plan.loadCostRatio}x)`
    : "plain load bisection";
  const prompts = plan.prompts === "climb"
    ? "climb prompts on the cache"
    : "prompts grow by half, then bisect";
  return `${loads}; ${prompts}`;
}

/**
 * A decision for the attempt log: what was measured, then the plan it calls for, e.g.
 * `loads 6.5 s, refusals 0.3 s, prompt cache works: lean on refusals (a load costs 16x); …`.
 */
export function describeDecision(plan: SearchPlan, costs: MeasuredCosts): string {
  const mean = (total: number, n: number) => n > 0 ? `${(total / n).toFixed(1)} s` : "not timed";
  const cache = costs.promptCache === null
    ? "prompt cache not seen yet"
    : costs.promptCache
    ? "prompt cache works"
    : "no prompt cache";
  const curve = costs.prefillCurve ? `, prefill ${describeCurve(costs.prefillCurve)}` : "";
  return `loads ${mean(costs.loadSeconds, costs.loads)}, refusals ${
    mean(costs.refusalSeconds, costs.refusals)
  }, ${cache}${curve}: ${describePlan(plan)}`;
}

/**
 * The next size to test in the open interval between `lo` (passed, or when `lo` is null the
 * untested `minContext`) and `hi` (failed). Instead of the midpoint it takes the highest point that
 * keeps the worst-case number of steps of a bisection, `lo + p*2^k` with `p*2^k` the largest such
 * step below `hi - lo`: a pass there leaves a shorter interval and a larger result, and a search
 * ending on a pass keeps its last instance loaded for the next phase.
 */
export function splitPoint(lo: number, hi: number, precision: number): number {
  let step = Math.max(1, precision);
  while (step * 2 < hi - lo) step *= 2;
  return Math.min(hi - 1, lo + step);
}

/**
 * Step of the climbing prompt scan above a pass at `from`: at least the precision, else the step
 * that minimises the scan's expected cost when the limit lies anywhere above. Climbing to a limit
 * W in steps s costs about W/s probes of fixed cost c; the first failure overshoots the limit by
 * s/2 on average, prefilled at the cost of tokens near W, and stepping back down costs a probe
 * per precision p. Minimising W*c/s + s/2 * (cost of a token near W + c/p) gives
 * s = sqrt(2*W*c / (1 + W/a + c/p)), a the position where attention doubles a token's cost;
 * a and c as measured on this model ({@link promptPrices}).
 */
export function climbStep(from: number, precision: number, prices = promptPrices()): number {
  const c = prices.probeTokens;
  const tokenCost = 1 + from / prices.doublingTokens + c / precision;
  return Math.max(precision, Math.round(Math.sqrt(2 * from * c / tokenCost)));
}

/**
 * Loads the loadable phase may use in all: the load at the cap, a bisection of the rest to the
 * precision, the reload of its result, and {@link EXTRA_LOADABLE_LOADS}.
 */
export function loadableAllowance(config: SearchConfig): number {
  const units = Math.max(1, (searchCap(config) - config.minContext) / config.precision);
  return 2 + Math.ceil(Math.log2(units)) + EXTRA_LOADABLE_LOADS;
}

/** Memo of {@link planLoads}: key `units,loaded,loads`. */
const loadPlans = new Map<string, { cost: number; step: number }>();

/**
 * Plan of the loadable bisection when loads that succeed cost `ratio` times a refused one: for an interval of `units` precisions above the largest size known to load
 * (`loaded`: whether that size is loaded now) and below the smallest known not to, the step
 * (in precisions) of the next load that minimises the expected cost, the limit being anywhere in
 * the interval, without ever needing more than `loads` loads, the reload of the result included.
 * A success there costs the most and leaves the smaller part above it; a refusal is cheap. So the
 * plan tests above the midpoint and ends on a success when it can. Returns the expected cost
 * (Infinity when `loads` cannot suffice).
 */
export function planLoads(
  units: number,
  loaded: boolean,
  loads: number,
  ratio: number = LOAD_COST_RATIO,
): { cost: number; step: number } {
  if (units <= 1) {
    if (loaded) return { cost: 0, step: 0 };
    return { cost: loads >= 1 ? ratio : Infinity, step: 0 };
  }
  if (loads <= 0 || units > PLAN_UNITS || loads < Math.ceil(Math.log2(units))) {
    return { cost: Infinity, step: 0 };
  }
  const key = `${units},${loaded},${loads},${ratio}`;
  const known = loadPlans.get(key);
  if (known !== undefined) return known;
  let best = { cost: Infinity, step: 0 };
  for (let step = units - 1; step >= 1; step--) {
    const up = planLoads(units - step, true, loads - 1, ratio).cost;
    const down = planLoads(step, false, loads - 1, ratio).cost;
    const cost = ((units - step) * (ratio + up) + step * (1 + down)) / units;
    if (cost < best.cost - 1e-9) best = { cost, step };
  }
  loadPlans.set(key, best);
  return best;
}

/**
 * Prior chance that a model works at the full length of its largest healthy instance, when that
 * instance is as large as memory or health allow (loads or `2+2=` fail just above it): the
 * context a model was trained for usually lies above what a machine holds, so the limit a person
 * meets is most often the memory's. One in two, as a neutral guess between "it works there" and
 * "it stops somewhere below"; {@link fullProbeFirst} weighs it against the measured costs.
 */
export const FULL_WORKS_AT_LIMIT = 0.5;

/**
 * The same chance when the instance is loaded at the declared size (or `--max-context`): long-
 * context benchmarks (RULER and the like) find most models answering well only at a fraction of
 * what they declare, so a full-length probe first would mostly be paid for nothing.
 */
export const FULL_WORKS_AT_DECLARED = 0.25;

/**
 * Without a prompt cache the scan grows the prompt by this share of the last pass. Each probe
 * pays for its whole prompt and prefill grows faster than linearly, so the failing probe past the
 * limit costs up to (1 + g)^2 times one at it, while the passes below cost about 1/g of one: a
 * growth of one half balances the two and leaves a short interval to bisect.
 */
const JUMP_GROWTH = 0.5;

/**
 * What a needle probe of `size` tokens costs when nothing of it is cached, in prompt tokens at
 * the start of the context: its fixed cost, plus every position's prefill, the cost of a token at
 * position p being `1 + p / a` (so `size + size^2 / 2a` in all), a and the fixed cost as
 * measured on this model ({@link promptPrices}).
 */
export function uncachedProbeCost(size: number, prices = promptPrices()): number {
  return prices.probeTokens + size + size * size / (2 * prices.doublingTokens);
}

/**
 * Next size of the uncached scan growing from a pass at `from` on an instance of `top`: by
 * {@link JUMP_GROWTH}, at least the precision, and the instance size itself once within a
 * precision of it (a pass there needs no confirming reload).
 */
export function jumpSize(from: number, top: number, precision: number): number {
  const x = from + Math.max(precision, Math.round(from * JUMP_GROWTH));
  return x > top - precision ? top : x;
}

/**
 * Whether an uncached scan above a pass at `from` should probe the instance's full length `top`
 * next, instead of growing towards it. If the model works at `top`, the growing scan pays for
 * each of its passes on the way ({@link jumpSize}, each {@link uncachedProbeCost}) and then for
 * `top`; probing `top` first saves those passes. If it does not, the full-length probe is paid
 * for nothing (the growing scan goes on as before, under a known failure). So: probe first when
 * `chance * passesSaved > (1 - chance) * cost(top)`, the chance being {@link FULL_WORKS_AT_LIMIT}
 * when `atLimit` (loads or `2+2=` fail just above the instance), else
 * {@link FULL_WORKS_AT_DECLARED}.
 */
export function fullProbeFirst(
  from: number,
  top: number,
  precision: number,
  atLimit: boolean,
  prices = promptPrices(),
): boolean {
  const chance = atLimit ? FULL_WORKS_AT_LIMIT : FULL_WORKS_AT_DECLARED;
  let saved = 0;
  for (let x = jumpSize(from, top, precision); x < top; x = jumpSize(x, top, precision)) {
    saved += uncachedProbeCost(x, prices);
  }
  return chance * saved > (1 - chance) * uncachedProbeCost(top, prices);
}
