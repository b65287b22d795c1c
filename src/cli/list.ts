/** `lmstrix list`: the registry as a table (or `{ "models": [...] }` with `--json`). */

import { UsageError } from "../errors.ts";
import type { LMStrix } from "../lmstrix.ts";
import { reductionPercent } from "../lmstrix.ts";
import type { Output } from "../output.ts";
import { type ModelRecord, toContractJson } from "../registry/model_record.ts";
import { contextBar, formatBytes, formatPercent, formatTokens } from "./format.ts";

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
  return [...records].sort((a, b) => {
    const x = sortValue(a, key);
    const y = sortValue(b, key);
    const order = x < y ? -1 : x > y ? 1 : 0;
    return sign * order || a.id.localeCompare(b.id);
  });
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

/** Renders the table `list` prints; plain aligned text when `fancy` is false. */
export async function renderList(
  records: ModelRecord[],
  output: Output,
  fancy: boolean,
): Promise<string> {
  // Loaded here, not at start-up: `list --json` and the other commands never need it.
  const { default: Table } = await import("cli-table3");
  const s = output.style;
  const head = [
    "model",
    "declared",
    "loadable",
    "working",
    "reduction",
    "status",
    "size",
    "working / loadable / declared",
  ];
  const table = new Table({
    head: head.map((h) => s.bold(h)),
    style: {
      head: [],
      border: [],
      compact: true,
      "padding-left": fancy ? 1 : 0,
      "padding-right": fancy ? 1 : 2,
    },
    colAligns: ["left", "right", "right", "right", "right", "left", "right", "left"],
    ...(fancy ? {} : {
      chars: {
        top: "",
        "top-mid": "",
        "top-left": "",
        "top-right": "",
        bottom: "",
        "bottom-mid": "",
        "bottom-left": "",
        "bottom-right": "",
        left: "",
        "left-mid": "",
        mid: "",
        "mid-mid": "",
        right: "",
        "right-mid": "",
        middle: "",
      },
    }),
  });
  const statusColour = (status: string) =>
    status === "tested"
      ? s.green(status)
      : status === "failed"
      ? s.red(status)
      : status === "testing"
      ? s.yellow(status)
      : s.dim(status);
  for (const r of records) {
    const reduction = reductionPercent(r.declaredContext, r.workingContext);
    table.push([
      r.id,
      formatTokens(r.declaredContext),
      formatTokens(r.loadableContext),
      formatTokens(r.workingContext),
      formatPercent(reduction),
      statusColour(r.status),
      formatBytes(r.sizeBytes),
      r.type === "embedding"
        ? s.dim("(embedding)")
        : contextBar(r.declaredContext, r.loadableContext, r.workingContext, 16, fancy),
    ]);
  }
  const text = table.toString();
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
  const records = sortRecords(await lmstrix.records(), key, options.reverse ?? false);
  if (output.json) {
    output.document({ models: records.map(toContractJson) });
    return 0;
  }
  if (records.length === 0) {
    output.info('The registry is empty: run "lmstrix scan" to discover the models in LM Studio.');
    return 0;
  }
  output.data(await renderList(records, output, output.stdout.isTerminal));
  return 0;
}
