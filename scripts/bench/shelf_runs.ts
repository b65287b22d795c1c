/**
 * What a run that learns its shelf costs, against the best told the prior: `test --all` weighs
 * each model's chance of working at its memory limit by the models it tested before
 * (`src/search/shelf_share.ts`), which the bench's averages, one truth at a time with the
 * default, cannot show. Here a shelf is the fleet with one truth per model drawn from the prior
 * ({@link drawTruth}), tested in the fleet's order, each search given the share the
 * results before it on the same shelf give; our search's time and the best's optimal plays on
 * the same truths are summed over {@link SHELVES} seeded shelves.
 *
 * @module
 */

import type { SearchConfig } from "../../src/search/context_search.ts";
import { searchContextLimits } from "../../src/search/context_search.ts";
import { type ShelfModel, worksAtLimitShare } from "../../src/search/shelf_share.ts";
import { seededRandom } from "../../src/random.ts";
import type { ModelProfile } from "../emulator/profile.ts";
import { bestTruthMs, priorGrid, type PriorKey } from "./best_average.ts";
import { drawTruth } from "./ours_average.ts";
import { PricedProbe, truthProfile } from "./priced_probe.ts";

/** Shelves drawn per prior. */
export const SHELVES = 200;

/** Seed of the shelves: the same truths on every run. */
export const SHELF_SEED = 2027;

/** Sums over the shelves, in ms. */
export interface ShelfRuns {
  ours: number;
  best: number;
  /** Searches played (shelves times models). */
  runs: number;
  /** The share the shelf's results give the last model, averaged over the shelves. */
  lastShare: number;
}

/**
 * Plays `shelves` shelves of `models` under `prior` (see the module doc); `learn` false gives
 * every search the default share instead, on the same truths (the control).
 */
export async function shelfRuns(
  models: readonly { profile: ModelProfile; config: SearchConfig }[],
  prior: PriorKey,
  shelves = SHELVES,
  seed = SHELF_SEED,
  learn = true,
): Promise<ShelfRuns> {
  const random = seededRandom(seed);
  const bests = models.map(({ profile, config }) => bestTruthMs(profile, config, prior));
  const sums: ShelfRuns = { ours: 0, best: 0, runs: 0, lastShare: 0 };
  for (let shelf = 0; shelf < shelves; shelf++) {
    const tested: ShelfModel[] = [];
    let share = worksAtLimitShare(tested).share;
    for (const [index, { profile, config }] of models.entries()) {
      const grid = priorGrid(config);
      const n = grid.length - 1;
      if (n < 0) continue;
      const { i, k } = drawTruth(random, n, prior);
      const truth = { loadable: grid[i]!, working: grid[k]! };
      share = worksAtLimitShare(tested).share;
      const learned = learn ? { ...config, worksAtLimit: share } : config;
      const probe = new PricedProbe(truthProfile(profile, learned, truth));
      const result = await searchContextLimits(learned, probe);
      await probe.unload();
      sums.ours += probe.ms;
      sums.best += bests[index]!(i, k);
      sums.runs++;
      tested.push({
        declared: config.declared,
        loadable: result.loadable,
        working: result.working,
        precision: config.precision,
      });
    }
    sums.lastShare += share / shelves;
  }
  return sums;
}
