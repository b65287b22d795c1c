/**
 * The context-limit search: finds a model's loadable and working context with few loads and few
 * prompt tokens, driven by an injected {@link Probe}. Pure: no Deno APIs, no SDK, no clock; async
 * only because the probe is. Every attempt is traced and every intermediate state is handed to the
 * caller, so a search cut short (signal, crash, power loss) resumes where it stopped.
 *
 * Assumptions, shared with every bisection: loading, `2+2=` health and needle success are each
 * monotone in the context (true below some size, false above it), apart from the noisy band that
 * the confirmation step exists for.
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

/** Result of asking for a load at some context length. */
export type LoadOutcome =
  | { kind: "loaded"; actual: number }
  | { kind: "refused"; message: string };

/** A graded answer of the loaded model. */
export interface Answer {
  /** Whether the answer holds what was asked for. */
  pass: boolean;
  /** A short excerpt of the completion, for the trace. */
  excerpt: string;
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
}

/** A load-level test in progress: load at `context`, check health, probe at full length. */
export interface SearchTarget {
  /** Load size under test. */
  context: number;
  /** Whether the needle asks for a new seed: set when this test confirms a prompt-level result. */
  fresh: boolean;
  /** Whether a failure here continues the back-off (a failed confirmation, or a back-off step). */
  backoff?: boolean;
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
  /** Working context once the search is done. */
  working: number | null;
  /** Set while a load is under way: if the run dies there, the next run counts it as crashed. */
  pendingLoad?: number;
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
    distrustPrompts: false,
    promptPassed: false,
    backoff: 0,
    instance: null,
    target: null,
    needles: 0,
    working: null,
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
  const state = options.state === undefined ? initialState(config) : structuredClone(options.state);
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
    if (lo === null && hi - minContext <= precision) return minContext;
    return splitPoint(lo ?? minContext, hi, precision);
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
    if (s.hint !== null) {
      // Narrow the prompt-level search on the loaded instance first; confirm by a load at the end.
      if (hi !== null && hi - s.hint > precision) {
        const x = splitPoint(s.hint, hi, precision);
        if (this.#promptsUsable(x)) return await this.#promptStep(x);
      }
      s.target = { context: s.hint, fresh: true, backoff: true };
      return;
    }
    const x = this.#nextWorkSize(lo, hi, top);
    if (this.#promptsUsable(x)) return await this.#promptStep(x);
    s.target = { context: x, fresh: s.distrustPrompts, backoff: s.backoff > 0 };
  }

  /**
   * Order of the working probes. The first probe fills the top instance (the loadable size): the
   * common answer is W = L, and any proof of it must send that full prompt anyway. After a failure
   * there, every shorter seeded prompt is a prefix of what the server already holds, so probes
   * below cost almost nothing and only the climbs after a pass cost their extra tokens. A climbing
   * scan from below would send fewer new tokens but many more probes (each with its question and
   * up to 64 generated tokens at long context), and the sum of prompt lengths grows with their
   * number; the bisection keeps the probes logarithmic and its climbs add up to at most half the
   * searched range.
   */
  #nextWorkSize(lo: number | null, hi: number | null, top: number): number {
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

  /** Prompt-level test: a needle of `x - reserve` tokens on the (larger) current instance. */
  async #promptStep(x: number): Promise<void> {
    const s = this.#state;
    const instance = s.instance ?? x;
    if (this.#loaded !== instance) return await this.#restore(instance, "working");
    const attempt = await this.#needle(x - this.#config.reserve, false, "working");
    if (attempt.outcome === "pass") {
      s.hint = Math.max(s.hint ?? 0, x);
      s.promptPassed = true;
    } else s.workFail = Math.min(s.workFail ?? Infinity, x);
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
      s.distrustPrompts = true;
      s.workFail = s.workFailLoaded;
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
    await this.#hooks.beforeLoad?.(context, structuredClone(s));
    // The probe unloads whatever was loaded before, whatever the outcome.
    this.#loaded = null;
    this.#cached = null;
    this.loads++;
    const outcome = await this.#probe.load(context);
    delete s.pendingLoad;
    if (outcome.kind === "refused") {
      return { phase, action: "load", context, outcome: "refused", excerpt: outcome.message };
    }
    if (outcome.actual === context) {
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
    const answer = await this.#probe.sanity();
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
    const cached = fresh || this.#cached === null ? 0 : Math.min(this.#cached, promptTokens);
    this.prefillTokens += promptTokens - cached;
    // A fresh seed shares no prefix with anything before or after it.
    this.#cached = fresh ? null : promptTokens;
    const answer = await this.#probe.needle(promptTokens, { fresh, depth });
    return {
      phase,
      action: "needle",
      context: this.#loaded ?? 0,
      promptTokens,
      depth,
      fresh,
      outcome: answer.pass ? "pass" : "fail",
      excerpt: answer.excerpt,
    };
  }

  async #record(attempt: Attempt): Promise<void> {
    this.attempts.push(attempt);
    await this.#hooks.afterAttempt?.(attempt, structuredClone(this.#state));
  }
}
