/** `lmstrix show <model>`: one model's record and its latest attempts. */

import { appliedSummaries, type AppliedSummary } from "../apply/applied_store.ts";
import type { LMStrix } from "../lmstrix.ts";
import { displayText, type Output } from "../output.ts";
import {
  type ModelCosts,
  type ModelRecord,
  shownStatus,
  toContractJson,
} from "../registry/model_record.ts";
import { describeCurve } from "../search/context_search.ts";
import { formatAttempt, formatAttemptTime } from "./attempt_line.ts";
import { formatBytes, formatPercent, formatTokens, visibleWidth, wrapWords } from "./format.ts";
import { shownReduction, staleResults } from "./list.ts";

/** An ISO 8601 time in UTC to the second, with its zone: `2025-01-31 14:05:09Z`. */
function formatTime(iso: string): string {
  const time = new Date(iso);
  return Number.isNaN(time.getTime())
    ? displayText(iso)
    : time.toISOString().slice(0, 19).replace("T", " ") + "Z";
}

/**
 * The search's plan (as the attempt log words it) in a user's words; a plan this version does
 * not know is shown as it is.
 */
const PLAN_WORDS: [RegExp, string][] = [
  [
    /bisect with checks \(loads stopped as they start\)/,
    "sizes are tried with loads stopped as they start (quicker than full loads)",
  ],
  [
    /lean on refusals \(a load costs (\d+)x\)/,
    "refusals are quick here (a load takes $1 times as long), so the search tries sizes " +
    "LM Studio is likely to refuse",
  ],
  [/plain load bisection/, "each size is tried with a full load"],
  [/climb prompts on the cache/, "prompts grow in small steps, reusing LM Studio's prompt cache"],
  [
    /prompts grow by half, then bisect/,
    "without a prompt cache, prompts grow by half, then narrow",
  ],
];

/** The plan in a user's words (see {@linkcode PLAN_WORDS}). */
export function planInWords(plan: string): string {
  return PLAN_WORDS.reduce((text, [pattern, words]) => text.replace(pattern, words), plan);
}

/** What the last test measured of the model's costs, and the plan it chose from them. */
function costRows(costs: ModelCosts): [string, string][] {
  const seconds = (s: number) => s < 0.05 ? "under 0.1 s" : `${s.toFixed(1)} s`;
  const times = [
    costs.loadSeconds === null ? "" : `a load ${seconds(costs.loadSeconds)}`,
    costs.refusalSeconds === null ? "" : `a refusal ${seconds(costs.refusalSeconds)}`,
    costs.checkSeconds == null ? "" : `a check ${seconds(costs.checkSeconds)}`,
  ].filter(Boolean);
  const prefill = costs.prefillTokensPerSec === null
    ? "not measured"
    : `${formatTokens(costs.prefillTokensPerSec)} tokens/s at ${
      formatTokens(costs.prefillMeasuredAt ?? 0)
    } tokens`;
  const cache = costs.promptCache === null ? "not seen" : costs.promptCache ? "works" : "none";
  const curve: [string, string][] = costs.prefillCurve
    ? [["prefill curve", describeCurve(costs.prefillCurve)]]
    : [];
  return [
    ["took", times.length === 0 ? "nothing timed" : times.join(", ")],
    ["prefill", prefill],
    ...curve,
    ["prompt cache", cache],
    ["plan", displayText(planInWords(costs.plan))],
  ];
}

/** Rows printed whole at any width: paths, to be copied. */
const WHOLE_ROWS = new Set(["path", "log"]);

/** How many of the latest attempts `show` prints. */
const SHOWN_ATTEMPTS = 12;

/** Runs `show`. */
export async function runShow(lmstrix: LMStrix, output: Output, query: string): Promise<number> {
  const { record, attempts, logFile } = await lmstrix.history(query);
  const applied = appliedSummaries(lmstrix.paths, [record], (m) => output.warn(m)).get(record.id);
  if (output.json) {
    output.document(showDocument(record, attempts.length, logFile, applied));
    return 0;
  }
  const rows: [string, string][] = [
    ...recordRows(record),
    ["applied", appliedText(record, applied)],
    ["log", displayText(logFile)],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const indent = " ".repeat(width + 2);
  const lines = rows.flatMap(([k, v]) => {
    // Paths stay whole, so that they can be copied; the rest wraps at words under its value.
    const wrapped = WHOLE_ROWS.has(k) ? [indent + v] : wrapWords(v, indent, output.columns);
    const [first = indent, ...rest] = wrapped;
    return [`${output.style.bold(k.padEnd(width))}  ${first.slice(indent.length)}`, ...rest];
  });
  output.data(lines.join("\n"));
  const recent = attempts.slice(-SHOWN_ATTEMPTS);
  if (recent.length > 0) {
    // Attempts of one day (the usual run) give the day once, and each line its time only.
    const days = new Set(recent.map((entry) => formatAttemptTime(entry).slice(0, 11)));
    const oneDay = days.size === 1 && /^\d{4}-\d\d-\d\d $/.test([...days][0]!);
    const on = oneDay ? `, ${[...days][0]!.trim()} UTC` : "";
    output.data(
      recent.length === attempts.length
        ? `\nAttempts (${attempts.length})${on}:`
        : `\nLatest attempts (${recent.length} of ${attempts.length})${on}:`,
    );
    for (const entry of recent) {
      // A long attempt (a needle in a large context, its outcome) wraps under itself.
      const stamp = formatAttemptTime(entry);
      const time = `  ${oneDay ? stamp.slice(11) : stamp}  `;
      const under = " ".repeat(visibleWidth(time));
      output.data(wrapWords(formatAttempt(entry), under, output.columns, time).join("\n"));
    }
  }
  return 0;
}

/** `show --json`: the contract's record with what `show` adds to it. */
function showDocument(
  record: ModelRecord,
  attempts: number,
  logFile: string,
  applied: AppliedSummary | undefined,
): Record<string, unknown> {
  return {
    ...toContractJson(record),
    format: record.format ?? null,
    quantization: record.quantization ?? null,
    precision: record.precision ?? null,
    costs: record.costs ?? null,
    attempts,
    log: logFile,
    applied: applied === undefined ? null : {
      contextLength: applied.contextLength,
      current: applied.state === "current",
      workingContext: applied.workingContext,
      margin: applied.margin,
      appliedAt: applied.appliedAt,
    },
  };
}

/** The record's rows: what the model is, what was measured, and what the last test learnt. */
function recordRows(record: ModelRecord): [string, string][] {
  // Plain digits: this is where a user copies a number into LM Studio's context field.
  const exact = (n: number | null) =>
    n === null
      ? "-"
      : `${n} tokens${n === record.cappedAt ? " at least (the --max-context cap)" : ""}`;
  const stale = staleResults(record);
  const rows: [string, string][] = [
    ["model", displayText(record.id)],
    ["name", displayText(record.displayName ?? "-")],
    ["type", record.type],
    ["path", displayText(record.path)],
    ["size", formatBytes(record.sizeBytes)],
    ["architecture", displayText(record.architecture || "-")],
    [
      "format",
      displayText([record.format, record.quantization].filter(Boolean).join(" ") || "-"),
    ],
    ["declared", exact(record.declaredContext)],
    ["loadable", exact(record.loadableContext)],
    ["working", exact(record.workingContext)],
    ["reduction", formatPercent(shownReduction(record))],
    [
      "status",
      stale !== undefined
        ? "untested (stale results)"
        : shownStatus(record) === "skipped"
        ? "skipped (an embedding model: LMStrix tests LLMs)"
        : record.status,
    ],
    ["tested at", record.testedAt === null ? "-" : formatTime(record.testedAt)],
    ["precision", record.precision === undefined ? "-" : `${record.precision} tokens`],
  ];
  if (stale !== undefined) {
    rows.push([
      "stale",
      `${stale.status} ${stale.testedAt === null ? "" : `${formatTime(stale.testedAt)} `}` +
      `with another file: loadable ${stale.loadableContext ?? "-"}, working ` +
      `${stale.workingContext ?? "-"} (file changed ${formatTime(stale.since)})`,
    ]);
  }
  if (record.error) rows.push(["error", displayText(record.error)]);
  if (record.costs !== undefined) rows.push(...costRows(record.costs));
  return rows;
}

/** Whether LM Studio's default for this model is still the tested value (a retest may move it). */
function appliedText(record: ModelRecord, applied: AppliedSummary | undefined): string {
  if (applied === undefined) return "-";
  return `${applied.contextLength} in LM Studio's defaults, ${
    applied.state === "current"
      ? "the tested value"
      : `from the earlier working ${formatTokens(applied.workingContext)}: ` +
        `run "lmstrix apply ${displayText(record.id)}" again`
  }`;
}
