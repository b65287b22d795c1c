/**
 * A configurable fake of one model in LM Studio, for driving the context search in unit tests:
 * refuses, fits or breaks above chosen sizes, fails needles above a chosen prompt length (with an
 * optional noisy band or a blind depth), can throw on its k-th call, records every call and tracks what is loaded.
 * Also the oracle giving the true limits of such a model, and a seeded PRNG.
 *
 * @module
 */

import type {
  Answer,
  CheckOutcome,
  LoadOutcome,
  Probe,
  SearchConfig,
} from "../../src/search/context_search.ts";
import { searchCap } from "../../src/search/context_search.ts";

/** The seeded PRNG the fake tests draw their random cases from (mulberry32). */
export { seededRandom } from "../../src/random.ts";

/** How the fake model behaves. All thresholds are inclusive limits ("above" fails). */
export interface FakeModel {
  /** Loads asked above this size are refused. */
  loadFailAbove?: number;
  /** Loads asked above this size succeed with a smaller context: `fitTo`, default this size. */
  fitAbove?: number;
  /** Context a fitted load reports (default `fitAbove`). */
  fitTo?: number;
  /** Loaded above this size the model answers garbage: `2+2=` and every needle fail. */
  brokenAbove?: number;
  /** Loaded above this size the model answers `2+2=` but garbles every needle. */
  garbledAbove?: number;
  /** Needle prompts above this many tokens fail. */
  needleFailAbove?: number;
  /** Loaded above `above`, needles pass `extra` tokens further than `needleFailAbove`. */
  largeLoadBonus?: { above: number; extra: number };
  /**
   * Prompt tokens: needles up to `floor` pass, above `hard` fail, in between they fail for some
   * seeds and lengths (a fixed pattern, so runs repeat exactly).
   */
  noisy?: { floor: number; hard: number };
  /** Needles longer than `above` tokens asked at exactly `depth` fail (a blind spot). */
  blindDepth?: { depth: number; above: number };
  /** The k-th call (1-based, counting load, sanity and needle) throws. */
  throwOnCall?: number;
  /** Every load is refused with this text, at any size (a missing runtime). */
  loadsNowhere?: string;
  /** Text of a refusal above `loadFailAbove` (default the guardrail's words). */
  refusalText?: string;
  /** Loads asked below this size succeed and report this size (auto-fit raising them). */
  fitUpTo?: number;
  /** Needle prompts above this many tokens kill the engine: a crashed answer, nothing loaded. */
  crashAbove?: number;
  /** Seconds a load that succeeds reports taking (none: loads are not timed). */
  loadSeconds?: number;
  /** Seconds a refused load reports taking. */
  refusalSeconds?: number;
  /** Prefill seconds per prompt token reported with each answer (none: not reported). */
  prefillSecondsPerToken?: number;
  /** Whether a prompt extending the previous one on the instance pays only its new tokens. */
  promptCache?: boolean;
  /**
   * When refusals come: true before any load progress (a guardrail), false after it (the engine
   * failed on the weights); none: the probe does not say (`early` unset).
   */
  refusalEarly?: boolean;
  /** Whether the probe offers checks (loads stopped as they start). */
  checks?: boolean;
  /**
   * A guardrail above the engine's limit: loads above this size are refused before they start
   * (a check sees the refusal), while loads between `loadFailAbove` and it start, then fail late.
   */
  guardrailAbove?: number;
  /** Seconds a check that started reports taking. */
  checkSeconds?: number;
  /** Checks that start are loaded all the same (a server ignoring the cancel). */
  checksComplete?: boolean;
  /**
   * The engine's memory shrinks: after `after` loads that succeeded, every load above
   * `loadFailAbove` fails once under way (a size that loaded once is refused from then on).
   */
  shrinks?: { after: number; loadFailAbove: number };
}

/** One recorded call. */
export interface FakeCall {
  /** Called method. */
  method: "load" | "check" | "sanity" | "needle" | "unload";
  /** Asked size for a load, loaded size otherwise (0 when nothing was loaded). */
  context: number;
  /** Prompt length of a needle. */
  promptTokens?: number;
  /** Fresh flag of a needle. */
  fresh?: boolean;
  /** Depth of a needle. */
  depth?: number;
}

/** Error thrown on purpose by the fake (`throwOnCall`). */
export class FakeCrash extends Error {
  /** The method that threw. */
  readonly method: FakeCall["method"];
  constructor(method: FakeCall["method"], call: number) {
    super(`Fake probe stopped on call ${call} (${method})`);
    this.name = "FakeCrash";
    this.method = method;
  }
}

/** A fake {@link Probe} over a {@link FakeModel}. */
export class FakeProbe implements Probe {
  /** Every call, in order. */
  readonly calls: FakeCall[] = [];
  /** Context of the loaded instance; null when nothing is loaded. */
  loaded: number | null = null;
  readonly #model: FakeModel;
  readonly #reserve: number;
  #seed = 0;
  #counted = 0;
  /** Loads that succeeded so far (for {@link FakeModel.shrinks}). */
  #loadedCount = 0;
  /** The last needle prompt on the instance (seed and length), for the prompt cache. */
  #lastPrompt: { seed: number; tokens: number } | null = null;
  /** Prompt tokens the model had to prefill, cache taken into account. */
  prefilled = 0;

  /** Present when the model offers checks ({@link FakeModel.checks}). */
  readonly check?: (context: number) => Promise<CheckOutcome>;

  constructor(model: FakeModel, reserve = 64) {
    this.#model = model;
    this.#reserve = reserve;
    if (model.checks === true) this.check = (context) => this.#check(context);
  }

  /** Number of checks asked. */
  get checks(): number {
    return this.calls.filter((c) => c.method === "check").length;
  }

  /** Whether a load at `context` is refused before it starts, and with which text. */
  #refusedEarly(context: number): string | null {
    const m = this.#model;
    if (m.loadsNowhere !== undefined) return m.loadsNowhere;
    if (m.guardrailAbove !== undefined && context > m.guardrailAbove) {
      return "Model loading was stopped due to insufficient system resources.";
    }
    if (m.fitAbove !== undefined && context > m.fitAbove) return null;
    if (m.refusalEarly === true && m.loadFailAbove !== undefined && context > m.loadFailAbove) {
      return m.refusalText ?? "insufficient system resources";
    }
    return null;
  }

  #check(context: number): Promise<CheckOutcome> {
    this.calls.push({ method: "check", context });
    this.#count("check");
    this.loaded = null;
    this.#lastPrompt = null;
    const m = this.#model;
    const refused = this.#refusedEarly(context);
    if (refused !== null) {
      const seconds = m.refusalSeconds === undefined ? {} : { seconds: m.refusalSeconds };
      return Promise.resolve({ kind: "refused", message: refused, ...seconds });
    }
    const seconds = m.checkSeconds === undefined ? {} : { seconds: m.checkSeconds };
    const completed = m.checksComplete === true ? { completed: true } : {};
    return Promise.resolve({ kind: "started", ...seconds, ...completed });
  }

  /** Number of loads asked. */
  get loads(): number {
    return this.calls.filter((c) => c.method === "load").length;
  }

  #count(method: FakeCall["method"]): void {
    this.#counted++;
    if (this.#counted === this.#model.throwOnCall) throw new FakeCrash(method, this.#counted);
  }

  load(context: number): Promise<LoadOutcome> {
    this.calls.push({ method: "load", context });
    this.#count("load");
    this.loaded = null;
    this.#lastPrompt = null;
    const m = this.#model;
    const timed = (seconds: number | undefined) => seconds === undefined ? {} : { seconds };
    const early = this.#refusedEarly(context);
    if (early !== null) {
      return Promise.resolve({
        kind: "refused",
        message: early,
        early: true,
        ...timed(m.refusalSeconds),
      });
    }
    if (m.fitAbove !== undefined && context > m.fitAbove) {
      this.loaded = m.fitTo ?? m.fitAbove;
      return Promise.resolve({ kind: "loaded", actual: this.loaded, ...timed(m.loadSeconds) });
    }
    const shrunk = m.shrinks !== undefined && this.#loadedCount >= m.shrinks.after &&
      context > m.shrinks.loadFailAbove;
    if (shrunk || (m.loadFailAbove !== undefined && context > m.loadFailAbove)) {
      // Past the guardrail (or with none), the engine fails once the load is under way.
      const late = m.refusalEarly === false || m.guardrailAbove !== undefined
        ? { early: false }
        : {};
      return Promise.resolve({
        kind: "refused",
        message: m.refusalText ?? "insufficient system resources",
        ...late,
        ...timed(m.refusalSeconds),
      });
    }
    this.loaded = context;
    this.#loadedCount++;
    // The instance is the asked size or larger (auto-fit up): prompts up to the asked size fit.
    const actual = Math.max(context, m.fitUpTo ?? 0);
    return Promise.resolve({ kind: "loaded", actual, ...timed(m.loadSeconds) });
  }

  sanity(): Promise<Answer> {
    const context = this.#requireLoaded("sanity");
    this.calls.push({ method: "sanity", context });
    this.#count("sanity");
    const pass = this.#healthy(context);
    return Promise.resolve({ pass, excerpt: pass ? "4" : "banana banana" });
  }

  needle(promptTokens: number, opts: { fresh: boolean; depth: number }): Promise<Answer> {
    const context = this.#requireLoaded("needle");
    this.calls.push({ method: "needle", context, promptTokens, ...opts });
    this.#count("needle");
    if (promptTokens + this.#reserve > context) {
      throw new Error(`Needle of ${promptTokens} tokens does not fit a ${context} context`);
    }
    if (opts.depth < 0 || opts.depth > 1) {
      throw new Error(`Needle depth ${opts.depth} out of [0,1]`);
    }
    if (opts.fresh) this.#seed++;
    const m = this.#model;
    const last = this.#lastPrompt;
    const cached = m.promptCache !== false && last !== null && last.seed === this.#seed
      ? Math.min(last.tokens, promptTokens)
      : 0;
    this.prefilled += promptTokens - cached;
    this.#lastPrompt = { seed: this.#seed, tokens: promptTokens };
    const prefill = m.prefillSecondsPerToken === undefined
      ? {}
      : { prefillSeconds: (promptTokens - cached) * m.prefillSecondsPerToken };
    if (m.crashAbove !== undefined && promptTokens > m.crashAbove) {
      this.loaded = null;
      this.#lastPrompt = null;
      return Promise.resolve({
        pass: false,
        excerpt: "[The model has crashed without additional information. (Exit code: 1)]",
        crashed: true,
      });
    }
    const pass = this.#healthy(context) && context <= (m.garbledAbove ?? Infinity) &&
      this.#needlePasses(context, promptTokens, opts.depth);
    return Promise.resolve({ pass, excerpt: pass ? "1234567" : "I do not know", ...prefill });
  }

  unload(): Promise<void> {
    this.calls.push({ method: "unload", context: this.loaded ?? 0 });
    this.loaded = null;
    return Promise.resolve();
  }

  #requireLoaded(method: string): number {
    if (this.loaded === null) throw new Error(`${method} called with nothing loaded`);
    return this.loaded;
  }

  #healthy(context: number): boolean {
    return this.#model.brokenAbove === undefined || context <= this.#model.brokenAbove;
  }

  #needlePasses(context: number, promptTokens: number, depth: number): boolean {
    const m = this.#model;
    let limit = m.needleFailAbove ?? Infinity;
    if (m.largeLoadBonus !== undefined && context > m.largeLoadBonus.above) {
      limit += m.largeLoadBonus.extra;
    }
    if (promptTokens > limit) return false;
    if (m.blindDepth !== undefined && depth === m.blindDepth.depth) {
      if (promptTokens > m.blindDepth.above) return false;
    }
    if (m.noisy === undefined || promptTokens <= m.noisy.floor) return true;
    if (promptTokens > m.noisy.hard) return false;
    const h = Math.imul(promptTokens ^ Math.imul(this.#seed + 1, 0x9e3779b1), 0x85ebca6b) ^
      Math.round(depth * 1000);
    return ((h >>> 13) & 3) !== 0; // three needles in four pass inside the band
  }
}

/** The true limits of a fake model, as the contract defines them. */
export interface FakeTruth {
  /** True loadable context, or null. */
  loadable: number | null;
  /** True working context, or null (noisy models: the top of the acceptable range). */
  working: number | null;
  /** Lowest acceptable working report (noisy models: `floor + reserve - precision`). */
  workingFloor: number | null;
  /** Context at and below which every needle passes, when below `working` (noisy models). */
  noisyFloor?: number;
  /** Whether the load size sets `working` (loaded above it, every needle fails). */
  byLoad?: boolean;
}

/** The oracle: true limits of `model` under `config`. */
export function truthOf(model: FakeModel, config: SearchConfig): FakeTruth {
  const { minContext, reserve, precision } = config;
  const loadable = Math.min(
    searchCap(config),
    model.fitAbove ?? Infinity,
    model.loadFailAbove ?? Infinity,
  );
  if (loadable < minContext || model.loadsNowhere !== undefined) {
    return { loadable: null, working: null, workingFloor: null };
  }
  const healthyTop = Math.min(
    loadable,
    model.brokenAbove ?? Infinity,
    model.garbledAbove ?? Infinity,
  );
  const needle = Math.min(
    model.needleFailAbove ?? Infinity,
    model.noisy?.hard ?? Infinity,
    model.crashAbove ?? Infinity,
  );
  let working = Math.min(healthyTop, needle + reserve);
  const bonus = model.largeLoadBonus;
  if (bonus !== undefined && healthyTop > bonus.above) {
    const lenient = Math.min(healthyTop, needle + bonus.extra + reserve);
    if (lenient > bonus.above) working = lenient;
    else working = Math.min(working, bonus.above);
  }
  const byLoad = healthyTop < loadable && working === healthyTop && bonus === undefined;
  if (working < minContext) {
    return { loadable, working: null, workingFloor: null, ...(byLoad ? { byLoad } : {}) };
  }
  // Below a noisy band or a blind depth every needle passes: that is the lowest fair report.
  const sure = Math.min(model.noisy?.floor ?? Infinity, model.blindDepth?.above ?? Infinity);
  const floor = sure === Infinity
    ? working - precision
    : Math.min(working, sure + reserve) - precision;
  const truth: FakeTruth = { loadable, working, workingFloor: Math.max(minContext, floor) };
  if (byLoad) truth.byLoad = true;
  else if (sure !== Infinity && sure + reserve < working) truth.noisyFloor = sure + reserve;
  return truth;
}
