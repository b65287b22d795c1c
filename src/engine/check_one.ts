/**
 * The one-size check (`test <model> --ctx N`): one load at N and, when it loads, one needle probe
 * that fills N, with no search. It answers the question a user has before setting a context in LM
 * Studio ("does this model work at 32k?") in one load, where a search takes several.
 *
 * The check is evidence, not a result: its two attempts go to the model's attempt log (marked with
 * `check`, so that readers tell them from a search's), and the registry's limits stay as they are.
 * When the answer contradicts them (works above the stored working context, say), the check says
 * so: a search's number rests on many probes, a check's on one, so only `test --force` changes it.
 *
 * It loads through the same probe as the search ({@link LmStudioProbe}), so a check retries faults,
 * counts tokens and grades the needle exactly as a search would, and leaves nothing loaded: the
 * probe is released whatever happens, an interrupt included.
 *
 * @module
 */

import { RESERVE_TOKENS } from "../contract.ts";
import { UsageError } from "../errors.ts";
import { fnv1a32 } from "../ids.ts";
import type { LmStudio } from "../lmstudio/client.ts";
import { LmStudioProbe, newRunId } from "../probe/lmstudio_probe.ts";
import type { AttemptLogEntry, RunStartEntry } from "../registry/attempt_log.ts";
import type { ModelRecord } from "../registry/model_record.ts";
import type { Attempt } from "../search/types.ts";
import { attemptEntry } from "./outcome.ts";
import type { TestEvent } from "./test_events.ts";
import { MIN_TESTABLE_CONTEXT } from "./test_options.ts";

/** What LM Studio answered to the load at the checked size. */
export type CheckLoad = "refused" | "fitted" | "loaded";

/** The check's verdict, as in `test --ctx --json`. */
export type CheckVerdict = "works" | "loads-but-fails" | "does-not-load";

/** A one-size check's answer: the contract's `check` object, with what it says of the registry. */
export interface ContextCheck {
  /** The model's id. */
  id: string;
  /** The size checked. */
  context: number;
  /** What LM Studio answered to the load. */
  load: CheckLoad;
  /** The context LM Studio reported after the load, or null when it refused. */
  loadedContext: number | null;
  /** The needle probe's grade, or null when the model did not load at the size. */
  needle: "pass" | "fail" | null;
  /** The verdict. */
  verdict: CheckVerdict;
  /** The registry's limits when the check ran (unchanged by it). */
  stored: { loadableContext: number | null; workingContext: number | null; status: string };
  /** How the verdict contradicts the stored limits (one sentence), or null. */
  contradiction: string | null;
  /** The two attempts as written to the attempt log (a refused load: one). */
  attempts: AttemptLogEntry[];
}

/** What a check needs: the server, where to log, and how to behave on faults. */
export interface CheckContext {
  lms: LmStudio;
  /** Appends a line to the model's attempt log. */
  log: (entry: AttemptLogEntry | RunStartEntry) => Promise<void>;
  /** Marks the check's instances as this LMStrix home's (see `RunContext.home`). */
  home: string;
  signal?: AbortSignal | undefined;
  backoffMs?: number | undefined;
  retries?: number | undefined;
  onEvent?: ((event: TestEvent) => void) | undefined;
}

/** An attempt-log line of a check: an attempt entry marked with the size checked. */
export type CheckLogEntry = AttemptLogEntry & { check: number };

/** Throws a usage error unless `size` is a context a check can fill with a needle prompt. */
export function checkableSize(size: number): void {
  if (Number.isSafeInteger(size) && size >= MIN_TESTABLE_CONTEXT) return;
  throw new UsageError(
    `A check needs a context of at least ${MIN_TESTABLE_CONTEXT} tokens, not ${size}`,
    { hint: 'name one model as "lmstrix list" shows it, then --ctx and a size such as 32k' },
  );
}

/** Loads `record`'s model at `context`, probes it once when it loads, and logs both attempts. */
export async function checkOne(
  context: CheckContext,
  record: ModelRecord,
  size: number,
): Promise<ContextCheck> {
  const { onEvent } = context;
  const run = `${context.home}-check-${newRunId()}`;
  const probe = new LmStudioProbe(context.lms, record.id, {
    runId: run,
    seed: fnv1a32(record.id),
    ...(context.signal ? { signal: context.signal } : {}),
    ...(context.backoffMs !== undefined ? { backoffMs: context.backoffMs } : {}),
    ...(context.retries !== undefined ? { retries: context.retries } : {}),
    onRetry: (what, error, attempt) =>
      onEvent?.({
        type: "warning",
        message: `${record.id}: ${what} failed (${error.message}); retry ${attempt}`,
      }),
  });
  await context.log({
    time: new Date().toISOString(),
    model: record.id,
    event: "run-start",
    run,
    resumed: false,
    config: { check: size, declared: record.declaredContext, reserve: RESERVE_TOKENS },
  });
  const attempts: AttemptLogEntry[] = [];
  const logged = async (attempt: Attempt) => {
    const entry: CheckLogEntry = {
      ...attemptEntry(record.id, attempt, probe.last, new Date().toISOString()),
      check: size,
    };
    attempts.push(entry);
    await context.log(entry);
    onEvent?.({ type: "attempt", id: record.id, entry });
  };
  try {
    onEvent?.({ type: "attempt-start", id: record.id, action: "load", context: size });
    const outcome = await probe.load(size);
    if (outcome.kind === "refused") {
      await logged({
        phase: "loadable",
        action: "load",
        context: size,
        outcome: "refused",
        excerpt: outcome.message,
      });
      return result(record, size, "refused", null, null, attempts);
    }
    // Reporting less than asked is LM Studio fitting it down: not loadable at this size.
    const load: CheckLoad = outcome.actual < size ? "fitted" : "loaded";
    await logged({
      phase: "loadable",
      action: "load",
      context: size,
      actual: outcome.actual,
      outcome: load,
    });
    if (load === "fitted") return result(record, size, load, outcome.actual, null, attempts);
    const promptTokens = size - RESERVE_TOKENS;
    onEvent?.({ type: "attempt-start", id: record.id, action: "needle", context: 0, promptTokens });
    const answer = await probe.needle(promptTokens, { fresh: false, depth: 0.5 });
    await logged({
      phase: "working",
      action: "needle",
      context: size,
      promptTokens: probe.last.promptTokens ?? promptTokens,
      depth: 0.5,
      outcome: answer.pass ? "pass" : "fail",
      excerpt: answer.excerpt,
    });
    return result(record, size, load, outcome.actual, answer.pass ? "pass" : "fail", attempts);
  } finally {
    await probe.release();
  }
}

function result(
  record: ModelRecord,
  size: number,
  load: CheckLoad,
  loadedContext: number | null,
  needle: "pass" | "fail" | null,
  attempts: AttemptLogEntry[],
): ContextCheck {
  const verdict: CheckVerdict = load !== "loaded"
    ? "does-not-load"
    : needle === "pass"
    ? "works"
    : "loads-but-fails";
  return {
    id: record.id,
    context: size,
    load,
    loadedContext,
    needle,
    verdict,
    stored: {
      loadableContext: record.loadableContext,
      workingContext: record.workingContext,
      status: record.status,
    },
    contradiction: contradiction(record, size, verdict),
    attempts,
  };
}

/**
 * How a verdict at `size` contradicts the stored limits, in one sentence, or null. Only a tested
 * model's numbers can be contradicted; a verdict that agrees with them says nothing.
 */
export function contradiction(
  record: Pick<ModelRecord, "id" | "status" | "loadableContext" | "workingContext">,
  size: number,
  verdict: CheckVerdict,
): string | null {
  if (record.status !== "tested") return null;
  const working = record.workingContext;
  const loadable = record.loadableContext;
  const fmt = (n: number) => n.toLocaleString("en-US");
  const retest = `run "lmstrix test --force ${record.id}"`;
  if (verdict === "works" && working !== null && size > working) {
    return `It works at ${fmt(size)}, above the stored working context of ${fmt(working)}: ` +
      `the stored number may be low; ${retest}`;
  }
  if (verdict === "loads-but-fails" && loadable !== null && size > loadable) {
    return `It loads at ${fmt(size)}, above the stored loadable context of ${fmt(loadable)}: ` +
      `the stored number may be low; ${retest}`;
  }
  if (verdict !== "works" && working !== null && size <= working) {
    const what = verdict === "does-not-load" ? "does not load" : "does not work";
    return `It ${what} at ${fmt(size)}, at or below the stored working context of ` +
      `${fmt(working)}: the stored number may be high (or memory is taken by other models, ` +
      `or its answers are uneven near the limit); ${retest}`;
  }
  if (verdict === "does-not-load" && loadable !== null && size <= loadable) {
    return `It does not load at ${fmt(size)}, at or below the stored loadable context of ` +
      `${fmt(loadable)}: memory may be taken by other models, or the stored number is high; ` +
      retest;
  }
  return null;
}
