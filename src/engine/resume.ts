/**
 * Where a model's test starts: from its saved search, or afresh. Pure: decided from the stored
 * record and the run's configuration alone.
 *
 * @module
 */

import type { ModelRecord } from "../registry/model_record.ts";
import { initialState, type SearchConfig, type SearchState } from "../search/context_search.ts";
import { sameConfig } from "./test_options.ts";

/**
 * A search as the registry stores it: the search's own state, plus what the engine needs to go
 * on with it exactly (the configuration it was started with and the haystack seed in use).
 */
export interface SavedSearch extends SearchState {
  config?: SearchConfig;
  seed?: number;
}

/** Where a test starts. */
export interface ResumePoint {
  /** The state the search starts from. */
  state: SearchState;
  /** Whether that is a saved search of an earlier run. */
  resumed: boolean;
  /** The haystack seed to go on with, when resuming a search that saved one. */
  seed: number | undefined;
}

/**
 * The resume point of `record` under `config`: its saved search when the last run left one
 * unfinished (status `testing` or `failed`) with the same configuration, unless `force`;
 * otherwise a new search.
 */
export function resumePoint(
  record: ModelRecord,
  config: SearchConfig,
  force: boolean,
): ResumePoint {
  const saved = record.search as SavedSearch | undefined;
  const resumable = !force && saved !== undefined &&
    (record.status === "testing" || record.status === "failed") &&
    sameConfig(saved.config, config);
  if (!resumable || saved === undefined) {
    return { state: initialState(config), resumed: false, seed: undefined };
  }
  const { config: _config, seed, ...state } = saved;
  return { state, resumed: true, seed: typeof seed === "number" ? seed : undefined };
}

/** What the registry stores for a search in `state` under `config` with haystack `seed`. */
export function savedSearch(state: SearchState, config: SearchConfig, seed: number): SavedSearch {
  return { ...state, config, seed };
}
