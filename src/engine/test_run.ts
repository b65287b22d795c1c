/**
 * A test run against LM Studio: clears what earlier runs left loaded, then tests each chosen
 * model in turn, journaling every step so that any stop resumes from the last finished attempt.
 *
 * Loaded by the façade only when a test runs (it pulls in the search and the probe), so that the
 * commands that only read the registry start fast.
 *
 * @module
 */

import { InterruptedError } from "../errors.ts";
import { fnv1a32 } from "../ids.ts";
import { INSTANCE_PREFIX, type LmStudio } from "../lmstudio/client.ts";
import { classifyFailure, LmStudioCallError } from "../lmstudio/failures.ts";
import { LmStudioProbe } from "../probe/lmstudio_probe.ts";
import type { AttemptLogEntry } from "../registry/attempt_log.ts";
import type { ModelRecord } from "../registry/model_record.ts";
import { type Probe, searchContextLimits, type SearchHooks } from "../search/context_search.ts";
import type { Journal } from "./journal.ts";
import {
  attemptEntry,
  recordAfterFault,
  recordAfterSearch,
  recordStarting,
  resultOf,
} from "./outcome.ts";
import { type ResumePoint, resumePoint, type SavedSearch, savedSearch } from "./resume.ts";
import type { TestEvent, TestReport } from "./test_events.ts";
import { searchConfigFor, type TestOptions } from "./test_options.ts";

/** What a run needs besides the models: the server, the journal, the options and the retries. */
export interface RunContext {
  lms: LmStudio;
  journal: Journal;
  options: TestOptions;
  /** First backoff delay after a fault, in ms (the probe's default when undefined). */
  backoffMs: number | undefined;
  /** Retries of a fault (the probe's default when undefined). */
  retries: number | undefined;
}

/**
 * Tests `models` in turn. Goes on to the next model when one cannot be tested; stops at once
 * (after unloading and saving) on an interrupt or when LM Studio is gone.
 */
export async function runTests(context: RunContext, models: ModelRecord[]): Promise<TestReport[]> {
  const { options } = context;
  await clearLeftovers(context.lms, options.onEvent);
  const reports: TestReport[] = [];
  for (const [index, record] of models.entries()) {
    stopIfInterrupted(options.signal);
    const report = await testModel(context, record, { index, total: models.length });
    reports.push(report);
    options.onEvent?.({ type: "model-done", result: report.result });
  }
  return reports;
}

/** Throws {@link InterruptedError} once `signal` has fired. */
export function stopIfInterrupted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new InterruptedError(String(signal.reason ?? "SIGINT"));
}

/** Unloads instances an earlier crashed run left; warns about models the user loaded. */
async function clearLeftovers(lms: LmStudio, onEvent: TestOptions["onEvent"]): Promise<void> {
  for (const instance of await lms.listLoaded()) {
    if (instance.identifier.startsWith(INSTANCE_PREFIX)) {
      await lms.unload(instance.identifier);
      onEvent?.({
        type: "warning",
        message: `Unloaded "${instance.identifier}" (${instance.modelKey}), ` +
          "left loaded by an earlier LMStrix run",
      });
    } else {
      onEvent?.({
        type: "warning",
        message: `"${instance.modelKey}" is loaded (not by LMStrix) and takes memory ` +
          "the test could otherwise use",
      });
    }
  }
}

/** One model's test, from its resume point to its stored result. */
async function testModel(
  context: RunContext,
  record: ModelRecord,
  position: { index: number; total: number },
): Promise<TestReport> {
  const { journal, options } = context;
  const config = searchConfigFor(record, options);
  const start = resumePoint(record, config, options.force ?? false);
  announceStart(record, start, position, options.onEvent);
  const probe = probeFor(context, record.id, start);
  const attempts: AttemptLogEntry[] = [];
  let current: ModelRecord = {
    ...recordStarting(record, config),
    search: savedSearch(start.state, config, probe.seed),
  };
  await journal.put(current);
  /** The saved search after the last finished attempt (with its haystack seed). */
  let settled = current.search as SavedSearch;
  const hooks: SearchHooks = {
    beforeLoad: async (_context, next) => {
      current = { ...current, search: savedSearch(next, config, probe.seed) };
      await journal.put(current);
    },
    afterAttempt: async (attempt, next) => {
      settled = savedSearch(next, config, probe.seed);
      current = { ...current, search: settled };
      await journal.put(current);
      const entry = attemptEntry(record.id, attempt, probe.last, new Date().toISOString());
      attempts.push(entry);
      await journal.log(entry);
      options.onEvent?.({ type: "attempt", id: record.id, entry });
    },
  };
  try {
    const announced = announcing(probe, record.id, options.onEvent);
    const found = await searchContextLimits(config, announced, { state: start.state, hooks });
    current = recordAfterSearch(current, found, config, new Date().toISOString());
    await journal.put(current);
  } catch (error) {
    await probe.release();
    // Resume from the last finished attempt: the one cut short is repeated, and a load in
    // flight neither counts as failed (an interrupt or a fault is not a crash) nor as spent.
    current = { ...current, search: settled };
    current = await afterFault(context, current, error);
  }
  return { result: resultOf(current, probe), attempts };
}

/**
 * Stores `record` after `error` ended its test and decides how the run goes on: an interrupt,
 * a server that is gone, or an error that is not LM Studio's rethrows (progress saved); a call
 * that LM Studio failed marks the model `failed` and the run goes on.
 */
async function afterFault(
  context: RunContext,
  record: ModelRecord,
  error: unknown,
): Promise<ModelRecord> {
  const { journal, options, lms } = context;
  if (options.signal?.aborted) {
    await journal.put(record);
    throw new InterruptedError(String(options.signal.reason ?? "SIGINT"));
  }
  const kind = classifyFailure(error);
  const gone = kind === "unreachable" || (kind === "connection-lost" && !(await reachable(lms)));
  if (gone || !(error instanceof LmStudioCallError)) {
    await journal.put(record);
    throw error;
  }
  const failed = recordAfterFault(record, error.message);
  await journal.put(failed);
  return failed;
}

function announceStart(
  record: ModelRecord,
  start: ResumePoint,
  position: { index: number; total: number },
  onEvent: TestOptions["onEvent"],
): void {
  if (start.resumed && start.state.pendingLoad !== undefined) {
    onEvent?.({
      type: "warning",
      message: `The last run stopped while loading "${record.id}" at ${start.state.pendingLoad} ` +
        "tokens (the machine may have frozen); that size now counts as failed",
    });
  }
  onEvent?.({ type: "model-start", id: record.id, ...position, resumed: start.resumed });
}

function probeFor(context: RunContext, id: string, start: ResumePoint): LmStudioProbe {
  const { options, backoffMs, retries } = context;
  return new LmStudioProbe(context.lms, id, {
    // A resumed search goes on with the haystack it was using, so that its prompts, and the
    // answers of a model whose recall is noisy, are those of a run that was never stopped.
    seed: start.seed ?? fnv1a32(id),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(backoffMs !== undefined ? { backoffMs } : {}),
    ...(retries !== undefined ? { retries } : {}),
    onRetry: (what, error, attempt) =>
      options.onEvent?.({
        type: "warning",
        message: `${id}: ${what} failed (${error.message}); retry ${attempt}`,
      }),
  });
}

async function reachable(lms: LmStudio): Promise<boolean> {
  try {
    await lms.listLoaded();
    return true;
  } catch {
    return false;
  }
}

/** Wraps a probe so that each operation is announced before it runs. */
function announcing(probe: Probe, id: string, onEvent: TestOptions["onEvent"]): Probe {
  if (!onEvent) return probe;
  const announce = (event: Omit<Extract<TestEvent, { type: "attempt-start" }>, "type" | "id">) =>
    onEvent({ type: "attempt-start", id, ...event });
  return {
    load(context) {
      announce({ action: "load", context });
      return probe.load(context);
    },
    sanity() {
      announce({ action: "sanity", context: 0 });
      return probe.sanity();
    },
    needle(promptTokens, opts) {
      announce({ action: "needle", context: 0, promptTokens });
      return probe.needle(promptTokens, opts);
    },
    unload() {
      return probe.unload();
    },
  };
}
