/**
 * The test run's journal: the one place that writes what a run learns, the registry (atomically,
 * after every step, so that any stop resumes from the last one) and each model's attempt log.
 *
 * @module
 */

import type { LmstrixPaths } from "../paths.ts";
import {
  appendAttempt,
  type AttemptLogEntry,
  readAttempts,
  type RunStartEntry,
} from "../registry/attempt_log.ts";
import type { ModelRecord } from "../registry/model_record.ts";
import { type Registry, saveRegistry } from "../registry/registry.ts";

/** Saves the registry and appends to attempt logs for one run. */
export class Journal {
  readonly #paths: LmstrixPaths;
  readonly #registry: Registry;

  /** A journal writing `registry` and the logs under `paths`. */
  constructor(paths: LmstrixPaths, registry: Registry) {
    this.#paths = paths;
    this.#registry = registry;
  }

  /** The record of `id` as the journal last stored it. */
  record(id: string): ModelRecord | undefined {
    return Object.hasOwn(this.#registry.models, id) ? this.#registry.models[id] : undefined;
  }

  /** Every record, as the journal last stored them. */
  records(): ModelRecord[] {
    return Object.values(this.#registry.models);
  }

  /** Stores `record` in the registry (replacing the one with its id) and saves the registry. */
  async put(record: ModelRecord): Promise<void> {
    this.#registry.models[record.id] = record;
    await this.save();
  }

  /** Saves the registry as it is. */
  async save(): Promise<void> {
    await saveRegistry(this.#paths, this.#registry);
  }

  /** Appends `entry` (an attempt, or the line that opens a run) to the log of its model. */
  /** The attempts logged for model `id`, oldest first. */
  attempts(id: string): Promise<AttemptLogEntry[]> {
    return readAttempts(this.#paths, id);
  }

  async log(entry: AttemptLogEntry | RunStartEntry): Promise<void> {
    await appendAttempt(this.#paths, entry.model, entry);
  }
}
