/**
 * `list --format csv` and `list --format markdown`: the registry for people who set context
 * lengths elsewhere than LM Studio's defaults (a spreadsheet, another runner's config, an issue or
 * a wiki page).
 *
 * CSV has one row per model with the exact numbers (empty cells for unknown ones) and the keys of
 * the JSON record as its header; Markdown is the `list` table as a GitHub-flavoured table.
 * Both libraries load only when asked for.
 *
 * @module
 */

import type { AppliedState } from "../apply/applied_store.ts";
import { reductionPercent } from "../lmstrix.ts";
import { displayText } from "../output.ts";
import { type ModelRecord, shownStatus } from "../registry/model_record.ts";
import { formatBytes, formatPercent, formatTokens } from "./format.ts";

/** The export formats `list --format` takes, besides the default `table`. */
export const LIST_FORMATS = ["table", "csv", "markdown"] as const;
/** A format `list --format` takes. */
export type ListFormat = typeof LIST_FORMATS[number];

/** The registry as CSV (RFC 4180 quoting), header first. */
export async function renderCsv(
  records: readonly ModelRecord[],
  applied: ReadonlyMap<string, { contextLength: number; state: AppliedState }>,
): Promise<string> {
  const { stringify } = await import("csv-stringify/sync");
  const header = [
    "id",
    "path",
    "type",
    "status",
    "declaredContext",
    "loadableContext",
    "workingContext",
    "reductionPercent",
    "testedAt",
    "appliedContextLength",
    "appliedIsCurrent",
    "error",
  ];
  const rows = records.map((r) => {
    const a = applied.get(r.id);
    return [
      r.id,
      r.path,
      r.type,
      shownStatus(r),
      r.declaredContext,
      r.loadableContext,
      r.workingContext,
      reductionPercent(r.declaredContext, r.workingContext),
      r.testedAt,
      a?.contextLength ?? null,
      a === undefined ? null : String(a.state === "current"),
      r.error,
    ];
  });
  return stringify([header, ...rows]);
}

/** The `list` table as a Markdown table (pipes in cells escaped). */
export async function renderMarkdown(
  records: readonly ModelRecord[],
  applied: ReadonlyMap<string, { contextLength: number; state: AppliedState }>,
): Promise<string> {
  const { markdownTable } = await import("markdown-table");
  const withApplied = applied.size > 0;
  const head = ["model", "declared", "loadable", "working", "reduction", "status", "size"];
  const align = ["l", "r", "r", "r", "r", "l", "r"];
  if (withApplied) {
    head.push("applied");
    align.push("r");
  }
  const rows = records.map((r) => {
    const capped = (n: number | null) =>
      n !== null && n === r.cappedAt ? `≥${formatTokens(n)}` : formatTokens(n);
    const row = [
      r.id,
      formatTokens(r.declaredContext),
      capped(r.loadableContext),
      capped(r.workingContext),
      formatPercent(reductionPercent(r.declaredContext, r.workingContext)),
      shownStatus(r),
      formatBytes(r.sizeBytes),
    ];
    if (withApplied) {
      const a = applied.get(r.id);
      row.push(
        a === undefined
          ? ""
          : `${formatTokens(a.contextLength)}${a.state === "stale" ? " (stale)" : ""}`,
      );
    }
    return row.map(escapeCell);
  });
  return markdownTable([head, ...rows], { align });
}

/**
 * Makes text safe inside a Markdown table cell: backslashes and pipes escaped, and control
 * characters (line breaks included) shown escaped, as on the terminal.
 */
function escapeCell(text: string): string {
  return displayText(text.replace(/\\/g, "\\\\").replace(/\|/g, "\\|"));
}
