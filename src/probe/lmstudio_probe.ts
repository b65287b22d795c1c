/**
 * The search's probe, played against LM Studio through the adapter.
 *
 * It loads and unloads the model under test, asks the sanity and needle questions, and absorbs
 * the faults that are not the model's: a dropped connection or a call that hangs is retried with
 * exponential backoff (reloading the instance when the server lost it), and only when the retries
 * run out does the failure reach the search's caller. Nothing here is ever recorded as a limit
 * unless LM Studio itself refused the load or the model answered.
 *
 * An engine that dies during a prediction is the model's answer, not a fault: the answer fails
 * with the crash text and says the instance is gone. The probe times each load and refusal with
 * its clock, and passes on the server's own prefill time, so that the search learns the model's
 * costs (both injectable: the bench hands it the emulator's virtual clock).
 */

import { RESERVE_TOKENS } from "../contract.ts";
import type { LmStudio, LoadedModel } from "../lmstudio/client.ts";
import { INSTANCE_PREFIX } from "../lmstudio/client.ts";
import { LmStudioCallError, messageOf } from "../lmstudio/failures.ts";
import type { Answer, LoadOutcome, Probe } from "../search/context_search.ts";
import type { CheckOutcome } from "../search/types.ts";
import { gradeNeedle, gradeSanity, Haystack, SANITY_PROMPT } from "./haystack.ts";

/** New tokens the model may write after a needle prompt: the contract's reserve. */
export const NEEDLE_MAX_TOKENS = RESERVE_TOKENS;
const SANITY_MAX_TOKENS = 16;

/** What the probe did last, for the attempt log. */
export interface OperationRecord {
  durationMs: number;
  /** The needle's value a needle probe asked for, so that its answer can be checked. */
  expected?: string;
  /** Prompt tokens as built and counted by the model's tokenizer. */
  promptTokens?: number;
  /** Faults absorbed by retries during the operation. */
  retries: number;
  error?: string;
}

/** Settings of a probe; everything with a side effect has a production default. */
export interface LmStudioProbeOptions {
  /** Aborts the call in flight (interrupts). */
  signal?: AbortSignal;
  /** Seed of the first haystack; fresh haystacks count up from it. */
  seed?: number;
  /** Tells loads of this run apart from others. */
  runId?: string;
  /** How many times a transient fault is retried. */
  retries?: number;
  /** First backoff delay in ms; it doubles each retry. */
  backoffMs?: number;
  /** Waits; injectable so tests need not. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** The clock for durations. */
  now?: () => number;
  /** Called when a transient fault is being retried. */
  onRetry?: (what: string, error: LmStudioCallError, attempt: number) => void;
}

function defaultSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Makes a run id short enough to read in `lms ps`. */
export function newRunId(): string {
  return `${Date.now().toString(36)}${Math.floor(Math.random() * 36 ** 3).toString(36)}`;
}

/** The probe for one model. */
export class LmStudioProbe implements Probe {
  readonly #lms: LmStudio;
  readonly #modelKey: string;
  readonly #signal: AbortSignal | undefined;
  readonly #retries: number;
  readonly #backoffMs: number;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly #now: () => number;
  readonly #onRetry: LmStudioProbeOptions["onRetry"];
  readonly #runId: string;
  #seed: number;
  #haystack: Haystack;
  #loaded: LoadedModel | undefined;
  #loadCount = 0;
  /** Identifiers the checks used, to tell their leftovers. */
  readonly #checkIds = new Set<string>();
  /** Whether a check started since the last sweep. */
  #sweepNext = false;
  /** Checks found loaded after all since the last check reported it. */
  #completedUnseen = 0;
  /** Loads made, including reloads after faults. */
  loads = 0;
  /** Checks made (loads cancelled once they started), including retries; not in `loads`. */
  checks = 0;
  /** Prompt tokens sent, including retries. */
  promptTokens = 0;
  /** The last operation, for the attempt log. */
  last: OperationRecord = { durationMs: 0, retries: 0 };

  /** Creates the probe of `modelKey` on `lms`. */
  constructor(lms: LmStudio, modelKey: string, options: LmStudioProbeOptions = {}) {
    this.#lms = lms;
    this.#modelKey = modelKey;
    this.#signal = options.signal;
    this.#retries = options.retries ?? 3;
    this.#backoffMs = options.backoffMs ?? 1_000;
    this.#sleep = options.sleep ?? defaultSleep;
    this.#now = options.now ?? (() => performance.now());
    this.#onRetry = options.onRetry;
    this.#runId = options.runId ?? newRunId();
    this.#seed = options.seed ?? 1;
    this.#haystack = new Haystack(this.#seed);
  }

  /** Seed of the haystack in use: pass it back as `seed` to go on with the same prompts. */
  get seed(): number {
    return this.#seed;
  }

  /** The instance loaded now, if any. */
  get loaded(): LoadedModel | undefined {
    return this.#loaded;
  }

  async #timed<T>(work: (record: OperationRecord) => Promise<T>): Promise<T> {
    const record: OperationRecord = { durationMs: 0, retries: 0 };
    const start = this.#now();
    try {
      return await work(record);
    } catch (error) {
      record.error = messageOf(error);
      throw error;
    } finally {
      record.durationMs = Math.round(this.#now() - start);
      this.last = record;
    }
  }

  /**
   * Runs `call`, retrying transient faults with exponential backoff; `recover` runs before a
   * retry. With `instance`, the call works on the loaded instance, and an instance someone else
   * unloaded (`lms unload`, another program) is loaded again once, at once.
   */
  async #retrying<T>(
    what: string,
    record: OperationRecord,
    call: () => Promise<T>,
    recover: () => Promise<void>,
    instance = false,
  ): Promise<T> {
    let reloaded = false;
    let recovering = false;
    for (let attempt = 0;; attempt++) {
      try {
        // Recovering talks to the server too: while it restarts, that fails like the call did.
        if (recovering) await recover();
        recovering = false;
        return await call();
      } catch (error) {
        if (!(error instanceof LmStudioCallError)) throw error;
        const unloaded = instance && error.kind === "not-found" && !reloaded && !recovering;
        if (!unloaded && (!error.transient || attempt >= this.#retries)) throw error;
        record.retries++;
        this.#onRetry?.(what, error, attempt + 1);
        if (unloaded) reloaded = true;
        else await this.#sleep(this.#backoffMs * 2 ** attempt, this.#signal);
        recovering = true;
      }
    }
  }

  /** A fresh identifier of this run, with the interrupt signal: what a load or check sends. */
  #loadOptions(): { identifier: string; signal?: AbortSignal } {
    const identifier = `${INSTANCE_PREFIX}${this.#runId}-${++this.#loadCount}`;
    return this.#signal ? { identifier, signal: this.#signal } : { identifier };
  }

  /** Loads at `context` once, with no retry. */
  async #loadOnce(context: number): Promise<LoadOutcome> {
    this.loads++;
    const result = await this.#lms.load(this.#modelKey, context, this.#loadOptions());
    if (result.kind === "refused") {
      return { kind: "refused", message: result.message, early: result.early };
    }
    this.#loaded = result.model;
    return { kind: "loaded", actual: result.actual };
  }

  /** Checks at `context` once, with no retry. */
  async #checkOnce(context: number): Promise<CheckOutcome> {
    this.checks++;
    const options = this.#loadOptions();
    this.#checkIds.add(options.identifier);
    const result = await this.#lms.check(this.#modelKey, context, options);
    if (result.kind === "refused") return { kind: "refused", message: result.message };
    this.#sweepNext = true;
    const completed = result.completed || this.#completedUnseen > 0;
    this.#completedUnseen = 0;
    return completed ? { kind: "started", completed: true } : { kind: "started" };
  }

  /**
   * After a check that started: unloads any instance of this run that LM Studio finished
   * loading after all (a cancel that came too late, or that the server does not honour), so
   * that it holds no memory when the next load asks the guardrail; counts those of checks.
   */
  async #sweep(): Promise<void> {
    if (!this.#sweepNext) return;
    this.#sweepNext = false;
    const prefix = `${INSTANCE_PREFIX}${this.#runId}-`;
    for (const instance of await this.#lms.listLoaded()) {
      if (!instance.identifier.startsWith(prefix)) continue;
      await this.#lms.unload(instance.identifier);
      if (this.#checkIds.has(instance.identifier)) this.#completedUnseen++;
    }
  }

  /** After a fault, unloads whatever instance of this run may be left on the server. */
  async #clearInstances(): Promise<void> {
    this.#loaded = undefined;
    const prefix = `${INSTANCE_PREFIX}${this.#runId}-`;
    const loaded = await this.#lms.listLoaded();
    for (const instance of loaded) {
      if (instance.identifier.startsWith(prefix)) await this.#lms.unload(instance.identifier);
    }
  }

  /** Loads the model at `context`, unloading the instance loaded before; times the load. */
  load(context: number): Promise<LoadOutcome> {
    return this.#loadRequest("load", () => this.#loadOnce(context));
  }

  /**
   * Asks for a load at `context` and has it cancelled once LM Studio starts it (its guardrail
   * said yes), unloading the instance loaded before; leaves nothing loaded. Timed like a load.
   */
  check(context: number): Promise<CheckOutcome> {
    return this.#loadRequest("check", () => this.#checkOnce(context));
  }

  /**
   * A load or a check: the instance held before is unloaded (and any a check left), then the
   * request is made with retries and timed.
   */
  #loadRequest<T extends LoadOutcome | CheckOutcome>(
    what: "load" | "check",
    once: () => Promise<T>,
  ): Promise<T> {
    return this.#timed(async (record) => {
      await this.unload();
      await this.#sweep();
      const start = this.#now();
      const outcome = await this.#retrying(what, record, once, () => this.#clearInstances());
      // Retries would time the faults too: only a request that went through at once is a measure.
      if (record.retries > 0) return outcome;
      return { ...outcome, seconds: (this.#now() - start) / 1000 };
    });
  }

  /** Makes sure an instance at the same context is loaded after a fault took it away. */
  async #reloadIfLost(): Promise<void> {
    const current = this.#loaded;
    if (!current) throw new Error("No model is loaded");
    const loaded = await this.#lms.listLoaded();
    if (loaded.some((instance) => instance.identifier === current.identifier)) return;
    await this.#clearInstances();
    const outcome = await this.#loadOnce(current.contextLength);
    if (outcome.kind !== "loaded" || outcome.actual !== current.contextLength) {
      throw new LmStudioCallError(
        "load",
        "other",
        `Reloading "${this.#modelKey}" after a fault gave a different result`,
      );
    }
  }

  async #ask(prompt: string, promptTokens: number, maxTokens: number, record: OperationRecord) {
    return await this.#retrying(
      "complete",
      record,
      async () => {
        const model = this.#loaded;
        if (!model) throw new Error("No model is loaded");
        this.promptTokens += promptTokens;
        const options = this.#signal
          ? { maxTokens, promptTokens, signal: this.#signal }
          : { maxTokens, promptTokens };
        const start = this.#now();
        try {
          const completion = await model.complete(prompt, options);
          // The whole prediction (prefill and answer), for a probe's cost beyond its prefill.
          const total = (this.#now() - start) / 1000;
          const seconds = completion.timeToFirstTokenSec ?? total;
          return { text: completion.text, seconds, total, crashed: false };
        } catch (error) {
          // A prompt that does not fit the loaded context is the model's answer, not a fault.
          if (error instanceof LmStudioCallError && error.kind === "context-overflow") {
            return {
              text: `[${error.message}]`,
              seconds: undefined,
              total: undefined,
              crashed: false,
            };
          }
          // So is an engine that dies on it; the instance went with the engine.
          if (error instanceof LmStudioCallError && error.kind === "crashed") {
            this.#loaded = undefined;
            return {
              text: `[${error.message}]`,
              seconds: undefined,
              total: undefined,
              crashed: true,
            };
          }
          throw error;
        }
      },
      () => this.#reloadIfLost(),
      true,
    );
  }

  /** Asks `2+2=`. */
  sanity(): Promise<Answer> {
    return this.#timed(async (record) => {
      const completion = await this.#ask(SANITY_PROMPT, 4, SANITY_MAX_TOKENS, record);
      return answerOf(gradeSanity(completion.text), completion);
    });
  }

  /** Asks for a needle in a prompt of `promptTokens` tokens. */
  needle(promptTokens: number, options: { fresh: boolean; depth: number }): Promise<Answer> {
    return this.#timed(async (record) => {
      const model = this.#loaded;
      if (!model) throw new Error("No model is loaded");
      if (options.fresh) this.#haystack = new Haystack(++this.#seed);
      const built = await this.#retrying(
        "countTokens",
        record,
        () =>
          this.#haystack.build(
            promptTokens,
            options.depth,
            (text) => this.#loaded!.countTokens(text, this.#signal),
          ),
        () => this.#reloadIfLost(),
        true,
      );
      record.promptTokens = built.promptTokens;
      record.expected = built.value;
      const completion = await this.#ask(
        built.prompt,
        built.promptTokens,
        NEEDLE_MAX_TOKENS,
        record,
      );
      return answerOf(gradeNeedle(completion.text, built.value), completion);
    });
  }

  /**
   * Unloads everything this probe may have left on the server: its instance, and any instance
   * of its run that a load cut short by an interrupt or a fault may have left behind. Used when
   * the search stops early; never throws.
   */
  async release(): Promise<void> {
    try {
      await this.unload();
      await this.#clearInstances();
    } catch {
      // LM Studio is gone or does not answer: what it held goes with it.
    }
  }

  /** Unloads the instance this probe loaded, if any. */
  async unload(): Promise<void> {
    const model = this.#loaded;
    if (!model) return;
    this.#loaded = undefined;
    try {
      await model.unload();
    } catch (error) {
      // Already gone after a fault is fine; anything else is worth one more try by identifier.
      if (error instanceof LmStudioCallError && error.kind === "not-found") return;
      await this.#clearInstances();
    }
  }
}

/** The search's view of a graded completion. */
function answerOf(
  pass: boolean,
  completion: {
    text: string;
    seconds: number | undefined;
    total: number | undefined;
    crashed: boolean;
  },
): Answer {
  // An empty or blank answer is a wrong answer: it cannot hold the value.
  const answer: Answer = {
    pass: pass && completion.text.trim() !== "",
    excerpt: excerpt(completion.text),
  };
  if (completion.crashed) answer.crashed = true;
  if (completion.seconds !== undefined) answer.prefillSeconds = completion.seconds;
  if (completion.total !== undefined) answer.seconds = completion.total;
  return answer;
}

function excerpt(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > 80 ? `${flat.slice(0, 77)}...` : flat;
}
