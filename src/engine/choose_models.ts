/**
 * Which models a test run covers, and in what order. Pure: decided from the registry alone.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import { compareIds } from "../ids.ts";
import type { ModelRecord } from "../registry/model_record.ts";
import { findModel, type Registry } from "../registry/registry.ts";

/**
 * The models of a run: with `"all"` every LLM present in LM Studio that is not tested yet (every
 * one with `force`), smallest first so that early results come fast; otherwise the named models,
 * in the order named, each once. Naming an embedding model or a missing one is a usage error.
 */
export function chooseModels(
  registry: Registry,
  queries: string[] | "all",
  force: boolean,
): ModelRecord[] {
  if (queries === "all") {
    return Object.values(registry.models)
      .filter((r) => r.type === "llm" && r.status !== "missing" && (force || r.status !== "tested"))
      .sort((a, b) => a.sizeBytes - b.sizeBytes || compareIds(a.id, b.id));
  }
  const chosen: ModelRecord[] = [];
  for (const query of queries) {
    const record = findModel(registry, query);
    if (record.type === "embedding") {
      throw new UsageError(
        `"${record.id}" is an embedding model; only LLMs have a context to test`,
        {
          hint: 'pick an LLM from "lmstrix list"',
        },
      );
    }
    if (record.status === "missing") {
      throw new UsageError(`"${record.id}" is no longer in LM Studio`, {
        hint: 'run "lmstrix scan" to refresh the registry',
      });
    }
    if (!chosen.includes(record)) chosen.push(record);
  }
  return chosen;
}

/** The registry's records ordered by id. */
export function sortedRecords(registry: Registry): ModelRecord[] {
  return Object.values(registry.models).sort((a, b) => compareIds(a.id, b.id));
}
