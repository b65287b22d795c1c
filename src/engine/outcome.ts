/**
 * What a model's record becomes as its test goes: when it starts, when the search ends, when it
 * fails; and the result a run reports for it. Pure: each function returns a new record.
 *
 * @module
 */

import type { AttemptLogEntry } from "../registry/attempt_log.ts";
import type { ModelRecord } from "../registry/model_record.ts";
import type { ModelCosts } from "../registry/model_record.ts";
import {
  type Attempt,
  describePlan,
  type MeasuredCosts,
  type SearchConfig,
  type SearchPlan,
} from "../search/context_search.ts";
import { reductionPercent, type TestResult } from "./test_events.ts";

/** The limits a search found, with what it measured of the model's costs on the way. */
export interface FoundLimits {
  loadable: number | null;
  working: number | null;
  /** What the search measured; absent for searches that do not measure. */
  costs?: MeasuredCosts;
  /** The plan it chose from them. */
  plan?: SearchPlan;
  /** LM Studio's text for the latest refused load: the reason when nothing loads. */
  lastRefusal?: string | null;
  /** Why the search gave up without limits (loads not repeatable, too many requests). */
  failure?: string | null;
}

/** The record's view of the costs a search measured, with its plan in one sentence. */
export function costsOf(costs: MeasuredCosts, plan: SearchPlan): ModelCosts {
  const mean = (total: number, n: number) => n > 0 ? Math.round(total / n * 100) / 100 : null;
  return {
    loadSeconds: mean(costs.loadSeconds, costs.loads),
    refusalSeconds: mean(costs.refusalSeconds, costs.refusals),
    checkSeconds: mean(costs.checkSeconds ?? 0, costs.checks ?? 0),
    prefillTokensPerSec: costs.prefillTokensPerSec,
    prefillMeasuredAt: costs.prefillMeasuredAt,
    promptCache: costs.promptCache,
    prefillCurve: costs.prefillCurve ?? null,
    plan: describePlan(plan),
  };
}

/** The record while its test runs: `testing`, no error, the precision in use. */
export function recordStarting(record: ModelRecord, config: SearchConfig): ModelRecord {
  return { ...record, status: "testing", error: null, precision: config.precision };
}

/**
 * The record after a finished search: its limits, `tested` (or `failed` with the reason when
 * nothing at or above the smallest size loaded or answered), no saved search, and `cappedAt` when
 * the loadable limit is only the `--max-context` cap, so that it reads "at least this".
 */
export function recordAfterSearch(
  record: ModelRecord,
  found: FoundLimits,
  config: SearchConfig,
  testedAt: string,
): ModelRecord {
  const { search: _search, cappedAt: _cappedAt, retestPending: _pending, ...rest } = record;
  const next: ModelRecord = {
    ...rest,
    loadableContext: found.loadable,
    workingContext: found.working,
    testedAt,
    status: "tested",
    error: null,
  };
  const cap = config.maxContext;
  if (cap !== undefined && cap < config.declared && found.loadable === cap) next.cappedAt = cap;
  if (found.costs !== undefined && found.plan !== undefined) {
    next.costs = costsOf(found.costs, found.plan);
  }
  if (found.failure) {
    next.status = "failed";
    next.error = found.failure;
  } else if (found.loadable === null) {
    next.status = "failed";
    // LM Studio's own words say why (a missing runtime, a broken file, too little memory).
    const reason = found.lastRefusal ? `: ${found.lastRefusal}` : "";
    next.error = `It did not load at ${config.minContext} tokens or more${reason}`;
  } else if (found.working === null) {
    next.status = "failed";
    next.error = `No context of ${config.minContext} tokens or more answered the needle probe`;
  }
  return next;
}

/**
 * The record after a run stopped during its test (an interrupt, a closed pipe, LM Studio gone):
 * no longer `testing` (nothing is testing it now), back to the status it had before (`untested`
 * for one never tested), keeping `search` (the point after the last finished attempt) so that
 * the next run resumes there.
 */
export function recordStopped(record: ModelRecord, before: ModelRecord): ModelRecord {
  const had = before.status === "tested" || before.status === "failed";
  return {
    ...record,
    status: had ? before.status : "untested",
    error: before.status === "failed" ? before.error : null,
  };
}

/**
 * The record after a fault ended its test: `failed` with `message`, keeping `search` (the point
 * after the last finished attempt) so that a later run resumes there.
 */
export function recordAfterFault(record: ModelRecord, message: string): ModelRecord {
  const { retestPending: _pending, ...rest } = record;
  return { ...rest, status: "failed", error: message };
}

/**
 * What a run reports for `record`, with the loads and prompt tokens it spent on it; `kept` for a
 * model tested before whose numbers the run keeps.
 */
export function resultOf(
  record: ModelRecord,
  spent: { loads: number; promptTokens: number },
  kept = false,
): TestResult {
  return {
    id: record.id,
    declaredContext: record.declaredContext,
    loadableContext: record.loadableContext,
    workingContext: record.workingContext,
    reductionPercent: reductionPercent(record.declaredContext, record.workingContext),
    status: record.status,
    loads: spent.loads,
    promptTokens: spent.promptTokens,
    error: record.error,
    kept,
  };
}

/** What the probe measured of the operation behind an attempt. */
export interface OperationFacts {
  durationMs: number;
  retries: number;
  promptTokens?: number;
  expected?: string;
  error?: string;
}

/** The attempt-log line of `attempt` of model `id`, ended at `time`. */
export function attemptEntry(
  id: string,
  attempt: Attempt,
  operation: OperationFacts,
  time: string,
): AttemptLogEntry {
  return {
    time,
    model: id,
    phase: attempt.phase,
    action: attempt.action,
    askedContext: attempt.context,
    actualContext: attempt.actual ?? null,
    promptTokens: attempt.promptTokens ?? operation.promptTokens ?? null,
    outcome: attempt.outcome,
    output: attempt.excerpt ?? null,
    durationMs: operation.durationMs,
    retries: operation.retries,
    error: operation.error ?? null,
    ...(attempt.decision === undefined ? {} : { decision: attempt.decision }),
    ...(attempt.action === "needle" ? { expected: operation.expected ?? null } : {}),
  };
}
