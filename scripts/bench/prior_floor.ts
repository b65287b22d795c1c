/**
 * What no single search can beat when it is not told the prior: the bench judges our average
 * against the best under each prior separately (`best_average.ts`), but a search plays the same
 * way whatever the shelf is, and the play that is best when half the models work at their
 * loadable size is not the play that is best when hardly any do. This module computes how close
 * to the best, under both priors at once, any one search can be.
 *
 * For a search S and a regime's fleet, let r_u(S) and r_s(S) be its fleet average over the best's
 * under the uniform and the shelf prior (`B_u`, `B_s`: the fleet sums of the best averages). For
 * every weight λ in [0, 1], max(r_u, r_s) >= λ r_u + (1 - λ) r_s, and the right side is S's
 * average under one mixed prior (L uniform, W drawn from the uniform prior's W with weight
 * λ / B_u and from the shelf's with weight (1 - λ) / B_s), scaled. Its least value over all
 * searches, V(λ), is the best average under that mixed prior (the same two games), which stays a
 * lower bound of every search's. So no search has max(r_u, r_s) below max over λ of V(λ): the
 * {@link priorFloor}. V(0) = V(1) = 1 (told the prior, the best is the best); the floor is above
 * 1 by what not knowing the prior costs.
 *
 * The phased floor is the same bound for a search that finds L before its first needle (ours, and
 * the plain bisection): its loads are then a tree over L alone, uniform under both priors, so the
 * load game is played without W (`best_average.ts`'s phased figure) and only the needle game
 * mixes the priors.
 *
 * @module
 */

import type { SearchConfig } from "../../src/search/context_search.ts";
import type { ModelProfile } from "../emulator/profile.ts";
import {
  bestAverage,
  gridPrices,
  loadGame,
  priorGrid,
  priorL,
  priorProfile,
  priorW,
  workGame,
} from "./best_average.ts";

/** One model of the fleet, with the settings it is searched with. */
export interface FloorModel {
  profile: ModelProfile;
  config: SearchConfig;
}

/** The floor and where it was found. */
export interface PriorFloor {
  /** max over λ of V(λ): no one search's worse ratio (uniform or shelf) is below it. */
  floor: number;
  /** The λ where V is largest. */
  lambda: number;
  /** The same floor for a search that finds L before its first needle. */
  phased: number;
  /** The fleet sums of the best averages under each prior, ms. */
  bestUniformMs: number;
  bestShelfMs: number;
}

/** Steps of λ searched (V is concave in λ: a minimum of linear functions). */
const LAMBDA_STEPS = 40;

/**
 * The least average over the mixed prior `a` P_uniform(W | L) + `b` P_shelf(W | L) (unnormalised
 * weights, L uniform under both), in ms times (a + b): the two games of `best_average.ts` with the
 * mixed weights; `phased`, with the load game not told W.
 */
export function mixedBestMs(
  profile: ModelProfile,
  config: SearchConfig,
  a: number,
  b: number,
  phased = false,
) {
  const grid = priorGrid(config);
  const n = grid.length - 1;
  if (n < 0 || a + b <= 0) return 0;
  const prices = gridPrices(priorProfile(profile), config, grid);
  const total = a + b;
  // P(W = k | L = i), k = i its own, k = -1 any size below i.
  const w = (i: number, k: number) =>
    (a * priorW(i, k, "uniform") + b * priorW(i, k, "shelf")) / total;
  const work = workGame(prices, (j) => (j === 0 ? 1 : w(j, j) / w(j, -1))).value;
  let workMs = 0;
  for (let j = 0; j <= n; j++) workMs += priorL(n) * work[j]!;
  if (phased) return total * (loadGame(prices, () => 1)(0, n + 1, false) + workMs);
  const revealed = loadGame(prices, (i) => w(i, -1), (k) => w(k, k));
  let loadMs = 0;
  let tail = 0;
  for (let k = n; k >= 0; k--) {
    loadMs += priorL(n) * (w(k, k) + tail) * revealed(k, n + 1, false);
    tail += w(k, -1);
  }
  return total * (loadMs + workMs);
}

/** V(λ) on `models`, given the fleet sums of the best averages. */
export function mixedValue(
  models: readonly FloorModel[],
  lambda: number,
  bestUniformMs: number,
  bestShelfMs: number,
  phased = false,
): number {
  let v = 0;
  for (const { profile, config } of models) {
    const [a, b] = [lambda / bestUniformMs, (1 - lambda) / bestShelfMs];
    v += mixedBestMs(profile, config, a, b, phased);
  }
  return v;
}

/** The floor of a fleet, and its phased floor (see the module doc). */
export function priorFloor(models: readonly FloorModel[]): PriorFloor {
  let bestUniformMs = 0;
  let bestShelfMs = 0;
  for (const { profile, config } of models) {
    bestUniformMs += bestAverage(profile, config, "uniform").ms;
    bestShelfMs += bestAverage(profile, config, "shelf").ms;
  }
  let found = { floor: 1, lambda: 0, phased: 1 };
  if (bestUniformMs <= 0 || bestShelfMs <= 0) return { ...found, bestUniformMs, bestShelfMs };
  for (let step = 0; step <= LAMBDA_STEPS; step++) {
    const lambda = step / LAMBDA_STEPS;
    const v = mixedValue(models, lambda, bestUniformMs, bestShelfMs);
    if (v > found.floor) found = { ...found, floor: v, lambda };
    const phased = mixedValue(models, lambda, bestUniformMs, bestShelfMs, true);
    found.phased = Math.max(found.phased, phased);
  }
  return { ...found, bestUniformMs, bestShelfMs };
}
