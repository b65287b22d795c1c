/** `lmstrix test`: finds loadable and working context, with live progress on stderr. */

import { UsageError } from "../errors.ts";
import { ExitCode } from "../exit_codes.ts";
import type {
  LMStrix,
  SkippedModel,
  TestEvent,
  TestOptions,
  TestResult,
  TestRun,
} from "../lmstrix.ts";
import { displayText, type Output } from "../output.ts";
import type { AttemptLogEntry } from "../registry/attempt_log.ts";
import { attemptParts, attemptShort } from "./attempt_line.ts";
import { fitLine, formatDuration, formatPercent, formatTokens, wrapWords } from "./format.ts";
import { atLeast } from "./list.ts";

/** Options of `test` as the command line gives them. */
export interface TestCommandOptions {
  all?: boolean;
  force?: boolean;
  /** With --all, test again models whose test failed. */
  retryFailed?: boolean;
  precision?: number;
  minContext?: number;
  maxContext?: number;
  /** Base deadline of each call to LM Studio, in seconds (`--timeout`). */
  timeout?: number;
}

/**
 * Turns search events into progress lines: live on a terminal, plain lines otherwise. Each line
 * fits the width of stderr (`Output.errColumns`): the model name is shortened from the middle and
 * the timing left out before the verdict would be cut. With `--verbose`, each attempt adds its
 * detail (the answer or refusal excerpt, retries, the error).
 */
export function progressReporter(output: Output, now: () => number = () => performance.now()): {
  onEvent: (event: TestEvent) => void;
  stop: () => void;
} {
  let modelStart = now();
  let opStart = now();
  let current: { id: string; what: string } | undefined;
  let ticker: ReturnType<typeof setInterval> | undefined;
  const width = () => output.errColumns;
  const tick = () => {
    if (current === undefined) return;
    output.progress(liveLine(current.id, current.what, now() - opStart, width()), { final: false });
  };
  const stop = () => {
    if (ticker !== undefined) clearInterval(ticker);
    ticker = undefined;
  };
  const onEvent = (event: TestEvent) => {
    switch (event.type) {
      case "model-start":
        modelStart = now();
        output.progress(modelStartLine(event, width()));
        break;
      case "attempt-start":
        opStart = now();
        current = { id: event.id, what: underWay(event) };
        if (output.stderr.isTerminal && !output.quiet) {
          tick();
          ticker ??= setInterval(tick, 1000);
        }
        break;
      case "attempt":
        output.progress(attemptLine(event.id, event.entry, now() - modelStart, width()));
        for (const line of attemptDetail(event.entry)) output.debug(`    ${line}`);
        break;
      case "model-done":
        stop();
        current = undefined;
        output.progress(modelDoneLine(event.result, width()));
        if (event.result.error) {
          const error = displayText(event.result.error);
          for (const line of wrapWords(error, "    ", width())) output.info(line);
        }
        break;
      case "warning":
        output.warn(event.message);
        break;
    }
  };
  return { onEvent, stop };
}

/** The line that starts a model: its place in the run, and whether it resumes. */
function modelStartLine(
  event: Extract<TestEvent, { type: "model-start" }>,
  width: number | undefined,
): string {
  return fitLine({
    before: `[${event.index + 1}/${event.total}] `,
    name: displayText(event.id),
    after: event.resumed ? " (resuming)" : "",
  }, width);
}

/** The live line of an attempt under way, redrawn each second with its time so far. */
function liveLine(id: string, what: string, ms: number, width: number | undefined): string {
  return fitLine({
    before: "  ",
    name: displayText(id),
    after: `: ${what}... ${formatDuration(ms)}`,
  }, width);
}

/** What an attempt under way is doing, for the live line. */
function underWay(event: Extract<TestEvent, { type: "attempt-start" }>): string {
  if (event.action === "load") return `loading at ${formatTokens(event.context)}`;
  if (event.action === "check") return `checking a load at ${formatTokens(event.context)}`;
  if (event.action === "needle") return `needle probe, ${formatTokens(event.promptTokens)} tokens`;
  return "sanity check 2+2=";
}

/** A finished attempt: what was tried and the verdict, then its time and the model's so far. */
function attemptLine(
  id: string,
  entry: AttemptLogEntry,
  modelMs: number,
  width: number | undefined,
): string {
  const { what, verdict } = attemptParts(entry);
  return fitLine({
    before: "  ",
    name: displayText(id),
    after: [`: ${what}: ${verdict}`, `: ${attemptShort(entry)}: ${verdict}`],
    optional: ` (${formatDuration(entry.durationMs)}, ${formatDuration(modelMs)} on this model)`,
  }, width);
}

/** A finished model: its status and limits, then the declared context when there is room. */
function modelDoneLine(r: TestResult, width: number | undefined): string {
  return fitLine({
    before: "  ",
    name: displayText(r.id),
    after: `: ${r.status}: loadable ${formatTokens(r.loadableContext)}, working ` +
      `${formatTokens(r.workingContext)}`,
    optional: ` of ${formatTokens(r.declaredContext)} declared`,
  }, width);
}

/** The detail `--verbose` adds under an attempt: what came back, retries, the error. */
function attemptDetail(entry: AttemptLogEntry): string[] {
  const lines: string[] = [];
  if (entry.output !== null && entry.output !== "") {
    const label = entry.action === "load" || entry.action === "check" ? "message" : "answer";
    lines.push(`${label}: ${displayText(entry.output)}`);
  }
  if (entry.retries > 0) lines.push(`retries: ${entry.retries}`);
  if (entry.error !== null) lines.push(`error: ${displayText(entry.error)}`);
  return lines;
}

/** Options of {@linkcode renderResults}. */
export interface RenderResultsOptions {
  /** The `--max-context` of the run: a limit equal to it is a lower bound ("≥"). */
  maxContext?: number | undefined;
  /** Width to fit (model names are shortened from the middle), or undefined for no limit. */
  width?: number | undefined;
}

/**
 * The summary printed to stdout after a test run, two lines a model (three with an error):
 * `<id>: <status>, working <n> of <declared> declared (<p>% less)` then loadable, loads and
 * prompt tokens. A limit that is only the `--max-context` cap shows as "≥" with no reduction.
 */
export function renderResults(results: TestResult[], options: RenderResultsOptions = {}): string {
  const cap = options.maxContext;
  const lines: string[] = [];
  for (const r of results) {
    const capped = cap !== undefined && cap < r.declaredContext ? cap : undefined;
    const bound = { ...(capped !== undefined ? { cappedAt: capped } : {}) };
    const working = atLeast(bound, r.workingContext);
    const reduction = capped !== undefined && r.workingContext === capped
      ? ""
      : r.reductionPercent === null
      ? ""
      : ` (${formatPercent(r.reductionPercent)} less)`;
    if (r.workingContext === null) {
      // Nothing measured: say so, not "working -".
      lines.push(fitLine({
        name: displayText(r.id),
        after: `: ${r.status}, declared ${formatTokens(r.declaredContext)}`,
      }, options.width));
      lines.push(
        `  ${r.loads} load${r.loads === 1 ? "" : "s"}, ` +
          `${formatTokens(r.promptTokens)} prompt tokens`,
      );
      if (r.error) lines.push(...wrapWords(`error: ${displayText(r.error)}`, "  ", options.width));
      continue;
    }
    lines.push(fitLine({
      name: displayText(r.id),
      after: [
        `: ${r.status}, working ${working} of ${formatTokens(r.declaredContext)} declared` +
        reduction,
        `: ${r.status}, working ${working} of ${formatTokens(r.declaredContext)}${reduction}`,
      ],
    }, options.width));
    lines.push(
      `  loadable ${atLeast(bound, r.loadableContext)}; ${r.loads} load${
        r.loads === 1 ? "" : "s"
      }, ${formatTokens(r.promptTokens)} prompt tokens`,
    );
    if (r.error) lines.push(...wrapWords(`error: ${displayText(r.error)}`, "  ", options.width));
  }
  return lines.join("\n");
}

/**
 * What a run left out, one line per kind, with how to include them: models that keep their
 * numbers (tested, no --force) and models whose failed test is not repeated.
 */
export function renderSkipped(skipped: SkippedModel[]): string {
  const names = (list: SkippedModel[]) => {
    const shown = list.slice(0, 5).map((m) => displayText(m.id)).join(", ");
    return list.length > 5 ? `${shown} and ${list.length - 5} more` : shown;
  };
  const plural = (n: number) => `${n} model${n === 1 ? "" : "s"}`;
  const kept = skipped.filter((m) => m.status === "tested");
  const failed = skipped.filter((m) => m.status === "failed");
  const resumed = kept.filter((m) => m.reason.includes("resumes"));
  const lines: string[] = [];
  if (resumed.length > 0) {
    lines.push(`Resumed a forced run: ${plural(resumed.length)} already tested again by it.`);
  }
  const untouched = kept.filter((m) => !m.reason.includes("resumes"));
  if (untouched.length > 0) {
    lines.push(
      `Kept the numbers of ${plural(untouched.length)} tested already: ${names(untouched)} ` +
        "(--force tests them again).",
    );
  }
  if (failed.length > 0) {
    lines.push(
      `Skipped ${plural(failed.length)} whose test failed and whose file did not change: ` +
        `${names(failed)} (--retry-failed tests them again).`,
    );
  }
  return lines.join("\n");
}

/** Runs `test`. Exit 1 when a model could not be tested. */
export async function runTest(
  lmstrix: LMStrix,
  output: Output,
  models: string[],
  options: TestCommandOptions,
  signal: AbortSignal,
): Promise<number> {
  if (options.all && models.length > 0) {
    throw new UsageError("Pass model names or --all, not both", {
      hint: 'e.g. "lmstrix test --all", or name models from "lmstrix list"',
    });
  }
  if (!options.all && models.length === 0) {
    throw new UsageError("Name the models to test, or pass --all", {
      hint: 'e.g. "lmstrix test --all"',
    });
  }
  const reporter = progressReporter(output);
  const testOptions: TestOptions = {
    force: options.force ?? false,
    retryFailed: options.retryFailed ?? false,
    precision: options.precision,
    minContext: options.minContext,
    maxContext: options.maxContext,
    timeoutSeconds: options.timeout,
    signal,
    onEvent: reporter.onEvent,
  };
  let run: TestRun;
  try {
    run = await lmstrix.testRun(options.all ? "all" : models, testOptions);
  } finally {
    reporter.stop();
  }
  const { results, skipped } = run;
  // Results print whatever --quiet says: it silences progress only, and a cron log keeps them.
  if (output.json) {
    output.document({ results, skipped });
  } else if (results.length === 0 && skipped.length === 0) {
    output.data('Nothing to test: the registry has no LLMs (run "lmstrix scan" first).');
  } else {
    if (results.length > 0) {
      output.data(
        renderResults(results, { maxContext: options.maxContext, width: output.columns }),
      );
    }
    const summary = renderSkipped(skipped);
    if (summary !== "") output.data(summary);
  }
  return results.some((r) => r.status === "failed") ? ExitCode.someFailed : ExitCode.ok;
}
