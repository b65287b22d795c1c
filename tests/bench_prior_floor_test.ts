/**
 * The floor of a search not told the prior (`scripts/bench/prior_floor.ts`): its mixed games are
 * the best average's own at either end, and the floor it reports is no higher than what a real
 * pair of plays reaches (the best's plays for one prior, judged under the other).
 *
 * @module
 */

import assert from "node:assert/strict";
import { benchConfig, REGIMES } from "../scripts/bench/regimes.ts";
import {
  bestAverage,
  bestTruthMs,
  gridPrices,
  loadGame,
  priorGrid,
  type PriorKey,
  priorL,
  priorProfile,
  priorW,
  topWeight,
  workGame,
} from "../scripts/bench/best_average.ts";
import {
  type FloorModel,
  mixedBestMs,
  mixedValue,
  priorFloor,
} from "../scripts/bench/prior_floor.ts";
import { loadFleet } from "./support/emulator.ts";

/** A few fleet models in regime b (costly refusals, no cache: where the priors differ most). */
async function models(): Promise<FloorModel[]> {
  const b = REGIMES.find((r) => r.key === "b")!;
  const fleet = (await loadFleet()).filter((p) => p.type === "llm").map(b.apply);
  return fleet.slice(0, 4).map((profile) => ({ profile, config: benchConfig(profile) }));
}

/**
 * The average under `prior` of the optimal plays for `played`, over every truth, ms; `phased`:
 * the load game's play not told W (a search that finds L before its first needle).
 */
function playedUnder(
  model: FloorModel,
  played: PriorKey,
  prior: PriorKey,
  phased = false,
): number {
  const grid = priorGrid(model.config);
  const n = grid.length - 1;
  let cost = bestTruthMs(model.profile, model.config, played);
  if (phased) {
    const prices = gridPrices(priorProfile(model.profile), model.config, grid);
    const loads = loadGame(prices, () => 1);
    const work = workGame(prices, (j) => topWeight(j, played));
    cost = (i, k) => loads.cost(0, n + 1, false, i) + work.cost(i, k);
  }
  let ms = 0;
  for (let i = 0; i <= n; i++) {
    for (let k = 0; k <= i; k++) ms += priorL(n) * priorW(i, k, prior) * cost(i, k);
  }
  return ms;
}

Deno.test("the mixed games are the best average's own for either prior alone", async () => {
  for (const { profile, config } of await models()) {
    const uniform = bestAverage(profile, config, "uniform").ms;
    const shelf = bestAverage(profile, config, "shelf").ms;
    assert.ok(Math.abs(mixedBestMs(profile, config, 1, 0) - uniform) <= uniform * 1e-9);
    assert.ok(Math.abs(mixedBestMs(profile, config, 0, 1) - shelf) <= shelf * 1e-9);
    // Scaled weights scale the value.
    const half = mixedBestMs(profile, config, 0.5, 0.5);
    assert.ok(Math.abs(mixedBestMs(profile, config, 2, 2) - 4 * half) <= half * 1e-9);
    // Phased: the best average's phased figure for either prior alone, never below the told one.
    const phased = [bestAverage(profile, config, "uniform"), bestAverage(profile, config, "shelf")];
    assert.ok(Math.abs(mixedBestMs(profile, config, 1, 0, true) - phased[0]!.phasedMs) <= 1e-6);
    assert.ok(Math.abs(mixedBestMs(profile, config, 0, 1, true) - phased[1]!.phasedMs) <= 1e-6);
    assert.ok(mixedBestMs(profile, config, 0.5, 0.5, true) >= half - 1e-6);
  }
});

Deno.test("the floor lies between 1 and what the best's plays for one prior reach under both", async () => {
  const fleet = await models();
  const floor = priorFloor(fleet);
  const [u, s] = [floor.bestUniformMs, floor.bestShelfMs];
  assert.ok(Math.abs(mixedValue(fleet, 1, u, s) - 1) < 1e-9);
  assert.ok(Math.abs(mixedValue(fleet, 0, u, s) - 1) < 1e-9);
  assert.ok(floor.floor > 1, `floor ${floor.floor}: the priors ask for different plays`);
  // Two real plays, each optimal for one prior: their worse ratio is at or above the floor.
  for (const [played, other] of [["uniform", "shelf"], ["shelf", "uniform"]] as const) {
    let mine = 0;
    let theirs = 0;
    for (const model of fleet) {
      mine += playedUnder(model, played, played);
      theirs += playedUnder(model, played, other);
    }
    const ratios = played === "uniform" ? [mine / u, theirs / s] : [theirs / u, mine / s];
    assert.ok(Math.abs(Math.min(...ratios) - 1) < 1e-6, `${played}: ${ratios}`);
    assert.ok(
      Math.max(...ratios) >= floor.floor - 1e-9,
      `the ${played} plays reach ${Math.max(...ratios)} under both, below the floor ${floor.floor}`,
    );
  }
});

Deno.test("the phased floor lies between the floor and what two phased plays reach", async () => {
  const fleet = await models();
  const floor = priorFloor(fleet);
  const [u, s] = [floor.bestUniformMs, floor.bestShelfMs];
  assert.ok(floor.phased > floor.floor, `phased ${floor.phased}, floor ${floor.floor}`);
  for (const [played, other] of [["uniform", "shelf"], ["shelf", "uniform"]] as const) {
    let mine = 0;
    let theirs = 0;
    for (const model of fleet) {
      mine += playedUnder(model, played, played, true);
      theirs += playedUnder(model, played, other, true);
    }
    const ratios = played === "uniform" ? [mine / u, theirs / s] : [theirs / u, mine / s];
    assert.ok(
      Math.max(...ratios) >= floor.phased - 1e-9,
      `the phased ${played} plays reach ${ratios} under both, below ${floor.phased}`,
    );
  }
});
