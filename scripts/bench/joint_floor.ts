/**
 * Regime b's floor for every search, interleaved or not: the floor of `prior_floor.ts` (the least
 * worse-of-both ratio to the bench's best averages that any one search not told the prior can
 * reach) with each model's value taken from the joint game (`joint_game.ts`) instead of the two
 * games played apart. For a weight λ, V(λ) = sum over the fleet of the joint game's least average
 * under the prior mixed with weights λ / B_u and (1 - λ) / B_s; every search's worse ratio is at
 * least V(λ), for each λ. At λ = 1 (0) it is the fleet's joint best over the bench's best under
 * the uniform (shelf) prior alone.
 *
 * Usage: deno run --allow-read scripts/bench/joint_floor.ts LAMBDA... (minutes of CPU per λ)
 *
 * @module
 */

import { DEMO_FLEET_URL, readProfilesFile } from "../emulator/validation.ts";
import { bestAverage, gridPrices, priorGrid, priorProfile, priorW } from "./best_average.ts";
import { jointGame } from "./joint_game.ts";
import { benchConfig, REGIMES } from "./regimes.ts";

async function main(args: string[]): Promise<void> {
  const lambdas = args.map(Number);
  if (lambdas.length === 0 || lambdas.some((l) => !(l >= 0 && l <= 1))) {
    console.error("usage: joint_floor.ts LAMBDA... (each in [0, 1])");
    Deno.exit(2);
  }
  const b = REGIMES.find((r) => r.key === "b")!;
  const fleet = (await readProfilesFile(DEMO_FLEET_URL)).filter((p) => p.type === "llm")
    .map(b.apply);
  const models = fleet.map((profile) => {
    const config = benchConfig(profile);
    const prices = gridPrices(priorProfile(profile), config, priorGrid(config));
    return { profile, config, prices };
  });
  let [bestU, bestS] = [0, 0];
  for (const { profile, config } of models) {
    bestU += bestAverage(profile, config, "uniform").ms;
    bestS += bestAverage(profile, config, "shelf").ms;
  }
  for (const lambda of lambdas) {
    const [u, s] = [lambda / bestU, (1 - lambda) / bestS];
    let v = 0;
    for (const { profile, prices } of models) {
      const w = (i: number, k: number) => u * priorW(i, k, "uniform") + s * priorW(i, k, "shelf");
      const value = (u + s) * jointGame(prices, w);
      v += value;
      console.error(`  λ ${lambda}: ${profile.modelKey} ${value.toFixed(5)}`);
    }
    console.log(`regime b, λ = ${lambda}: every search's worse ratio is at least ${v.toFixed(4)}`);
  }
}

if (import.meta.main) await main(Deno.args);
