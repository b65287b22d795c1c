/**
 * The least work any search must do to prove a model's limits, for the bench to measure the
 * search against. It knows the truth; a search does not, so no search can beat it.
 *
 * @module
 */

import type { SearchConfig } from "../../src/search/context_search.ts";
import { searchCap } from "../../src/search/context_search.ts";

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

/** One unavoidable step, in order, so that a caller can price it with its own cost model. */
export type LowerBoundStep =
  | { kind: "load"; context: number; ok: boolean }
  | {
    kind: "needle";
    /** Prompt length. */
    promptTokens: number;
    /** Leading tokens the instance already holds from the previous prompt (prefix cache). */
    cachedTokens: number;
  };

/**
 * The unavoidable steps: a failing load just above the loadable size (unless the loadable size is
 * the cap), then a load at it; a passing needle at the working size and a failing one just above
 * it (unless working equals loadable), which can share the loadable instance and its prompt
 * cache; and the confirming reload at the working size, whose fresh full-length probe can be the
 * passing one. A null loadable size still costs a failing load at minContext; a null working
 * size a failing needle at minContext, loaded there (the loadable load, when the precision lets it
 * be minContext).
 */
export function lowerBoundSteps(truth: TrueLimits, config: SearchConfig): LowerBoundStep[] {
  const { minContext, reserve, precision } = config;
  const cap = searchCap(config);
  if (cap < minContext) return [];
  if (truth.loadable === null) return [{ kind: "load", context: minContext, ok: false }];
  const steps: LowerBoundStep[] = [];
  if (truth.loadable < cap) steps.push({ kind: "load", context: truth.loadable + 1, ok: false });
  steps.push({ kind: "load", context: truth.loadable, ok: true });
  if (truth.working === null) {
    if (truth.loadable - precision > minContext) {
      steps.push({ kind: "load", context: minContext, ok: true });
    }
    steps.push({ kind: "needle", promptTokens: minContext - reserve, cachedTokens: 0 });
    return steps;
  }
  if (truth.working >= truth.loadable) {
    steps.push({ kind: "needle", promptTokens: truth.loadable - reserve, cachedTokens: 0 });
    return steps;
  }
  const passing = truth.working - reserve;
  steps.push({ kind: "needle", promptTokens: passing, cachedTokens: 0 });
  steps.push({ kind: "needle", promptTokens: passing + 1, cachedTokens: passing });
  steps.push({ kind: "load", context: truth.working, ok: true });
  steps.push({ kind: "needle", promptTokens: passing, cachedTokens: 0 });
  return steps;
}

/**
 * The unavoidable work of {@link lowerBoundSteps}, counted: loads (each load counts, failed ones
 * too) and needle prompt tokens, except that the confirming probe counts as the passing one.
 */
export function lowerBound(truth: TrueLimits, config: SearchConfig): SearchCost {
  const steps = lowerBoundSteps(truth, config);
  const loads = steps.filter((s) => s.kind === "load").length;
  const needles = steps.flatMap((s) => s.kind === "needle" ? [s.promptTokens] : []);
  // Passing probe, failing probe, confirming probe: the confirmation can be the passing probe.
  const counted = needles.length === 3 ? needles.slice(1) : needles;
  return { loads, promptTokens: counted.reduce((sum, n) => sum + n, 0) };
}
