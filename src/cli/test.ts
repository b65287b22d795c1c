/**
 * `lmstrix test`: finds loadable and working context, with live progress on stderr. Each model's
 * result goes to stdout as soon as the model is done (kept numbers first), and every run ends with
 * one summary line on stderr; with `--json`, one document with the results, the summary and how
 * the run ended, also when a signal or a lost LM Studio stopped it.
 *
 * @module
 */

import { InterruptedError, LmStudioUnreachableError, UsageError } from "../errors.ts";
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
import {
  fitLine,
  formatDuration,
  formatPercent,
  formatTokens,
  MIN_NAME_WIDTH,
  visibleWidth,
  wrapWords,
} from "./format.ts";
import { atLeast } from "./list.ts";
import { progressReporter } from "./test_progress.ts";

export { progressReporter };

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

/** Options of {@linkcode renderResults}. */
export interface RenderResultsOptions {
  /** The `--max-context` of the run: a limit equal to it is a lower bound ("≥"). */
  maxContext?: number | undefined;
  /** Width to fit (model names are shortened from the middle), or undefined for no limit. */
  width?: number | undefined;
}

/**
 * Result lines, two a model (more with an error):
 * `<id>: <status>, working <n> of <declared> declared (<p>% less)` then loadable, loads and
 * prompt tokens; a model that keeps the numbers of an earlier test reads `kept`. A limit that is
 * only the `--max-context` cap shows as "≥" with no reduction.
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
    // "declared" on every result line. The reduction is a number too: the name is shortened
    // (down to MIN_NAME_WIDTH) to keep it, and only a narrower terminal drops it.
    const numbers = `: ${r.kept ? "kept" : r.status}, working ${working} of ` +
      `${formatTokens(r.declaredContext)} declared`;
    const name = displayText(r.id);
    const room = options.width === undefined
      ? Infinity
      : options.width - 1 - visibleWidth(numbers + reduction);
    const keepsReduction = room >= Math.min(MIN_NAME_WIDTH, visibleWidth(name));
    lines.push(
      fitLine({ name, after: keepsReduction ? numbers + reduction : numbers }, options.width),
    );
    lines.push(
      r.kept
        ? `  loadable ${atLeast(bound, r.loadableContext)}; from an earlier test`
        : `  loadable ${atLeast(bound, r.loadableContext)}; ${r.loads} load${
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
export function renderSkipped(skipped: SkippedModel[], width?: number | undefined): string {
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
  return lines.flatMap((line) => wrapWords(line, "  ", width, "")).join("\n");
}

/** How a run ended early, as `test --json`'s `stopped` says it. */
export type StopKind = "interrupted" | "terminated" | "server-lost";

/**
 * How `error` stopped a run, or null when it is not a stop: Ctrl-C (SIGINT, SIGQUIT) interrupts;
 * SIGTERM, a closed terminal (SIGHUP) or a reader gone (SIGPIPE) terminate; LM Studio that went
 * away or stopped answering is `server-lost`.
 */
export function stopKindOf(error: unknown): StopKind | null {
  if (error instanceof InterruptedError) {
    return ["SIGTERM", "SIGHUP", "SIGPIPE"].includes(error.signal) ? "terminated" : "interrupted";
  }
  if (error instanceof LmStudioUnreachableError) return "server-lost";
  return null;
}

/** The `summary` of `test --json`: what the run did, counted by model, and its time. */
export interface RunSummary {
  /** Models this run tested to the end (their status is `tested`). */
  tested: number;
  /** Models this run could not test (status `failed`; each result says why). */
  failed: number;
  /** Models tested before that keep their numbers. */
  kept: number;
  /** Models left out: their test failed before and their file did not change. */
  skipped: number;
  /** The run's time, in seconds (one decimal). */
  seconds: number;
}

/** The summary of a run that produced `results` and `kept`, left out `skipped`, took `ms`. */
export function summarize(
  results: TestResult[],
  kept: TestResult[],
  skipped: SkippedModel[],
  ms: number,
): RunSummary {
  return {
    tested: results.filter((r) => r.status === "tested").length,
    failed: results.filter((r) => r.status === "failed").length,
    kept: kept.length,
    skipped: skipped.filter((s) => s.status === "failed").length,
    seconds: Math.round(ms / 100) / 10,
  };
}

/**
 * The one summary line that ends every run (stderr), then the models that failed:
 * `Summary: tested 2, failed 1, kept 6, skipped 1, took 1.2 s; failed: dud`; a run that
 * stopped early adds how many models it did not finish (`not done 3`: they resume next run). Wrapped to `width` between its parts, so
 * a count never goes to another line than its label.
 */
export function renderSummary(
  summary: RunSummary,
  failedIds: string[],
  notDone: number,
  width?: number | undefined,
): string {
  // Seconds even for a short run, as the JSON summary counts them.
  const took = summary.seconds < 120
    ? `${summary.seconds.toFixed(1)} s`
    : formatDuration(summary.seconds * 1000);
  const parts = [
    `tested ${summary.tested}`,
    `failed ${summary.failed}`,
    `kept ${summary.kept}`,
    `skipped ${summary.skipped}`,
    ...(notDone > 0 ? [`not done ${notDone}`] : []),
    `took ${took}`,
  ];
  const shown = failedIds.slice(0, 5).map(displayText);
  const more = failedIds.length > 5 ? [`and ${failedIds.length - 5} more`] : [];
  const failed = failedIds.length > 0 ? `; failed: ${[...shown, ...more].join(", ")}` : "";
  // A no-break space holds each label to its number while the line is wrapped.
  const text = `Summary: ${parts.join(", ")}${failed}`.replace(/(\w) (\d)/g, "$1\u00a0$2");
  return wrapWords(text, "  ", width, "").join("\n").replaceAll("\u00a0", " ");
}

/**
 * Prints results as they come: each model's lines on stdout as soon as it is done (under
 * `--json`, its first line on stderr as progress, the document at the end), and keeps them for
 * the summary and the document.
 */
class ResultPrinter {
  readonly results: TestResult[] = [];
  readonly kept: TestResult[] = [];
  skipped: SkippedModel[] = [];
  /** How many models the run set out to test (0 until it started). */
  planned = 0;
  readonly #output: Output;
  readonly #maxContext: number | undefined;

  constructor(output: Output, maxContext: number | undefined) {
    this.#output = output;
    this.#maxContext = maxContext;
  }

  onEvent(event: TestEvent): void {
    if (event.type === "run-start") this.planned = event.models.length;
    if (event.type === "selected") {
      this.skipped = event.skipped;
      for (const result of event.kept) this.#print(result, this.kept);
    }
    if (event.type === "model-done") this.#print(event.result, this.results);
  }

  #print(result: TestResult, into: TestResult[]): void {
    into.push(result);
    const output = this.#output;
    if (output.json) {
      const width = output.errColumns;
      const text = renderResults([result], { maxContext: this.#maxContext, width });
      output.info(text.split("\n")[0]!);
    } else {
      output.data(renderResults([result], { maxContext: this.#maxContext, width: output.columns }));
    }
  }
}

/** Runs `test`. Exit 1 when a model could not be tested. */
export async function runTest(
  lmstrix: LMStrix,
  output: Output,
  models: string[],
  options: TestCommandOptions,
  signal: AbortSignal,
  now: () => number = () => performance.now(),
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
  const started = now();
  const reporter = progressReporter(output);
  const printer = new ResultPrinter(output, options.maxContext);
  const testOptions: TestOptions = {
    force: options.force ?? false,
    retryFailed: options.retryFailed ?? false,
    precision: options.precision,
    minContext: options.minContext,
    maxContext: options.maxContext,
    timeoutSeconds: options.timeout,
    signal,
    onEvent: (event) => {
      reporter.onEvent(event);
      printer.onEvent(event);
    },
  };
  /** The summary line (stderr, kept under --quiet but for --json) and the summary itself. */
  const finish = (skipped: SkippedModel[]) => {
    const { results, kept } = printer;
    const summary = summarize(results, kept, skipped, now() - started);
    const failed = results.filter((r) => r.status === "failed").map((r) => r.id);
    const notDone = Math.max(0, printer.planned - results.length);
    const line = renderSummary(summary, failed, notDone, output.errColumns);
    if (output.json) output.info(line);
    else output.note(line);
    return summary;
  };
  let run: TestRun;
  try {
    run = await lmstrix.testRun(options.all ? "all" : models, testOptions);
  } catch (error) {
    reporter.stop();
    const stopped = stopKindOf(error);
    if (stopped === null) throw error;
    // Results so far survive a stop: printed already, summed up, and in the --json document
    // that main prints with the error.
    const summary = finish(printer.skipped);
    output.errorDocumentFields = {
      results: [...printer.kept, ...printer.results],
      summary,
      stopped,
      skipped: printer.skipped,
    };
    throw error;
  }
  reporter.stop();
  const { results, kept, skipped } = run;
  if (!output.json && results.length === 0 && kept.length === 0 && skipped.length === 0) {
    output.data('Nothing to test: the registry has no LLMs (run "lmstrix scan" first).');
    return ExitCode.ok;
  }
  const left = renderSkipped(skipped, output.columns);
  if (!output.json && left !== "") output.data(left);
  const summary = finish(skipped);
  if (output.json) {
    output.document({ results: [...kept, ...results], summary, stopped: null, skipped });
  }
  return results.some((r) => r.status === "failed") ? ExitCode.someFailed : ExitCode.ok;
}
