/**
 * The least work any search must do to prove a model's limits, for the bench to measure the
 * search against. It knows the truth; a search does not, so no search can beat it.
 *
 * @module
 */

import type { SearchConfig } from "./context_search.ts";
import { searchCap } from "./context_search.ts";

/** The true limits of a model. */
export interface TrueLimits {
  /** True loadable context, or null when nothing at or above minContext loads. */
  loadable: number | null;
  /** True working context, or null when nothing works. */
  working: number | null;
}

/** Cost of a search: loads and needle prompt tokens (the sum of prompt lengths). */
export interface SearchCost {
  /** Model loads. */
  loads: number;
  /** Needle prompt tokens sent. */
  promptTokens: number;
}

/**
 * The unavoidable work: a load at the loadable size and a failing one just above it (unless the
 * loadable size is the cap); a passing needle at the working size and a failing one just above it
 * (unless working equals loadable), which can share the loadable instance; and the confirming
 * reload at the working size, whose full-length probe can be the passing one. A null loadable
 * size still costs a failing load at minContext; a null working size a failing needle at
 * minContext, loaded there (the loadable load, when the precision lets it be minContext).
 */
export function lowerBound(truth: TrueLimits, config: SearchConfig): SearchCost {
  const { minContext, reserve } = config;
  const cap = searchCap(config);
  if (cap < minContext) return { loads: 0, promptTokens: 0 };
  if (truth.loadable === null) return { loads: 1, promptTokens: 0 };
  const loads = truth.loadable < cap ? 2 : 1;
  if (truth.working === null) {
    return {
      loads: loads + (truth.loadable - config.precision > minContext ? 1 : 0),
      promptTokens: minContext - reserve,
    };
  }
  if (truth.working >= truth.loadable) {
    return { loads, promptTokens: truth.loadable - reserve };
  }
  return {
    loads: loads + 1,
    promptTokens: truth.working - reserve + (truth.working + 1 - reserve),
  };
}
