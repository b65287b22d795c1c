/**
 * Our search's average over the prior of truths of `best_average.ts`, next to the best any
 * search can reach, the oracle lower bound's and the reference's, all on the same truths: how
 * far our search is from the best possible on average, whatever this fleet's particular truths.
 *
 * Each truth is played out in full: {@link searchContextLimits}, with the model's config as the
 * bench builds it, against a {@link PricedProbe} of the model with that truth (its cost model
 * kept, its other behaviours dropped: {@link truthProfile}), which charges what the emulator
 * would. The prior (L uniform on the precision grid, W uniform on it up to L) has up to about
 * 5,000 truths per model; where it has more than {@link SAMPLE_SIZE}, a fixed seeded sample of
 * that many is drawn from it (a search takes about a third of a millisecond to price), and the best's (the cost of its optimal plays on each truth:
 * {@link bestTruthMs}), the lower bound's and the reference's averages are taken over the same
 * sample, so that the ratios are like for like.
 *
 * @module
 */

import { type SearchConfig, searchContextLimits } from "../../src/search/context_search.ts";
import { seededRandom } from "../../src/random.ts";
import type { ModelProfile } from "../emulator/profile.ts";
import {
  bestTruthMs,
  priorGrid,
  type PriorKey,
  priorL,
  priorProfile,
  priorW,
  referenceMs,
  topWeight,
} from "./best_average.ts";
import { impliedLoads } from "./implied_loads.ts";
import { lowerBoundMs, lowerBoundSteps } from "./lower_bound.ts";
import { PricedProbe, truthProfile } from "./priced_probe.ts";
import { plainBisection } from "./reference_search.ts";

/** Truths per model and regime where the prior has more. */
export const SAMPLE_SIZE = 1000;

/** Seed of the sample: the same truths on every run. */
export const SAMPLE_SEED = 2026;

/** The priors the bench averages over. */
export const PRIOR_KEYS: readonly PriorKey[] = ["uniform", "shelf"];

/** One truth of the prior: grid indices, sizes, and its weight in the average. */
export interface PriorTruth {
  /** Grid index of L. */
  i: number;
  /** Grid index of W (at most i). */
  k: number;
  loadable: number;
  working: number;
  /** Weight in the average (the weights sum to 1). */
  weight: number;
}

/** The truths an average is taken over. */
export interface PriorSample {
  truths: PriorTruth[];
  /** Whether they are the whole prior (else a sample of it). */
  exact: boolean;
}

/**
 * The truths the averages are taken over: every truth of the prior with its weight where it has
 * at most `size`, else `size` drawn from it (L uniform on the grid, then W uniform up to L),
 * weighing the same.
 */
export function priorSample(
  config: SearchConfig,
  prior: PriorKey = "uniform",
  size = SAMPLE_SIZE,
  seed = SAMPLE_SEED,
): PriorSample {
  const grid = priorGrid(config);
  const n = grid.length - 1;
  if (n < 0) return { truths: [], exact: true };
  const truth = (i: number, k: number, weight: number): PriorTruth => ({
    i,
    k,
    loadable: grid[i]!,
    working: grid[k]!,
    weight,
  });
  const truths: PriorTruth[] = [];
  if ((n + 1) * (n + 2) / 2 <= size) {
    for (let i = 0; i <= n; i++) {
      for (let k = 0; k <= i; k++) truths.push(truth(i, k, priorL(n) * priorW(i, k, prior)));
    }
    return { truths, exact: true };
  }
  const random = seededRandom(seed);
  for (let draw = 0; draw < size; draw++) {
    const { i, k } = drawTruth(random, n, prior);
    truths.push(truth(i, k, 1 / size));
  }
  return { truths, exact: false };
}

/**
 * One truth of `prior` on a grid of n + 1 sizes, as grid indices: L uniform on the grid, then W
 * = L with its weight ({@link topWeight}), else uniform below L.
 */
export function drawTruth(random: () => number, n: number, prior: PriorKey) {
  const i = Math.floor(random() * (n + 1));
  const draw = random() * (i + topWeight(i, prior));
  return { i, k: draw >= i ? i : Math.floor(draw) };
}

/** Averages over a sample of the prior, in ms. */
export interface OursAverage {
  /** Our search. */
  ours: number;
  /** The best any search can reach (its optimal plays on the same truths). */
  best: number;
  /** The oracle lower bound. */
  lb: number;
  /** The reference algorithm. */
  ref: number;
  /** The plain correct bisection (`plainBisection`), played out and priced like ours. */
  plain: number;
  /** Truths played. */
  runs: number;
  /** Whether they are the whole prior (else a sample). */
  exact: boolean;
  /** Runs whose loadable or working answer was not right within the precision. */
  wrong: number;
  /** Loads ours asked for whose outcome was implied ({@link impliedLoads}), over the truths. */
  implied: number;
  /** The truth on which ours cost the most against the best, for a look at its trace. */
  worst: { truth: PriorTruth; ms: number; best: number } | null;
}

/** Whether `value` is right for a true limit: at most it (+ slack), within the precision. */
function right(value: number | null, truth: number, precision: number, slack = 0): boolean {
  return value !== null && value <= truth + slack && value >= truth - precision;
}

/** Our search's virtual time on `profile` with the truth `truth`, and whether it was right. */
export async function oursOnTruth(
  profile: ModelProfile,
  config: SearchConfig,
  truth: { loadable: number; working: number },
  search = searchContextLimits,
): Promise<{ ms: number; right: boolean; implied: number }> {
  const probe = new PricedProbe(truthProfile(profile, config, truth));
  const result = await search(config, probe);
  await probe.unload();
  const ok = right(result.loadable, truth.loadable, config.precision) &&
    right(result.working, truth.working, config.precision, config.reserve);
  return { ms: probe.ms, right: ok, implied: impliedLoads(result.attempts).length };
}

/** Our search's, the best's, the lower bound's and the reference's averages over `sample`. */
export async function oursAverage(
  profile: ModelProfile,
  config: SearchConfig,
  sample: PriorSample = priorSample(config),
  prior: PriorKey = "uniform",
): Promise<OursAverage> {
  const best = bestTruthMs(profile, config, prior);
  const plain = priorProfile(profile);
  const average: OursAverage = {
    ours: 0,
    best: 0,
    lb: 0,
    ref: 0,
    plain: 0,
    runs: sample.truths.length,
    exact: sample.exact,
    wrong: 0,
    implied: 0,
    worst: null,
  };
  for (const truth of sample.truths) {
    const ours = await oursOnTruth(profile, config, truth);
    const bestMs = best(truth.i, truth.k);
    average.ours += truth.weight * ours.ms;
    average.best += truth.weight * bestMs;
    average.lb += truth.weight * lowerBoundMs(plain, lowerBoundSteps(truth, config));
    average.ref += truth.weight * referenceMs(profile, config, truth.loadable);
    average.plain += truth.weight * (await oursOnTruth(profile, config, truth, plainBisection)).ms;
    if (!ours.right) average.wrong++;
    average.implied += ours.implied;
    const worst = average.worst;
    if (worst === null || ours.ms / bestMs > worst.ms / worst.best) {
      average.worst = { truth, ms: ours.ms, best: bestMs };
    }
  }
  return average;
}
