/**
 * A scan merged into the registry: which models are new, changed, back or gone, and what a
 * changed file does to a model's results (they become `stale`).
 *
 * A scan checks what LM Studio lists before it stores it: a size or a context length that is not
 * a plausible whole number is stored as 0, and the model is kept, `failed`, with the reason.
 *
 * @module
 */

import { compareIds } from "../ids.ts";
import {
  applyScannedMetadata,
  type ModelRecord,
  newModelRecord,
  type ScannedModel,
} from "./model_record.ts";
import type { Registry } from "./registry.ts";

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
