/**
 * The model registry: `<lmstudio-dir>/lmstrix/models.json`, how it is read, written and merged.
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
 * A scan checks what LM Studio lists before it stores it: a size or a context length that is not
 * a plausible whole number is stored as 0, and the model is kept, `failed`, with the reason.
 *
 * @module
 */

import { dirname } from "node:path";
import { AmbiguousModelError, ModelNotFoundError, RegistryError, UsageError } from "../errors.ts";
import { compareIds } from "../ids.ts";
import { dictionary, isObject, jsonSyntaxProblem } from "../json.ts";
import type { LmstrixPaths } from "../paths.ts";
import { writeFileAtomic } from "./atomic_write.ts";
import { readLmsm } from "./lmsm_import.ts";
import {
  applyScannedMetadata,
  MODEL_STATUSES,
  type ModelRecord,
  newModelRecord,
  type ScannedModel,
} from "./model_record.ts";

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

/** One known model whose listing changed in a scan. */
export interface ScanChange {
  /** The model's id. */
  id: string;
  /** What changed, e.g. `size 4.4 GiB -> 5.1 GiB`, `path a.gguf -> b.gguf`, `back in LM Studio`. */
  what: string[];
  /**
   * True when the model's file changed (path, size, format, quantization or declared context):
   * its earlier results no longer describe it and are kept as stale (see `ModelRecord.stale`).
   */
  stale: boolean;
}

/** What {@linkcode upsertScanned} changed, each list sorted by id. */
export interface ScanMerge {
  /** Models seen for the first time (now `untested`). */
  added: string[];
  /** Known models whose metadata changed or that came back after going missing. */
  updated: string[];
  /** Every model the scan did not find (now `missing`, results kept). */
  missing: string[];
  /** What changed for each model in `updated`. */
  changes: ScanChange[];
  /** Models whose listing LM Studio sent with impossible values, and what was wrong. */
  invalid: { id: string; problem: string }[];
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
 * Merges a scan into the registry (in place). New models are added `untested`; known ones get
 * the scan's metadata and keep their results; models the scan did not find become `missing`,
 * keep their results and remember their status, which they get back when a later scan finds
 * them again. A known model whose file changed (path, size, format, quantization, declared
 * context) has its results moved to `stale` and is `untested` again. A listing with impossible
 * numbers is stored with 0 in their place and the model `failed`, saying why, so that nothing
 * the reader rejects is written. Duplicate ids in `scanned`: the last one wins.
 */
export function upsertScanned(
  registry: Registry,
  scanned: ScannedModel[],
  now: Date | string = new Date(),
): ScanMerge {
  const nowIso = typeof now === "string" ? now : now.toISOString();
  const seen = new Map<string, { model: ScannedModel; problems: string[] }>();
  for (const listed of scanned) seen.set(String(listed.id), checkListing(listed));
  const merge: ScanMerge = { added: [], updated: [], missing: [], changes: [], invalid: [] };

  for (const [id, { model, problems }] of seen) {
    if (problems.length > 0) merge.invalid.push({ id, problem: problems.join("; ") });
    // A scan that finds the model replaces a damaged stored record.
    if (registry.quarantined !== undefined) delete registry.quarantined[id];
    const record = registry.models[id];
    if (record === undefined) {
      registry.models[id] = markListing(newModelRecord(model), problems);
      merge.added.push(id);
      continue;
    }
    const before = JSON.stringify(record);
    const what = listingChanges(record, model);
    const fileChanged = what.length > 0;
    if (record.status === "missing") what.push("back in LM Studio");
    applyScannedMetadata(record, model);
    if (record.status === "missing") {
      record.status = record.statusBeforeMissing ?? "untested";
    }
    delete record.statusBeforeMissing;
    delete record.missingSince;
    const stale = fileChanged && markStale(record, nowIso);
    markListing(record, problems);
    if (JSON.stringify(record) !== before) {
      merge.updated.push(id);
      merge.changes.push({ id, what: what.length > 0 ? what : ["metadata"], stale });
    }
  }

  for (const [id, record] of Object.entries(registry.models)) {
    if (seen.has(id)) continue;
    if (record.status !== "missing") {
      record.statusBeforeMissing = record.status;
      record.status = "missing";
      record.missingSince = nowIso;
    }
    merge.missing.push(id);
  }

  merge.added.sort(compareIds);
  merge.updated.sort(compareIds);
  merge.missing.sort(compareIds);
  merge.changes.sort((a, b) => compareIds(a.id, b.id));
  merge.invalid.sort((a, b) => compareIds(a.id, b.id));
  return merge;
}

/** The largest context length taken as real: 2^31 - 1 tokens, far above any model's. */
export const MAX_DECLARED_CONTEXT = 2 ** 31 - 1;

/**
 * A listing with its numbers checked: a size or a declared context that is not a plausible
 * whole number becomes 0, and `problems` says what LM Studio sent instead.
 */
function checkListing(listed: ScannedModel): { model: ScannedModel; problems: string[] } {
  const problems: string[] = [];
  const text = (value: unknown) => (typeof value === "string" ? value : "");
  const model: ScannedModel = {
    ...listed,
    id: String(listed.id),
    path: text(listed.path),
    architecture: text(listed.architecture),
    type: listed.type === "embedding" ? "embedding" : "llm",
  };
  const size = listed.sizeBytes as unknown;
  if (!(typeof size === "number" && Number.isSafeInteger(size) && size >= 0)) {
    problems.push(`LM Studio lists its size as ${shown(size)}`);
    model.sizeBytes = 0;
  }
  const declared = listed.declaredContext as unknown;
  if (
    !(typeof declared === "number" && Number.isSafeInteger(declared) && declared > 0 &&
      declared <= MAX_DECLARED_CONTEXT)
  ) {
    problems.push(`LM Studio lists its context length as ${shown(declared)}`);
    model.declaredContext = 0;
  }
  return { model, problems };
}

/**
 * Marks `record` for what its listing got wrong: `failed` with the reason while the listing is
 * impossible, `untested` again once a scan lists it properly.
 */
function markListing(record: ModelRecord, problems: string[]): ModelRecord {
  if (problems.length > 0) {
    record.listingProblem = `${problems.join("; ")}: lmstrix cannot test it`;
    if (record.status !== "missing") {
      record.status = "failed";
      record.error = record.listingProblem;
    }
  } else if (record.listingProblem !== undefined) {
    if (record.status === "failed" && record.error === record.listingProblem) {
      record.status = "untested";
      record.error = null;
    }
    delete record.listingProblem;
  }
  return record;
}

/** What changed in a model's file between the stored record and the scan, for people. */
function listingChanges(record: ModelRecord, model: ScannedModel): string[] {
  const what: string[] = [];
  if (record.path !== model.path) what.push(`path ${record.path} -> ${model.path}`);
  if (record.sizeBytes !== model.sizeBytes) {
    what.push(`size ${record.sizeBytes} -> ${model.sizeBytes} bytes`);
  }
  if ((record.format ?? "") !== (model.format ?? "")) {
    what.push(`format ${record.format ?? "-"} -> ${model.format ?? "-"}`);
  }
  if ((record.quantization ?? "") !== (model.quantization ?? "")) {
    what.push(`quantization ${record.quantization ?? "-"} -> ${model.quantization ?? "-"}`);
  }
  if (record.declaredContext !== model.declaredContext) {
    what.push(`declared context ${record.declaredContext} -> ${model.declaredContext}`);
  }
  return what;
}

/**
 * Moves a record's results to `stale` (its file changed, so they describe another file) and makes
 * it `untested`: `test --all` tests it again. Returns whether there were results to move.
 */
function markStale(record: ModelRecord, nowIso: string): boolean {
  const hadResults = record.status === "tested" || record.status === "failed" ||
    record.loadableContext !== null || record.workingContext !== null;
  if (!hadResults) return false;
  record.stale = {
    status: record.status === "missing" ? "untested" : record.status,
    loadableContext: record.loadableContext,
    workingContext: record.workingContext,
    testedAt: record.testedAt,
    since: nowIso,
  };
  record.status = "untested";
  record.loadableContext = null;
  record.workingContext = null;
  record.testedAt = null;
  record.error = null;
  delete record.search;
  delete record.cappedAt;
  return true;
}

function shown(value: unknown): string {
  return typeof value === "number" ? String(value) : JSON.stringify(value) ?? "nothing";
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
  return null;
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

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
