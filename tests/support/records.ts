/**
 * Builders for the registry's data in unit tests: a temp LM Studio home's paths, a model record
 * and an attempt-log entry with the fields a test leaves alone filled in, and a registry holding
 * given records.
 *
 * @module
 */

import { type LmstrixPaths, lmstrixPaths } from "../../src/paths.ts";
import type { AttemptLogEntry } from "../../src/registry/attempt_log.ts";
import type { ModelRecord } from "../../src/registry/model_record.ts";
import { emptyRegistry, type Registry } from "../../src/registry/registry.ts";

/** Runs `fn` with the paths of a fresh temp LM Studio home, removed afterwards. */
export async function withTempPaths(fn: (paths: LmstrixPaths) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lmstrix_test_" });
  try {
    await fn(lmstrixPaths(dir));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** An untested 8k LLM record `id`; `extra` sets the fields the test is about. */
export function record(id: string, extra: Partial<ModelRecord> = {}): ModelRecord {
  return {
    id,
    path: `publisher/${id}`,
    sizeBytes: 1,
    architecture: "llama",
    declaredContext: 8192,
    loadableContext: null,
    workingContext: null,
    status: "untested",
    testedAt: null,
    error: null,
    type: "llm",
    ...extra,
  };
}

/** A registry holding `records`. */
export function registryOf(...records: ModelRecord[]): Registry {
  const registry = emptyRegistry();
  for (const r of records) registry.models[r.id] = r;
  return registry;
}

/**
 * An attempt-log entry: a load of `askedContext` that loaded as asked; `extra` sets the fields
 * the test is about.
 */
export function loadAttempt(
  askedContext: number,
  extra: Partial<AttemptLogEntry> = {},
): AttemptLogEntry {
  return {
    time: "2026-12-07T00:00:00.000Z",
    model: "m",
    phase: "loadable",
    action: "load",
    askedContext,
    actualContext: askedContext,
    promptTokens: null,
    outcome: "loaded",
    output: null,
    durationMs: 1,
    retries: 0,
    error: null,
    ...extra,
  };
}
