/**
 * Imports `<lmstudio-dir>/lmsm.json`, the registry of the older Python tools, into model records.
 *
 * Two generations of that file exist, both `{"path": "...", "llms": {"<model key>": {...}}}`:
 * - the original `lmsm` script stored `id, path, size_bytes, ctx_in, ctx_out, has_tools,
 *   has_vision, failed, error_msg` (`failed` meant LM Studio could not describe the model);
 * - the Python LMStrix added `tested_max_context` (largest context that answered correctly),
 *   `loadable_max_context`, `context_test_status` ("untested" | "testing" | "completed" |
 *   "failed"), `context_test_date`, `last_known_good_context`, `last_known_bad_context`.
 *
 * Mapping: `ctx_in` -> declaredContext, `size_bytes` -> sizeBytes; a "completed" test with a
 * `tested_max_context` becomes `tested` (working = tested_max_context, loadable =
 * loadable_max_context or null when it was never stored); "failed" (or the old `failed: true`)
 * becomes `failed` with its `error_msg`; an interrupted "testing" and everything else becomes
 * `untested`, since no search state survives the import. Every imported model is an LLM.
 *
 * @module
 */

import { errorText, RegistryError } from "../errors.ts";
import { isObject, jsonSyntaxProblem } from "../json.ts";
import { type ModelRecord, newModelRecord } from "./model_record.ts";

/** The error text of a failed model whose lmsm.json entry gave no reason. */
const UNKNOWN_FAILURE = "Failed in an earlier tool (lmsm.json gave no reason)";

/**
 * Reads lmsm.json at `path`. Returns null when the file does not exist; throws
 * {@linkcode RegistryError} when it cannot be read or is not the expected shape.
 */
export async function readLmsm(path: string): Promise<ModelRecord[] | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw new RegistryError(`Cannot read "${path}": ${errorText(error)}`, {
      path,
      hint: "check the file's permissions, or move it aside to start with an empty registry",
      cause: error,
    });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new RegistryError(`Cannot import "${path}": ${jsonSyntaxProblem(error, text)}`, {
      path,
      hint: "fix the file, or move it aside to start with an empty registry",
      cause: error,
    });
  }
  return parseLmsm(data, path);
}

/**
 * Turns parsed lmsm.json content into model records sorted by id. `path` names the file in
 * errors. Throws {@linkcode RegistryError} when `data` is not `{"llms": {key: {...}}}`.
 */
export function parseLmsm(data: unknown, path: string): ModelRecord[] {
  const llms = isObject(data) ? data["llms"] : undefined;
  if (!isObject(llms)) {
    throw new RegistryError(`Cannot import "${path}": it has no "llms" object`, {
      path,
      hint: "move the file aside to start with an empty registry",
    });
  }
  const records: ModelRecord[] = [];
  for (const [key, entry] of Object.entries(llms)) {
    if (!isObject(entry)) {
      throw new RegistryError(`Cannot import "${path}": the entry "${key}" is not an object`, {
        path,
        hint: "fix or remove that entry, or move the file aside to start with an empty registry",
      });
    }
    records.push(importEntry(key, entry));
  }
  return records.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function importEntry(key: string, entry: Record<string, unknown>): ModelRecord {
  const record = newModelRecord({
    id: key,
    path: typeof entry["path"] === "string" ? entry["path"] : "",
    sizeBytes: count(entry["size_bytes"]) ?? 0,
    architecture: typeof entry["architecture"] === "string" ? entry["architecture"] : "",
    declaredContext: count(entry["ctx_in"]) ?? 0,
    type: "llm",
  });
  const testStatus = entry["context_test_status"];
  const working = positive(entry["tested_max_context"]);
  const loadable = positive(entry["loadable_max_context"]);
  const testedAt = isoDate(entry["context_test_date"]);
  const errorMsg = typeof entry["error_msg"] === "string" && entry["error_msg"].trim() !== ""
    ? entry["error_msg"].trim()
    : null;

  if (testStatus === "completed" && working !== null) {
    record.status = "tested";
    record.workingContext = working;
    // A working context can never exceed the loadable one; keep the pair consistent.
    record.loadableContext = loadable !== null && loadable >= working ? loadable : null;
    record.testedAt = testedAt;
  } else if (testStatus === "failed" || entry["failed"] === true) {
    record.status = "failed";
    record.loadableContext = loadable;
    record.testedAt = testedAt;
    record.error = errorMsg ?? UNKNOWN_FAILURE;
  }
  return record;
}

function count(value: unknown): number | null {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0 ? value : null;
}

function positive(value: unknown): number | null {
  const n = count(value);
  return n !== null && n > 0 ? n : null;
}

/** Keeps the stored date when it parses (Python wrote ISO 8601, often without an offset). */
function isoDate(value: unknown): string | null {
  return typeof value === "string" && !Number.isNaN(Date.parse(value)) ? value : null;
}
