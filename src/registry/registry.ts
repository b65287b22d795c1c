/**
 * The model registry: `<lmstudio-dir>/lmstrix/models.json`, how it is read, written and searched
 * (a scan is merged into it by `scan_merge.ts`).
 *
 * File format: `{ "schemaVersion": 1, "updatedAt": "<ISO 8601>", "models": { "<id>": record } }`
 * with models sorted by id for stable diffs. Loading never changes the file; a damaged file, a
 * wrong shape or a newer schema throws {@linkcode RegistryError} so nothing overwrites what this
 * version does not understand. One damaged record does not make the file unreadable: it is
 * quarantined (left out of every command, named in a warning) and written back as it was, until a
 * scan that finds the model replaces it. Unknown keys (top level and in records) are kept and
 * written back. Saving is atomic: temp file in the same directory, fsync, rename over the old
 * file. Error messages say where a file is damaged, never what it holds.
 *
 * Model ids are keys of prototype-free objects ({@linkcode dictionary}): a model may be called
 * `constructor` or `__proto__`.
 *
 * @module
 */

import { dirname } from "node:path";
import {
  AmbiguousModelError,
  errorText,
  ModelNotFoundError,
  RegistryError,
  UsageError,
} from "../errors.ts";
import { compareIds } from "../ids.ts";
import { dictionary, isObject, jsonSyntaxProblem } from "../json.ts";
import type { LmstrixPaths } from "../paths.ts";
import { writeFileAtomic } from "./atomic_write.ts";
import { readLmsm } from "./lmsm_import.ts";
import { MAX_DECLARED_CONTEXT } from "./scan_merge.ts";
import { MODEL_STATUSES, type ModelRecord } from "./model_record.ts";

export type { ScannedModel } from "./model_record.ts";

/** The newest registry schema this version reads and the one it writes. */
export const SCHEMA_VERSION = 1;

/** The registry in memory. */
export interface Registry {
  /** Always {@linkcode SCHEMA_VERSION} once loaded. */
  schemaVersion: number;
  /** When the registry was last saved, or null if never. */
  updatedAt: string | null;
  /** Records by model id (a prototype-free object: see {@linkcode dictionary}). */
  models: Record<string, ModelRecord>;
  /**
   * Stored records that are damaged, by id, as they were read: left out of `models`, written back
   * unchanged until a scan replaces them.
   */
  quarantined?: Record<string, QuarantinedRecord>;
  /** Top-level keys this version does not know, kept so saving does not drop them. */
  extra?: Record<string, unknown>;
  /** Set (in memory only, never saved) when this registry was just imported from lmsm.json. */
  importedFrom?: string;
}

/** A stored record the reader could not take, kept as it was read. */
export interface QuarantinedRecord {
  /** What is wrong with it, e.g. `has "sizeBytes" that is not a whole number`. */
  problem: string;
  /** The record as the file holds it. */
  raw: unknown;
}

/** Model counts for `status`. See {@linkcode statusCounts} for what is counted where. */
export interface StatusCounts {
  /** LLMs present in LM Studio: untested + testing + tested + failed. */
  total: number;
  /** Present LLMs never tested (or whose test was reset). */
  untested: number;
  /** Present LLMs with a test under way or interrupted. */
  testing: number;
  /** Present LLMs with results. */
  tested: number;
  /** Present LLMs whose last test failed. */
  failed: number;
  /** Models (of any type) the last scan did not find; not in `total`. */
  missing: number;
  /** Embedding models present in LM Studio; never tested, not in `total`. */
  embeddings: number;
}

/** Options of {@linkcode saveRegistry}. */
export interface SaveRegistryOptions {
  /** The clock that stamps `updatedAt` (default: `new Date()`). */
  now?: () => Date;
}

/** An empty registry. */
export function emptyRegistry(): Registry {
  return { schemaVersion: SCHEMA_VERSION, updatedAt: null, models: dictionary() };
}

/**
 * Reads the registry. A missing file gives an empty registry, or the models imported from
 * `paths.lmsm` when that exists (then `importedFrom` is set; nothing is written). Throws
 * {@linkcode RegistryError} for a file that cannot be read or understood, and leaves it as it is.
 */
export async function loadRegistry(
  paths: Pick<LmstrixPaths, "registry" | "lmsm">,
): Promise<Registry> {
  const file = paths.registry;
  let text: string;
  try {
    // Synchronous on purpose: one small read, and start-up time matters for `list`.
    text = Deno.readTextFileSync(file);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) {
      throw new RegistryError(`Cannot read the registry "${file}": ${errorText(error)}`, {
        path: file,
        hint: "check the file's permissions and the --lmstudio-dir in use",
        cause: error,
      });
    }
    const imported = await readLmsm(paths.lmsm);
    const registry = emptyRegistry();
    if (imported !== null) {
      for (const record of imported) registry.models[record.id] = record;
      registry.importedFrom = paths.lmsm;
    }
    return registry;
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw damaged(file, jsonSyntaxProblem(error, text));
  }
  return parseRegistry(data, file);
}

/**
 * Checks parsed registry content and returns it as a {@linkcode Registry}. `file` names the
 * file in errors. Throws {@linkcode RegistryError} for a wrong shape or a newer schema.
 */
export function parseRegistry(data: unknown, file: string): Registry {
  if (!isObject(data)) throw damaged(file, "it is not a JSON object");
  const version = data["schemaVersion"];
  if (typeof version !== "number" || !Number.isSafeInteger(version) || version < 1) {
    throw damaged(file, `"schemaVersion" is ${JSON.stringify(version) ?? "missing"}`);
  }
  if (version > SCHEMA_VERSION) {
    throw new RegistryError(
      `Cannot read the registry "${file}": it has schema version ${version}, and this lmstrix ` +
        `reads up to version ${SCHEMA_VERSION}`,
      { path: file, hint: "upgrade lmstrix, or pass another --lmstudio-dir" },
    );
  }
  const updatedAt = data["updatedAt"];
  if (updatedAt !== null && updatedAt !== undefined && typeof updatedAt !== "string") {
    throw damaged(file, `"updatedAt" is not a string`);
  }
  const models = data["models"];
  if (!isObject(models)) throw damaged(file, `"models" is not an object`);
  const registry: Registry = {
    schemaVersion: SCHEMA_VERSION,
    updatedAt: updatedAt ?? null,
    models: dictionary(),
  };
  for (const [id, record] of Object.entries(models)) {
    const problem = recordProblem(id, record);
    if (problem === null) {
      registry.models[id] = record as unknown as ModelRecord;
    } else {
      registry.quarantined ??= dictionary();
      registry.quarantined[id] = { problem, raw: record };
    }
  }
  const extra = Object.fromEntries(
    Object.entries(data).filter(([key]) => !KNOWN_TOP_LEVEL_KEYS.has(key)),
  );
  if (Object.keys(extra).length > 0) registry.extra = extra;
  return registry;
}

/**
 * Writes the registry atomically: a temp file in the same directory, fsync, rename over the old
 * file, so a reader sees the old or the new registry, never half of one. Creates the directory if
 * needed, stamps `updatedAt`, and sorts the models by id.
 */
export async function saveRegistry(
  paths: Pick<LmstrixPaths, "registry">,
  registry: Registry,
  options: SaveRegistryOptions = {},
): Promise<void> {
  const file = paths.registry;
  const dir = dirname(file);
  const updatedAt = (options.now ?? (() => new Date()))().toISOString();
  // Damaged records go back as they were, unless a valid record (a scan's) replaced them.
  const models = dictionary<unknown>();
  const quarantined = registry.quarantined ?? dictionary<QuarantinedRecord>();
  const ids = new Set([...Object.keys(registry.models), ...Object.keys(quarantined)]);
  for (const id of [...ids].sort(compareIds)) {
    models[id] = registry.models[id] ?? quarantined[id]!.raw;
  }
  const text = JSON.stringify(
    { ...registry.extra, schemaVersion: SCHEMA_VERSION, updatedAt, models },
    null,
    2,
  ) + "\n";

  await Deno.mkdir(dir, { recursive: true });
  await writeFileAtomic(file, text);
  registry.schemaVersion = SCHEMA_VERSION;
  registry.updatedAt = updatedAt;
  delete registry.importedFrom;
}

/**
 * Finds the model the user means by `query`: the exact id; else the one id equal to it ignoring
 * case; else the one id whose last `/` part equals it ignoring case; else the one id that
 * contains it ignoring case. Throws {@linkcode AmbiguousModelError} (a
 * {@linkcode ModelNotFoundError}) naming the candidates when several match,
 * {@linkcode ModelNotFoundError} with near misses when none does, and {@linkcode UsageError}
 * for an empty query.
 */
export function findModel(registry: Registry, query: string): ModelRecord {
  const wanted = query.trim();
  if (wanted === "") {
    throw new UsageError("The model name is empty", {
      hint: 'pass a model id or a part of one; "lmstrix list" shows them',
    });
  }
  const exact = Object.hasOwn(registry.models, wanted) ? registry.models[wanted] : undefined;
  if (exact !== undefined) return exact;

  const ids = Object.keys(registry.models).sort(compareIds);
  const lower = wanted.toLowerCase();
  const rules: ((id: string) => boolean)[] = [
    (id) => id.toLowerCase() === lower,
    (id) => (id.split("/").pop() ?? id).toLowerCase() === lower,
    (id) => id.toLowerCase().includes(lower),
  ];
  for (const rule of rules) {
    const matches = ids.filter(rule);
    if (matches.length === 1) return registry.models[matches[0]!]!;
    if (matches.length > 1) throw new AmbiguousModelError(wanted, matches);
  }
  throw new ModelNotFoundError(wanted, nearMisses(ids, lower));
}

/**
 * Counts models for `status`. `total` is the LLMs present in LM Studio, so that
 * `total = untested + testing + tested + failed`; models gone missing and embedding models
 * (never tested) are counted apart in `missing` and `embeddings`.
 */
export function statusCounts(registry: Registry): StatusCounts {
  const counts: StatusCounts = {
    total: 0,
    untested: 0,
    testing: 0,
    tested: 0,
    failed: 0,
    missing: 0,
    embeddings: 0,
  };
  for (const record of Object.values(registry.models)) {
    if (record.status === "missing") counts.missing++;
    else if (record.type === "embedding") counts.embeddings++;
    else {
      counts.total++;
      counts[record.status]++;
    }
  }
  return counts;
}

const KNOWN_TOP_LEVEL_KEYS = new Set(["schemaVersion", "updatedAt", "models"]);

/** Says what is wrong with a stored record, or null when it has the shape of a ModelRecord. */
/**
 * Says what is wrong with a stored record, or null when it has the shape of a ModelRecord.
 * Written out check by check: it runs for every record on every read, before anything is
 * compiled, and closures or tables of checks cost several times more at start-up.
 */
function recordProblem(id: string, record: unknown): string | null {
  if (!isObject(record)) return "is not an object";
  const r = record;
  if (r["id"] !== id) return `has "id" ${JSON.stringify(r["id"]) ?? "missing"}`;
  const bad = (key: string, expected: string) => `has "${key}" that is not ${expected}`;
  if (typeof r["path"] !== "string") return bad("path", "a string");
  if (!isCount(r["sizeBytes"])) return bad("sizeBytes", "a whole number");
  if (typeof r["architecture"] !== "string") return bad("architecture", "a string");
  if (!isCount(r["declaredContext"])) return bad("declaredContext", "a whole number");
  if (r["loadableContext"] !== null && !isCount(r["loadableContext"])) {
    return bad("loadableContext", "a whole number or null");
  }
  if (r["workingContext"] !== null && !isCount(r["workingContext"])) {
    return bad("workingContext", "a whole number or null");
  }
  if (!(MODEL_STATUSES as readonly unknown[]).includes(r["status"])) {
    return bad("status", "a known status");
  }
  if (r["testedAt"] !== null && typeof r["testedAt"] !== "string") {
    return bad("testedAt", "a string or null");
  }
  if (r["error"] !== null && typeof r["error"] !== "string") {
    return bad("error", "a string or null");
  }
  if (r["type"] !== "llm" && r["type"] !== "embedding") return bad("type", `"llm" or "embedding"`);
  return invariantProblem(r) ?? optionalFieldProblem(r);
}

/**
 * What breaks the numbers' order: no model declares more than {@linkcode MAX_DECLARED_CONTEXT}
 * tokens (a scan keeps such a listing as failed with 0), the search never loads above the
 * declared context, and the working context is found at or below the loadable one. A record
 * that says otherwise was edited by hand or damaged, and `list` would print nonsense for it.
 */
function invariantProblem(r: Record<string, unknown>): string | null {
  const declared = r["declaredContext"] as number;
  const loadable = r["loadableContext"] as number | null;
  const working = r["workingContext"] as number | null;
  if (declared > MAX_DECLARED_CONTEXT) {
    return `has "declaredContext" that is not at most ${MAX_DECLARED_CONTEXT}`;
  }
  if (loadable !== null && loadable > declared) {
    return `has "loadableContext" ${loadable} above its "declaredContext" ${declared}`;
  }
  if (working !== null && loadable !== null && working > loadable) {
    return `has "workingContext" ${working} above its "loadableContext" ${loadable}`;
  }
  return null;
}

/** The optional fields that `list` and `show` print, when present, must have their types. */
function optionalFieldProblem(r: Record<string, unknown>): string | null {
  const bad = (key: string, expected: string) => `has "${key}" that is not ${expected}`;
  for (const key of ["displayName", "format", "quantization", "paramsString", "retestPending"]) {
    if (r[key] !== undefined && typeof r[key] !== "string") return bad(key, "a string");
  }
  for (const key of ["cappedAt", "precision"]) {
    if (r[key] !== undefined && !isCount(r[key])) return bad(key, "a whole number");
  }
  for (const key of ["missingSince", "listingProblem"]) {
    if (r[key] !== undefined && r[key] !== null && typeof r[key] !== "string") {
      return bad(key, "a string or null");
    }
  }
  if (r["stale"] !== undefined && !isObject(r["stale"])) return bad("stale", "an object");
  if (r["costs"] !== undefined && !isCosts(r["costs"])) return bad("costs", "the costs' shape");
  return null;
}

/** Whether `value` has the shape of {@linkcode ModelCosts} (numbers or null, a plan). */
function isCosts(value: unknown): boolean {
  if (!isObject(value) || typeof value["plan"] !== "string") return false;
  const numberOrNull = (x: unknown) => x === undefined || x === null || Number.isFinite(x);
  return [
    "loadSeconds",
    "refusalSeconds",
    "checkSeconds",
    "prefillTokensPerSec",
    "prefillMeasuredAt",
  ]
    .every((key) => numberOrNull(value[key])) &&
    (value["promptCache"] === undefined || value["promptCache"] === null ||
      typeof value["promptCache"] === "boolean") &&
    isCurve(value["prefillCurve"]);
}

/** A fitted prefill curve as costs keep it, or none. */
function isCurve(value: unknown): boolean {
  if (value === undefined || value === null) return true;
  return isObject(value) && typeof value["doublingMeasured"] === "boolean" &&
    ["secondsPerToken", "doublingTokens", "overheadSeconds", "samples"].every((key) =>
      Number.isFinite(value[key])
    );
}

function nearMisses(ids: string[], lower: string): string[] {
  const limit = Math.max(2, Math.floor(lower.length / 3));
  return ids
    .map((id) => {
      const name = (id.split("/").pop() ?? id).toLowerCase();
      return { id, distance: Math.min(editDistance(lower, name), editDistance(lower, id)) };
    })
    .filter((entry) => entry.distance <= limit)
    .sort((a, b) => a.distance - b.distance || compareIds(a.id, b.id))
    .map((entry) => entry.id);
}

/** Levenshtein distance; the inputs are model ids, so the quadratic cost is small. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j]! + 1, current[j - 1]! + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length]!;
}

function damaged(file: string, reason: string, cause?: unknown): RegistryError {
  return new RegistryError(`Cannot read the registry "${file}": ${reason}`, {
    path: file,
    hint: 'lmstrix leaves it untouched: fix it or move it aside, then run "lmstrix scan"',
    ...(cause === undefined ? {} : { cause }),
  });
}

function isCount(value: unknown): boolean {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}
