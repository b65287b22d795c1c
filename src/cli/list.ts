/** `lmstrix list`: the registry as a table (or `{ "models": [...] }` with `--json`). */

import { appliedSummaries, type AppliedSummary } from "../apply/applied_store.ts";
import { UsageError } from "../errors.ts";
import { compareIds } from "../ids.ts";
import type { LMStrix } from "../lmstrix.ts";
import { reductionPercent } from "../lmstrix.ts";
import type { Output } from "../output.ts";
import { type ModelRecord, toContractJson } from "../registry/model_record.ts";
import { contextBar, formatBytes, formatPercent, formatTokens } from "./format.ts";
import { LIST_FORMATS, renderCsv, renderMarkdown } from "./list_export.ts";

/** Keys `list --sort` accepts. */
export const SORT_KEYS = [
  "name",
  "size",
  "declared",
  "loadable",
  "working",
  "reduction",
  "status",
] as const;
/** A key `list --sort` accepts. */
export type SortKey = typeof SORT_KEYS[number];

/** Options of `list`. */
export interface ListOptions {
  sort?: string;
  reverse?: boolean;
  /** `table` (default), `csv` or `markdown`. */
  format?: string;
}

const STATUS_ORDER = ["tested", "testing", "failed", "untested", "missing"];

function sortValue(record: ModelRecord, key: SortKey): number | string {
  switch (key) {
    case "name":
      return record.id.toLowerCase();
    case "size":
      return record.sizeBytes;
    case "declared":
      return record.declaredContext;
    case "loadable":
      return record.loadableContext ?? -1;
    case "working":
      return record.workingContext ?? -1;
    case "reduction":
      return reductionPercent(record.declaredContext, record.workingContext) ?? -1;
    case "status":
      return STATUS_ORDER.indexOf(record.status);
  }
}

/** Sorts records by `key` (ties by name). */
export function sortRecords(records: ModelRecord[], key: SortKey, reverse = false): ModelRecord[] {
  const sign = reverse ? -1 : 1;
  // Keys computed once per record, and plain comparisons (ICU collation is slow at start-up).
  const keyed = records.map((record) => ({ record, value: sortValue(record, key) }));
  keyed.sort((a, b) => {
    const order = a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
    return sign * order || compareIds(a.record.id, b.record.id);
  });
  return keyed.map((entry) => entry.record);
}

/** Reads and checks a `--sort` value. */
export function parseSortKey(value: string | undefined): SortKey {
  if (value === undefined) return "name";
  const key = SORT_KEYS.find((k) => k === value.toLowerCase());
  if (!key) {
    throw new UsageError(`Cannot sort by "${value}"`, {
      hint: `use one of: ${SORT_KEYS.join(", ")}`,
    });
  }
  return key;
}

/** A limit, marked "≥" when it is only the `--max-context` cap the test ran under. */
function atLeast(record: ModelRecord, tokens: number | null): string {
  const text = formatTokens(tokens);
  return tokens !== null && tokens === record.cappedAt ? `≥${text}` : text;
}

/** Cells of the context bar. */
const BAR_WIDTH = 10;

interface Column {
  head: string;
  align: "left" | "right";
  cell: (r: ModelRecord) => string;
}

const NO_BORDER = Object.fromEntries(
  [
    "top",
    "top-mid",
    "top-left",
    "top-right",
    "bottom",
    "bottom-mid",
    "bottom-left",
    "bottom-right",
    "left",
    "left-mid",
    "mid",
    "mid-mid",
    "right",
    "right-mid",
    "middle",
  ].map((key) => [key, ""]),
);

/** Width of a rendered line as the terminal shows it (colour codes take no room). */
function visibleWidth(line: string): number {
  // deno-lint-ignore no-control-regex
  return line.replace(/\x1b\[[0-9;]*m/g, "").length;
}

/**
 * Renders the table `list` prints: box-drawn with a bar per model on a terminal (`fancy`),
 * plain aligned text otherwise. Given the terminal's `width`, the bar, then the size, then the
 * reduction column are left out until the table fits.
 */
export async function renderList(
  records: ModelRecord[],
  output: Output,
  fancy: boolean,
  width?: number,
  applied: ReadonlyMap<string, AppliedSummary> = new Map(),
): Promise<string> {
  // Loaded here, not at start-up: `list --json` and the other commands never need it.
  const { default: Table } = await import("cli-table3");
  const s = output.style;
  const statusColour = (status: string) =>
    status === "tested"
      ? s.green(status)
      : status === "failed"
      ? s.red(status)
      : status === "testing"
      ? s.yellow(status)
      : s.dim(status);
  const all: (Column & { optional?: number })[] = [
    { head: "model", align: "left", cell: (r) => r.id },
    { head: "declared", align: "right", cell: (r) => formatTokens(r.declaredContext) },
    { head: "loadable", align: "right", cell: (r) => atLeast(r, r.loadableContext) },
    { head: "working", align: "right", cell: (r) => atLeast(r, r.workingContext) },
    {
      head: "reduction",
      align: "right",
      optional: 3,
      cell: (r) => formatPercent(reductionPercent(r.declaredContext, r.workingContext)),
    },
    {
      head: "status",
      align: "left",
      // Embedding models are never tested: say what they are instead of "untested".
      cell: (r) =>
        r.type === "embedding" && r.status !== "missing"
          ? s.dim("embedding")
          : statusColour(r.status),
    },
    // Only once something is applied: whether LM Studio's default is still the tested value.
    ...(applied.size === 0 ? [] : [{
      head: "applied",
      align: "left" as const,
      cell: (r: ModelRecord) => {
        const state = applied.get(r.id)?.state;
        return state === "current" ? "yes" : state === "stale" ? s.yellow("stale") : "";
      },
    }]),
    { head: "size", align: "right", optional: 2, cell: (r) => formatBytes(r.sizeBytes) },
    {
      head: "context",
      align: "left",
      optional: 1,
      cell: (r) =>
        r.type === "embedding"
          ? ""
          : contextBar(r.declaredContext, r.loadableContext, r.workingContext, BAR_WIDTH, fancy),
    },
  ];
  const render = (dropped: number) => {
    const columns = all.filter((c) => c.optional === undefined || c.optional > dropped);
    const table = new Table({
      head: columns.map((c) => s.bold(c.head)),
      style: {
        head: [],
        border: [],
        compact: true,
        "padding-left": fancy ? 1 : 0,
        "padding-right": fancy ? 1 : 2,
      },
      colAligns: columns.map((c) => c.align),
      ...(fancy ? {} : { chars: NO_BORDER }),
    });
    for (const r of records) table.push(columns.map((c) => c.cell(r)));
    return table.toString();
  };
  let dropped = 0;
  let text = render(dropped);
  while (
    dropped < 3 && width !== undefined && Math.max(...text.split("\n").map(visibleWidth)) > width
  ) {
    text = render(++dropped);
  }
  // The legend is for people; piped output stays one header and one line per model.
  if (dropped === 0 && fancy) text += `\n${s.dim("context: █ working  ▒ loadable  · declared")}`;
  // The plain table's rows carry trailing padding; scripts diff this text.
  return fancy ? text : text.split("\n").map((line) => line.trimEnd()).join("\n");
}

/** Runs `list`. */
export async function runList(
  lmstrix: LMStrix,
  output: Output,
  options: ListOptions,
): Promise<number> {
  const key = parseSortKey(options.sort);
  const format = options.format ?? "table";
  if (!(LIST_FORMATS as readonly string[]).includes(format)) {
    throw new UsageError(`Unknown list format "${format}"`, {
      hint: `use one of: ${LIST_FORMATS.join(", ")}`,
    });
  }
  if (output.json && format !== "table") {
    throw new UsageError(`--json and --format ${format} ask for two different outputs`, {
      hint: "pass one of them",
    });
  }
  const records = sortRecords(await lmstrix.records(), key, options.reverse ?? false);
  if (format !== "table") {
    const applied = appliedSummaries(lmstrix.paths, records, (m) => output.warn(m));
    output.data(
      format === "csv" ? await renderCsv(records, applied) : await renderMarkdown(records, applied),
    );
    return 0;
  }
  if (output.json) {
    output.document({ models: records.map(toContractJson) });
    return 0;
  }
  if (records.length === 0) {
    output.info('The registry is empty: run "lmstrix scan" to discover the models in LM Studio.');
    return 0;
  }
  const applied = appliedSummaries(lmstrix.paths, records, (m) => output.warn(m));
  output.data(
    await renderList(records, output, output.stdout.isTerminal, output.columns, applied),
  );
  return 0;
}
