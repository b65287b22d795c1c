/**
 * Where a regime's distance from the best goes, phase by phase: over sampled truths of a prior,
 * what our search spends finding the loadable size (its attempts up to the first working one)
 * and the working size (the rest), against the best average's two games on the same truths (its
 * load game told W, and the same game not told W: what a search that finds L before its first
 * needle needs at least), priced as `ours_average.ts` prices them. Beside them: the game not told
 * W when it must load the declared size first (as ours does), and the needle game played
 * optimally with W = L weighed as our working plan weighs it ({@link WORKS_AT_LIMIT}).
 *
 * Usage: deno run --allow-read scripts/bench/phases.ts [REGIME] [PRIOR] [TRUTHS] [SHARE]
 * (defaults: b uniform 1000, the bench's sample; SHARE: the search's chance that a model works at
 * its memory limit, as a run learns it from its shelf, else the default)
 *
 * @module
 */

import { searchContextLimits } from "../../src/search/context_search.ts";
import { WORKS_AT_LIMIT } from "../../src/search/working_plan.ts";
import { DEMO_FLEET_URL, readProfilesFile } from "../emulator/validation.ts";
import {
  gridPrices,
  loadGame,
  priorGrid,
  type PriorKey,
  priorProfile,
  priorW,
  topWeight,
  workGame,
} from "./best_average.ts";
import { priorSample } from "./ours_average.ts";
import { PricedProbe, truthProfile } from "./priced_probe.ts";
import { benchConfig, REGIMES } from "./regimes.ts";

/** Fleet sums in ms: ours and the best's games, per phase. */
interface Phases {
  oursLoads: number;
  oursNeedles: number;
  /** The load game told W (the best average's). */
  bestLoads: number;
  /** The load game not told W. */
  untoldLoads: number;
  /** The load game not told W, its first load at the declared size. */
  capFirstLoads: number;
  bestNeedles: number;
  /** The needle game's optimal play with W = L weighed as our plan weighs it. */
  oursWeightNeedles: number;
}

async function main(args: string[]): Promise<void> {
  const regime = REGIMES.find((r) => r.key === (args[0] ?? "b"));
  const prior = (args[1] ?? "uniform") as PriorKey;
  const size = Number(args[2] ?? 1000);
  const share = args[3] === undefined ? undefined : Number(args[3]);
  const badShare = share !== undefined && !(share >= 0 && share <= 1);
  if (regime === undefined || !["uniform", "shelf"].includes(prior) || !(size > 0) || badShare) {
    console.error("usage: phases.ts [a|b|c|d] [uniform|shelf] [TRUTHS] [SHARE]");
    Deno.exit(2);
  }
  const fleet = (await readProfilesFile(DEMO_FLEET_URL)).filter((p) => p.type === "llm");
  const sums: Phases = {
    oursLoads: 0,
    oursNeedles: 0,
    bestLoads: 0,
    untoldLoads: 0,
    capFirstLoads: 0,
    bestNeedles: 0,
    oursWeightNeedles: 0,
  };
  for (const profile of fleet.map(regime.apply)) {
    const config = {
      ...benchConfig(profile),
      ...(share === undefined ? {} : { worksAtLimit: share }),
    };
    const grid = priorGrid(config);
    const n = grid.length - 1;
    const prices = gridPrices(priorProfile(profile), config, grid);
    const work = workGame(prices, (j) => topWeight(j, prior));
    const told = loadGame(prices, (i) => priorW(i, -1, prior), (k) => priorW(k, k, prior));
    const untold = loadGame(prices, () => 1);
    const ours = config.worksAtLimit ?? WORKS_AT_LIMIT;
    const weighed = workGame(prices, (j) => Math.max(1e-9, ours * j / (1 - ours)));
    const capFirst = (i: number) =>
      i === n ? prices.okLoad[n]! : prices.refused[n]! + untold.cost(0, n, false, i);
    for (const truth of priorSample(config, prior, size).truths) {
      const probe = new PricedProbe(truthProfile(profile, config, truth));
      const result = await searchContextLimits(config, probe);
      await probe.unload();
      const first = result.attempts.findIndex((a) => a.phase !== "loadable");
      const loads = probe.charges.slice(0, first < 0 ? undefined : first)
        .reduce((a, b) => a + b, 0);
      sums.oursLoads += truth.weight * loads;
      sums.oursNeedles += truth.weight * (probe.ms - loads);
      sums.bestLoads += truth.weight * told.cost(truth.k, n + 1, false, truth.i);
      sums.untoldLoads += truth.weight * untold.cost(0, n + 1, false, truth.i);
      sums.capFirstLoads += truth.weight * capFirst(truth.i);
      sums.bestNeedles += truth.weight * work.cost(truth.i, truth.k);
      sums.oursWeightNeedles += truth.weight * weighed.cost(truth.i, truth.k);
    }
  }
  const min = (ms: number) => (ms / 60_000).toFixed(2);
  const worse = (sums.oursLoads + sums.oursNeedles) / (sums.bestLoads + sums.bestNeedles);
  console.log(
    [
      `regime ${regime.key}, ${prior} prior, ${size} truths per model`,
      `(fleet sums, minutes): ours ${worse.toFixed(3)}x the best`,
      `  loads:   ours ${min(sums.oursLoads)}, best told W ${min(sums.bestLoads)}, ` +
      `not told W ${min(sums.untoldLoads)}`,
      `           not told W, declared size first ${min(sums.capFirstLoads)}`,
      `  needles: ours ${min(sums.oursNeedles)}, best ${min(sums.bestNeedles)}, ` +
      `best at our weight of W = L ${min(sums.oursWeightNeedles)}`,
    ].join("\n"),
  );
}

if (import.meta.main) await main(Deno.args);
