/**
 * Measured costs for tests of the working plan: a model seen to have no prompt cache, with three
 * loads of 10 s timed and a fitted prefill curve (0.2 ms a token, attention doubling a token's
 * cost at `doublingTokens`).
 *
 * @module
 */

import { type MeasuredCosts, noCosts } from "../../src/search/context_search.ts";

/** Costs of a model without a prompt cache whose loads and prefill curve were measured. */
export function timedNoCacheCosts(doublingTokens: number): MeasuredCosts {
  return {
    ...noCosts(),
    promptCache: false,
    loads: 3,
    loadSeconds: 30,
    prefillCurve: {
      secondsPerToken: 0.0002,
      doublingTokens,
      doublingMeasured: true,
      overheadSeconds: 0.04,
      samples: 4,
    },
  };
}
