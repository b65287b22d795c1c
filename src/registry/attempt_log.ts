/**
 * Per-model attempt logs: `context_tests/<file-safe id>_context_test.log`, one JSON object a
 * line, one line per attempt, appended as the search goes.
 *
 * A crash can cut the last line short. Appending first ends such a line, so the damage stays in
 * that one line, and reading skips lines that are not attempt entries.
 *
 * @module
 */

import { join } from "node:path";
import { isObject } from "../json.ts";
import type { LmstrixPaths } from "../paths.ts";
import { legacyLogFileFor, logFileFor } from "../paths.ts";
import type { Attempt } from "../search/context_search.ts";
import { writeAll } from "../write_all.ts";
import { openNoFollow, refuseLinkBelow } from "./no_follow.ts";

/** One attempt of a context search, as one line of the log. */
export interface AttemptLogEntry {
  /** When the attempt ended (ISO 8601, UTC). */
  time: string;
  /** The model's id. */
  model: string;
  /** Which limit the attempt was about. */
  phase: Attempt["phase"];
  /** What was done. */
  action: Attempt["action"];
  /** The load size asked for, or the loaded size of a sanity or needle probe. */
  askedContext: number;
  /** The context LM Studio reported after a load, or null. */
  actualContext: number | null;
  /** The prompt's length in tokens, or null. */
  promptTokens: number | null;
  /** What happened. */
  outcome: Attempt["outcome"];
  /** An excerpt of the completion or of the refusal, or null. */
  output: string | null;
  /** How long the call took, retries included. */
  durationMs: number;
  /** Faults absorbed by retries. */
  retries: number;
  /** The error that ended the call, or null. */
  error: string | null;
  /** The search's plan, when this attempt's measurements changed it (one sentence). */
  decision?: string;
  /** For a needle probe: the value the needle held, which a passing answer contains. */
  expected?: string | null;
}

/**
 * The line that opens one run's attempts of a model: which run, whether it resumed, and with
 * what settings, so that a log read later tells runs apart. Readers of attempts skip it.
 */
export interface RunStartEntry {
  /** When the run started on this model (ISO 8601, UTC). */
  time: string;
  /** The model's id. */
  model: string;
  /** Always "run-start". */
  event: "run-start";
  /** The run's id, also in the names of the instances it loads. */
  run: string;
  /** Whether the run went on with a search an earlier run left. */
  resumed: boolean;
  /** The search's settings: declared, minContext, maxContext, precision, reserve. */
  config: Record<string, number>;
}

const PHASES: readonly string[] = ["loadable", "working", "confirm"];
const ACTIONS: readonly string[] = ["load", "check", "sanity", "needle"];
const OUTCOMES: readonly string[] = [
  "loaded",
  "fitted",
  "refused",
  "started",
  "pass",
  "fail",
  "crashed",
];

/** Appends `entry` as one JSON line to the attempt log of `modelId`, creating what is missing. */
export async function appendAttempt(
  paths: Pick<LmstrixPaths, "logsDir">,
  modelId: string,
  entry: AttemptLogEntry | RunStartEntry,
): Promise<void> {
  const file = logFileFor(paths, modelId);
  // The folder itself must not be a link either (`context_tests` -> somewhere else).
  await refuseLinkBelow(join(paths.logsDir, ".."), paths.logsDir);
  await Deno.mkdir(paths.logsDir, { recursive: true });
  await refuseLinkBelow(join(paths.logsDir, ".."), paths.logsDir);
  const line = JSON.stringify(entry) + "\n";
  const handle = await openNoFollow(file, { append: true, create: true, read: true });
  try {
    const prefix = (await endsWithoutNewline(handle)) ? "\n" : "";
    await writeAll(handle, new TextEncoder().encode(prefix + line));
  } finally {
    handle.close();
  }
}

/**
 * Reads the attempt log of `modelId`, oldest first: every line that is an attempt entry. A
 * missing log gives an empty list. The entries an older version wrote under its file name for
 * the model (which another model may share) come first, those that name this model only.
 */
export async function readAttempts(
  paths: Pick<LmstrixPaths, "logsDir">,
  modelId: string,
): Promise<AttemptLogEntry[]> {
  const legacy = legacyLogFileFor(paths, modelId);
  const older = legacy === undefined ? [] : await readLog(legacy);
  return [
    ...older.filter((entry) => entry.model === modelId),
    ...await readLog(
      logFileFor(paths, modelId),
    ),
  ];
}

/**
 * The attempt log file to name for `modelId`: this version's, or, when only an older version
 * wrote one (under its name, see {@linkcode readAttempts}), that one.
 */
export async function logFileToShow(
  paths: Pick<LmstrixPaths, "logsDir">,
  modelId: string,
): Promise<string> {
  const file = logFileFor(paths, modelId);
  const legacy = legacyLogFileFor(paths, modelId);
  if (legacy === undefined) return file;
  const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);
  return !(await exists(file)) && await exists(legacy) ? legacy : file;
}

async function readLog(file: string): Promise<AttemptLogEntry[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  const entries: AttemptLogEntry[] = [];
  for (const line of text.split("\n")) {
    const entry = parseAttemptLine(line);
    if (entry) entries.push(entry);
  }
  return entries;
}

/**
 * One log line as an entry, or undefined for a line that is not one (blank, cut short by a crash,
 * or written by a newer version in a shape this one does not know).
 */
export function parseAttemptLine(line: string): AttemptLogEntry | undefined {
  if (line.trim() === "") return undefined;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined; // A line cut short by a crash; the lines around it are intact.
  }
  if (!isObject(value)) return undefined;
  const v = value;
  const count = (x: unknown) => typeof x === "number" && Number.isFinite(x) && x >= 0;
  const countOrNull = (x: unknown) => x === null || count(x);
  const textOrNull = (x: unknown) => x === null || typeof x === "string";
  if (
    typeof v.time !== "string" || typeof v.model !== "string" ||
    !PHASES.includes(v.phase as string) || !ACTIONS.includes(v.action as string) ||
    !OUTCOMES.includes(v.outcome as string) || !count(v.askedContext) ||
    !countOrNull(v.actualContext) || !countOrNull(v.promptTokens) || !textOrNull(v.output) ||
    !count(v.durationMs) || !count(v.retries) || !textOrNull(v.error) ||
    !(v.expected === undefined || textOrNull(v.expected))
  ) return undefined;
  return value as unknown as AttemptLogEntry;
}

async function endsWithoutNewline(handle: Deno.FsFile): Promise<boolean> {
  const size = (await handle.stat()).size;
  if (size === 0) return false;
  await handle.seek(-1, Deno.SeekMode.End);
  const last = new Uint8Array(1);
  const read = await handle.read(last);
  return read === 1 && last[0] !== 0x0a;
}
