/**
 * What a test run reports: the events it sends as it goes, and each model's result.
 *
 * @module
 */

import type { AttemptLogEntry } from "../registry/attempt_log.ts";
import type { ModelStatus } from "../registry/model_record.ts";
import type { Attempt } from "../search/context_search.ts";
import type { SkippedModel } from "./choose_models.ts";

export type { SkippedModel };

/** What happens during a test run, as it happens. */
export type TestEvent =
  /** The models a run is about to test, in order, with their file sizes (to estimate time). */
  | { type: "run-start"; models: { id: string; sizeBytes: number }[] }
  /**
   * What the run covers besides the models it tests, sent before testing starts: the models that
   * keep the numbers of an earlier test (no `force`), and those it leaves out and why.
   */
  | { type: "selected"; kept: TestResult[]; skipped: SkippedModel[] }
  | { type: "model-start"; id: string; index: number; total: number; resumed: boolean }
  | {
    type: "attempt-start";
    id: string;
    action: Attempt["action"];
    /** The context asked for: for a needle or a sanity check, the context loaded. */
    context: number;
    promptTokens?: number;
  }
  /** An attempt ended; `entry` is the line just written to the model's attempt log. */
  | { type: "attempt"; id: string; entry: AttemptLogEntry }
  | { type: "model-done"; result: TestResult }
  | { type: "warning"; message: string };

/** One model's outcome, as in `test --json`. */
export interface TestResult {
  id: string;
  declaredContext: number;
  loadableContext: number | null;
  workingContext: number | null;
  reductionPercent: number | null;
  status: ModelStatus;
  loads: number;
  promptTokens: number;
  error: string | null;
  /** True for a model tested before and not tested again: its numbers as kept. */
  kept: boolean;
}

/** What a test run did: the models it tested, and those it left out and why. */
export interface TestRun {
  /** The models tested by this run, in order. */
  results: TestResult[];
  /** The models that keep the numbers of an earlier test, marked `kept`. */
  kept: TestResult[];
  skipped: SkippedModel[];
}

/** One model's outcome with the attempts this run made for it, oldest first. */
export interface TestReport {
  result: TestResult;
  attempts: AttemptLogEntry[];
}

/** The library's answer to `LMStrix.testContextLimits`. */
export interface ContextLimits {
  id: string;
  declared: number;
  loadable: number | null;
  working: number | null;
  reductionPercent: number | null;
  /** `tested`, or `failed` when the model could not be tested. */
  status: ModelStatus;
  /** Why the test failed, or null. */
  error: string | null;
  /** The attempts of this run, as written to the model's attempt log, oldest first. */
  attempts: AttemptLogEntry[];
}

/** How much smaller the working context is than the declared one, in percent (one decimal). */
export function reductionPercent(declared: number, working: number | null): number | null {
  if (working === null || declared <= 0) return null;
  return Math.round((1 - working / declared) * 1000) / 10;
}
