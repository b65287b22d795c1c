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
 * - A guardrail refusal takes a fraction of a second and comes before LM Studio starts loading;
 *   a load that succeeds takes seconds. Where the probe can stop a load as it starts
 *   ({@link Probe.check}) and the refusals came before loading, the loadable bisection runs on
 *   such checks, each priced like a refusal, and one real load proves the result; a real load
 *   that then fails (the engine, not the guardrail, is the limit) ends the checks. Without
 *   checks the bisection leans towards sizes likely to be refused ({@link planLoads}, weighted
 *   by the measured ratio). An engine failure reads the weights first and costs about a full
 *   load: then the measured ratio is near 1 and the plan is a plain bisection.
 * - Prefill dominates a needle probe, and its curve (how a token's cost grows with its depth) is
 *   fitted to the run's own timings (`prefill_curve.ts`). Where the server keeps the prompt
 *   prefix of the last probe on an instance (standard attention), the working search climbs from
 *   a short prompt: each probe pays only for its new tokens, nothing past the first failure is
 *   prefilled ({@link climbStep}), and below a failure every shorter prompt is a prefix of the
 *   cached one. Hybrid and sliding-window models reprocess the whole prompt every time: there
 *   the scan grows the prompt by half and bisects below the first failure, or probes the full
 *   length first where that is expected to cost less ({@link nextWorkingMove}).
 * The floor comes early: after the cap fails, a load (or a check) at `minContext` tells at once whether the
 * model loads at all (a missing runtime fails everywhere) and gives the first successful load's
 * cost. A load that LM Studio fits upwards (reports more than asked) counts as loaded at the
 * asked size; a prediction that crashes the engine is a failed probe at that length.
 *
 * @module
 */

import { learnCheck, learnLoad, loadLost, nextLoadSize, outOfRequests } from "./load_size.ts";
import { measureLoad, measurePrefill } from "./measure.ts";
import { choosePlan, describeDecision, searchCap, splitPoint } from "./plan.ts";
import type {
  Attempt,
  NormalState,
  Probe,
  SearchConfig,
  SearchHooks,
  SearchOptions,
  SearchResult,
  SearchTarget,
} from "./types.ts";
import { initialState, normaliseState, validateConfig } from "./state.ts";
import { nextWorkingMove, saneAt } from "./working_move.ts";

// The search's public face: its types, plan, prefill curve and decisions live in their own files.
export type * from "./types.ts";
export * from "./plan.ts";
export * from "./prefill_curve.ts";
export { initialState, normaliseState } from "./state.ts";
export { nextWorkingMove, type WorkingMove } from "./working_move.ts";

/** Needle depths, used in turn, so that consecutive probes ask about different places. */
const DEPTHS = [0.5, 0.25, 0.75, 0.1, 0.9, 0.4, 0.6] as const;

/** Safety net against a planning bug (requests have their own ceiling, `MAX_REQUESTS`). */
const MAX_STEPS = 10_000;

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
    checks: run.checks,
    promptTokens: run.promptTokens,
    prefillTokens: run.prefillTokens,
    costs: structuredClone(state.costs),
    plan: structuredClone(state.plan),
    lastRefusal: state.lastRefusal,
    failure: state.failure,
  };
}

type Phase = Attempt["phase"];

/** One run of the search: the state machine plus what this run has loaded and spent. */
class SearchRun {
  readonly attempts: Attempt[] = [];
  loads = 0;
  checks = 0;
  promptTokens = 0;
  prefillTokens = 0;
  readonly #config: SearchConfig;
  readonly #probe: Probe;
  readonly #state: NormalState;
  readonly #hooks: SearchHooks;
  readonly #cap: number;
  /** Size loaded by this run and still held; null: nothing (nothing is assumed at start). */
  #loaded: number | null = null;
  /** Length of the last seeded prompt on the loaded instance, i.e. the server's cached prefix. */
  #cached: number | null = null;
  /** Whether a decision of this run already rested on timed loads and refusals. */
  #announcedTimes = false;

  constructor(config: SearchConfig, probe: Probe, state: NormalState, hooks: SearchHooks) {
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
      if (outOfRequests(this.#state)) break;
      if (this.#state.phase === "loadable") await this.#loadableStep();
      else await this.#workingStep();
    }
  }

  // ---- loadable phase -------------------------------------------------------------------------

  async #loadableStep(): Promise<void> {
    const s = this.#state;
    const { minContext, precision } = this.#config;
    if (s.instance !== null && saneAt(this.#state, s.instance) === null) {
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
    if (hi !== null && s.plan.checks === true && s.fitHint === null && this.#probe.check) {
      return await this.#checkStep(hi);
    }

    const size = nextLoadSize(s, this.#config, this.#loaded !== null && this.#loaded === lo);
    await this.#loadableLoad(size);
  }

  /** A real load of the loadable phase, and what it proves. */
  async #loadableLoad(size: number): Promise<void> {
    const attempt = await this.#load(size, "loadable");
    learnLoad(this.#state, attempt);
    await this.#record(attempt);
  }

  /**
   * The loadable bisection on checks, below the failure `hi`: the floor first (whether the model
   * loads at all), then the split point between the largest size known to start and `hi`, and
   * once those are within the precision one real load at the size that started proves it.
   */
  async #checkStep(hi: number): Promise<void> {
    const s = this.#state;
    const { minContext, precision } = this.#config;
    const lo = Math.max(s.loadOk ?? 0, s.checkOk ?? 0);
    if (lo < minContext) return await this.#check(minContext);
    if (hi - lo > precision) return await this.#check(splitPoint(lo, hi, precision));
    await this.#loadableLoad(lo);
  }

  /** A check at `context`: a refusal bounds the loadable size like a refused load does. */
  async #check(context: number): Promise<void> {
    const s = this.#state;
    const check = this.#probe.check;
    if (check === undefined) throw new Error("The probe has no checks");
    await this.#beforeRequest(context);
    this.checks++;
    const outcome = await check.call(this.#probe, context);
    delete s.pendingLoad;
    await this.#record(learnCheck(s, context, outcome));
  }

  /** Reads the plan the costs measured so far call for; a change is noted on `attempt`. */
  #replan(attempt: Attempt): void {
    const s = this.#state;
    const costs = s.costs;
    const plan = choosePlan(costs, s.checks === true);
    const before = s.plan;
    const timed = costs.loads > 0 && costs.refusals > 0;
    if (
      before.refusals !== plan.refusals || before.prompts !== plan.prompts ||
      (before.checks ?? false) !== plan.checks ||
      before.promptCache !== plan.promptCache || (timed && !this.#announcedTimes)
    ) {
      this.#announcedTimes = timed;
      attempt.decision = describeDecision(plan, costs);
    }
    s.plan = plan;
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

  /** Decides the next move ({@link nextWorkingMove}) and carries it out. */
  async #workingStep(): Promise<void> {
    const move = nextWorkingMove(this.#state, this.#config);
    const s = this.#state;
    switch (move.kind) {
      case "done":
        return this.#done(move.working);
      case "run-target":
        return await this.#targetStep(move.target);
      case "set-target":
        s.hint = move.hint;
        s.instance = move.instance;
        s.target = move.target;
        return;
      case "prompt":
        s.hint = move.hint;
        s.instance = move.instance;
        return await this.#promptStep(move.size, move.recheck);
    }
  }

  /** A needle of `x - reserve` tokens on the (larger) instance; `recheck`: the hint, elsewhere. */
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
        s.hint = s.hintBelow !== null && s.hintBelow < x ? s.hintBelow : null;
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
      else loadLost(s, instance);
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
      // Below the loadable size, a load that fails proves the loads are not repeatable.
      if (attempt.outcome === "loaded") s.instance = x;
      else loadLost(s, x);
      return await this.#record(attempt);
    }
    const sane = saneAt(this.#state, x);
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

  /**
   * Before a load or a check at `context`: marks it pending and hands the state to the caller
   * (a run that dies in it counts it as crashed), and forgets the instance, which the probe
   * unloads whatever the outcome.
   */
  async #beforeRequest(context: number): Promise<void> {
    this.#state.requests++;
    this.#state.pendingLoad = context;
    await this.#hooks.beforeLoad?.(context, structuredClone(this.#state));
    this.#loaded = null;
    this.#cached = null;
  }

  async #load(context: number, phase: Phase): Promise<Attempt> {
    const s = this.#state;
    if (phase === "loadable") s.loadableLoads++;
    await this.#beforeRequest(context);
    this.loads++;
    const outcome = await this.#probe.load(context);
    delete s.pendingLoad;
    measureLoad(s.costs, outcome);
    if (outcome.kind === "refused") {
      // When LM Studio refuses tells whether a check can stand in for a load: before any load
      // progress (its guardrail) it can; after (the engine failed on the weights) only a load can.
      if (outcome.early === false) s.checks = false;
      else if (outcome.early === true && s.checks === null && this.#probe.check) s.checks = true;
      s.lastRefusal = outcome.message;
      return { phase, action: "load", context, outcome: "refused", excerpt: outcome.message };
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
    s.requests++;
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
    const noCache = this.#state.costs.promptCache === false;
    const cached = fresh || noCache || this.#cached === null
      ? 0
      : Math.min(this.#cached, promptTokens);
    this.prefillTokens += promptTokens - cached;
    // A fresh seed shares no prefix with anything before or after it.
    this.#cached = fresh ? null : promptTokens;
    const context = this.#loaded ?? 0;
    s.requests++;
    const answer = await this.#probe.needle(promptTokens, { fresh, depth });
    measurePrefill(s.costs, promptTokens, cached, answer);
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
    const costs = this.#state.costs;
    costs.crashes++;
  }

  async #record(attempt: Attempt): Promise<void> {
    this.#replan(attempt);
    this.attempts.push(attempt);
    await this.#hooks.afterAttempt?.(attempt, structuredClone(this.#state));
  }
}
