/**
 * What a shelf's tested models say of the working plan's one prior (`working_plan.ts`): the
 * chance that a model works at the full length of an instance as large as memory allows. The
 * bench shows that no one guess suits every shelf (`docs/bench.md`: a shelf where most models
 * stop below their loadable size wants it near 0, one where half work there wants it near 1/2),
 * so a run takes it from the models already tested on the same machine: the share of those whose
 * loads stopped below their declared size that work at their loadable size, drawn toward the
 * default by {@link PRIOR_MODELS} imagined models, so that a shelf of two says little. Pure.
 *
 * @module
 */

/** A tested model as the estimate needs it (the registry's numbers). */
export interface ShelfModel {
  declared: number;
  loadable: number | null;
  working: number | null;
  /** The precision the limits were found with. */
  precision: number;
  /** Set when `--max-context` stopped the loads, not memory. */
  cappedAt?: number;
}

/** The share a shelf nothing is known of gets: the bench's balance of its two priors. */
export const DEFAULT_WORKS_AT_LIMIT = 1 / 4;

/** Weight of the default, in models: four tested models move the share halfway. */
export const PRIOR_MODELS = 4;

/** The learned share, and the counts it rests on. */
export interface ShelfShare {
  share: number;
  /** Tested models whose loads stopped below their declared size. */
  limited: number;
  /** Of those, the ones that work at their loadable size (within its precision). */
  works: number;
}

/** The share of "works at its limit" on the shelf of `models` (see the module doc). */
export function worksAtLimitShare(models: readonly ShelfModel[]): ShelfShare {
  let limited = 0;
  let works = 0;
  for (const m of models) {
    if (m.loadable === null || m.working === null || m.cappedAt !== undefined) continue;
    if (m.loadable >= m.declared) continue;
    limited++;
    if (m.working >= m.loadable - m.precision) works++;
  }
  const share = (works + PRIOR_MODELS * DEFAULT_WORKS_AT_LIMIT) / (limited + PRIOR_MODELS);
  return { share, limited, works };
}
