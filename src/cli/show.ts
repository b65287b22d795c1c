/** `lmstrix show <model>`: one model's record and its latest attempts. */

import { appliedSummaries } from "../apply/applied_store.ts";
import type { LMStrix } from "../lmstrix.ts";
import { reductionPercent } from "../lmstrix.ts";
import { displayText, type Output } from "../output.ts";
import { toContractJson } from "../registry/model_record.ts";
import { formatAttempt, formatAttemptTime } from "./attempt_line.ts";
import { formatBytes, formatPercent, formatTokens } from "./format.ts";
import { shownReduction } from "./list.ts";

/** An ISO 8601 time in UTC to the second, with its zone: `2025-01-31 14:05:09Z`. */
function formatTime(iso: string): string {
  const time = new Date(iso);
  return Number.isNaN(time.getTime())
    ? displayText(iso)
    : time.toISOString().slice(0, 19).replace("T", " ") + "Z";
}

/** How many of the latest attempts `show` prints. */
const SHOWN_ATTEMPTS = 12;

/** Runs `show`. */
export async function runShow(lmstrix: LMStrix, output: Output, query: string): Promise<number> {
  const { record, attempts, logFile } = await lmstrix.history(query);
  const applied = appliedSummaries(lmstrix.paths, [record], (m) => output.warn(m)).get(record.id);
  if (output.json) {
    output.document({
      ...toContractJson(record),
      type: record.type,
      displayName: record.displayName ?? null,
      format: record.format ?? null,
      quantization: record.quantization ?? null,
      reductionPercent: reductionPercent(record.declaredContext, record.workingContext),
      precision: record.precision ?? null,
      attempts: attempts.length,
      log: logFile,
      applied: applied === undefined ? null : {
        contextLength: applied.contextLength,
        current: applied.state === "current",
        workingContext: applied.workingContext,
        margin: applied.margin,
        appliedAt: applied.appliedAt,
      },
    });
    return 0;
  }
  // Plain digits: this is where a user copies a number into LM Studio's context field.
  const exact = (n: number | null) =>
    n === null
      ? "-"
      : `${n} tokens${n === record.cappedAt ? " at least (the --max-context cap)" : ""}`;
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
    ["status", record.status],
    ["tested at", record.testedAt === null ? "-" : formatTime(record.testedAt)],
    ["precision", record.precision === undefined ? "-" : `${record.precision} tokens`],
  ];
  if (record.error) rows.push(["error", displayText(record.error)]);
  // Whether LM Studio's default for this model is still the tested value (a retest may move it).
  rows.push([
    "applied",
    applied === undefined
      ? "-"
      : `${applied.contextLength} in LM Studio's defaults, ${
        applied.state === "current"
          ? "the tested value"
          : `from the earlier working ${formatTokens(applied.workingContext)}: ` +
            `run "lmstrix apply" again`
      }`,
  ]);
  rows.push(["log", `${displayText(logFile)} (${attempts.length} attempts)`]);
  const width = Math.max(...rows.map(([k]) => k.length));
  output.data(rows.map(([k, v]) => `${output.style.bold(k.padEnd(width))}  ${v}`).join("\n"));
  const recent = attempts.slice(-SHOWN_ATTEMPTS);
  if (recent.length > 0) {
    output.data(`\nLatest attempts:`);
    for (const entry of recent) {
      output.data(`  ${formatAttemptTime(entry)}  ${formatAttempt(entry)}`);
    }
  }
  return 0;
}
