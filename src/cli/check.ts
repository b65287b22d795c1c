/**
 * `lmstrix test <model> --ctx N`: the one-size check's view. Progress (the load, the probe) on
 * stderr as `test` shows it; the verdict on stdout, with what LM Studio answered and, when the
 * verdict contradicts the registry's limits, the note that says so. Exit 0 whatever the verdict:
 * the check answered its question.
 */

import { UsageError } from "../errors.ts";
import { ExitCode } from "../exit_codes.ts";
import type { ContextCheck, LMStrix } from "../lmstrix.ts";
import { displayText, type Output } from "../output.ts";
import { fitLine, formatTokens, wrapWords } from "./format.ts";
import { progressReporter, type TestCommandOptions } from "./test.ts";

/** What `test --ctx` was given besides the size: the options of `test`; only --timeout applies. */
export type CheckCommandOptions = TestCommandOptions;

/** The verdict as a person reads it: `works at 32,768`. */
export function verdictText(check: Pick<ContextCheck, "verdict" | "context">): string {
  const at = formatTokens(check.context);
  switch (check.verdict) {
    case "works":
      return `works at ${at}`;
    case "loads-but-fails":
      return `loads but does not work at ${at}`;
    case "does-not-load":
      return `does not load at ${at}`;
  }
}

/** What LM Studio answered and how the needle went, in one line. */
function detailText(check: ContextCheck): string {
  const load = check.load === "refused"
    ? "LM Studio refused the load"
    : check.load === "fitted"
    ? `LM Studio fitted the load down to ${formatTokens(check.loadedContext)}`
    : `loaded at ${formatTokens(check.loadedContext)}`;
  const needle = check.attempts.find((a) => a.action === "needle");
  if (check.needle === null || needle === undefined) return load;
  const tokens = formatTokens(needle.promptTokens);
  return `${load}; the needle probe of ${tokens} tokens ${
    check.needle === "pass" ? "passed" : "failed"
  }`;
}

/** The check's result lines: the verdict, the detail, the contradiction if any. */
export function renderCheck(check: ContextCheck, width: number | undefined): string {
  const lines = [
    fitLine({ name: displayText(check.id), after: `: ${verdictText(check)}` }, width),
    ...wrapWords(detailText(check), "  ", width),
  ];
  const refusal = check.load === "refused" ? check.attempts[0]?.output : null;
  if (refusal) lines.push(...wrapWords(`LM Studio said: ${displayText(refusal)}`, "  ", width));
  if (check.contradiction !== null) {
    lines.push(...wrapWords(`note: ${displayText(check.contradiction)}`, "  ", width));
  }
  return lines.join("\n");
}

/** Runs `test <model> --ctx N`. */
export async function runCheck(
  lmstrix: LMStrix,
  output: Output,
  models: string[],
  context: number,
  options: CheckCommandOptions,
  signal: AbortSignal,
): Promise<number> {
  const extra = (["all", "force", "retryFailed", "precision", "minContext", "maxContext"] as const)
    .filter((key) => options[key] !== undefined && options[key] !== false);
  if (extra.length > 0 || models.length !== 1) {
    throw new UsageError(
      extra.length > 0
        ? `--ctx checks one size of one model; it takes no --${kebab(extra[0]!)}`
        : `--ctx checks one model; name exactly one, not ${models.length}`,
      { hint: 'name one model as "lmstrix list" shows it, then --ctx and a size such as 32k' },
    );
  }
  const reporter = progressReporter(output);
  let check: ContextCheck;
  try {
    check = await lmstrix.checkContext(models[0]!, context, {
      signal,
      timeoutSeconds: options.timeout,
      onEvent: reporter.onEvent,
    });
  } finally {
    reporter.stop();
  }
  if (output.json) {
    const { attempts: _attempts, ...rest } = check;
    output.document({ check: rest });
  } else {
    output.data(renderCheck(check, output.columns));
  }
  return ExitCode.ok;
}

function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}
