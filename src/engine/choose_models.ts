/**
 * Which models a test run covers, and in what order: the one rule for when stored results
 * change. Pure: decided from the registry alone.
 *
 * The rule, the same for named models and `--all`:
 * - a tested model keeps its numbers unless `force` is given;
 * - `--all` also leaves out a model whose test finished as failed (nothing loaded or answered,
 *   or LM Studio's listing is impossible), so that a model that never loads does not cost loads
 *   every night, unless `retryFailed` or `force`; naming such a model tests it again;
 * - a test cut short (status `testing`, or `failed` by a fault with its search kept) resumes;
 * - a forced run that was cut short resumes too: the models it already retested are left out.
 *
 * @module
 */

import { UsageError } from "../errors.ts";
import { compareIds } from "../ids.ts";
import type { ModelRecord } from "../registry/model_record.ts";
import { findModel, type Registry } from "../registry/registry.ts";

/** What decides the selection besides the names. */
export interface SelectionOptions {
  /** Test tested models again (and failed ones). */
  force: boolean;
  /** With `--all`, test failed models again. */
  retryFailed: boolean;
}

/** A model a run leaves out, and why. */
export interface SkippedModel {
  id: string;
  /** `tested`: it keeps its numbers; `failed`: its failed test is not repeated. */
  status: "tested" | "failed";
  /** Why, and how to include it, in one line. */
  reason: string;
}

/** The models of a run. */
export interface Selection {
  /** The models to test, in order. */
  chosen: ModelRecord[];
  /** The models left out, in order. */
  skipped: SkippedModel[];
}

/**
 * The models of a run under the rule above: with `"all"` every LLM present in LM Studio,
 * smallest first so that early results come fast; otherwise the named models, in the order
 * named, each once. Naming an embedding model or a missing one is a usage error.
 */
export function chooseModels(
  registry: Registry,
  queries: string[] | "all",
  options: SelectionOptions,
): Selection {
  const all = queries === "all";
  const candidates = all ? allLlms(registry) : namedModels(registry, queries);
  const chosen: ModelRecord[] = [];
  const skipped: SkippedModel[] = [];
  // A forced run that was cut short left its marks: the models it retested since are done.
  const marks = candidates.flatMap((r) => r.retestPending === undefined ? [] : [r.retestPending]);
  const forcedSince = options.force && marks.length > 0 ? marks.sort()[0] : undefined;
  for (const record of candidates) {
    if (record.status === "tested") {
      if (!options.force) {
        skipped.push({
          id: record.id,
          status: "tested",
          reason: "tested already; --force tests it again",
        });
      } else if (
        forcedSince !== undefined && record.retestPending === undefined &&
        record.testedAt !== null && record.testedAt >= forcedSince
      ) {
        skipped.push({
          id: record.id,
          status: "tested",
          reason: "tested again by the forced run this one resumes",
        });
      } else chosen.push(record);
    } else if (all && finishedFailed(record) && !options.force && !options.retryFailed) {
      skipped.push({
        id: record.id,
        status: "failed",
        reason: "its test failed and its file did not change; --retry-failed tests it again",
      });
    } else chosen.push(record);
  }
  return { chosen, skipped };
}

/** A failed model whose test ran to its end (no search left to resume). */
function finishedFailed(record: ModelRecord): boolean {
  return record.status === "failed" && record.search === undefined;
}

function allLlms(registry: Registry): ModelRecord[] {
  return Object.values(registry.models)
    .filter((r) => r.type === "llm" && r.status !== "missing")
    .sort((a, b) => a.sizeBytes - b.sizeBytes || compareIds(a.id, b.id));
}

function namedModels(registry: Registry, queries: string[]): ModelRecord[] {
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
