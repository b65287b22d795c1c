/**
 * The options of a test run, their checks, and the search configuration they give for one model.
 * Pure: no Deno, no SDK.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import { RESERVE_TOKENS } from "../contract.ts";
import type { ModelRecord } from "../registry/model_record.ts";
import type { SearchConfig } from "../search/context_search.ts";
import { worksAtLimitShare } from "../search/shelf_share.ts";
import type { TestEvent } from "./test_events.ts";

export { RESERVE_TOKENS };

/** Smallest context tested unless `--min-context` says otherwise. */
export const DEFAULT_MIN_CONTEXT = 2048;

/**
 * The smallest context a needle probe can test: its prompt holds the filler, the needle and the
 * question, and leaves the reserve for the answer. Also the smallest `--min-context`, and a model
 * that declares less cannot be tested.
 */
export const MIN_TESTABLE_CONTEXT = 256;

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
   * token); default `LMSTRIX_TIMEOUT`, else the client's defaults. A call that passes it is
   * retried, then counts as an error of that attempt, never as a limit.
   */
  timeoutSeconds?: number | undefined;
  /** Test again models already tested (and, with "all", failed ones). */
  force?: boolean | undefined;
  /** With "all", test again models whose test failed (their file unchanged). */
  retryFailed?: boolean | undefined;
  /** Aborts the run (a signal): unload, save, throw `InterruptedError`. */
  signal?: AbortSignal | undefined;
  /** Progress events, for the CLI's live lines. */
  onEvent?: ((event: TestEvent) => void) | undefined;
}

/** The precision the contract uses when none is given. */
export function defaultPrecision(declared: number): number {
  return Math.max(256, Math.ceil(declared / 100));
}

/** Throws {@link UsageError} for options no run could use; checked before anything is touched. */
export function validateTestOptions(options: TestOptions): void {
  const counts = [
    ["--precision", options.precision],
    ["--min-context", options.minContext],
    ["--max-context", options.maxContext],
  ] as const;
  for (const [name, value] of counts) {
    if (value !== undefined && (!Number.isSafeInteger(value) || value <= 0)) {
      throw new UsageError(`${name} must be a positive whole number of tokens, not "${value}"`);
    }
  }
  const { minContext, maxContext, timeoutSeconds } = options;
  const bounds = [["--min-context", minContext], ["--max-context", maxContext]] as const;
  for (const [name, value] of bounds) {
    if (value !== undefined && value < MIN_TESTABLE_CONTEXT) {
      throw new UsageError(
        `${name} must be at least ${MIN_TESTABLE_CONTEXT} tokens, not ${value}: the needle ` +
          `probe's prompt needs room for its question and a ${RESERVE_TOKENS}-token answer`,
        { hint: `pass ${name} ${MIN_TESTABLE_CONTEXT} or more` },
      );
    }
  }
  if (minContext !== undefined && maxContext !== undefined && minContext > maxContext) {
    throw new UsageError(`--min-context (${minContext}) is above --max-context (${maxContext})`, {
      hint: "lower --min-context or raise --max-context",
    });
  }
  if (timeoutSeconds !== undefined && !(Number.isFinite(timeoutSeconds) && timeoutSeconds > 0)) {
    throw new UsageError(`--timeout must be a positive number of seconds, not "${timeoutSeconds}"`);
  }
}

/**
 * Why `record` cannot be tested at all (its declared context has no room for a needle probe),
 * or null. Such a model is `failed` with this reason and the run goes on.
 */
export function untestableReason(record: ModelRecord): string | null {
  if (record.declaredContext >= MIN_TESTABLE_CONTEXT) return null;
  return `It declares a context of ${record.declaredContext} tokens, too small for a needle ` +
    `probe (at least ${MIN_TESTABLE_CONTEXT})` +
    (record.listingProblem ? `; ${record.listingProblem}` : "");
}

/** The search configuration of one model under `options`. */
export function searchConfigFor(record: ModelRecord, options: TestOptions): SearchConfig {
  return {
    declared: record.declaredContext,
    minContext: Math.min(options.minContext ?? DEFAULT_MIN_CONTEXT, record.declaredContext),
    precision: options.precision ?? defaultPrecision(record.declaredContext),
    reserve: RESERVE_TOKENS,
    ...(options.maxContext !== undefined ? { maxContext: options.maxContext } : {}),
  };
}

/** Whether two configurations ask for the same search (a saved one can then be resumed). */
export function sameConfig(a: SearchConfig | undefined, b: SearchConfig): boolean {
  return a !== undefined && a.declared === b.declared && a.minContext === b.minContext &&
    a.precision === b.precision && a.reserve === b.reserve && a.maxContext === b.maxContext;
}

/**
 * `config` with the shelf's share of models that work at their limit (`shelf_share.ts`), from
 * the tested models of `records` other than `record`; a search resumed under the same settings
 * keeps the share it started with, so that it decides as it would have without the stop.
 */
export function withShelfShare(
  config: SearchConfig,
  record: ModelRecord,
  records: readonly ModelRecord[],
): SearchConfig {
  const saved = (record.search as { config?: SearchConfig } | undefined)?.config;
  const kept = saved?.worksAtLimit;
  if (sameConfig(saved, config) && typeof kept === "number" && kept >= 0 && kept <= 1) {
    return { ...config, worksAtLimit: kept };
  }
  const tested = records.filter((r) => r.id !== record.id && r.status === "tested").map((r) => ({
    declared: r.declaredContext,
    loadable: r.loadableContext,
    working: r.workingContext,
    precision: r.precision ?? defaultPrecision(r.declaredContext),
    ...(r.cappedAt !== undefined ? { cappedAt: r.cappedAt } : {}),
  }));
  return { ...config, worksAtLimit: worksAtLimitShare(tested).share };
}
