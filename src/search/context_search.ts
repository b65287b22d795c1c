/**
 * The context-limit search: finds a model's loadable and working context with few loads and few
 * prompt tokens, driven by an injected {@link Probe}. Pure: no Deno APIs, no SDK, no clock; async
 * only because the probe is. Every attempt is traced and every intermediate state is handed to the
 * caller, so a search cut short (signal, crash, power loss) resumes where it stopped.
 *
 * Assumptions, shared with every bisection: loading, `2+2=` health and needle success are each
 * monotone in the context (true below some size, false above it), apart from the noisy band that
 * the recheck at a second depth and the confirmation step exist for.
 *
 * Where the time goes, and so the order of the tests, is measured per model as the run goes
 * ({@link MeasuredCosts}, from the durations and the server's own prefill times the probe
 * reports), and the plan follows ({@link choosePlan}):
 * - A guardrail refusal takes a fraction of a second and a load that succeeds seconds, so the
 *   loadable bisection leans towards sizes likely to be refused ({@link planLoads}, weighted by the
 *   measured ratio). An engine failure reads the weights first and costs about a full load: then
 *   the measured ratio is near 1 and the plan is a plain bisection.
 * - Prefill dominates a needle probe. Where the server keeps the prompt prefix of the last probe
 *   on an instance (standard attention), the working search climbs from a short prompt: each
 *   probe pays only for its new tokens, nothing past the first failure is ever prefilled
 *   ({@link climbStep}), and below a failure every shorter prompt is a prefix of the cached one.
 *   Hybrid and sliding-window models reprocess the whole prompt every time; there small steps
 *   would pay for the whole prompt again and again, so the scan doubles the prompt length and
 *   bisects below the first failure instead.
 * The floor comes early: after the cap fails, a load at `minContext` tells at once whether the
 * model loads at all (a missing runtime fails everywhere) and gives the first successful load's
 * cost. A load that LM Studio fits upwards (reports more than asked) counts as loaded at the
 * asked size; a prediction that crashes the engine is a failed probe at that length.
 *
 * @module
 */

/** What the search is asked to find and how precisely. */
export interface SearchConfig {
  /** Context length the model declares. */
  declared: number;
  /** Smallest context worth testing; below it the model counts as failed (limit `null`). */
  minContext: number;
  /** Hard cap on every load: nothing is ever loaded above it. Default: `declared`. */
  maxContext?: number;
  /** Each reported limit is at most the truth and at least the truth minus this many tokens. */
  precision: number;
  /** Tokens left free in the working probe's prompt (the prompt is `context - reserve` long). */
  reserve: number;
}

/**
 * Result of asking for a load at some context length; `seconds`, when the probe measured it, is
 * what the load (or the refusal) took, for the cost model.
 */
export type LoadOutcome =
  | { kind: "loaded"; actual: number; seconds?: number }
  | { kind: "refused"; message: string; seconds?: number };

/** A graded answer of the loaded model. */
export interface Answer {
  /** Whether the answer holds what was asked for. */
  pass: boolean;
  /** A short excerpt of the completion, for the trace. */
  excerpt: string;
  /** Set when the prediction killed the engine: a failed answer, and the instance is gone. */
  crashed?: boolean;
  /**
   * What processing the prompt took, in seconds: the server's `timeToFirstTokenSec` where it
   * says, else the wall clock of the prediction. Tells whether the prompt cache works.
   */
  prefillSeconds?: number;
}

/** What the search needs from the outside world: loading and asking one model. */
export interface Probe {
  /** Loads the model at `context`, unloading any instance loaded before. */
  load(context: number): Promise<LoadOutcome>;
  /** Asks `2+2=` of the loaded instance. */
  sanity(): Promise<Answer>;
  /**
   * Needle probe on the loaded instance with a prompt of exactly `promptTokens` tokens; `fresh`
   * asks for a new haystack/needle seed (used by the confirm step); `depth` in [0,1] where the
   * asked needle sits.
   */
  needle(promptTokens: number, opts: { fresh: boolean; depth: number }): Promise<Answer>;
  /** Unloads whatever this probe loaded. */
  unload(): Promise<void>;
}

/** One step of the search, as traced and logged. */
export interface Attempt {
  /** Which limit the attempt was about; "confirm" re-checks a working limit at a fresh load. */
  phase: "loadable" | "working" | "confirm";
  /** What was done. */
  action: "load" | "sanity" | "needle";
  /** Asked load size, or the loaded size for sanity and needle. */
  context: number;
  /** Context length reported after a load. */
  actual?: number;
  /** Prompt length of a needle probe. */
  promptTokens?: number;
  /** Where the asked needle sat, for a needle probe. */
  depth?: number;
  /** Whether a needle probe asked for a new haystack seed. */
  fresh?: boolean;
  /** What happened; "crashed": the process died during this load (it counts as failed). */
  outcome: "loaded" | "fitted" | "refused" | "pass" | "fail" | "crashed";
  /** Completion excerpt or refusal message. */
  excerpt?: string;
  /** The plan chosen after this attempt, when its measurements changed it (one sentence). */
  decision?: string;
}

/**
 * What the run measured of this model's costs (all runs of the search), in seconds: loads that
 * succeeded (fitted ones included: they read the weights too), loads that were refused, and the
 * prompt cache as the server's own prefill times show it.
 */
export interface MeasuredCosts {
  /** Loads that succeeded and were timed. */
  loads: number;
  /** Their total seconds. */
  loadSeconds: number;
  /** Refused loads that were timed. */
  refusals: number;
  /** Their total seconds. */
  refusalSeconds: number;
  /** Whether a prompt extending the previous one paid only for its new tokens; null: unknown. */
  promptCache: boolean | null;
  /** Prefill seconds per token of the latest cold prompt (nothing cached), for the cache test. */
  coldSecondsPerToken: number | null;
  /** Prompt tokens per second of the longest cold prompt that passed (the working size's). */
  prefillTokensPerSec: number | null;
  /** The prompt length that speed was measured at. */
  prefillMeasuredAt: number | null;
  /** Predictions that killed the engine (each costs a reload). */
  crashes: number;
}

/** How the search spends its loads and prompts, chosen from {@link MeasuredCosts}. */
export interface SearchPlan {
  /** What a load that succeeds costs in refused loads, as the load planner weighs them. */
  loadCostRatio: number;
  /** "lean": aim above the middle, where loads are likely refused; "bisect": plain bisection. */
  refusals: "lean" | "bisect";
  /** "climb": small steps on the prompt cache; "jump": grow by half, then bisect (no cache). */
  prompts: "climb" | "jump";
  /** What was known of the prompt cache when the plan was made. */
  promptCache: boolean | null;
}

/** A load-level test in progress: load at `context`, check health, probe at full length. */
export interface SearchTarget {
  /** Load size under test. */
  context: number;
  /** Whether the needle asks for a new seed: set when this test confirms a prompt-level result. */
  fresh: boolean;
  /** Whether a failure here continues the back-off (a failed confirmation, or a back-off step). */
  backoff?: boolean;
  /** Whether only the `2+2=` health at this load is asked (no needle). */
  sanityOnly?: boolean;
}

/**
 * Everything the search knows, JSON-serialisable: persist the copies given to the hooks and pass
 * the last one back to resume. All bounds are context lengths (loads), never prompt lengths.
 */
export interface SearchState {
  /** Format version of this object. */
  version: 1;
  /** Which limit is being searched; "done" once both are known. */
  phase: "loadable" | "working" | "done";
  /** Largest size known to load and report itself exactly. */
  loadOk: number | null;
  /** Smallest size known not to (refused, fitted or crashed). */
  loadFail: number | null;
  /** Context reported by the latest fitted load: LM Studio's own guess at the limit. */
  fitHint: number | null;
  /** Largest loaded size at which `2+2=` was answered right. */
  saneOk: number | null;
  /** Smallest loaded size at which it was not (the model is broken there and above). */
  saneFail: number | null;
  /** Loadable context once the loadable phase ended. */
  loadable: number | null;
  /** Largest size confirmed working: loaded there, the full-length needle passed. */
  workOk: number | null;
  /** Smallest size known not to work (at a load there, or by a prompt on a larger instance). */
  workFail: number | null;
  /** Smallest size that failed while loaded at exactly that size (a `null` report needs one). */
  workFailLoaded: number | null;
  /** Largest size whose prompt passed on a larger instance, not yet confirmed by a load there. */
  hint: number | null;
  /** The pass below `hint` (the hint before it): the fallback when a recheck fails the hint. */
  hintBelow?: number | null;
  /** The hint that also passed with a needle at another depth (ready for its confirmation). */
  hintChecked?: number | null;
  /** Size of the instance on which the prompt that set `workFail` failed. */
  promptFailOn?: number | null;
  /** Set once a load contradicted a prompt-level result: load-level tests only from then on. */
  distrustPrompts: boolean;
  /** Whether any prompt-level needle has passed (none at all makes the failures suspect). */
  promptPassed: boolean;
  /** Consecutive failed confirmations: the back-off step below the failure doubles with each. */
  backoff: number;
  /** Size of the latest successful load (prompt-level probes run on it); not loaded on resume. */
  instance: number | null;
  /** Load-level test in progress. */
  target: SearchTarget | null;
  /** Needle probes sent so far (all runs): picks the next needle depth. */
  needles: number;
  /** Loads of the loadable phase so far (all runs): bounds the extra loads of the planner. */
  loadableLoads?: number;
  /** Working context once the search is done. */
  working: number | null;
  /** Set while a load is under way: if the run dies there, the next run counts it as crashed. */
  pendingLoad?: number;
  /** What was measured of this model's costs (absent in states saved before it existed). */
  costs?: MeasuredCosts;
  /** The plan in force (absent in states saved before it existed). */
  plan?: SearchPlan;
  /** LM Studio's text for the latest refused load: the reason when nothing loads. */
  lastRefusal?: string | null;
}

/** Callbacks through which the caller persists progress. */
export interface SearchHooks {
  /**
   * Called before every load with the state that records `pendingLoad`, so the caller can
   * persist it: if the machine dies during the load, the next run treats that size as failed.
   */
  beforeLoad?(context: number, state: SearchState): Promise<void> | void;
  /** Called after every attempt with the new state (persist it: resume point). */
  afterAttempt?(attempt: Attempt, state: SearchState): Promise<void> | void;
}

/** What a search found and what it cost. */
export interface SearchResult {
  /** Loadable context; null: nothing at or above minContext loads. */
  loadable: number | null;
  /** Working context; null: nothing works. */
  working: number | null;
  /** Trace of this run. */
  attempts: Attempt[];
  /** Final state (phase "done"). */
  state: SearchState;
  /** Loads in this run. */
  loads: number;
  /** Needle prompt tokens sent in this run (the sum of prompt lengths; `2+2=` not counted). */
  promptTokens: number;
  /**
   * Estimated prompt tokens the server had to process in this run: a needle prompt costs only
   * what goes beyond the previous prompt on the same instance (the server keeps the common prefix).
   */
  prefillTokens: number;
  /** What was measured of the model's costs (all runs). */
  costs: MeasuredCosts;
  /** The plan in force at the end. */
  plan: SearchPlan;
  /** LM Studio's text for the latest refused load, or null: the reason when nothing loads. */
  lastRefusal: string | null;
}

/** Options of {@link searchContextLimits}. */
export interface SearchOptions {
  /** State to resume from (the last one given to a hook); default: a new search. */
  state?: SearchState;
  /** Progress callbacks. */
  hooks?: SearchHooks;
}

/** Needle depths, used in turn, so that consecutive probes ask about different places. */
const DEPTHS = [0.5, 0.25, 0.75, 0.1, 0.9, 0.4, 0.6] as const;

/**
 * What one needle probe costs beyond the prefill of its new prompt tokens (the question, the
 * answer's generation, counting tokens, the round trip), in prompt tokens at the start of the
 * context. An estimate for local models: generating ten tokens takes about as long as
 * prefilling several hundred.
 */
const PROBE_COST_TOKENS = 1000;

/** Position at which attention has doubled the prefill cost of a token (typical local models). */
const ATTENTION_DOUBLING_TOKENS = 32_768;

/**
 * Without a prompt cache the scan grows the prompt by this share of the last pass. Each probe
 * pays for its whole prompt and prefill grows faster than linearly, so the failing probe past the
 * limit costs up to (1 + g)^2 times one at it, while the passes below cost about 1/g of one: a
 * growth of one half balances the two and leaves a short interval to bisect.
 */
const JUMP_GROWTH = 0.5;

/** Below a failure, an interval of at most this many precisions is walked down, not bisected. */
const NARROW_STEPS = 4;

/**
 * What a load that succeeds costs, in loads that LM Studio refuses, until the run has timed one
 * of each: loading the weights takes seconds, a guardrail refusal a fraction of one. Only the
 * fitted-down path (no refusal seen) ever plans with it; every other plan uses the measured ratio.
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

/**
 * A prompt that extends the previous one by at least this share of its tokens tells whether the
 * cache works: with less shared, a cached and an uncached prefill cost about the same.
 */
const CACHE_TEST_SHARED = 0.3;

/** Loads the loadable phase may spend beyond a plain bisection, to make fewer of them succeed. */
const EXTRA_LOADABLE_LOADS = 2;

/** Largest interval, in precisions, that the load planner plans exactly (else it bisects). */
const PLAN_UNITS = 200;

/** Safety net against a planning bug: no real search comes near this many steps. */
const MAX_STEPS = 10_000;

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
  };
}

/**
 * The plan the measured costs call for: the load planner weighs a success by the measured ratio
 * of a successful load's seconds to a refused one's (the prior until both were timed), and
 * prompts climb on the cache unless the cache was seen not to work.
 */
export function choosePlan(costs: MeasuredCosts): SearchPlan {
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
  };
}

/** A plan in a few words, for `show`: `lean on refusals (a load costs 16x); climb prompts`. */
export function describePlan(plan: SearchPlan): string {
  const loads = plan.refusals === "lean"
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
  return `loads ${mean(costs.loadSeconds, costs.loads)}, refusals ${
    mean(costs.refusalSeconds, costs.refusals)
  }, ${cache}: ${describePlan(plan)}`;
}

/**
 * A saved state made whole: fields added after version 1 was first saved get their neutral
 * values once, here, so that the search never needs a fallback at each use.
 */
export function normaliseState(saved: SearchState): SearchState {
  const state = structuredClone(saved);
  state.hintBelow ??= null;
  state.hintChecked ??= null;
  state.promptFailOn ??= null;
  state.loadableLoads ??= 0;
  state.costs = { ...noCosts(), ...state.costs };
  state.plan ??= choosePlan(state.costs);
  state.lastRefusal ??= null;
  return state;
}

/** State of a search that has not started. */
export function initialState(config: SearchConfig): SearchState {
  validateConfig(config);
  return {
    version: 1,
    phase: "loadable",
    loadOk: null,
    loadFail: null,
    fitHint: null,
    saneOk: null,
    saneFail: null,
    loadable: null,
    workOk: null,
    workFail: null,
    workFailLoaded: null,
    hint: null,
    hintBelow: null,
    hintChecked: null,
    promptFailOn: null,
    distrustPrompts: false,
    promptPassed: false,
    backoff: 0,
    instance: null,
    target: null,
    needles: 0,
    loadableLoads: 0,
    working: null,
    costs: noCosts(),
    plan: choosePlan(noCosts()),
    lastRefusal: null,
  };
}

/**
 * Finds the loadable and the working context of one model. Exceptions of the probe propagate
 * (the caller unloads); the state last given to a hook is then the point to resume from.
 */
export async function searchContextLimits(
  config: SearchConfig,
  probe: Probe,
  options: SearchOptions = {},
): Promise<SearchResult> {
  validateConfig(config);
  if (options.state !== undefined && options.state.version !== 1) {
    throw new RangeError(`Cannot resume a search state of version ${options.state.version}`);
  }
  const state = options.state === undefined ? initialState(config) : normaliseState(options.state);
  const run = new SearchRun(config, probe, state, options.hooks ?? {});
  await run.run();
  await probe.unload();
  return {
    loadable: state.loadable,
    working: state.working,
    attempts: run.attempts,
    state: structuredClone(state),
    loads: run.loads,
    promptTokens: run.promptTokens,
    prefillTokens: run.prefillTokens,
    costs: structuredClone(state.costs ?? noCosts()),
    plan: structuredClone(state.plan ?? choosePlan(noCosts())),
    lastRefusal: state.lastRefusal ?? null,
  };
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
 * s = sqrt(2*W*c / (1 + W/a + c/p)), a the position where attention doubles a token's cost.
 */
export function climbStep(from: number, precision: number): number {
  const tokenCost = 1 + from / ATTENTION_DOUBLING_TOKENS + PROBE_COST_TOKENS / precision;
  return Math.max(precision, Math.round(Math.sqrt(2 * from * PROBE_COST_TOKENS / tokenCost)));
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

function validateConfig(config: SearchConfig): void {
  const { declared, minContext, precision, reserve } = config;
  const integers = { declared, minContext, precision, reserve, maxContext: config.maxContext ?? 1 };
  for (const [name, value] of Object.entries(integers)) {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`Search setting "${name}" must be a non-negative integer, got ${value}`);
    }
  }
  if (precision < 1) throw new RangeError(`Search precision must be at least 1, got ${precision}`);
  if (minContext <= reserve) {
    throw new RangeError(
      `Search minContext (${minContext}) must exceed the prompt reserve (${reserve})`,
    );
  }
}

type Phase = Attempt["phase"];

/** One run of the search: the state machine plus what this run has loaded and spent. */
class SearchRun {
  readonly attempts: Attempt[] = [];
  loads = 0;
  promptTokens = 0;
  prefillTokens = 0;
  readonly #config: SearchConfig;
  readonly #probe: Probe;
  readonly #state: SearchState;
  readonly #hooks: SearchHooks;
  readonly #cap: number;
  /** Size loaded by this run and still held; null: nothing (nothing is assumed at start). */
  #loaded: number | null = null;
  /** Length of the last seeded prompt on the loaded instance, i.e. the server's cached prefix. */
  #cached: number | null = null;
  /** Whether a decision of this run already rested on timed loads and refusals. */
  #announcedTimes = false;

  constructor(config: SearchConfig, probe: Probe, state: SearchState, hooks: SearchHooks) {
    this.#config = config;
    this.#probe = probe;
    this.#state = state;
    this.#hooks = hooks;
    this.#cap = searchCap(config);
  }

  async run(): Promise<void> {
    if (this.#state.pendingLoad !== undefined) await this.#crashed(this.#state.pendingLoad);
    for (let step = 0; this.#state.phase !== "done"; step++) {
      if (step >= MAX_STEPS) throw new Error(`Context search did not finish in ${MAX_STEPS} steps`);
      if (this.#state.phase === "loadable") await this.#loadableStep();
      else await this.#workingStep();
    }
  }

  // ---- loadable phase -------------------------------------------------------------------------

  async #loadableStep(): Promise<void> {
    const s = this.#state;
    const { minContext, precision } = this.#config;
    if (s.instance !== null && this.#sane(s.instance) === null) {
      // After a resume the instance is gone: reload it (one repeated load) rather than lose its
      // health, which bounds the working search of a model broken when large.
      if (this.#loaded !== s.instance) return await this.#restore(s.instance, "loadable");
      return await this.#sanity("loadable");
    }
    const lo = s.loadOk;
    const hi = s.loadFail;
    if (this.#cap < minContext) return this.#endLoadable(null);
    if (lo !== null && (lo >= this.#cap || (hi !== null && hi - lo <= precision))) {
      return this.#endLoadable(lo);
    }
    if (lo === null && hi !== null && hi <= minContext) return this.#endLoadable(null);

    const attempt = await this.#load(this.#nextLoadSize(lo, hi), "loadable");
    if (attempt.outcome === "loaded") {
      s.loadOk = Math.max(s.loadOk ?? 0, attempt.context);
      s.instance = attempt.context;
    } else {
      s.loadFail = Math.min(s.loadFail ?? Infinity, attempt.context);
      if (attempt.actual !== undefined && attempt.actual < attempt.context) {
        s.fitHint = attempt.actual;
      }
    }
    await this.#record(attempt);
  }

  /** Reads the plan the costs measured so far call for; a change is noted on `attempt`. */
  #replan(attempt: Attempt): void {
    const s = this.#state;
    const costs = s.costs ?? noCosts();
    const plan = choosePlan(costs);
    const before = s.plan;
    const timed = costs.loads > 0 && costs.refusals > 0;
    if (
      before === undefined || before.refusals !== plan.refusals ||
      before.prompts !== plan.prompts ||
      before.promptCache !== plan.promptCache || (timed && !this.#announcedTimes)
    ) {
      this.#announcedTimes = timed;
      attempt.decision = describeDecision(plan, costs);
    }
    s.plan = plan;
  }

  #nextLoadSize(lo: number | null, hi: number | null): number {
    const { minContext, precision } = this.#config;
    // The cap first: an honest model costs one load for everything.
    if (hi === null) return this.#cap;
    const hint = this.#state.fitHint;
    if (hint !== null && hint < hi) {
      if (lo === null && hint < minContext) return minContext;
      // LM Studio fitted the context to what it can hold, so the limit is most likely `hint`.
      // Proving it takes a failure within the precision above it and a load at it; the failure
      // goes first so that the last load is the one that stays loaded for the working phase.
      if (hint > (lo ?? minContext - 1)) return hint + precision < hi ? hint + precision : hint;
    }
    // The floor early: whether the model loads at all (a missing runtime or a broken file fails
    // everywhere: two loads say so), and the first successful load's cost, before planning.
    if (lo === null) return minContext;
    const units = Math.ceil((hi - lo) / precision);
    // A model broken at a loaded size needs its loads for the working phase's load bisection.
    const extra = this.#state.saneFail === null ? EXTRA_LOADABLE_LOADS : 0;
    // The floor load is spent on proving the model loads at all, not on the bisection.
    const floor = this.#state.fitHint === null ? 1 : 0;
    const left = loadableAllowance(this.#config) - EXTRA_LOADABLE_LOADS + extra + floor -
      (this.#state.loadableLoads ?? 0);
    const ratio = this.#state.plan?.loadCostRatio ?? LOAD_COST_RATIO;
    const plan = planLoads(units, this.#loaded === lo, left, ratio);
    const base = lo;
    if (plan.cost === Infinity) return splitPoint(base, hi, precision);
    return Math.min(hi - 1, base + plan.step * precision);
  }

  #endLoadable(loadable: number | null): void {
    const s = this.#state;
    s.loadable = loadable;
    if (loadable === null) {
      s.working = null;
      s.phase = "done";
      return;
    }
    s.phase = "working";
    // Broken at a loaded size means not working there either.
    if (s.saneFail !== null && s.saneFail <= loadable) {
      s.workFail = Math.min(s.workFail ?? Infinity, s.saneFail);
      s.workFailLoaded = Math.min(s.workFailLoaded ?? Infinity, s.saneFail);
    }
  }

  // ---- working phase --------------------------------------------------------------------------

  async #workingStep(): Promise<void> {
    const s = this.#state;
    const { minContext, precision } = this.#config;
    const top = s.loadable ?? minContext;
    const lo = s.workOk;
    const hi = s.workFail;
    if (lo !== null && (lo >= top || (hi !== null && hi - lo <= precision))) return this.#done(lo);
    if (lo === null && s.workFailLoaded !== null && s.workFailLoaded <= minContext) {
      return this.#done(null);
    }
    if (s.target !== null) return await this.#targetStep(s.target);
    if (s.hint !== null && (s.hint <= (lo ?? minContext - 1) || (hi !== null && s.hint >= hi))) {
      s.hint = null;
    }
    if (s.distrustPrompts || s.backoff > 0) {
      // Load-level tests only: every size is loaded and probed at its full length.
      const x = this.#nextLoadLevelSize(lo, hi, top);
      s.target = { context: x, fresh: s.distrustPrompts, backoff: s.backoff > 0 };
      return;
    }
    const sanityTest = this.#nextSanitySize(hi);
    if (sanityTest !== null) {
      s.target = { context: sanityTest, fresh: false, sanityOnly: true };
      return;
    }
    const instance = this.#scanInstance();
    const pass = Math.max(lo ?? 0, s.hint ?? 0) || null;
    if (instance === null || (pass !== null && instance <= pass)) {
      const x = this.#nextLoadLevelSize(lo, hi, top);
      s.target = { context: x, fresh: false };
      return;
    }
    if (s.hint !== null && hi !== null && hi - s.hint <= precision) {
      // One pass may be luck (a noisy band): ask again at another depth on the same instance,
      // which costs only the question as the text is cached, before paying for a reload.
      if (s.hintChecked !== s.hint && this.#promptsUsable(s.hint) && this.#recheckIsCheap()) {
        return await this.#promptStep(s.hint, true);
      }
      // Found by prompts on a larger instance: confirm by a load there, with a new haystack.
      s.target = { context: s.hint, fresh: true, backoff: true };
      return;
    }
    const x = hi === null || hi > instance
      ? this.#climbSize(pass, instance)
      : this.#narrowSize(pass, hi);
    if (x === instance) {
      // The full length of the loaded instance: a load-level test without a reload.
      s.target = { context: x, fresh: false };
      return;
    }
    if (this.#promptsUsable(x)) return await this.#promptStep(x);
    s.target = { context: x, fresh: false };
  }

  /**
   * The instance the prompt-level scan runs on: the latest load when `2+2=` passed there, else
   * the largest size known to answer it (reloaded by the next prompt step); null when none is.
   */
  #scanInstance(): number | null {
    const s = this.#state;
    if (s.instance !== null && this.#sane(s.instance) === true) return s.instance;
    if (s.saneOk === null) return null;
    // A new instance need only hold the prompts still to ask, all below the smallest failure:
    // after a crash (or a resume) the smaller load is the cheaper one.
    s.instance = Math.min(s.saneOk, s.workFail ?? Infinity);
    return s.instance;
  }

  /**
   * Next load size whose `2+2=` health is worth knowing, or null. Only for a model broken when
   * loaded large, while no needle failed below the broken size: the health limit is then the
   * working limit unless a needle says otherwise, and health costs a load and `2+2=` while a
   * needle costs its whole prompt on every new instance. So the health limit is bisected first,
   * and needles run once, on the largest healthy instance.
   */
  #nextSanitySize(hi: number | null): number | null {
    const s = this.#state;
    const { minContext, precision } = this.#config;
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
   * Next prompt length (as a context size) of the climbing scan on an instance loaded at
   * `instance`, above the largest pass so far (`pass`, or minContext when none), with no failure
   * known below the instance. Climbing keeps the prompt cache useful: each probe extends the
   * previous prompt, so the scan prefills each position once, up to the first failure, whatever
   * the number of probes, and a model working at its full size costs what one full-length probe
   * costs plus the small probes' overhead. Probing the full length first would prefill the whole
   * instance even when the model stops working far below it, and prefill grows faster than
   * linearly with the position. The step balances a probe's fixed cost (question, answer,
   * counting) against the overshoot past the limit, which the failing probe prefills for
   * nothing and the narrowing below it walks back: see {@link climbStep}. Close to the instance
   * size it probes the instance size itself, which needs no confirming reload.
   */
  #climbSize(pass: number | null, instance: number): number {
    const { minContext, precision } = this.#config;
    const from = pass ?? minContext;
    // Without a prompt cache every probe pays for its whole prompt: double instead, so that the
    // probes below the limit cost about one probe at it, and bisect below the first failure.
    const step = this.#cacheUsable()
      ? climbStep(from, precision)
      : Math.max(precision, Math.round(from * JUMP_GROWTH));
    const x = from + step;
    return x > instance - precision ? instance : x;
  }

  /**
   * Whether asking about size `x` again on the instance costs only the question (the cache holds
   * the text): not without a cache, and not once a crash has taken an instance, as the scan goes
   * on a new one where the recheck would cost a whole prefill. Read from saved state only, so
   * that a resumed search decides as the uninterrupted one would.
   */
  #recheckIsCheap(): boolean {
    return this.#cacheUsable() && (this.#state.costs?.crashes ?? 0) === 0;
  }

  /** Whether the plan builds on the prompt cache (it works, or it has not been seen yet). */
  #cacheUsable(): boolean {
    return this.#state.plan?.prompts !== "jump";
  }

  /**
   * Next size between the largest pass (`pass`, or minContext) and the smallest failure `hi` on
   * the loaded instance. Every probe below the last prompt reuses its prefix, so stepping down by
   * the precision from the failure costs no prefill; a pass ends the search for the prompt-level
   * limit there. A wide interval is bisected instead, to keep the number of probes logarithmic.
   */
  #narrowSize(pass: number | null, hi: number): number {
    const { minContext, precision } = this.#config;
    if (pass === null && hi - minContext <= precision) return minContext;
    const lo = pass ?? minContext;
    if (!this.#cacheUsable() || (this.#state.costs?.crashes ?? 0) > 0) {
      // Every probe pays for its whole prompt (no cache, or a crash took the instance): the
      // midpoint, not the high split, as a shorter probe is also a cheaper one.
      return Math.max(lo + 1, Math.min(hi - 1, Math.round((lo + hi) / 2)));
    }
    if (hi - lo <= NARROW_STEPS * precision) return Math.max(lo + 1, hi - precision);
    return splitPoint(lo, hi, precision);
  }

  /** Next load-level test when prompts on a larger instance cannot be used or trusted. */
  #nextLoadLevelSize(lo: number | null, hi: number | null, top: number): number {
    const s = this.#state;
    const { minContext, precision } = this.#config;
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
  #promptsUsable(x: number): boolean {
    const s = this.#state;
    // Reporting null needs a failure while loaded at minContext itself.
    if (x <= this.#config.minContext && s.workOk === null) return false;
    return !s.distrustPrompts && s.instance !== null && s.instance > x &&
      this.#sane(s.instance) === true;
  }

  /**
   * Prompt-level test: a needle of `x - reserve` tokens on the (larger) current instance;
   * `recheck` asks again about the current hint, with a needle at another depth.
   */
  async #promptStep(x: number, recheck = false): Promise<void> {
    const s = this.#state;
    const instance = s.instance ?? x;
    if (this.#loaded !== instance) return await this.#restore(instance, "working");
    const attempt = await this.#needle(x - this.#config.reserve, false, "working");
    if (attempt.outcome === "pass") {
      if (recheck) s.hintChecked = x;
      else if (x > (s.hint ?? 0)) {
        s.hintBelow = s.hint;
        s.hint = x;
      }
      s.promptPassed = true;
    } else {
      if (x < (s.workFail ?? Infinity)) {
        s.workFail = x;
        s.promptFailOn = instance;
      }
      if (s.hint !== null && s.hint >= x) {
        // The hint failed now: fall back to the pass below it.
        s.hint = s.hintBelow !== undefined && s.hintBelow !== null && s.hintBelow < x
          ? s.hintBelow
          : null;
        s.hintBelow = null;
      }
    }
    await this.#record(attempt);
  }

  /** Reloads the instance a resume lost, to go on probing it. */
  async #restore(instance: number, phase: Phase): Promise<void> {
    const s = this.#state;
    const attempt = await this.#load(instance, phase);
    if (attempt.outcome !== "loaded") {
      // It loaded before: a different outcome now makes it a failure from here on.
      s.instance = null;
      if (phase === "loadable") this.#crashedLoadable(instance);
      else this.#failLoadLevel(instance, false);
    }
    await this.#record(attempt);
  }

  /** Load-level test: load at the target, check health, then the full-length needle. */
  async #targetStep(target: SearchTarget): Promise<void> {
    const s = this.#state;
    const x = target.context;
    const phase: Phase = target.fresh ? "confirm" : "working";
    if (this.#loaded !== x) {
      const attempt = await this.#load(x, phase);
      if (attempt.outcome === "loaded") s.instance = x;
      else {
        s.instance = null;
        s.target = null;
        this.#failLoadLevel(x, target.backoff === true);
      }
      return await this.#record(attempt);
    }
    const sane = this.#sane(x);
    if (sane === null) {
      const attempt = await this.#sanityAttempt(phase);
      if (attempt.outcome === "fail") {
        s.target = null;
        this.#failLoadLevel(x, target.backoff === true);
      }
      return await this.#record(attempt);
    }
    s.target = null;
    if (!sane) return this.#failLoadLevel(x, target.backoff === true);
    // Healthy: the scan goes on with needles on this instance.
    if (target.sanityOnly === true) return;
    const attempt = await this.#needle(x - this.#config.reserve, target.fresh, phase);
    if (attempt.outcome === "pass") this.#passLoadLevel(x);
    else this.#failLoadLevel(x, target.backoff === true);
    await this.#record(attempt);
  }

  #passLoadLevel(x: number): void {
    const s = this.#state;
    s.workOk = Math.max(s.workOk ?? 0, x);
    s.backoff = 0;
    const promptFail = s.workFail;
    if (
      !s.distrustPrompts && !s.promptPassed && promptFail !== null &&
      promptFail !== s.workFailLoaded && promptFail - x <= this.#config.precision
    ) {
      // Every prompt failed on the large instance, yet a load this small works: the large
      // instance may be garbling everything (healthy on `2+2=` only). One load at the lowest
      // prompt failure tells a real cliff (it fails: done) from that (it passes: search by loads).
      // The instance those prompts failed on fails at its full length too (a longer prompt).
      s.distrustPrompts = true;
      const failedOn = Math.min(s.workFailLoaded ?? Infinity, s.promptFailOn ?? Infinity);
      s.workFail = failedOn === Infinity ? null : failedOn;
      s.target = { context: promptFail, fresh: true };
    }
  }

  #failLoadLevel(x: number, backoff: boolean): void {
    const s = this.#state;
    s.workFail = Math.min(s.workFail ?? Infinity, x);
    s.workFailLoaded = Math.min(s.workFailLoaded ?? Infinity, x);
    if (backoff) {
      s.backoff++;
      s.distrustPrompts = true;
    }
  }

  #done(working: number | null): void {
    const s = this.#state;
    s.working = working;
    s.target = null;
    s.hint = null;
    s.phase = "done";
  }

  // ---- crash on resume ------------------------------------------------------------------------

  async #crashed(context: number): Promise<void> {
    const s = this.#state;
    delete s.pendingLoad;
    let phase: Phase = "loadable";
    if (s.phase === "loadable") this.#crashedLoadable(context);
    else {
      const target = s.target?.context === context ? s.target : null;
      phase = target?.fresh ? "confirm" : "working";
      if (target !== null) s.target = null;
      if (s.instance === context) s.instance = null;
      this.#failLoadLevel(context, target?.backoff === true);
    }
    await this.#record({ phase, action: "load", context, outcome: "crashed" });
  }

  /** Counts `context` as not loadable, even where it loaded before. */
  #crashedLoadable(context: number): void {
    const s = this.#state;
    s.loadFail = Math.min(s.loadFail ?? Infinity, context);
    // A size that loaded before and now failed: forget the smaller successes too rather than
    // trust a bound that contradicts itself.
    if (s.loadOk !== null && s.loadOk >= context) s.loadOk = null;
    if (s.instance !== null && s.instance >= context) s.instance = null;
  }

  // ---- probe calls ----------------------------------------------------------------------------

  /** `2+2=` health implied by earlier answers (monotone in the load size), or null if unknown. */
  #sane(x: number): boolean | null {
    const s = this.#state;
    if (s.saneOk !== null && x <= s.saneOk) return true;
    if (s.saneFail !== null && x >= s.saneFail) return false;
    return null;
  }

  async #load(context: number, phase: Phase): Promise<Attempt> {
    const s = this.#state;
    s.pendingLoad = context;
    if (phase === "loadable") s.loadableLoads = (s.loadableLoads ?? 0) + 1;
    await this.#hooks.beforeLoad?.(context, structuredClone(s));
    // The probe unloads whatever was loaded before, whatever the outcome.
    this.#loaded = null;
    this.#cached = null;
    this.loads++;
    const outcome = await this.#probe.load(context);
    delete s.pendingLoad;
    const costs = s.costs ??= noCosts();
    if (outcome.kind === "refused") {
      if (outcome.seconds !== undefined) {
        costs.refusals++;
        costs.refusalSeconds += outcome.seconds;
      }
      s.lastRefusal = outcome.message;
      return { phase, action: "load", context, outcome: "refused", excerpt: outcome.message };
    }
    if (outcome.seconds !== undefined) {
      costs.loads++;
      costs.loadSeconds += outcome.seconds;
    }
    if (outcome.actual >= context) {
      // Auto-fit raising a small request (reported more than asked) loaded the asked size too:
      // prompts up to it are valid there. The attempt keeps both numbers.
      this.#loaded = context;
      return { phase, action: "load", context, actual: outcome.actual, outcome: "loaded" };
    }
    // A fitted instance is never used: the limits are about loads that keep the asked size.
    return { phase, action: "load", context, actual: outcome.actual, outcome: "fitted" };
  }

  async #sanity(phase: Phase): Promise<void> {
    await this.#record(await this.#sanityAttempt(phase));
  }

  async #sanityAttempt(phase: Phase): Promise<Attempt> {
    const s = this.#state;
    const context = this.#loaded ?? 0;
    // `2+2=` shares no prefix with a needle prompt: it replaces what the server keeps.
    this.#cached = null;
    const answer = await this.#probe.sanity();
    if (answer.crashed === true) this.#instanceLost();
    if (answer.pass) s.saneOk = Math.max(s.saneOk ?? 0, context);
    else s.saneFail = Math.min(s.saneFail ?? Infinity, context);
    return {
      phase,
      action: "sanity",
      context,
      outcome: answer.pass ? "pass" : "fail",
      excerpt: answer.excerpt,
    };
  }

  async #needle(promptTokens: number, fresh: boolean, phase: Phase): Promise<Attempt> {
    const s = this.#state;
    const depth = DEPTHS[s.needles % DEPTHS.length] ?? 0.5;
    s.needles++;
    this.promptTokens += promptTokens;
    const noCache = this.#state.costs?.promptCache === false;
    const cached = fresh || noCache || this.#cached === null
      ? 0
      : Math.min(this.#cached, promptTokens);
    this.prefillTokens += promptTokens - cached;
    // A fresh seed shares no prefix with anything before or after it.
    this.#cached = fresh ? null : promptTokens;
    const context = this.#loaded ?? 0;
    const answer = await this.#probe.needle(promptTokens, { fresh, depth });
    this.#measurePrefill(promptTokens, cached, answer);
    if (answer.crashed === true) this.#instanceLost();
    return {
      phase,
      action: "needle",
      context,
      promptTokens,
      depth,
      fresh,
      outcome: answer.pass ? "pass" : "fail",
      excerpt: answer.excerpt,
    };
  }

  /** The engine died with the instance: nothing is loaded and nothing is cached any more. */
  #instanceLost(): void {
    this.#loaded = null;
    this.#cached = null;
    this.#state.instance = null;
    const costs = this.#state.costs ??= noCosts();
    costs.crashes++;
  }

  /**
   * Learns from a needle's prefill time: a cold prompt (nothing cached) gives the seconds per
   * token; a prompt that extends the previous one by enough tells whether the server reused the
   * shared prefix (its time is nearer what the new tokens cost than what the whole prompt costs).
   */
  #measurePrefill(promptTokens: number, cached: number, answer: Answer): void {
    const seconds = answer.prefillSeconds;
    const costs = this.#state.costs ??= noCosts();
    if (seconds === undefined || seconds <= 0 || answer.crashed === true) return;
    if (cached === 0) {
      costs.coldSecondsPerToken = seconds / promptTokens;
      // The speed at the working size: the longest cold prompt that passed (the confirmation's
      // fresh probe at the result, when there is one).
      if (answer.pass && promptTokens >= (costs.prefillMeasuredAt ?? 0)) {
        costs.prefillTokensPerSec = Math.round(promptTokens / seconds);
        costs.prefillMeasuredAt = promptTokens;
      }
      return;
    }
    const perToken = costs.coldSecondsPerToken;
    if (perToken === null || cached < CACHE_TEST_SHARED * promptTokens) return;
    const whole = promptTokens * perToken;
    const fresh = (promptTokens - cached) * perToken;
    costs.promptCache = seconds < (whole + fresh) / 2;
    if (!costs.promptCache) {
      // Every prompt was cold after all: it measures the speed as well as a cold one.
      costs.coldSecondsPerToken = seconds / promptTokens;
    }
  }

  async #record(attempt: Attempt): Promise<void> {
    this.#replan(attempt);
    this.attempts.push(attempt);
    await this.#hooks.afterAttempt?.(attempt, structuredClone(this.#state));
  }
}
