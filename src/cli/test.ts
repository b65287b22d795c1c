/** `lmstrix test`: finds loadable and working context, with live progress on stderr. */

import { UsageError } from "../errors.ts";
import { ExitCode } from "../exit_codes.ts";
import type { LMStrix, TestEvent, TestOptions, TestResult } from "../lmstrix.ts";
import type { Output } from "../output.ts";
import { formatAttempt } from "./attempt_line.ts";
import { formatDuration, formatPercent, formatTokens } from "./format.ts";

/** Options of `test` as the command line gives them. */
export interface TestCommandOptions {
  all?: boolean;
  force?: boolean;
  precision?: number;
  minContext?: number;
  maxContext?: number;
  /** Base deadline of each call to LM Studio, in seconds (`--timeout`). */
  timeout?: number;
}

/** Turns search events into progress lines: live on a terminal, plain lines otherwise. */
export function progressReporter(output: Output, now: () => number = () => performance.now()): {
  onEvent: (event: TestEvent) => void;
  stop: () => void;
} {
  let modelStart = now();
  let opStart = now();
  let current = "";
  let ticker: ReturnType<typeof setInterval> | undefined;
  const tick = () =>
    output.progress(`${current} ${formatDuration(now() - opStart)}`, { final: false });
  const stop = () => {
    if (ticker !== undefined) clearInterval(ticker);
    ticker = undefined;
  };
  const onEvent = (event: TestEvent) => {
    switch (event.type) {
      case "model-start":
        modelStart = now();
        output.progress(
          `[${event.index + 1}/${event.total}] ${event.id}${event.resumed ? " (resuming)" : ""}`,
        );
        break;
      case "attempt-start": {
        opStart = now();
        const what = event.action === "load"
          ? `loading at ${formatTokens(event.context)}`
          : event.action === "needle"
          ? `needle probe, ${event.promptTokens} tokens`
          : "sanity check 2+2=";
        current = `  ${event.id}: ${what}...`;
        if (output.stderr.isTerminal && !output.quiet) {
          tick();
          ticker ??= setInterval(tick, 1000);
        }
        break;
      }
      case "attempt":
        output.progress(
          `  ${event.id}: ${formatAttempt(event.entry)}, ` +
            `${formatDuration(now() - modelStart)} on this model`,
        );
        break;
      case "model-done": {
        stop();
        const r = event.result;
        output.progress(
          `  ${r.id}: ${r.status}: loadable ${formatTokens(r.loadableContext)}, working ` +
            `${formatTokens(r.workingContext)} of ${formatTokens(r.declaredContext)} declared` +
            (r.error ? ` (${r.error})` : ""),
        );
        break;
      }
      case "warning":
        output.warn(event.message);
        break;
    }
  };
  return { onEvent, stop };
}

/** The summary printed to stdout after a test run. */
export function renderResults(results: TestResult[]): string {
  const lines = results.map((r) =>
    `${r.id}: ${r.status}, declared ${formatTokens(r.declaredContext)}, loadable ` +
    `${formatTokens(r.loadableContext)}, working ${formatTokens(r.workingContext)} ` +
    `(${formatPercent(r.reductionPercent)} less), ${r.loads} load${
      r.loads === 1 ? "" : "s"
    }, ${r.promptTokens} prompt tokens` +
    (r.error ? `; ${r.error}` : "")
  );
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
      hint: 'e.g. "lmstrix test --all" or "lmstrix test qwen"',
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
    precision: options.precision,
    minContext: options.minContext,
    maxContext: options.maxContext,
    timeoutSeconds: options.timeout,
    signal,
    onEvent: reporter.onEvent,
  };
  let results: TestResult[];
  try {
    results = await lmstrix.test(options.all ? "all" : models, testOptions);
  } finally {
    reporter.stop();
  }
  if (output.json) {
    output.document({ results });
  } else if (output.quiet) {
    // --quiet: nothing on success (cron); `lmstrix list` shows the results.
  } else if (results.length === 0) {
    const counts = await lmstrix.status();
    output.info(
      counts.total === 0
        ? 'Nothing to test: the registry has no LLMs (run "lmstrix scan" first).'
        : "Nothing to test: every LLM is tested already (pass --force to test them again).",
    );
  } else {
    output.data(renderResults(results));
  }
  return results.some((r) => r.status === "failed") ? ExitCode.someFailed : ExitCode.ok;
}
