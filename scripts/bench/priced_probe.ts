/**
 * A {@link Probe} that prices, on a virtual clock, what the LM Studio emulator would charge the
 * real probe (`src/probe/lmstudio_probe.ts` over the SDK) for the same calls, without a socket:
 * so that the bench can run our search over many truths (`ours_average.ts`) in a moment. It
 * plays one model profile as the emulator does (`scripts/emulator/`: `core.ts` admits loads,
 * `protocol.ts` prices them, `answers.ts` answers) and reports what the real probe reports on
 * the emulator's clock, so the search measures, plans and adapts as it does there:
 * - a load: the unload of the instance before it, then a success at `loadMs` of the size loaded
 *   (auto-fit raises or fits it), a guardrail refusal (early, before any progress), or an
 *   engine or exit-code failure (late, after progress, priced like a load); `seconds` is the
 *   load's own time;
 * - a check: the unload before it, then a refusal where the guardrail refuses, else a start and
 *   its cancel ({@link cancelledLoadMs}), or where the server ignores the cancel, the whole load
 *   and the unload after it;
 * - a needle: the haystack's token counting (see {@link countingMs}), the prediction overhead,
 *   the prefill of the tokens the prompt cache does not hold, and the answer's generation;
 *   `prefillSeconds` is the server's time to first token; a prompt past `crashAbove` kills the
 *   instance after its prefill;
 * - `2+2=`: the same without counting.
 *
 * Prompts are sized by their lengths, as `tests/support/fake_probe.ts` does: a needle prompt of
 * n tokens is a prefix of its haystack (one per seed; a fresh needle takes the next seed) and a
 * question of {@link QUESTION_TOKENS}; the emulator's cache reuses the common prefix with the
 * previous prompt on the instance, so a needle after one of the same seed prefills everything
 * past the shorter prefix (less its last token, which the emulator evaluates again), and one of
 * another seed, or after `2+2=`, prefills it all. Only where a profile has a noisy band does an
 * answer depend on the prompt's text (which needle it asks about); there the needle's key and
 * value come from the real haystack of that seed ({@link haystackNeedle}).
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
import { Haystack, questionFor } from "../../src/probe/haystack.ts";
import { NEEDLE_MAX_TOKENS } from "../../src/probe/lmstudio_probe.ts";
import { failsInNoisyBand, gibberish } from "../emulator/answers.ts";
import type { ModelProfile } from "../emulator/profile.ts";
import {
  cancelledLoadMs,
  generateMs,
  loadMs,
  prefillMs,
  refusalMs,
  TIMING,
} from "../emulator/timing.ts";
import { countTokens } from "../emulator/tokenizer.ts";
import { priorProfile } from "./best_average.ts";

/** Tokens of the question that ends every needle prompt (its key is three plain words). */
export const QUESTION_TOKENS = countTokens(questionFor("amber-brisk-cedar"));

/** Tokens of the emulator's answers: a needle's value (` 1234567.`), a wrong one too. */
const VALUE_TOKENS = countTokens(" 1234567.");
/** `2+2=` and its answer. */
const SANITY_TOKENS = countTokens("2+2=");
const FOUR_TOKENS = countTokens(" 4");
/** Longest answer the real probe lets `2+2=` have. */
const SANITY_MAX_TOKENS = 16;
/** Gibberish a failing needle gets (20 words), or any answer of a broken model (24 words). */
const GIBBERISH_TOKENS = countTokens(gibberish("x", 20));
const BROKEN_TOKENS = countTokens(gibberish("x", 24));

/**
 * Token counting a needle prompt's build costs beyond the text it counts the first time, ms: the
 * haystack counts its text once, in chunks, then for each prompt the part of a chunk before the
 * cut, at each of its few trial cuts (two on average on the emulator's tokenizer).
 */
export const PARTIAL_COUNT_MS = 10;

/** One model's truth for the pricing probe: the profile as the emulator would serve it. */
export interface PricedTruth {
  /** Largest size that loads. */
  loadable: number;
  /** Largest size at which a full-length needle passes (at most `loadable`). */
  working: number;
}

/**
 * The profile of a model whose truth is `truth`, as the prior sees it ({@link priorProfile}:
 * the cost model kept, its other behaviours dropped): refused above `loadable` the profile's way,
 * needles failing the profile's way past `working - reserve` tokens.
 */
export function truthProfile(
  profile: ModelProfile,
  config: SearchConfig,
  truth: PricedTruth,
): ModelProfile {
  const plain: ModelProfile = { ...priorProfile(profile) };
  if (truth.loadable < profile.declaredContext) plain.loadFailAbove = truth.loadable;
  if (truth.working < truth.loadable) {
    plain.needleFailAbove = truth.working - config.reserve;
    plain.needleFailMode = plain.needleFailMode ?? "wrong-number";
  }
  return plain;
}

/** The real haystacks, one per seed, kept: a prompt's text does not depend on earlier builds. */
const haystacks = new Map<number, Haystack>();
const needles = new Map<string, { key: string; value: string; promptTokens: number }>();

/** The needle the real probe's prompt of `promptTokens` at `depth` asks about, for `seed`. */
export async function haystackNeedle(seed: number, promptTokens: number, depth: number) {
  const id = `${seed}|${promptTokens}|${depth}`;
  const known = needles.get(id);
  if (known !== undefined) return known;
  let haystack = haystacks.get(seed);
  if (haystack === undefined) {
    haystack = new Haystack(seed);
    haystacks.set(seed, haystack);
  }
  const built = await haystack.build(promptTokens, depth, (text) => {
    return Promise.resolve(countTokens(text));
  });
  const needle = { key: built.key, value: built.value, promptTokens: built.promptTokens };
  needles.set(id, needle);
  return needle;
}

/** What the prompt cache of the loaded instance holds. */
type Cached =
  | { kind: "none" }
  | { kind: "sanity" }
  | { kind: "needle"; seed: number; prefix: number };

/** What the probe did, in the emulator's terms, for a comparison with its statistics. */
export interface PricedStats {
  /** Virtual ms in all. */
  ms: number;
  /** Load requests (checks included) and their ms. */
  loads: number;
  loadMs: number;
  /** Predictions and their ms. */
  predictions: number;
  predictMs: number;
  /** Prompt tokens processed (the rest from the cache). */
  prefilledTokens: number;
  /** Token counting ms. */
  countMs: number;
  /** Unloads. */
  unloads: number;
}

/** The pricing probe for one model profile (the real probe's seed: 7 in the bench). */
export class PricedProbe implements Probe {
  readonly #profile: ModelProfile;
  #seed: number;
  /** Size of the loaded instance; null when nothing is loaded. */
  #loaded: number | null = null;
  #cached: Cached = { kind: "none" };
  /** Per seed: the haystack text counted so far (prefix tokens), for {@link countingMs}. */
  #counted = new Map<number, number>();
  /**
   * What each load, check, `2+2=` and needle cost, in the order of the calls (a load's or a
   * check's with the unload before it): the search's attempts, priced.
   */
  readonly charges: number[] = [];
  /** Everything charged so far. */
  readonly stats: PricedStats = {
    ms: 0,
    loads: 0,
    loadMs: 0,
    predictions: 0,
    predictMs: 0,
    prefilledTokens: 0,
    countMs: 0,
    unloads: 0,
  };

  constructor(profile: ModelProfile, seed = 7) {
    this.#profile = profile;
    this.#seed = seed;
  }

  /** Virtual ms charged so far. */
  get ms(): number {
    return this.stats.ms;
  }

  #charge(ms: number): number {
    // The emulator's clock moves in whole ms, one step per call.
    const step = Math.max(0, Math.round(ms));
    this.stats.ms += step;
    return step;
  }

  /** The load request's fate: refused before progress, after it, or loaded at a size. */
  #admit(asked: number): { early: string } | { late: string } | { context: number } {
    const p = this.#profile;
    if (asked > p.declaredContext) return { early: "Requested context length is too large" };
    if (p.noRuntime === true) return { early: "No LM Runtime found" };
    if (p.loadFailAbove !== undefined && asked > p.loadFailAbove) {
      if (p.refusal === "engine") return { late: "Failed to initialize the context" };
      if (p.refusal === "exit-code") return { late: "(Exit code: 133)" };
      return { early: "Model loading was stopped due to insufficient system resources" };
    }
    if (p.fitAbove !== undefined && asked > p.fitAbove) return { context: p.fitAbove };
    if (p.fitUpTo !== undefined && asked < p.fitUpTo) return { context: p.fitUpTo };
    return { context: asked };
  }

  unload(): Promise<void> {
    if (this.#loaded !== null) {
      this.#charge(TIMING.unloadMs);
      this.stats.unloads++;
    }
    this.#loaded = null;
    this.#cached = { kind: "none" };
    return Promise.resolve();
  }

  /** Runs one call of the search and keeps what it cost in {@link charges}. */
  async #priced<T>(call: () => Promise<T>): Promise<T> {
    const start = this.stats.ms;
    const result = await call();
    this.charges.push(this.stats.ms - start);
    return result;
  }

  load(context: number): Promise<LoadOutcome> {
    return this.#priced(() => this.#load(context));
  }

  check(context: number): Promise<CheckOutcome> {
    return this.#priced(() => this.#check(context));
  }

  sanity(): Promise<Answer> {
    return this.#priced(() => this.#sanity());
  }

  needle(promptTokens: number, opts: { fresh: boolean; depth: number }): Promise<Answer> {
    return this.#priced(() => this.#needle(promptTokens, opts));
  }

  async #load(context: number): Promise<LoadOutcome> {
    await this.unload();
    this.stats.loads++;
    const admitted = this.#admit(context);
    const profile = this.#profile;
    if ("early" in admitted || "late" in admitted) {
      const ms = this.#charge(refusalMs(profile, context));
      this.stats.loadMs += ms;
      const message = "early" in admitted ? admitted.early : admitted.late;
      return { kind: "refused", message, early: "early" in admitted, seconds: ms / 1000 };
    }
    const ms = this.#charge(loadMs(profile, admitted.context));
    this.stats.loadMs += ms;
    this.#loaded = admitted.context;
    return { kind: "loaded", actual: admitted.context, seconds: ms / 1000 };
  }

  async #check(context: number): Promise<CheckOutcome> {
    await this.unload();
    this.stats.loads++;
    const admitted = this.#admit(context);
    if ("early" in admitted) {
      const ms = this.#charge(refusalMs(this.#profile, context));
      this.stats.loadMs += ms;
      return { kind: "refused", message: admitted.early, seconds: ms / 1000 };
    }
    if (this.#profile.cancelIgnored === true) {
      // The server loads (or fails) to the end all the same; the adapter unloads what it left.
      const loaded = "context" in admitted;
      const total = loaded
        ? loadMs(this.#profile, admitted.context)
        : refusalMs(this.#profile, context);
      const ms = this.#charge(total);
      this.stats.loadMs += ms;
      const unload = loaded ? this.#charge(TIMING.unloadMs) : 0;
      if (loaded) this.stats.unloads++;
      const seconds = (ms + unload) / 1000;
      return loaded ? { kind: "started", completed: true, seconds } : { kind: "started", seconds };
    }
    const ms = this.#charge(cancelledLoadMs());
    this.stats.loadMs += ms;
    return { kind: "started", seconds: ms / 1000 };
  }

  /**
   * Charges one prediction; returns its time to first token and its whole time in seconds (as
   * the real probe times it on the emulator's clock).
   */
  #predict(
    promptTokens: number,
    cached: number,
    answerTokens: number,
  ): { prefillSeconds: number; seconds: number } {
    const context = this.#loaded ?? 0;
    const tokens = Math.min(answerTokens, context - promptTokens);
    const prefill = prefillMs(this.#profile, cached, promptTokens);
    const generation = generateMs(this.#profile, promptTokens, Math.max(0, tokens));
    this.stats.predictions++;
    this.stats.prefilledTokens += promptTokens - cached;
    const ms = this.#charge(TIMING.predictOverheadMs + prefill + generation);
    this.stats.predictMs += ms;
    return { prefillSeconds: (TIMING.predictOverheadMs + prefill) / 1000, seconds: ms / 1000 };
  }

  #broken(): boolean {
    const { brokenAbove } = this.#profile;
    return brokenAbove !== undefined && (this.#loaded ?? 0) > brokenAbove;
  }

  #cache(): boolean {
    return this.#profile.promptCache !== false;
  }

  #sanity(): Promise<Answer> {
    if (this.#loaded === null) throw new Error("No model is loaded");
    // The emulator evaluates the last prompt token again: a repeated `2+2=` reuses the rest.
    const cached = this.#cache() && this.#cached.kind === "sanity" ? SANITY_TOKENS - 1 : 0;
    const broken = this.#broken();
    const tokens = broken ? Math.min(SANITY_MAX_TOKENS, BROKEN_TOKENS) : FOUR_TOKENS;
    const timed = this.#predict(SANITY_TOKENS, cached, tokens);
    this.#cached = { kind: "sanity" };
    return Promise.resolve({ pass: !broken, excerpt: broken ? "gibberish" : "4", ...timed });
  }

  /**
   * Token counting of a needle prompt of `promptTokens` on the haystack of the seed in use, as
   * the real probe's haystack asks the server for it (1 ms per 200 tokens): the text not counted
   * before (at least its first chunk), the first prompt of the haystack whole (its check that
   * counts add up), and {@link PARTIAL_COUNT_MS} for the cuts it tries.
   */
  #countingMs(promptTokens: number): number {
    const prefix = promptTokens - QUESTION_TOKENS;
    const counted = this.#counted.get(this.#seed);
    const first = counted === undefined;
    const reached = Math.max(counted ?? 0, prefix);
    this.#counted.set(this.#seed, reached);
    const fresh = Math.max(0, reached - (counted ?? 0));
    const tokens = fresh + (first ? promptTokens : 0);
    return tokens / TIMING.tokenizeTokensPerMs + PARTIAL_COUNT_MS;
  }

  async #needle(promptTokens: number, opts: { fresh: boolean; depth: number }): Promise<Answer> {
    if (this.#loaded === null) throw new Error("No model is loaded");
    if (opts.fresh) this.#seed++;
    const profile = this.#profile;
    const band = profile.noisyBand !== undefined;
    const exact = band ? await haystackNeedle(this.#seed, promptTokens, opts.depth) : undefined;
    const tokens = exact?.promptTokens ?? promptTokens;
    this.stats.countMs += this.#charge(this.#countingMs(tokens));
    const context = this.#loaded;
    if (tokens > context) {
      this.stats.predictions++;
      this.stats.predictMs += this.#charge(TIMING.predictOverheadMs);
      return { pass: false, excerpt: "[context overflow]" };
    }
    const prefix = tokens - QUESTION_TOKENS;
    const last = this.#cached;
    const cached = this.#cache() && last.kind === "needle" && last.seed === this.#seed
      ? Math.max(0, Math.min(last.prefix, prefix) - 1)
      : 0;
    if (profile.crashAbove !== undefined && tokens > profile.crashAbove) {
      const prefill = prefillMs(profile, cached, tokens);
      this.stats.predictions++;
      this.stats.prefilledTokens += tokens - cached;
      this.stats.predictMs += this.#charge(TIMING.predictOverheadMs + prefill);
      this.#loaded = null;
      this.#cached = { kind: "none" };
      return { pass: false, excerpt: "[The model has crashed]", crashed: true };
    }
    let pass = true;
    let answer = VALUE_TOKENS;
    if (this.#broken()) [pass, answer] = [false, BROKEN_TOKENS];
    else {
      const cliff = profile.needleFailAbove;
      const noisy = exact !== undefined &&
        failsInNoisyBand(profile, exact.key, exact.value, tokens);
      if ((cliff !== undefined && tokens > cliff) || noisy) {
        pass = false;
        const mode = profile.needleFailMode ?? "wrong-number";
        answer = mode === "empty" ? 0 : mode === "gibberish" ? GIBBERISH_TOKENS : VALUE_TOKENS;
      }
    }
    const timed = this.#predict(tokens, cached, Math.min(answer, NEEDLE_MAX_TOKENS));
    this.#cached = { kind: "needle", seed: this.#seed, prefix };
    // An empty answer fails like a wrong one.
    return { pass, excerpt: pass ? "value" : "wrong", ...timed };
  }
}
