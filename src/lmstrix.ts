/**
 * The LMStrix engine's façade: scanning, testing and reading the registry, shared by the CLI and
 * the library (`mod.ts`).
 *
 * Everything with a side effect (the LM Studio connection, the clock, the paths) is resolved here
 * from options with production defaults, so tests drive the same code against the emulator. The
 * work itself lives in `engine/`: option checks, the choice of models, the resume point, the
 * record after a result, the journal and the run loop. Commands that only read the registry
 * (`list`, `status`, `show`) never load the SDK, the search or the probe.
 *
 * @module
 */

import type { ApplyOptions } from "./apply/apply.ts";
import type { ApplyEntry } from "./apply/step.ts";
import { InterruptedError, UsageError } from "./errors.ts";
import { chooseModels, sortedRecords } from "./engine/choose_models.ts";
import { type ConnectSettings, withLmStudio } from "./engine/connection.ts";
import { type BootMark, bootMark } from "./engine/boot_time.ts";
import { Journal } from "./engine/journal.ts";
import { resultOf } from "./engine/outcome.ts";
import type {
  ContextLimits,
  SkippedModel,
  TestEvent,
  TestReport,
  TestResult,
  TestRun,
} from "./engine/test_events.ts";
import { type TestOptions, validateTestOptions } from "./engine/test_options.ts";
import type { ContextCheck } from "./engine/check_one.ts";
import type { RunRequest, RunResult } from "./engine/run_prompt.ts";
import { timeoutsFromSeconds } from "./lmstudio/client.ts";
import type { Timeouts } from "./lmstudio/client.ts";
import { fnv1a32 } from "./ids.ts";
import type { ModelHistory, ScanResult, StatusReport } from "./lmstrix_results.ts";
import { type CLI_WORDING, guardLibrary } from "./library_guard.ts";
import { type LmstrixPaths, lmstrixPaths, resolveCheckedLmstudioDir } from "./paths.ts";
import { requirePermissions, serverHost } from "./permissions.ts";
import { appendAttempt, logFileToShow, readAttempts } from "./registry/attempt_log.ts";
import { acquireLock, type Lock, readLockHolder } from "./registry/lock.ts";
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
  statusCounts,
} from "./registry/registry.ts";
import { upsertScanned } from "./registry/scan_merge.ts";

export { InterruptedError };
export type { ModelHistory, ScanResult, StatusReport } from "./lmstrix_results.ts";
export { RESERVE_TOKENS } from "./contract.ts";
export { DEFAULT_MIN_CONTEXT, defaultPrecision, type TestOptions } from "./engine/test_options.ts";
export {
  type ContextLimits,
  reductionPercent,
  type SkippedModel,
  type TestEvent,
  type TestResult,
  type TestRun,
} from "./engine/test_events.ts";
export type { AttemptLogEntry } from "./registry/attempt_log.ts";
export type { CheckLoad, CheckVerdict, ContextCheck } from "./engine/check_one.ts";
export {
  PromptTooLongError,
  RunLoadError,
  type RunRequest,
  type RunResult,
} from "./engine/run_prompt.ts";

/** The longest base deadline of a call to LM Studio, in seconds: a day. */
const MAX_TIMEOUT_SECONDS = 86_400;

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
  /** Set by the command line: error hints then name its flags, not these options. */
  [CLI_WORDING]?: boolean;
  /** Reads the environment (default `Deno.env.get`). */
  env?: (name: string) => string | undefined;
  /** First backoff delay after a dropped connection, in ms; default `LMSTRIX_BACKOFF_MS`, else 1000. */
  backoffMs?: number;
  /** Retries of a dropped connection or a hung call (default 3). */
  retries?: number;
  /** The machine's current boot (default: read from the system; see `boot_time.ts`). */
  bootTime?: () => BootMark | undefined;
}

/** Options of {@linkcode LMStrix.checkContext}. */
export interface CheckOptions {
  /** Stops the check (unloading what it loaded); it then throws {@linkcode InterruptedError}. */
  signal?: AbortSignal | undefined;
  /** Base deadline of each call to LM Studio, in seconds (else `LMSTRIX_TIMEOUT`). */
  timeoutSeconds?: number | undefined;
  /** Told of the load and the probe as they start and end (progress). */
  onEvent?: ((event: TestEvent) => void) | undefined;
}

/** The LMStrix engine. */
export class LMStrix {
  readonly #options: LMStrixOptions;
  #paths: LmstrixPaths | undefined;
  #quarantined: { id: string; problem: string }[] = [];
  #envChecked = false;

  /** Creates the engine; nothing is read until a method needs it (see `library_guard.ts`). */
  constructor(options: LMStrixOptions = {}) {
    this.#options = options;
    return guardLibrary(this, options);
  }

  #env(name: string): string | undefined {
    if (this.#options.env !== undefined) return this.#options.env(name);
    if (!this.#envChecked) requirePermissions([{ name: "env" }]);
    this.#envChecked = true;
    return Deno.env.get(name);
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

  /** How to reach LM Studio, with the engine's deadlines overridden by `timeouts`. */
  #connectSettings(timeouts: Partial<Timeouts> = {}): ConnectSettings {
    return {
      server: this.#options.server ?? this.#env("LMSTRIX_SERVER"),
      discoveryPorts: this.#options.discoveryPorts,
      timeouts: { ...this.#options.timeouts, ...timeouts },
    };
  }

  /** The deadlines of calls: `timeoutSeconds`, else `LMSTRIX_TIMEOUT`, else the defaults. */
  #testTimeouts(timeoutSeconds: number | undefined): Partial<Timeouts> {
    const seconds = timeoutSeconds ??
      this.#envNumber("LMSTRIX_TIMEOUT", "a positive number of seconds");
    // Timers past 2^31 ms fire at once; a call that takes more than a day is not coming back.
    if (seconds !== undefined && seconds > MAX_TIMEOUT_SECONDS) {
      throw new UsageError(
        `The timeout of ${seconds} seconds is more than a day (${MAX_TIMEOUT_SECONDS} seconds)`,
        { hint: "pass a shorter --timeout or LMSTRIX_TIMEOUT" },
      );
    }
    return seconds === undefined ? {} : timeoutsFromSeconds(seconds);
  }

  /** The files LMStrix uses; checks first that it may read them (and the environment). */
  get paths(): LmstrixPaths {
    if (this.#paths === undefined) {
      const dir = resolveCheckedLmstudioDir({
        flag: this.#options.lmstudioDir,
        env: (n) => this.#env(n),
        beforeCheck: (found) => requirePermissions([{ name: "read", path: found }]),
      });
      this.#paths = lmstrixPaths(dir);
    }
    return this.#paths;
  }

  /** Checks, before anything is touched, that a writer may write and reach LM Studio. */
  #requireWriter(settings?: ConnectSettings): void {
    requirePermissions([
      { name: "write", path: this.paths.lmstudioDir },
      ...(settings === undefined
        ? []
        : [{ name: "net" as const, host: serverHost(settings.server) }]),
    ]);
  }

  async #withLock<T>(work: () => Promise<T>): Promise<T> {
    this.#requireWriter();
    const lock: Lock = await acquireLock(this.paths);
    try {
      return await work();
    } finally {
      await lock.release();
    }
  }

  /** Reads the registry (never writes it). */
  async #read(): Promise<Registry> {
    const registry = await loadRegistry(this.paths);
    this.#noteQuarantine(registry);
    return registry;
  }

  #noteQuarantine(registry: Registry): void {
    this.#quarantined = Object.entries(registry.quarantined ?? {}).map(([id, q]) => ({
      id,
      problem: q.problem,
    }));
  }

  /**
   * The damaged records the last read of the registry left out (each is kept in the file as it
   * is until a scan that finds the model replaces it), for a warning.
   */
  get quarantined(): readonly { id: string; problem: string }[] {
    return this.#quarantined;
  }

  /**
   * Discovers models in LM Studio and merges them into the registry. `timeoutSeconds` (else
   * `LMSTRIX_TIMEOUT`) bounds each call, as for a test run.
   */
  scan(options: { timeoutSeconds?: number | undefined } = {}): Promise<ScanResult> {
    const timeouts = this.#testTimeouts(options.timeoutSeconds);
    this.#requireWriter(this.#connectSettings(timeouts));
    return this.#withLock(async () => {
      const registry = await this.#read();
      return await withLmStudio(this.#connectSettings(timeouts), async (lms) => {
        const merge = upsertScanned(registry, await lms.listModels());
        this.#noteQuarantine(registry); // A model the scan found replaced its damaged record.
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

  /** One model's stored record and its attempt log, by id or a unique part of one. */
  async history(query: string): Promise<ModelHistory> {
    const record = findModel(await this.#read(), query);
    return {
      record,
      attempts: await readAttempts(this.paths, record.id),
      logFile: await logFileToShow(this.paths, record.id),
    };
  }

  /**
   * The report: one self-contained HTML page (no script, no request) with every model's numbers
   * on one axis and, for each model with attempts, the probes its numbers rest on. Reads the
   * registry and the attempt logs; needs neither LM Studio nor the lock.
   */
  async report(options: { now?: Date } = {}): Promise<string> {
    const { buildReport } = await import("./report/report.ts");
    return await buildReport(this.paths, await this.records(), options.now ?? new Date());
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
   * Writes the working context (less `margin`) of each model `queries` names, or of every model
   * with `"all"`, as `llm.load.contextLength` into LM Studio's per-model default config, keeping
   * what was there for `undo`; with `undo` puts it back. Returns one entry per model, as in
   * `apply --json`. LM Studio need not be running.
   */
  async applyContextLimits(
    queries: string[] | "all",
    options: ApplyOptions = {},
  ): Promise<ApplyEntry[]> {
    // Loaded only here: the JSON tree parser it needs is of no use to the other commands.
    const { applyContextLimits, ApplyInterrupted } = await import("./apply/apply.ts");
    try {
      return await applyContextLimits(this.paths, queries, options);
    } catch (error) {
      if (error instanceof ApplyInterrupted) {
        throw new InterruptedError(String(options.signal?.reason ?? "SIGINT"));
      }
      throw error;
    }
  }

  /**
   * Checks one size without a search: loads the model at `context` (LM Studio refuses, fits it
   * down, or loads it), and when it loads, asks one needle probe that fills `context`. The two
   * attempts go to the model's attempt log as evidence; the registry's limits are not changed, and
   * the answer says when it contradicts them. Unloads what it loaded, also when interrupted.
   */
  async checkContext(
    query: string,
    context: number,
    options: CheckOptions = {},
  ): Promise<ContextCheck> {
    const { checkOne, checkableSize } = await import("./engine/check_one.ts");
    checkableSize(context);
    const settings = this.#connectSettings(this.#testTimeouts(options.timeoutSeconds));
    const backoffMs = this.#options.backoffMs ??
      this.#envNumber("LMSTRIX_BACKOFF_MS", "a number of milliseconds", true);
    this.#requireWriter(settings);
    return await this.#withLock(async () => {
      const record = findModel(await this.#read(), query);
      if (record.type === "embedding" || record.status === "missing") {
        throw new UsageError(
          record.status === "missing"
            ? `"${record.id}" is missing from LM Studio (since the last scan)`
            : `"${record.id}" is an embedding model: it has no context to check`,
        );
      }
      const { stopIfInterrupted } = await import("./engine/test_run.ts");
      stopIfInterrupted(options.signal);
      return await withLmStudio(settings, async (lms) => {
        try {
          return await checkOne(
            {
              lms,
              log: (entry) => appendAttempt(this.paths, entry.model, entry),
              home: fnv1a32(this.paths.registry).toString(36),
              signal: options.signal,
              backoffMs,
              retries: this.#options.retries,
              onEvent: options.onEvent,
            },
            record,
            context,
          );
        } catch (error) {
          // Whatever an interrupt cut short (the load, the probe) ends the check as an interrupt.
          stopIfInterrupted(options.signal);
          throw error;
        }
      });
    });
  }

  /**
   * Runs one prompt on a tested model: loads it at its working context, counts the prompt with
   * its tokenizer, completes it (streaming to `request.onText`) and unloads it, also when
   * interrupted. An untested model, or a prompt longer than the working context leaves room for
   * ({@linkcode PromptTooLongError}, naming the tested models it would fit), is a usage error.
   */
  async run(query: string, request: RunRequest): Promise<RunResult> {
    const settings = this.#connectSettings(this.#testTimeouts(undefined));
    requirePermissions([{ name: "net", host: serverHost(settings.server) }]);
    const registry = await this.#read();
    const record = findModel(registry, query);
    const { runContextOf, runPrompt } = await import("./engine/run_prompt.ts");
    runContextOf(record); // untested: said before anything is loaded
    const { stopIfInterrupted } = await import("./engine/test_run.ts");
    return await withLmStudio(settings, async (lms) => {
      try {
        return await runPrompt(lms, record, sortedRecords(registry), request);
      } catch (error) {
        stopIfInterrupted(request.signal); // whatever an interrupt cut short ends as one
        throw error;
      }
    });
  }

  /**
   * Finds one model's loadable and working context and stores them, with the attempts it made.
   * A tested model keeps its numbers unless `force` is set (it comes back as stored, with no
   * attempts); a test that was cut short resumes. A model that cannot be tested comes back with
   * `status: "failed"`, null limits and the reason.
   */
  async testContextLimits(query: string, options: TestOptions = {}): Promise<ContextLimits> {
    const { reports, skipped } = await this.#test([query], options);
    const [report] = reports;
    const result = report?.result ??
      (skipped.length > 0 ? resultOf(await this.show(query), { loads: 0, promptTokens: 0 }) : null);
    if (!result) throw new UsageError(`Nothing was tested for "${query}"`);
    return {
      id: result.id,
      declared: result.declaredContext,
      loadable: result.loadableContext,
      working: result.workingContext,
      reductionPercent: result.reductionPercent,
      status: result.status,
      error: result.error,
      attempts: report?.attempts ?? [],
    };
  }

  /**
   * Tests the models named in `queries`, or with `queries` = "all" every LLM present, smallest
   * first, under one rule: a tested model keeps its numbers unless `force`; "all" leaves out
   * models whose test failed unless `retryFailed` or `force`; a test cut short resumes (also a
   * forced run). Goes on to the next model when one cannot be tested; stops at once (after
   * unloading and saving) on an interrupt or when LM Studio is gone.
   */
  async testRun(queries: string[] | "all", options: TestOptions = {}): Promise<TestRun> {
    const { reports, skipped, kept } = await this.#test(queries, options);
    return { results: reports.map((report) => report.result), kept, skipped };
  }

  /** The results of {@link testRun} alone. */
  async test(queries: string[] | "all", options: TestOptions = {}): Promise<TestResult[]> {
    return (await this.testRun(queries, options)).results;
  }

  #test(
    queries: string[] | "all",
    options: TestOptions,
  ): Promise<{ reports: TestReport[]; skipped: SkippedModel[]; kept: TestResult[] }> {
    validateTestOptions(options);
    const settings = this.#connectSettings(this.#testTimeouts(options.timeoutSeconds));
    const backoffMs = this.#options.backoffMs ??
      this.#envNumber("LMSTRIX_BACKOFF_MS", "a number of milliseconds", true);
    const { signal } = options;
    this.#requireWriter(settings);
    return this.#withLock(async () => {
      const registry = await this.#read();
      const { chosen, skipped } = chooseModels(registry, queries, {
        force: options.force ?? false,
        retryFailed: options.retryFailed ?? false,
      });
      // A model that keeps its numbers is reported as kept, before any test starts.
      const kept = skipped.flatMap((s) => {
        const record = s.status === "tested" ? registry.models[s.id] : undefined;
        return record === undefined ? [] : [resultOf(record, { loads: 0, promptTokens: 0 }, true)];
      });
      options.onEvent?.({ type: "selected", kept, skipped });
      if (chosen.length === 0) return { reports: [], skipped, kept };
      // The search and the probe load only when a test runs: `list` and friends start faster.
      const { runTests, stopIfInterrupted } = await import("./engine/test_run.ts");
      stopIfInterrupted(signal);
      const journal = new Journal(this.paths, registry);
      if (options.force && !chosen.some((r) => r.retestPending !== undefined)) {
        // A new forced run: mark what it covers, so that a rerun after a stop resumes it.
        const since = new Date().toISOString();
        for (const record of chosen) record.retestPending = since;
        await journal.save();
      }
      const reports = await withLmStudio(settings, async (lms) => {
        try {
          return await runTests({
            lms,
            journal,
            options,
            backoffMs,
            retries: this.#options.retries,
            home: fnv1a32(this.paths.registry).toString(36),
            bootTime: this.#options.bootTime ?? bootMark,
          }, chosen);
        } catch (error) {
          // Whatever an interrupt cut short (a listing, an unload) ends the run as an interrupt.
          if (!(error instanceof InterruptedError)) stopIfInterrupted(signal);
          throw error;
        }
      });
      return { reports, skipped, kept };
    });
  }
}
