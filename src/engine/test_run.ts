/**
 * A test run against LM Studio: clears what earlier runs left loaded, then tests each chosen
 * model in turn, journaling every step so that any stop resumes from the last finished attempt.
 *
 * Loaded by the façade only when a test runs (it pulls in the search and the probe), so that the
 * commands that only read the registry start fast.
 *
 * @module
 */

import {
  InterruptedError,
  LmstrixError,
  LmStudioNotAnsweringError,
  LmStudioUnreachableError,
} from "../errors.ts";
import { fnv1a32 } from "../ids.ts";
import { INSTANCE_PREFIX, type LmStudio } from "../lmstudio/client.ts";
import { classifyFailure, LmStudioCallError, messageOf } from "../lmstudio/failures.ts";
import { LmStudioProbe, newRunId } from "../probe/lmstudio_probe.ts";
import type { AttemptLogEntry, RunStartEntry } from "../registry/attempt_log.ts";
import type { ModelRecord } from "../registry/model_record.ts";
import {
  type Probe,
  type SearchConfig,
  searchContextLimits,
  type SearchHooks,
  type SearchState,
} from "../search/context_search.ts";
import type { BootMark } from "./boot_time.ts";
import { unreachableReason } from "./connection.ts";
import type { Journal } from "./journal.ts";
import {
  attemptEntry,
  recordAfterFault,
  recordAfterSearch,
  recordStarting,
  recordStopped,
  resultOf,
} from "./outcome.ts";
import { type CrashEvidence, type ResumePoint, resumePoint, savedSearch } from "./resume.ts";
import type { TestEvent, TestReport } from "./test_events.ts";
import {
  searchConfigFor,
  type TestOptions,
  untestableReason,
  withShelfShare,
} from "./test_options.ts";

/** What a run needs besides the models: the server, the journal, the options and the retries. */
export interface RunContext {
  lms: LmStudio;
  journal: Journal;
  options: TestOptions;
  /**
   * Marks the instances of this LMStrix home: `lmstrix-<home>-<run>-<n>`. Runs of one home hold
   * its lock, so an instance of this home found loaded while this run holds the lock was left by
   * a run that is dead; instances of other homes may belong to live runs and are left alone.
   */
  home: string;
  /** The machine's boot (`boot_time.ts`), evidence about a run that died during a load. */
  bootTime: () => BootMark | undefined;
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
  try {
    return await testInTurn(context, models);
  } catch (error) {
    throw lostMidRun(error, context.lms.baseUrl);
  }
}

/** {@link runTests} itself: clears the leftovers, then tests each model in turn. */
async function testInTurn(context: RunContext, models: ModelRecord[]): Promise<TestReport[]> {
  const { options } = context;
  options.onEvent?.({
    type: "run-start",
    models: models.map((m) => ({ id: m.id, sizeBytes: m.sizeBytes })),
  });
  const orphans = await clearLeftovers(context.lms, context.home, options.onEvent);
  const reports: TestReport[] = [];
  for (const [index, chosen] of models.entries()) {
    const position = { index, total: models.length };
    for (let attempt = 0;; attempt++) {
      stopIfInterrupted(options.signal);
      const record = context.journal.record(chosen.id) ?? chosen;
      const evidence = {
        orphans: orphans.get(record.id) ?? [],
        bootTime: context.bootTime(),
        // What a saved search claims must be in the log (resume.ts); read only when there is one.
        attempts: record.search === undefined
          ? undefined
          : await context.journal.attempts(record.id),
      };
      try {
        const report = await testModel(context, record, position, evidence, attempt > 0);
        reports.push(report);
        options.onEvent?.({ type: "model-done", result: report.result });
        break;
      } catch (error) {
        // LM Studio came back after losing the connection: go on with the model where it
        // stopped, once; a second loss fails it.
        if (!(error instanceof ServerReturned)) throw error;
        options.onEvent?.({
          type: "warning",
          message: `${chosen.id}: LM Studio answers again after losing the connection; going on`,
        });
      }
    }
  }
  return reports;
}

/**
 * `error` as the run reports it: a connection to LM Studio lost for good mid-run becomes
 * {@link LmStudioUnreachableError} whose hint says that progress is saved and that running the
 * same command again resumes (the generic hint only says how to start the server).
 */
function lostMidRun(error: unknown, server: string): unknown {
  if (error instanceof LmstrixError) return error; // says what happened already
  const reason = unreachableReason(error);
  if (reason === null) return error;
  return new LmStudioUnreachableError(server, reason, {
    cause: error,
    hint: 'progress is saved; start LM Studio again ("lms server start"), then run the same ' +
      "command to resume where it stopped",
  });
}

/** Thrown by {@link afterFault} when LM Studio answers again after a lost connection. */
class ServerReturned extends Error {}

/** Throws {@link InterruptedError} once `signal` has fired. */
export function stopIfInterrupted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new InterruptedError(String(signal.reason ?? "SIGINT"));
}

/** The identifier prefix of the instances loaded by runs of `home`. */
export function homePrefix(home: string): string {
  return `${INSTANCE_PREFIX}${home}-`;
}

/**
 * Unloads the instances dead runs of this home left loaded, and returns their sizes by model
 * (evidence that a load the run died in did happen). Warns about instances of other LMStrix homes
 * and of the user, which are left alone.
 */
async function clearLeftovers(
  lms: LmStudio,
  home: string,
  onEvent: TestOptions["onEvent"],
): Promise<Map<string, number[]>> {
  const orphans = new Map<string, number[]>();
  for (const instance of await lms.listLoaded()) {
    const { identifier, modelKey } = instance;
    if (identifier.startsWith(homePrefix(home))) {
      await lms.unload(identifier);
      orphans.set(modelKey, [...orphans.get(modelKey) ?? [], instance.contextLength]);
      onEvent?.({
        type: "warning",
        message: `Unloaded "${identifier}" (${modelKey}), left loaded by an earlier LMStrix run`,
      });
    } else {
      onEvent?.({
        type: "warning",
        message: identifier.startsWith(INSTANCE_PREFIX)
          ? `"${modelKey}" is loaded by another LMStrix run ("${identifier}"), left alone`
          : `"${modelKey}" is loaded (not by LMStrix) and takes memory ` +
            "the test could otherwise use",
      });
    }
  }
  return orphans;
}

/** One model's test, from its resume point to its stored result. */
async function testModel(
  context: RunContext,
  record: ModelRecord,
  position: { index: number; total: number },
  evidence: CrashEvidence,
  retried = false,
): Promise<TestReport> {
  const { journal, options } = context;
  const untestable = untestableReason(record);
  if (untestable !== null) {
    options.onEvent?.({ type: "model-start", id: record.id, ...position, resumed: false });
    const failed = recordAfterFault(record, untestable);
    await journal.put(failed);
    return { result: resultOf(failed, { loads: 0, promptTokens: 0 }), attempts: [] };
  }
  const config = withShelfShare(searchConfigFor(record, options), record, journal.records());
  const start = resumePoint(record, config, evidence);
  announceStart(record, start, position, options.onEvent);
  const runId = `${context.home}-${newRunId()}`;
  const probe = probeFor(context, record.id, start, runId);
  await journal.log(runStart(record.id, runId, start.resumed, config));
  const attempts: AttemptLogEntry[] = [];
  const died = start.diedLoading === undefined ? {} : { diedLoading: start.diedLoading };
  /** The state after the last finished attempt, and its haystack seed: where a stop resumes. */
  let settled = start.state;
  let settledSeed = probe.seed;
  const save = (state: SearchState, extra: Parameters<typeof savedSearch>[3] = {}) => {
    current = { ...current, search: savedSearch(state, config, probe.seed, { ...died, ...extra }) };
    return journal.put(current);
  };
  let current: ModelRecord = recordStarting(record, config);
  await save(start.state);
  const hooks: SearchHooks = {
    beforeLoad: (_context, next) =>
      save(next, {
        pendingSince: new Date().toISOString(),
        pendingBoot: context.bootTime(),
        settled,
      }),
    afterAttempt: async (attempt, next) => {
      settled = next;
      settledSeed = probe.seed;
      await save(next);
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
    // A load whose answer a dropped connection lost may have finished on the server since.
    await probe.release();
  } catch (error) {
    await probe.release();
    // Resume from the last finished attempt: the one cut short is repeated, and a load in
    // flight neither counts as failed (an interrupt or a fault is not a crash) nor as spent.
    // The seed too: a needle cut short may have moved the probe to a fresh haystack already.
    current = { ...current, search: savedSearch(settled, config, settledSeed, died) };
    current = await afterFault(context, current, error, record, retried);
  }
  return { result: resultOf(current, probe), attempts };
}

/**
 * Stores `record` after `error` ended its test and decides how the run goes on: an interrupt,
 * a server that is gone or stopped answering, or an error that is not LM Studio's rethrows
 * (progress saved, the model not marked failed); a call that LM Studio failed marks the model
 * `failed` and the run goes on.
 */
async function afterFault(
  context: RunContext,
  record: ModelRecord,
  error: unknown,
  before: ModelRecord,
  retried: boolean,
): Promise<ModelRecord> {
  const { journal, options, lms } = context;
  if (options.signal?.aborted) {
    await journal.put(recordStopped(record, before));
    throw new InterruptedError(String(options.signal.reason ?? "SIGINT"));
  }
  const kind = classifyFailure(error);
  const lost = kind === "unreachable" || kind === "connection-lost";
  // A call that hung through every retry is the model's failure only if the server still
  // answers a small call; a lost connection is LM Studio's, not the model's. Either way LM Studio
  // gets the backoff to come back (a restart); if it does not, it stopped as a whole.
  const back = lost || kind === "timeout" ? await answersWithin(context) : true;
  if (!back || !(error instanceof LmStudioCallError)) {
    await journal.put(recordStopped(record, before));
    if (!back && kind === "timeout") {
      throw new LmStudioNotAnsweringError(lms.baseUrl, messageOf(error), { cause: error });
    }
    throw error;
  }
  if (lost && !retried) {
    await journal.put(recordStopped(record, before));
    throw new ServerReturned();
  }
  const failed = recordAfterFault(record, error.message);
  await journal.put(failed);
  return failed;
}

/** The log line that opens this run's attempts of model `id`. */
function runStart(
  id: string,
  run: string,
  resumed: boolean,
  config: SearchConfig,
): RunStartEntry {
  return {
    time: new Date().toISOString(),
    model: id,
    event: "run-start",
    run,
    resumed,
    config: { ...config },
  };
}

function announceStart(
  record: ModelRecord,
  start: ResumePoint,
  position: { index: number; total: number },
  onEvent: TestOptions["onEvent"],
): void {
  const crash = start.crash;
  if (crash) {
    const stopped = `The last run stopped while loading "${record.id}" at ${crash.context} tokens`;
    onEvent?.({
      type: "warning",
      message: crash.verdict === "crashed"
        ? `${stopped} (${crash.reason}); that size now counts as failed`
        : `${stopped}; ${crash.reason}, so it is loaded again`,
    });
  }
  onEvent?.({ type: "model-start", id: record.id, ...position, resumed: start.resumed });
}

function probeFor(
  context: RunContext,
  id: string,
  start: ResumePoint,
  runId: string,
): LmStudioProbe {
  const { options, backoffMs, retries } = context;
  return new LmStudioProbe(context.lms, id, {
    runId,
    // A resumed search goes on with the haystack it was using, so that its prompts, and the
    // answers of a model whose recall is noisy, are those of a run that was never stopped.
    seed: start.seed ?? fnv1a32(id),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(backoffMs !== undefined ? { backoffMs } : {}),
    ...(retries !== undefined ? { retries } : {}),
    onRetry: (what, error, attempt) =>
      options.onEvent?.({
        type: "warning",
        message: error.kind === "not-found"
          ? `${id}: its instance was unloaded by another client (${error.message}); ` +
            "loading it again"
          : `${id}: ${callInWords(what)} failed (${withoutCallName(error)}); trying ` +
            `again (retry ${attempt})`,
      }),
  });
}

/** The probe's name of a call to LM Studio (`complete`, `countTokens`), in a user's words. */
function callInWords(what: string): string {
  switch (what) {
    case "load":
      return "loading the model";
    case "check":
      return "a load check";
    case "complete":
      return "a prediction";
    case "countTokens":
      return "counting the prompt's tokens";
    default:
      return `a call to LM Studio (${what})`;
  }
}

/**
 * The error's text without the adapter's name of the call (`did not answer "complete" within
 * 0.5 s` reads `did not answer within 0.5 s`): the warning says what the call was in words.
 */
function withoutCallName(error: LmStudioCallError): string {
  return error.message.replace(` "${error.call}"`, "");
}

/** Whether LM Studio answers a small call (within the usual deadline). */
async function answersWithin(context: RunContext): Promise<boolean> {
  const { lms, options } = context;
  const first = context.backoffMs ?? 1_000;
  for (let attempt = 0;; attempt++) {
    try {
      await lms.listLoaded();
      return true;
    } catch {
      if (attempt >= (context.retries ?? 3)) return false;
      await sleep(first * 2 ** attempt, options.signal);
      stopIfInterrupted(options.signal);
    }
  }
}

/** Waits `ms`, or less when `signal` fires. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Wraps a probe so that each operation is announced before it runs. */
function announcing(probe: Probe, id: string, onEvent: TestOptions["onEvent"]): Probe {
  if (!onEvent) return probe;
  const announce = (event: Omit<Extract<TestEvent, { type: "attempt-start" }>, "type" | "id">) =>
    onEvent({ type: "attempt-start", id, ...event });
  const check = probe.check?.bind(probe);
  // The context of the latest load: a needle or a sanity check runs in it.
  let loaded = 0;
  return {
    load(context) {
      loaded = context;
      announce({ action: "load", context });
      return probe.load(context);
    },
    sanity() {
      announce({ action: "sanity", context: loaded });
      return probe.sanity();
    },
    needle(promptTokens, opts) {
      announce({ action: "needle", context: loaded, promptTokens });
      return probe.needle(promptTokens, opts);
    },
    unload() {
      return probe.unload();
    },
    // A probe without checks stays without: the search then bisects with loads.
    ...(check === undefined ? {} : {
      check(context: number) {
        announce({ action: "check", context });
        return check(context);
      },
    }),
  };
}
