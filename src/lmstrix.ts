/**
 * The LMStrix engine: scanning, testing and reading the registry, shared by the CLI and the
 * library (`mod.ts`).
 *
 * Everything with a side effect (the LM Studio connection, the clock, the paths) is resolved here
 * from options with production defaults, so tests drive the same code against the emulator.
 * Commands that only read the registry (`list`, `status`, `show`) never load the SDK.
 */

import { LmstrixError, LmStudioUnreachableError, UsageError } from "./errors.ts";
import { DEFAULT_TIMEOUTS, INSTANCE_PREFIX, timeoutsFromSeconds } from "./lmstudio/client.ts";
import type { LmStudio, Timeouts } from "./lmstudio/client.ts";
import { discoverServer } from "./lmstudio/discovery.ts";
import { classifyFailure, LmStudioCallError, messageOf } from "./lmstudio/failures.ts";
import { type LmstrixPaths, lmstrixPaths, resolveLmstudioDir } from "./paths.ts";
import type { LmStudioProbe } from "./probe/lmstudio_probe.ts";
import { appendAttempt } from "./registry/attempt_log.ts";
import { acquireLock, type Lock, type LockHolder, readLockHolder } from "./registry/lock.ts";
import {
  type ContractModelRecord,
  type ModelRecord,
  toContractJson,
} from "./registry/model_record.ts";
import {
  findModel,
  loadRegistry,
  type Registry,
  saveRegistry,
  type ScanMerge,
  type StatusCounts,
  statusCounts,
  upsertScanned,
} from "./registry/registry.ts";
import type { Attempt, Probe, SearchConfig, SearchState } from "./search/context_search.ts";

/** The reserve of tokens the needle prompt leaves for the answer (the contract's 64). */
export const RESERVE_TOKENS = 64;
/** Smallest context tested unless `--min-context` says otherwise. */
export const DEFAULT_MIN_CONTEXT = 2048;

/** Where LMStrix finds LM Studio and its files; everything is optional. */
export interface LMStrixOptions {
  /** LM Studio's address, `ws://host:port`; default `LMSTRIX_SERVER`, else discovery. */
  server?: string | undefined;
  /** LM Studio's home directory; default `LMSTRIX_LMSTUDIO_DIR`, else the usual places. */
  lmstudioDir?: string | undefined;
  /** Deadlines of calls to LM Studio. */
  timeouts?: Partial<Timeouts>;
  /** Ports tried by discovery (default: the contract's list). */
  discoveryPorts?: readonly number[];
  /** Reads the environment (default `Deno.env.get`). */
  env?: (name: string) => string | undefined;
  /** First backoff delay after a dropped connection, in ms; default `LMSTRIX_BACKOFF_MS`, else 1000. */
  backoffMs?: number;
  /** Retries of a dropped connection or a hung call (default 3). */
  retries?: number;
}

/** Options of one test run. */
export interface TestOptions {
  /** Tokens; default max(256, 1% of declared). */
  precision?: number | undefined;
  /** Smallest context worth testing (default 2048). */
  minContext?: number | undefined;
  /** No load above this. */
  maxContext?: number | undefined;
  /**
   * Base deadline of every call to LM Studio, in seconds (predictions get more per prompt
   * token); default `LMSTRIX_TIMEOUT`, else the {@link DEFAULT_TIMEOUTS}. A call that passes it
   * is retried, then counts as an error of that attempt, never as a limit.
   */
  timeoutSeconds?: number | undefined;
  /** Test again models already tested. */
  force?: boolean | undefined;
  /** Aborts the run (SIGINT/SIGTERM): unload, save, throw {@link InterruptedError}. */
  signal?: AbortSignal | undefined;
  /** Progress events, for the CLI's live lines. */
  onEvent?: ((event: TestEvent) => void) | undefined;
}

/** What happens during a test run, as it happens. */
export type TestEvent =
  | { type: "model-start"; id: string; index: number; total: number; resumed: boolean }
  | {
    type: "attempt-start";
    id: string;
    action: Attempt["action"];
    context: number;
    promptTokens?: number;
  }
  | { type: "attempt"; id: string; attempt: Attempt; durationMs: number }
  | { type: "model-done"; result: TestResult }
  | { type: "warning"; message: string };

/** One model's outcome, as in `test --json`. */
export interface TestResult {
  id: string;
  declaredContext: number;
  loadableContext: number | null;
  workingContext: number | null;
  reductionPercent: number | null;
  status: ModelRecord["status"];
  loads: number;
  promptTokens: number;
  error: string | null;
}

/** The library's answer to {@link LMStrix.testContextLimits}. */
export interface ContextLimits {
  id: string;
  declared: number;
  loadable: number | null;
  working: number | null;
  reductionPercent: number | null;
  /** `tested`, or `failed` when the model could not be tested. */
  status: ModelRecord["status"];
  /** Why the test failed, or null. */
  error: string | null;
}

/** `scan`'s result. */
export interface ScanResult extends ScanMerge {
  models: ContractModelRecord[];
  server: string;
}

/** `status`'s result, as in `status --json`. */
export interface StatusReport extends StatusCounts {
  lock: LockHolder | null;
  registry: string;
}

/** The run was stopped by a signal after unloading and saving (exit 130 or 143). */
export class InterruptedError extends LmstrixError {
  /** The signal that stopped the run. */
  readonly signal: string;
  /** Creates the error for `signal`. */
  constructor(signal: string) {
    super(`Stopped by ${signal}; progress is saved and nothing is left loaded`, {
      hint: "run the same command again to resume where it stopped",
    });
    this.signal = signal;
  }
}

/** The precision the contract uses when none is given. */
export function defaultPrecision(declared: number): number {
  return Math.max(256, Math.ceil(declared / 100));
}

/** How much smaller the working context is than the declared one, in percent (one decimal). */
export function reductionPercent(declared: number, working: number | null): number | null {
  if (working === null || declared <= 0) return null;
  return Math.round((1 - working / declared) * 1000) / 10;
}

function seedFor(id: string): number {
  let hash = 2166136261;
  for (let i = 0; i < id.length; i++) hash = Math.imul(hash ^ id.charCodeAt(i), 16777619) >>> 0;
  return hash;
}

/** The LMStrix engine. */
export class LMStrix {
  readonly #options: LMStrixOptions;
  #paths: LmstrixPaths | undefined;

  /** Creates the engine; nothing is read or connected until a method needs it. */
  constructor(options: LMStrixOptions = {}) {
    this.#options = options;
  }

  #env(name: string): string | undefined {
    return (this.#options.env ?? ((n: string) => Deno.env.get(n)))(name);
  }

  /** A number from the environment (positive, or with `zero` also 0); undefined when unset. */
  #envNumber(name: string, what: string, zero = false): number | undefined {
    const text = this.#env(name)?.trim();
    if (text === undefined || text === "") return undefined;
    const value = Number(text);
    if (!/^\d+(\.\d+)?$/.test(text) || !Number.isFinite(value) || (value === 0 && !zero)) {
      throw new UsageError(`${name} must be ${what}, not "${text}"`, {
        hint: `fix or unset ${name}`,
      });
    }
    return value;
  }

  /** The deadlines of a test run: `timeoutSeconds`, else `LMSTRIX_TIMEOUT`, else the defaults. */
  #testTimeouts(options: TestOptions): Partial<Timeouts> {
    const seconds = options.timeoutSeconds ??
      this.#envNumber("LMSTRIX_TIMEOUT", "a positive number of seconds");
    return seconds === undefined ? {} : timeoutsFromSeconds(seconds);
  }

  /** The files LMStrix uses. */
  get paths(): LmstrixPaths {
    this.#paths ??= lmstrixPaths(
      resolveLmstudioDir({ flag: this.#options.lmstudioDir, env: (n) => this.#env(n) }),
    );
    return this.#paths;
  }

  /** Finds LM Studio and opens the adapter; throws {@link LmStudioUnreachableError}. */
  async #connect(timeouts: Partial<Timeouts> = {}): Promise<LmStudio> {
    const server = this.#options.server ?? this.#env("LMSTRIX_SERVER");
    let found;
    try {
      found = await discoverServer({
        server,
        ...(this.#options.discoveryPorts ? { ports: this.#options.discoveryPorts } : {}),
      });
    } catch (error) {
      throw new UsageError(messageOf(error), { hint: 'pass --server as "ws://host:port"' });
    }
    if (!found.found) {
      throw new LmStudioUnreachableError(
        found.tried.length === 1
          ? found.tried[0]!
          : "127.0.0.1 (ports 1234, 41343, 52993, 16141, 39414, 22931)",
        found.emulators.length > 0
          ? `only LMStrix's emulator answered (${
            found.emulators.join(", ")
          }), and it is used only when named with --server`
          : "no LM Studio server answered the greeting",
      );
    }
    const { connectLmStudio } = await import("./lmstudio/client.ts");
    return await connectLmStudio(found.baseUrl, {
      timeouts: { ...DEFAULT_TIMEOUTS, ...this.#options.timeouts, ...timeouts },
    });
  }

  /** Runs `work` with the adapter, turning connection failures into {@link LmStudioUnreachableError}. */
  async #withLmStudio<T>(
    work: (lms: LmStudio) => Promise<T>,
    timeouts: Partial<Timeouts> = {},
  ): Promise<T> {
    const lms = await this.#connect(timeouts);
    try {
      return await work(lms);
    } catch (error) {
      const kind = classifyFailure(error);
      if (kind === "unreachable" || kind === "connection-lost") {
        throw new LmStudioUnreachableError(lms.baseUrl, messageOf(error), { cause: error });
      }
      throw error;
    } finally {
      await lms.close();
    }
  }

  async #withLock<T>(work: () => Promise<T>): Promise<T> {
    const lock: Lock = await acquireLock(this.paths);
    try {
      return await work();
    } finally {
      await lock.release();
    }
  }

  /** Reads the registry (never writes it). */
  async #read(): Promise<Registry> {
    return await loadRegistry(this.paths);
  }

  /** Discovers models in LM Studio and merges them into the registry. */
  scan(): Promise<ScanResult> {
    return this.#withLock(async () => {
      const registry = await this.#read();
      return await this.#withLmStudio(async (lms) => {
        const listed = await lms.listModels();
        const merge = upsertScanned(
          registry,
          listed.map((m) => ({
            id: m.id,
            path: m.path,
            sizeBytes: m.sizeBytes,
            architecture: m.architecture,
            declaredContext: m.declaredContext,
            type: m.type,
            displayName: m.displayName,
            format: m.format,
            ...(m.quantization ? { quantization: m.quantization } : {}),
            ...(m.paramsString ? { paramsString: m.paramsString } : {}),
          })),
        );
        await saveRegistry(this.paths, registry);
        return {
          ...merge,
          models: sortedRecords(registry).map(toContractJson),
          server: lms.baseUrl,
        };
      });
    });
  }

  /** The registry's model records, as in `list --json`. */
  async list(): Promise<ContractModelRecord[]> {
    return sortedRecords(await this.#read()).map(toContractJson);
  }

  /** The full stored records (with metadata), for `list` tables and `show`. */
  async records(): Promise<ModelRecord[]> {
    return sortedRecords(await this.#read());
  }

  /** One model's stored record, by id or a unique part of one. */
  async show(query: string): Promise<ModelRecord> {
    return findModel(await this.#read(), query);
  }

  /** Counts by status and the lock holder, as in `status --json`. */
  async status(): Promise<StatusReport> {
    const registry = await this.#read();
    return {
      ...statusCounts(registry),
      lock: await readLockHolder(this.paths),
      registry: this.paths.registry,
    };
  }

  /** The working context of a tested model, or null when it has not been tested. */
  async getTestedContextLimit(query: string): Promise<number | null> {
    const record = findModel(await this.#read(), query);
    return record.status === "tested" ? record.workingContext : null;
  }

  /**
   * Finds one model's loadable and working context and stores them. A model that was tested
   * already is tested again; one whose test was interrupted resumes unless `force` is set. A
   * model that cannot be tested comes back with `status: "failed"`, null limits and the reason.
   */
  async testContextLimits(query: string, options: TestOptions = {}): Promise<ContextLimits> {
    const [result] = await this.test([query], options);
    if (!result) throw new UsageError(`Nothing was tested for "${query}"`);
    return {
      id: result.id,
      declared: result.declaredContext,
      loadable: result.loadableContext,
      working: result.workingContext,
      reductionPercent: result.reductionPercent,
      status: result.status,
      error: result.error,
    };
  }

  /**
   * Tests the models named in `queries`, or with `queries` = "all" every LLM not yet tested
   * (all of them with `force`), smallest first. Goes on to the next model when one cannot be
   * tested; stops at once (after unloading and saving) on an interrupt or when LM Studio is gone.
   */
  test(queries: string[] | "all", options: TestOptions = {}): Promise<TestResult[]> {
    const precision = options.precision;
    for (
      const [name, value] of [["--precision", precision], ["--min-context", options.minContext], [
        "--max-context",
        options.maxContext,
      ]] as const
    ) {
      if (value !== undefined && (!Number.isSafeInteger(value) || value <= 0)) {
        throw new UsageError(`${name} must be a positive whole number of tokens, not "${value}"`);
      }
    }
    if (
      options.minContext !== undefined && options.maxContext !== undefined &&
      options.minContext > options.maxContext
    ) {
      throw new UsageError(
        `--min-context (${options.minContext}) is above --max-context (${options.maxContext})`,
        {
          hint: "lower --min-context or raise --max-context",
        },
      );
    }
    if (
      options.timeoutSeconds !== undefined &&
      !(Number.isFinite(options.timeoutSeconds) && options.timeoutSeconds > 0)
    ) {
      throw new UsageError(
        `--timeout must be a positive number of seconds, not "${options.timeoutSeconds}"`,
      );
    }
    const timeouts = this.#testTimeouts(options);
    const backoffMs = this.#options.backoffMs ??
      this.#envNumber("LMSTRIX_BACKOFF_MS", "a number of milliseconds", true);
    const signal = options.signal;
    const stopIfInterrupted = () => {
      if (signal?.aborted) throw new InterruptedError(String(signal.reason ?? "SIGINT"));
    };
    return this.#withLock(async () => {
      const registry = await this.#read();
      const chosen = chooseModels(registry, queries, options.force ?? false);
      if (chosen.length === 0) return [];
      stopIfInterrupted();
      return await this.#withLmStudio(async (lms) => {
        try {
          await this.#clearLeftovers(lms, options);
          const results: TestResult[] = [];
          for (const [index, record] of chosen.entries()) {
            stopIfInterrupted();
            const result = await this.#testOne(
              lms,
              registry,
              record,
              { index, total: chosen.length, backoffMs },
              options,
            );
            results.push(result);
            options.onEvent?.({ type: "model-done", result });
          }
          return results;
        } catch (error) {
          // Whatever an interrupt cut short (a listing, an unload) ends the run as an interrupt.
          if (!(error instanceof InterruptedError)) stopIfInterrupted();
          throw error;
        }
      }, timeouts);
    });
  }

  /** Unloads instances an earlier crashed run left; warns about models the user loaded. */
  async #clearLeftovers(lms: LmStudio, options: TestOptions): Promise<void> {
    const loaded = await lms.listLoaded();
    for (const instance of loaded) {
      if (instance.identifier.startsWith(INSTANCE_PREFIX)) {
        await lms.unload(instance.identifier);
        options.onEvent?.({
          type: "warning",
          message:
            `Unloaded "${instance.identifier}" (${instance.modelKey}), left loaded by an earlier LMStrix run`,
        });
      } else {
        options.onEvent?.({
          type: "warning",
          message:
            `"${instance.modelKey}" is loaded (not by LMStrix) and takes memory the test could otherwise use`,
        });
      }
    }
  }

  async #testOne(
    lms: LmStudio,
    registry: Registry,
    record: ModelRecord,
    run: { index: number; total: number; backoffMs: number | undefined },
    options: TestOptions,
  ): Promise<TestResult> {
    const { index, total, backoffMs } = run;
    // The search and the probe load only when a test runs: `list` and friends start faster.
    const [{ initialState, searchContextLimits }, { LmStudioProbe }] = await Promise.all([
      import("./search/context_search.ts"),
      import("./probe/lmstudio_probe.ts"),
    ]);
    const precision = options.precision ?? defaultPrecision(record.declaredContext);
    const config: SearchConfig = {
      declared: record.declaredContext,
      minContext: Math.min(options.minContext ?? DEFAULT_MIN_CONTEXT, record.declaredContext),
      precision,
      reserve: RESERVE_TOKENS,
      ...(options.maxContext !== undefined ? { maxContext: options.maxContext } : {}),
    };
    const save = () => saveRegistry(this.paths, registry);
    const saved = record.search as
      | (SearchState & { config?: SearchConfig; seed?: number })
      | undefined;
    const resumable = !options.force && saved !== undefined &&
      (record.status === "testing" || record.status === "failed");
    let state: SearchState = resumable && saved && sameConfig(saved.config, config)
      ? saved
      : initialState(config);
    const resumed = saved !== undefined && state === saved;
    if (resumed && state.pendingLoad !== undefined) {
      options.onEvent?.({
        type: "warning",
        message:
          `The last run stopped while loading "${record.id}" at ${state.pendingLoad} tokens ` +
          `(the machine may have frozen); that size now counts as failed`,
      });
    }
    options.onEvent?.({ type: "model-start", id: record.id, index, total, resumed });
    record.status = "testing";
    record.error = null;
    record.precision = precision;
    const probe = new LmStudioProbe(lms, record.id, {
      // A resumed search goes on with the haystack it was using, so that its prompts, and the
      // answers of a model whose recall is noisy, are those of a run that was never stopped.
      seed: resumed && typeof saved?.seed === "number" ? saved.seed : seedFor(record.id),
      ...(options.signal ? { signal: options.signal } : {}),
      ...(backoffMs !== undefined ? { backoffMs } : {}),
      ...(this.#options.retries !== undefined ? { retries: this.#options.retries } : {}),
      onRetry: (what, error, attempt) =>
        options.onEvent?.({
          type: "warning",
          message: `${record.id}: ${what} failed (${error.message}); retry ${attempt}`,
        }),
    });
    const keep = (next: SearchState) => {
      state = next;
      record.search = { ...next, config, seed: probe.seed };
    };
    keep(state);
    await save();
    /** The saved search after the last finished attempt (with its haystack seed). */
    let settled = record.search;

    const announced = announcing(probe, record.id, options.onEvent);
    const logFile = { logsDir: this.paths.logsDir };
    let base: TestResult;
    try {
      const result = await searchContextLimits(config, announced, {
        state,
        hooks: {
          beforeLoad: async (_context, next) => {
            keep(next);
            await save();
          },
          afterAttempt: async (attempt, next) => {
            keep(next);
            settled = record.search;
            await save();
            const op = probe.last;
            await appendAttempt(logFile, record.id, {
              time: new Date().toISOString(),
              model: record.id,
              phase: attempt.phase,
              action: attempt.action,
              askedContext: attempt.context,
              actualContext: attempt.actual ?? null,
              promptTokens: attempt.promptTokens ?? op.promptTokens ?? null,
              outcome: attempt.outcome,
              output: attempt.excerpt ?? null,
              durationMs: op.durationMs,
              retries: op.retries,
              error: op.error ?? null,
            });
            options.onEvent?.({
              type: "attempt",
              id: record.id,
              attempt,
              durationMs: op.durationMs,
            });
          },
        },
      });
      record.loadableContext = result.loadable;
      record.workingContext = result.working;
      record.testedAt = new Date().toISOString();
      // A limit that is only the cap says "at least this much", not "this much".
      const cap = config.maxContext;
      if (cap !== undefined && cap < config.declared && result.loadable === cap) {
        record.cappedAt = cap;
      } else delete record.cappedAt;
      delete record.search;
      if (result.loadable === null) {
        record.status = "failed";
        record.error = `It did not load at ${config.minContext} tokens or more`;
      } else if (result.working === null) {
        record.status = "failed";
        record.error =
          `No context of ${config.minContext} tokens or more answered the needle probe`;
      } else {
        record.status = "tested";
        record.error = null;
      }
      await save();
      base = resultOf(record, probe);
    } catch (error) {
      await probe.release();
      // Resume from the last finished attempt: the one cut short is repeated, and a load in
      // flight neither counts as failed (an interrupt or a fault is not a crash) nor as spent.
      record.search = settled;
      if (options.signal?.aborted) {
        await save();
        throw new InterruptedError(String(options.signal.reason ?? "SIGINT"));
      }
      const kind = classifyFailure(error);
      if (kind === "unreachable" || (kind === "connection-lost" && !(await reachable(lms)))) {
        await save();
        throw error;
      }
      if (!(error instanceof LmStudioCallError)) {
        await save();
        throw error;
      }
      record.status = "failed";
      record.error = error.message;
      await save();
      base = resultOf(record, probe);
    }
    return base;
  }
}

async function reachable(lms: LmStudio): Promise<boolean> {
  try {
    await lms.listLoaded();
    return true;
  } catch {
    return false;
  }
}

function sameConfig(a: SearchConfig | undefined, b: SearchConfig): boolean {
  return a !== undefined && a.declared === b.declared && a.minContext === b.minContext &&
    a.precision === b.precision && a.reserve === b.reserve && a.maxContext === b.maxContext;
}

function resultOf(record: ModelRecord, probe: LmStudioProbe): TestResult {
  return {
    id: record.id,
    declaredContext: record.declaredContext,
    loadableContext: record.loadableContext,
    workingContext: record.workingContext,
    reductionPercent: reductionPercent(record.declaredContext, record.workingContext),
    status: record.status,
    loads: probe.loads,
    promptTokens: probe.promptTokens,
    error: record.error,
  };
}

/** Wraps a probe so that each operation is announced before it runs. */
function announcing(probe: Probe, id: string, onEvent: TestOptions["onEvent"]): Probe {
  if (!onEvent) return probe;
  return {
    load(context) {
      onEvent({ type: "attempt-start", id, action: "load", context });
      return probe.load(context);
    },
    sanity() {
      onEvent({ type: "attempt-start", id, action: "sanity", context: 0 });
      return probe.sanity();
    },
    needle(promptTokens, opts) {
      onEvent({ type: "attempt-start", id, action: "needle", context: 0, promptTokens });
      return probe.needle(promptTokens, opts);
    },
    unload() {
      return probe.unload();
    },
  };
}

/** Orders ids by code point, the same everywhere (no locale). */
function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function sortedRecords(registry: Registry): ModelRecord[] {
  return Object.values(registry.models).sort((a, b) => compareIds(a.id, b.id));
}

/** Picks the models a test run covers, in the order it tests them. */
function chooseModels(
  registry: Registry,
  queries: string[] | "all",
  force: boolean,
): ModelRecord[] {
  if (queries === "all") {
    return Object.values(registry.models)
      .filter((r) => r.type === "llm" && r.status !== "missing" && (force || r.status !== "tested"))
      .sort((a, b) => a.sizeBytes - b.sizeBytes || compareIds(a.id, b.id));
  }
  const chosen: ModelRecord[] = [];
  for (const query of queries) {
    const record = findModel(registry, query);
    if (record.type === "embedding") {
      throw new UsageError(
        `"${record.id}" is an embedding model; only LLMs have a context to test`,
        {
          hint: 'pick an LLM from "lmstrix list"',
        },
      );
    }
    if (record.status === "missing") {
      throw new UsageError(`"${record.id}" is no longer in LM Studio`, {
        hint: 'run "lmstrix scan" to refresh the registry',
      });
    }
    if (!chosen.includes(record)) chosen.push(record);
  }
  return chosen;
}
