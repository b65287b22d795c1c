/** `lmstrix list`: the registry as a table (or `{ "models": [...] }` with `--json`). */

import { appliedSummaries, type AppliedSummary } from "../apply/applied_store.ts";
import { UsageError } from "../errors.ts";
import { compareIds } from "../ids.ts";
import type { LMStrix } from "../lmstrix.ts";
import { reductionPercent } from "../lmstrix.ts";
import { displayText, type Output, type Styles } from "../output.ts";
import {
  type ModelRecord,
  shownStatus,
  type StaleResults,
  toContractJson,
} from "../registry/model_record.ts";
import {
  contextBar,
  formatBytes,
  formatPercent,
  formatTokens,
  MIN_NAME_WIDTH,
  shortenMiddle,
  visibleWidth,
} from "./format.ts";
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
export function atLeast(record: Pick<ModelRecord, "cappedAt">, tokens: number | null): string {
  const text = formatTokens(tokens);
  return tokens !== null && tokens === record.cappedAt ? `≥${text}` : text;
}

/** The results of an earlier file, while the model waits to be tested again; else undefined. */
export function staleResults(record: ModelRecord): StaleResults | undefined {
  return record.status === "untested" ? record.stale : undefined;
}

/** A limit's cell: the measured value, or a stale one in parentheses. */
function limitCell(record: ModelRecord, key: "loadableContext" | "workingContext"): string {
  const stale = staleResults(record);
  if (stale !== undefined && stale[key] !== null) return `(${formatTokens(stale[key])})`;
  return atLeast(record, record[key]);
}

/**
 * The reduction from declared to working context; none when the working context is only a lower
 * bound (the `--max-context` cap stopped the test), since the true reduction may be smaller.
 */
export function shownReduction(record: ModelRecord): number | null {
  if (record.cappedAt !== undefined && record.workingContext === record.cappedAt) return null;
  return reductionPercent(record.declaredContext, record.workingContext);
}

/** Cells of the context bar. */
const BAR_WIDTH = 10;

/** Rows rendered at a time: the table library's cost grows faster than its row count. */
const BATCH_ROWS = 250;

/** Before leaving out a column, model names are shortened down to this many columns. */
const COMFORTABLE_NAME_WIDTH = 24;

/** The narrowest a name gets when nothing else can give way. */
const LAST_RESORT_NAME_WIDTH = 5;

interface Column {
  head: string;
  align: "left" | "right";
  /** Left out first when 1, then 2, then 3, to fit the width; never when undefined. */
  optional?: number;
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

/** The legend of the context bar, in the bar's own characters. */
export function barLegend(unicode: boolean): string {
  return unicode
    ? "context: █ working  ▒ loadable  · declared"
    : "context: # working  + loadable  . declared";
}

/** Options of {@linkcode renderList}. */
export interface RenderListOptions {
  /** Stops rendering (a signal): the rows done so far are returned. */
  signal?: AbortSignal | undefined;
  /** What `apply` wrote for each model; with any, an "applied" column says if it is current. */
  applied?: ReadonlyMap<string, AppliedSummary>;
  /** The sort key: its column stays, whatever the width. */
  sortedBy?: SortKey;
}

/**
 * Renders the table `list` prints: box-drawn with a bar per model on a terminal (`fancy`),
 * plain aligned text otherwise. Given a `width`, model names are shortened from the middle and
 * the reduction (the bar shows it), then the size, then the bar are left out until the table fits
 * (names stay at least {@linkcode MIN_NAME_WIDTH} wide before the bar goes, and while anything
 * else can give way); numbers and statuses are never cut. The column the rows are sorted by is
 * never left out (`sortedBy`), so that the order can be seen.
 *
 * Column widths are worked out once, then the rows are rendered in batches with those widths:
 * time grows with the number of models, not its square, and a signal can stop a long listing.
 */
export async function renderList(
  records: ModelRecord[],
  output: Output,
  fancy: boolean,
  width?: number,
  options: RenderListOptions = {},
): Promise<string> {
  // Loaded here, not at start-up: `list --json` and the other commands never need it.
  const { default: Table } = await import("cli-table3");
  const s = output.style;
  const columns = listColumns(s, fancy, options.applied ?? new Map<string, AppliedSummary>())
    .map(({ optional, ...c }) =>
      c.head === options.sortedBy || optional === undefined ? c : { ...c, optional }
    );
  // Every cell once; widths from what the terminal shows.
  const cells = records.map((r) => columns.map((c) => c.cell(r)));
  const contentWidths = columns.map((c, i) =>
    cells.reduce((max, row) => Math.max(max, visibleWidth(row[i]!)), visibleWidth(c.head))
  );
  const layout = fitLayout(columns, contentWidths, fancy, width);
  const { kept, nameWidth } = layout;
  const head = (i: number) =>
    i === 0 ? shortenMiddle(columns[0]!.head, nameWidth) : columns[i]!.head;
  const makeTable = (withHead: boolean) =>
    new Table({
      ...(withHead ? { head: kept.map((i) => s.bold(head(i))) } : {}),
      colWidths: kept.map((i) =>
        (i === 0 ? nameWidth : contentWidths[i]!) + layout.padLeft + layout.padRight
      ),
      style: {
        head: [],
        border: [],
        compact: true,
        "padding-left": layout.padLeft,
        "padding-right": layout.padRight,
      },
      colAligns: kept.map((i) => columns[i]!.align),
      ...(fancy ? {} : { chars: NO_BORDER }),
    });
  const lines = await renderBatches(cells, layout, fancy, makeTable, options.signal);
  let text = lines.join("\n");
  // The legend is for people; piped output stays one header and one line per model.
  if (layout.dropped === 0 && fancy) text += `\n${s.dim(barLegend(true))}`;
  // The plain table's rows carry trailing padding; scripts diff this text.
  return fancy ? text : text.split("\n").map((line) => line.trimEnd()).join("\n");
}

/** The table's columns, in order; the "applied" column only once something is applied. */
function listColumns(
  s: Styles,
  fancy: boolean,
  applied: ReadonlyMap<string, AppliedSummary>,
): Column[] {
  const statusColour = (status: string) =>
    status === "tested"
      ? s.green(status)
      : status === "failed"
      ? s.red(status)
      : status === "testing"
      ? s.yellow(status)
      : s.dim(status);
  return [
    { head: "model", align: "left", cell: (r) => displayText(r.id) },
    { head: "declared", align: "right", cell: (r) => formatTokens(r.declaredContext) },
    { head: "loadable", align: "right", cell: (r) => limitCell(r, "loadableContext") },
    { head: "working", align: "right", cell: (r) => limitCell(r, "workingContext") },
    {
      head: "reduction",
      align: "right",
      optional: 1,
      cell: (r) => formatPercent(shownReduction(r)),
    },
    {
      head: "status",
      align: "left",
      // Embedding models are never tested: `skipped`, as in --json, never "untested".
      cell: (r) =>
        shownStatus(r) === "skipped"
          ? s.dim("skipped")
          : staleResults(r) !== undefined
          ? s.yellow("stale")
          : statusColour(r.status),
    },
    // Whether LM Studio's default is still the tested value.
    ...(applied.size === 0 ? [] : [{
      head: "applied",
      align: "left" as const,
      cell: (r: ModelRecord) => {
        const state = applied.get(r.id)?.state;
        return state === "current" ? "yes" : state === "stale" ? s.yellow("stale") : "";
      },
    }]),
    { head: "size", align: "right", optional: 2, cell: (r) => formatBytes(r.sizeBytes) },
    // The bar goes last: it is what the table shows that the numbers alone do not.
    {
      head: "context",
      align: "left",
      optional: 3,
      cell: (r) =>
        r.type === "embedding"
          ? ""
          : contextBar(r.declaredContext, r.loadableContext, r.workingContext, BAR_WIDTH, fancy),
    },
  ];
}

/** How the table fits its width. */
interface Layout {
  /** The indexes of the columns shown. */
  kept: number[];
  /** How many optional columns were left out (levels 1 to 3). */
  dropped: number;
  /** The model column's width, names shortened to it. */
  nameWidth: number;
  padLeft: number;
  padRight: number;
}

/**
 * Leaves out the optional columns and shortens the names until the table fits `width`: first at
 * a comfortable name width, then at the minimum, then at the last resort, each time trying with
 * fewer optional columns before a narrower name.
 */
function fitLayout(
  columns: Column[],
  contentWidths: number[],
  fancy: boolean,
  width: number | undefined,
): Layout {
  const [padLeft, padRight] = fancy ? [1, 1] : [0, 2];
  const nameContent = contentWidths[0]!;
  const keptAt = (level: number) =>
    columns.flatMap((c, i) => (c.optional === undefined || c.optional > level ? [i] : []));
  const layout = (dropped: number, nameWidth: number): Layout => ({
    kept: keptAt(dropped),
    dropped,
    nameWidth,
    padLeft,
    padRight,
  });
  if (width === undefined) return layout(0, nameContent);
  const othersWidth = (kept: number[]) =>
    kept.reduce(
      (sum, i) => sum + (i === 0 ? 0 : contentWidths[i]!) + padLeft + padRight,
      fancy ? kept.length + 1 : -padRight,
    );
  // Names shorten to the minimum before the bar (level 3) goes. A narrow terminal (60 columns,
  // a million-token model) may leave less than the minimum: the name gives way before any number.
  const tries: [number, number[]][] = [
    [COMFORTABLE_NAME_WIDTH, [0, 1, 2]],
    [MIN_NAME_WIDTH, [0, 1, 2]],
    [COMFORTABLE_NAME_WIDTH, [3]],
    [MIN_NAME_WIDTH, [3]],
    [LAST_RESORT_NAME_WIDTH, [0, 1, 2, 3]],
  ];
  for (const [floor, levels] of tries) {
    for (const level of levels) {
      const room = width - othersWidth(keptAt(level));
      if (room >= Math.min(floor, nameContent)) return layout(level, Math.min(room, nameContent));
    }
  }
  return layout(3, Math.min(LAST_RESORT_NAME_WIDTH, nameContent));
}

/** What the batches need of a cli-table3 table. */
interface RowTable {
  push(...rows: string[][]): unknown;
  toString(): string;
}

/**
 * The table's lines, rendered `BATCH_ROWS` rows at a time into tables of the same widths that
 * join into one; a signal stops between batches.
 */
async function renderBatches(
  cells: string[][],
  layout: Layout,
  fancy: boolean,
  makeTable: (withHead: boolean) => RowTable,
  signal: AbortSignal | undefined,
): Promise<string[]> {
  const parts: string[] = [];
  const batches = Math.max(1, Math.ceil(cells.length / BATCH_ROWS));
  for (let batch = 0; batch < batches; batch++) {
    if (batch > 0) {
      // Let a signal through between batches: a listing of 100,000 models can be stopped.
      await new Promise((resolve) => setTimeout(resolve, 0));
      if (signal?.aborted) break;
    }
    const table = makeTable(batch === 0);
    for (const row of cells.slice(batch * BATCH_ROWS, (batch + 1) * BATCH_ROWS)) {
      const shown = layout.kept.map((i) => row[i]!);
      shown[0] = shortenMiddle(shown[0]!, layout.nameWidth);
      table.push(shown);
    }
    let lines = table.toString().split("\n");
    // Batches join into one table: no border between them.
    if (fancy && batch > 0) lines = lines.slice(1);
    if (fancy && batch < batches - 1) lines = lines.slice(0, -1);
    parts.push(...lines);
  }
  return parts;
}

/** Runs `list`; `signal` (an interrupt) stops a long listing between batches of rows. */
export async function runList(
  lmstrix: LMStrix,
  output: Output,
  options: ListOptions,
  signal?: AbortSignal,
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
    // Beside the contract's fields, what the last test measured of each model's costs, and what
    // `apply` wrote into LM Studio's defaults (and whether it is still the tested value).
    const applied = appliedSummaries(lmstrix.paths, records, (m) => output.warn(m));
    output.document({
      models: records.map((r) => {
        const a = applied.get(r.id);
        return {
          ...toContractJson(r),
          costs: r.costs ?? null,
          applied: a ? { contextLength: a.contextLength, current: a.state === "current" } : null,
        };
      }),
    });
    return 0;
  }
  if (records.length === 0) {
    output.info('The registry is empty: run "lmstrix scan" to discover the models in LM Studio.');
    return 0;
  }
  const applied = appliedSummaries(lmstrix.paths, records, (m) => output.warn(m));
  const fancy = output.stdout.isTerminal;
  const text = await renderList(records, output, fancy, output.columns, {
    signal,
    applied,
    sortedBy: key,
  });
  if (signal?.aborted) return 0; // main.ts turns the interrupt into its exit code.
  output.data(text);
  // Piped, the table stays one header and one line a model; the bar's legend goes to stderr.
  if (!fancy && !signal?.aborted && text.split("\n", 1)[0]!.includes("context")) {
    output.info(barLegend(false));
  }
  return 0;
}
